//! The store busy or full while `serve` runs a workload (tool calls, approvals
//! resolved here, delegation): a write lock held past the writer's retry budget,
//! maintenance on a large store, a full disk. After each fault and its recovery:
//! every request completed, no call ran twice (a non-idempotent one never), event
//! seqs have no gaps, `runtime health` is ok; and the fault was visible while it
//! lasted.
//!
//! `BUSY_STORE_MB` sets the size of the generated store of the maintenance test
//! (default 100: about 15 s here; 400 takes about 40 s). The disk-full test mounts
//! a tmpfs: without the right to, it prints `skipped: …` and passes, unless
//! `AGENT_HARNESS_REQUIRE_ROOT_TESTS=1` (CI) makes that a failure.

use harness_core::*;
use harness_engine::Harness;
use harness_store::synthetic::{SyntheticSpec, generate};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod worker;

use worker::{BIN, wait_for_holder};

/// One fault at a time: each test times how the runtime copes, on two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// The workload's agents: `worker` (three logged calls, one idempotent),
/// `approver` (an approval-gated call, then one more), `boss` (delegates to both).
/// Its commands append their call id to `work/<tool>.log` (one line per execution),
/// then take 100 ms, so a fault often finds one running.
/// Also the agents and tools the synthetic generator's records name (`bench`,
/// `writer`, `list_files`, `approved_list`). The store is at `store`.
fn workspace(root: &Path, store: &Path, turn_ms: u64) {
    write(
        root,
        "config/workspace.yaml",
        "name: busy\nwork_folder: workspace\nruntime:\n  max_concurrent_requests: 6\n  queue_capacity: 1000\n  on_interrupted: ask\n",
    );
    write(
        root,
        "config/models.yaml",
        "models:\n  scripted:\n    provider: scripted\n    script: resources/scripts/busy.yaml\n",
    );
    write(
        root,
        "config/stores.yaml",
        &format!(
            "sqlite:\n  path: {}\n  synchronous: normal\n",
            store.display()
        ),
    );
    write(
        root,
        "resources/tools/record.sh",
        "#!/bin/sh\necho \"$AGENT_HARNESS_CALL_ID $1\" >> \"$1.log\"\nsleep 0.1\necho recorded\n",
    );
    let tool = |name: &str, approval: &str, idem: bool| {
        format!(
            "  {name}:\n    command: [\"sh\", \"{{workspace}}/resources/tools/record.sh\", \"{name}\"]\n    approval: {approval}\n    idempotent: {idem}\n    timeout: 10s\n"
        )
    };
    let tools = format!(
        "tools:\n{}{}{}  approved_list:\n    builtin: list_files\n    approval: required\n",
        tool("record", "never", false),
        tool("record_idem", "never", true),
        tool("gated", "required", false)
    );
    write(root, "config/tools.yaml", &tools);
    for (name, tools, extra) in [
        ("worker", "[record, record_idem]", ""),
        ("approver", "[gated, record]", ""),
        (
            "boss",
            "[delegate, record]",
            "delegates: [approver, worker]\n",
        ),
        ("bench", "[list_files, approved_list]", ""),
        ("writer", "[list_files, approved_list]", ""),
    ] {
        write(
            root,
            &format!("config/agents/{name}.yaml"),
            &format!("name: {name}\nmodel: scripted\ntools: {tools}\n{extra}max_steps: 20\n"),
        );
    }
    let call = |t: &str| {
        format!(
            "      - tool_calls: [{{tool: {t}, arguments: {{}}}}]\n        latency_ms: {turn_ms}\n"
        )
    };
    let delegate = |agent: &str| {
        format!(
            "      - tool_calls: [{{tool: delegate, arguments: {{agent: {agent}, input: sub}}}}]\n        latency_ms: {turn_ms}\n"
        )
    };
    let script = format!(
        "agents:\n  worker:\n    turns:\n{}{}{}      - text: done\n  approver:\n    turns:\n{}{}      - text: approved and done\n  boss:\n    turns:\n{}{}{}      - text: delegated and done\n  bench:\n    turns:\n{}      - text: done\n  writer:\n    turns:\n{}      - text: done\n",
        call("record"),
        call("record_idem"),
        call("record"),
        call("gated"),
        call("record"),
        delegate("approver"),
        call("record"),
        delegate("worker"),
        call("list_files"),
        call("list_files"),
    );
    write(root, "resources/scripts/busy.yaml", &script);
    std::fs::create_dir_all(root.join("work")).unwrap();
}

