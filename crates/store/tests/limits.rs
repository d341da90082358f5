//! Concurrency limits in the store, on both backends: a call's `started` commit
//! takes every key it needs or none; a full key refuses the commit, and the tree
//! parks on the queue, skipped by the claim until the key has room; a call's end
//! releases its holds, and a tree that stops running (cancel, crash recovery)
//! holds nothing. The model-based test drives random claims, completions, crashes
//! and cancels and checks the store's holds against a model after every one.

mod common;

use common::Backend;
use harness_core::*;
use harness_store::{Acquire, Admission, Park, StepCommit, Store, StoreError};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const ADM: Admission = Admission {
    queue_capacity: 100_000,
    reject_if_session_busy: false,
};

async fn admit(store: &Store, session: &str, at: i64) -> Request {
    store
        .admit(common::new_request(session, 0), ADM, Timestamp(at))
        .await
        .unwrap()
}

fn call_step(r: &Request, call: &ToolCall, status: StepStatus, at: i64) -> Step {
    Step {
        request_id: r.id.clone(),
        idx: 0,
        agent: "a".into(),
        status,
        started_at: Timestamp(at),
        finished_at: (status == StepStatus::Completed).then_some(Timestamp(at)),
        body: StepBody::ToolCall {
            call: call.clone(),
            approval_id: None,
            outcome: (status == StepStatus::Completed).then(|| ToolOutcome {
                ok: true,
                content: "done".into(),
                artifact: None,
            }),
            child_request_id: None,
        },
    }
}

fn call_of(tool: &str) -> ToolCall {
    ToolCall {
        call_id: CallId::generate(),
        tool: tool.into(),
        arguments: serde_json::json!({}),
    }
}

/// Commits `call` started (inserted, or updated when `again`) holding `limits`.
async fn start(
    store: &Store,
    r: &Request,
    call: &ToolCall,
    limits: &[Limit],
    again: bool,
    at: i64,
) -> Result<Vec<i64>, StoreError> {
    let step = call_step(r, call, StepStatus::Started, at);
    let c = StepCommit::new(&r.id, &r.session_id, Timestamp(at));
    let c = if again {
        c.update(step)
    } else {
        c.insert(step)
    };
    store
        .commit_step(c.acquire(Acquire {
            call_id: call.call_id.clone(),
            tool: call.tool.clone(),
            root_id: r.id.clone(),
            limits: limits.to_vec(),
            until: Timestamp(at + 60_000),
        }))
        .await
}

async fn complete(store: &Store, r: &Request, call: &ToolCall, at: i64) {
    let step = call_step(r, call, StepStatus::Completed, at);
    store
        .commit_step(
            StepCommit::new(&r.id, &r.session_id, Timestamp(at))
                .update(step)
                .output("ok"),
        )
        .await
        .unwrap();
}

fn park_of(r: &Request, call: &ToolCall, limits: &[Limit], at: i64) -> Park {
    Park {
        request_id: r.id.clone(),
        session_id: r.session_id.clone(),
        ancestors: vec![],
        call_id: call.call_id.clone(),
        tool: call.tool.clone(),
        limits: limits.to_vec(),
        at: Timestamp(at),
    }
}

on_both!(
    a_full_key_parks_the_tree_until_it_has_room,
    a_full_key_parks_the_tree_until_it_has_room_on_postgres,
    park_scenario
);

