//! Store errors: each says what happened, to which id, and what the user can do.
//!
//! Database and file errors keep their cause as a typed source, and
//! [`StoreError::is_transient`], [`StoreError::is_disk_full`], [`StoreError::is_corrupt`]
//! and [`StoreError::is_io`] classify them, so callers decide (retry, re-queue, stop)
//! without matching on SQLite codes or message text.

use harness_core::{ApprovalStatus, RequestStatus, Timestamp};
use rusqlite::ErrorCode;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// A SQLite error, kept whole (`Arc`: the error is cloned to every caller of a batch).
    #[error("database error: {0}{hint}", hint = sqlite_hint(.0))]
    Sqlite(#[source] Arc<rusqlite::Error>),
    /// A PostgreSQL error, kept whole. Its text never holds the connection URL.
    #[error("database error: {0}{hint}", hint = pg_hint(.0))]
    Postgres(#[source] Arc<tokio_postgres::Error>),
    /// The database cannot be reached (no connection could be had from the pool).
    #[error("cannot reach the database {location}: {problem}")]
    Unavailable { location: String, problem: String },
    /// A commit of a tree whose lease this worker no longer holds (another worker
    /// claimed it since): nothing of it was kept.
    #[error(
        "request {id} is no longer leased to this worker (another worker claimed it); \
         nothing of this commit was kept"
    )]
    LeaseLost { id: String },
    /// A tool call's limits have no room: nothing of the commit was kept. The run
    /// parks its tree ([`crate::Store::park`]) and claims it again later.
    #[error("no room in {}: held by {}", .limits.join(", "), held_by.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "))]
    LimitsBusy {
        limits: Vec<String>,
        held_by: Vec<harness_core::CallId>,
    },
    /// The write ran but its transaction did not commit: nothing it did was kept.
    #[error("commit failed, nothing was written: {0}")]
    Commit(#[source] Box<StoreError>),
    /// A write closure panicked; its transaction (or savepoint) was rolled back.
    #[error("a store write panicked and was rolled back: {0}")]
    Panicked(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("the store is closed")]
    Closed,
    #[error("{0}")]
    Io(String),
    /// A file operation of the store (artifacts, the store's sidecar file).
    #[error("{context}: {source}{}", io_hint(.source))]
    File {
        context: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The database file failed a sanity or integrity check.
    #[error(
        "the store {} is damaged: {problem}. Stop every process using it, then restore it from a \
         backup, or move it aside (with its -wal file) and start a new store with \
         `agent-harness serve --new-store`",
        path.display()
    )]
    Damaged { path: PathBuf, problem: String },
    /// The database file is gone or empty, but the sidecar says a store existed here.
    #[error(
        "the store {} {problem}, but {} records a store created at {created_at} (id {store_id}): \
         its records are not there. Restore the file from a backup, or start a new, empty store \
         with `agent-harness serve --new-store`",
        path.display(),
        sidecar.display()
    )]
    Missing {
        path: PathBuf,
        sidecar: PathBuf,
        problem: &'static str,
        created_at: Timestamp,
        store_id: String,
    },
    /// `--new-store` was given but the store passed every check.
    #[error(
        "refusing to replace {}: the store is intact ({problem}). `--new-store` only replaces a \
         missing, empty or damaged store; to discard an intact one, move it aside yourself",
        path.display()
    )]
    NotReplaced { path: PathBuf, problem: String },
    #[error(
        "no store at {path}: run `agent-harness run` or `agent-harness serve` in the workspace first"
    )]
    NoStore { path: PathBuf },
    #[error("{kind} `{id}` not found")]
    NotFound { kind: &'static str, id: String },
    #[error("queue full: {queued} requests queued (capacity {capacity}); retry in {}s", retry_after.as_secs().max(1))]
    QueueFull {
        queued: usize,
        capacity: usize,
        retry_after: Duration,
    },
    #[error(
        "session `{session}` already has an active request {active} and its strategy is `reject`"
    )]
    SessionBusy { session: String, active: String },
    /// An idempotency key already admitted a request of this session that asked for
    /// a different agent or input.
    #[error(
        "idempotency key `{key}` already admitted request {existing} in session `{session}` \
         with a different agent or input; send a new key for a new request"
    )]
    IdempotencyKeyReused {
        key: String,
        session: String,
        existing: String,
    },
    #[error("approval {id} is already {status}{}", decided_suffix(.decided_by, .decided_at))]
    ApprovalNotPending {
        id: String,
        status: ApprovalStatus,
        decided_by: Option<String>,
        decided_at: Option<Timestamp>,
    },
    #[error("approval {id} expired at {expires_at}")]
    ApprovalExpired { id: String, expires_at: Timestamp },
    #[error("approval {id} belongs to {field} `{actual}`, not `{given}`")]
    ApprovalMismatch {
        id: String,
        field: &'static str,
        actual: String,
        given: String,
    },
    #[error("request {id} is {status}; cannot {action}")]
    WrongState {
        id: String,
        status: RequestStatus,
        action: &'static str,
    },
    #[error("{0}")]
    Artifact(String),
    /// Another worker holds the store ([`crate::Store::lock_worker`]).
    #[error("{0}")]
    Locked(String),
}

