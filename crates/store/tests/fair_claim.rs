//! Fair claiming across sessions and priority with aging, on both backends.

mod common;

use common::Backend;
use harness_core::*;
use harness_store::{Admission, StepCommit, Store};

const ADM: Admission = Admission {
    queue_capacity: 100_000,
    reject_if_session_busy: false,
};

async fn admit(store: &Store, session: &str, priority: i32, at: i64) -> Request {
    store
        .admit(common::new_request(session, priority), ADM, Timestamp(at))
        .await
        .unwrap()
}

async fn finish(store: &Store, r: &Request, at: i64) {
    store
        .commit_step(StepCommit::new(&r.id, &r.session_id, Timestamp(at)).output("ok"))
        .await
        .unwrap();
}

on_both!(
    busy_session_does_not_starve_another,
    busy_session_does_not_starve_another_on_postgres,
    busy_session_scenario
);

/// One worker slot: session `busy` has 200 queued before `quiet` admits one; the
/// quiet one is claimed right after the busy session's current request, not after
/// its backlog. Then the two alternate while both have work.
async fn busy_session_scenario(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let store = &fresh.store;
    let w = WorkerId::generate();
    let mut busy = Vec::new();
    for _ in 0..200 {
        busy.push(admit(store, "busy", 0, 10).await.id);
    }
    let first = store.claim(&w, 1, Timestamp(20)).await.unwrap();
    assert_eq!(first[0].id, busy[0]);
    let quiet = admit(store, "quiet", 0, 30).await;
    let quiet2 = admit(store, "quiet", 0, 31).await;
    finish(store, &first[0], 40).await;
    let next = store.claim(&w, 1, Timestamp(50)).await.unwrap();
    assert_eq!(
        next[0].id, quiet.id,
        "the quiet session waited behind the busy one's backlog"
    );
    finish(store, &next[0], 60).await;
    let next = store.claim(&w, 1, Timestamp(70)).await.unwrap();
    assert_eq!(
        next[0].id, busy[1],
        "round robin: back to the busy session, FIFO within it"
    );
    finish(store, &next[0], 80).await;
    let next = store.claim(&w, 1, Timestamp(90)).await.unwrap();
    assert_eq!(next[0].id, quiet2.id);
    assert_eq!(store.get_request(&quiet2.id).await.unwrap().priority, 0);
}

on_both!(
    higher_priority_first_and_aging_lifts_the_low,
    higher_priority_first_and_aging_lifts_the_low_on_postgres,
    priority_scenario
);

async fn priority_scenario(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let store = &fresh.store;
    let w = WorkerId::generate();
    let low = admit(store, "low", -5, 0).await;
    let normal = admit(store, "normal", 0, 0).await;
    let high = admit(store, "high", 7, 0).await;
    assert_eq!(store.get_request(&high.id).await.unwrap().priority, 7);
    let got = store.claim(&w, 3, Timestamp(1)).await.unwrap();
    let ids: Vec<_> = got.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids, vec![high.id, normal.id, low.id.clone()]);
    for r in &got {
        finish(store, r, 2).await;
    }
    // Aging: a low-priority request that has waited 6 aging steps beats a fresh
    // normal one (-5 + 6 > 0); one that waited 4 does not.
    let old_low = admit(store, "low", -5, 10).await;
    let at = 10 + 4 * PRIORITY_AGING_MS;
    let fresh_normal = admit(store, "normal", 0, at).await;
    let got = store.claim(&w, 1, Timestamp(at)).await.unwrap();
    assert_eq!(got[0].id, fresh_normal.id);
    finish(store, &got[0], at).await;
    let at = 10 + 6 * PRIORITY_AGING_MS;
    let fresh_normal2 = admit(store, "normal", 0, at).await;
    let got = store.claim(&w, 1, Timestamp(at)).await.unwrap();
    assert_eq!(
        got[0].id, old_low.id,
        "aging never lifted the low-priority request"
    );
    let got = store.claim(&w, 1, Timestamp(at)).await.unwrap();
    assert_eq!(got[0].id, fresh_normal2.id);
}

/// No starvation: low-priority requests in quiet sessions, against a stream of
/// top-priority admissions in busy sessions that never runs dry, are each claimed
/// within a bound set by their priority gap (aging lifts one level per
/// `PRIORITY_AGING_MS`) and the number of sessions (the round robin breaks ties).
async fn no_starvation(prios: Vec<i32>) -> Result<(), proptest::test_runner::TestCaseError> {
    let Some(fresh) = Backend::Sqlite.fresh() else {
        return Ok(());
    };
    let store = &fresh.store;
    let w = WorkerId::generate();
    const TOP: i32 = 10;
    const HOT: usize = 3;
    let step = PRIORITY_AGING_MS / 3;
    let mut cold = Vec::new();
    for (i, p) in prios.iter().enumerate() {
        cold.push((admit(store, &format!("cold{i}"), *p, 0).await.id, *p));
    }
    let mut claimed_at = std::collections::HashMap::new();
    let rounds = 3 * (2 * TOP as usize + 2) + 2 * (prios.len() + HOT) + 8;
    for round in 0..rounds {
        let now = round as i64 * step;
        // The busy sessions never run dry: two new top-priority requests per round.
        for k in 0..2 {
            admit(store, &format!("hot{}", (2 * round + k) % HOT), TOP, now).await;
        }
        for r in store.claim(&w, 1, Timestamp(now + 1)).await.unwrap() {
            claimed_at.insert(r.id.clone(), round);
            finish(store, &r, now + 2).await;
        }
    }
    for (id, p) in &cold {
        // Past the gap in aging steps (3 rounds each), it outranks every fresh top
        // request; then at most one round per session ahead of it.
        let bound = 3 * (TOP - p + 1) as usize + prios.len() + HOT;
        let got = claimed_at.get(id).copied();
        proptest::prop_assert!(
            got.is_some_and(|r| r <= bound),
            "priority {p} claimed at round {got:?}, bound {bound}"
        );
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 16, ..Default::default() })]
    #[test]
    fn low_priority_is_never_starved(prios in proptest::collection::vec(-10i32..=10, 1..6)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(no_starvation(prios))?;
    }
}
