//! One worker per SQLite workspace: an OS file lock on `<store>/worker.lock`.
//! The lock dies with the process (even on SIGKILL), so a crashed worker never
//! leaves the workspace locked; the file's text names the holder for errors.

use crate::HarnessError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

pub const LOCK_FILE: &str = "worker.lock";

/// Who holds the workspace, as written in the lock file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: u32,
    pub since: String,
    pub worker_id: String,
}

/// A held workspace lock; released on drop (and by the OS when the process dies).
pub struct WorkspaceLock {
    _file: File,
}

impl WorkspaceLock {
    pub fn acquire(
        store_dir: &Path,
        worker_id: &str,
        since: &str,
    ) -> Result<WorkspaceLock, HarnessError> {
        let path = store_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| HarnessError::Io(format!("{}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                return Err(HarnessError::Locked(match holder {
                    Some(h) => format!(
                        "the workspace is held by another worker (pid {}, worker {}, since {}); \
                         stop it first, or use `agent-harness request` to hand it work",
                        h.pid, h.worker_id, h.since
                    ),
                    None => "the workspace is held by another worker".to_string(),
                }));
            }
            Err(TryLockError::Error(e)) => {
                return Err(HarnessError::Io(format!(
                    "cannot lock {}: {e}",
                    path.display()
                )));
            }
        }
        file.set_len(0)
            .map_err(|e| HarnessError::Io(e.to_string()))?;
        file.rewind().map_err(|e| HarnessError::Io(e.to_string()))?;
        write!(
            file,
            "pid={}\nworker={worker_id}\nsince={since}\n",
            std::process::id()
        )
        .map_err(|e| HarnessError::Io(e.to_string()))?;
        Ok(WorkspaceLock { _file: file })
    }
}

/// The current holder, if a live process holds the lock.
pub fn holder(store_dir: &Path) -> Option<LockHolder> {
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