impl StoreError {
    /// The stable error code of this error (the CLI's exit code and the HTTP
    /// status both follow from it).
    pub fn code(&self) -> harness_core::ErrorCode {
        use harness_core::ErrorCode as C;
        match self.root() {
            StoreError::NotFound { .. } | StoreError::NoStore { .. } => C::NotFound,
            // A --session/--request pair that does not match the approval is bad
            // input, like a malformed artifact reference.
            StoreError::Artifact(_) | StoreError::ApprovalMismatch { .. } => C::InvalidInput,
            StoreError::QueueFull { .. } => C::QueueFull,
            StoreError::ApprovalNotPending { .. }
            | StoreError::ApprovalExpired { .. }
            | StoreError::WrongState { .. }
            | StoreError::SessionBusy { .. }
            | StoreError::IdempotencyKeyReused { .. }
            | StoreError::Missing { .. }
            | StoreError::NotReplaced { .. }
            | StoreError::Locked(_) => C::Conflict,
            _ if self.is_transient() => C::Unavailable,
            _ => C::Internal,
        }
    }

    /// How long to wait before retrying, for a full queue.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.root() {
            StoreError::QueueFull { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Another connection held a lock (SQLITE_BUSY, SQLITE_LOCKED): the same write may
    /// succeed if tried again. The writer has already retried for a while before
    /// returning one of these.
    pub fn is_transient(&self) -> bool {
        use tokio_postgres::error::SqlState;
        match self.root() {
            StoreError::Unavailable { .. } => true,
            StoreError::Postgres(e) => {
                e.is_closed()
                    || matches!(
                        e.code(),
                        Some(&SqlState::T_R_SERIALIZATION_FAILURE)
                            | Some(&SqlState::T_R_DEADLOCK_DETECTED)
                            | Some(&SqlState::LOCK_NOT_AVAILABLE)
                    )
            }
            _ => matches!(
                self.sqlite_code(),
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
            ),
        }
    }

    /// A deadlock or serialization failure: the transaction was rolled back whole,
    /// so running it again is safe.
    pub(crate) fn is_retryable_conflict(&self) -> bool {
        use tokio_postgres::error::SqlState;
        matches!(self.root(), StoreError::Postgres(e) if matches!(
            e.code(),
            Some(&SqlState::T_R_SERIALIZATION_FAILURE) | Some(&SqlState::T_R_DEADLOCK_DETECTED)
        ))
    }

    fn pg_code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self.root() {
            StoreError::Postgres(e) => e.code(),
            _ => None,
        }
    }

    /// The disk (or the database's size limit) is full: nothing was written; the same
    /// write succeeds once space is freed.
    pub fn is_disk_full(&self) -> bool {
        match self.root() {
            StoreError::Sqlite(e) => e.sqlite_error_code() == Some(ErrorCode::DiskFull),
            StoreError::File { source, .. } => is_enospc(source),
            _ => self.pg_code() == Some(&tokio_postgres::error::SqlState::DISK_FULL),
        }
    }

    /// The database file is damaged (SQLITE_CORRUPT, SQLITE_NOTADB, or a failed sanity
    /// check at open): retrying will not help; the file must be restored or replaced.
    pub fn is_corrupt(&self) -> bool {
        use tokio_postgres::error::SqlState;
        matches!(self.root(), StoreError::Damaged { .. })
            || matches!(
                self.sqlite_code(),
                Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
            )
            || matches!(
                self.pg_code(),
                Some(&SqlState::DATA_CORRUPTED) | Some(&SqlState::INDEX_CORRUPTED)
            )
    }

    /// The operating system failed a read or write (SQLITE_IOERR, a store file operation).
    pub fn is_io(&self) -> bool {
        matches!(self.root(), StoreError::File { .. })
            || matches!(self.sqlite_code(), Some(ErrorCode::SystemIoFailure))
            || self.pg_code() == Some(&tokio_postgres::error::SqlState::IO_ERROR)
    }

    /// The error under any `Commit` wrappers.
    fn root(&self) -> &StoreError {
        match self {
            StoreError::Commit(inner) => inner.root(),
            other => other,
        }
    }

