//! `serve` as the long-running worker: `run` and `request` hand it work, and
//! SIGTERM stops it gracefully, leaving nothing half-done.

use harness_core::*;
use harness_engine::Harness;
use std::process::Command;
use std::time::{Duration, Instant};

mod worker;

use worker::{BIN, serve, terminate, wait_for_holder};

fn demo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("init")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    dir
}

#[test]
fn run_hands_the_request_to_a_running_worker() {
    let dir = demo();
    let h = Harness::open(dir.path()).unwrap();
    let child = serve(dir.path());
    wait_for_holder(&h, child.id());
    let out = Command::new(BIN)
        .args([
            "run",
            "--agent",
            "assistant",
            "--session",
            "s1",
            "--workspace",
        ])
        .arg(dir.path())
        .arg("ship it")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    terminate(child);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("handed to worker"), "{text}");
    assert!(
        text.contains("approval.requested") && text.contains("paused for approval"),
        "{text}"
    );
}

#[test]
fn request_only_admits_and_prints_the_id() {
    let dir = demo();
    let out = Command::new(BIN)
        .args(["request", "--agent", "assistant", "--workspace"])
        .arg(dir.path())
        .arg("x")
        .output()
        .unwrap();
    assert!(out.status.success());
    let id = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(id.starts_with("req_"), "{id}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = Harness::inspect(dir.path()).unwrap();
    let r = rt
        .block_on(h.get_request(&RequestId::parse(&id).unwrap()))
        .unwrap();
    assert_eq!(r.status, RequestStatus::Queued);
}

#[test]
fn sigterm_finishes_the_step_in_flight_and_leaves_the_rest_resumable() {
    let dir = demo();
    // Slow every turn down so SIGTERM lands mid-run.
    let script = dir.path().join("resources/scripts/demo.yaml");
    let slow = std::fs::read_to_string(&script)
        .unwrap()
        .replace("    turns:", "    latency_ms: 150\n    turns:");
    std::fs::write(&script, slow).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = Harness::open(dir.path()).unwrap();
    let ids: Vec<RequestId> = (0..4)
        .map(|i| {
            rt.block_on(h.request(
                Some(SessionId::parse(&format!("s{i}")).unwrap()),
                "assistant",
                "go",
            ))
            .unwrap()
            .id
        })
        .collect();
    let child = serve(dir.path());
    wait_for_holder(&h, child.id());
    std::thread::sleep(Duration::from_millis(400));
    terminate(child);
    for id in &ids {
        let r = rt.block_on(h.get_request(id)).unwrap();
        assert!(
            r.status != RequestStatus::Running,
            "{id} left running after a graceful stop"
        );
        for s in rt.block_on(h.store().steps(id)).unwrap() {
            assert_ne!(
                s.status,
                StepStatus::Started,
                "a tool call was left half-done"
            );
        }
    }
    // A new worker finishes what the first one parked.
    let child = serve(dir.path());
    let deadline = Instant::now() + Duration::from_secs(20);
    for id in &ids {
        while rt.block_on(h.get_request(id)).unwrap().status != RequestStatus::WaitingApproval {
            assert!(Instant::now() < deadline, "{id} did not resume");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    terminate(child);
}

#[test]
fn cancel_from_another_process_stops_the_worker_s_running_command() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let w = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "config/workspace.yaml",
        "name: cancel\nwork_folder: workspace\n",
    );
    w(
        "config/models.yaml",
        "models:\n  m:\n    provider: scripted\n    script: script.yaml\n",
    );
    w(
        "config/tools.yaml",
        "tools:\n  slow:\n    command: [\"sh\", \"-c\", \"echo $$ > slow.pid; sleep 30\"]\n    timeout: 60s\n",
    );
    w("config/agents/a.yaml", "name: a\nmodel: m\ntools: [slow]\n");
    w(
        "script.yaml",
        "agents:\n  a:\n    turns:\n      - tool_calls: [{tool: slow, arguments: {}}]\n      - text: never\n",
    );
    std::fs::create_dir_all(root.join("work")).unwrap();
    let h = Harness::open(root).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id = rt.block_on(h.request(None, "a", "slow")).unwrap().id;
    let child = serve(root);
    let pid_file = root.join("work/slow.pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&pid_file)
        .map(|s| s.trim().is_empty())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "the slow tool never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let out = Command::new(BIN)
        .args(["runtime", "requests", "cancel", id.as_str(), "--workspace"])
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the worker's command was not terminated"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    terminate(child);
    let r = rt.block_on(h.get_request(&id)).unwrap();
    assert_eq!(r.status, RequestStatus::Cancelled);
}
