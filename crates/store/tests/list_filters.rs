//! Listing requests by admission time, trace id and text, in each order: the same
//! answers on every backend, with LIKE's wildcards in the text taken literally.

mod common;

use common::Backend;
use harness_core::*;
use harness_store::{Admission, NewRequest};

on_both!(
    requests_filter_by_since_trace_and_text,
    requests_filter_by_since_trace_and_text_on_postgres,
    filters
);

async fn filters(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let store = &fresh.store;
    let adm = Admission {
        queue_capacity: 100,
        reject_if_session_busy: false,
    };
    let mut ids = Vec::new();
    for (i, (input, trace)) in [
        ("Ship the Release notes", "t-a"),
        ("discount of 100% for vip", "t-b"),
        ("discount of 1000 for all", "t-b"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = RequestId::generate();
        let new = NewRequest {
            id: id.clone(),
            session_id: SessionId::parse(&format!("s{i}")).unwrap(),
            agent: "a".into(),
            input: input.into(),
            trace_id: trace.into(),
            traceparent: None,
            priority: 0,
        };
        store
            .admit(new, adm, Timestamp(1_000 * (i as i64 + 1)))
            .await
            .unwrap();
        ids.push(id);
    }
    let list = |f: RequestFilter| async move {
        let got: Vec<RequestId> = store
            .list_requests(f)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        got
    };
    let all = list(RequestFilter::default()).await;
    assert_eq!(
        all,
        vec![ids[2].clone(), ids[1].clone(), ids[0].clone()],
        "newest first"
    );
    let oldest = list(RequestFilter {
        order: RequestOrder::Oldest,
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(oldest, vec![ids[0].clone(), ids[1].clone()]);
    let since = list(RequestFilter {
        since: Some(Timestamp(2_000)),
        ..Default::default()
    })
    .await;
    assert_eq!(since, vec![ids[2].clone(), ids[1].clone()]);
    let trace = list(RequestFilter {
        trace_id: Some("t-b".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(trace, vec![ids[2].clone(), ids[1].clone()]);
    let text = |t: &str| RequestFilter {
        text: Some(t.into()),
        ..Default::default()
    };
    assert_eq!(
        list(text("release NOTES")).await,
        vec![ids[0].clone()],
        "any case"
    );
    assert_eq!(
        list(text("100%")).await,
        vec![ids[1].clone()],
        "% is literal"
    );
    assert_eq!(
        list(text("of_1")).await,
        Vec::<RequestId>::new(),
        "_ is literal"
    );
    assert_eq!(list(text("discount")).await.len(), 2);
}

on_both!(
    get_requests_answers_the_known_ones_in_one_read,
    get_requests_answers_the_known_ones_in_one_read_on_postgres,
    by_ids
);

/// `get_requests` (the worker's look at every run it holds): the requests that
/// exist, each as it is now, the unknown ids left out.
async fn by_ids(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let store = &fresh.store;
    let adm = Admission {
        queue_capacity: 100,
        reject_if_session_busy: false,
    };
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = RequestId::generate();
        let new = NewRequest {
            id: id.clone(),
            session_id: SessionId::parse(&format!("s{i}")).unwrap(),
            agent: "a".into(),
            input: format!("input {i}"),
            trace_id: "t".into(),
            traceparent: None,
            priority: 0,
        };
        store.admit(new, adm, Timestamp(1_000)).await.unwrap();
        ids.push(id);
    }
    assert!(store.get_requests(&[]).await.unwrap().is_empty());
    store
        .cancel(
            &ids[2],
            &Actor::new(ActorKind::Cli, "test"),
            None,
            Timestamp(2_000),
        )
        .await
        .unwrap();
    let unknown = RequestId::generate();
    let mut got = store
        .get_requests(&[ids[0].clone(), unknown, ids[2].clone()])
        .await
        .unwrap();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    let mut want = vec![
        (ids[0].clone(), RequestStatus::Queued, "input 0"),
        (ids[2].clone(), RequestStatus::Cancelled, "input 2"),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let got: Vec<_> = got
        .iter()
        .map(|r| (r.id.clone(), r.status, r.input.as_str()))
        .collect();
    assert_eq!(got, want);
}
