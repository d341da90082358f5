//! `Store::list_workers`, what `runtime overview` and `runtime health` show: the
//! live workers, those stopped or dead within the last hour, and a dead one that
//! still holds running requests however old; each alive only while its lock is
//! held (not by its heartbeat), with the root requests it runs and its version.

mod common;

use common::Backend;
use harness_core::*;
use harness_store::{Admission, Store, WORKERS_RECENT};
use std::time::{Duration, Instant};

/// "Now" for the listing: well past the hour the oldest rows are older than.
const NOW: Timestamp = Timestamp(10_000_000);
const HOUR: i64 = WORKERS_RECENT.as_millis() as i64;

fn worker(id: &WorkerId, pid: u32, started: i64, version: &str) -> Worker {
    Worker {
        id: id.clone(),
        pid,
        host: format!("host-{pid}"),
        started_at: Timestamp(started),
        heartbeat_at: Timestamp(started),
        stopped_at: None,
        version: version.into(),
    }
}

async fn admit(store: &Store, session: &str) {
    let new = common::new_request(session, 0);
    let adm = Admission {
        queue_capacity: 100,
        reject_if_session_busy: false,
    };
    store.admit(new, adm, Timestamp(1_000)).await.unwrap();
}

/// The listing as (worker, state, running), newest first.
async fn listed(store: &Store) -> Vec<(WorkerId, WorkerState, u64)> {
    store
        .list_workers(NOW)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.worker.id, s.state, s.running))
        .collect()
}

on_both!(
    lists_live_recent_and_holding_workers,
    lists_live_recent_and_holding_workers_on_postgres,
    lists_workers
);

async fn lists_workers(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let store = &fresh.store;
    // A view: another handle (another process, as far as the store knows).
    let view = b.reopen(&fresh);
    for s in ["s1", "s2", "s3"] {
        admit(store, s).await;
    }
    let ids: Vec<WorkerId> = (0..6).map(|_| WorkerId::generate()).collect();
    let [
        crashed_holding,
        crashed_long_ago,
        stopped_long_ago,
        stopped,
        crashed,
        live,
    ] = <[WorkerId; 6]>::try_from(ids).unwrap();

    // Dead for hours, but still the holder of a running request: listed.
    store
        .register_worker(worker(&crashed_holding, 1, 1_000, "0.0.9"), 0)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim(&crashed_holding, 1, Timestamp(1_500))
            .await
            .unwrap()
            .len(),
        1
    );
    // Dead or stopped more than an hour ago, holding nothing: not listed.
    store
        .register_worker(worker(&crashed_long_ago, 2, 2_000, "0.0.9"), 0)
        .await
        .unwrap();
    store
        .register_worker(worker(&stopped_long_ago, 3, 3_000, "0.0.9"), 0)
        .await
        .unwrap();
    store
        .worker_stopped(&stopped_long_ago, Timestamp(4_000))
        .await
        .unwrap();
    // Stopped, and dead without stopping, within the hour: listed.
    let recent = NOW.0 - HOUR / 2;
    store
        .register_worker(worker(&stopped, 4, recent, "0.1.0"), 0)
        .await
        .unwrap();
    store
        .worker_stopped(&stopped, Timestamp(recent + 10))
        .await
        .unwrap();
    store
        .register_worker(worker(&crashed, 5, recent + 20, "0.1.0"), 0)
        .await
        .unwrap();
    // Alive: it holds its lock (its heartbeat is as old as the crashed one's).
    let lock = store
        .lock_worker(&live, Timestamp(recent + 30))
        .await
        .unwrap();
    store
        .register_worker(worker(&live, 6, recent + 30, "0.2.0"), 0)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim(&live, 2, Timestamp(recent + 40))
            .await
            .unwrap()
            .len(),
        2
    );

    let mut want = vec![
        (live.clone(), WorkerState::Alive, 2),
        (crashed.clone(), WorkerState::Dead, 0),
        (stopped.clone(), WorkerState::Stopped, 0),
        (crashed_holding.clone(), WorkerState::Dead, 1),
    ];
    // PostgreSQL: workers share the store; another one, alive, runs nothing.
    let second = WorkerId::generate();
    let second_lock = match b {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let lock = view
                .lock_worker(&second, Timestamp(recent + 50))
                .await
                .unwrap();
            view.register_worker(worker(&second, 7, recent + 50, "0.2.0"), 0)
                .await
                .unwrap();
            want.insert(0, (second.clone(), WorkerState::Alive, 0));
            Some(lock)
        }
    };
    assert_eq!(listed(&view).await, want);

    // Every field of the row, as registered.
    let all = view.list_workers(NOW).await.unwrap();
    let l = all.iter().find(|s| s.worker.id == live).unwrap();
    assert_eq!(l.worker.pid, 6);
    assert_eq!(l.worker.host, "host-6");
    assert_eq!(l.worker.version, "0.2.0");
    assert_eq!(l.worker.started_at, Timestamp(recent + 30));
    assert_eq!(l.worker.stopped_at, None);
    let s = all.iter().find(|s| s.worker.id == stopped).unwrap();
    assert_eq!(s.worker.stopped_at, Some(Timestamp(recent + 10)));
    assert_eq!(s.worker.version, "0.1.0");
    match b {
        Backend::Sqlite => assert_eq!(view.worker_lease(), None),
        Backend::Postgres => assert_eq!(view.worker_lease(), Some(Duration::from_secs(15))),
    }

    // A worker whose process ends (its lock let go) is dead at once, heartbeat or
    // not (PostgreSQL: once the server has seen its connection close).
    let (gone, released) = match second_lock {
        Some(l) => (second, l),
        None => (live.clone(), lock),
    };
    drop(released);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = listed(&view).await;
        let state = now.iter().find(|w| w.0 == gone).map(|w| w.1);
        if state == Some(WorkerState::Dead) {
            // Its running requests are still its own until a worker recovers them.
            if gone == live {
                assert!(
                    now.contains(&(live.clone(), WorkerState::Dead, 2)),
                    "{now:?}"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{gone} still {state:?} after its lock was let go"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both!(
    lists_at_most_the_newest_workers,
    lists_at_most_the_newest_workers_on_postgres,
    bounded
);

/// Many recent workers: only the newest `WORKERS_LISTED`, newest first.
async fn bounded(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let store = &fresh.store;
    let n = harness_store::WORKERS_LISTED + 5;
    let mut ids = Vec::new();
    for i in 0..n {
        let id = WorkerId::generate();
        store
            .register_worker(worker(&id, i as u32, NOW.0 - 1_000 + i as i64, "0.1.0"), 0)
            .await
            .unwrap();
        ids.push(id);
    }
    let got: Vec<WorkerId> = listed(store).await.into_iter().map(|w| w.0).collect();
    ids.reverse();
    ids.truncate(harness_store::WORKERS_LISTED);
    assert_eq!(got, ids);
}
