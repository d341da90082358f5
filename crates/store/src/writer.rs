//! The one writer: a dedicated thread owning the write connection.
//!
//! Writes from every task arrive over a channel as closures. The thread drains
//! whatever is waiting into one transaction (group commit: one fsync covers many
//! steps), runs each closure inside its own savepoint so one failing write does
//! not undo its neighbours, commits, and only then answers each caller and
//! publishes the new highest event sequence. A reader woken by that
//! publication therefore always finds the events committed.
//!
//! When nothing is waiting and the connection is free, a caller commits inline on
//! its own thread instead: handing a job to another thread and waking the caller
//! back costs about as much as the commit itself on a small VM, and a lone session
//! gains nothing from batching. Under load the queue is never empty, so writes
//! go through the thread and keep group commit. The inline path never waits for
//! the lock: when another process holds it (maintenance, a CLI action), the write
//! goes to the thread, which waits for it with a bounded backoff ([`LOCK_WAIT`]).
//!
//! Failures stay with their write: a panicking closure fails its own write (its
//! savepoint is rolled back). When SQLite rolls back the whole transaction under a
//! failing statement (it may on SQLITE_FULL, IOERR, NOMEM), the writes before it in
//! that transaction are answered with the failure — never reported committed — and
//! the rest of the batch runs in a fresh transaction.

use crate::StoreError;
use crate::checkpoint::Checkpointer;
use rusqlite::Connection;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Most writes folded into one transaction.
const MAX_BATCH: usize = 512;
/// How long, in total, the writer thread retries a write while another process holds
/// the store's write lock; then the write fails with a transient error
/// ([`StoreError::is_transient`]) and nothing of it is kept.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(10);
/// The backoff between attempts doubles from 1 ms up to this. Short, so a waiting
/// write gets in at the first gap: maintenance pauses longer than this between its
/// transactions.
pub(crate) const MAX_RETRY_PAUSE: Duration = Duration::from_millis(8);

/// Answers a write's caller once its transaction ended: `Some` when the write ran
/// but its transaction did not commit.
type Finish = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A write: runs on the connection (or is told why it cannot) and returns its own
/// outcome and how to answer its caller.
type TxFn =
    Box<dyn FnOnce(Result<&Connection, StoreError>) -> (Result<(), StoreError>, Finish) + Send>;

pub(crate) enum Job {
    /// Runs inside the group transaction, in its own savepoint.
    Tx(TxFn),
    /// Runs alone, outside any transaction (VACUUM, checkpoints).
    Raw(Box<dyn FnOnce(&Connection) + Send>),
}

#[derive(Clone)]
pub(crate) struct WriterHandle {
    tx: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

struct Shared {
    conn: Mutex<Connection>,
    checkpointer: Checkpointer,
    /// Jobs sent to the thread and not yet taken into a batch.
    queued: AtomicUsize,
    seq_tx: watch::Sender<i64>,
    /// See [`LOCK_WAIT`].
    lock_wait: Duration,
}

impl WriterHandle {
    /// Starts the writer thread on `conn`; `seq_tx` receives the highest event seq
    /// after each commit; a write waits at most `lock_wait` for another process's lock.
    pub(crate) fn spawn(
        conn: Connection,
        seq_tx: watch::Sender<i64>,
        checkpointer: Checkpointer,
        lock_wait: Duration,
    ) -> Result<Self, StoreError> {
        // SQLite itself never waits on this connection: the inline path must not
        // block its thread, and the writer thread waits with its own backoff.
        conn.busy_timeout(Duration::ZERO)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let shared = Arc::new(Shared {
            conn: Mutex::new(conn),
            checkpointer,
            queued: AtomicUsize::new(0),
            seq_tx,
            lock_wait,
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(&thread_shared, rx))
            .map_err(|e| StoreError::Io(format!("cannot start the store writer thread: {e}")))?;
        Ok(Self { tx, shared })
    }

    /// Sends a job to the writer thread.
    fn enqueue(&self, job: Job) -> Result<(), StoreError> {
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        self.tx.send(job).map_err(|_| {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            StoreError::Closed
        })
    }

    /// Runs `f` in the next group transaction and returns its result once committed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = tx_job(f, reply);
        if self.shared.queued.load(Ordering::Acquire) == 0
            && let Ok(conn) = self.shared.conn.try_lock()
        {
            // Idle writer: commit here if the lock is free this instant, without
            // waiting (the reply is sent before `rx` is awaited).
            discard_open_transaction(&conn);
            match exec(&conn, "BEGIN IMMEDIATE") {
                Ok(()) => {
                    let mut jobs = vec![job].into_iter();
                    run_transaction(&conn, &mut jobs, true, &self.shared, Duration::ZERO);
                    self.shared.checkpointer.after_commit(&conn);
                    drop(conn);
                }
                Err(e) if e.is_transient() => {
                    drop(conn);
                    self.enqueue(Job::Tx(job))?;
                }
                Err(e) => {
                    let (_, finish) = job(Err(e));
                    finish(None);
                }
            }
        } else {
            self.enqueue(Job::Tx(job))?;
        }
        rx.await.map_err(|_| lost_reply())?
    }

