//! Many workers on one PostgreSQL store: a worker's running requests are left
//! alone while it lives and its lease holds; they are recovered at once when it
//! dies, and after the lease when it is alive but silent (paused, partitioned),
//! in which case its later commits are refused (fenced).

mod common;

use common::Backend;
use harness_core::*;
use harness_store::{Admission, Liveness, StepCommit, StoreError};
use std::time::{Duration, Instant};

const LEASE_MS: i64 = 15_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_a_store_and_take_over_only_what_is_lost() {
    let Some(fresh) = Backend::Postgres.fresh() else {
        return;
    };
    let a = fresh.store.clone();
    let b = Backend::Postgres.reopen(&fresh);
    let adm = Admission {
        queue_capacity: 10,
        reject_if_session_busy: false,
    };
    for s in ["s1", "s2"] {
        a.admit(common::new_request(s, 0), adm, Timestamp(1_000))
            .await
            .unwrap();
    }
    let (wa, wb) = (WorkerId::generate(), WorkerId::generate());
    let lock_a = a.lock_worker(&wa, Timestamp(1_000)).await.unwrap();
    let _lock_b = b.lock_worker(&wb, Timestamp(1_000)).await.unwrap();
    let mine = a.claim(&wa, 1, Timestamp(2_000)).await.unwrap().remove(0);
    let theirs = b.claim(&wb, 1, Timestamp(2_000)).await.unwrap().remove(0);
    assert_ne!(
        mine.session_id, theirs.session_id,
        "one request per session"
    );

    // B starting, or B's safety net: A is alive and its lease holds.
    let now = Timestamp(3_000);
    assert!(b.recover(&wb, now, 3).await.unwrap().requeued.is_empty());
    let live_b = Liveness {
        owner: Some(wb.clone()),
        running: Some([theirs.id.clone()].into_iter().collect()),
    };
    let repaired = b.repair(live_b.clone(), now, now, 3).await.unwrap();
    assert!(
        repaired.is_empty(),
        "A's live request was taken: {repaired:?}"
    );

    // A goes silent past its lease (SIGSTOP, say): B's safety net takes it over…
    let later = Timestamp(2_000 + LEASE_MS + 3_000);
    let repaired = b.repair(live_b, later, later, 3).await.unwrap();
    assert_eq!(
        repaired.iter().map(|r| &r.id).collect::<Vec<_>>(),
        vec![&mine.id],
        "only A's lapsed request"
    );
    let again = b.claim(&wb, 1, later).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, mine.id);
    assert_eq!(again[0].attempt, 2, "a lapsed lease counts an attempt");
    let reclaimed = reclaimed_events(&b, 1).await;
    assert_eq!(reclaimed.len(), 1, "{reclaimed:?}");
    assert_eq!(reclaimed[0].request_id.as_ref(), Some(&mine.id));
    assert_eq!(reclaimed[0].payload["from_worker"], wa.as_str());
    assert_eq!(reclaimed[0].payload["by_worker"], wb.as_str());
    assert!(
        reclaimed[0].payload["reason"]
            .as_str()
            .unwrap()
            .starts_with("its lease expired at"),
        "{reclaimed:?}"
    );
    // …and A, resumed, can commit nothing.
    let step = Step {
        request_id: mine.id.clone(),
        idx: 0,
        agent: "a".into(),
        status: StepStatus::Completed,
        started_at: later,
        finished_at: Some(later),
        body: StepBody::model_turn(ModelTurn::Text {
            text: "late".into(),
        }),
    };
    let e = a
        .commit_step(StepCommit::new(&mine.id, &mine.session_id, later).insert(step))
        .await
        .expect_err("a fenced worker committed");
    assert!(matches!(e, StoreError::LeaseLost { .. }), "{e:?}");
    assert!(b.steps(&mine.id).await.unwrap().is_empty());

    // B renews its leases by its heartbeat.
    b.register_worker(
        Worker {
            id: wb.clone(),
            pid: 2,
            host: "b".into(),
            started_at: later,
            heartbeat_at: later,
            stopped_at: None,
            version: "test".into(),
        },
        0,
    )
    .await
    .unwrap();
    b.heartbeat(&wb, later).await.unwrap();

    // A dies: what it still held is recovered at once, lease or not.
    let c = Backend::Postgres.reopen(&fresh);
    let wc = WorkerId::generate();
    let _lock_c = c.lock_worker(&wc, later).await.unwrap();
    a.admit(common::new_request("s3", 0), adm, later)
        .await
        .unwrap();
    let held = a.claim(&wa, 1, later).await.unwrap().remove(0);
    drop(lock_a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = c.recover(&wc, later, 3).await.unwrap();
        if r.requeued.contains(&held.id) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a dead worker's request was not recovered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // B's own running request was never touched.
    let t = b.get_request(&theirs.id).await.unwrap();
    assert_eq!((t.status, t.worker_id), (RequestStatus::Running, Some(wb)));
}

async fn register(store: &harness_store::Store, id: &WorkerId, now: Timestamp) {
    let w = Worker {
        id: id.clone(),
        pid: 1,
        host: "h".into(),
        started_at: now,
        heartbeat_at: now,
        stopped_at: None,
        version: "test".into(),
    };
    store.register_worker(w, 0).await.unwrap();
}

