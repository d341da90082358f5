//! The store: the only place SQL lives.
//!
//! [`Store`] is the one API the engine and every view use. This backend is
//! SQLite (WAL): one writer thread with group commit ([`writer`]) and a small pool
//! of read connections. Nothing SQLite-specific crosses this API: a PostgreSQL
//! backend (later) implements the same methods with row leases and
//! commit-ordered event sequences (see ARCHITECTURE.md, "Event cursor").

mod approvals;
mod artifacts;
mod checkpoint;
mod error;
mod events;
mod maintenance;
mod query;
mod requests;
mod rows;
mod stats;
mod steps;
#[cfg(feature = "synthetic")]
pub mod synthetic;
mod views;
mod workers;
mod writer;

pub use artifacts::validate_artifact_name;
pub use error::StoreError;
pub use maintenance::PruneReport;
pub use requests::{Admission, NewRequest};
pub use stats::{IntegrityCheck, StoreStats, StuckRequest};
pub use steps::{RequestPatch, StepCommit, StepWrite};

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use writer::WriterHandle;

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

/// The database file inside the store folder.
pub const DB_FILE: &str = "harness.db";
const READ_POOL_MAX: usize = 4;

/// How a committed write must survive failures (SQLite `synchronous` in WAL mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Survives a crash of the process (fsync at checkpoints, not at every commit).
    #[default]
    Normal,
    /// Also survives power loss and OS crashes (one fsync per group commit).
    Full,
}

#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    pub durability: Durability,
}

/// A handle to the durable records. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    db_path: PathBuf,
    writer: WriterHandle,
    readers: Mutex<Vec<Connection>>,
    /// At most `READ_POOL_MAX` reads at once: a burst of a thousand runs waits for a
    /// pooled connection instead of opening (and keeping threads for) hundreds.
    read_slots: tokio::sync::Semaphore,
    seq_rx: watch::Receiver<i64>,
    /// The one connection [`Store::data_version`] polls (opened on first use).
    version_conn: Mutex<Option<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir` and applies pending migrations.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir.join("artifacts")).map_err(|e| {
            StoreError::Io(format!("cannot create store folder {}: {e}", dir.display()))
        })?;
        Self::open_inner(dir, opts)
    }

    /// Opens a store that must already exist (for views: never create one by reading).
    pub fn open_existing(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        if !dir.join(DB_FILE).exists() {
            return Err(StoreError::NoStore {
                path: dir.to_path_buf(),
            });
        }
        Self::open_inner(dir, opts)
    }

    fn open_inner(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let db_path = dir.join(DB_FILE);
        let mut conn = Connection::open(&db_path)?;
        configure(&conn, opts.durability)?;
        embedded::migrations::runner()
            .run(&mut conn)
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        let max_seq: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        let (seq_tx, seq_rx) = watch::channel(max_seq);
        checkpoint::watch_wal(&conn);
        let checkpointer = checkpoint::spawn(&db_path)?;
        let writer = WriterHandle::spawn(conn, seq_tx, checkpointer, writer::LOCK_WAIT)?;
        Ok(Store {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                db_path,
                writer,
                readers: Mutex::new(Vec::new()),
                read_slots: tokio::sync::Semaphore::new(READ_POOL_MAX),
                seq_rx,
                version_conn: Mutex::new(None),
            }),
        })
    }

    /// The store folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Highest event sequence committed by this process; changes wake subscribers.
    /// Writes by other processes are seen by polling [`Store::data_version`].
    pub fn committed_seq(&self) -> watch::Receiver<i64> {
        self.inner.seq_rx.clone()
    }

    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.writer.write(f).await
    }

    pub(crate) async fn write_raw<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.writer.raw(f).await
    }

    /// Runs `f` on a pooled read connection (WAL: never blocks the writer).
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _slot = self
            .inner
            .read_slots
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_blocking(f))
            .await
            .map_err(|e| StoreError::Io(format!("read task failed: {e}")))?
    }

    fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.inner.readers.lock().expect("reader pool").pop();
        let conn = match conn {
            Some(c) => c,
            None => open_reader(&self.inner.db_path)?,
        };
        let out = f(&conn);
        let mut pool = self.inner.readers.lock().expect("reader pool");
        if pool.len() < READ_POOL_MAX {
            pool.push(conn);
        }
        out
    }

    /// SQLite's `data_version`: changes whenever another connection (another process,
    /// or this process's writer) commits, and only then. Cheap to poll. The value is
    /// per connection, so it is always read from the same one (not the read pool).
    pub async fn data_version(&self) -> Result<i64, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut slot = this.inner.version_conn.lock().expect("version connection");
            let conn = match slot.take() {
                Some(c) => c,
                None => open_reader(&this.inner.db_path)?,
            };
            let v = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
            *slot = Some(conn);
            Ok(v)
        })
        .await
        .map_err(|e| StoreError::Io(format!("data_version task failed: {e}")))?
    }
}

fn configure(conn: &Connection, durability: Durability) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(64);
    let sync = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    // Checkpoints run on their own thread (see `checkpoint`), never inside a commit.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = OFF; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {};",
        checkpoint::WAL_SIZE_LIMIT
    ))?;
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}