    fn sqlite_code(&self) -> Option<ErrorCode> {
        match self.root() {
            StoreError::Sqlite(e) => e.sqlite_error_code(),
            _ => None,
        }
    }

    /// An I/O error with what was being done, keeping the error itself.
    pub(crate) fn file(context: impl Into<String>, source: std::io::Error) -> StoreError {
        StoreError::File {
            context: context.into(),
            source: Arc::new(source),
        }
    }
}

fn is_enospc(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// What an operator can do about the common failures.
fn sqlite_hint(e: &rusqlite::Error) -> &'static str {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            " (another process held the store's write lock too long; retry)"
        }
        Some(ErrorCode::DiskFull) => {
            " (the disk holding the store is full: free space, then retry)"
        }
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            " (the store file is damaged: `agent-harness runtime health` names it)"
        }
        _ => "",
    }
}

fn pg_hint(e: &tokio_postgres::Error) -> &'static str {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(&SqlState::DISK_FULL) => {
            " (the database server's disk is full: free space, then retry)"
        }
        Some(&SqlState::T_R_DEADLOCK_DETECTED) | Some(&SqlState::T_R_SERIALIZATION_FAILURE) => {
            " (a conflict with another transaction; retry)"
        }
        Some(&SqlState::DATA_CORRUPTED) | Some(&SqlState::INDEX_CORRUPTED) => {
            " (the database reports damaged data: see the server's log)"
        }
        _ if e.is_closed() => " (the connection to the database was lost; retry)",
        _ => "",
    }
}

fn io_hint(e: &std::io::Error) -> &'static str {
    if is_enospc(e) {
        " (the disk is full: free space, then retry)"
    } else {
        ""
    }
}

fn decided_suffix(by: &Option<String>, at: &Option<Timestamp>) -> String {
    match (by, at) {
        (Some(by), Some(at)) => format!(" (decided by {by} at {at})"),
        (Some(by), None) => format!(" (decided by {by})"),
        _ => String::new(),
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(Arc::new(e))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Postgres(Arc::new(e))
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;
    use std::error::Error as _;

    fn sqlite(code: i32) -> StoreError {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None).into()
    }

    #[test]
    fn sqlite_errors_are_classified_by_code() {
        let busy = sqlite(rusqlite::ffi::SQLITE_BUSY);
        assert!(busy.is_transient() && !busy.is_disk_full() && !busy.is_corrupt());
        assert!(sqlite(rusqlite::ffi::SQLITE_LOCKED).is_transient());
        let full = sqlite(rusqlite::ffi::SQLITE_FULL);
        assert!(full.is_disk_full() && !full.is_transient());
        assert!(sqlite(rusqlite::ffi::SQLITE_CORRUPT).is_corrupt());
        assert!(sqlite(rusqlite::ffi::SQLITE_NOTADB).is_corrupt());
        assert!(sqlite(rusqlite::ffi::SQLITE_IOERR_WRITE).is_io());
        let constraint = sqlite(rusqlite::ffi::SQLITE_CONSTRAINT);
        assert!(
            !constraint.is_transient()
                && !constraint.is_disk_full()
                && !constraint.is_corrupt()
                && !constraint.is_io()
        );
    }

    #[test]
    fn a_failed_commit_keeps_the_cause_and_its_class() {
        let e = StoreError::Commit(Box::new(sqlite(rusqlite::ffi::SQLITE_FULL)));
        assert!(e.is_disk_full());
        assert!(
            e.to_string()
                .starts_with("commit failed, nothing was written")
        );
        assert!(e.to_string().contains("free space"), "{e}");
        // The SQLite error is reachable as a typed source.
        let source = e.source().and_then(|s| s.source()).expect("sqlite source");
        let rusqlite_error = source
            .downcast_ref::<Arc<rusqlite::Error>>()
            .expect("a rusqlite::Error");
        assert_eq!(
            rusqlite_error.sqlite_error_code(),
            Some(ErrorCode::DiskFull)
        );
    }

    #[test]
    fn a_real_busy_error_is_transient() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let a = Connection::open(&path).unwrap();
        a.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x); BEGIN IMMEDIATE")
            .unwrap();
        let b = Connection::open(&path).unwrap();
        b.busy_timeout(std::time::Duration::ZERO).unwrap();
        let e: StoreError = b.execute_batch("BEGIN IMMEDIATE").unwrap_err().into();
        assert!(e.is_transient(), "{e}");
        assert!(e.to_string().contains("retry"), "{e}");
    }

    #[test]
    fn a_full_disk_file_error_is_classified() {
        let e = StoreError::file("writing x", std::io::Error::from_raw_os_error(28));
        assert!(e.is_disk_full() && e.is_io());
    }
}
