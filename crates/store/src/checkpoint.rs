//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside whichever commit crosses the
//! threshold, which made that commit (and an approval resolved in it) take
//! milliseconds. The writer disables it and, when a commit leaves the WAL past
//! the threshold, pokes this thread, which checkpoints from its own connection in
//! PASSIVE mode (never blocking the writer or readers). A timer catches the rest.
//!
//! "Past the threshold" is the WAL's content — the frames SQLite reports after each
//! commit — not its file size: the file is reused from the start after a checkpoint
//! and keeps its size (up to [`WAL_SIZE_LIMIT`]), so once it has been large, its size
//! says nothing about what is in it.

use crate::StoreError;
use rusqlite::Connection;
use rusqlite::hooks::Wal;
use std::cell::Cell;
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// Checkpoint once the WAL holds this much (SQLite checkpoints at ~4 MiB by default; rewritten pages make a larger WAL cheaper to checkpoint).
const WAL_THRESHOLD: u64 = 16 << 20;
/// After the WAL starts over, its file is truncated to this: large enough that
/// commits overwrite frames in place (an fsync that grows a file costs more).
pub(crate) const WAL_SIZE_LIMIT: u64 = 4 * WAL_THRESHOLD;
const EVERY: Duration = Duration::from_millis(500);
/// Longest a RESTART checkpoint waits for readers (blocking new writers meanwhile).
const RESTART_WAIT: Duration = Duration::from_millis(100);
/// After a RESTART that readers kept from finishing, the next one waits this long.
const RESTART_PAUSE: Duration = Duration::from_secs(5);

thread_local! {
    /// Frames in the WAL after the last commit made on this thread by a write
    /// connection (set by SQLite's WAL hook; read by [`Checkpointer::after_commit`],
    /// which runs on the thread that committed).
    static WAL_FRAMES: Cell<u64> = const { Cell::new(0) };
}

/// Makes the write connection report the WAL's size after each commit. Call after
/// `PRAGMA wal_autocheckpoint`, which replaces the hook.
pub(crate) fn watch_wal(conn: &Connection) {
    conn.wal_hook(Some(note_wal_frames));
}

fn note_wal_frames(_: &Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames.max(0) as u64);
    Ok(())
}

/// The writer's handle on the checkpointer; dropping it stops the thread.
pub(crate) struct Checkpointer {
    poke: SyncSender<()>,
    /// [`WAL_THRESHOLD`] in frames of this database's page size.
    threshold_frames: u64,
}

impl Checkpointer {
    /// Called after a commit, on the thread that committed: asks for a checkpoint
    /// when the WAL has grown past the threshold.
    pub(crate) fn after_commit(&self) {
        if WAL_FRAMES.replace(0) >= self.threshold_frames {
            // Full: a checkpoint is already requested. Disconnected: the store is closing.
            let _: Result<(), TrySendError<()>> = self.poke.try_send(());
        }
    }
}

/// Starts the checkpoint thread for the database at `db_path`.
pub(crate) fn spawn(db_path: &Path) -> Result<Checkpointer, StoreError> {
    let conn = Connection::open(db_path)?;
    // PASSIVE never waits; RESTART sets its own bound.
    conn.busy_timeout(Duration::ZERO)?;
    conn.execute_batch(&format!("PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}"))?;
    let page_size: u64 = conn.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))? as u64;
    // A frame is a page plus its 24-byte header.
    let threshold_frames = WAL_THRESHOLD / (page_size + 24);
    let wal = wal_path(db_path);
    let db = db_path.to_path_buf();
    let mut recorded = db_path
        .parent()
        .and_then(crate::sidecar::read)
        .map_or(0, |k| k.min_db_bytes);
    let (poke, rx) = mpsc::sync_channel::<()>(1);
    let mut restart_failed = None;
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            loop {
                match rx.recv_timeout(EVERY) {
                    Err(RecvTimeoutError::Disconnected) => break,
                    // Commits of other processes are not reported here: the timer
                    // looks at the file, whose size is an upper bound of its content.
                    Err(RecvTimeoutError::Timeout) => {
                        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                        if size < WAL_THRESHOLD {
                            continue;
                        }
                    }
                    Ok(()) => {}
                }
                checkpoint(&conn, threshold_frames, &mut restart_failed);
                record_size(&db, &mut recorded);
            }
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
            record_size(&db, &mut recorded);
        })
        .map_err(|e| StoreError::Io(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(Checkpointer {
        poke,
        threshold_frames,
    })
}

/// PASSIVE never waits, but under constant reads and writes the WAL may never get a
/// moment to start over and keeps growing; when it holds four times the threshold,
/// RESTART waits for readers so that it can. It blocks new writers while it waits, so
/// it waits at most [`RESTART_WAIT`], and after a RESTART that readers kept from
/// finishing, the next one waits [`RESTART_PAUSE`]: a long reader (an export of a
/// large session) costs the writers a short stall now and then, not one per commit.
fn checkpoint(conn: &Connection, threshold_frames: u64, restart_failed: &mut Option<Instant>) {
    let frames = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1));
    let frames = match frames {
        Ok(f) => f.max(0) as u64,
        Err(e) => {
            tracing::warn!(error = %e, "WAL checkpoint failed");
            return;
        }
    };
    if frames < 4 * threshold_frames || restart_failed.is_some_and(|t| t.elapsed() < RESTART_PAUSE)
    {
        return;
    }
    let _ = conn.busy_timeout(RESTART_WAIT);
    // Columns: busy (1 when readers or writers kept it from finishing), frames, copied.
    let busy = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
    let _ = conn.busy_timeout(Duration::ZERO);
    match busy {
        Ok(0) => *restart_failed = None,
        Ok(_) => *restart_failed = Some(Instant::now()),
        Err(e) => {
            *restart_failed = Some(Instant::now());
            tracing::warn!(error = %e, "WAL checkpoint (RESTART) failed");
        }
    }
}

