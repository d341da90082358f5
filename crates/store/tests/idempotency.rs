//! Admission under an idempotency key: one key admits at most one request per
//! session, even when admissions with it race from two handles (two processes);
//! a retry gets the same request back, a different ask under the key is refused.

mod common;

use common::Backend;
use harness_core::*;
use harness_store::{Admission, NewRequest, StoreError};

on_both!(
    a_key_admits_one_request_per_session,
    a_key_admits_one_request_per_session_on_postgres,
    one_per_session
);
on_both!(
    concurrent_admissions_under_one_key_admit_one_request,
    concurrent_admissions_under_one_key_admit_one_request_on_postgres,
    concurrent
);

const ADM: Admission = Admission {
    queue_capacity: 100,
    reject_if_session_busy: false,
};

fn ask(session: &str, input: &str) -> NewRequest {
    let id = RequestId::generate();
    NewRequest {
        trace_id: format!("t-{id}"),
        traceparent: None,
        id,
        session_id: SessionId::parse(session).unwrap(),
        agent: "assistant".into(),
        input: input.into(),
        priority: 0,
    }
}

/// The `request.queued` events of `id` (on PostgreSQL an event shows once every older
/// transaction of the server ended: wait for the first).
async fn queued_events(store: &harness_store::Store, id: &RequestId) -> usize {
    let f = EventFilter {
        request_id: Some(id.clone()),
        ..Default::default()
    };
    for _ in 0..100 {
        let n = store
            .events_after(0, f.clone(), 100)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.kind == EventKind::RequestQueued)
            .count();
        if n > 0 {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    0
}

async fn one_per_session(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let store = &fresh.store;
    let key = Some("order-17".to_string());

    let first = store
        .admit_keyed(ask("s1", "ship it"), key.clone(), ADM, Timestamp(1))
        .await
        .unwrap();
    assert!(!first.existing);
    let again = store
        .admit_keyed(ask("s1", "ship it"), key.clone(), ADM, Timestamp(2))
        .await
        .unwrap();
    assert!(again.existing, "a retry finds the request the key admitted");
    assert_eq!(again.request.id, first.request.id);
    assert_eq!(again.request.created_at, Timestamp(1));
    assert_eq!(queued_events(store, &first.request.id).await, 1);

    // The same key asking for something else is refused, naming the request.
    let err = store
        .admit_keyed(
            ask("s1", "ship something else"),
            key.clone(),
            ADM,
            Timestamp(3),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::IdempotencyKeyReused { existing, .. } if *existing == first.request.id.to_string()),
        "{err}"
    );
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert!(err.to_string().contains("order-17"), "{err}");
    let mut other_agent = ask("s1", "ship it");
    other_agent.agent = "reviewer".into();
    let err = store
        .admit_keyed(other_agent, key.clone(), ADM, Timestamp(3))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);

    // Keys are per session; no key always admits.
    let elsewhere = store
        .admit_keyed(ask("s2", "ship it"), key.clone(), ADM, Timestamp(4))
        .await
        .unwrap();
    assert!(!elsewhere.existing);
    assert_ne!(elsewhere.request.id, first.request.id);
    for _ in 0..2 {
        let plain = store
            .admit_keyed(ask("s1", "ship it"), None, ADM, Timestamp(5))
            .await
            .unwrap();
        assert!(!plain.existing);
    }
    let in_s1 = store
        .list_requests(RequestFilter {
            session_id: Some(SessionId::parse("s1").unwrap()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(in_s1.len(), 3, "the keyed request and two without a key");

    // A retry is answered even when the queue is full: it queues nothing.
    let full = Admission {
        queue_capacity: 4,
        reject_if_session_busy: true,
    };
    let again = store
        .admit_keyed(ask("s1", "ship it"), key.clone(), full, Timestamp(6))
        .await
        .unwrap();
    assert!(again.existing);
    let err = store
        .admit_keyed(ask("s3", "new"), Some("k2".into()), full, Timestamp(6))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::QueueFull);
}

async fn concurrent(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let other = b.reopen(&fresh);
    let handles = [fresh.store.clone(), other];
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = handles[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            store
                .admit_keyed(
                    ask("s1", "pay invoice 9"),
                    Some("pay-9".into()),
                    ADM,
                    Timestamp(1),
                )
                .await
                .unwrap()
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut new = 0;
    for t in tasks {
        let a = t.await.unwrap();
        ids.insert(a.request.id.clone());
        new += usize::from(!a.existing);
    }
    assert_eq!(ids.len(), 1, "every admission got the same request");
    assert_eq!(new, 1, "exactly one admission wrote it");
    let all = fresh
        .store
        .list_requests(RequestFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(queued_events(&fresh.store, &all[0].id).await, 1);
}
