//! `requests retry`: a new request linked to the one it runs again, found both
//! ways, and refused in the admitting transaction while the original is active or
//! when it is a delegated child — the same on every backend.

mod common;

use common::Backend;
use harness_core::*;
use harness_store::{Admission, NewRequest, StoreError};

on_both!(
    a_retry_is_linked_both_ways_and_refused_while_active,
    a_retry_is_linked_both_ways_and_refused_while_active_on_postgres,
    retry
);

const ADM: Admission = Admission {
    queue_capacity: 100,
    reject_if_session_busy: false,
};

async fn retry(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let store = &fresh.store;
    let original = RequestId::generate();
    store
        .admit(
            NewRequest {
                id: original.clone(),
                session_id: SessionId::parse("s1").unwrap(),
                agent: "a".into(),
                input: "ship it".into(),
                trace_id: "t1".into(),
                traceparent: None,
                priority: 0,
            },
            ADM,
            Timestamp(1_000),
        )
        .await
        .unwrap();
    let again = |at: i64| {
        let id = RequestId::generate();
        let original = &original;
        async move {
            store
                .admit_retry(original, id, format!("t{at}"), ADM, Timestamp(at))
                .await
        }
    };

    // Queued: refused, and nothing admitted.
    let e = again(2_000).await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::WrongState {
                status: RequestStatus::Queued,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        store
            .list_requests(RequestFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );

    store
        .cancel(
            &original,
            &Actor::new(ActorKind::Cli, "op"),
            None,
            Timestamp(3_000),
        )
        .await
        .unwrap();
    let first = again(4_000).await.unwrap();
    let second = again(5_000).await.unwrap();
    for r in [&first, &second] {
        assert_eq!(r.retry_of.as_ref(), Some(&original));
        assert_eq!(r.status, RequestStatus::Queued);
        assert_eq!(
            (r.session_id.as_str(), r.agent.as_str(), r.input.as_str()),
            ("s1", "a", "ship it")
        );
    }
    assert_eq!(store.get_request(&original).await.unwrap().retry_of, None);
    let retries: Vec<RequestId> = store
        .list_requests(RequestFilter {
            retry_of: Some(original.clone()),
            order: RequestOrder::Oldest,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(retries, vec![first.id.clone(), second.id.clone()]);

    // The queued event says what it retries.
    let events = store
        .events_after(
            0,
            EventFilter {
                request_id: Some(first.id.clone()),
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap();
    let queued = events
        .iter()
        .find(|e| e.kind == EventKind::RequestQueued)
        .unwrap();
    assert_eq!(queued.payload["retry_of"], original.as_str());

    // Unknown: says which.
    let missing = RequestId::generate();
    let e = store
        .admit_retry(
            &missing,
            RequestId::generate(),
            "t".into(),
            ADM,
            Timestamp(6_000),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains(missing.as_str()), "{e}");
}