const AGENTS: [&str; 3] = ["worker", "approver", "boss"];

/// Admits `n` requests of the workload (numbered from `from`).
async fn admit(h: &Harness, from: usize, n: usize) -> Vec<RequestId> {
    let mut ids = Vec::with_capacity(n);
    for i in from..from + n {
        let agent = match i % 4 {
            0 => "approver",
            1 => "boss",
            _ => "worker",
        };
        let session = SessionId::parse(&format!("s{}", i % 16)).unwrap();
        let r = h.request(Some(session), agent, &format!("job {i}")).await;
        ids.push(r.unwrap().id);
    }
    ids
}

/// The workload's requests (roots and delegated children), not the generated ones.
async fn workload_requests(h: &Harness) -> Vec<Request> {
    let mut all = Vec::new();
    for agent in AGENTS {
        let f = RequestFilter {
            agent: Some(agent.to_string()),
            ..Default::default()
        };
        all.extend(h.list_requests(f).await.unwrap());
    }
    all
}

/// Decides approvals until no request of the workload is active.
async fn settle(h: &Harness, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        worker::decide_pending(h).await;
        let open: Vec<Request> = workload_requests(h)
            .await
            .into_iter()
            .filter(|r| !r.status.is_terminal())
            .collect();
        if open.is_empty() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{} request(s) never settled: {open:#?}",
            open.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count_status(h: &Harness, status: RequestStatus) -> usize {
    h.list_requests(RequestFilter {
        statuses: vec![status],
        ..Default::default()
    })
    .await
    .map(|v| v.len())
    .unwrap_or(0)
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

/// What the checks found, for the figures a test prints.
struct Outcome {
    requests: usize,
    events: Vec<Event>,
    interrupted: usize,
    /// Calls that completed with an error, with their output.
    failed_calls: Vec<String>,
}

/// The invariants after recovery: every workload request completed; events after
/// `from_seq` have no gaps; each completed call ran exactly once (an idempotent one
/// once more per recorded re-run), no non-idempotent call ran twice; no approval was
/// decided twice; the store is intact.
async fn check_invariants(h: &Harness, root: &Path, roots: &[RequestId], from_seq: i64) -> Outcome {
    let all = workload_requests(h).await;
    for r in &all {
        assert_eq!(
            r.status,
            RequestStatus::Completed,
            "request {} ended {}: {r:#?}",
            r.id,
            r.status
        );
    }
    for id in roots {
        assert!(all.iter().any(|r| &r.id == id), "request {id} was lost");
    }

    let events = h
        .store()
        .events_after(from_seq, EventFilter::default(), 0)
        .await
        .unwrap();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, from_seq + i as i64 + 1, "gap in the event sequence");
    }

    let rejected: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == EventKind::ToolCompleted && e.payload["rejected"] == true)
        .filter_map(|e| e.payload["call_id"].as_str())
        .collect();
    let reruns: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == EventKind::ToolInterrupted && e.payload["rerun"] == true)
        .filter_map(|e| e.payload["call_id"].as_str())
        .collect();
    for tool in ["record", "gated"] {
        for (call, n) in log_counts(root, tool) {
            assert_eq!(n, 1, "non-idempotent `{tool}` call {call} ran {n} times");
        }
    }
    // Completed calls that ran, and whether they succeeded (a failed one may have
    // failed before its command started: e.g. its running record could not be
    // written on a full disk).
    let mut completed: BTreeMap<String, (String, bool)> = BTreeMap::new();
    let mut failed_calls = Vec::new();
    for r in &all {
        for s in h.store().steps(&r.id).await.unwrap() {
            if let StepBody::ToolCall { call, outcome, .. } = &s.body
                && s.status == StepStatus::Completed
                && call.tool != "delegate"
                && !rejected.contains(&call.call_id.as_str())
                && !outcome
                    .as_ref()
                    .is_some_and(|o| o.content.starts_with("not run:"))
            {
                let ok = outcome.as_ref().is_some_and(|o| o.ok);
                if let Some(o) = outcome.as_ref().filter(|o| !o.ok) {
                    failed_calls.push(format!("{} ({}): {}", call.call_id, call.tool, o.content));
                }
                completed.insert(call.call_id.to_string(), (call.tool.clone(), ok));
            }
        }
    }
    for (call, (tool, ok)) in &completed {
        let n = log_counts(root, tool).get(call).copied().unwrap_or(0);
        let allowed = 1 + reruns.iter().filter(|c| *c == call).count();
        assert!(
            (n >= 1 || !ok) && n <= allowed,
            "completed call {call} ({tool}, ok: {ok}) ran {n} times ({} re-runs recorded)",
            allowed - 1
        );
    }

    let mut decided: HashMap<&str, usize> = HashMap::new();
    for e in events
        .iter()
        .filter(|e| e.kind == EventKind::ApprovalResolved)
    {
        *decided
            .entry(e.payload["approval_id"].as_str().unwrap())
            .or_insert(0) += 1;
    }
    assert!(
        decided.values().all(|&n| n == 1),
        "an approval was decided twice: {decided:?}"
    );
    assert_eq!(h.store().integrity_check().await.unwrap(), Ok(()));
    let interrupted = events
        .iter()
        .filter(|e| e.kind == EventKind::ToolInterrupted)
        .count();
    Outcome {
        requests: all.len(),
        events,
        interrupted,
        failed_calls,
    }
}

