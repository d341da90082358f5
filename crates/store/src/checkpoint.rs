//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside whichever commit crosses the
//! threshold, which made that commit (and an approval resolved in it) take
//! milliseconds. The writer disables it and, when a commit leaves the WAL past
//! the threshold, pokes this thread, which checkpoints from its own connection in
//! PASSIVE mode (never blocking the writer or readers). A timer catches the rest.

use crate::StoreError;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

/// Checkpoint once the WAL holds this much (SQLite checkpoints at ~4 MiB by default; rewritten pages make a larger WAL cheaper to checkpoint).
const WAL_THRESHOLD: u64 = 16 << 20;
/// After the WAL starts over, its file is truncated to this: large enough that
/// commits overwrite frames in place (an fsync that grows a file costs more).
pub(crate) const WAL_SIZE_LIMIT: u64 = 4 * WAL_THRESHOLD;
const EVERY: Duration = Duration::from_millis(500);

/// The writer's handle on the checkpointer; dropping it stops the thread.
pub(crate) struct Checkpointer {
    poke: SyncSender<()>,
    wal: PathBuf,
}

impl Checkpointer {
    /// Called after a commit: asks for a checkpoint when the WAL has grown past the threshold.
    pub(crate) fn after_commit(&self) {
        let size = std::fs::metadata(&self.wal).map(|m| m.len()).unwrap_or(0);
        if size >= WAL_THRESHOLD {
            // Full: a checkpoint is already requested. Disconnected: the store is closing.
            let _: Result<(), TrySendError<()>> = self.poke.try_send(());
        }
    }
}

/// Starts the checkpoint thread for the database at `db_path`.
pub(crate) fn spawn(db_path: &Path) -> Result<Checkpointer, StoreError> {
    let conn = Connection::open(db_path)?;
    conn.busy_timeout(Duration::from_secs(1))?;
    conn.execute_batch(&format!("PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}"))?;
    let wal = wal_path(db_path);
    let (poke, rx) = mpsc::sync_channel::<()>(1);
    let thread_wal = wal.clone();
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            while !matches!(rx.recv_timeout(EVERY), Err(RecvTimeoutError::Disconnected)) {
                let size = std::fs::metadata(&thread_wal).map(|m| m.len()).unwrap_or(0);
                if size < WAL_THRESHOLD {
                    continue;
                }
                // PASSIVE never waits, but under constant reads and writes the WAL may
                // never get a moment to start over and keeps growing; past four times
                // the threshold, RESTART waits (briefly) for readers so it can.
                let mode = if size >= 4 * WAL_THRESHOLD {
                    "RESTART"
                } else {
                    "PASSIVE"
                };
                if let Err(e) = conn.execute_batch(&format!("PRAGMA wal_checkpoint({mode})")) {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
        })
        .map_err(|e| StoreError::Io(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(Checkpointer { poke, wal })
}

fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}