    #[cfg(test)]
    pub(crate) fn checkpoint_runs(&self) -> u64 {
        self.shared.checkpointer.runs()
    }

    /// Runs `f` alone on the write connection, outside a transaction. SQLite may wait
    /// up to [`LOCK_WAIT`] for locks inside it.
    pub(crate) async fn raw<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Job::Raw(Box::new(move |conn| {
            let out = catch_unwind(AssertUnwindSafe(|| f(conn)))
                .unwrap_or_else(|p| Err(StoreError::Panicked(panic_text(p.as_ref()))));
            let _ = reply.send(out);
        }));
        self.enqueue(job)?;
        rx.await.map_err(|_| lost_reply())?
    }
}

/// Wraps a write closure: a panic in it becomes its own error; its caller is
/// answered by the returned `Finish` once the transaction ends.
fn tx_job<T, F>(f: F, reply: oneshot::Sender<Result<T, StoreError>>) -> TxFn
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    Box::new(move |conn: Result<&Connection, StoreError>| {
        let result = conn.and_then(|c| {
            catch_unwind(AssertUnwindSafe(|| f(c)))
                .unwrap_or_else(|p| Err(StoreError::Panicked(panic_text(p.as_ref()))))
        });
        let outcome = match &result {
            Ok(_) => Ok(()),
            Err(e) => Err(e.clone()),
        };
        let finish: Finish = Box::new(move |not_committed| {
            // The write's own error wins; a write that succeeded reports why its
            // transaction did not commit.
            let out = match (result, not_committed) {
                (Ok(_), Some(e)) => Err(e.clone()),
                (r, _) => r,
            };
            let _ = reply.send(out);
        });
        (outcome, finish)
    })
}

/// The writer dropped a write without answering: only a bug in the writer itself
/// (caught and logged) does that.
fn lost_reply() -> StoreError {
    StoreError::Io(
        "the store writer failed while handling this write (see the log): it may or may not \
         have been committed; check before retrying"
            .into(),
    )
}

pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

fn run(shared: &Shared, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Jobs catch their own panics; this guard only keeps a bug in the writer
        // itself from ending every later write of the process.
        if catch_unwind(AssertUnwindSafe(|| run_batch(shared, batch))).is_err() {
            tracing::error!(
                "the store writer panicked on a batch; its writes were answered with an error"
            );
            shared.conn.clear_poison();
        }
    }
}

