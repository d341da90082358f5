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
//! go through the thread and keep group commit.

use crate::StoreError;
use crate::checkpoint::Checkpointer;
use rusqlite::Connection;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::{oneshot, watch};

/// Most writes folded into one transaction.
const MAX_BATCH: usize = 512;

type Finish = Box<dyn FnOnce(Option<&StoreError>) + Send>;

pub(crate) enum Job {
    /// Runs inside the group transaction; `false` rolls back its savepoint.
    /// Given `Err` when the transaction could not be opened: it must only answer.
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
}

impl WriterHandle {
    /// Starts the writer thread on `conn`; `seq_tx` receives the highest event seq after each commit.
    pub(crate) fn spawn(
        conn: Connection,
        seq_tx: watch::Sender<i64>,
        checkpointer: Checkpointer,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let shared = Arc::new(Shared {
            conn: Mutex::new(conn),
            checkpointer,
            queued: AtomicUsize::new(0),
            seq_tx,
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(&thread_shared, rx))
            .expect("spawn store writer thread");
        Self { tx, shared }
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
        let job: TxFn = Box::new(move |conn: Result<&Connection, StoreError>| {
            let result = conn.and_then(f);
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit_error| {
                let out = match commit_error {
                    Some(e) => Err(StoreError::Commit(Box::new(e.clone()))),
                    None => result,
                };
                let _ = reply.send(out);
            });
            (ok, finish)
        });
        if self.shared.queued.load(Ordering::Acquire) == 0
            && let Ok(conn) = self.shared.conn.try_lock()
        {
            // Idle writer: commit here. The reply is sent before `rx` is awaited.
            commit_batch(&conn, vec![job], &self.shared);
            self.shared.checkpointer.after_commit();
        } else {
            self.enqueue(Job::Tx(job))?;
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` alone on the write connection, outside a transaction.
    pub(crate) async fn raw<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Job::Raw(Box::new(move |conn| {
            let _ = reply.send(f(conn));
        }));
        self.enqueue(job)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
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
                    f(&conn);
                }
            }
        }
        commit_batch(&conn, pending, shared);
        drop(conn);
        shared.checkpointer.after_commit();
    }
}

type TxFn = Box<dyn FnOnce(Result<&Connection, StoreError>) -> (bool, Finish) + Send>;

fn commit_batch(conn: &Connection, jobs: Vec<TxFn>, shared: &Shared) {
    if jobs.is_empty() {
        return;
    }
    if !conn.is_autocommit() {
        // A write panicked mid-transaction earlier: discard what it left open.
        let _ = exec(conn, "ROLLBACK");
    }
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        for job in jobs {
            let (_, finish) = job(Err(e.clone()));
            finish(None);
        }
        return;
    }
    let mut finishers = Vec::with_capacity(jobs.len());
    let mut failed_alone = false;
    if jobs.len() == 1 {
        // Alone in its transaction: no savepoint needed, a failure rolls it all back.
        let job = jobs.into_iter().next().expect("one job");
        let (ok, finish) = job(Ok(conn));
        failed_alone = !ok;
        finishers.push(finish);
    } else {
        for job in jobs {
            finishers.push(run_in_savepoint(conn, job));
        }
    }
    let end = if failed_alone {
        exec(conn, "ROLLBACK")
    } else {
        exec(conn, "COMMIT")
    };
    match end {
        Ok(()) => {
            if !failed_alone {
                publish_seq(conn, &shared.seq_tx);
            }
            for finish in finishers {
                finish(None);
            }
        }
        Err(err) => {
            let _ = exec(conn, "ROLLBACK");
            for finish in finishers {
                finish(Some(&err));
            }
        }
    }
}

/// Runs a fixed statement through the statement cache (no re-parsing per commit).
fn exec(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn run_in_savepoint(conn: &Connection, job: TxFn) -> Finish {
    if let Err(e) = exec(conn, "SAVEPOINT step") {
        return job(Err(e)).1;
    }
    let (ok, finish) = job(Ok(conn));
    if !ok {
        let _ = exec(conn, "ROLLBACK TO step");
    }
    let _ = exec(conn, "RELEASE step");
    finish
}

fn publish_seq(conn: &Connection, seq_tx: &watch::Sender<i64>) {
    let seq: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .unwrap_or(0);
    seq_tx.send_if_modified(|cur| {
        if seq > *cur {
            *cur = seq;
            true
        } else {
            false
        }
    });
}
