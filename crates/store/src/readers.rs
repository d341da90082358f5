//! SQLite's read connections, each held by a thread of its own.
//!
//! [`POOL_THREADS`] threads take read jobs from one queue, oldest first, each on
//! its connection (opened at its first job; WAL: a read never blocks the writer).
//! A task that reads only sends its closure and awaits the answer: sending never
//! blocks. Reads used to go through `spawn_blocking`, whose pool every spawn and
//! every idle thread locks; under load the runtime's worker threads blocked on that
//! lock, holding up every task queued on them.
//!
//! One more thread serves the [`Lane`]s, each with a connection of its own and
//! outside the pool's queue: the event feed never waits behind a burst of run
//! loads, and `data_version` is always read on the same connection (its value is
//! per connection).

use crate::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::oneshot;

/// Threads (and connections) serving the pool's queue: at most this many reads at once.
pub(crate) const POOL_THREADS: usize = 4;

/// A reader with a connection of its own, outside the pool's queue.
#[derive(Clone, Copy)]
pub(crate) enum Lane {
    /// `data_version`: its value is per connection.
    Version,
    /// The shared event feed, which hands each read to many subscribers.
    Feed,
}

type Job = Box<dyn FnOnce(Result<&Connection, StoreError>) + Send>;

/// The queues to the reading threads. Dropping it ends each thread once the jobs
/// already queued are done (those whose caller went away are skipped) and waits
/// for that: the read connections are closed
/// before the writer's. A read-only connection cannot checkpoint, so if one closed
/// last, the WAL file would stay behind (the next open recovers it, but a store
/// dropped must be closed: replacing or moving its file relies on it).
pub(crate) struct Readers {
    pool: Option<mpsc::Sender<Job>>,
    lanes: Option<mpsc::Sender<(Lane, Job)>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Readers {
    fn drop(&mut self) {
        // Closing the queues ends each thread after the job it runs.
        self.pool = None;
        self.lanes = None;
        let me = std::thread::current().id();
        for t in self.threads.drain(..) {
            // A job that held the last handle to the store does not wait for itself.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

impl Readers {
    pub(crate) fn start(db: &Path) -> Result<Readers, StoreError> {
        let (pool, rx) = mpsc::channel::<Job>();
        let (lanes, lane_rx) = mpsc::channel::<(Lane, Job)>();
        // Made first: if a thread cannot start, dropping it ends the others.
        let mut readers = Readers {
            pool: Some(pool),
            lanes: Some(lanes),
            threads: Vec::with_capacity(POOL_THREADS + 1),
        };
        let mut spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
            let t = std::thread::Builder::new()
                .name(name.into())
                .spawn(body)
                .map_err(|e| StoreError::Io(format!("cannot start a store reader thread: {e}")))?;
            readers.threads.push(t);
            Ok::<_, StoreError>(())
        };
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..POOL_THREADS {
            let (rx, db) = (rx.clone(), db.to_path_buf());
            spawn("store-reader", Box::new(move || serve_pool(&db, &rx)))?;
        }
        let db = db.to_path_buf();
        spawn("store-lanes", Box::new(move || serve_lanes(&db, lane_rx)))?;
        Ok(readers)
    }

    /// Sends `job` to the pool's queue, or with `lane` to the lanes' thread.
    fn send(&self, lane: Option<Lane>, job: Job) -> Result<(), StoreError> {
        let sent = match (lane, &self.pool, &self.lanes) {
            (None, Some(pool), _) => pool.send(job).is_ok(),
            (Some(lane), _, Some(lanes)) => lanes.send((lane, job)).is_ok(),
            // The queues close only when the readers drop.
            _ => false,
        };
        if sent {
            Ok(())
        } else {
            Err(StoreError::Closed)
        }
    }

    /// Runs `f` on a pooled connection, after the reads queued before it.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (job, rx) = job(f);
        self.send(None, job)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on `lane`'s own connection.
    pub(crate) async fn read_on<T, F>(&self, lane: Lane, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (job, rx) = job(f);
        self.send(Some(lane), job)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// `f` as a job answering on the returned receiver; a panic in `f` is its error,
/// and a job whose caller went away is skipped.
fn job<T, F>(f: F) -> (Job, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    let (reply, rx) = oneshot::channel();
    let job: Job = Box::new(move |conn| {
        if reply.is_closed() {
            return;
        }
        let out = conn.and_then(|c| {
            catch_unwind(AssertUnwindSafe(|| f(c)))
                .unwrap_or_else(|p| Err(StoreError::Panicked(crate::writer::panic_text(&*p))))
        });
        let _ = reply.send(out);
    });
    (job, rx)
}

/// A connection opened at first use; a failed open is the job's error and is
/// tried again at the next job.
struct Lazy<'a> {
    db: &'a Path,
    conn: Option<Connection>,
}

impl Lazy<'_> {
    fn run(&mut self, job: Job) {
        if self.conn.is_none() {
            match open_reader(self.db) {
                Ok(c) => self.conn = Some(c),
                Err(e) => return job(Err(e)),
            }
        }
        job(Ok(self.conn.as_ref().expect("opened above")));
    }
}

fn serve_pool(db: &Path, rx: &Mutex<mpsc::Receiver<Job>>) {
    let mut conn = Lazy { db, conn: None };
    loop {
        // The lock is held only while waiting for the next job.
        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        match next {
            Ok(job) => conn.run(job),
            Err(_) => return,
        }
    }
}

fn serve_lanes(db: &Path, rx: mpsc::Receiver<(Lane, Job)>) {
    let mut version = Lazy { db, conn: None };
    let mut feed = Lazy { db, conn: None };
    while let Ok((lane, job)) = rx.recv() {
        match lane {
            Lane::Version => version.run(job),
            Lane::Feed => feed.run(job),
        }
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(64);
    // Sorts and temporary tables of a read stay off the disk.
    conn.execute_batch("PRAGMA temp_store = MEMORY;")?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// The feed's read is answered while every pooled connection is busy: it never
    /// waits its turn behind run loads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lane_is_served_while_the_pool_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, s) = crate::sqlite::open_for_test(dir.path());
        let started = Arc::new(AtomicUsize::new(0));
        let released = Arc::new(AtomicBool::new(false));
        // Every pooled connection held (for a bounded time, so that a failing test
        // cannot hang), and two more reads queued behind them.
        let busy: Vec<_> = (0..POOL_THREADS + 2)
            .map(|i| {
                let (s, started, released) = (s.clone(), started.clone(), released.clone());
                tokio::spawn(async move {
                    s.read(move |_| {
                        started.fetch_add(1, Ordering::SeqCst);
                        let t = Instant::now();
                        while !released.load(Ordering::SeqCst)
                            && t.elapsed() < Duration::from_secs(20)
                        {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Ok(i)
                    })
                    .await
                })
            })
            .collect();
        let t = Instant::now();
        while started.load(Ordering::SeqCst) < POOL_THREADS {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the pool did not fill"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let feed = tokio::time::timeout(Duration::from_secs(5), s.feed_events_after(0, 10))
            .await
            .expect("the feed's read waited for the pool")
            .unwrap();
        assert!(feed.is_empty());
        let version = tokio::time::timeout(Duration::from_secs(5), s.data_version())
            .await
            .expect("data_version waited for the pool");
        assert!(version.is_ok());
        assert_eq!(
            started.load(Ordering::SeqCst),
            POOL_THREADS,
            "the pool was not held"
        );
        released.store(true, Ordering::SeqCst);
        for (i, b) in busy.into_iter().enumerate() {
            assert_eq!(b.await.unwrap().unwrap(), i);
        }
    }

    /// A read that panics fails alone: its caller gets the panic as an error, and
    /// the thread goes on serving the reads after it.
    #[tokio::test]
    async fn a_panicking_read_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, s) = crate::sqlite::open_for_test(dir.path());
        for _ in 0..POOL_THREADS * 2 {
            let r: Result<(), _> = s.read(|_| panic!("boom in a read")).await;
            assert!(
                matches!(&r, Err(StoreError::Panicked(m)) if m.contains("boom in a read")),
                "{r:?}"
            );
        }
        let n: i64 = s
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 0);
    }

    /// Dropping the store ends its reading threads and closes their connections
    /// (none leaks): the last connection's close removes the WAL file. The writer's
    /// and the checkpointer's threads close theirs after the drop returns, so this
    /// waits for it a little.
    #[tokio::test]
    async fn dropping_the_store_closes_every_read_connection() {
        let dir = tempfile::tempdir().unwrap();
        let (store, s) = crate::sqlite::open_for_test(dir.path());
        let n = crate::testing::new_request("s1", 0);
        let adm = crate::Admission {
            queue_capacity: 10,
            reject_if_session_busy: false,
        };
        store
            .admit(n, adm, harness_core::Timestamp(1))
            .await
            .unwrap();
        let reads: Vec<_> = (0..POOL_THREADS * 3)
            .map(|_| {
                s.read(|c| {
                    Ok(c.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get::<_, i64>(0))?)
                })
            })
            .collect();
        for n in futures_util::future::join_all(reads).await {
            assert_eq!(n.unwrap(), 1);
        }
        s.feed_events_after(0, 10).await.unwrap();
        s.data_version().await.unwrap();
        let wal = dir.path().join(format!("{}-wal", crate::sqlite::DB_FILE));
        assert!(wal.exists());
        drop((store, s));
        for _ in 0..500 {
            if !wal.exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("a connection stayed open after the store was dropped");
    }
}
