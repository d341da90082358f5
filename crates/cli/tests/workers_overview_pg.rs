//! `runtime overview` and `runtime health` list every `serve` process sharing one
//! PostgreSQL store, and flag a dead one: two workers are listed alive with their
//! pids; one stopped cleanly is no problem; one SIGKILLed while it runs a request
//! is `dead` holding it (health fails, exit 7), and once a new worker re-claimed
//! the request, the dead one is still flagged (health warns, exit 6).

mod worker;

use worker::{pg_stores, write};

use harness_core::SessionId;
use harness_engine::Harness;
use harness_store::testing::TestSchema;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// One agent whose only call sleeps 30 s (idempotent: re-run after a crash), so a
/// request stays `running` on the worker that claimed it.
fn workspace(root: &Path, schema: &str) {
    write(
        root,
        "config/workspace.yaml",
        "name: fleet\nruntime:\n  stop_timeout: 1s\n",
    );
    pg_stores(root, schema, "");
    write(
        root,
        "config/models.yaml",
        "models:\n  scripted:\n    provider: scripted\n    script: resources/scripts/slow.yaml\n",
    );
    write(
        root,
        "config/tools.yaml",
        "tools:\n  nap:\n    command: [\"sleep\", \"30\"]\n    approval: never\n    idempotent: true\n    timeout: 60s\n",
    );
    write(
        root,
        "config/agents/slow.yaml",
        "name: slow\nmodel: scripted\ntools: [nap]\nmax_steps: 5\n",
    );
    write(
        root,
        "resources/scripts/slow.yaml",
        "agents:\n  slow:\n    turns:\n      - tool_calls: [{tool: nap, arguments: {}}]\n      - text: done\n",
    );
}

/// `agent-harness runtime ARGS --json --workspace ROOT`: exit code and document.
fn runtime(root: &Path, args: &[&str]) -> (i32, Value) {
    runtime_at(root, None, args)
}

/// [`runtime`] with the view's clock at `now` (`AGENT_HARNESS_NOW`), if given.
fn runtime_at(root: &Path, now: Option<&str>, args: &[&str]) -> (i32, Value) {
    let mut c = Command::new(worker::BIN);
    if let Some(now) = now {
        c.env("AGENT_HARNESS_NOW", now);
    }
    let out = c
        .arg("runtime")
        .args(args)
        .arg("--json")
        .arg("--workspace")
        .arg(root)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), doc)
}

