//! Model-based property test of the queue: whatever the admissions and claim sizes,
//! a session never runs two requests at once, runs them in admission order, and
//! everything admitted eventually runs exactly once. On every backend.

mod common;

use common::Backend;
use harness_core::*;
use harness_store::{Admission, NewRequest, StepCommit};
use proptest::prelude::*;
use std::collections::HashMap;

fn admit_args(session: &str, n: usize) -> NewRequest {
    NewRequest {
        id: RequestId::generate(),
        session_id: SessionId::parse(session).unwrap(),
        agent: "a".into(),
        input: format!("input {n}"),
        trace_id: "t".into(),
        traceparent: None,
        priority: 0,
    }
}

fn finish(r: &Request, now: Timestamp) -> StepCommit {
    StepCommit::new(&r.id, &r.session_id, now).output("ok")
}

async fn check(b: Backend, sessions: Vec<u8>, claims: Vec<usize>) -> Result<(), TestCaseError> {
    let Some(fresh) = b.fresh() else {
        return Ok(());
    };
    let store = &fresh.store;
    let adm = Admission {
        queue_capacity: 10_000,
        reject_if_session_busy: false,
    };
    let worker = WorkerId::generate();
    let mut order: HashMap<String, Vec<RequestId>> = HashMap::new();
    for (n, s) in sessions.iter().enumerate() {
        let session = format!("s{s}");
        let r = store
            .admit(admit_args(&session, n), adm, Timestamp(n as i64))
            .await
            .unwrap();
        order.entry(session).or_default().push(r.id);
    }
    let mut ran: HashMap<String, Vec<RequestId>> = HashMap::new();
    let mut claim_sizes = claims.into_iter().cycle();
    let mut rounds = 0;
    loop {
        let claimed = store
            .claim(
                &worker,
                claim_sizes.next().unwrap(),
                Timestamp(1000 + rounds),
            )
            .await
            .unwrap();
        let mut seen = std::collections::HashSet::new();
        for r in &claimed {
            prop_assert!(
                seen.insert(r.session_id.clone()),
                "two requests of {} claimed together",
                r.session_id
            );
            ran.entry(r.session_id.to_string())
                .or_default()
                .push(r.id.clone());
        }
        for r in &claimed {
            store
                .commit_step(finish(r, Timestamp(2000 + rounds)))
                .await
                .unwrap();
        }
        rounds += 1;
        let left = store
            .list_requests(RequestFilter {
                statuses: vec![RequestStatus::Queued],
                ..Default::default()
            })
            .await
            .unwrap();
        if left.is_empty() {
            break;
        }
        prop_assert!(rounds < 10_000, "queue never drained");
    }
    prop_assert_eq!(ran, order);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn sessions_run_one_at_a_time_in_admission_order(
        sessions in proptest::collection::vec(0u8..5, 1..40),
        claims in proptest::collection::vec(1usize..6, 1..5),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(Backend::Sqlite, sessions, claims))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn sessions_run_one_at_a_time_in_admission_order_on_postgres(
        sessions in proptest::collection::vec(0u8..5, 1..40),
        claims in proptest::collection::vec(1usize..6, 1..5),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(Backend::Postgres, sessions, claims))?;
    }
}

on_both!(
    prune_removes_only_finished_requests_past_the_cutoff,
    prune_removes_only_finished_requests_past_the_cutoff_on_postgres,
    prune_scenario
);

async fn prune_scenario(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let store = &fresh.store;
    let adm = Admission {
        queue_capacity: 100,
        reject_if_session_busy: false,
    };
    let old = store
        .admit(admit_args("old", 0), adm, Timestamp(10))
        .await
        .unwrap();
    let live = store
        .admit(admit_args("live", 1), adm, Timestamp(10))
        .await
        .unwrap();
    let w = WorkerId::generate();
    let claimed = store.claim(&w, 10, Timestamp(20)).await.unwrap();
    let old_claimed = claimed.iter().find(|r| r.id == old.id).unwrap();
    store
        .commit_step(finish(old_claimed, Timestamp(30)))
        .await
        .unwrap();
    let report = store.prune(Timestamp(1_000), false, true).await.unwrap();
    assert_eq!(report.requests, 1);
    assert!(report.events >= 2, "{report:?}");
    assert!(store.get_request(&old.id).await.is_err());
    assert_eq!(
        store.get_request(&live.id).await.unwrap().status,
        RequestStatus::Running
    );
    assert_eq!(store.integrity_check().await.unwrap(), Ok(()));
}