async fn park_scenario(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let store = &fresh.store;
    let w = WorkerId::generate();
    let db = [Limit::resource("db", 1)];
    let (r1, r2) = (admit(store, "s1", 1).await, admit(store, "s2", 2).await);
    let claimed = store.claim(&w, 2, Timestamp(3)).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let (c1, c2) = (call_of("deploy"), call_of("deploy"));
    start(store, &r1, &c1, &db, false, 4).await.unwrap();
    let holds = store.holds().await.unwrap();
    assert_eq!(holds.len(), 1);
    assert_eq!(
        (holds[0].key.as_str(), &holds[0].call_id),
        ("resource:db", &c1.call_id)
    );

    let refused = start(store, &r2, &c2, &db, false, 5).await.unwrap_err();
    match &refused {
        StoreError::LimitsBusy { limits, held_by } => {
            assert_eq!(limits, &vec!["resource:db".to_string()]);
            assert_eq!(held_by, &vec![c1.call_id.clone()]);
        }
        other => panic!("expected LimitsBusy, got {other:?}"),
    }
    assert!(
        store.steps(&r2.id).await.unwrap().is_empty(),
        "nothing of the refused commit was kept"
    );
    assert!(store.park(park_of(&r2, &c2, &db, 6)).await.unwrap());
    assert_eq!(
        store.get_request(&r2.id).await.unwrap().status,
        RequestStatus::Queued
    );
    let waits = store.waits().await.unwrap();
    assert_eq!(waits.len(), 1);
    assert_eq!(
        (
            waits[0].root_id.clone(),
            waits[0].key.as_str(),
            waits[0].capacity
        ),
        (r2.id.clone(), "resource:db", 1)
    );

    assert!(
        store.claim(&w, 5, Timestamp(7)).await.unwrap().is_empty(),
        "claimed while db is held"
    );
    complete(store, &r1, &c1, 8).await;
    assert!(
        store.holds().await.unwrap().is_empty(),
        "the call's end released db"
    );
    let again = store.claim(&w, 5, Timestamp(9)).await.unwrap();
    assert_eq!(
        again.iter().map(|r| &r.id).collect::<Vec<_>>(),
        vec![&r2.id]
    );
    assert!(
        store.waits().await.unwrap().is_empty(),
        "a claim clears its tree's waits"
    );
    start(store, &r2, &c2, &db, false, 10).await.unwrap();
    complete(store, &r2, &c2, 11).await;
    assert!(store.holds().await.unwrap().is_empty());
}

on_both!(
    a_tree_that_stops_running_holds_nothing,
    a_tree_that_stops_running_holds_nothing_on_postgres,
    stop_scenario
);

async fn stop_scenario(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let store = &fresh.store;
    let w = WorkerId::generate();
    let lim = [Limit::resource("gpu", 2), Limit::tool("deploy", 1)];
    let (r1, r2) = (admit(store, "s1", 1).await, admit(store, "s2", 2).await);
    store.claim(&w, 2, Timestamp(3)).await.unwrap();
    let c1 = call_of("deploy");
    start(store, &r1, &c1, &lim, false, 4).await.unwrap();
    assert_eq!(
        store.holds().await.unwrap().len(),
        2,
        "one unit of each key"
    );
    store
        .cancel(
            &r1.id,
            &Actor::new(ActorKind::Cli, "op"),
            None,
            Timestamp(5),
        )
        .await
        .unwrap();
    assert!(
        store.holds().await.unwrap().is_empty(),
        "a cancelled tree holds nothing"
    );

    let c2 = call_of("deploy");
    start(store, &r2, &c2, &lim, false, 6).await.unwrap();
    assert_eq!(store.holds().await.unwrap().len(), 2);
    // The worker dies; recovery (by another worker) re-queues the running root.
    store
        .recover(&WorkerId::generate(), Timestamp(7), 10)
        .await
        .unwrap();
    assert_eq!(
        store.get_request(&r2.id).await.unwrap().status,
        RequestStatus::Queued
    );
    assert!(
        store.holds().await.unwrap().is_empty(),
        "a recovered tree holds nothing"
    );
    let again = store.claim(&w, 1, Timestamp(8)).await.unwrap();
    assert_eq!(again[0].id, r2.id);
    assert!(
        store.holds().await.unwrap().is_empty(),
        "the claim starts it with nothing held"
    );
    start(store, &r2, &c2, &lim, true, 9).await.unwrap();
    complete(store, &r2, &c2, 10).await;
    assert!(store.holds().await.unwrap().is_empty());
}

on_both!(
    a_freed_unit_wakes_one_parked_tree_not_all,
    a_freed_unit_wakes_one_parked_tree_not_all_on_postgres,
    herd_scenario
);

