//! The SQLite backend: one database file (WAL) in the store folder, one writer
//! thread with group commit ([`crate::writer`]) and the read connections' threads
//! ([`crate::readers`]). The domain modules (`requests`, `steps`, `tree`, …) implement its
//! operations; [`crate::Store`] dispatches to it.

use crate::readers::{Lane, Readers};
use crate::writer::{self, WriterHandle};
use crate::{Durability, Replaced, StoreError, StoreOptions, checkpoint, sidecar};
use harness_core::{Clock, SystemClock};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

pub(crate) mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

/// The database file inside the store folder.
pub const DB_FILE: &str = "harness.db";

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub(crate) struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    db_path: PathBuf,
    /// The read connections' threads (see `readers`). Declared (so dropped) before
    /// the writer: the read-only connections close first, and the writer's, closing
    /// last, folds the WAL into the file and removes it.
    readers: Readers,
    writer: WriterHandle,
    seq_rx: watch::Receiver<i64>,
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
        let readers = Readers::start(&db_path)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                db_path,
                writer,
                readers,
                seq_rx,
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

    /// WAL checkpoints run so far, by the checkpoint thread or the writer.
    #[cfg(test)]
    pub(crate) fn checkpoint_runs(&self) -> u64 {
        self.inner.writer.checkpoint_runs()
    }

    /// Runs `f` on a pooled read connection (WAL: never blocks the writer).
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.readers.read(f).await
    }

    /// Runs `f` on `lane`'s own connection, outside the pool's queue.
    pub(crate) async fn read_on<T, F>(&self, lane: Lane, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.readers.read_on(lane, f).await
    }

    /// SQLite's `data_version`: changes whenever another connection (another process,
    /// or this process's writer) commits, and only then. Cheap to poll. The value is
    /// per connection, so it is always read from the same one (not the read pool).
    pub(crate) async fn data_version(&self) -> Result<i64, StoreError> {
        self.read_on(Lane::Version, |c| {
            Ok(c.query_row("PRAGMA data_version", [], |r| r.get(0))?)
        })
        .await
    }
}

pub(crate) fn configure(conn: &Connection, durability: Durability) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(64);
    let sync = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    // Checkpoints run on their own thread, and a short tail on the writer between
    // commits (see `checkpoint`), never inside a commit.
    // Temporary storage in memory: the writer runs each grouped job in a savepoint,
    // whose sub-journal (the pages a job changes, kept to undo it alone) otherwise
    // spills to a temporary file past 64 KiB, and every page went through `pwrite`:
    // a third of the writer's CPU under load.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = OFF; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {}; \
         PRAGMA temp_store = MEMORY;",
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

impl SqliteStore {
    pub(crate) async fn wakeups(&self) -> crate::Wakeups {
        crate::Wakeups::sqlite(self).await
    }
}

/// A store in `dir` and its SQLite backend, for the crate's unit tests.
#[cfg(test)]
pub(crate) fn open_for_test(dir: &Path) -> (crate::Store, SqliteStore) {
    let store = crate::Store::open(dir, StoreOptions::default()).unwrap();
    let crate::Backend::Sqlite(s) = &store.backend else {
        unreachable!("a folder opens SQLite")
    };
    let s = s.clone();
    (store, s)
}

#[cfg(test)]
mod tests {
    /// The writer's and the readers' temporary storage stays in memory: the
    /// writer's per-job savepoints otherwise journal every page they change to a
    /// temporary file (measured: a third of the writer's CPU in `pwrite`).
    #[tokio::test]
    async fn temporary_storage_stays_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, s) = super::open_for_test(dir.path());
        let temp_store = |c: &rusqlite::Connection| -> Result<i64, crate::StoreError> {
            Ok(c.query_row("PRAGMA temp_store", [], |r| r.get(0))?)
        };
        // 2: MEMORY.
        assert_eq!(s.write_raw(move |c| temp_store(c)).await.unwrap(), 2);
        assert_eq!(s.read(move |c| temp_store(c)).await.unwrap(), 2);
        assert_eq!(
            s.read_on(crate::readers::Lane::Feed, move |c| temp_store(c))
                .await
                .unwrap(),
            2
        );
    }
}
