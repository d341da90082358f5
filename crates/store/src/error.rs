//! Store errors: each says what happened, to which id, and what the user can do.

use harness_core::{ApprovalStatus, RequestStatus, Timestamp};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(String),
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("the store is closed")]
    Closed,
    #[error("{0}")]
    Io(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
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
        StoreError::Sqlite(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}
