//! `Store::data_version` is how a worker notices another process's commits: it must
//! change when another connection commits, and only then.

use harness_core::*;
use harness_store::{Store, StoreOptions};

fn worker(n: u32) -> Worker {
    Worker {
        id: WorkerId::generate(),
        pid: n,
        host: "test".into(),
        started_at: Timestamp(1_000),
        heartbeat_at: Timestamp(1_000),
        stopped_at: None,
    }
}

/// Polls `data_version` many times while other reads keep the read pool busy, so
/// that polls land on different pooled connections if they use the pool.
async fn polls_beside_reads(store: &Store) -> Vec<i64> {
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                Some(s.data_version().await.unwrap())
            } else {
                s.workers(100).await.unwrap();
                s.last_seq().await.unwrap();
                None
            }
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.extend(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_version_changes_exactly_when_another_connection_commits() {
    let dir = tempfile::tempdir().unwrap();
    let watcher = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let other = Store::open(dir.path(), StoreOptions::default()).unwrap();
    // Reads beside the watcher's polls, commits from the other handle in between.
    for round in 0..5 {
        other.register_worker(worker(round), 0).await.unwrap();
        let before = polls_beside_reads(&watcher).await;
        assert!(
            before.windows(2).all(|w| w[0] == w[1]),
            "round {round}: data_version moved without a commit: {before:?}"
        );
        other.register_worker(worker(100 + round), 0).await.unwrap();
        let after = watcher.data_version().await.unwrap();
        assert_ne!(
            after, before[0],
            "round {round}: another connection committed but data_version did not change"
        );
    }
    // This process's own writer is another connection too.
    let v = watcher.data_version().await.unwrap();
    watcher.register_worker(worker(999), 0).await.unwrap();
    assert_ne!(watcher.data_version().await.unwrap(), v);
}