fn run_batch(shared: &Shared, batch: Vec<Job>) {
    let conn = shared
        .conn
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    shared.queued.fetch_sub(batch.len(), Ordering::AcqRel);
    let mut pending = Vec::with_capacity(batch.len());
    for job in batch {
        match job {
            Job::Tx(f) => pending.push(f),
            Job::Raw(f) => {
                commit_batch(&conn, std::mem::take(&mut pending), shared);
                // Outside a transaction SQLite's own busy handler is the only retry
                // (VACUUM and checkpoints wait for readers through it).
                let _ = conn.busy_timeout(shared.lock_wait);
                f(&conn);
                let _ = conn.busy_timeout(Duration::ZERO);
            }
        }
    }
    commit_batch(&conn, pending, shared);
    shared.checkpointer.after_commit(&conn);
}

/// A transaction left open (by a write that panicked before this guard existed, or
/// a failed rollback) is discarded before the next one begins.
fn discard_open_transaction(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = exec(conn, "ROLLBACK");
    }
}

/// Runs `jobs` in as few transactions as possible (one, unless SQLite rolls one
/// back under a failing write) and answers every caller.
fn commit_batch(conn: &Connection, jobs: Vec<TxFn>, shared: &Shared) {
    if jobs.is_empty() {
        return;
    }
    discard_open_transaction(conn);
    let single = jobs.len() == 1;
    let mut jobs = jobs.into_iter();
    while !jobs.as_slice().is_empty() {
        if let Err(e) = begin(conn, shared.lock_wait) {
            for job in jobs {
                let (_, finish) = job(Err(e.clone()));
                finish(None);
            }
            return;
        }
        run_transaction(conn, &mut jobs, single, shared, shared.lock_wait);
    }
}

/// `BEGIN IMMEDIATE`, retried with backoff while another connection holds the
/// write lock, for at most `wait` in total.
fn begin(conn: &Connection, wait: Duration) -> Result<(), StoreError> {
    retry_transient(wait, || exec(conn, "BEGIN IMMEDIATE"))
}

fn retry_transient(
    wait: Duration,
    mut attempt: impl FnMut() -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match attempt() {
            Err(e) if e.is_transient() && started.elapsed() + pause <= wait => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
            }
            other => return other,
        }
    }
}

/// Runs jobs from `jobs` in the transaction already begun, then commits it. Stops
/// early, leaving the rest in `jobs`, if the transaction is lost under a job.
/// `single`: the job runs without a savepoint (a failure rolls everything back).
fn run_transaction(
    conn: &Connection,
    jobs: &mut std::vec::IntoIter<TxFn>,
    single: bool,
    shared: &Shared,
    commit_wait: Duration,
) {
    let mut finishers: Vec<Finish> = Vec::with_capacity(jobs.len());
    // Events appended by whatever ran on this thread before are not this
    // transaction's; a write whose savepoint is undone takes its seqs back.
    crate::events::take_appended();
    let mut undone = false;
    for job in jobs.by_ref() {
        let (outcome, finish, cleanup) = if single {
            let (outcome, finish) = job(Ok(conn));
            (outcome, finish, None)
        } else {
            run_in_savepoint(conn, job)
        };
        if conn.is_autocommit() || cleanup.is_some() {
            // SQLite rolled the whole transaction back under this job, or its savepoint
            // could not be undone: everything done in the transaction so far is lost.
            discard_open_transaction(conn);
            let cause = cleanup
                .or_else(|| outcome.err())
                .unwrap_or_else(|| StoreError::Io("the transaction ended inside a write".into()));
            let lost = StoreError::Commit(Box::new(cause));
            for f in finishers.drain(..) {
                f(Some(&lost));
            }
            finish(Some(&lost));
            return;
        }
        if single && outcome.is_err() {
            let _ = exec(conn, "ROLLBACK");
            finish(None);
            return;
        }
        undone |= outcome.is_err();
        finishers.push(finish);
    }
    // COMMIT in WAL mode does not wait for other connections; retried anyway, since
    // SQLite keeps the transaction open when COMMIT returns SQLITE_BUSY.
    match retry_transient(commit_wait, || exec(conn, "COMMIT")) {
        Ok(()) => {
            publish_seq(conn, &shared.seq_tx, undone);
            for finish in finishers {
                finish(None);
            }
        }
        Err(e) => {
            discard_open_transaction(conn);
            let lost = StoreError::Commit(Box::new(e));
            for finish in finishers {
                finish(Some(&lost));
            }
        }
    }
}

