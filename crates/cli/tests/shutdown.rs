//! Stops, signals and crashes of real processes: a graceful stop finishes only
//! the call in flight, a second signal (or the stop deadline) cancels it, Ctrl-C
//! on an in-process run says what it left, a closed stdout does not kill a run,
//! health sees a killed worker at once, and a crash loop ends at `max_attempts`.

use harness_core::*;
use harness_engine::Harness;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod worker;

use worker::{BIN, kill9, serve, terminate, wait_for_holder};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Agent `a` plays `turns`. Tools: `sleepy` (1 s, logs start and end with its
/// call id), `long` (30 s, writes its pid), `boom` (kills the worker running it).
fn workspace(runtime: &str, turns: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let log = root.join("calls.log");
    write(
        &root,
        "config/workspace.yaml",
        &format!("name: stops\nruntime:\n{runtime}"),
    );
    write(
        &root,
        "config/models.yaml",
        "models:\n  m:\n    provider: scripted\n    script: script.yaml\n",
    );
    let tools = format!(
        r#"tools:
  sleepy:
    command: ["sh", "-c", "echo \"start $AGENT_HARNESS_CALL_ID\" >> \"$1\"; sleep 1; echo \"end $AGENT_HARNESS_CALL_ID\" >> \"$1\"", "sh", "{log}"]
    timeout: 60s
  long:
    command: ["sh", "-c", "echo $$ > \"$1\"; exec sleep 30", "sh", "{pid}"]
    timeout: 60s
  boom:
    command: ["sh", "-c", "kill -9 $PPID"]
    idempotent: true
    timeout: 60s
"#,
        log = log.display(),
        pid = root.join("long.pid").display()
    );
    write(&root, "config/tools.yaml", &tools);
    write(
        &root,
        "config/agents/a.yaml",
        "name: a\nmodel: m\ntools: [sleepy, long, boom]\nmax_steps: 20\n",
    );
    write(
        &root,
        "script.yaml",
        &format!("agents:\n  a:\n    turns:\n{turns}"),
    );
    (dir, log)
}

const THREE_SLEEPY: &str = "      - tool_calls: [{tool: sleepy, arguments: {}}, {tool: sleepy, arguments: {}}, {tool: sleepy, arguments: {}}]\n      - text: done\n";
const LONG: &str = "      - tool_calls: [{tool: long, arguments: {}}]\n      - text: done\n";

fn admit(root: &Path) -> RequestId {
    let out = Command::new(BIN)
        .args(["request", "--json", "--agent", "a", "--workspace"])
        .arg(root)
        .arg("go")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    RequestId::parse(v["id"].as_str().unwrap()).unwrap()
}

fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks the pid.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn read_pid(root: &Path) -> i32 {
    let path = root.join("long.pid");
    let mut pid = None;
    wait_until("the long tool to start", Duration::from_secs(20), || {
        pid = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        pid.is_some()
    });
    pid.unwrap()
}

fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn request(root: &Path, id: &RequestId) -> Request {
    Harness::inspect(root)
        .unwrap()
        .get_request(id)
        .await
        .unwrap()
}

async fn steps(root: &Path, id: &RequestId) -> Vec<Step> {
    Harness::inspect(root)
        .unwrap()
        .store()
        .steps(id)
        .await
        .unwrap()
}

/// `agent-harness run` (no worker: it runs in this process), stdout piped.
fn run_in_process(root: &Path) -> Child {
    Command::new(BIN)
        .args(["run", "--agent", "a", "--workspace"])
        .arg(root)
        .arg("go")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn first_request_id(text: &str) -> RequestId {
    let word = text.split_whitespace().find(|w| w.starts_with("req_"));
    RequestId::parse(word.expect("a request id in the output")).unwrap()
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_finishes_only_the_call_in_flight_then_the_next_worker_goes_on() {
    let (dir, log) = workspace("", THREE_SLEEPY);
    let root = dir.path();
    let id = admit(root);
    let mut child = serve(root);
    wait_until("the first call to start", Duration::from_secs(20), || {
        !log_lines(&log).is_empty()
    });
    let asked = Instant::now();
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    // One call is 1 s; the turn's three would take 3 s.
    assert!(took < Duration::from_millis(2500), "stop took {took:?}");
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 2, "only the call in flight ran: {lines:?}");
    let r = request(root, &id).await;
    assert_eq!(r.status, RequestStatus::Queued, "{r:?}");

    let child = serve(root);
    let h = Harness::inspect(root).unwrap();
    let finished = || {
        futures_lite_block(h.get_request(&id))
            .unwrap()
            .status
            .is_terminal()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !finished() {
        assert!(
            Instant::now() < deadline,
            "the request never finished: {:?}\nserve log:\n{}",
            futures_lite_block(h.get_request(&id)),
            worker::serve_log(root)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    terminate(child);
    let r = request(root, &id).await;
    assert_eq!(r.status, RequestStatus::Completed, "{r:?}");
    let lines = log_lines(&log);
    let starts: Vec<_> = lines.iter().filter(|l| l.starts_with("start")).collect();
    let mut unique = starts.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        (starts.len(), unique.len()),
        (3, 3),
        "each call ran once: {lines:?}"
    );
}

/// Blocks on a future from sync test code (the runtime is the test's).
fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_cancels_the_call_in_flight_and_exits() {
    let (dir, _log) = workspace("", LONG);
    let root = dir.path();
    let id = admit(root);
    let mut child = serve(root);
    let pid = read_pid(root);
    signal(&child, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first signal waits for the call"
    );
    let asked = Instant::now();
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(
        asked.elapsed() < Duration::from_millis(1500),
        "{:?}",
        asked.elapsed()
    );
    assert!(!alive(pid), "the tool's process was terminated");
    assert_eq!(request(root, &id).await.status, RequestStatus::Queued);
    let steps = steps(root, &id).await;
    assert_eq!(
        steps.last().unwrap().status,
        StepStatus::Interrupted,
        "{steps:#?}"
    );
    // The next worker does not re-run a non-idempotent interrupted call.
    let child = serve(root);
    let h = Harness::inspect(root).unwrap();
    wait_until("the request to settle", Duration::from_secs(30), || {
        futures_lite_block(h.get_request(&id))
            .unwrap()
            .status
            .is_terminal()
    });
    terminate(child);
    let r = request(root, &id).await;
    assert_eq!(r.status, RequestStatus::Failed);
    assert!(r.error.unwrap().contains("not idempotent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_deadline_cancels_what_is_still_running() {
    let (dir, _log) = workspace("  stop_timeout: 500ms\n", LONG);
    let root = dir.path();
    let id = admit(root);
    let mut child = serve(root);
    let pid = read_pid(root);
    let asked = Instant::now();
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    assert!(!alive(pid));
    assert_eq!(request(root, &id).await.status, RequestStatus::Queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_an_in_process_run_stops_its_tools_and_says_what_it_left() {
    let (dir, _log) = workspace("", LONG);
    let root = dir.path();
    let mut child = run_in_process(root);
    let pid = read_pid(root);
    signal(&child, libc::SIGINT);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let out = std::io::read_to_string(child.stdout.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(!alive(pid), "the tool's process was terminated");
    let id = first_request_id(&out);
    assert!(out.contains("interrupted:"), "{out}");
    assert!(
        out.contains(&format!("agent-harness runtime requests resume {id}")),
        "{out}"
    );
    assert_eq!(request(root, &id).await.status, RequestStatus::Queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_does_not_kill_an_in_process_run() {
    let (dir, log) = workspace("", THREE_SLEEPY);
    let root = dir.path();
    let mut child = run_in_process(root);
    // Like `| head -1`: read one line, then close the pipe.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let id = first_request_id(&first);
    wait_exit(&mut child, Duration::from_secs(30));
    let r = request(root, &id).await;
    assert_eq!(r.status, RequestStatus::Completed, "{r:?}");
    assert_eq!(log_lines(&log).len(), 6, "all three calls ran to their end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_sees_a_killed_worker_and_its_orphaned_request_at_once() {
    let (dir, _log) = workspace("", LONG);
    let root = dir.path();
    let id = admit(root);
    let child = serve(root);
    let pid = read_pid(root);
    kill9(child);
    let out = Command::new(BIN)
        .args(["runtime", "health", "--workspace"])
        .arg(root)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "health fails: {text}");
    assert!(text.contains("died without stopping"), "{text}");
    assert!(
        text.contains(id.as_str()) && text.contains("no live worker runs it"),
        "{text}"
    );
    assert!(text.contains("agent-harness serve"), "{text}");
    // Leave nothing behind.
    // SAFETY: kill(2) of the tool the killed worker left.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_crashes_its_worker_fails_after_max_attempts() {
    let (dir, _log) = workspace(
        "  max_attempts: 2\n",
        "      - tool_calls: [{tool: boom, arguments: {}}]\n      - text: done\n",
    );
    let root = dir.path();
    let id = admit(root);
    let h = Harness::inspect(root).unwrap();
    for attempt in 1..=2 {
        let mut child = serve(root);
        let status = wait_exit(&mut child, Duration::from_secs(20));
        assert!(
            !status.success(),
            "attempt {attempt}: the worker was killed"
        );
    }
    // The third start gives up on it instead of crashing again.
    let child = serve(root);
    wait_for_holder(&h, child.id());
    wait_until("recovery to settle it", Duration::from_secs(20), || {
        futures_lite_block(h.get_request(&id))
            .unwrap()
            .status
            .is_terminal()
    });
    let r = h.get_request(&id).await.unwrap();
    terminate(child);
    assert_eq!(r.status, RequestStatus::Failed, "{r:?}");
    let error = r.error.unwrap();
    assert!(
        error.contains("started 2 times") && error.contains("max_attempts"),
        "{error}"
    );
}
