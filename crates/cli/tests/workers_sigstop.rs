//! A `serve` worker paused (SIGSTOP) past its lease while its command tool runs,
//! on a PostgreSQL store shared with a second worker. The other worker takes the
//! request back (a `request.reclaimed` event names both workers), re-runs the
//! idempotent call and finishes the request; before re-running the call it kills
//! the paused worker's command (same host: the record under `running/`), so the two
//! executions never overlap. Resumed (SIGCONT), the paused worker commits nothing —
//! no step, no event, no tool completion — and the first run never finishes.

mod worker;

use worker::{pg_stores, write};

use harness_core::*;
use harness_engine::Harness;
use harness_store::testing::TestSchema;
use std::path::Path;
use std::time::{Duration, Instant};

fn workspace(root: &Path, schema: &str) {
    write(
        root,
        "config/workspace.yaml",
        "name: paused\nruntime:\n  max_concurrent_requests: 4\n",
    );
    pg_stores(
        root,
        schema,
        "  lease_secs: 5
",
    );
    write(
        root,
        "config/models.yaml",
        "models:\n  scripted:\n    provider: scripted\n    script: resources/scripts/slow.yaml\n",
    );
    // Each run appends `start CALL PID`, and `end CALL PID` once it finished. The
    // first run sleeps long (the worker is paused meanwhile); a re-run is quick.
    write(
        root,
        "resources/tools/slow.sh",
        "#!/bin/sh\necho \"start $AGENT_HARNESS_CALL_ID $$\" >> \"$1/marks.log\"\n\
         if [ -e \"$1/first-ran\" ]; then sleep 0.1; else : > \"$1/first-ran\"; sleep 60; fi\n\
         echo \"end $AGENT_HARNESS_CALL_ID $$\" >> \"$1/marks.log\"\necho slept\n",
    );
    write(
        root,
        "config/tools.yaml",
        "tools:\n  slow:\n    command: [\"sh\", \"{workspace}/resources/tools/slow.sh\", \"{workspace}\"]\n    approval: never\n    idempotent: true\n    timeout: 120s\n",
    );
    write(
        root,
        "config/agents/sleeper.yaml",
        "name: sleeper\nmodel: scripted\ntools: [slow]\nmax_steps: 10\n",
    );
    write(
        root,
        "resources/scripts/slow.yaml",
        "agents:\n  sleeper:\n    turns:\n      - tool_calls: [{tool: slow, arguments: {}}]\n      - text: done\n",
    );
}

fn marks(root: &Path) -> Vec<(String, String, i32)> {
    std::fs::read_to_string(root.join("marks.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut w = l.split(' ');
            let what = w.next().unwrap().to_string();
            let call = w.next().unwrap().to_string();
            let pid = w.next().unwrap().parse().unwrap();
            (what, call, pid)
        })
        .collect()
}

/// Whether `pid` is a process that has not exited (a zombie has).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