/// Checkpoints are what make the database file grow: a larger size is recorded in
/// the sidecar as the file's new floor (see [`crate::sidecar`]).
fn record_size(db: &Path, recorded: &mut u64) {
    let len = std::fs::metadata(db).map_or(0, |m| m.len());
    let Some(dir) = db.parent() else { return };
    if len <= *recorded {
        return;
    }
    let raised = crate::sidecar::update(dir, len, |k| {
        if len > k.min_db_bytes {
            k.min_db_bytes = len;
            k.seen_at = harness_core::Clock::now(&harness_core::SystemClock);
        }
    });
    match raised {
        Ok(()) => *recorded = len,
        Err(e) => tracing::warn!(error = %e, "cannot record the store's size"),
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use crate::StoreOptions;
    use crate::sqlite::SqliteStore as Store;
    use rusqlite::Connection;
    use std::time::{Duration, Instant};

    /// Once the WAL file has been large, it stays that size (it is reused, not
    /// shrunk): that must not make every later commit trigger a checkpoint that
    /// blocks writers while a reader holds an old snapshot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_wal_file_with_little_in_it_does_not_block_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store
            .write(|c| Ok(c.execute_batch("CREATE TABLE blob (b BLOB)")?))
            .await
            .unwrap();
        // Grow the WAL file past four times the threshold in one transaction.
        store
            .write(|c| {
                for _ in 0..80 {
                    c.execute("INSERT INTO blob VALUES (zeroblob(1 << 20))", [])?;
                }
                Ok(())
            })
            .await
            .unwrap();
        // Checkpoint it all, until nothing (such as the store's own checkpointer) kept it
        // from finishing: the next commit starts the WAL over, and its file keeps 64 MiB.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let busy: i64 = store
                .write_raw(|c| Ok(c.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get(0))?))
                .await
                .unwrap();
            if busy == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the WAL could not be checkpointed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let wal = dir.path().join(format!("{}-wal", crate::DB_FILE));
        store
            .write(|c| Ok(c.execute_batch("DELETE FROM blob")?))
            .await
            .unwrap();
        let wal_bytes = std::fs::metadata(&wal).unwrap().len();
        assert!(
            wal_bytes >= 4 * super::WAL_THRESHOLD,
            "WAL file {wal_bytes} bytes"
        );
        // A view reading meanwhile (its snapshot pins the WAL).
        let reader = Connection::open(dir.path().join(crate::DB_FILE)).unwrap();
        reader
            .execute_batch("BEGIN; SELECT COUNT(*) FROM blob;")
            .unwrap();
        let mut worst = Duration::ZERO;
        for i in 0..30 {
            let started = Instant::now();
            store
                .write(move |c| Ok(c.execute("INSERT INTO blob VALUES (?1)", [i])?))
                .await
                .unwrap();
            worst = worst.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        reader.execute_batch("COMMIT").unwrap();
        assert!(
            worst < Duration::from_millis(300),
            "a small commit took {worst:?} (WAL file {wal_bytes} bytes)"
        );
    }

    /// A reader that keeps the WAL from starting over while it holds more than four
    /// times the threshold: RESTART checkpoints stall writers, but briefly and rarely.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_reader_beside_a_full_wal_stalls_commits_only_briefly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store
            .write(|c| Ok(c.execute_batch("CREATE TABLE blob (b BLOB)")?))
            .await
            .unwrap();
        let reader = Connection::open(dir.path().join(crate::DB_FILE)).unwrap();
        reader
            .execute_batch("BEGIN; SELECT COUNT(*) FROM blob;")
            .unwrap();
        store
            .write(|c| {
                for _ in 0..80 {
                    c.execute("INSERT INTO blob VALUES (zeroblob(1 << 20))", [])?;
                }
                Ok(())
            })
            .await
            .unwrap();
        let mut worst = Duration::ZERO;
        let mut slow = 0;
        for i in 0..40 {
            let started = Instant::now();
            store
                .write(move |c| Ok(c.execute("INSERT INTO blob VALUES (?1)", [i])?))
                .await
                .unwrap();
            let took = started.elapsed();
            worst = worst.max(took);
            if took > Duration::from_millis(50) {
                slow += 1;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        reader.execute_batch("COMMIT").unwrap();
        assert!(
            worst < Duration::from_millis(400) && slow <= 3,
            "worst commit {worst:?}, {slow} of 40 over 50 ms"
        );
    }
}
