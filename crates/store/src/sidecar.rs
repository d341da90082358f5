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

/// The first 100 bytes of the database file, read through a descriptor this process
/// never closes. Closing any descriptor of a file releases every POSIX lock the
/// process holds on it, SQLite's included: a header read that closed its file while
/// a connection of this process was open let other processes checkpoint and delete
/// the WAL under that connection, which could then damage the file (seen as reads
/// past its end, SQLITE_IOERR_SHORT_READ, in the next worker).
fn read_header(db: &Path) -> std::io::Result<[u8; 100]> {
    use std::os::unix::fs::{FileExt, MetadataExt};
    static OPEN: std::sync::Mutex<Vec<((u64, u64), std::fs::File)>> =
        std::sync::Mutex::new(Vec::new());
    let meta = std::fs::metadata(db)?;
    let key = (meta.dev(), meta.ino());
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    let i = match open.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            let f = std::fs::File::open(db)?;
            // Another file now at that path (replaced): key it by what was opened.
            let m = f.metadata()?;
            open.push(((m.dev(), m.ino()), f));
            open.len() - 1
        }
    };
    let mut header = [0u8; 100];
    open[i].1.read_exact_at(&mut header, 0)?;
    Ok(header)
}

/// Checks the database file's header against its size (and its WAL's), and its
/// size against the sidecar's floor. Reads 100 bytes.
pub(crate) fn look(db: &Path, len: u64, sidecar: Option<&Sidecar>) -> Look {
    if len < 100 {
        return Look::Damaged(format!(
            "the file is {len} bytes, shorter than an SQLite header"
        ));
    }
    let header = match read_header(db) {
        Ok(h) => h,
        Err(e) => return Look::Damaged(format!("its header cannot be read: {e}")),
    };
    if &header[..16] != b"SQLite format 3\0" {
        return Look::Damaged("its first bytes are not an SQLite header (overwritten?)".into());
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n if n >= 512 && n.is_power_of_two() => u64::from(n),
        n => return Look::Damaged(format!("its header names an impossible page size ({n})")),
    };
    if !len.is_multiple_of(page_size) {
        return Look::Damaged(format!(
            "the file is {len} bytes, not a whole number of {page_size}-byte pages (truncated?)"
        ));
    }
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let (change_counter, pages, valid_for) = (be32(24), u64::from(be32(28)), be32(92));
    // SQLite writes page 1 first when checkpointing: until the checkpoint finishes,
    // the pages it will add past the end are still in the WAL.
    let wal = std::fs::metadata(wal_path(db))
        .map(|m| m.len())
        .unwrap_or(0);
    if pages > 0 && change_counter == valid_for && pages * page_size > len + wal {
        return Look::Damaged(format!(
            "the file is {len} bytes but its header says {} ({pages} pages): it was truncated",
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
