//! Helpers for tests that run `agent-harness serve` as a real process.

#![allow(dead_code)]

use harness_core::{ApprovalFilter, ApprovalStatus, Decision, ResolveApproval};
use harness_engine::Harness;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_agent-harness");

/// `agent-harness serve` on `root`; its log (stderr) is appended to
/// `<root>/serve.log`, for a failing test to show (see [`serve_log`]).
pub fn serve(root: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("serve.log"))
        .expect("open serve.log");
    Command::new(BIN)
        .args(["serve", "--workspace"])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn serve")
}

/// `agent-harness serve --json --listen ADDR` on `root` with `env` added, once it
/// printed that it listens: the process, the API's base URL and that line (its
/// `open` says whether it runs without tokens). Its log (stderr) is appended to
/// `<root>/serve.log`; its stdout is drained so it never blocks on a full pipe.
pub fn serve_listening(
    root: &Path,
    addr: &str,
    env: &[(&str, &str)],
) -> (Child, String, serde_json::Value) {
    use std::io::{BufRead, BufReader};
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("serve.log"))
        .expect("open serve.log");
    let mut child = Command::new(BIN)
        .args(["serve", "--json", "--listen", addr, "--workspace"])
        .arg(root)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (base, said) = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("serve ended: {}", serve_log(root)))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(url) = v["listening"].as_str() {
            break (url.to_string(), v);
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, base, said)
}

/// What the `serve` processes of this workspace logged.
pub fn serve_log(root: &Path) -> String {
    std::fs::read_to_string(root.join("serve.log")).unwrap_or_default()
}

/// Waits until `pid` holds the workspace (its signal handlers are installed by then).
pub fn wait_for_holder(h: &Harness, pid: u32) {
    wait_for_holder_within(h, pid, Duration::from_secs(10));
}

/// [`wait_for_holder`] with its own deadline.
pub fn wait_for_holder_within(h: &Harness, pid: u32, within: Duration) {
    let deadline = Instant::now() + within;
    while holder_pid(h) != Some(pid) {
        assert!(Instant::now() < deadline, "serve never took the workspace");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The pid of the worker holding the workspace, if any. Callable from inside a
/// test's runtime: it asks on a thread of its own.
pub fn holder_pid(h: &Harness) -> Option<u32> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(h.worker_holder()).unwrap().map(|w| w.pid)
        })
        .join()
        .unwrap()
    })
}

/// SIGKILL: the crash under test.
pub fn kill9(mut child: Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

/// SIGTERM, and the graceful stop must succeed.
pub fn terminate(mut child: Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait for serve");
    assert!(status.success(), "graceful stop after SIGTERM: {status:?}");
}

/// [`terminate`] for a `serve` started by [`serve`] on `root`: a failed stop shows
/// the serve log.
pub fn terminate_in(root: &Path, mut child: Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait for serve");
    assert!(
        status.success(),
        "graceful stop after SIGTERM: {status:?}\n{}",
        serve_log(root)
    );
}

/// Approves every pending tool approval and rejects every re-run decision (a call
/// interrupted by a failed commit may have taken effect: it must not run again).
/// Errors are ignored: the store may be refusing writes.
pub async fn decide_pending(h: &Harness) {
    let Ok(pending) = h
        .list_approvals(ApprovalFilter {
            statuses: vec![ApprovalStatus::Pending],
            ..Default::default()
        })
        .await
    else {
        return;
    };
    for a in pending {
        let decision = if a.reason.is_none() {
            Decision::Approved
        } else {
            Decision::Rejected
        };
        let _ = h
            .resolve_approval(ResolveApproval {
                session_id: a.session_id.clone(),
                request_id: a.request_id.clone(),
                approval_id: a.id.clone(),
                decision,
                message: None,
                decided_by: harness_core::Actor::new(harness_core::ActorKind::Cli, "busy-test"),
                edited_arguments: None,
            })
            .await;
    }
}

/// Writes `text` to `root/rel`, creating its folder.
pub fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// `config/stores.yaml` for the test PostgreSQL server (its URL in
/// `AGENT_HARNESS_TEST_DATABASE_URL`), schema `schema`, plus `extra` lines under
/// `postgres:` (each `  key: value\n`).
pub fn pg_stores(root: &Path, schema: &str, extra: &str) {
    write(
        root,
        "config/stores.yaml",
        &format!(
            "backend: postgres\npostgres:\n  url_env: AGENT_HARNESS_TEST_DATABASE_URL\n  pool_size: 4\n  schema: {schema}\n{extra}"
        ),
    );
}

/// Admits the demo's `assistant` with `input` in `session` through the HTTP API at
/// `base` (as `token`, which needs the operator role), then waits until the worker
/// has paused it on its approval: the request's id and the pending approval's.
pub async fn admit_until_approval(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    session: &str,
    input: &str,
) -> (String, String) {
    let res = http
        .post(format!("{base}/v1/sessions/{session}/requests"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(serde_json::json!({"agent": "assistant", "input": input}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let req: serde_json::Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    let id = req["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let res = http
            .get(format!("{base}/v1/approvals?status=pending&request={id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let list: serde_json::Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
        if let Some(a) = list[0]["id"].as_str() {
            return (id, a.to_string());
        }
        assert!(Instant::now() < deadline, "{id} never paused for approval");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The whole event log, paged through as a reader does, checking what a reader
/// relies on: seqs only rise, and none comes twice.
pub async fn all_events(h: &Harness) -> Vec<harness_core::Event> {
    let mut out: Vec<harness_core::Event> = Vec::new();
    let mut cursor = 0;
    loop {
        let page = h
            .store()
            .events_after(cursor, harness_core::EventFilter::default(), 500)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        for e in &page {
            assert!(e.seq > cursor, "seq {} after {cursor}", e.seq);
            cursor = e.seq;
        }
        cursor = last.seq;
        out.extend(page);
    }
    out
}
