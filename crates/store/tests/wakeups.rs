//! `Store::wakeups` is how a worker or a subscriber notices commits, its own and
//! other processes': it must report a commit by another connection, and only commits.

use harness_core::*;
use harness_store::{Store, StoreOptions, Wakeups};
use std::time::Duration;

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

/// Checks for commits many times while other reads keep the store's read
/// connections busy: reads must never pass for commits.
async fn checks_beside_reads(store: &Store, wake: &mut Wakeups) -> Vec<bool> {
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.workers(100).await.unwrap();
            s.last_seq().await.unwrap();
        }));
    }
    let mut out = Vec::new();
    for _ in 0..20 {
        out.push(wake.check().await);
        tokio::task::yield_now().await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wakeups_report_commits_of_another_connection_and_only_commits() {
    let dir = tempfile::tempdir().unwrap();
    let watcher = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let other = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let mut wake = watcher.wakeups().await;
    for round in 0..5 {
        let quiet = checks_beside_reads(&watcher, &mut wake).await;
        assert!(
            quiet.iter().all(|c| !c),
            "round {round}: a wake-up without a commit: {quiet:?}"
        );
        other.register_worker(worker(round), 0).await.unwrap();
        assert!(
            wake.check().await,
            "round {round}: another connection committed but no wake-up"
        );
        assert!(
            !wake.check().await,
            "round {round}: one commit, two wake-ups"
        );
    }
    // This process's own commits wake too.
    watcher.register_worker(worker(999), 0).await.unwrap();
    assert!(wake.check().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_woken_by_another_connection_within_the_poll_interval() {
    let dir = tempfile::tempdir().unwrap();
    let watcher = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let other = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let mut wake = watcher.wakeups().await;
    let waiter = tokio::spawn(async move {
        let started = std::time::Instant::now();
        wake.changed().await;
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!waiter.is_finished(), "woken without a commit");
    other.register_worker(worker(1), 0).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("not woken within 2 s of another connection's commit")
        .unwrap();
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
}
