//! Kill `agent-harness serve` with SIGKILL at many points of a mixed workload
//! with approvals (also inside delegated children), `on_interrupted: ask`
//! decisions, and cancels of roots and children from another process; restart it,
//! and check that nothing was lost, done twice, or run after a cancel.
//!
//! `CRASH_POINTS` sets how many kills (default 20; `scripts/torture.sh` runs hundreds).

use harness_core::*;
use harness_engine::Harness;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod worker;

use worker::{BIN, kill9, serve, terminate, wait_for_holder};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A workspace whose tools append their call id to a log in `work/` (its shared
/// work folder, where command tools run): one line per execution.
fn workspace(root: &Path) {
    write(
        root,
        "config/workspace.yaml",
        // Kills come far more often than any real crash loop: no attempt cap here.
        "name: crash\nwork_folder: workspace\nruntime:\n  max_concurrent_requests: 4\n  queue_capacity: 1000\n  max_attempts: 1000\n  on_interrupted: ask\n",
    );
    write(
        root,
        "config/models.yaml",
        "models:\n  scripted:\n    provider: scripted\n    script: resources/scripts/crash.yaml\n",
    );
    write(
        root,
        "config/stores.yaml",
        "sqlite:\n  path: .agent-harness\n  synchronous: normal\n",
    );
    write(
        root,
        "resources/tools/record.sh",
        "#!/bin/sh\necho \"$AGENT_HARNESS_CALL_ID $1\" >> \"$1.log\"\necho recorded\n",
    );
    let tool = |name: &str, approval: &str, idem: bool| {
        format!(
            "  {name}:\n    command: [\"sh\", \"{{workspace}}/resources/tools/record.sh\", \"{name}\"]\n    approval: {approval}\n    idempotent: {idem}\n    timeout: 10s\n"
        )
    };
    let tools = format!(
        "tools:\n{}{}{}",
        tool("record", "never", false),
        tool("record_idem", "never", true),
        tool("gated", "required", false)
    );
    write(root, "config/tools.yaml", &tools);
    write(
        root,
        "config/agents/worker.yaml",
        "name: worker\nmodel: scripted\ntools: [record, record_idem]\nmax_steps: 20\n",
    );
    write(
        root,
        "config/agents/approver.yaml",
        "name: approver\nmodel: scripted\ntools: [gated, record]\nmax_steps: 20\n",
    );
    write(
        root,
        "config/agents/boss.yaml",
        "name: boss\nmodel: scripted\ntools: [delegate, record]\ndelegates: [approver, worker]\nmax_steps: 20\n",
    );
    let call = |t: &str| {
        format!("      - tool_calls: [{{tool: {t}, arguments: {{}}}}]\n        latency_ms: 7\n")
    };
    let delegate = |agent: &str| {
        format!(
            "      - tool_calls: [{{tool: delegate, arguments: {{agent: {agent}, input: sub}}}}]\n        latency_ms: 7\n"
        )
    };
    let script = format!(
        "agents:\n  worker:\n    turns:\n{}{}{}      - text: done\n  approver:\n    turns:\n{}{}      - text: approved and done\n  boss:\n    turns:\n{}{}{}      - text: delegated and done\n",
        call("record"),
        call("record_idem"),
        call("record"),
        call("gated"),
        call("record"),
        delegate("approver"),
        call("record"),
        delegate("worker"),
    );
    write(root, "resources/scripts/crash.yaml", &script);
}

/// A re-run decision (`on_interrupted: ask`) is approved for about half the calls.
fn approves_rerun(a: &Approval) -> bool {
    a.call_id
        .as_str()
        .bytes()
        .last()
        .unwrap_or(0)
        .is_multiple_of(2)
}

/// Decides every pending approval, racing the worker: tool approvals are
/// approved, re-run decisions approved or rejected (see [`approves_rerun`]).
async fn approve_pending(h: &Harness) {
    let pending = h
        .list_approvals(ApprovalFilter {
            statuses: vec![ApprovalStatus::Pending],
            ..Default::default()
        })
        .await
        .unwrap();
    for a in pending {
        let _ = h
            .resolve_approval(ResolveApproval {
                session_id: a.session_id.clone(),
                request_id: a.request_id.clone(),
                approval_id: a.id.clone(),
                decision: if a.reason.is_none() || approves_rerun(&a) {
                    Decision::Approved
                } else {
                    Decision::Rejected
                },
                message: None,
                decided_by: Actor::new(ActorKind::Cli, "crash-test"),
                edited_arguments: None,
            })
            .await;
    }
}

/// Cancels one active root and one active delegated child (from this process,
/// while the worker runs them); returns what it cancelled.
async fn cancel_some(h: &Harness, point: usize) -> Vec<RequestId> {
    let active = h
        .list_requests(RequestFilter {
            statuses: vec![
                RequestStatus::Queued,
                RequestStatus::Running,
                RequestStatus::WaitingApproval,
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    for children in [false, true] {
        let pick: Vec<&Request> = active
            .iter()
            .filter(|r| r.parent_id.is_some() == children)
            .collect();
        if let Some(r) = pick.get(point % pick.len().max(1))
            && h.cancel(
                &r.id,
                &Actor::new(ActorKind::Cli, "crash-test"),
                Some("chaos"),
            )
            .await
            .is_ok()
        {
            out.push(r.id.clone());
        }
    }
    out
}

fn log_counts(root: &Path, tool: &str) -> HashMap<String, usize> {
    let text = std::fs::read_to_string(root.join(format!("work/{tool}.log"))).unwrap_or_default();
    let mut counts = HashMap::new();
    for l in text.lines() {
        *counts
            .entry(l.split(' ').next().unwrap().to_string())
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_many_points_loses_nothing_and_repeats_nothing() {
    let crash_points: usize = std::env::var("CRASH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().to_path_buf();
    workspace(&root);
    let h = Harness::open(&root).unwrap();
    let mut ids = Vec::new();
    for i in 0..(crash_points * 2).max(30) {
        let agent = match i % 4 {
            0 => "approver",
            1 => "boss",
            _ => "worker",
        };
        let session = SessionId::parse(&format!("s{}", i % 7)).unwrap();
        ids.push(
            h.request(Some(session), agent, &format!("job {i}"))
                .await
                .unwrap()
                .id,
        );
    }

    // Kill the worker at spread-out moments, approving and cancelling concurrently.
    let mut cancelled: Vec<RequestId> = Vec::new();
    for point in 0..crash_points {
        let child = serve(&root);
        let wait = Duration::from_millis(15 + (point as u64 * 37) % 140);
        let deadline = Instant::now() + wait;
        let mut cancelled_here = false;
        while Instant::now() < deadline {
            if point % 2 == 0 {
                approve_pending(&h).await;
            }
            if point % 3 == 1 && !cancelled_here {
                cancelled_here = true;
                cancelled.extend(cancel_some(&h, point).await);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        kill9(child);
    }

    // Final run to completion.
    let child = serve(&root);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        approve_pending(&h).await;
        let open = h
            .list_requests(RequestFilter {
                statuses: vec![
                    RequestStatus::Queued,
                    RequestStatus::Running,
                    RequestStatus::WaitingApproval,
                ],
                ..Default::default()
            })
            .await
            .unwrap();
        if open.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "requests never settled: {open:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for_holder(&h, child.id());
    terminate(child);

    // 1. Every request reached a terminal state; cancelled only if it (or a
    //    request above it) was cancelled; no failures (interruptions are asked about).
    let all = h.list_requests(RequestFilter::default()).await.unwrap();
    let by_id: HashMap<&RequestId, &Request> = all.iter().map(|r| (&r.id, r)).collect();
    let under_cancel = |r: &Request| {
        let mut cur = Some(r);
        while let Some(x) = cur {
            if cancelled.contains(&x.id) {
                return true;
            }
            cur = x.parent_id.as_ref().and_then(|p| by_id.get(p).copied());
        }
        false
    };
    for r in &all {
        match r.status {
            RequestStatus::Completed => {}
            RequestStatus::Cancelled => {
                assert!(
                    under_cancel(r),
                    "cancelled, but nobody cancelled it: {r:#?}"
                )
            }
            other => panic!("request {} ended {other}: {r:#?}", r.id),
        }
    }
    assert_eq!(
        all.iter().filter(|r| r.parent_id.is_none()).count(),
        ids.len()
    );

    // 2. The event sequence has no gaps.
    let events = h
        .store()
        .events_after(0, EventFilter::default(), 0)
        .await
        .unwrap();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "gap in the event sequence");
    }

    // 3. Each completed tool call ran exactly once; non-idempotent calls never twice.
    // Completed calls that ran: not those completed as rejected (an approval, a
    // re-run decision) or recorded as never run (a cancel came first).
    let rejected: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == EventKind::ToolCompleted && e.payload["rejected"] == true)
        .filter_map(|e| e.payload["call_id"].as_str())
        .collect();
    let mut completed: BTreeMap<String, String> = BTreeMap::new();
    for r in &all {
        for s in h.store().steps(&r.id).await.unwrap() {
            if let StepBody::ToolCall { call, outcome, .. } = &s.body
                && s.status == StepStatus::Completed
                && !rejected.contains(&call.call_id.as_str())
                && !outcome
                    .as_ref()
                    .is_some_and(|o| o.content.starts_with("not run:"))
            {
                completed.insert(call.call_id.to_string(), call.tool.clone());
            }
        }
    }
    let reruns: Vec<String> = events
        .iter()
        .filter(|e| e.kind == EventKind::ToolInterrupted && e.payload["rerun"] == true)
        .map(|e| e.payload["call_id"].as_str().unwrap().to_string())
        .collect();
    // A non-idempotent call runs again only when an operator approved its re-run.
    let approvals = h.list_approvals(ApprovalFilter::default()).await.unwrap();
    let approved_reruns = |call: &str| {
        approvals
            .iter()
            .filter(|a| {
                a.reason.is_some()
                    && a.status == ApprovalStatus::Approved
                    && a.call_id.as_str() == call
            })
            .count()
    };
    for tool in ["record", "gated"] {
        for (call, n) in log_counts(&root, tool) {
            let allowed = 1 + approved_reruns(&call);
            assert!(
                n <= allowed,
                "non-idempotent `{tool}` call {call} ran {n} times ({} re-runs approved)",
                allowed - 1
            );
        }
    }
    let idem = log_counts(&root, "record_idem");
    for (call, tool) in completed.iter().filter(|(_, t)| t.as_str() != "delegate") {
        let n = match tool.as_str() {
            "record_idem" => idem.get(call).copied().unwrap_or(0),
            t => log_counts(&root, t).get(call).copied().unwrap_or(0),
        };
        // Each crash during a run of an idempotent call re-runs it once more; a
        // non-idempotent one runs again only on an approved re-run decision.
        let allowed = 1 + reruns.iter().filter(|c| *c == call).count() + approved_reruns(call);
        assert!(
            n >= 1 && n <= allowed,
            "completed call {call} ({tool}) ran {n} times"
        );
    }

    // 4. Nothing started after its request was cancelled.
    for id in &cancelled {
        let Some(cancel) = events
            .iter()
            .find(|e| e.kind == EventKind::RequestCancelled && e.request_id.as_ref() == Some(id))
        else {
            continue;
        };
        let late: Vec<&Event> = events
            .iter()
            .filter(|e| e.seq > cancel.seq && e.request_id.as_ref() == Some(id))
            .filter(|e| matches!(e.kind, EventKind::ToolStarted | EventKind::ModelTurn))
            .collect();
        assert!(late.is_empty(), "{id} went on after its cancel: {late:#?}");
    }

    // 5. No approval was applied twice.
    let mut resolved: HashMap<String, usize> = HashMap::new();
    for e in events
        .iter()
        .filter(|e| e.kind == EventKind::ApprovalResolved)
    {
        *resolved
            .entry(e.payload["approval_id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert!(
        resolved.values().all(|&n| n == 1),
        "an approval was resolved twice: {resolved:?}"
    );

    // 6. The store is intact.
    assert_eq!(h.store().integrity_check().await.unwrap(), Ok(()));
    let recovered = events
        .iter()
        .filter(|e| e.kind == EventKind::RequestRequeued)
        .count();
    let asked = approvals.iter().filter(|a| a.reason.is_some()).count();
    eprintln!(
        "{crash_points} crash points: {} requests ({} cancelled), {} events, {recovered} recoveries, {} completed calls, {} idempotent re-runs, {asked} re-run decisions asked",
        all.len(),
        all.iter()
            .filter(|r| r.status == RequestStatus::Cancelled)
            .count(),
        events.len(),
        completed.len(),
        reruns.len()
    );
}

#[test]
fn a_second_serve_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    workspace(dir.path());
    let first = serve(dir.path());
    let lock = dir.path().join(".agent-harness/worker.lock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .contains("pid=")
    {
        assert!(Instant::now() < deadline, "first serve never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new(BIN)
        .args(["serve", "--workspace"])
        .arg(dir.path())
        .output()
        .unwrap();
    kill9(first);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("held by another worker") && err.contains("pid"),
        "{err}"
    );
}
