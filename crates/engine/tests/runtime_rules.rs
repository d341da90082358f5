//! Admission, approvals, limits and cancellation, through the library API.

mod common;

use common::Backend;
use harness_core::*;
use harness_engine::{
    Harness, HarnessError, HarnessOptions, StoreError, WorkerOptions, run_until_settled,
};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A workspace with one agent `a` whose script is `turns` (YAML list items).
fn workspace(runtime: &str, turns: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "config/workspace.yaml",
        &format!("name: rules\nwork_folder: workspace\nruntime:\n{runtime}"),
    );
    write(
        root,
        "config/models.yaml",
        "models:\n  m:\n    provider: scripted\n    script: script.yaml\n",
    );
    write(
        root,
        "config/tools.yaml",
        "tools:\n  gated:\n    builtin: list_files\n    approval: required\n  slow:\n    command: [\"sh\", \"-c\", \"echo $$ > slow.pid; sleep 30\"]\n    timeout: 60s\n",
    );
    write(
        root,
        "config/agents/a.yaml",
        "name: a\nmodel: m\ntools: [gated, slow, list_files, write_artifact]\nmax_steps: 6\n",
    );
    write(
        root,
        "script.yaml",
        &format!("agents:\n  a:\n    turns:\n{turns}"),
    );
    std::fs::create_dir_all(root.join("work")).unwrap();
    dir
}

const GATED_THEN_DONE: &str =
    "      - tool_calls: [{tool: gated, arguments: {}}]\n      - text: done\n";

fn fast() -> WorkerOptions {
    WorkerOptions {
        poll: Duration::from_millis(10),
        heartbeat: Duration::from_millis(20),
        ..Default::default()
    }
}

on_both!(
    #[tokio::test]
    queue_full_is_refused_at_once_with_a_retry_hint,
    queue_full_is_refused_at_once_with_a_retry_hint_on_postgres,
    queue_full_is_refused_at_once_with_a_retry_hint_with
);

async fn queue_full_is_refused_at_once_with_a_retry_hint_with(b: Backend) {
    let dir = workspace("  queue_capacity: 2\n", GATED_THEN_DONE);
    let (h, _keep) = open!(dir.path(), b);
    h.request(None, "a", "1").await.unwrap();
    h.request(None, "a", "2").await.unwrap();
    let err = h.request(None, "a", "3").await.unwrap_err();
    assert!(matches!(
        err,
        HarnessError::Store(StoreError::QueueFull {
            queued: 2,
            capacity: 2,
            ..
        })
    ));
    assert!(err.to_string().contains("retry in"), "{err}");
    assert_eq!(
        h.list_requests(RequestFilter::default())
            .await
            .unwrap()
            .len(),
        2
    );
}

