//! Several `serve` processes on one PostgreSQL store, SIGKILLed at random while a
//! workload with delegation and approvals runs. Every request settles; no call
//! completed in a committed step is started again; every approval is decided
//! once; the event log a reader pages through has no duplicate and only rising seqs.

mod worker;

use worker::{pg_stores, write};

use harness_core::*;
use harness_engine::Harness;
use harness_store::testing::TestSchema;
use std::collections::HashMap;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

const WORKERS: usize = 3;
const REQUESTS: usize = 24;
const KILLS: usize = 6;

fn workspace(root: &Path, schema: &str) {
    write(
        root,
        "config/workspace.yaml",
        "name: many\nruntime:\n  max_concurrent_requests: 4\n  queue_capacity: 1000\n  max_attempts: 1000\n",
    );
    pg_stores(root, schema, "");
    write(
        root,
        "config/models.yaml",
        "models:\n  scripted:\n    provider: scripted\n    script: resources/scripts/many.yaml\n",
    );
    // Each run of a call appends `start` and `end` lines to calls.log.
    write(
        root,
        "resources/tools/record.sh",
        "#!/bin/sh\necho \"start $AGENT_HARNESS_CALL_ID\" >> \"$1/calls.log\"\nsleep 0.05\necho \"end $AGENT_HARNESS_CALL_ID\" >> \"$1/calls.log\"\necho recorded\n",
    );
    let tool = |name: &str, approval: &str| {
        format!(
            "  {name}:\n    command: [\"sh\", \"{{workspace}}/resources/tools/record.sh\", \"{{workspace}}\"]\n    approval: {approval}\n    idempotent: true\n    timeout: 10s\n"
        )
    };
    write(
        root,
        "config/tools.yaml",
        &format!(
            "tools:\n{}{}",
            tool("record", "never"),
            tool("gated", "required")
        ),
    );
    write(
        root,
        "config/agents/worker.yaml",
        "name: worker\nmodel: scripted\ntools: [record, gated]\nmax_steps: 20\n",
    );
    write(
        root,
        "config/agents/boss.yaml",
        "name: boss\nmodel: scripted\ntools: [delegate, record]\ndelegates: [worker]\nmax_steps: 20\n",
    );
    let call = |t: &str| {
        format!("      - tool_calls: [{{tool: {t}, arguments: {{}}}}]\n        latency_ms: 20\n")
    };
    write(
        root,
        "resources/scripts/many.yaml",
        &format!(
            "agents:\n  worker:\n    turns:\n{}{}{}      - text: done\n  boss:\n    turns:\n{}      - tool_calls: [{{tool: delegate, arguments: {{agent: worker, input: go}}}}]\n{}      - text: done\n",
            call("record"),
            call("gated"),
            call("record"),
            call("record"),
            call("record"),
        ),
    );
}

fn serve(root: &Path) -> Child {
    worker::serve(root)
}

