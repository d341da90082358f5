//! The demo workspace end to end through the library API: pause on approval,
//! resolve, continue, complete; refusals change nothing.

mod common;

use common::Backend;
use harness_core::*;
use harness_engine::{Harness, HarnessError, StoreError, WorkerOptions, run_until_settled};

fn demo(b: Backend) -> Option<(tempfile::TempDir, Harness, common::Keep)> {
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    let (h, keep) = common::open(dir.path(), b)?;
    Some((dir, h, keep))
}

fn fast() -> WorkerOptions {
    WorkerOptions {
        poll: std::time::Duration::from_millis(20),
        ..Default::default()
    }
}

on_both!(
    #[tokio::test]
    demo_pauses_for_approval_then_completes,
    demo_pauses_for_approval_then_completes_on_postgres,
    demo_pauses_for_approval_then_completes_with
);

async fn demo_pauses_for_approval_then_completes_with(b: Backend) {
    let Some((dir, h, _keep)) = demo(b) else {
        return;
    };
    let session = SessionId::parse("session-1").unwrap();
    let req = h
        .request(Some(session.clone()), "assistant", "ship the release notes")
        .await
        .unwrap();
    let r = run_until_settled(&h, &req.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::WaitingApproval, "{r:?}");

    let pending = h
        .list_approvals(ApprovalFilter {
            statuses: vec![ApprovalStatus::Pending],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    let a = &pending[0];
    assert_eq!(a.tool, "send_mail");

    // The delegated researcher ran as a child request and wrote its file.
    let children = h
        .list_requests(RequestFilter {
            parent_id: Some(req.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].status, RequestStatus::Completed);
    // In the root's session folder: a delegated request is in its root's session.
    let work = dir.path().join("work").join(session.as_str());
    assert!(work.join("notes.md").exists());

    let resolve = ResolveApproval {
        session_id: session.clone(),
        request_id: req.id.clone(),
        approval_id: a.id.clone(),
        decision: Decision::Approved,
        message: Some("ok".into()),
        decided_by: Actor::new(ActorKind::Cli, "alice"),
        edited_arguments: None,
    };
    h.resolve_approval(resolve.clone()).await.unwrap();
    // Approving twice is refused and names who decided.
    match h.resolve_approval(resolve).await {
        Err(HarnessError::Store(StoreError::ApprovalNotPending { decided_by, .. })) => {
            assert_eq!(decided_by.as_deref(), Some("alice"))
        }
        other => panic!("second approval not refused: {other:?}"),
    }

    let r = run_until_settled(&h, &req.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::Completed, "{r:?}");
    assert!(r.output.unwrap().starts_with("Done"));
    let outbox = std::fs::read_to_string(work.join("outbox.log")).unwrap();
    assert_eq!(outbox.lines().count(), 1, "send_mail ran exactly once");

    let artifacts = h.store().artifacts(&req.id).await.unwrap();
    assert_eq!(artifacts.len(), 1);
    assert_eq!(artifacts[0].name, "summary.md");

    // The event log tells the story in order.
    // Read up to the request's last event. On PostgreSQL the newest events show
    // only once every older transaction has ended (the xmin watermark), so the tail
    // may arrive a moment after the commit: wait for it rather than stop early.
    let mut sub = h.subscribe(0, EventFilter::default());
    let mut seqs = vec![];
    let mut kinds = vec![];
    loop {
        let e = tokio::time::timeout(std::time::Duration::from_secs(10), sub.next())
            .await
            .expect("request.completed never reached the subscriber")
            .unwrap();
        seqs.push(e.seq);
        if e.request_id.as_ref() == Some(&req.id) {
            kinds.push(e.kind.as_str());
            if e.kind == EventKind::RequestCompleted {
                break;
            }
        }
    }
    match b {
        // One writer: gap-free.
        Backend::Sqlite => assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>()),
        // Seqs follow transaction ids: increasing, not consecutive.
        Backend::Postgres => assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}"),
    }
    assert_eq!(kinds.first(), Some(&"request.queued"));
    assert_eq!(kinds.last(), Some(&"request.completed"));
    assert!(kinds.contains(&"approval.requested") && kinds.contains(&"approval.resolved"));
    assert!(kinds.contains(&"delegate.started") && kinds.contains(&"delegate.completed"));

    let health = h.health().await.unwrap();
    assert!(
        health
            .checks
            .iter()
            .any(|c| c.name == "store" && c.status == HealthStatus::Ok)
    );
}

on_both!(
    #[tokio::test]
    rejection_reaches_the_model_and_the_tool_never_runs,
    rejection_reaches_the_model_and_the_tool_never_runs_on_postgres,
    rejection_reaches_the_model_and_the_tool_never_runs_with
);

async fn rejection_reaches_the_model_and_the_tool_never_runs_with(b: Backend) {
    let Some((dir, h, _keep)) = demo(b) else {
        return;
    };
    let req = h.request(None, "assistant", "go").await.unwrap();
    run_until_settled(&h, &req.id, fast()).await.unwrap();
    let a = h
        .list_approvals(ApprovalFilter::default())
        .await
        .unwrap()
        .remove(0);
    h.resolve_approval(ResolveApproval {
        session_id: req.session_id.clone(),
        request_id: req.id.clone(),
        approval_id: a.id.clone(),
        decision: Decision::Rejected,
        message: Some("wrong list".into()),
        decided_by: Actor::new(ActorKind::Cli, "bob"),
        edited_arguments: None,
    })
    .await
    .unwrap();
    let r = run_until_settled(&h, &req.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::Completed);
    let work = dir.path().join("work").join(req.session_id.as_str());
    assert!(!work.join("outbox.log").exists());
    let steps = h.store().steps(&req.id).await.unwrap();
    let rejected = steps.iter().find_map(|s| match &s.body {
        StepBody::ToolCall {
            call,
            outcome: Some(o),
            ..
        } if call.tool == "send_mail" => Some(o.content.clone()),
        _ => None,
    });
    assert_eq!(
        rejected.as_deref(),
        Some("Tool call `send_mail` was rejected by bob: wrong list")
    );
}

on_both!(
    #[tokio::test]
    bad_input_is_refused_and_changes_nothing,
    bad_input_is_refused_and_changes_nothing_on_postgres,
    bad_input_is_refused_and_changes_nothing_with
);

async fn bad_input_is_refused_and_changes_nothing_with(b: Backend) {
    let Some((_dir, h, _keep)) = demo(b) else {
        return;
    };
    assert!(matches!(
        h.request(None, "asistant", "x").await,
        Err(HarnessError::UnknownAgent { .. })
    ));
    let big = "x".repeat(70 * 1024);
    assert!(matches!(
        h.request(None, "assistant", &big).await,
        Err(HarnessError::InputTooLarge { .. })
    ));
    let missing = RequestId::parse("req_nope").unwrap();
    let err = h.get_request(&missing).await.unwrap_err();
    assert_eq!(err.to_string(), "request `req_nope` not found");
    assert!(
        h.list_requests(RequestFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}
