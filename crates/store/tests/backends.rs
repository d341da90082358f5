//! The parts of the contract the backends keep: on SQLite one worker holds a store
//! at a time (refused naming the holder, free again when it lets go); on PostgreSQL
//! many workers share it, each seen alive while it lives; a commit through one
//! handle wakes a waiter on another; recovery counts attempts the same way.

mod common;

use common::Backend;
use harness_core::*;
use harness_store::StoreError;
use std::time::{Duration, Instant};

fn worker(n: u32) -> Worker {
    Worker {
        id: WorkerId::generate(),
        pid: n,
        host: "test".into(),
        started_at: Timestamp(1_000),
        heartbeat_at: Timestamp(1_000),
        stopped_at: None,
        version: "test".into(),
    }
}

on_both!(
    one_worker_holds_a_store_at_a_time,
    one_worker_holds_a_store_at_a_time_on_postgres,
    worker_lock
);

async fn worker_lock(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let other = b.reopen(&fresh);
    assert_eq!(other.worker_holder().await.unwrap(), None);
    let first = WorkerId::generate();
    let held = fresh.store.lock_worker(&first, Timestamp(5)).await.unwrap();
    let holder = other.worker_holder().await.unwrap().expect("a holder");
    assert_eq!(holder.worker_id, first.as_str());
    assert_eq!(holder.pid, std::process::id());
    let second = other.lock_worker(&WorkerId::generate(), Timestamp(6)).await;
    match b {
        Backend::Sqlite => {
            let e = second.err().expect("a second worker took the store");
            assert!(matches!(e, StoreError::Locked(_)), "{e:?}");
            assert!(e.to_string().contains(first.as_str()), "{e}");
        }
        Backend::Postgres => {
            // Many workers share one database; a view still sees one alive.
            let second = second.expect("workers share a PostgreSQL store");
            drop(held);
            wait_free_of(&other, &first).await;
            assert!(
                other.worker_holder().await.unwrap().is_some(),
                "the second lives"
            );
            drop(second);
            return wait_free(&other).await;
        }
    }
    drop(held);
    // Released (PostgreSQL: once the server has seen the connection close).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match other.lock_worker(&WorkerId::generate(), Timestamp(7)).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert!(matches!(e, StoreError::Locked(_)), "{e:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("still locked after the holder let go: {e}"),
        }
    }
}

on_both!(
    a_commit_through_another_handle_wakes_a_waiter,
    a_commit_through_another_handle_wakes_a_waiter_on_postgres,
    wakeups
);