#[test]
fn workers_killed_at_random_lose_nothing_and_repeat_no_completed_call() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    workspace(&root, &schema.config.schema);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = Harness::open(&root).unwrap();
    let ids: Vec<RequestId> = rt.block_on(async {
        let mut ids = Vec::new();
        for i in 0..REQUESTS {
            let agent = if i % 2 == 0 { "boss" } else { "worker" };
            let r = h
                .request(
                    Some(SessionId::parse(&format!("s{i}")).unwrap()),
                    agent,
                    "go",
                )
                .await
                .unwrap();
            ids.push(r.id);
        }
        ids
    });
    let mut workers: Vec<Child> = (0..WORKERS).map(|_| serve(&root)).collect();
    let started = Instant::now();
    let mut kills = 0;
    let mut seed = 7u64;
    loop {
        rt.block_on(worker::decide_pending(&h));
        let settled = rt.block_on(async {
            let mut n = 0;
            for id in &ids {
                if h.get_request(id).await.unwrap().status.is_terminal() {
                    n += 1;
                }
            }
            n
        });
        if settled == ids.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{settled}/{} settled after 90 s\n{}",
            ids.len(),
            worker::serve_log(&root)
        );
        if kills < KILLS && started.elapsed() > Duration::from_millis(400 * (kills as u64 + 1)) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (seed >> 33) as usize % WORKERS;
            worker::kill9(std::mem::replace(&mut workers[i], serve(&root)));
            kills += 1;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    for w in workers {
        worker::terminate_in(&root, w);
    }

    // Every request completed, every approval decided once.
    rt.block_on(async {
        for id in &ids {
            let r = h.get_request(id).await.unwrap();
            assert_eq!(r.status, RequestStatus::Completed, "{r:?}");
        }
        let approvals = h.list_approvals(ApprovalFilter::default()).await.unwrap();
        for a in &approvals {
            assert_eq!(a.status, ApprovalStatus::Approved, "{a:?}");
        }
    });
    // No call of a committed step started again after it completed, and every run
    // of a call came after a committed `tool.started` (the first start, or a re-run
    // the journal allowed: an interrupted idempotent call). A run without a
    // recovery (a store failure) may re-run an idempotent call in the same
    // attempt, so attempts are no bound; the committed starts are.
    let log = std::fs::read_to_string(root.join("calls.log")).unwrap();
    let mut runs: HashMap<&str, usize> = HashMap::new();
    for l in log.lines() {
        if let Some(call) = l.strip_prefix("start ") {
            *runs.entry(call).or_default() += 1;
        }
    }
    rt.block_on(async {
        let all = h.list_requests(RequestFilter::default()).await.unwrap();
        let recovered = all.iter().filter(|r| r.attempt > 1).count();
        // The kills met running work (each kill lands while requests run).
        assert!(
            recovered > 0,
            "no request was ever recovered: the kills missed"
        );
        eprintln!("{recovered} requests recovered after a kill");
        // The event log, paged through as a reader does: rising seqs, none twice.
        let events = worker::all_events(&h).await;
        // Per call: its committed starts, and whether one came after its completion.
        let mut starts: HashMap<String, usize> = HashMap::new();
        let mut completed: std::collections::HashSet<String> = Default::default();
        for e in &events {
            match e.kind {
                EventKind::ToolStarted => {
                    let call = e.payload["call_id"].as_str().unwrap().to_string();
                    assert!(
                        !completed.contains(&call),
                        "call {call} started again after it completed (event {})",
                        e.seq
                    );
                    *starts.entry(call).or_default() += 1;
                }
                EventKind::ToolCompleted => {
                    completed.insert(e.payload["call_id"].as_str().unwrap().to_string());
                }
                _ => {}
            }
        }
        let mut calls = 0;
        for r in &all {
            for s in h.store().steps(&r.id).await.unwrap() {
                if let StepBody::ToolCall {
                    call,
                    outcome: Some(o),
                    ..
                } = &s.body
                {
                    if call.tool == "delegate" {
                        continue;
                    }
                    calls += 1;
                    let id = call.call_id.as_str();
                    let n = runs.get(id).copied().unwrap_or(0);
                    let ours: Vec<String> = events
                        .iter()
                        .filter(|e| e.request_id.as_ref() == Some(&r.id))
                        .map(|e| format!("{} {} {}", e.seq, e.kind, e.payload))
                        .collect();
                    assert!(
                        n >= 1,
                        "call {id} completed but never ran: {s:?} {o:?}\nevents: {ours:#?}"
                    );
                    let committed = starts.get(id).copied().unwrap_or(0);
                    assert!(
                        n <= committed,
                        "call {id} ran {n} times after {committed} committed starts\nevents: {ours:#?}"
                    );
                    assert!(completed.contains(id), "call {id} has no tool.completed");
                }
            }
        }
        // Bosses: 2 calls and a child of 3; workers: 3.
        assert_eq!(
            calls,
            REQUESTS / 2 * (2 + 3) + REQUESTS / 2 * 3,
            "every call completed once"
        );
    });
    eprintln!(
        "{REQUESTS} requests on {WORKERS} workers, {kills} SIGKILLs, settled in {:?}",
        started.elapsed()
    );
}
