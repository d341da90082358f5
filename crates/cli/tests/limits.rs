//! Concurrency limits end to end: a tool that `uses` a resource of capacity 1 runs
//! one call at a time across sessions; the calls that find it held wait without a
//! worker slot (`request.waiting`) and run once it is free; a SIGKILLed worker's
//! holds are released by recovery, and nothing runs twice at once.

use harness_core::*;
use harness_engine::Harness;
use std::path::Path;
use std::time::{Duration, Instant};

mod worker;

use worker::{kill9, serve, terminate, wait_for_holder};

/// One execution: "start CALL PID", a while of work, "end CALL PID".
const DEPLOY_SH: &str = r#"#!/bin/sh
echo "start $AGENT_HARNESS_CALL_ID $$" >> ../effects.log
sleep 0.4
echo "end $AGENT_HARNESS_CALL_ID $$" >> ../effects.log
echo deployed
"#;

/// How the workspace limits `deploy`.
#[derive(Clone, Copy, PartialEq)]
enum Limited {
    /// The tool `uses: [prod-db]`, a resource of capacity 1.
    Resource,
    /// The agent that calls it has `max_concurrent: 1`, and is delegated to by
    /// `boss` (the requests' agent): children park their whole tree.
    DelegatedAgent,
}

fn workspace(root: &Path) {
    workspace_with(root, Limited::Resource)
}

fn workspace_with(root: &Path, limited: Limited) {
    let w = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "config/workspace.yaml",
        "name: limits\nruntime:\n  max_concurrent_requests: 4\nresources:\n  prod-db: 1\n",
    );
    w(
        "config/models.yaml",
        "models:\n  m:\n    provider: scripted\n    script: resources/script.yaml\n",
    );
    let uses = match limited {
        Limited::Resource => "    uses: [prod-db]\n",
        Limited::DelegatedAgent => "",
    };
    w(
        "config/tools.yaml",
        &format!(
            "tools:\n  deploy:\n    command: [\"sh\", \"{{workspace}}/resources/tools/deploy.sh\"]\n{uses}    idempotent: true\n    timeout: 60s\n"
        ),
    );
    let script = "agents:\n  a:\n    turns:\n      - tool_calls: [{tool: deploy, arguments: {}}]\n      - text: done\n";
    match limited {
        Limited::Resource => {
            w(
                "config/agents/a.yaml",
                "name: a\nmodel: m\ntools: [deploy]\n",
            );
            w("resources/script.yaml", script);
        }
        Limited::DelegatedAgent => {
            w(
                "config/agents/a.yaml",
                "name: a\nmodel: m\ntools: [deploy]\nmax_concurrent: 1\n",
            );
            w(
                "config/agents/boss.yaml",
                "name: boss\nmodel: m\ntools: [delegate]\ndelegates: [a]\n",
            );
            w(
                "resources/script.yaml",
                &format!(
                    "{script}  boss:\n    turns:\n      - tool_calls: [{{tool: delegate, arguments: {{agent: a, input: deploy}}}}]\n      - text: delegated\n"
                ),
            );
        }
    }
    w("resources/tools/deploy.sh", DEPLOY_SH);
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every start while another execution (of any call) had started and not ended.
/// An execution that never logs its end was killed with its worker: the test
/// writes `restart` when it starts the next worker, which first kills what the
/// dead one's commands left running.
fn overlaps(effects: &[String]) -> Vec<String> {
    let mut running: Vec<(String, String)> = Vec::new();
    let mut found = Vec::new();
    for l in effects {
        if l == "restart" {
            running.clear();
            continue;
        }
        let f: Vec<&str> = l.split(' ').collect();
        let (kind, call, pid) = (f[0], f[1].to_string(), f[2].to_string());
        if kind == "start" {
            running.retain(|(c, _)| c != &call);
            if !running.is_empty() {
                found.push(format!("{call} ({pid}) started while {running:?} ran"));
            }
            running.push((call, pid));
        } else {
            running.retain(|(c, p)| !(c == &call && p == &pid));
        }
    }
    found
}

fn admit(rt: &tokio::runtime::Runtime, h: &Harness, n: usize) -> Vec<RequestId> {
    admit_to(rt, h, n, "a")
}

fn admit_to(rt: &tokio::runtime::Runtime, h: &Harness, n: usize, agent: &str) -> Vec<RequestId> {
    (0..n)
        .map(|i| {
            let session = SessionId::parse(&format!("s{i}")).unwrap();
            rt.block_on(h.request(Some(session), agent, "deploy it"))
                .unwrap()
                .id
        })
        .collect()
}

fn all_completed(rt: &tokio::runtime::Runtime, h: &Harness, ids: &[RequestId]) -> bool {
    ids.iter()
        .all(|id| rt.block_on(h.get_request(id)).unwrap().status == RequestStatus::Completed)
}

/// Runs `serve` until every one of `ids` completes, then stops it.
fn serve_until_done(root: &Path, rt: &tokio::runtime::Runtime, h: &Harness, ids: &[RequestId]) {
    let server = serve(root);
    wait_until("every request completes", Duration::from_secs(60), || {
        all_completed(rt, h, ids)
    });
    wait_for_holder(h, server.id());
    terminate(server);
}

fn waiting_events(rt: &tokio::runtime::Runtime, h: &Harness) -> Vec<Event> {
    rt.block_on(h.store().events_after(0, EventFilter::default(), 0))
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::RequestWaiting)
        .collect()
}