/// Six trees want one unit: one holds it, five park. When it is freed, a claim of
/// up to ten takes one parked tree (and fresh work), not all five to park again.
async fn herd_scenario(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let store = &fresh.store;
    let w = WorkerId::generate();
    let db = [Limit::resource("db", 1)];
    let mut trees = Vec::new();
    for i in 0..6 {
        trees.push((admit(store, &format!("s{i}"), i).await, call_of("deploy")));
    }
    assert_eq!(store.claim(&w, 10, Timestamp(10)).await.unwrap().len(), 6);
    start(store, &trees[0].0, &trees[0].1, &db, false, 11)
        .await
        .unwrap();
    for (r, c) in &trees[1..] {
        start(store, r, c, &db, false, 12).await.unwrap_err();
        assert!(store.park(park_of(r, c, &db, 13)).await.unwrap());
    }
    let other = admit(store, "free", 14).await;
    complete(store, &trees[0].0, &trees[0].1, 15).await;
    let claimed = store.claim(&w, 10, Timestamp(16)).await.unwrap();
    let ids: Vec<&RequestId> = claimed.iter().map(|r| &r.id).collect();
    assert_eq!(
        ids.len(),
        2,
        "one parked tree and the fresh request: {ids:?}"
    );
    assert!(ids.contains(&&other.id));
    assert!(
        ids.contains(&&trees[1].0.id),
        "the oldest parked tree goes first"
    );
    assert_eq!(store.waits().await.unwrap().len(), 4, "the rest still wait");
}

// --- the model ---------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Claim(usize),
    Finish(usize),
    Crash,
    Cancel(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..4).prop_map(Op::Claim),
        3 => (0usize..8).prop_map(Op::Finish),
        1 => Just(Op::Crash),
        1 => (0usize..8).prop_map(Op::Cancel),
    ]
}

const KEYS: [(&str, u32); 3] = [("resource:a", 1), ("resource:b", 2), ("tool:t", 1)];

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Queued,
    Parked,
    /// Claimed, its call not started.
    Claimed,
    Holding,
    Done,
}

struct Item {
    r: Request,
    call: ToolCall,
    limits: Vec<Limit>,
    state: State,
    /// Its `started` row exists (a crash re-run updates it).
    inserted: bool,
}

/// A claimed request starts its call: holds its limits, or parks.
async fn run_claimed(store: &Store, it: &mut Item, at: i64) -> Result<(), TestCaseError> {
    for _ in 0..3 {
        match start(store, &it.r, &it.call, &it.limits, it.inserted, at).await {
            Ok(_) => {
                it.inserted = true;
                it.state = State::Holding;
                return Ok(());
            }
            Err(StoreError::LimitsBusy { .. }) => {
                if store
                    .park(park_of(&it.r, &it.call, &it.limits, at))
                    .await
                    .unwrap()
                {
                    it.state = State::Parked;
                    return Ok(());
                }
            }
            Err(e) => return Err(TestCaseError::fail(format!("start: {e}"))),
        }
    }
    Err(TestCaseError::fail(
        "park kept finding room that the commit did not",
    ))
}

async fn check_against_model(store: &Store, items: &[Item]) -> Result<(), TestCaseError> {
    let holds = store.holds().await.unwrap();
    let mut per_key: BTreeMap<&str, u32> = BTreeMap::new();
    for h in &holds {
        *per_key.entry(h.key.as_str()).or_default() += 1;
    }
    for (key, cap) in KEYS {
        let n = per_key.get(key).copied().unwrap_or(0);
        prop_assert!(n <= cap, "{key} held {n} times, capacity {cap}");
    }
    let got: BTreeSet<(String, String)> = holds
        .iter()
        .map(|h| (h.key.clone(), h.call_id.to_string()))
        .collect();
    let want: BTreeSet<(String, String)> = items
        .iter()
        .filter(|i| i.state == State::Holding)
        .flat_map(|i| {
            i.limits
                .iter()
                .map(|l| (l.key.clone(), i.call.call_id.to_string()))
        })
        .collect();
    prop_assert_eq!(got, want, "holds differ from the model");
    let waiting: BTreeSet<String> = store
        .waits()
        .await
        .unwrap()
        .iter()
        .map(|w| w.root_id.to_string())
        .collect();
    let parked: BTreeSet<String> = items
        .iter()
        .filter(|i| i.state == State::Parked)
        .map(|i| i.r.id.to_string())
        .collect();
    prop_assert_eq!(waiting, parked, "waits differ from the model");
    Ok(())
}

