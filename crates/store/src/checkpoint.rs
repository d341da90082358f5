//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside whichever commit crosses the
//! threshold, which made that commit (and an approval resolved in it) take
//! milliseconds. The writer disables it and, when a commit leaves the WAL past
//! the threshold, pokes this thread, which checkpoints from its own connection in
//! PASSIVE mode (never blocking the writer or readers). A timer catches the rest.
//!
//! "Past the threshold" is the WAL's content not yet checkpointed — the frames SQLite
//! reports after each commit, less those the last checkpoint copied — not its file
//! size: the file is reused from the start after a checkpoint and keeps its size (up
//! to [`WAL_SIZE_LIMIT`]), so once it has been large, its size says nothing about
//! what is in it. Counting from the last checkpoint matters: the WAL only starts
//! over when a write transaction begins with every frame copied, which a checkpoint
//! running beside a busy writer rarely leaves behind (the writer has committed again
//! meanwhile). Counting all frames poked a checkpoint — two fsyncs competing with the
//! writer's own — after every commit until the WAL happened to start over. Instead,
//! when a checkpoint of a large WAL ends, the writer copies what it left (the frames
//! committed while it ran) right after its next commit
//! ([`Checkpointer::after_commit`]): nothing commits meanwhile, so the transaction
//! after it can start the WAL over (unless a reader is still using it).

use crate::StoreError;
use rusqlite::Connection;
use rusqlite::hooks::Wal;
use std::cell::Cell;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// Checkpoint once the WAL holds this much (SQLite checkpoints at ~4 MiB by default; rewritten pages make a larger WAL cheaper to checkpoint).
const WAL_THRESHOLD: u64 = 16 << 20;
/// After the WAL starts over, its file is truncated to this: large enough that
/// commits overwrite frames in place (an fsync that grows a file costs more).
pub(crate) const WAL_SIZE_LIMIT: u64 = 4 * WAL_THRESHOLD;
const EVERY: Duration = Duration::from_millis(500);
/// The writer copies a checkpoint's tail itself only while it is at most this share
/// of the threshold (1 MiB): it holds up the commits behind it meanwhile.
const TAIL_SHARE: u64 = 16;
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
    progress: Arc<Progress>,
}

/// What the checkpoint thread tells the writer.
#[derive(Default)]
struct Progress {
    /// Frames of the WAL the last checkpoint copied into the database; the WAL
    /// counts toward the threshold only past them.
    copied: AtomicU64,
    /// A checkpoint left the tail of a large WAL behind: the writer copies it.
    tail_wanted: AtomicBool,
    /// Checkpoints run, by either thread (tests count them).
    runs: AtomicU64,
}

