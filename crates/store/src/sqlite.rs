//! The SQLite backend: one database file (WAL) in the store folder, one writer
//! thread with group commit ([`crate::writer`]) and a small pool of read
//! connections. The domain modules (`requests`, `steps`, `tree`, …) implement its
//! operations; [`crate::Store`] dispatches to it.

use crate::writer::{self, WriterHandle};
use crate::{Durability, Replaced, StoreError, StoreOptions, checkpoint, sidecar};
use harness_core::{Clock, SystemClock};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

pub(crate) mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

/// The database file inside the store folder.
pub const DB_FILE: &str = "harness.db";
const READ_POOL_MAX: usize = 4;

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub(crate) struct SqliteStore {
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
    /// The one connection [`SqliteStore::data_version`] polls (opened on first use).
    version_conn: Mutex<Option<Connection>>,
    replaced: Option<Replaced>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir` and applies pending migrations.
    ///
    /// The database file is checked first (cheaply, see [`sidecar`]): a damaged file
    /// is refused ([`StoreError::Damaged`]), and so is a missing or empty one where the
    /// sidecar says a store existed ([`StoreError::Missing`]), unless
    /// [`StoreOptions::new_store`] asks to start over.
    pub(crate) fn open(dir: &Path, opts: StoreOptions) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir.join("artifacts")).map_err(|e| {
            StoreError::Io(format!("cannot create store folder {}: {e}", dir.display()))
        })?;
        Self::open_checked(dir, opts, true)
    }

    /// Opens a store that must already exist (for views: never create one by reading).
    pub(crate) fn open_existing(dir: &Path, opts: StoreOptions) -> Result<SqliteStore, StoreError> {
        Self::open_checked(dir, opts, false)
    }

    fn open_checked(
        dir: &Path,
        opts: StoreOptions,
        create: bool,
    ) -> Result<SqliteStore, StoreError> {
        let db = dir.join(DB_FILE);
        let known = sidecar::read(dir);
        let len = std::fs::metadata(&db).ok().map(|m| m.len());
        let Some(len) = len.filter(|&n| n > 0) else {
            // No database (or an empty file SQLite would take for a new one).
            let problem = if len.is_none() {
                "is missing"
            } else {
                "is empty (0 bytes)"
            };
            return match known {
                Some(k) if !opts.new_store => Err(StoreError::Missing {
                    path: db,
                    sidecar: sidecar::path(dir),
                    problem,
                    created_at: k.created_at,
                    store_id: k.store_id,
                }),
                Some(_) => {
                    let moved_to = len.map(|_| sidecar::move_aside(&db)).transpose()?;
                    Self::fresh(
                        dir,
                        opts,
                        Some(Replaced {
                            moved_to,
                            problem: format!("it {problem}"),
                        }),
                    )
                }
                None if !create => Err(StoreError::NoStore {
                    path: dir.to_path_buf(),
                }),
                None => Self::fresh(dir, opts, None),
            };
        };
        let damage = match sidecar::look(&db, len, known.as_ref()) {
            sidecar::Look::Fine => None,
            sidecar::Look::Damaged(problem) => Some(problem),
            sidecar::Look::Shrunk(problem) => full_check(&db)
                .err()
                .map(|found| format!("{problem}; the full check found: {found}")),
        }
        .or_else(|| {
            // The last full check failed: before writing into it again, check again
            // (the file may have been restored since).
            match known.as_ref().and_then(|k| k.last_integrity.as_ref()) {
                Some(c) if !c.ok && create => full_check(&db)
                    .err()
                    .map(|found| format!("its integrity check fails: {found}")),
                _ => None,
            }
        });
        if opts.new_store {
            // Only a full check tells an intact store from one damaged inside.
            let problem = match damage {
                Some(p) => p,
                None => match full_check(&db) {
                    Ok(()) => {
                        return Err(StoreError::NotReplaced {
                            path: db,
                            problem: "it passes SQLite's integrity check".into(),
                        });
                    }
                    Err(found) => format!("its integrity check fails: {found}"),
                },
            };
            let moved_to = Some(sidecar::move_aside(&db)?);
            return Self::fresh(dir, opts, Some(Replaced { moved_to, problem }));
        }
        if let Some(problem) = damage {
            return Err(StoreError::Damaged { path: db, problem });
        }
        let store = Self::open_inner(dir, opts, None).map_err(|e| damaged_if_corrupt(e, &db))?;
        // Record the file as seen: a new floor, or the identity of a store that had no
        // sidecar yet. Views only write to correct a floor a compaction made wrong.
        let now = file_len(&db);
        let stale = known.as_ref().is_none_or(|k| now != k.min_db_bytes);
        if stale && (create || known.as_ref().is_some_and(|k| now < k.min_db_bytes)) {
            sidecar::update(dir, now, |k| {
                k.min_db_bytes = now;
                k.seen_at = SystemClock.now();
            })?;
        }
        Ok(store)
    }

    /// A new, empty store; its sidecar is written once its database exists.
    fn fresh(
        dir: &Path,
        opts: StoreOptions,
        replaced: Option<Replaced>,
    ) -> Result<SqliteStore, StoreError> {
        if replaced.is_some() {
            // The old store's record goes with it (its file was moved aside).
            let _ = std::fs::remove_file(sidecar::path(dir));
        }
        let store = Self::open_inner(dir, opts, replaced)?;
        sidecar::write(dir, &sidecar::Sidecar::new(file_len(&store.inner.db_path)))?;
        Ok(store)
    }

    /// What [`StoreOptions::new_store`] replaced, if it did.
    pub(crate) fn replaced(&self) -> Option<&Replaced> {
        self.inner.replaced.as_ref()
    }

    fn open_inner(
        dir: &Path,
        opts: StoreOptions,
        replaced: Option<Replaced>,
    ) -> Result<SqliteStore, StoreError> {
        let db_path = dir.join(DB_FILE);
        let mut conn = Connection::open(&db_path)?;
        configure(&conn, opts.durability)?;
        // Reading the schema touches the first pages: a damaged file fails here with a
        // classified error rather than inside the migration runner.
        conn.query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })?;
        embedded::migrations::runner()
            .run(&mut conn)
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        let max_seq: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        let (seq_tx, seq_rx) = watch::channel(max_seq);
        checkpoint::watch_wal(&conn);
        let checkpointer = checkpoint::spawn(&db_path)?;
        let writer = WriterHandle::spawn(conn, seq_tx, checkpointer, writer::LOCK_WAIT)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                db_path,
                writer,
                readers: Mutex::new(Vec::new()),
                read_slots: tokio::sync::Semaphore::new(READ_POOL_MAX),
                seq_rx,
                version_conn: Mutex::new(None),
                replaced,
            }),
        })
    }

    /// The store folder.
    pub(crate) fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The database file.
    pub(crate) fn db_path(&self) -> &Path {
        &self.inner.db_path
    }

    /// Highest event sequence committed by this process; changes wake subscribers.
    /// Writes by other processes are seen by polling [`SqliteStore::data_version`].
    pub(crate) fn committed_seq(&self) -> watch::Receiver<i64> {
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
    pub(crate) async fn data_version(&self) -> Result<i64, StoreError> {
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

pub(crate) fn configure(conn: &Connection, durability: Durability) -> Result<(), StoreError> {
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

pub(crate) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// SQLite's `quick_check` on the file, from a connection of its own: `Err` holds
/// what it found (or why it could not run). Reads the whole file.
pub(crate) fn full_check(db: &Path) -> Result<(), String> {
    let run = || -> Result<Vec<String>, rusqlite::Error> {
        let c = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(std::time::Duration::from_secs(10))?;
        let mut stmt = c.prepare("PRAGMA quick_check")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    };
    match run() {
        Ok(rows) if rows == ["ok"] => Ok(()),
        Ok(rows) => Err(rows.join("; ")),
        Err(e) => Err(e.to_string()),
    }
}

/// A SQLite error at open that says the file is damaged becomes [`StoreError::Damaged`],
/// naming the file.
fn damaged_if_corrupt(e: StoreError, db: &Path) -> StoreError {
    if e.is_corrupt() && !matches!(e, StoreError::Damaged { .. }) {
        StoreError::Damaged {
            path: db.to_path_buf(),
            problem: e.to_string(),
        }
    } else {
        e
    }
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

impl SqliteStore {
    pub(crate) async fn wakeups(&self) -> crate::Wakeups {
        crate::Wakeups::sqlite(self).await
    }
}