async fn model(b: Backend, needs: Vec<Vec<bool>>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let Some(fresh) = b.fresh() else {
        return Ok(());
    };
    let store = &fresh.store;
    let w = WorkerId::generate();
    let mut items = Vec::new();
    for (i, need) in needs.iter().enumerate() {
        let mut limits: Vec<Limit> = KEYS
            .iter()
            .zip(need)
            .filter(|(_, n)| **n)
            .map(|((k, cap), _)| Limit {
                key: k.to_string(),
                capacity: *cap,
            })
            .collect();
        if limits.is_empty() {
            limits.push(Limit::resource("a", 1));
        }
        limits.sort();
        items.push(Item {
            r: admit(store, &format!("s{i}"), i as i64).await,
            call: call_of("t"),
            limits,
            state: State::Queued,
            inserted: false,
        });
    }
    let mut now = 1_000;
    let by_id = |items: &[Item], id: &RequestId| items.iter().position(|i| &i.r.id == id).unwrap();
    for op in &ops {
        now += 10;
        match op {
            Op::Claim(n) => {
                for r in store.claim(&w, *n, Timestamp(now)).await.unwrap() {
                    let i = by_id(&items, &r.id);
                    prop_assert!(
                        matches!(items[i].state, State::Queued | State::Parked),
                        "claimed a request in state {:?}",
                        items[i].state
                    );
                    items[i].state = State::Claimed;
                    run_claimed(store, &mut items[i], now).await?;
                }
            }
            Op::Finish(i) => {
                if let Some(it) = items.get_mut(*i).filter(|it| it.state == State::Holding) {
                    complete(store, &it.r, &it.call, now).await;
                    it.state = State::Done;
                }
            }
            Op::Crash => {
                store
                    .recover(&WorkerId::generate(), Timestamp(now), 1_000)
                    .await
                    .unwrap();
                for it in items
                    .iter_mut()
                    .filter(|it| matches!(it.state, State::Holding | State::Claimed))
                {
                    it.state = State::Queued;
                }
            }
            Op::Cancel(i) => {
                if let Some(it) = items.get_mut(*i).filter(|it| it.state != State::Done) {
                    store
                        .cancel(
                            &it.r.id,
                            &Actor::new(ActorKind::Cli, "op"),
                            None,
                            Timestamp(now),
                        )
                        .await
                        .unwrap();
                    it.state = State::Done;
                }
            }
        }
        check_against_model(store, &items).await?;
    }
    // Drain: no deadlock and no starvation — everything left finishes.
    for round in 0.. {
        prop_assert!(
            round < 100,
            "the queue never drained: {:?}",
            items.iter().map(|i| i.state).collect::<Vec<_>>()
        );
        now += 10;
        for r in store.claim(&w, 8, Timestamp(now)).await.unwrap() {
            let i = by_id(&items, &r.id);
            items[i].state = State::Claimed;
            run_claimed(store, &mut items[i], now).await?;
        }
        check_against_model(store, &items).await?;
        for it in items.iter_mut().filter(|it| it.state == State::Holding) {
            complete(store, &it.r, &it.call, now).await;
            it.state = State::Done;
        }
        if items.iter().all(|i| i.state == State::Done) {
            break;
        }
    }
    prop_assert!(store.holds().await.unwrap().is_empty());
    prop_assert!(store.waits().await.unwrap().is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn limits_are_never_exceeded_and_everything_is_released(
        needs in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 3), 2..8),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(model(Backend::Sqlite, needs, ops))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn limits_are_never_exceeded_and_everything_is_released_on_postgres(
        needs in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 3), 2..8),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(model(Backend::Postgres, needs, ops))?;
    }
}
