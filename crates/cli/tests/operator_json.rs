//! `--json` output of every operator command, checked against the fields
//! documented in docs/cli-json.md.

mod common;

use common::{Demo, Run, T0, T3};
use serde_json::Value;

/// Fails unless `v` is an object holding every one of `fields`.
fn has(v: &Value, fields: &[&str]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    for f in fields {
        assert!(obj.contains_key(*f), "missing `{f}` in {v:#}");
    }
}

const REQUEST: &[&str] = &[
    "id",
    "session_id",
    "agent",
    "parent_id",
    "status",
    "attempt",
    "current_agent",
    "input",
    "output",
    "error",
    "trace_id",
    "created_at",
    "started_at",
    "last_activity_at",
    "finished_at",
    "steps",
    "worker_id",
];
const APPROVAL: &[&str] = &[
    "id",
    "request_id",
    "session_id",
    "agent",
    "step_idx",
    "call_id",
    "tool",
    "arguments",
    "status",
    "decided_by",
    "message",
    "edited_arguments",
    "created_at",
    "decided_at",
    "expires_at",
];
const EVENT: &[&str] = &["seq", "at", "kind", "request_id", "session_id", "payload"];

/// One JSON value per line (the streaming commands).
fn lines(r: &Run) -> Vec<Value> {
    r.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn views_of_a_paused_request() {
    let demo = Demo::new();
    let p = demo.paused();
    let j = |args: &[&str]| {
        let mut a = args.to_vec();
        a.push("--json");
        demo.at(T3, &a)
    };

    let o = j(&["runtime", "overview"]).ok().json();
    has(
        &o,
        &[
            "workspace",
            "now",
            "worker",
            "workers",
            "health",
            "queue",
            "approvals",
            "stuck",
            "recent",
            "last_activity",
        ],
    );
    has(&o["workspace"], &["name", "root", "store"]);
    has(
        &o["worker"],
        &[
            "alive",
            "worker_id",
            "pid",
            "last_heartbeat_at",
            "last_heartbeat_age_ms",
            "shared",
        ],
    );
    // SQLite: one worker at a time; the in-process run's worker stopped 3 min ago.
    assert_eq!(o["worker"]["shared"], false);
    let workers = o["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{workers:?}");
    has(
        &workers[0],
        &[
            "id",
            "host",
            "pid",
            "version",
            "state",
            "started_at",
            "heartbeat_at",
            "heartbeat_age_ms",
            "stopped_at",
            "running",
        ],
    );
    assert_eq!(workers[0]["state"], "stopped");
    assert_eq!(workers[0]["running"], 0);
    assert_eq!(workers[0]["heartbeat_age_ms"], 180_000);
    assert_eq!(workers[0]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(workers[0]["id"], o["worker"]["worker_id"]);
    has(&o["health"], &["status", "problems"]);
    has(
        &o["queue"],
        &["queued", "running", "waiting_approval", "capacity", "slots"],
    );
    has(
        &o["approvals"],
        &["pending", "oldest_created_at", "oldest_age_ms"],
    );
    has(
        &o["last_activity"],
        &["at", "age_ms", "seq", "kind", "request_id"],
    );
    assert_eq!(o["approvals"]["pending"], 1);
    assert_eq!(o["approvals"]["oldest_age_ms"], 180_000);
    assert_eq!(o["worker"]["alive"], false);
    let recent = &o["recent"][0];
    has(recent, REQUEST);
    has(&recent["delegates"][0], &["id", "agent", "status"]);
    assert_eq!(recent["delegates"][0]["agent"], "researcher");

    let h = j(&["runtime", "health"]);
    let report = h.json();
    has(&report, &["status", "at", "checks"]);
    for c in report["checks"].as_array().unwrap() {
        has(c, &["name", "status", "detail"]);
    }

    let w = j(&[
        "runtime",
        "approvals",
        "watch",
        "--status",
        "pending",
        "--once",
    ])
    .ok();
    let snap = &lines(&w)[0];
    has(snap, &["now", "approvals"]);
    has(&snap["approvals"][0], APPROVAL);

    let a = j(&["runtime", "approvals", "show", &p.approval])
        .ok()
        .json();
    has(&a, APPROVAL);
    assert_eq!(a["status"], "pending");

    let t = j(&["runtime", "requests", "tail", "--once"]).ok();
    let snap = &lines(&t)[0];
    has(snap, &["now", "cursor", "requests"]);
    has(&snap["requests"][0], REQUEST);
    has(&snap["requests"][0], &["delegates", "recent_events"]);
    has(&snap["requests"][0]["recent_events"][0], EVENT);

    let tree = j(&["runtime", "requests", "show", &p.request]).ok().json();
    has(
        &tree,
        &["request", "duration_ms", "steps", "approvals", "artifacts"],
    );
    let delegate = &tree["steps"][1];
    has(
        delegate,
        &[
            "request_id",
            "idx",
            "agent",
            "status",
            "started_at",
            "finished_at",
            "body",
            "duration_ms",
            "approval",
            "artifacts",
            "child",
        ],
    );
    assert_eq!(delegate["child"]["request"]["agent"], "researcher");
    assert_eq!(tree["steps"][3]["approval"]["status"], "pending");
}

#[test]
fn lists_events_sessions_and_actions() {
    let demo = Demo::new();
    let p = demo.paused();
    let j = |now: &str, args: &[&str]| {
        let mut a = args.to_vec();
        a.push("--json");
        demo.at(now, &a)
    };

    let l = j(T3, &["runtime", "requests", "list", "--all"]).ok().json();
    has(&l, &["now", "requests"]);
    assert_eq!(l["requests"].as_array().unwrap().len(), 2);

    let s = j(T3, &["runtime", "sessions", "list"]).ok().json();
    has(
        &s["sessions"][0],
        &[
            "id",
            "created_at",
            "last_activity_at",
            "requests",
            "active_requests",
            "last_request_id",
            "last_agent",
        ],
    );
    let s = j(T3, &["runtime", "sessions", "show", "s1"]).ok().json();
    has(&s, &["now", "session", "requests"]);

    let e = j(T3, &["runtime", "events", "--request", &p.request]).ok();
    let events = lines(&e);
    assert!(events.len() > 5);
    events.iter().for_each(|e| has(e, EVENT));
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    let mut args = p.approve_args();
    args.push("--json");
    let r = demo.at(T3, &args).ok().json();
    has(&r, &["approval", "handled_by", "request"]);
    assert_eq!(r["handled_by"]["by"], "in_process");
    assert_eq!(r["approval"]["decided_by"], "alice");
    assert_eq!(r["approval"]["decided_by_kind"], "cli");
    assert_eq!(r["request"]["status"], "completed");

    let retry = j(T3, &["runtime", "requests", "retry", &p.request])
        .ok()
        .json();
    has(&retry, &["retried_from", "request"]);
    let new_id = retry["request"]["id"].as_str().unwrap().to_string();
    assert_eq!(retry["request"]["status"], "queued");
    assert_eq!(retry["request"]["retry_of"], p.request.as_str());
    // Linked both ways: the original lists its retry.
    let original = j(T3, &["runtime", "requests", "show", &p.request])
        .ok()
        .json();
    assert_eq!(original["retries"][0]["id"], new_id.as_str());
    assert_eq!(original["retries"][0]["status"], "queued");
    let shown = demo
        .at(T3, &["runtime", "requests", "show", &p.request])
        .ok();
    assert!(
        shown
            .stdout
            .contains(&format!("retried as: {new_id} (queued)")),
        "{}",
        shown.stdout
    );
    let shown = demo.at(T3, &["runtime", "requests", "show", &new_id]).ok();
    assert!(
        shown.stdout.contains(&format!("retry of: {}", p.request)),
        "{}",
        shown.stdout
    );
    // A request still queued is not retried (and nothing is admitted).
    j(T3, &["runtime", "requests", "retry", &new_id]).expect(3);

    let c = j(T3, &["runtime", "requests", "cancel", &new_id])
        .ok()
        .json();
    has(&c, REQUEST);
    assert_eq!(c["status"], "cancelled");

    let m = j(
        T3,
        &["runtime", "maintenance", "--older-than", "1m", "--dry-run"],
    )
    .ok()
    .json();
    has(
        &m,
        &[
            "dry_run",
            "vacuum",
            "older_than_ms",
            "cutoff",
            "requests",
            "steps",
            "events",
            "approvals",
            "artifacts",
            "artifact_bytes",
            "sessions",
            "bytes_before",
            "bytes_after",
        ],
    );
    assert_eq!(m["requests"], 0, "nothing finished before T3 - 1m");
}

#[test]
fn resume_runs_a_queued_request_in_process() {
    let demo = Demo::new();
    let r = demo.at(
        T0,
        &[
            "request",
            "--agent",
            "assistant",
            "--session",
            "s9",
            "go",
            "--json",
        ],
    );
    let id = r.ok().json()["id"].as_str().unwrap().to_string();
    let out = demo
        .at(T0, &["runtime", "requests", "resume", &id, "--json"])
        .ok()
        .json();
    has(&out, &["handled_by", "request"]);
    assert_eq!(out["request"]["status"], "waiting_approval");
}

#[test]
fn errors_are_json_on_stderr() {
    let demo = Demo::new();
    demo.paused();
    let r = demo
        .at(T3, &["runtime", "requests", "show", "req_nope", "--json"])
        .expect(2);
    let v: Value = serde_json::from_str(r.stderr.trim()).unwrap();
    has(&v["error"], &["code", "message", "exit_code"]);
    assert_eq!(v["error"]["code"], "not_found");
    assert_eq!(v["error"]["exit_code"], 2);
}