fn wait_until(what: &str, within: Duration, root: &Path, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}\n{}",
            worker::serve_log(root)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_worker_paused_past_its_lease_commits_nothing_and_its_command_is_killed() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    workspace(&root, &schema.config.schema);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = Harness::open(&root).unwrap();
    let id = rt
        .block_on(h.request(Some(SessionId::parse("s1").unwrap()), "sleeper", "go"))
        .unwrap()
        .id;
    let mut a = worker::serve(&root);
    let mut b = worker::serve(&root);

    // The first run of the call is under way on one of the two workers.
    wait_until(
        "the command started",
        Duration::from_secs(20),
        &root,
        || marks(&root).len() == 1,
    );
    let (_, call, first_pid) = marks(&root)[0].clone();
    let req = rt.block_on(h.get_request(&id)).unwrap();
    let holder = req
        .worker_id
        .clone()
        .expect("a running request has a worker");
    let workers = rt.block_on(h.store().workers(10)).unwrap();
    let pid_of = |w: &WorkerId| workers.iter().find(|x| &x.id == w).map(|x| x.pid);
    let holder_pid = pid_of(&holder).expect("the holder registered");
    if holder_pid != a.id() {
        std::mem::swap(&mut a, &mut b);
    }
    assert_eq!(
        holder_pid,
        a.id(),
        "the request runs on one of the two workers"
    );
    let other = workers
        .iter()
        .find(|w| w.pid == b.id())
        .map(|w| w.id.clone())
        .expect("the other worker registered");

    // Paused past its 5 s lease: the other worker takes the request back and
    // finishes it, re-running the idempotent call.
    unsafe { libc::kill(a.id() as i32, libc::SIGSTOP) };
    let paused = Instant::now();
    wait_until(
        "the other worker finished",
        Duration::from_secs(40),
        &root,
        || {
            rt.block_on(h.get_request(&id))
                .unwrap()
                .status
                .is_terminal()
        },
    );
    let finished_after = paused.elapsed();
    assert!(
        finished_after >= Duration::from_secs(5),
        "re-claimed before the lease expired ({finished_after:?})"
    );
    assert!(
        !running(first_pid),
        "the re-claiming worker re-ran the call while the paused worker's command still ran"
    );
    let events_before = rt.block_on(worker::all_events(&h));

    // Resumed: it learns it lost the lease and commits nothing.
    unsafe { libc::kill(a.id() as i32, libc::SIGCONT) };
    // Time for anything the resumed worker would commit to show.
    std::thread::sleep(Duration::from_secs(3));
    let events_after = rt.block_on(worker::all_events(&h));
    let log = worker::serve_log(&root);
    worker::terminate(a);
    worker::terminate(b);

    let r = rt.block_on(h.get_request(&id)).unwrap();
    assert_eq!(r.status, RequestStatus::Completed, "{r:?}");
    assert_eq!(
        r.worker_id.as_ref(),
        Some(&other),
        "finished by the other worker"
    );
    assert_eq!(
        events_before.len(),
        events_after.len(),
        "the resumed worker committed events:\n{:#?}",
        &events_after[events_before.len().min(events_after.len())..]
    );

    // Marker files: the first run never finished; the re-run did, once.
    let m = marks(&root);
    let starts: Vec<_> = m.iter().filter(|x| x.0 == "start").collect();
    let ends: Vec<_> = m.iter().filter(|x| x.0 == "end").collect();
    assert_eq!(starts.len(), 2, "{m:?}");
    assert!(m.iter().all(|x| x.1 == call), "{m:?}");
    assert_eq!(ends.len(), 1, "{m:?}");
    assert_ne!(ends[0].2, first_pid, "the first run finished: {m:?}");

    // The journal: one model turn, one completed call, the answer; no duplicate.
    let steps = rt.block_on(h.store().steps(&id)).unwrap();
    let calls: Vec<_> = steps
        .iter()
        .filter_map(|s| match &s.body {
            StepBody::ToolCall { call, outcome, .. } => Some((call.call_id.clone(), outcome)),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 1, "{steps:#?}");
    assert_eq!(calls[0].0.as_str(), call);
    assert!(
        matches!(calls[0].1, Some(o) if o.ok),
        "the call completed: {steps:#?}"
    );
    assert_eq!(steps.len(), 3, "{steps:#?}");

    // The event log: the take-over is recorded with both workers, the call
    // completed once, and was interrupted once (the re-claiming run's decision).
    let mine: Vec<&Event> = events_after
        .iter()
        .filter(|e| e.request_id.as_ref() == Some(&id))
        .collect();
    let count = |k: EventKind| mine.iter().filter(|e| e.kind == k).count();
    assert_eq!(count(EventKind::ToolCompleted), 1, "{mine:#?}");
    assert_eq!(count(EventKind::ToolInterrupted), 1, "{mine:#?}");
    assert_eq!(count(EventKind::RequestCompleted), 1, "{mine:#?}");
    let reclaimed: Vec<_> = mine
        .iter()
        .filter(|e| e.kind == EventKind::RequestReclaimed)
        .collect();
    assert_eq!(reclaimed.len(), 1, "{mine:#?}");
    assert_eq!(reclaimed[0].payload["from_worker"], holder.as_str());
    assert_eq!(reclaimed[0].payload["by_worker"], other.as_str());
    assert!(
        log.contains("lease"),
        "the resumed worker says it lost the lease:\n{log}"
    );
}
