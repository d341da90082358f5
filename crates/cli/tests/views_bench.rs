//! Benchmark of the operator views on a large store (printed figures, not a timed test).
//!
//! Fills a demo workspace's store with 100,000 requests and 1,000,000 events (a mix of
//! completed, failed, delegating, waiting-for-approval, stuck and queued requests over
//! 30 days), then runs `overview`, `approvals watch --once`, `requests tail --once`,
//! `requests show` and a few more as whole processes, and prints the median wall time
//! of each. Target: each under 100 ms. Run it with
//!
//! ```text
//! cargo test --release -p harness-cli --test views_bench -- --ignored --nocapture
//! ```
//!
//! `VIEWS_BENCH_REQUESTS` changes the size (10 events per request); `VIEWS_BENCH_DIR`
//! keeps the filled workspace there and reuses it on the next run.

use harness_core::*;
use harness_store::{Admission, NewRequest, RequestPatch, StepCommit, StepWrite, Store};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_agent-harness");
const SESSIONS: usize = 5_000;
const TASKS: usize = 32;
const DAY: Duration = Duration::from_secs(86_400);

#[test]
#[ignore = "benchmark: run by hand with --release --ignored --nocapture"]
fn views_on_100k_requests_and_1m_events() {
    let n: usize = std::env::var("VIEWS_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let (_tmp, ws) = workspace();
    let store_dir = ws.join(".agent-harness");
    if !store_dir.join("harness.db").exists() {
        let started = Instant::now();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(fill(&store_dir, n));
        println!("filled {n} requests in {:.1?}", started.elapsed());
    }
    let sample = sample_request(&ws);
    println!("store: {}", store_dir.display());
    println!("{:<52} {:>9} {:>9}", "command", "median", "max");
    let commands: Vec<Vec<String>> = vec![
        args(&["runtime", "overview"]),
        args(&[
            "runtime",
            "approvals",
            "watch",
            "--status",
            "pending",
            "--once",
        ]),
        args(&["runtime", "requests", "tail", "--once"]),
        args(&["runtime", "requests", "show", &sample]),
        args(&["runtime", "approvals", "list"]),
        args(&["runtime", "requests", "list", "--status", "failed"]),
        args(&["runtime", "sessions", "list"]),
        args(&["runtime", "events", "--request", &sample]),
        args(&["runtime", "health"]),
    ];
    for c in commands {
        let (median, max) = time(&ws, &c);
        let label = c[1..].join(" ").replace(&sample, "<req>");
        println!("{label:<52} {:>7.1}ms {:>7.1}ms", ms(median), ms(max));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// The workspace: `VIEWS_BENCH_DIR` (kept) or a temporary folder.
fn workspace() -> (Option<tempfile::TempDir>, PathBuf) {
    let (tmp, ws) = match std::env::var("VIEWS_BENCH_DIR") {
        Ok(d) => (None, PathBuf::from(d)),
        Err(_) => {
            let t = tempfile::tempdir().unwrap();
            let p = t.path().join("ws");
            (Some(t), p)
        }
    };
    if !ws.join("config/workspace.yaml").exists() {
        let ok = Command::new(BIN).arg("init").arg(&ws).output().unwrap();
        assert!(ok.status.success(), "{ok:?}");
    }
    (tmp, ws)
}

/// Runs `args` 7 times as a whole process: (median, max) wall time.
fn time(ws: &Path, args: &[String]) -> (Duration, Duration) {
    let mut runs: Vec<Duration> = (0..7)
        .map(|_| {
            let t = Instant::now();
            let out = Command::new(BIN)
                .args(args)
                .arg("--workspace")
                .arg(ws)
                .env("NO_COLOR", "1")
                .output()
                .unwrap();
            let took = t.elapsed();
            assert!(
                out.status.code().is_some_and(|c| c <= 1),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            took
        })
        .collect();
    runs.sort();
    (runs[runs.len() / 2], runs[runs.len() - 1])
}

/// A delegating request from the middle of the store.
fn sample_request(ws: &Path) -> String {
    let out = Command::new(BIN)
        .args(["runtime", "requests", "list", "--json", "--limit", "200"])
        .arg("--workspace")
        .arg(ws)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = v["requests"].as_array().unwrap();
    list.iter()
        .find(|r| r["status"] == "completed" && r["steps"].as_u64() == Some(3))
        .or(list.first())
        .map(|r| r["id"].as_str().unwrap().to_string())
        .unwrap()
}

async fn fill(dir: &Path, n: usize) {
    let store = Store::open(dir, Default::default()).unwrap();
    let now = SystemClock.now();
    let start = now.minus(30 * DAY);
    let gap = (30 * DAY).as_millis() as i64 / n.max(1) as i64;
    let worker = WorkerId::generate();
    let queued = 50.min(n / 10);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let (store, worker) = (store.clone(), worker.clone());
        tasks.spawn(async move {
            for i in (t..n - queued).step_by(TASKS) {
                let at = Timestamp(start.0 + gap * i as i64);
                admit(&store, i, at).await;
                let req = claim(&store, &worker, at).await;
                // Any task may claim any request: its number is in its trace id.
                let k = usize::from_str_radix(&req.trace_id, 16).unwrap();
                play(&store, &req, k, at, now).await;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    for i in n - queued..n {
        admit(&store, i, now.minus(Duration::from_secs(30))).await;
    }
}

/// Requests `i` with `i % 1000` below this stay waiting for approval (10) or running (5).
const HELD: usize = 15;

async fn admit(store: &Store, i: usize, at: Timestamp) {
    // A held request would block its session's later requests: it gets a session of its own.
    let session = match i % 1000 {
        k if k < HELD => format!("held-{i}"),
        _ => format!("session-{}", i % SESSIONS),
    };
    let new = NewRequest {
        trace_id: format!("{i:032x}"),
        id: RequestId::generate(),
        session_id: SessionId::parse(&session).unwrap(),
        agent: "assistant".into(),
        input: format!("request number {i}: ship the release notes"),
    };
    let adm = Admission {
        queue_capacity: usize::MAX,
        reject_if_session_busy: false,
    };
    store.admit(new, adm, at).await.unwrap();
}

/// Claims one runnable request (any: the tasks together claim every one admitted).
async fn claim(store: &Store, worker: &WorkerId, at: Timestamp) -> Request {
    loop {
        if let Some(r) = store.claim(worker, 1, at).await.unwrap().pop() {
            return r;
        }
        tokio::task::yield_now().await;
    }
}

fn step(r: &RequestId, agent: &str, idx: u32, at: Timestamp, body: StepBody) -> StepWrite {
    StepWrite::Insert(Step {
        request_id: r.clone(),
        idx,
        agent: agent.into(),
        status: StepStatus::Completed,
        started_at: at,
        finished_at: Some(at.plus(Duration::from_millis(3))),
        body,
    })
}

fn ev(kind: EventKind, r: &Request, payload: serde_json::Value) -> NewEvent {
    NewEvent::for_request(kind, &r.id, &r.session_id, payload)
}

fn commit(r: &Request, at: Timestamp, s: StepWrite, events: Vec<NewEvent>) -> StepCommit {
    StepCommit {
        request_id: r.id.clone(),
        session_id: r.session_id.clone(),
        at,
        step: Some(s),
        patch: RequestPatch {
            count_step: true,
            ..Default::default()
        },
        approval: None,
        child: None,
        artifacts: vec![],
        ancestors: vec![],
        events,
    }
}

/// Eight more events for request `i`: a tool turn, then an ending that depends on `i`.
async fn play(store: &Store, r: &Request, i: usize, at: Timestamp, now: Timestamp) {
    let call = ToolCall {
        call_id: CallId::generate(),
        tool: "word_count".into(),
        arguments: json!({"text": "faster recovery"}),
    };
    let turn = ModelTurn::ToolCalls {
        text: String::new(),
        calls: vec![call.clone()],
    };
    let events = vec![
        ev(
            EventKind::ModelTurn,
            r,
            json!({"calls": [{"tool": "word_count", "call_id": call.call_id}]}),
        ),
        ev(
            EventKind::ToolStarted,
            r,
            json!({"tool": "word_count", "call_id": call.call_id, "arguments": call.arguments}),
        ),
        ev(
            EventKind::ToolCompleted,
            r,
            json!({"tool": "word_count", "call_id": call.call_id, "ok": true, "preview": "2"}),
        ),
        ev(EventKind::ModelTurn, r, json!({"calls": []})),
    ];
    let c = commit(
        r,
        at,
        step(&r.id, &r.agent, 0, at, StepBody::ModelTurn { turn }),
        events,
    );
    store.commit_step(c).await.unwrap();
    let at = at.plus(Duration::from_millis(20));
    match i % 1000 {
        0..=9 => wait_for_approval(store, r, at, now).await,
        10..HELD => {} // left running: stuck
        _ if i.is_multiple_of(10) => delegate(store, r, at).await,
        k => finish(store, r, at, k < 60).await,
    }
}

async fn finish(store: &Store, r: &Request, at: Timestamp, failed: bool) {
    let text = "Release notes: faster recovery; approvals with TTL.".to_string();
    let events = vec![
        ev(EventKind::ModelTurn, r, json!({"text": text, "calls": []})),
        ev(
            EventKind::ArtifactCreated,
            r,
            json!({"name": "summary.md", "size": 45}),
        ),
        ev(
            EventKind::ToolCompleted,
            r,
            json!({"tool": "write_artifact", "ok": true}),
        ),
        if failed {
            ev(
                EventKind::RequestFailed,
                r,
                json!({"error": "tool `send_mail` failed"}),
            )
        } else {
            ev(EventKind::RequestCompleted, r, json!({}))
        },
    ];
    let body = StepBody::ModelTurn {
        turn: ModelTurn::Text { text: text.clone() },
    };
    let mut c = commit(r, at, step(&r.id, &r.agent, 1, at, body), events);
    if failed {
        c.patch.status = Some(RequestStatus::Failed);
        c.patch.error = Some("tool `send_mail` failed: exit status 1".into());
    } else {
        c.patch.status = Some(RequestStatus::Completed);
        c.patch.output = Some(text);
    }
    store.commit_step(c).await.unwrap();
}

async fn wait_for_approval(store: &Store, r: &Request, at: Timestamp, now: Timestamp) {
    let call = ToolCall {
        call_id: CallId::generate(),
        tool: "send_mail".into(),
        arguments: json!({"to": "ops@example.com", "subject": "Release notes"}),
    };
    let approval = Approval {
        id: ApprovalId::generate(),
        request_id: r.id.clone(),
        session_id: r.session_id.clone(),
        agent: r.agent.clone(),
        step_idx: 1,
        call_id: call.call_id.clone(),
        tool: call.tool.clone(),
        arguments: call.arguments.clone(),
        status: ApprovalStatus::Pending,
        decided_by: None,
        message: None,
        edited_arguments: None,
        created_at: at,
        decided_at: None,
        expires_at: now.plus(DAY),
        reason: None,
    };
    let events = vec![
        ev(
            EventKind::ApprovalRequested,
            r,
            json!({"approval_id": approval.id, "tool": "send_mail"}),
        ),
        ev(
            EventKind::RequestWaitingApproval,
            r,
            json!({"approval_id": approval.id}),
        ),
        ev(
            EventKind::ModelTurn,
            r,
            json!({"calls": [{"tool": "send_mail"}]}),
        ),
        ev(EventKind::ToolStarted, r, json!({"tool": "send_mail"})),
    ];
    let body = StepBody::ToolCall {
        call,
        approval_id: Some(approval.id.clone()),
        outcome: None,
        child_request_id: None,
    };
    let mut c = commit(r, at, step(&r.id, &r.agent, 1, at, body), events);
    c.patch.status = Some(RequestStatus::WaitingApproval);
    c.approval = Some(approval);
    store.commit_step(c).await.unwrap();
}

/// A delegation: the child request runs one step, then the parent completes.
async fn delegate(store: &Store, r: &Request, at: Timestamp) {
    let child = NewRequest {
        id: RequestId::generate(),
        session_id: r.session_id.clone(),
        agent: "researcher".into(),
        input: "Collect the release notes".into(),
        trace_id: r.trace_id.clone(),
    };
    let call = ToolCall {
        call_id: CallId::generate(),
        tool: "delegate".into(),
        arguments: json!({"agent": "researcher", "input": child.input}),
    };
    let body = StepBody::ToolCall {
        call,
        approval_id: None,
        outcome: Some(ToolOutcome {
            ok: true,
            content: "Release notes: faster recovery.".into(),
            artifact: None,
        }),
        child_request_id: Some(child.id.clone()),
    };
    let events = vec![ev(
        EventKind::DelegateStarted,
        r,
        json!({"agent": "researcher", "child_request_id": child.id}),
    )];
    let child_id = child.id.clone();
    let mut c = commit(r, at, step(&r.id, &r.agent, 1, at, body), events);
    c.child = Some(child);
    c.patch.current_agent = Some("researcher".into());
    store.commit_step(c).await.unwrap();
    let child = store.get_request(&child_id).await.unwrap();
    let text = "Release notes: faster recovery.".to_string();
    let events = vec![ev(EventKind::RequestCompleted, &child, json!({}))];
    let body = StepBody::ModelTurn {
        turn: ModelTurn::Text { text: text.clone() },
    };
    let mut c = commit(
        &child,
        at,
        step(&child.id, "researcher", 0, at, body),
        events,
    );
    c.patch.status = Some(RequestStatus::Completed);
    c.patch.output = Some(text);
    c.ancestors = vec![r.id.clone()];
    store.commit_step(c).await.unwrap();
    let at = at.plus(Duration::from_millis(5));
    let events = vec![
        ev(
            EventKind::DelegateCompleted,
            r,
            json!({"child_request_id": child_id}),
        ),
        ev(EventKind::RequestCompleted, r, json!({})),
    ];
    let body = StepBody::ModelTurn {
        turn: ModelTurn::Text {
            text: "Done.".into(),
        },
    };
    let mut c = commit(r, at, step(&r.id, &r.agent, 2, at, body), events);
    c.patch.status = Some(RequestStatus::Completed);
    c.patch.output = Some("Done.".into());
    c.patch.current_agent = Some(r.agent.clone());
    store.commit_step(c).await.unwrap();
}
