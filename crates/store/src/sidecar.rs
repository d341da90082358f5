//! Facts about the database file kept outside it: a damaged file cannot be trusted
//! to report its own damage, and an emptied or deleted one reports nothing at all.
//!
//! `store.json` beside `harness.db` holds the store's identity (id, creation time),
//! a floor for the database file's size (without VACUUM an SQLite file never
//! shrinks) and the last full integrity check. It is replaced atomically (temp file,
//! fsync, rename). Opening the store checks the file against it and against the
//! file's own header, cheaply: no full read.

use crate::{IntegrityCheck, StoreError};
use harness_core::{Clock, SystemClock, Timestamp};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The sidecar file, beside the database.
pub const SIDECAR_FILE: &str = "store.json";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Sidecar {
    pub store_id: String,
    pub created_at: Timestamp,
    /// The database file was at least this many bytes when last seen.
    pub min_db_bytes: u64,
    /// When `min_db_bytes` was last raised (or reset by a VACUUM).
    pub seen_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_integrity: Option<IntegrityCheck>,
}

impl Sidecar {
    /// The identity of a store created (or first seen) now.
    pub fn new(db_bytes: u64) -> Sidecar {
        let now = SystemClock.now();
        Sidecar {
            store_id: format!("sto_{}", ulid::Ulid::new().to_string().to_ascii_lowercase()),
            created_at: now,
            min_db_bytes: db_bytes,
            seen_at: now,
            last_integrity: None,
        }
    }
}

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(SIDECAR_FILE)
}

/// The sidecar, if there is a readable one. An unreadable one is reported and
/// ignored: it is a safety net, and it is rewritten from the database next time.
pub(crate) fn read(dir: &Path) -> Option<Sidecar> {
    let p = path(dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %p.display(), error = %e, "cannot read the store's sidecar file");
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(file = %p.display(), error = %e, "ignoring an unreadable store sidecar file");
            None
        }
    }
}

/// Replaces the sidecar atomically: readers see the old file or the new one, whole.
pub(crate) fn write(dir: &Path, s: &Sidecar) -> Result<(), StoreError> {
    let target = path(dir);
    // Unique per process and call: two processes may write at once (last one wins).
    let tmp = dir.join(format!(
        ".{SIDECAR_FILE}.{}.{}.tmp",
        std::process::id(),
        ulid::Ulid::new()
    ));
    let text = serde_json::to_vec_pretty(s)?;
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        // The rename itself is durable once the folder is synced.
        std::fs::File::open(dir)?.sync_all()
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        StoreError::file(format!("writing {}", target.display()), e)
    })
}

/// Applies `change` to the sidecar (a fresh identity if there is none) and writes it.
/// Processes updating it at once take turns (an OS lock beside it), so none loses
/// another's change.
pub(crate) fn update(
    dir: &Path,
    db_bytes: u64,
    change: impl FnOnce(&mut Sidecar),
) -> Result<(), StoreError> {
    let lock_path = dir.join(format!(".{SIDECAR_FILE}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .and_then(|f| f.lock().map(|()| f))
        .map_err(|e| StoreError::file(format!("locking {}", lock_path.display()), e))?;
    let mut s = read(dir).unwrap_or_else(|| Sidecar::new(db_bytes));
    change(&mut s);
    let written = write(dir, &s);
    drop(lock);
    written
}

/// What a cheap look at the database file found.
pub(crate) enum Look {
    Fine,
    /// Smaller than it was, but consistent with its own header: compacted outside
    /// this program, or damaged; only a full check can tell.
    Shrunk(String),
    Damaged(String),
}

/// Checks the database file's header against its size (and its WAL's), and its
/// size against the sidecar's floor.
///
/// The header is read through SQLite, never with a plain open(2): closing another
/// descriptor of the database file drops every POSIX lock this process holds on it —
/// SQLite's own — and another process could then delete the WAL under a live
/// connection (<https://www.sqlite.org/howtocorrupt.html>, §2.2).
pub(crate) fn look(db: &Path, len: u64, sidecar: Option<&Sidecar>) -> Look {
    if len < 100 {
        return Look::Damaged(format!(
            "the file is {len} bytes, shorter than an SQLite header"
        ));
    }
    let read = || -> rusqlite::Result<(u64, u64)> {
        let c = rusqlite::Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(std::time::Duration::from_secs(10))?;
        // page_count reads the schema: a truncated or overwritten file fails here.
        let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        Ok((page_size.max(1) as u64, pages.max(0) as u64))
    };
    let (page_size, pages) = match read() {
        Ok(header) => header,
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
            return Look::Damaged(format!(
                "its first bytes are not an SQLite header (overwritten?): {e}"
            ));
        }
        Err(e) => {
            return Look::Damaged(format!(
                "SQLite cannot read it ({e}): it was truncated or overwritten"
            ));
        }
    };
    // Sizes read after the count, the WAL's first: a checkpoint copies pages from
    // the WAL into the file before it resets the WAL, so the two sizes together never
    // miss a page the count saw.
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let wal = size(&wal_path(db));
    let now = size(db);
    if !now.is_multiple_of(page_size) {
        return Look::Damaged(format!(
            "the file is {now} bytes, not a whole number of {page_size}-byte pages (truncated?)"
        ));
    }
    if pages * page_size > now + wal {
        return Look::Damaged(format!(
            "the file is {now} bytes but SQLite counts {} ({pages} pages): it was truncated",
            pages * page_size
        ));
    }
    if let Some(s) = sidecar
        && len < s.min_db_bytes
    {
        return Look::Shrunk(format!(
            "the file is {len} bytes, but it was {} bytes at {} and this program has not \
             compacted it since",
            s.min_db_bytes, s.seen_at
        ));
    }
    Look::Fine
}

pub(crate) fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Moves the database (and its WAL) aside as `harness.db.replaced-<time>`, never
/// deleting it; drops its shared-memory index. Returns where it went.
pub(crate) fn move_aside(db: &Path) -> Result<PathBuf, StoreError> {
    let stamp = SystemClock
        .now()
        .to_rfc3339()
        .replace([':', '-'], "")
        .replace(".", "-");
    let mut aside = db.as_os_str().to_owned();
    aside.push(format!(".replaced-{stamp}"));
    let aside = PathBuf::from(aside);
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to).map_err(|e| {
            StoreError::file(format!("moving {} to {}", from.display(), to.display()), e)
        })
    };
    rename(db, &aside)?;
    let wal = wal_path(db);
    if wal.exists() {
        rename(&wal, &wal_path(&aside))?;
    }
    let mut shm = db.as_os_str().to_owned();
    shm.push("-shm");
    let _ = std::fs::remove_file(PathBuf::from(shm));
    Ok(aside)
}
