//! A damaged, emptied or deleted database file is refused at open with an error
//! naming the file and what to do; `new_store` replaces it (never an intact one).

use harness_core::*;
use harness_store::{Admission, NewRequest, SIDECAR_FILE, Store, StoreError, StoreOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DB: &str = harness_store::DB_FILE;

/// A store of about a megabyte, closed (its WAL checkpointed into the file).
async fn filled(dir: &Path) -> PathBuf {
    let store = Store::open(dir, StoreOptions::default()).unwrap();
    let adm = Admission {
        queue_capacity: 10_000,
        reject_if_session_busy: false,
    };
    for i in 0..400 {
        store
            .admit(
                NewRequest {
                    id: RequestId::generate(),
                    session_id: SessionId::parse(&format!("s{}", i % 20)).unwrap(),
                    agent: "a".into(),
                    input: format!("{i} {}", "x".repeat(2000)),
                    trace_id: "t".into(),
                    traceparent: None,
                    priority: 0,
                },
                adm,
                Timestamp(1_000 + i),
            )
            .await
            .unwrap();
    }
    close(store, dir);
    let db = dir.join(DB);
    assert!(std::fs::metadata(&db).unwrap().len() > 800_000);
    db
}

/// Drops the store and waits for its connections to close (the last one folds the
/// WAL into the file and deletes it).
fn close(store: Store, dir: &Path) {
    drop(store);
    let wal = dir.join(format!("{DB}-wal"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while wal.exists() {
        assert!(Instant::now() < deadline, "the store never closed");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn expect_damaged(r: Result<Store, StoreError>, db: &Path, what: &str) -> String {
    let e = r
        .err()
        .unwrap_or_else(|| panic!("{what}: the damaged store was opened"));
    assert!(matches!(e, StoreError::Damaged { .. }), "{what}: {e:?}");
    assert!(e.is_corrupt());
    let msg = e.to_string();
    assert!(msg.contains(&db.display().to_string()), "{what}: {msg}");
    assert!(msg.contains("restore it from a backup"), "{what}: {msg}");
    msg
}

#[tokio::test]
async fn a_truncated_file_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled(dir.path()).await;
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let msg = expect_damaged(
        Store::open(dir.path(), StoreOptions::default()),
        &db,
        "truncated",
    );
    assert!(msg.contains("truncated"), "{msg}");
    expect_damaged(
        Store::open_existing(dir.path(), StoreOptions::default()),
        &db,
        "truncated, for a view",
    );
}

#[tokio::test]
async fn a_truncated_file_without_a_valid_header_size_is_caught_by_the_recorded_size() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled(dir.path()).await;
    let len = std::fs::metadata(&db).unwrap().len();
    let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    // Zero the header's page count (as files written by old SQLite versions have it):
    // only the sidecar's record of the size is left to tell.
    f.seek(SeekFrom::Start(28)).unwrap();
    f.write_all(&[0, 0, 0, 0]).unwrap();
    f.set_len(len / 2 / 4096 * 4096).unwrap();
    drop(f);
    let msg = expect_damaged(
        Store::open(dir.path(), StoreOptions::default()),
        &db,
        "truncated below the recorded size",
    );
    assert!(msg.contains(&format!("it was {len} bytes")), "{msg}");
}

#[tokio::test]
async fn an_overwritten_header_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled(dir.path()).await;
    let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.write_all(&[0xA5; 4096]).unwrap();
    drop(f);
    expect_damaged(
        Store::open(dir.path(), StoreOptions::default()),
        &db,
        "header",
    );
}

#[tokio::test]
async fn garbage_inside_the_file_fails_the_integrity_check_and_then_every_open_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled(dir.path()).await;
    let len = std::fs::metadata(&db).unwrap().len();
    let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    let garbage: Vec<u8> = (0..80 * 1024u32).map(|i| (i * 7 + 13) as u8).collect();
    f.write_all(&garbage).unwrap();
    drop(f);
    // The header and size are intact: a view may open it, but the full check fails
    // and says so.
    match Store::open_existing(dir.path(), StoreOptions::default()) {
        Err(e) => {
            expect_damaged(Err(e), &db, "garbage, view");
        }
        Ok(store) => {
            let c = store.check_integrity(Timestamp(5_000)).await.unwrap();
            assert!(!c.ok, "{c:?}");
            let recorded = store.last_integrity().await.unwrap().unwrap();
            assert!(!recorded.ok);
            close(store, dir.path());
        }
    }
    // Writers re-check a store whose last check failed: refused.
    expect_damaged(
        Store::open(dir.path(), StoreOptions::default()),
        &db,
        "garbage, writer",
    );
}

#[tokio::test]
async fn an_emptied_or_deleted_store_is_refused_unless_a_new_one_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled(dir.path()).await;
    let id = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(dir.path().join(SIDECAR_FILE)).unwrap(),
    )
    .unwrap()["store_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(&db, b"").unwrap();
    for (what, r) in [
        ("empty", Store::open(dir.path(), StoreOptions::default())),
        (
            "empty, view",
            Store::open_existing(dir.path(), StoreOptions::default()),
        ),
    ] {
        let e = r.err().unwrap_or_else(|| panic!("{what}: opened"));
        let msg = e.to_string();
        assert!(matches!(e, StoreError::Missing { .. }), "{what}: {e:?}");
        assert!(
            msg.contains("is empty") && msg.contains(&id) && msg.contains("--new-store"),
            "{what}: {msg}"
        );
    }
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "refusing wrote nothing"
    );
    std::fs::remove_file(&db).unwrap();
    let e = Store::open(dir.path(), StoreOptions::default())
        .err()
        .expect("deleted: opened");
    assert!(e.to_string().contains("is missing"), "{e}");

    // Asked for: a new, empty store with a new identity.
    let opts = StoreOptions {
        new_store: true,
        ..Default::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    assert!(store.replaced().is_some());
    assert_eq!(store.last_seq().await.unwrap(), 0);
    let sidecar = std::fs::read_to_string(dir.path().join(SIDECAR_FILE)).unwrap();
    assert!(!sidecar.contains(&id), "{sidecar}");
    close(store, dir.path());
    // And from then on it opens as usual.
    Store::open(dir.path(), StoreOptions::default()).unwrap();
}