/// The overview's entry for the worker with `pid`.
fn by_pid(o: &Value, pid: u32) -> Option<Value> {
    o["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["pid"] == pid)
        .cloned()
}

/// Polls `runtime overview` until `ok` holds (up to 20 s), and returns it.
fn overview_until(root: &Path, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, o) = runtime(root, &["overview"]);
        assert_eq!(code, 0, "{o}");
        if ok(&o) {
            return o;
        }
        assert!(
            Instant::now() < deadline,
            "overview never showed {what}:\n{o:#}\n{}",
            worker::serve_log(root)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `worker` check of `runtime health`, with the exit code.
fn worker_check(root: &Path) -> (i32, String, String) {
    worker_check_at(root, None)
}

/// [`worker_check`] as seen at `now`.
fn worker_check_at(root: &Path, now: Option<&str>) -> (i32, String, String) {
    let (code, report) = runtime_at(root, now, &["health"]);
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "worker")
        .cloned()
        .unwrap_or_else(|| panic!("no worker check: {report:#}"));
    (
        code,
        check["status"].as_str().unwrap().to_string(),
        check["detail"].as_str().unwrap().to_string(),
    )
}

fn state(w: &Option<Value>) -> Option<&str> {
    w.as_ref().and_then(|w| w["state"].as_str())
}

#[test]
fn overview_and_health_list_every_worker_and_flag_a_dead_one() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    workspace(&root, &schema.config.schema);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();

    // The store exists before the workers start (views never create it).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = Harness::open(&root).unwrap();

    // Two workers: both listed alive, with their pids, host and version.
    let a = worker::serve(&root);
    let b = worker::serve(&root);
    let (pa, pb) = (a.id(), b.id());
    let o = overview_until(&root, "both workers alive", |o| {
        [pa, pb]
            .iter()
            .all(|p| state(&by_pid(o, *p)) == Some("alive"))
    });
    assert_eq!(o["worker"]["shared"], true);
    assert_eq!(o["worker"]["alive"], true);
    for p in [pa, pb] {
        let w = by_pid(&o, p).unwrap();
        assert_eq!(w["host"], host.as_str(), "{w}");
        assert_eq!(w["version"], env!("CARGO_PKG_VERSION"), "{w}");
        assert_eq!(w["running"], 0, "{w}");
        assert!(w["id"].as_str().unwrap().starts_with("wrk_"), "{w}");
        assert!(w["stopped_at"].is_null(), "{w}");
        assert!(w["heartbeat_age_ms"].as_i64().unwrap() < 10_000, "{w}");
    }
    let (_, status, detail) = worker_check(&root);
    assert_eq!(status, "ok", "{detail}");
    for p in [pa, pb] {
        assert!(detail.contains(&format!("(pid {p})")), "{detail}");
    }
    assert!(detail.contains("2 worker(s) alive"), "{detail}");

    // The human view: a table of both.
    let out = Command::new(worker::BIN)
        .args(["runtime", "overview", "--workspace"])
        .arg(&root)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(text.contains("workers    2 alive"), "{text}");
    assert!(text.contains("WORKER"), "{text}");
    for p in [pa, pb] {
        let row = text
            .lines()
            .find(|l| l.contains(&format!(" {p} ")))
            .unwrap_or_else(|| panic!("no row for pid {p}:\n{text}"));
        assert!(
            row.contains(&host) && row.trim_end().ends_with("alive"),
            "{row}"
        );
    }

    // A request runs on one of them (the one whose claim took it).
    rt.block_on(h.request(Some(SessionId::parse("s1").unwrap()), "slow", "go"))
        .unwrap();
    let o = overview_until(&root, "the request running on a worker", |o| {
        [pa, pb]
            .iter()
            .any(|p| by_pid(o, *p).is_some_and(|w| w["running"] == 1))
    });
    let (mut busy, mut idle): (Child, Child) = (a, b);
    if by_pid(&o, pa).unwrap()["running"] != 1 {
        std::mem::swap(&mut busy, &mut idle);
    }
    let (busy_pid, idle_pid) = (busy.id(), idle.id());

    // Seen a minute later (the view's clock moved, the heartbeats not: both workers
    // silent, hung or SIGSTOPped): the busy one is past its 15 s lease holding a
    // request (fail), the idle one only late (warn).
    let later = harness_core::Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            + 60_000,
    )
    .to_rfc3339();
    let (code, status, detail) = worker_check_at(&root, Some(&later));
    assert_eq!((code, status.as_str()), (7, "fail"), "{detail}");
    assert!(
        detail.contains(&format!(
            "(pid {busy_pid}) last heartbeat 1m ago, holds 1 running request(s); its lease (15s) lapsed"
        )),
        "{detail}"
    );
    assert!(
        detail.contains(&format!(
            "(pid {idle_pid}) is alive but its last heartbeat was 1m ago"
        )),
        "{detail}"
    );

    // The idle one stops cleanly: listed `stopped`, no problem.
    worker::terminate(idle);
    // The busy one is killed: `dead`, still holding its request, and no worker is
    // alive to take it over: health fails (exit 7), naming it.
    worker::kill9(busy);
    let o = overview_until(&root, "one stopped, one dead", |o| {
        state(&by_pid(o, idle_pid)) == Some("stopped")
            && state(&by_pid(o, busy_pid)) == Some("dead")
    });
    assert_eq!(o["worker"]["alive"], false);
    assert_eq!(by_pid(&o, busy_pid).unwrap()["running"], 1, "{o:#}");
    assert!(!by_pid(&o, idle_pid).unwrap()["stopped_at"].is_null());
    let (code, status, detail) = worker_check(&root);
    assert_eq!((code, status.as_str()), (7, "fail"), "{detail}");
    assert!(
        detail.contains(&format!("(pid {busy_pid}) died without stopping"))
            && detail.contains("holding 1 running request(s)")
            && detail.contains("no worker is alive"),
        "{detail}"
    );
    assert!(
        !detail.contains(&format!("pid {idle_pid}")),
        "a cleanly stopped worker is no problem: {detail}"
    );

    // A new worker takes the request over: the dead one holds nothing now, but is
    // still flagged (health warns, exit 6); the new one is listed alive, running it.
    let c = worker::serve(&root);
    let pc = c.id();
    let o = overview_until(&root, "the new worker running the request", |o| {
        by_pid(o, pc).is_some_and(|w| w["running"] == 1 && w["state"] == "alive")
    });
    assert_eq!(by_pid(&o, busy_pid).unwrap()["running"], 0, "{o:#}");
    assert_eq!(state(&by_pid(&o, busy_pid)), Some("dead"));
    assert_eq!(state(&by_pid(&o, idle_pid)), Some("stopped"));
    // Newest first.
    assert_eq!(o["workers"][0]["pid"], pc, "{o:#}");
    let (code, status, detail) = worker_check(&root);
    assert_eq!((code, status.as_str()), (6, "warn"), "{detail}");
    assert!(
        detail.contains(&format!("(pid {busy_pid}) died without stopping"))
            && detail.contains("it holds no running request")
            && detail.contains(&format!("(pid {pc}), last heartbeat")),
        "{detail}"
    );
    worker::terminate(c);
}