impl Checkpointer {
    /// Called after a commit, on the thread that committed, with the write
    /// connection outside any transaction: asks for a checkpoint when the WAL holds
    /// more than the threshold past what the last one copied, or copies the tail
    /// the checkpoint thread left (see the module's doc).
    pub(crate) fn after_commit(&self, conn: &Connection) {
        let frames = WAL_FRAMES.replace(0);
        if frames == 0 {
            // Nothing committed on this thread since the last call.
            return;
        }
        let p = &self.progress;
        let copied = p.copied.load(Ordering::Acquire);
        let pending = if frames < copied {
            // The WAL started over since that checkpoint: no tail is left.
            p.copied.store(0, Ordering::Release);
            p.tail_wanted.store(false, Ordering::Release);
            frames
        } else {
            frames - copied
        };
        let tail_wanted = p.tail_wanted.load(Ordering::Acquire);
        if tail_wanted && pending <= self.threshold_frames / TAIL_SHARE && conn.is_autocommit() {
            p.runs.fetch_add(1, Ordering::Relaxed);
            match passive(conn) {
                Ok(Some((_, copied))) => {
                    p.tail_wanted.store(false, Ordering::Release);
                    p.copied.store(copied, Ordering::Release);
                }
                // The checkpoint thread is at work: the tail waits for the next commit.
                Ok(None) => {}
                Err(e) => {
                    p.tail_wanted.store(false, Ordering::Release);
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
            return;
        }
        // A long tail (the writer committed much while the checkpoint ran) is left to
        // another checkpoint off the commit path, which leaves a shorter one.
        if pending >= self.threshold_frames || tail_wanted {
            // Full: a checkpoint is already requested. Disconnected: the store is closing.
            let _: Result<(), TrySendError<()>> = self.poke.try_send(());
        }
    }

    #[cfg(test)]
    pub(crate) fn runs(&self) -> u64 {
        self.progress.runs.load(Ordering::Relaxed)
    }
}

/// A PASSIVE checkpoint: (frames in the WAL as it began, frames copied into the
/// database), or `None` when another connection was checkpointing.
fn passive(conn: &Connection) -> rusqlite::Result<Option<(u64, u64)>> {
    let (busy, frames, copied) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    // Busy with -1s: another checkpoint held the lock (busy with counts: readers
    // kept some frames from being copied).
    Ok((busy == 0 || frames >= 0).then(|| (frames.max(0) as u64, copied.max(0) as u64)))
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
    let wal = crate::sidecar::wal_path(db_path);
    let db = db_path.to_path_buf();
    let mut recorded = db_path
        .parent()
        .and_then(crate::sidecar::read)
        .map_or(0, |k| k.min_db_bytes);
    let (poke, rx) = mpsc::sync_channel::<()>(1);
    let progress = Arc::new(Progress::default());
    let shared = progress.clone();
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
                checkpoint(&conn, threshold_frames, &shared, &mut restart_failed);
                // Pokes sent while it ran counted frames it copied or left to the writer.
                while rx.try_recv().is_ok() {}
                record_size(&db, &mut recorded);
            }
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
            record_size(&db, &mut recorded);
        })
        .map_err(|e| StoreError::Io(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(Checkpointer {
        poke,
        threshold_frames,
        progress,
    })
}

/// PASSIVE never waits, but under constant reads and writes the WAL may never get a
/// moment to start over and keeps growing; when it holds four times the threshold,
/// RESTART waits for readers so that it can. It blocks new writers while it waits, so
/// it waits at most [`RESTART_WAIT`], and after a RESTART that readers kept from
/// finishing, the next one waits [`RESTART_PAUSE`]: a long reader (an export of a
/// large session) costs the writers a short stall now and then, not one per commit.
fn checkpoint(
    conn: &Connection,
    threshold_frames: u64,
    progress: &Progress,
    restart_failed: &mut Option<Instant>,
) {
    progress.runs.fetch_add(1, Ordering::Relaxed);
    let (frames, copied) = match passive(conn) {
        Ok(Some(counts)) => counts,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "WAL checkpoint failed");
            return;
        }
    };
    progress.copied.store(copied, Ordering::Release);
    // `frames` is the WAL as this checkpoint began: the writer has most likely
    // committed again since, so even a checkpoint that copied all of it leaves a tail.
    if frames >= threshold_frames {
        progress.tail_wanted.store(true, Ordering::Release);
    }
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

#[cfg(test)]
mod tests {
    use crate::StoreOptions;
    use crate::sqlite::SqliteStore as Store;
    use rusqlite::Connection;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    /// A store in `dir` with `schema` created.
    async fn store_with(dir: &Path, schema: &'static str) -> Store {
        let store = Store::open(dir, StoreOptions::default()).unwrap();
        store
            .write(move |c| Ok(c.execute_batch(schema)?))
            .await
            .unwrap();
        store
    }

    fn wal_file(dir: &Path) -> PathBuf {
        crate::sidecar::wal_path(&dir.join(crate::DB_FILE))
    }

