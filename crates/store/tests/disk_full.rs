//! A really full disk: a small tmpfs, filled. Mounting needs root: without it the
//! test prints `skipped: …` and passes, unless `AGENT_HARNESS_REQUIRE_ROOT_TESTS=1`
//! (CI) makes that a failure. (The writer's handling of SQLITE_FULL always runs,
//! simulated with `max_page_count`, in the writer's unit tests.)

use harness_core::*;
use harness_store::{Admission, NewRequest, Store, StoreError, StoreOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    /// `None` (after printing `skipped: …`) when this process may not mount one; a
    /// failure instead under `AGENT_HARNESS_REQUIRE_ROOT_TESTS=1`.
    fn mount(size: &str, test: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let why = match Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
        {
            Ok(o) if o.status.success() => return Some(Tmpfs { _dir: dir, path }),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => format!("cannot run mount: {e}"),
        };
        assert_ne!(
            std::env::var("AGENT_HARNESS_REQUIRE_ROOT_TESTS").as_deref(),
            Ok("1"),
            "{test}: cannot mount a tmpfs ({why}), and AGENT_HARNESS_REQUIRE_ROOT_TESTS=1 requires it"
        );
        println!("skipped: {test} needs to mount a tmpfs (run it as root): {why}");
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn request(n: usize, bytes: usize) -> NewRequest {
    NewRequest {
        id: RequestId::generate(),
        session_id: SessionId::parse(&format!("s{}", n % 7)).unwrap(),
        agent: "a".into(),
        input: format!("{n}:{}", "x".repeat(bytes)),
        trace_id: "t".into(),
        traceparent: None,
        priority: 0,
    }
}

async fn count(store: &Store) -> usize {
    store
        .list_requests(RequestFilter::default())
        .await
        .unwrap()
        .len()
}

fn fill(path: &Path, bytes: usize) {
    std::fs::write(path, vec![7u8; bytes]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_cleanly_and_they_succeed_once_space_returns() {
    let Some(fs) = Tmpfs::mount(
        "6m",
        "a_full_disk_fails_writes_cleanly_and_they_succeed_once_space_returns",
    ) else {
        return;
    };
    let dir = fs.path.join("store");
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    let adm = Admission {
        queue_capacity: 1_000_000,
        reject_if_session_busy: false,
    };
    // Most of the space goes to another file, removed later.
    let filler = fs.path.join("filler");
    fill(&filler, 4 << 20);
    let mut admitted = 0;
    let full = loop {
        match store
            .admit(request(admitted, 20_000), adm, Timestamp(1))
            .await
        {
            Ok(_) => admitted += 1,
            Err(e) => break e,
        }
        assert!(admitted < 10_000, "the disk never filled");
    };
    println!("disk full after {admitted} requests: {full}");
    assert!(full.is_disk_full(), "{full:?}");
    assert!(
        matches!(full, StoreError::Sqlite(_) | StoreError::Commit(_)),
        "{full:?}"
    );
    // Nothing half-written: exactly the admitted requests exist, and a second
    // attempt fails the same way without leaving anything either.
    assert_eq!(count(&store).await, admitted);
    let again = store
        .admit(request(admitted, 20_000), adm, Timestamp(1))
        .await
        .unwrap_err();
    assert!(again.is_disk_full(), "{again:?}");
    assert_eq!(count(&store).await, admitted);

    // Space returns: writes succeed again, on the same store handle.
    std::fs::remove_file(&filler).unwrap();
    for i in 0..5 {
        store
            .admit(request(admitted + i, 20_000), adm, Timestamp(2))
            .await
            .unwrap_or_else(|e| panic!("after freeing space: {e}"));
    }
    assert_eq!(count(&store).await, admitted + 5);
    assert_eq!(store.integrity_check().await.unwrap(), Ok(()));
    drop(store);
}
