//! The one writer: a dedicated thread owning the write connection.
//!
//! Writes from every task arrive over a channel as closures. The thread drains
//! whatever is waiting into one transaction (group commit: one fsync covers many
//! steps), runs each closure inside its own savepoint so one failing write does
//! not undo its neighbours, commits, and only then answers each caller and
//! publishes the new highest event sequence. A reader woken by that
//! publication therefore always finds the events committed.

use crate::StoreError;
use rusqlite::Connection;
use std::sync::mpsc;
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
}

impl WriterHandle {
    /// Starts the writer thread on `conn`; `seq_tx` receives the highest event seq after each commit.
    pub(crate) fn spawn(conn: Connection, seq_tx: watch::Sender<i64>) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, rx, seq_tx))
            .expect("spawn store writer thread");
        Self { tx }
    }

    /// Runs `f` in the next group transaction and returns its result once committed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Job::Tx(Box::new(move |conn: Result<&Connection, StoreError>| {
            let result = conn.and_then(f);
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit_error| {
                let out = match commit_error {
                    Some(e) => Err(StoreError::Commit(e.to_string())),
                    None => result,
                };
                let _ = reply.send(out);
            });
            (ok, finish)
        }));
        self.tx.send(job).map_err(|_| StoreError::Closed)?;
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
        self.tx.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Job>, seq_tx: watch::Sender<i64>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut pending = Vec::with_capacity(batch.len());
        for job in batch {
            match job {
                Job::Tx(f) => pending.push(f),
                Job::Raw(f) => {
                    commit_batch(&conn, std::mem::take(&mut pending), &seq_tx);
                    f(&conn);
                }
            }
        }
        commit_batch(&conn, pending, &seq_tx);
    }
}

type TxFn = Box<dyn FnOnce(Result<&Connection, StoreError>) -> (bool, Finish) + Send>;

fn commit_batch(conn: &Connection, jobs: Vec<TxFn>, seq_tx: &watch::Sender<i64>) {
    if jobs.is_empty() {
        return;
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
                publish_seq(conn, seq_tx);
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