/// Runs one job in its own savepoint, rolled back if the job fails. Returns the
/// job's outcome, how to answer it, and the error if its savepoint could not be
/// undone or released (the transaction can then no longer be trusted).
fn run_in_savepoint(
    conn: &Connection,
    job: TxFn,
) -> (Result<(), StoreError>, Finish, Option<StoreError>) {
    if let Err(e) = exec(conn, "SAVEPOINT step") {
        let (outcome, finish) = job(Err(e));
        return (outcome, finish, None);
    }
    let (outcome, finish) = job(Ok(conn));
    if conn.is_autocommit() {
        return (outcome, finish, None);
    }
    let undo = if outcome.is_err() {
        exec(conn, "ROLLBACK TO step")
    } else {
        Ok(())
    };
    let cleanup = undo.and_then(|()| exec(conn, "RELEASE step")).err();
    (outcome, finish, cleanup)
}

/// Runs a fixed statement through the statement cache (no re-parsing per commit).
fn exec(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Publishes the highest event seq after a commit: the highest this transaction
/// appended, or, when a write in it was undone (its seqs may be given again, so
/// the highest appended may not exist), the table's highest, read again.
fn publish_seq(conn: &Connection, seq_tx: &watch::Sender<i64>, undone: bool) {
    let appended = crate::events::take_appended();
    let seq: i64 = if undone {
        conn.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .unwrap_or(0)
    } else {
        appended
    };
    seq_tx.send_if_modified(|cur| {
        if seq > *cur {
            *cur = seq;
            true
        } else {
            false
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    fn open(dir: &Path) -> (WriterHandle, PathBuf) {
        open_with(dir, LOCK_WAIT)
    }

    fn open_with(dir: &Path, lock_wait: Duration) -> (WriterHandle, PathBuf) {
        let (w, path, _) = open_watching(dir, lock_wait);
        (w, path)
    }

    /// [`open_with`], and the receiver of the seqs the writer publishes.
    fn open_watching(
        dir: &Path,
        lock_wait: Duration,
    ) -> (WriterHandle, PathBuf, watch::Receiver<i64>) {
        let path = dir.join("w.db");
        let conn = Connection::open(&path).unwrap();
        crate::sqlite::configure(&conn, crate::Durability::Normal).unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = ON; \
             CREATE TABLE t (x INTEGER NOT NULL); \
             CREATE TABLE parent (id INTEGER PRIMARY KEY); \
             CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED); \
             CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, \
                                  kind TEXT NOT NULL, request_id TEXT, session_id TEXT, \
                                  payload TEXT NOT NULL); \
             CREATE TABLE big (x INTEGER NOT NULL, b BLOB NOT NULL);",
        )
        .unwrap();
        let (seq_tx, seq_rx) = watch::channel(0);
        let cp = crate::checkpoint::spawn(&path).unwrap();
        (
            WriterHandle::spawn(conn, seq_tx, cp, lock_wait).unwrap(),
            path,
            seq_rx,
        )
    }

    /// Appends one event; returns its seq.
    fn event(c: &Connection) -> Result<i64, StoreError> {
        let e = harness_core::NewEvent::runtime(
            harness_core::EventKind::WorkerStopped,
            serde_json::json!({}),
        );
        Ok(crate::events::append(c, harness_core::Timestamp(0), &[e])?[0])
    }

    /// Subscribers are woken by the published seq and read the events up to it, so
    /// it must be one the table holds. A write undone in a batch gives its seqs
    /// back (the next event takes the same one): publishing the highest appended
    /// then would name a seq not committed, and the next commit, which takes it,
    /// would wake no one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_published_seq_is_always_one_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (w, _path, mut seqs) = open_watching(dir.path(), LOCK_WAIT);
        let out = one_batch(
            &w,
            vec![
                Box::new(event),
                Box::new(|c: &Connection| {
                    event(c)?;
                    Err(StoreError::Io("refused after appending".into()))
                }),
            ],
        )
        .await;
        assert_eq!(out[0].as_ref().ok(), Some(&1));
        assert!(out[1].is_err());
        assert_eq!(*seqs.borrow_and_update(), 1);
        // Inline, then in a batch: each commit wakes the subscriber with its seq.
        assert_eq!(w.write(event).await.unwrap(), 2);
        assert!(seqs.has_changed().unwrap());
        assert_eq!(*seqs.borrow_and_update(), 2);
        let out = one_batch(&w, vec![Box::new(event), Box::new(insert(7))]).await;
        assert_eq!(out[0].as_ref().ok(), Some(&3));
        assert_eq!(*seqs.borrow_and_update(), 3);
        // A commit without events publishes nothing new.
        w.write(insert(8)).await.unwrap();
        assert!(!seqs.has_changed().unwrap());
    }

    fn rows(path: &Path) -> Vec<i64> {
        let c = Connection::open(path).unwrap();
        let mut s = c.prepare("SELECT x FROM t ORDER BY x").unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn insert(x: i64) -> impl FnOnce(&Connection) -> Result<i64, StoreError> + Send + 'static {
        move |c| {
            c.execute("INSERT INTO t (x) VALUES (?1)", [x])?;
            Ok(x)
        }
    }

    type TestWrite = Box<dyn FnOnce(&Connection) -> Result<i64, StoreError> + Send>;

    /// Sends `jobs` so that the writer thread takes them as one batch: it is kept busy
    /// (holding the connection) until all of them are queued.
    async fn one_batch(w: &WriterHandle, jobs: Vec<TestWrite>) -> Vec<Result<i64, StoreError>> {
        let (busy_tx, busy_rx) = oneshot::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let blocker = {
            let w = w.clone();
            tokio::spawn(async move {
                w.raw(move |_c| {
                    let _ = busy_tx.send(());
                    let _ = release_rx.recv();
                    Ok(())
                })
                .await
            })
        };
        busy_rx.await.unwrap();
        // Queued in order behind the busy thread, as `write` does when it is not idle.
        let mut replies = Vec::new();
        for job in jobs {
            let (reply, rx) = oneshot::channel();
            w.enqueue(Job::Tx(tx_job(job, reply))).unwrap();
            replies.push(rx);
        }
        release_tx.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        let mut out = Vec::new();
        for rx in replies {
            out.push(rx.await.unwrap_or_else(|_| Err(lost_reply())));
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_fails_alone_and_the_writer_keeps_going() {
        let dir = tempfile::tempdir().unwrap();
        let (w, path) = open(dir.path());
        let out = one_batch(
            &w,
            vec![
                Box::new(insert(1)),
                Box::new(|c: &Connection| {
                    c.execute("INSERT INTO t (x) VALUES (2)", [])?;
                    panic!("boom in a write");
                }),
                Box::new(insert(3)),
            ],
        )
        .await;
        assert_eq!(out[0].as_ref().ok(), Some(&1));
        let e = out[1].as_ref().unwrap_err();
        assert!(
            matches!(e, StoreError::Panicked(m) if m.contains("boom in a write")),
            "{e:?}"
        );
        assert_eq!(out[2].as_ref().ok(), Some(&3));
        // A lone write (the inline path) panicking fails alone too.
        let lone = w
            .write(|_c: &Connection| -> Result<(), StoreError> { panic!("alone") })
            .await;
        assert!(matches!(lone, Err(StoreError::Panicked(_))), "{lone:?}");
        // And every later write still commits, inline or through the thread.
        assert_eq!(w.write(insert(4)).await.unwrap(), 4);
        let more = one_batch(&w, vec![Box::new(insert(5)), Box::new(insert(6))]).await;
        assert!(more.iter().all(|r| r.is_ok()), "{more:?}");
        assert_eq!(rows(&path), vec![1, 3, 4, 5, 6]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_whose_transaction_was_rolled_back_fails_the_writes_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (w, path) = open(dir.path());
        let out = one_batch(
            &w,
            vec![
                Box::new(insert(1)),
                Box::new(insert(2)),
                // What SQLite does on SQLITE_FULL / IOERR / NOMEM in some cases: the
                // whole transaction is rolled back under the failing statement.
                Box::new(|c: &Connection| {
                    c.execute_batch("ROLLBACK")?;
                    Err(StoreError::Io("forced failure after a rollback".into()))
                }),
                Box::new(insert(4)),
                Box::new(insert(5)),
            ],
        )
        .await;
        for r in &out[..2] {
            let e = r.as_ref().unwrap_err();
            assert!(matches!(e, StoreError::Commit(_)), "{e:?}");
            assert!(e.to_string().contains("forced failure"), "{e}");
        }
        assert!(matches!(&out[2], Err(StoreError::Io(_))), "{:?}", out[2]);
        assert_eq!(out[3].as_ref().ok(), Some(&4));
        assert_eq!(out[4].as_ref().ok(), Some(&5));
        // What callers were told is exactly what the store holds.
        assert_eq!(rows(&path), vec![4, 5]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_that_fails_keeps_nothing_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let (w, path) = open(dir.path());
        // A deferred foreign key is checked at COMMIT: the COMMIT itself fails.
        let orphan = |x: i64| {
            move |c: &Connection| -> Result<i64, StoreError> {
                c.execute("INSERT INTO t (x) VALUES (?1)", [x])?;
                c.execute("INSERT INTO child (p) VALUES (42)", [])?;
                Ok(x)
            }
        };
        // Alone (inline) ...
        let e = w.write(orphan(1)).await.unwrap_err();
        assert!(matches!(e, StoreError::Commit(_)), "{e:?}");
        // ... and in a batch, where it takes its neighbours' commit down with it.
        let out = one_batch(&w, vec![Box::new(insert(2)), Box::new(orphan(3))]).await;
        assert!(
            out.iter().all(|r| matches!(r, Err(StoreError::Commit(_)))),
            "{out:?}"
        );
        assert!(rows(&path).is_empty());
        let c = Connection::open(&path).unwrap();
        let children: i64 = c
            .query_row("SELECT COUNT(*) FROM child", [], |r| r.get(0))
            .unwrap();
        assert_eq!(children, 0);
        // The writer is usable afterwards.
        assert_eq!(w.write(insert(7)).await.unwrap(), 7);
        assert_eq!(rows(&path), vec![7]);
    }

    /// Another process holding the write lock (VACUUM, a long maintenance transaction)
    /// must not stall the async thread that calls `write`.
    #[test]
    fn an_inline_write_never_blocks_its_thread_on_another_process_lock() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (w, path) = rt.block_on(async { open(dir.path()) });
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t (x) VALUES (100)")
            .unwrap();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            other.execute_batch("COMMIT").unwrap();
        });
        let (waited, longest_stall) = rt.block_on(async {
            // A ticker on the same (only) runtime thread measures how long it stalls.
            let stall = std::sync::Arc::new(std::sync::Mutex::new(Duration::ZERO));
            let s = stall.clone();
            let ticker = tokio::spawn(async move {
                let mut last = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let gap = last.elapsed();
                    let mut m = s.lock().unwrap();
                    *m = (*m).max(gap);
                    last = Instant::now();
                }
            });
            tokio::task::yield_now().await;
            let started = Instant::now();
            w.write(insert(1)).await.unwrap();
            let waited = started.elapsed();
            // Let the ticker see the gap, if there was one.
            tokio::time::sleep(Duration::from_millis(30)).await;
            ticker.abort();
            let longest = *stall.lock().unwrap();
            (waited, longest)
        });
        holder.join().unwrap();
        assert!(
            waited >= Duration::from_millis(1000),
            "the write waited for the lock: {waited:?}"
        );
        assert!(
            longest_stall < Duration::from_millis(500),
            "the runtime thread stalled for {longest_stall:?} while the write waited"
        );
        assert_eq!(rows(&path), vec![1, 100]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_waits_out_a_brief_lock_and_gives_up_on_a_long_one() {
        let dir = tempfile::tempdir().unwrap();
        let (w, path) = open_with(dir.path(), Duration::from_millis(300));
        let hold = |ms: u64| {
            let other = Connection::open(&path).unwrap();
            other.execute_batch("BEGIN IMMEDIATE").unwrap();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(ms));
                other.execute_batch("COMMIT").unwrap();
            })
        };
        let brief = hold(100);
        assert_eq!(w.write(insert(1)).await.unwrap(), 1);
        brief.join().unwrap();

        let long = hold(1500);
        let started = Instant::now();
        let e = w.write(insert(2)).await.unwrap_err();
        let waited = started.elapsed();
        assert!(e.is_transient(), "{e:?}");
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_millis(1200),
            "gave up after {waited:?}"
        );
        long.join().unwrap();
        assert_eq!(rows(&path), vec![1]);
    }

    /// SQLITE_FULL, simulated with `max_page_count` on the write connection (the real
    /// thing, on a full tmpfs, is in tests/disk_full.rs).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_database_fails_the_writes_it_stops_keeps_nothing_of_them_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let (w, path) = open(dir.path());
        let pages: i64 = w
            .raw(|c| Ok(c.query_row("PRAGMA page_count", [], |r| r.get(0))?))
            .await
            .unwrap();
        let limit = move |n: i64| {
            move |c: &Connection| -> Result<(), StoreError> {
                c.query_row(&format!("PRAGMA max_page_count = {n}"), [], |_| Ok(()))?;
                Ok(())
            }
        };
        w.raw(limit(pages + 8)).await.unwrap();
        // A row in `t`, then a blob too large for the space left.
        let big = |x: i64| {
            move |c: &Connection| -> Result<i64, StoreError> {
                c.execute("INSERT INTO t (x) VALUES (?1)", [x])?;
                c.execute("INSERT INTO big (x, b) VALUES (?1, zeroblob(400000))", [x])?;
                Ok(x)
            }
        };
        let out = one_batch(
            &w,
            vec![Box::new(insert(1)), Box::new(big(2)), Box::new(insert(3))],
        )
        .await;
        let e = out[1].as_ref().unwrap_err();
        assert!(e.is_disk_full(), "{e:?}");
        assert!(e.to_string().contains("free space"), "{e}");
        // Whatever SQLite rolled back, callers were told exactly what was kept.
        let told: Vec<i64> = out
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        assert_eq!(rows(&path), told, "{out:?}");
        // Alone, on the inline path: the same.
        let e = w.write(big(4)).await.unwrap_err();
        assert!(e.is_disk_full(), "{e:?}");
        assert_eq!(rows(&path), told);
        let c = Connection::open(&path).unwrap();
        let blobs: i64 = c
            .query_row("SELECT COUNT(*) FROM big", [], |r| r.get(0))
            .unwrap();
        assert_eq!(blobs, 0, "nothing of a failed write is kept");
        // Space returns: the same write commits.
        w.raw(limit(1_000_000)).await.unwrap();
        assert_eq!(w.write(big(5)).await.unwrap(), 5);
        let mut expected = told;
        expected.push(5);
        assert_eq!(rows(&path), expected);
    }
}