#[tokio::test]
async fn a_new_store_replaces_a_damaged_one_moving_it_aside_but_never_an_intact_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled(dir.path()).await;
    let opts = StoreOptions {
        new_store: true,
        ..Default::default()
    };
    let e = Store::open(dir.path(), opts.clone())
        .err()
        .expect("replaced an intact store");
    assert!(matches!(e, StoreError::NotReplaced { .. }), "{e:?}");
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let store = Store::open(dir.path(), opts).unwrap();
    let moved = store.replaced().unwrap().moved_to.clone().unwrap();
    assert_eq!(
        std::fs::metadata(&moved).unwrap().len(),
        len / 2,
        "kept, not deleted"
    );
    assert!(store.replaced().unwrap().problem.contains("truncated"));
    assert_eq!(store.last_seq().await.unwrap(), 0);
}

#[tokio::test]
async fn a_store_compacted_by_another_program_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled(dir.path()).await;
    let before = std::fs::metadata(&db).unwrap().len();
    let c = rusqlite_free_vacuum(&db);
    assert!(c < before, "{c} < {before}");
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.last_seq().await.unwrap(), 400);
    let check = store
        .health_check(Timestamp(i64::MAX / 2), false)
        .await
        .unwrap();
    assert_eq!(check.status, HealthStatus::Ok, "{}", check.detail);
}

/// Deletes the requests' rows and VACUUMs from a connection of its own (as the
/// `sqlite3` shell would), returning the new size.
fn rusqlite_free_vacuum(db: &Path) -> u64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch("DELETE FROM requests; VACUUM;").unwrap();
    drop(c);
    std::fs::metadata(db).unwrap().len()
}