/// `serve` on a workspace, its log (stderr, no colour) in a file (`serve.log` beside it);
/// killed if the test ends without stopping it.
struct Serve {
    child: Option<Child>,
    log: PathBuf,
}

impl Serve {
    fn start(root: &Path) -> Serve {
        Serve::logging_to(root, root.join("serve.log"))
    }

    fn logging_to(root: &Path, log: PathBuf) -> Serve {
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--workspace"])
            .arg(root)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn serve");
        Serve {
            child: Some(child),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; the graceful stop must succeed.
    fn stop(mut self) {
        worker::terminate(self.child.take().unwrap());
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            worker::kill9(child);
        }
    }
}

struct Cli {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cli(root: &Path, args: &[&str]) -> Cli {
    let out = Command::new(BIN)
        .args(args)
        .arg("--workspace")
        .arg(root)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    Cli {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `runtime health --json`: its exit status and the checks that were not ok.
fn health(root: &Path) -> (i32, String) {
    let out = cli(root, &["runtime", "health", "--json"]);
    let problems = match serde_json::from_str::<serde_json::Value>(&out.stdout) {
        Ok(v) => v["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["status"] != "ok")
            .map(|c| format!("{} {}: {}", c["status"], c["name"], c["detail"]))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(_) => format!("no report: {}{}", out.stdout, out.stderr),
    };
    (out.code, problems)
}

fn assert_healthy(root: &Path) {
    let (code, problems) = health(root);
    assert_eq!(code, 0, "runtime health is not ok at the end:\n{problems}");
}

/// Waits until the workload is under way: some requests done, others running.
async fn wait_until_under_way(h: &Harness) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        worker::decide_pending(h).await;
        if count_status(h, RequestStatus::Completed).await >= 4
            && count_status(h, RequestStatus::Running).await > 0
        {
            return;
        }
        assert!(Instant::now() < deadline, "the workload never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Requests whose runs ended on a failed commit and went back on the queue, by the
/// run itself or by the safety net.
fn put_back_after_store_failure(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| {
            (e.kind == EventKind::RequestRequeued
                && e.payload["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("a store write failed")))
                || e.kind == EventKind::RequestRepaired
        })
        .count()
}

#[test]
fn a_write_lock_held_past_the_retry_budget_strands_nothing_and_repeats_nothing() {
    let _serial = one_at_a_time();
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = root.join(".agent-harness");
    workspace(&root, &store, 20);
    let h = Harness::open(&root).unwrap();
    let ids = rt.block_on(admit(&h, 0, 40));
    let serve = Serve::start(&root);
    wait_for_holder(&h, serve.pid());
    rt.block_on(wait_until_under_way(&h));

    // Another process takes the write lock and keeps it past two of the writer's 10 s
    // budgets: the writer's first batch may hold only a heartbeat or a repair (it
    // fails at 10 s, and the commits queued behind it would then succeed once the
    // lock goes); the second holds the runs' commits queued meanwhile, and fails too.
    let lock = rusqlite::Connection::open(store.join("harness.db")).unwrap();
    lock.busy_timeout(Duration::from_secs(5)).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let held = Instant::now();
    // An admission meanwhile fails once the budget is spent, and keeps nothing.
    let admission = Command::new(BIN)
        .args(["request", "--agent", "worker", "--workspace"])
        .arg(&root)
        .arg("admitted while the store was locked")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut health_seen = Vec::new();
    while held.elapsed() < Duration::from_secs(21) {
        let (code, problems) = health(&root);
        health_seen.push((held.elapsed(), code, problems));
        std::thread::sleep(Duration::from_millis(700));
    }
    let admission = admission.wait_with_output().unwrap();
    let log_while_held = serve.log();
    lock.execute_batch("ROLLBACK").unwrap();
    let hold = held.elapsed();
    drop(lock);

    let took = rt.block_on(settle(&h, Duration::from_secs(90)));
    assert_healthy(&root);
    let out = rt.block_on(check_invariants(&h, &root, &ids, 0));
    serve.stop();

    // Visible while it lasted: the worker logged why its writes failed, and health
    // said something is wrong before the lock was released.
    assert!(
        log_while_held.contains("database is locked")
            && log_while_held.contains("another process held the store's write lock"),
        "serve logged nothing about the held lock:\n{log_while_held}"
    );
    assert!(
        health_seen.iter().any(|(_, code, problems)| *code == 6
            && problems.contains("\"worker\"")
            && problems.contains("write lock")),
        "runtime health did not warn during a {hold:?} write lock: {health_seen:#?}"
    );
    // The admission failed with a message saying why and what to do, and kept nothing.
    let err = String::from_utf8_lossy(&admission.stderr);
    assert!(
        !admission.status.success() && err.contains("locked") && err.contains("retry"),
        "admission during the held lock: {admission:?}"
    );
    let kept = rt
        .block_on(workload_requests(&h))
        .into_iter()
        .filter(|r| r.input.contains("while the store was locked"))
        .count();
    assert_eq!(kept, 0, "a failed admission left a request behind");
    // Runs whose commits failed went back on the queue, saying why.
    let put_back = put_back_after_store_failure(&out.events);
    assert!(put_back > 0, "no run ended on the held lock");
    eprintln!(
        "lock held {hold:?}: {} requests, {} events, {put_back} put back after a failed commit, \
         {} calls interrupted, settled {took:?} after the release; health while held: {:?}",
        out.requests,
        out.events.len(),
        out.interrupted,
        health_seen
            .iter()
            .map(|(t, c, _)| format!("{:.1}s:{c}", t.as_secs_f64()))
            .collect::<Vec<_>>()
    );
}

/// A tmpfs mounted on a new folder, unmounted on drop (also when a test panics).
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (after printing `skipped: …`) when this process may not mount one; a
    /// failure instead under `AGENT_HARNESS_REQUIRE_ROOT_TESTS=1`.
    fn mount(size: &str, test: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let why = match Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
        {
            Ok(o) if o.status.success() => return Some(Tmpfs { path, _dir: dir }),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => format!("cannot run mount: {e}"),
        };
        assert_ne!(
            std::env::var("AGENT_HARNESS_REQUIRE_ROOT_TESTS").as_deref(),
            Ok("1"),
            "{test}: cannot mount a tmpfs ({why}), and AGENT_HARNESS_REQUIRE_ROOT_TESTS=1 requires it"
        );
        println!("skipped: {test} needs to mount a tmpfs (run it as root): {why}");
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let done = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !done {
            // Still in use (a process not yet gone): detach it now, freed when closed.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Writes zeros to `path` until the filesystem has only about `leave` bytes free;
/// returns how many it wrote.
fn fill_leaving(path: &Path, leave: u64) -> u64 {
    let free = {
        let c =
            std::ffi::CString::new(path.parent().unwrap().as_os_str().as_encoded_bytes()).unwrap();
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a NUL-terminated path; statvfs writes one struct into `s`.
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
        s.f_bavail as u64 * s.f_frsize as u64
    };
    let mut f = std::fs::File::create(path).unwrap();
    let buf = vec![0u8; 1 << 20];
    let mut written = 0;
    while written + leave < free {
        written += f.write(&buf).unwrap() as u64;
    }
    written
}

/// Writes zeros to `path` until the filesystem has no space left; returns how many.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let mut written = 0;
    for chunk in [1 << 20, 4096] {
        let buf = vec![0u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
    written
}

#[test]
fn a_full_disk_under_serve_ends_runs_visibly_then_loses_and_repeats_nothing() {
    let _serial = one_at_a_time();
    // Over 1 GiB: health warns below that much free space, and must be ok at the end.
    let Some(fs) = Tmpfs::mount(
        "1200m",
        "a_full_disk_under_serve_ends_runs_visibly_then_loses_and_repeats_nothing",
    ) else {
        return;
    };
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    workspace(&root, &fs.path.join("store"), 40);
    let h = Harness::open(&root).unwrap();
    let ids = rt.block_on(admit(&h, 0, 80));
    // Most of the disk is taken before the worker starts, so that filling the rest
    // under it takes a moment, not seconds: on a slow machine the workload could
    // otherwise be nearly done by the time the disk is full, and no run meet it.
    let prefill = fs.path.join("prefill");
    fill_leaving(&prefill, 96 << 20);
    // Its log on the same disk, as usual: what it logs while the disk is full is lost.
    let serve = Serve::logging_to(&root, fs.path.join("serve.log"));
    wait_for_holder(&h, serve.pid());
    rt.block_on(wait_until_under_way(&h));

    let filler = fs.path.join("filler");
    // Approvals are decided while the disk fills, so runs are under way when it is full.
    let filling = std::thread::spawn({
        let filler = filler.clone();
        move || fill(&filler)
    });
    while !filling.is_finished() {
        rt.block_on(worker::decide_pending(&h));
    }
    let filled = filling.join().unwrap();
    let full = Instant::now();
    let admission = cli(
        &root,
        &[
            "request",
            "--agent",
            "worker",
            "admitted while the disk was full",
        ],
    );
    let mut health_seen = Vec::new();
    while full.elapsed() < Duration::from_secs(5) {
        health_seen.push((full.elapsed(), health(&root)));
        rt.block_on(worker::decide_pending(&h));
        std::thread::sleep(Duration::from_millis(500));
    }
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(&prefill).unwrap();
    let full_for = full.elapsed();

    let took = rt.block_on(settle(&h, Duration::from_secs(90)));
    assert_healthy(&root);
    let out = rt.block_on(check_invariants(&h, &root, &ids, 0));
    serve.stop();

    // Visible while it lasted: health failed on the disk (serve's log could not be
    // written).
    assert!(
        health_seen
            .iter()
            .all(|(_, (code, problems))| *code == 7 && problems.contains("\"disk\"")),
        "runtime health did not fail on the full disk: {health_seen:#?}"
    );
    // An admission that no longer fits failed saying so and kept nothing (one that
    // still fitted in the store's files was admitted and completed like the rest).
    let kept = rt
        .block_on(workload_requests(&h))
        .into_iter()
        .filter(|r| r.input.contains("while the disk was full"))
        .count();
    if admission.code == 0 {
        assert_eq!(kept, 1, "an admission that succeeded was lost");
    } else {
        assert!(
            admission.stderr.contains("full") && kept == 0,
            "admission on a full disk: exit {}, {kept} kept\n{}{}",
            admission.code,
            admission.stdout,
            admission.stderr
        );
    }
    // Runs whose commits failed ended visibly once space returned: re-queued by
    // themselves, or repaired by the safety net when their re-queue failed too.
    let put_back = put_back_after_store_failure(&out.events);
    assert!(
        put_back > 0,
        "no run ended on the full disk ({} requests, {} events, filled {} MiB, full for {full_for:?})",
        out.requests,
        out.events.len(),
        filled >> 20
    );
    eprintln!(
        "disk full for {full_for:?} ({} MiB of filler): {} requests, {} events, {put_back} put back \
         or repaired, {} calls interrupted, calls failed: {:?}; admission exit {}; settled {took:?} \
         after space returned; health while full: {:?}",
        filled >> 20,
        out.requests,
        out.events.len(),
        out.interrupted,
        out.failed_calls,
        admission.code,
        health_seen
            .iter()
            .map(|(t, (c, _))| format!("{:.1}s:{c}", t.as_secs_f64()))
            .collect::<Vec<_>>()
    );
}

/// Waits (longer than [`wait_for_holder`]: `serve` checks a large store whole
/// before it starts) until `pid` holds the workspace.
fn wait_for_serve(h: &Harness, pid: u32, within: Duration) {
    worker::wait_for_holder_within(h, pid, within);
}

fn maintenance(root: &Path, extra: &[&str]) -> Cli {
    let mut args = vec!["runtime", "maintenance", "--older-than", "1d", "--json"];
    args.extend_from_slice(extra);
    cli(root, &args)
}

/// Longest wait between two consecutive steps of one workload request among the
/// events committed between `since` and `until` (ms): a model turn after the
/// previous step, a call's completion after its start (the tools take 100 ms, the
/// model 20 ms). Delegations (which wait for their child) are left out.
fn longest_step_gap(events: &[Event], since: i64, until: i64) -> Duration {
    let step = |e: &Event| {
        matches!(
            e.kind,
            EventKind::ModelTurn | EventKind::ToolStarted | EventKind::ToolCompleted
        ) && e.payload["tool"] != "delegate"
    };
    let mut last: HashMap<&RequestId, &Event> = HashMap::new();
    let mut worst = 0;
    for e in events {
        let Some(id) = e.request_id.as_ref() else {
            continue;
        };
        if let Some(prev) = last.insert(id, e)
            && step(prev)
            && step(e)
            && e.kind != EventKind::ToolStarted
            && e.at.0 >= since
            && e.at.0 <= until
        {
            worst = worst.max(e.at.0 - prev.at.0);
        }
    }
    Duration::from_millis(worst as u64)
}

#[test]
fn maintenance_beside_serve_on_a_large_store_fails_nothing_and_strands_nothing() {
    let _serial = one_at_a_time();
    let mb: usize = std::env::var("BUSY_STORE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = root.join(".agent-harness");
    workspace(&root, &store, 20);

    // The bench's shape (100,000 requests and 1,000,000 events make ~411 MiB), spread
    // over the last 7 days: `--older-than 1d` prunes about six sevenths of it.
    let requests = (mb * 100_000 / 411).max(500);
    let spec = SyntheticSpec {
        requests,
        events: requests * 10,
        sessions: requests / 5,
        queued: 0,
        running: 0,
        waiting_approval: 0,
        failed: requests / 50,
        cancelled: requests / 500,
        now: SystemClock.now(),
        span: Duration::from_secs(7 * 24 * 3600),
        ..SyntheticSpec::default()
    };
    let generated = generate(&store, &spec).unwrap();
    let h = Harness::open(&root).unwrap();
    let from_seq = rt.block_on(h.store().last_seq()).unwrap();
    let mut ids = rt.block_on(admit(&h, 0, 60));
    let serve = Serve::start(&root);
    wait_for_serve(&h, serve.pid(), Duration::from_secs(300));
    rt.block_on(wait_until_under_way(&h));

    // Compaction is refused while serve runs, before it touches anything.
    let refused = maintenance(&root, &["--vacuum"]);
    assert!(
        refused.code == 3
            && refused.stderr.contains("--vacuum")
            && refused.stderr.contains("stop it first"),
        "--vacuum beside serve: exit {}\n{}",
        refused.code,
        refused.stderr
    );
    let would = maintenance(&root, &["--dry-run"]);
    assert_eq!(would.code, 0, "{}", would.stderr);
    let would: serde_json::Value = serde_json::from_str(&would.stdout).unwrap();

    // Prune while serve runs the workload, admitting more meanwhile (each admission
    // is a commit from another process: its latency is the prune's cost to writers).
    let pruning = Command::new(BIN)
        .args(["runtime", "maintenance", "--older-than", "1d", "--json"])
        .arg("--workspace")
        .arg(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let prune_started = Instant::now();
    let prune_from = SystemClock.now().0;
    let mut latencies = Vec::new();
    let mut health_during = Vec::new();
    let mut next = ids.len();
    let mut pruning = Some(pruning);
    let pruned = loop {
        if let Some(status) = pruning.as_mut().unwrap().try_wait().unwrap() {
            let out = pruning.take().unwrap().wait_with_output().unwrap();
            assert!(
                status.success(),
                "maintenance failed beside serve: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            break serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
        }
        let started = Instant::now();
        let admitted = rt.block_on(admit(&h, next, 1));
        latencies.push(started.elapsed());
        ids.extend(admitted);
        next += 1;
        rt.block_on(worker::decide_pending(&h));
        if health_during.len() < latencies.len() / 5 {
            health_during.push(health(&root));
        }
        std::thread::sleep(Duration::from_millis(150));
    };
    let prune_took = prune_started.elapsed();
    let prune_until = SystemClock.now().0;

    let took = rt.block_on(settle(&h, Duration::from_secs(120)));
    assert_healthy(&root);
    let out = rt.block_on(check_invariants(&h, &root, &ids, from_seq));
    serve.stop();

    // With serve stopped, --vacuum compacts, and the store is healthy after it.
    let vacuum_started = Instant::now();
    let vacuumed = maintenance(&root, &["--vacuum"]);
    let vacuum_took = vacuum_started.elapsed();
    assert_eq!(vacuumed.code, 0, "{}", vacuumed.stderr);
    let vacuumed: serde_json::Value = serde_json::from_str(&vacuumed.stdout).unwrap();
    assert_eq!(vacuumed["vacuum"], true);
    assert!(
        vacuumed["bytes_after"].as_u64() < vacuumed["bytes_before"].as_u64(),
        "{vacuumed}"
    );
    assert_healthy(&root);

    // The prune removed what the dry run counted (old generated requests only), and
    // did not stop the worker or the admissions beside it.
    let finished = generated.completed + generated.failed + generated.cancelled;
    assert!(
        pruned["requests"].as_u64().unwrap() > finished / 2,
        "pruned {pruned} of {finished} finished requests"
    );
    assert_eq!(pruned["requests"], would["requests"], "{pruned}\n{would}");
    assert_eq!(pruned["events"], would["events"], "{pruned}\n{would}");
    latencies.sort();
    let worst = *latencies.last().unwrap();
    // Short transactions: no commit waits for a large share of the prune.
    let bound = (prune_took / 3).min(Duration::from_secs(2));
    assert!(
        worst < bound,
        "an admission waited {worst:?} beside a {prune_took:?} prune: {latencies:?}"
    );
    let step_gap = longest_step_gap(&out.events, prune_from, prune_until);
    let during = out
        .events
        .iter()
        .filter(|e| e.at.0 >= prune_from && e.at.0 <= prune_until)
        .count();
    assert!(
        during > 0,
        "no workload commit during the {prune_took:?} prune"
    );
    for (code, problems) in &health_during {
        assert_eq!(*code, 0, "runtime health during the prune:\n{problems}");
    }
    eprintln!(
        "store of {} MiB ({} requests, {} events) generated in {:.1?}; prune beside serve took \
         {prune_took:.1?} and removed {} requests, {} events; meanwhile {during} workload events, \
         {} admissions (worst commit {worst:?}, median {:?}), longest pause between a request's \
         steps {step_gap:?}; {} requests settled {took:.1?} after; vacuum took {vacuum_took:.1?}: \
         {} -> {} MiB",
        generated.db_bytes >> 20,
        generated.requests,
        generated.events,
        generated.elapsed,
        pruned["requests"],
        pruned["events"],
        latencies.len(),
        latencies[latencies.len() / 2],
        out.requests,
        vacuumed["bytes_before"].as_u64().unwrap() >> 20,
        vacuumed["bytes_after"].as_u64().unwrap() >> 20,
    );
}
