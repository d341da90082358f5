//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside whichever commit crosses the
//! threshold, which made that commit (and an approval resolved in it) take
//! milliseconds. The writer disables it; this thread checkpoints from its own
//! connection instead, with PASSIVE mode so it never blocks the writer or readers.

use crate::StoreError;
use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// Checkpoint once the WAL holds this much.
const WAL_THRESHOLD: u64 = 4 << 20;
const EVERY: Duration = Duration::from_millis(500);

/// Starts the checkpointer; it stops when the returned sender is dropped.
pub(crate) fn spawn(db_path: &Path) -> Result<mpsc::Sender<()>, StoreError> {
    let conn = Connection::open(db_path)?;
    conn.busy_timeout(Duration::from_secs(1))?;
    let wal = db_path.with_extension("db-wal");
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(EVERY) {
                let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                if size >= WAL_THRESHOLD
                    && let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)")
                {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
            // A last full checkpoint so a cleanly closed store leaves a small WAL.
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
        })
        .map_err(|e| StoreError::Io(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(tx)
}