/// A full queue that this process's worker drains advises the time the worker, at
/// its recent claim rate, takes to free one place — not the store's hint, which
/// only grows with the queue's length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_advises_the_wait_its_worker_takes_to_free_a_place() {
    let dir = workspace(
        "  queue_capacity: 100\n  max_concurrent_requests: 1\n",
        "      - tool_calls: [{tool: slow, arguments: {}}]\n      - text: never\n",
    );
    let (h, _keep) = open!(dir.path(), Backend::Sqlite);
    let first = h.request(None, "a", "slow").await.unwrap();
    let worker = h.start_worker(fast()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.get_request(&first.id).await.unwrap().status != RequestStatus::Running {
        assert!(
            Instant::now() < deadline,
            "the first request was never claimed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Its one slot is busy for 30 s: the rest wait, and the queue fills.
    for i in 0..100 {
        h.request(None, "a", &i.to_string()).await.unwrap();
    }
    let err = h.request(None, "a", "one more").await.unwrap_err();
    // One claim in the last 10 s: a place frees in about 10 s at that rate (the
    // store alone said 1 s + 1 s per 100 queued: 2 s).
    assert_eq!(err.retry_after(), Some(Duration::from_secs(10)), "{err}");
    assert!(err.to_string().contains("retry in 10s"), "{err}");
    h.abort();
    worker.stop().await.unwrap();
}

on_both!(
    #[tokio::test]
    session_strategy_reject_refuses_a_second_active_request,
    session_strategy_reject_refuses_a_second_active_request_on_postgres,
    session_strategy_reject_refuses_a_second_active_request_with
);

async fn session_strategy_reject_refuses_a_second_active_request_with(b: Backend) {
    let dir = workspace("  session_strategy: reject\n", GATED_THEN_DONE);
    let (h, _keep) = open!(dir.path(), b);
    let s = SessionId::parse("s").unwrap();
    let first = h.request(Some(s.clone()), "a", "1").await.unwrap();
    let err = h.request(Some(s.clone()), "a", "2").await.unwrap_err();
    assert!(err.to_string().contains(first.id.as_str()), "{err}");
    // Other sessions are unaffected.
    h.request(Some(SessionId::parse("t").unwrap()), "a", "3")
        .await
        .unwrap();
}

on_both!(
    #[tokio::test]
    enqueue_strategy_runs_a_session_in_order,
    enqueue_strategy_runs_a_session_in_order_on_postgres,
    enqueue_strategy_runs_a_session_in_order_with
);

async fn enqueue_strategy_runs_a_session_in_order_with(b: Backend) {
    let dir = workspace("", "      - text: done\n");
    let (h, _keep) = open!(dir.path(), b);
    let s = SessionId::parse("s").unwrap();
    let a = h.request(Some(s.clone()), "a", "first").await.unwrap();
    let b = h.request(Some(s.clone()), "a", "second").await.unwrap();
    run_until_settled(&h, &b.id, fast()).await.unwrap();
    let (a, b) = (
        h.get_request(&a.id).await.unwrap(),
        h.get_request(&b.id).await.unwrap(),
    );
    assert_eq!(
        (a.status, b.status),
        (RequestStatus::Completed, RequestStatus::Completed)
    );
    assert!(
        a.finished_at <= b.started_at,
        "the second request of a session waits for the first"
    );
}

on_both!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    concurrent_approvers_cannot_both_win,
    concurrent_approvers_cannot_both_win_on_postgres,
    concurrent_approvers_cannot_both_win_with
);

async fn concurrent_approvers_cannot_both_win_with(b: Backend) {
    let dir = workspace("", GATED_THEN_DONE);
    let (h, _keep) = open!(dir.path(), b);
    let r = h.request(None, "a", "go").await.unwrap();
    run_until_settled(&h, &r.id, fast()).await.unwrap();
    let a = h
        .list_approvals(ApprovalFilter::default())
        .await
        .unwrap()
        .remove(0);
    let attempts = (0..8).map(|i| {
        let h = h.clone();
        let resolve = ResolveApproval {
            session_id: a.session_id.clone(),
            request_id: a.request_id.clone(),
            approval_id: a.id.clone(),
            decision: if i % 2 == 0 {
                Decision::Approved
            } else {
                Decision::Rejected
            },
            message: None,
            decided_by: Actor::new(ActorKind::Cli, format!("op{i}")),
            edited_arguments: None,
        };
        tokio::spawn(async move { h.resolve_approval(resolve).await })
    });
    let results: Vec<_> = futures_join(attempts).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(err.to_string().contains("is already"), "{err}");
    }
}

async fn futures_join<T: Send + 'static>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks.collect::<Vec<_>>() {
        out.push(t.await.unwrap());
    }
    out
}

on_both!(
    #[tokio::test]
    resolving_with_the_wrong_request_or_session_is_refused,
    resolving_with_the_wrong_request_or_session_is_refused_on_postgres,
    resolving_with_the_wrong_request_or_session_is_refused_with
);