#[test]
fn a_resource_of_capacity_one_runs_one_call_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    workspace(root);
    let h = Harness::open(root).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ids = admit(&rt, &h, 4);

    serve_until_done(root, &rt, &h, &ids);

    let effects = lines(&root.join("work/effects.log"));
    assert_eq!(overlaps(&effects), Vec::<String>::new(), "{effects:#?}");
    assert_eq!(effects.len(), 8, "each call ran once: {effects:#?}");
    let waits = waiting_events(&rt, &h);
    assert!(
        !waits.is_empty(),
        "with 4 slots, some call found prod-db held"
    );
    for e in &waits {
        assert_eq!(e.payload["limits"], serde_json::json!(["resource:prod-db"]));
        assert_eq!(e.payload["held_by"].as_array().unwrap().len(), 1);
    }
    assert_eq!(
        rt.block_on(h.holds()).unwrap(),
        vec![],
        "nothing is held after"
    );
    assert_eq!(
        rt.block_on(h.waits()).unwrap(),
        vec![],
        "nothing waits after"
    );
}

#[test]
fn a_delegated_agent_s_limit_parks_whole_trees() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    workspace_with(root, Limited::DelegatedAgent);
    let h = Harness::open(root).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ids = admit_to(&rt, &h, 3, "boss");

    serve_until_done(root, &rt, &h, &ids);

    let effects = lines(&root.join("work/effects.log"));
    assert_eq!(overlaps(&effects), Vec::<String>::new(), "{effects:#?}");
    assert_eq!(
        effects.len(),
        6,
        "each delegated call ran once: {effects:#?}"
    );
    let waits = waiting_events(&rt, &h);
    assert!(
        !waits.is_empty(),
        "with 4 slots, some child found agent a busy"
    );
    for e in &waits {
        assert_eq!(e.payload["limits"], serde_json::json!(["agent:a"]));
        assert_eq!(e.payload["tool"], "", "a run, not a call, waits");
        let child = rt
            .block_on(h.get_request(e.request_id.as_ref().unwrap()))
            .unwrap();
        assert_eq!(child.agent, "a", "the delegated child waited, not its root");
        assert!(child.parent_id.is_some());
    }
    assert_eq!(rt.block_on(h.holds()).unwrap(), vec![]);
}

#[test]
fn a_killed_worker_s_holds_are_released_and_nothing_overlaps() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    workspace(root);
    let h = Harness::open(root).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ids = admit(&rt, &h, 3);

    let first = serve(root);
    wait_until(
        "a call holds prod-db and another waits",
        Duration::from_secs(30),
        || {
            !waiting_events(&rt, &h).is_empty()
                && lines(&root.join("work/effects.log"))
                    .iter()
                    .any(|l| l.starts_with("start"))
        },
    );
    let held = rt.block_on(h.holds()).unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].key, "resource:prod-db");
    kill9(first);
    // Dying with its worker, the running command logged no end.
    std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("work/effects.log"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"restart\n"))
        .unwrap();

    let second = serve(root);
    wait_until("every request completes", Duration::from_secs(60), || {
        all_completed(&rt, &h, &ids)
    });
    wait_for_holder(&h, second.id());
    terminate(second);

    let effects = lines(&root.join("work/effects.log"));
    assert_eq!(overlaps(&effects), Vec::<String>::new(), "{effects:#?}");
    let ends = effects.iter().filter(|l| l.starts_with("end")).count();
    assert_eq!(ends, 3, "each call completed once: {effects:#?}");
    assert!(
        effects.iter().filter(|l| l.starts_with("start")).count() >= 4,
        "the killed call ran again: {effects:#?}"
    );
    assert_eq!(rt.block_on(h.holds()).unwrap(), vec![]);
}

/// On PostgreSQL the limit holds across workers: two `serve` processes on one
/// database share prod-db's single unit.
#[test]
fn a_resource_holds_across_postgres_workers() {
    let Some(schema) = harness_store::testing::TestSchema::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    workspace(root);
    worker::pg_stores(root, &schema.config.schema, "");
    let h = Harness::open(root).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ids = admit(&rt, &h, 6);

    let (a, b) = (serve(root), serve(root));
    wait_until("every request completes", Duration::from_secs(90), || {
        all_completed(&rt, &h, &ids)
    });
    terminate(a);
    terminate(b);

    let effects = lines(&root.join("work/effects.log"));
    assert_eq!(overlaps(&effects), Vec::<String>::new(), "{effects:#?}");
    assert_eq!(effects.len(), 12, "each call ran once: {effects:#?}");
    assert!(
        !waiting_events(&rt, &h).is_empty(),
        "some call found prod-db held"
    );
    assert_eq!(rt.block_on(h.holds()).unwrap(), vec![]);
}

#[test]
fn overlapping_executions_are_detected() {
    let log = |text: &str| text.lines().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        overlaps(&log("start a 1\nend a 1\nstart b 2\nend b 2")),
        Vec::<String>::new()
    );
    assert_eq!(
        overlaps(&log("start a 1\nstart a 2\nend a 2")),
        Vec::<String>::new()
    );
    assert_eq!(
        overlaps(&log("start a 1\nstart b 2\nend a 1\nend b 2")).len(),
        1
    );
    assert_eq!(
        overlaps(&log("start a 1\nrestart\nstart b 2\nend b 2")),
        Vec::<String>::new()
    );
}
