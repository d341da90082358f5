//! Replay: a finished request runs again from its recording, offline, with no
//! tool executed and nothing written to the workspace's store; the same workspace
//! replays identically, a changed policy shows where the run now differs.

use harness_core::*;
use harness_engine::replay::{Recording, replay};
use harness_engine::{Harness, WorkerOptions, run_until_settled};
use std::path::Path;

/// Lines in every `outbox.log` under `work/` (the demo's `send_mail` appends one).
fn mails(root: &Path) -> usize {
    fn walk(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|it| {
                it.flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() {
                            walk(&p)
                        } else if p.file_name().is_some_and(|n| n == "outbox.log") {
                            std::fs::read_to_string(&p).unwrap().lines().count()
                        } else {
                            0
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&root.join("work"))
}

/// The demo run to completion: the researcher delegated, `send_mail` approved
/// with edited arguments.
async fn finished_demo() -> (tempfile::TempDir, Harness, Request) {
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    let h = Harness::open(dir.path()).unwrap();
    let req = h
        .request(None, "assistant", "ship the release notes")
        .await
        .unwrap();
    let r = run_until_settled(&h, &req.id, WorkerOptions::default())
        .await
        .unwrap();
    assert_eq!(r.status, RequestStatus::WaitingApproval);
    let a = h
        .list_approvals(ApprovalFilter::default())
        .await
        .unwrap()
        .remove(0);
    let mut edited = a.arguments.clone();
    edited["subject"] = "Release notes (edited)".into();
    h.resolve_approval(ResolveApproval {
        session_id: a.session_id.clone(),
        request_id: a.request_id.clone(),
        approval_id: a.id.clone(),
        decision: Decision::Approved,
        message: Some("subject fixed".into()),
        decided_by: Actor::new(ActorKind::Cli, "alice"),
        edited_arguments: Some(edited),
    })
    .await
    .unwrap();
    let r = run_until_settled(&h, &req.id, WorkerOptions::default())
        .await
        .unwrap();
    assert_eq!(r.status, RequestStatus::Completed, "{r:?}");
    (dir, h, r)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_workspace_replays_identically_without_running_anything() {
    let (dir, h, done) = finished_demo().await;
    assert_eq!(mails(dir.path()), 1);
    let events_before = h
        .store()
        .events_after(0, EventFilter::default(), 0)
        .await
        .unwrap()
        .len();

    let rec = Recording::of_request(&h, &done.id).await.unwrap();
    let report = replay(dir.path(), &rec).await.unwrap();
    assert!(report.identical, "{report:#?}");
    assert_eq!(report.divergence, None);
    assert_eq!(
        report.requests_compared, 2,
        "the root and its delegated researcher"
    );
    assert!(report.steps_compared >= 6, "{report:#?}");
    assert_eq!(report.replayed_status, RequestStatus::Completed);

    assert_eq!(
        mails(dir.path()),
        1,
        "send_mail answered from the recording"
    );
    let events_after = h
        .store()
        .events_after(0, EventFilter::default(), 0)
        .await
        .unwrap()
        .len();
    assert_eq!(
        events_before, events_after,
        "nothing written to the workspace's store"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_policy_is_the_first_divergence() {
    let (dir, h, done) = finished_demo().await;
    let rec = Recording::of_request(&h, &done.id).await.unwrap();
    // Now the researcher's `write_file` needs an operator.
    let tools = dir.path().join("config/tools.yaml");
    let text = std::fs::read_to_string(&tools).unwrap();
    std::fs::write(
        &tools,
        text.replace(
            "tools:\n",
            "tools:\n  write_file:\n    approval: required\n",
        ),
    )
    .unwrap();
    let report = replay(dir.path(), &rec).await.unwrap();
    assert!(!report.identical);
    let d = report.divergence.expect("a divergence");
    assert_eq!(d.agent, "researcher", "{d:#?}");
    assert!(
        d.recorded.contains("write_file` ran without an approval"),
        "{d:#?}"
    );
    assert!(d.replayed.contains("waits for an approval"), "{d:#?}");
    assert_eq!(report.replayed_status, RequestStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unfinished_or_delegated_request_is_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    let h = Harness::open(dir.path()).unwrap();
    let req = h.request(None, "assistant", "ship it").await.unwrap();
    let e = Recording::of_request(&h, &req.id).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("only a finished request is replayed"),
        "{e}"
    );

    let (_dir, h, done) = finished_demo().await;
    let child = h
        .list_requests(RequestFilter {
            parent_id: Some(done.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0);
    let e = Recording::of_request(&h, &child.id).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("replay the request that delegated it"),
        "{e}"
    );
}