/// Reads every `request.reclaimed` event until `n` show (the cluster-wide event
/// watermark waits for other tests' transactions), for up to 10 s.
async fn reclaimed_events(store: &harness_store::Store, n: usize) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen: Vec<Event> = store
            .events_after(0, EventFilter::default(), 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == EventKind::RequestReclaimed)
            .collect();
        if seen.len() >= n || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running worker's take-over (`Store::take_over`, on its timer): another
/// worker's runs are left alone while it lives and its lease holds; once it dies
/// they are all requeued, a bounded batch per call, without waiting for a row a
/// transaction in flight holds (a paused worker's); a silent worker's after its
/// lease. SQLite has nothing to take over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_over_requeues_lost_runs_in_batches_and_skips_held_rows() {
    let sqlite = Backend::Sqlite.fresh().unwrap();
    assert!(!sqlite.store.shared_by_workers());
    let Some(fresh) = Backend::Postgres.fresh() else {
        return;
    };
    let a = fresh.store.clone();
    let b = Backend::Postgres.reopen(&fresh);
    assert!(a.shared_by_workers());
    // More than one batch (500).
    const N: usize = 520;
    let adm = Admission {
        queue_capacity: 2 * N,
        reject_if_session_busy: false,
    };
    for i in 0..N {
        a.admit(
            common::new_request(&format!("s{i}"), 0),
            adm,
            Timestamp(1_000),
        )
        .await
        .unwrap();
    }
    let (wa, wb) = (WorkerId::generate(), WorkerId::generate());
    let lock_a = a.lock_worker(&wa, Timestamp(1_000)).await.unwrap();
    let _lock_b = b.lock_worker(&wb, Timestamp(1_000)).await.unwrap();
    register(&a, &wa, Timestamp(1_000)).await;
    register(&b, &wb, Timestamp(1_000)).await;
    let mut held = Vec::new();
    while held.len() < N {
        let got = a
            .claim(&wa, N - held.len(), Timestamp(2_000))
            .await
            .unwrap();
        assert!(!got.is_empty(), "claimed {} of {N}", held.len());
        held.extend(got);
    }
    let now = Timestamp(3_000);
    let none = b.take_over(&wb, now, 3).await.unwrap();
    assert!(
        none.requeued.is_empty() && none.failed.is_empty(),
        "A is alive and its leases hold: {none:?}"
    );

    // A transaction in flight (a paused worker's) holds the oldest row's lock.
    let url = common::url_of(&fresh);
    let (locker, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let schema = common::schema_of(&fresh);
    locker.batch_execute("BEGIN").await.unwrap();
    locker
        .execute(
            &format!("SELECT 1 FROM {schema}.requests WHERE id = $1 FOR UPDATE"),
            &[&held[0].id.as_str()],
        )
        .await
        .unwrap();

    // A dies (its liveness lock goes with its connection).
    drop(lock_a);
    let take = || async {
        tokio::time::timeout(Duration::from_secs(10), b.take_over(&wb, now, 3))
            .await
            .expect("the take-over waited on a held row")
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let first = loop {
        let r = take().await;
        if !r.requeued.is_empty() || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(first.requeued.len(), 500, "one batch");
    assert!(
        !first.requeued.contains(&held[0].id),
        "the held row was skipped"
    );
    let second = take().await;
    assert_eq!(second.requeued.len(), N - 501, "the rest but the held row");
    assert!(take().await.requeued.is_empty(), "the held row waits");
    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(take().await.requeued, vec![held[0].id.clone()]);
    for r in &held {
        let r = b.get_request(&r.id).await.unwrap();
        assert_eq!(
            (r.status, r.attempt, r.worker_id),
            (RequestStatus::Queued, 2, None)
        );
    }
    let reclaimed = reclaimed_events(&b, N).await;
    assert_eq!(reclaimed.len(), N);
    assert!(
        reclaimed
            .iter()
            .all(|e| e.payload["reason"] == "its worker is gone"
                && e.payload["by_worker"] == wb.as_str()),
        "{:?}",
        reclaimed.first()
    );

    // A live worker whose lease lapsed (silent: paused, partitioned).
    let c = Backend::Postgres.reopen(&fresh);
    let wc = WorkerId::generate();
    let _lock_c = c.lock_worker(&wc, now).await.unwrap();
    register(&c, &wc, now).await;
    let late = c.claim(&wc, 1, now).await.unwrap().remove(0);
    assert!(b.take_over(&wb, now, 3).await.unwrap().requeued.is_empty());
    let lapsed = Timestamp(now.0 + LEASE_MS + 1);
    let r = b.take_over(&wb, lapsed, 3).await.unwrap();
    assert_eq!(r.requeued, vec![late.id.clone()]);
    let reclaimed = reclaimed_events(&b, N + 1).await;
    // `late` is one of the requests taken from A above: its second reclaim.
    let last = reclaimed
        .iter()
        .rfind(|e| e.request_id.as_ref() == Some(&late.id))
        .unwrap();
    assert!(
        last.payload["reason"]
            .as_str()
            .unwrap()
            .starts_with("its lease expired at"),
        "{last:?}"
    );
    drop(locker);
    let _ = conn.await;
}