    /// Once the WAL file has been large, it stays that size (it is reused, not
    /// shrunk): that must not make every later commit trigger a checkpoint that
    /// blocks writers while a reader holds an old snapshot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_wal_file_with_little_in_it_does_not_block_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), "CREATE TABLE blob (b BLOB)").await;
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
        let wal = wal_file(dir.path());
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

    /// Commits coming back to back leave a checkpoint running beside them no moment
    /// in which every frame is copied, which is when the WAL can start over. That
    /// must neither make every commit trigger another checkpoint (each one's fsyncs
    /// compete with the commits') nor let the WAL grow: the writer copies the last
    /// frames itself, and the WAL starts over once per threshold.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn back_to_back_commits_checkpoint_once_per_threshold_and_reuse_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(
            dir.path(),
            "CREATE TABLE blob (b BLOB); INSERT INTO blob VALUES (0)",
        )
        .await;
        let wal = wal_file(dir.path());
        // 96 MiB through the WAL, six times the threshold, in 384 commits.
        let commits = 384;
        let mut largest = 0;
        for _ in 0..commits {
            store
                .write(|c| Ok(c.execute("UPDATE blob SET b = randomblob(256 << 10)", [])?))
                .await
                .unwrap();
            largest = largest.max(std::fs::metadata(&wal).unwrap().len());
        }
        let runs = store.checkpoint_runs();
        // About one by the checkpoint thread and one tail by the writer per threshold
        // (14-16 measured: another pass when a tail was long, and the timer's). The
        // WAL stays under three thresholds (the writer commits on while the checkpoint
        // thread copies); without the tail it grew to four, where RESTART stalls writers.
        assert!(
            runs <= 24,
            "{runs} checkpoints for {commits} commits of 256 KiB (threshold {} MiB)",
            super::WAL_THRESHOLD >> 20
        );
        assert!(
            largest < 3 * super::WAL_THRESHOLD,
            "the WAL file grew to {largest} bytes: it did not start over"
        );
    }

    /// Many writers (grouped by the writer thread) and readers at once, on a
    /// multi-thread runtime: every write lands, and the writer's tails and the
    /// checkpoint thread never wait on each other. (Readers that never pause keep the
    /// WAL from starting over, so its size is not bounded here: RESTART only tries.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_and_readers_keep_every_write() {
        let dir = tempfile::tempdir().unwrap();
        // One 256 KiB row per writer, replaced at each write, and a tally of the writes.
        let store = store_with(
            dir.path(),
            "CREATE TABLE blob (w INTEGER PRIMARY KEY, b BLOB); CREATE TABLE writes (w INTEGER)",
        )
        .await;
        let (writers, each) = (8, 48);
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for _ in 0..4 {
            let (store, stop) = (store.clone(), stop.clone());
            readers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    store
                        .read(|c| {
                            Ok(c.query_row("SELECT COUNT(*) FROM blob", [], |r| {
                                r.get::<_, i64>(0)
                            })?)
                        })
                        .await
                        .unwrap();
                }
            }));
        }
        let mut tasks = Vec::new();
        for w in 0..writers {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..each {
                    store
                        .write(move |c| {
                            c.execute(
                                "INSERT OR REPLACE INTO blob VALUES (?1, randomblob(256 << 10))",
                                [w],
                            )?;
                            Ok(c.execute("INSERT INTO writes VALUES (?1)", [w])?)
                        })
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(120), t)
                .await
                .expect("the writers finish")
                .unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.await.unwrap();
        }
        let tally: i64 = store
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM writes", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(tally, writers * each, "writes acknowledged but not kept");
        // 96 MiB went through the WAL: checkpoints ran beside the writers.
        let runs = store.checkpoint_runs();
        assert!(runs >= 2, "{runs} checkpoints for 96 MiB of writes");
    }

    /// A reader that keeps the WAL from starting over while it holds more than four
    /// times the threshold: RESTART checkpoints stall writers, but briefly and rarely.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_reader_beside_a_full_wal_stalls_commits_only_briefly() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), "CREATE TABLE blob (b BLOB)").await;
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