async fn resolving_with_the_wrong_request_or_session_is_refused_with(b: Backend) {
    let dir = workspace("", GATED_THEN_DONE);
    let (h, _keep) = open!(dir.path(), b);
    let r = h.request(None, "a", "go").await.unwrap();
    run_until_settled(&h, &r.id, fast()).await.unwrap();
    let a = h
        .list_approvals(ApprovalFilter::default())
        .await
        .unwrap()
        .remove(0);
    let err = h
        .resolve_approval(ResolveApproval {
            session_id: SessionId::parse("other").unwrap(),
            request_id: a.request_id.clone(),
            approval_id: a.id.clone(),
            decision: Decision::Approved,
            message: None,
            decided_by: Actor::new(ActorKind::Cli, "x"),
            edited_arguments: None,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("belongs to session"), "{err}");
    let still = h.store().get_approval(&a.id).await.unwrap();
    assert_eq!(still.status, ApprovalStatus::Pending);
}

async fn expire_with(b: Backend, outcome: &str) -> Option<Request> {
    let runtime = format!("  approval_ttl: 1h\n  approval_expiry: {outcome}\n");
    let dir = workspace(&runtime, GATED_THEN_DONE);
    let clock = Arc::new(FixedClock::new(SystemClock.now()));
    let opts = HarnessOptions {
        clock: clock.clone(),
        ..Default::default()
    };
    let (h, _keep) = common::open_with(dir.path(), b, opts)?;
    let r = h.request(None, "a", "go").await.unwrap();
    assert_eq!(
        run_until_settled(&h, &r.id, fast()).await.unwrap().status,
        RequestStatus::WaitingApproval
    );
    clock.advance(Duration::from_secs(2 * 3600));
    // The worker's timer expires the approval; the run then continues or fails.
    let worker = h.start_worker(fast()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = h.get_request(&r.id).await.unwrap();
        if r.status.is_terminal() {
            break r;
        }
        assert!(Instant::now() < deadline, "approval never expired: {r:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    worker.stop().await.unwrap();
    let a = h
        .list_approvals(ApprovalFilter::default())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(a.status, ApprovalStatus::Expired);
    assert_eq!(a.decided_by_kind, Some(ActorKind::Runtime));
    Some(r)
}

on_both!(
    #[tokio::test]
    expired_approval_rejects_by_default,
    expired_approval_rejects_by_default_on_postgres,
    expired_approval_rejects_by_default_with
);

async fn expired_approval_rejects_by_default_with(b: Backend) {
    let Some(r) = expire_with(b, "reject").await else {
        return;
    };
    assert_eq!(
        r.status,
        RequestStatus::Completed,
        "the model saw the expiry and answered"
    );
}

on_both!(
    #[tokio::test]
    expired_approval_can_fail_the_request,
    expired_approval_can_fail_the_request_on_postgres,
    expired_approval_can_fail_the_request_with
);

async fn expired_approval_can_fail_the_request_with(b: Backend) {
    let Some(r) = expire_with(b, "fail").await else {
        return;
    };
    assert_eq!(r.status, RequestStatus::Failed);
    assert!(r.error.unwrap().contains("expired"));
}

on_both!(
    #[tokio::test]
    exceeding_max_steps_fails_with_that_reason,
    exceeding_max_steps_fails_with_that_reason_on_postgres,
    exceeding_max_steps_fails_with_that_reason_with
);

async fn exceeding_max_steps_fails_with_that_reason_with(b: Backend) {
    let dir = workspace(
        "",
        "      - tool_calls: [{tool: list_files, arguments: {}}]\n        repeat: 100\n",
    );
    let (h, _keep) = open!(dir.path(), b);
    let r = h.request(None, "a", "loop").await.unwrap();
    let r = run_until_settled(&h, &r.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::Failed);
    assert!(r.error.unwrap().contains("max_steps (6)"));
}

on_both!(
    #[tokio::test]
    a_tool_the_agent_lacks_is_reported_to_the_model_not_run,
    a_tool_the_agent_lacks_is_reported_to_the_model_not_run_on_postgres,
    a_tool_the_agent_lacks_is_reported_to_the_model_not_run_with
);

async fn a_tool_the_agent_lacks_is_reported_to_the_model_not_run_with(b: Backend) {
    let dir = workspace(
        "",
        "      - tool_calls: [{tool: write_file, arguments: {path: x, content: y}}]\n      - text: ok\n",
    );
    let (h, _keep) = open!(dir.path(), b);
    let r = h.request(None, "a", "try").await.unwrap();
    let r = run_until_settled(&h, &r.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::Completed);
    assert!(!dir.path().join("work/x").exists());
}

on_both!(
    #[tokio::test]
    cancel_stops_a_running_command_tool,
    cancel_stops_a_running_command_tool_on_postgres,
    cancel_stops_a_running_command_tool_with
);

async fn cancel_stops_a_running_command_tool_with(b: Backend) {
    let dir = workspace(
        "",
        "      - tool_calls: [{tool: slow, arguments: {}}]\n      - text: never\n",
    );
    let (h, _keep) = open!(dir.path(), b);
    let r = h.request(None, "a", "slow").await.unwrap();
    let worker = h.start_worker(fast()).await.unwrap();
    let pid_file = dir.path().join("work/slow.pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    // The shell creates the file before it writes its pid into it.
    let pid: i32 = loop {
        let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
        if let Ok(pid) = text.trim().parse() {
            break pid;
        }
        assert!(Instant::now() < deadline, "slow tool never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let started = Instant::now();
    h.cancel(&r.id, &Actor::new(ActorKind::Cli, "test"), None)
        .await
        .unwrap();
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the command was not terminated"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.stop().await.unwrap();
    let r = h.get_request(&r.id).await.unwrap();
    assert_eq!(r.status, RequestStatus::Cancelled);
    assert!(
        h.cancel(&r.id, &Actor::new(ActorKind::Cli, "again"), None)
            .await
            .unwrap_err()
            .to_string()
            .contains("is cancelled")
    );
}

on_both!(
    #[tokio::test]
    artifact_names_cannot_escape_their_folder,
    artifact_names_cannot_escape_their_folder_on_postgres,
    artifact_names_cannot_escape_their_folder_with
);

async fn artifact_names_cannot_escape_their_folder_with(b: Backend) {
    let turns = "      - tool_calls: [{tool: write_artifact, arguments: {name: ../../escape.txt, content: x}}]\n      - text: ok\n";
    let dir = workspace("", turns);
    let (h, _keep) = open!(dir.path(), b);
    let r = h.request(None, "a", "try").await.unwrap();
    let r = run_until_settled(&h, &r.id, fast()).await.unwrap();
    assert_eq!(
        r.status,
        RequestStatus::Completed,
        "a refused artifact fails the call, not the request"
    );
    assert!(h.store().artifacts(&r.id).await.unwrap().is_empty());
    assert!(
        !dir.path().join(".agent-harness/escape.txt").exists()
            && !dir.path().join("escape.txt").exists()
    );
    let steps = h.store().steps(&r.id).await.unwrap();
    let outcome = steps.iter().find_map(|s| match &s.body {
        StepBody::ToolCall {
            outcome: Some(o), ..
        } => Some(o.clone()),
        _ => None,
    });
    let outcome = outcome.unwrap();
    assert!(
        !outcome.ok && outcome.content.contains("cannot leave the artifact folder"),
        "{outcome:?}"
    );
}

/// Leaves a request as a crash would: a model turn and a tool call `started`, never completed.
async fn crash_mid_call(h: &Harness, tool: &str) -> Request {
    use harness_store::StepCommit;
    h.request(None, "a", "go").await.unwrap();
    let r = h
        .store()
        .claim(&WorkerId::generate(), 1, h.now())
        .await
        .unwrap()
        .remove(0);
    let call = ToolCall {
        call_id: CallId::generate(),
        tool: tool.into(),
        arguments: serde_json::json!({}),
    };
    let turn = ModelTurn::ToolCalls {
        text: String::new(),
        calls: vec![call.clone()],
    };
    let steps = [
        (StepStatus::Completed, StepBody::model_turn(turn)),
        (
            StepStatus::Started,
            StepBody::ToolCall {
                call,
                approval_id: None,
                outcome: None,
                child_request_id: None,
            },
        ),
    ];
    for (idx, (status, body)) in steps.into_iter().enumerate() {
        let step = Step {
            request_id: r.id.clone(),
            idx: idx as u32,
            agent: "a".into(),
            status,
            started_at: h.now(),
            finished_at: None,
            body,
        };
        let commit = StepCommit::new(&r.id, &r.session_id, h.now()).insert(step);
        h.store().commit_step(commit).await.unwrap();
    }
    r
}

/// A workspace whose only tool, `once`, is not idempotent.
fn once_workspace(runtime: &str) -> tempfile::TempDir {
    // Turn 1 is the one the simulated crash interrupted.
    let turns = "      - tool_calls: [{tool: once, arguments: {}}]\n      - text: finished\n";
    let dir = workspace(runtime, turns);
    let tools = "tools:\n  once:\n    builtin: list_files\n    idempotent: false\n";
    std::fs::write(dir.path().join("config/tools.yaml"), tools).unwrap();
    std::fs::write(
        dir.path().join("config/agents/a.yaml"),
        "name: a\nmodel: m\ntools: [once]\n",
    )
    .unwrap();
    dir
}

on_both!(
    #[tokio::test]
    an_interrupted_call_can_wait_for_an_operator_decision,
    an_interrupted_call_can_wait_for_an_operator_decision_on_postgres,
    an_interrupted_call_can_wait_for_an_operator_decision_with
);

async fn an_interrupted_call_can_wait_for_an_operator_decision_with(b: Backend) {
    let dir = once_workspace("  on_interrupted: ask\n");
    let (h, _keep) = open!(dir.path(), b);
    let r = crash_mid_call(&h, "once").await;
    let settled = run_until_settled(&h, &r.id, fast()).await.unwrap();
    assert_eq!(
        settled.status,
        RequestStatus::WaitingApproval,
        "{settled:?}"
    );
    let a = h
        .list_approvals(ApprovalFilter::default())
        .await
        .unwrap()
        .remove(0);
    assert!(
        a.reason.as_deref().unwrap_or("").contains("interrupted"),
        "{a:?}"
    );
    h.resolve_approval(ResolveApproval {
        session_id: a.session_id.clone(),
        request_id: a.request_id.clone(),
        approval_id: a.id.clone(),
        decision: Decision::Approved,
        message: Some("checked: it did not run".into()),
        decided_by: Actor::new(ActorKind::Cli, "ops"),
        edited_arguments: None,
    })
    .await
    .unwrap();
    let done = run_until_settled(&h, &r.id, fast()).await.unwrap();
    assert_eq!(done.status, RequestStatus::Completed, "{done:?}");
    let steps = h.store().steps(&r.id).await.unwrap();
    assert_eq!(
        steps[1].status,
        StepStatus::Completed,
        "the call ran again after approval"
    );
}

on_both!(
    #[tokio::test]
    an_interrupted_call_fails_the_request_by_default,
    an_interrupted_call_fails_the_request_by_default_on_postgres,
    an_interrupted_call_fails_the_request_by_default_with
);

async fn an_interrupted_call_fails_the_request_by_default_with(b: Backend) {
    let dir = once_workspace("");
    let (h, _keep) = open!(dir.path(), b);
    let r = crash_mid_call(&h, "once").await;
    let done = run_until_settled(&h, &r.id, fast()).await.unwrap();
    assert_eq!(done.status, RequestStatus::Failed);
    assert!(done.error.unwrap().contains("not idempotent"));
}

/// Calls `list_files` once, then answers with what the call returned.
struct CallOnce;

impl harness_providers::Model for CallOnce {
    fn complete<'a>(
        &'a self,
        req: harness_providers::ModelRequest<'a>,
    ) -> harness_providers::BoxFuture<
        'a,
        Result<harness_providers::ModelReply, harness_providers::ModelError>,
    > {
        let answered = req.messages.iter().find(|m| m.role == Role::Tool);
        let turn = match answered {
            Some(result) => ModelTurn::Text {
                text: format!("saw: {}", result.content),
            },
            None => ModelTurn::ToolCalls {
                text: String::new(),
                calls: vec![ToolCall {
                    call_id: CallId::generate(),
                    tool: "list_files".into(),
                    arguments: serde_json::json!({}),
                }],
            },
        };
        Box::pin(async move {
            Ok(harness_providers::ModelReply {
                turn,
                info: TurnInfo::default(),
                raw: None,
            })
        })
    }
}

/// Panics on every call.
struct Panicking;

impl harness_providers::ToolRunner for Panicking {
    fn run<'a>(
        &'a self,
        _tool: &'a str,
        _arguments: &'a serde_json::Value,
        _ctx: &'a harness_providers::ToolContext,
    ) -> harness_providers::BoxFuture<'a, harness_providers::ToolOutput> {
        Box::pin(async { panic!("boom in the tool") })
    }
}

/// A panicking tool fails its own call, not the run or the worker: the model is
/// told the call crashed and the request goes on to its answer; the worker runs
/// the next request as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_tool_fails_only_its_own_call() {
    let dir = workspace("", GATED_THEN_DONE);
    let store_dir = tempfile::tempdir().unwrap();
    let opts = HarnessOptions {
        replay: Some(harness_engine::replay::ReplayParts {
            store_dir: store_dir.path().to_path_buf(),
            model: Arc::new(CallOnce),
            tools: Arc::new(Panicking),
        }),
        ..Default::default()
    };
    let h = Harness::open_with(dir.path(), opts, true).unwrap();
    for input in ["first", "second"] {
        let req = h.request(None, "a", input).await.unwrap();
        let done = run_until_settled(&h, &req.id, fast()).await.unwrap();
        assert_eq!(done.status, RequestStatus::Completed, "{done:?}");
        let out = done.output.unwrap_or_default();
        assert!(
            out.contains("tool `list_files` crashed: boom in the tool"),
            "{out}"
        );
        let steps = h.store().steps(&req.id).await.unwrap();
        let StepBody::ToolCall {
            outcome: Some(outcome),
            ..
        } = &steps[1].body
        else {
            panic!("{:?}", steps[1])
        };
        assert!(!outcome.ok, "{outcome:?}");
    }
}