/// Until no worker holds `store` (PostgreSQL: once the server saw the connection close).
async fn wait_free(store: &harness_store::Store) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.worker_holder().await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "still held after the holder let go"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Until `worker` is no longer the one `store` names as holding it.
async fn wait_free_of(store: &harness_store::Store, worker: &WorkerId) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some(h) = store.worker_holder().await.unwrap() {
        if h.worker_id != worker.as_str() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{worker} still named after it let go"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wakeups(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let other = b.reopen(&fresh);
    let mut wake = fresh.store.wakeups().await;
    // Let a listener settle (PostgreSQL says "maybe" until it listens).
    tokio::time::sleep(Duration::from_millis(300)).await;
    while wake.check().await {}
    let waiter = tokio::spawn(async move {
        wake.changed().await;
        Instant::now()
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(!waiter.is_finished(), "woken without a commit");
    let committed = Instant::now();
    other.register_worker(worker(1), 0).await.unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("not woken within 2 s of another handle's commit")
        .unwrap();
    let took = woken.duration_since(committed);
    // SQLite polls every 100 ms; PostgreSQL is notified.
    let bound = match b {
        Backend::Sqlite => Duration::from_millis(400),
        Backend::Postgres => Duration::from_millis(100),
    };
    assert!(took < bound, "woken {took:?} after the commit");
}

on_both!(
    a_crash_counts_an_attempt_a_lost_commit_does_not,
    a_crash_counts_an_attempt_a_lost_commit_does_not_on_postgres,
    attempts
);

/// Recovery after a dead worker counts an attempt; the safety net re-queueing a
/// request its own live worker lost (a run ended by a store failure) does not.
async fn attempts(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let store = &fresh.store;
    let adm = harness_store::Admission {
        queue_capacity: 10,
        reject_if_session_busy: false,
    };
    let new = |s: &str| harness_store::NewRequest {
        id: RequestId::generate(),
        session_id: SessionId::parse(s).unwrap(),
        agent: "a".into(),
        input: "x".into(),
        trace_id: "t".into(),
        traceparent: None,
        priority: 0,
    };
    let me = WorkerId::generate();
    let lock = store.lock_worker(&me, Timestamp(1)).await.unwrap();
    store.admit(new("s1"), adm, Timestamp(1)).await.unwrap();
    let r = store.claim(&me, 1, Timestamp(2)).await.unwrap().remove(0);
    assert_eq!(r.attempt, 1);
    // This worker is alive but its run of `r` ended without a commit.
    let live = harness_store::Liveness {
        owner: Some(me.clone()),
        running: Some(Default::default()),
    };
    let repaired = store
        .repair(live, Timestamp(3), Timestamp(3), 3)
        .await
        .unwrap();
    assert_eq!(repaired.len(), 1, "{repaired:?}");
    let again = store.get_request(&r.id).await.unwrap();
    assert_eq!((again.status, again.attempt), (RequestStatus::Queued, 1));
    // A dead worker's request: recovery counts the attempt.
    let r = store.claim(&me, 1, Timestamp(4)).await.unwrap().remove(0);
    drop(lock);
    wait_free(store).await;
    let next = WorkerId::generate();
    store.recover(&next, Timestamp(5), 3).await.unwrap();
    let again = store.get_request(&r.id).await.unwrap();
    assert_eq!((again.status, again.attempt), (RequestStatus::Queued, 2));
    // The take-over is on record, naming both workers.
    let reclaimed = reclaims(store, &r.id).await;
    assert_eq!(reclaimed.len(), 1, "{reclaimed:?}");
    assert_eq!(reclaimed[0].payload["from_worker"], me.as_str());
    assert_eq!(reclaimed[0].payload["by_worker"], next.as_str());
    assert_eq!(reclaimed[0].payload["reason"], "its worker is gone");
}

/// The `request.reclaimed` events of `id`. On PostgreSQL the newest events show
/// once every older transaction (of any test sharing the database) has ended, so
/// read until one shows, for up to 10 s.
async fn reclaims(store: &harness_store::Store, id: &RequestId) -> Vec<Event> {
    let filter = EventFilter {
        request_id: Some(id.clone()),
        ..Default::default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let events: Vec<Event> = store
            .events_after(0, filter.clone(), 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == EventKind::RequestReclaimed)
            .collect();
        if !events.is_empty() || std::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

on_both!(
    capacity_bounds_requests_not_started_yet,
    capacity_bounds_requests_not_started_yet_on_postgres,
    capacity
);

/// `queue_capacity` bounds the admitted root requests not started yet: a claim and
/// a cancel each free a place; a started request put back on the queue (a
/// graceful stop) does not take one again. On SQLite the depth admission reads
/// is kept by triggers (V11); it must agree with a count of the rows.
async fn capacity(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let store = &fresh.store;
    let adm = harness_store::Admission {
        queue_capacity: 3,
        reject_if_session_busy: false,
    };
    let new = |s: &str| harness_store::NewRequest {
        id: RequestId::generate(),
        session_id: SessionId::parse(s).unwrap(),
        agent: "a".into(),
        input: "x".into(),
        trace_id: "t".into(),
        traceparent: None,
        priority: 0,
    };
    let full = |r: Result<Request, harness_store::StoreError>| match r {
        Err(harness_store::StoreError::QueueFull {
            queued, capacity, ..
        }) => (queued, capacity),
        other => panic!("expected a full queue, got {other:?}"),
    };
    let me = WorkerId::generate();
    let t = Timestamp(1);
    let a = store.admit(new("s1"), adm, t).await.unwrap();
    let b2 = store.admit(new("s2"), adm, t).await.unwrap();
    store.admit(new("s3"), adm, t).await.unwrap();
    assert_eq!(full(store.admit(new("s4"), adm, t).await), (3, 3));
    // A claim starts s1: one place free.
    let claimed = store.claim(&me, 1, Timestamp(2)).await.unwrap();
    assert_eq!(claimed[0].id, a.id);
    store.admit(new("s4"), adm, t).await.unwrap();
    assert_eq!(full(store.admit(new("s5"), adm, t).await), (3, 3));
    // Cancelling a queued request frees its place.
    store
        .cancel(
            &b2.id,
            &Actor::new(ActorKind::Cli, "op"),
            None,
            Timestamp(3),
        )
        .await
        .unwrap();
    store.admit(new("s5"), adm, t).await.unwrap();
    // The started request back on the queue is resuming, not waiting to start.
    store
        .release(vec![a.id.clone()], "stopping", Timestamp(4))
        .await
        .unwrap();
    assert_eq!(full(store.admit(new("s6"), adm, t).await), (3, 3));
    let stats = store.stats(Timestamp(5), Timestamp(5)).await.unwrap();
    assert_eq!((stats.queued, stats.resuming), (3, 1));
    // Each session's head is claimed (s1 again, s3, s4, s5) and s1 finishes: the
    // queue is empty, three places again.
    let again = store.claim(&me, 4, Timestamp(6)).await.unwrap();
    assert_eq!(again.len(), 4, "{again:?}");
    store
        .commit_step(
            harness_store::StepCommit::new(&a.id, &a.session_id, Timestamp(7)).output("ok"),
        )
        .await
        .unwrap();
    let stats = store.stats(Timestamp(8), Timestamp(8)).await.unwrap();
    assert_eq!((stats.queued, stats.resuming), (0, 0));
    for s in ["s6", "s7", "s8"] {
        store.admit(new(s), adm, t).await.unwrap();
    }
    assert_eq!(full(store.admit(new("s9"), adm, t).await), (3, 3));
}

on_both!(
    a_refused_step_writes_nothing_and_says_why,
    a_refused_step_writes_nothing_and_says_why_on_postgres,
    refused_steps
);

/// A step the store refuses writes nothing of itself and says why: one updating a
/// step row that is not there (`not_found`), one of a request that settled
/// meanwhile (wrong state). The steps around them go on. (On PostgreSQL the server
/// refuses these inside the step's one statement; the store then asks again.)
async fn refused_steps(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let store = &fresh.store;
    let adm = harness_store::Admission {
        queue_capacity: 10,
        reject_if_session_busy: false,
    };
    let me = WorkerId::generate();
    let _lock = store.lock_worker(&me, Timestamp(1)).await.unwrap();
    store
        .admit(common::new_request("s1", 0), adm, Timestamp(1))
        .await
        .unwrap();
    let r = store.claim(&me, 1, Timestamp(2)).await.unwrap().remove(0);
    let step = |idx: u32, at: i64| common::text_step(&r.id, idx, at, &format!("turn {idx}"));
    let commit = |at: i64| {
        StepCommit::new(&r.id, &r.session_id, Timestamp(at))
            .count_step()
            .event(EventBody::RequestRepaired {
                problem: format!("at {at}"),
                action: "a".into(),
            })
    };
    use harness_store::StepCommit;
    store
        .commit_step(commit(3).insert(step(0, 3)))
        .await
        .unwrap();

    let e = store
        .commit_step(commit(4).insert(step(1, 4)).update(step(7, 4)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::NotFound { kind: "step", .. }),
        "{e:?}"
    );
    let idxs = |steps: Vec<Step>| steps.iter().map(|s| s.idx).collect::<Vec<_>>();
    assert_eq!(idxs(store.steps(&r.id).await.unwrap()), vec![0]);
    assert_eq!(store.get_request(&r.id).await.unwrap().steps, 1);

    store
        .commit_step(commit(5).insert(step(1, 5)).output("done"))
        .await
        .unwrap();
    let e = store
        .commit_step(commit(6).insert(step(2, 6)))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::WrongState { .. }), "{e:?}");
    let got = store.get_request(&r.id).await.unwrap();
    assert_eq!((got.status, got.steps), (RequestStatus::Completed, 2));
    assert_eq!(idxs(store.steps(&r.id).await.unwrap()), vec![0, 1]);

    // Only the kept steps' events: read once the last one shows (on PostgreSQL an
    // event shows once every older transaction has ended).
    let filter = EventFilter {
        request_id: Some(r.id.clone()),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let problems = loop {
        let problems: Vec<String> = store
            .events_after(0, filter.clone(), 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == EventKind::RequestRepaired)
            .map(|e| {
                e.payload["problem"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        if problems.len() >= 2 || Instant::now() > deadline {
            break problems;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(problems, vec!["at 3", "at 5"]);
}
