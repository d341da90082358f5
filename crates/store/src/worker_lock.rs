//! One worker per store. SQLite: an OS file lock on `<store>/worker.lock`. The
//! lock dies with the process (even on SIGKILL), so a crashed worker never leaves
//! the store locked; the file's text names the holder for errors.

use crate::StoreError;
use crate::sqlite::SqliteStore;
use harness_core::{Timestamp, WorkerId};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

pub const LOCK_FILE: &str = "worker.lock";

/// How many times (10 ms apart) a worker start tries a lock it found taken before
/// it is refused: a probe by a view holds it for microseconds, a worker for good.
const PROBE_RETRIES: u32 = 20;

/// Who holds the workspace, as written in the lock file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: u32,
    pub since: String,
    pub worker_id: String,
}

/// A held worker lock; released on drop (and when the process dies).
pub struct WorkerLock {
    _held: Held,
}

enum Held {
    File(#[allow(dead_code)] File),
    Postgres(#[allow(dead_code)] crate::pg::PgLock),
}

impl WorkerLock {
    pub(crate) fn postgres(lock: crate::pg::PgLock) -> WorkerLock {
        WorkerLock {
            _held: Held::Postgres(lock),
        }
    }
}

impl SqliteStore {
    pub(crate) async fn lock_worker(
        &self,
        worker: &WorkerId,
        since: Timestamp,
    ) -> Result<WorkerLock, StoreError> {
        let file = acquire(self.dir(), worker.as_str(), &since.to_rfc3339())?;
        Ok(WorkerLock {
            _held: Held::File(file),
        })
    }

    pub(crate) async fn worker_holder(&self) -> Result<Option<LockHolder>, StoreError> {
        Ok(holder(self.dir()))
    }
}

fn acquire(store_dir: &Path, worker_id: &str, since: &str) -> Result<File, StoreError> {
    let path = store_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::file(path.display().to_string(), e))?;
    // A view that asks who holds the workspace ([`holder`]) takes the lock for an
    // instant to learn it is free: a start that meets that probe tries again.
    let mut probed = 0;
    let locked = loop {
        match file.try_lock() {
            Err(TryLockError::WouldBlock) if probed < PROBE_RETRIES => {
                probed += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other,
        }
    };
    match locked {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = read_holder(&mut file);
            return Err(StoreError::Locked(match holder {
                Some(h) => format!(
                    "the workspace is held by another worker (pid {}, worker {}, since {}); \
                         stop it first, or use `agent-harness request` to hand it work",
                    h.pid, h.worker_id, h.since
                ),
                None => "the workspace is held by another worker".to_string(),
            }));
        }
        Err(TryLockError::Error(e)) => {
            return Err(StoreError::file(
                format!("cannot lock {}", path.display()),
                e,
            ));
        }
    }
    let write = |file: &mut File| {
        file.set_len(0)?;
        file.rewind()?;
        write!(
            file,
            "pid={}\nworker={worker_id}\nsince={since}\n",
            std::process::id()
        )
    };
    write(&mut file).map_err(|e| StoreError::file(path.display().to_string(), e))?;
    Ok(file)
}

/// The current holder, if a live process holds the lock.
fn holder(store_dir: &Path) -> Option<LockHolder> {
    let path = store_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new().read(true).write(true).open(path).ok()?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(_) => read_holder(&mut file),
    }
}

fn read_holder(file: &mut File) -> Option<LockHolder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
    };
    Some(LockHolder {
        pid: field("pid")?.parse().ok()?,
        since: field("since").unwrap_or_default(),
        worker_id: field("worker").unwrap_or_default(),
    })
}
