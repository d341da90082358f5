//! Engine errors, and the one stable set of error codes every surface maps them to
//! (the CLI's exit codes, the HTTP API's statuses and JSON bodies).

use harness_store::StoreError;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{0}")]
    Config(#[from] harness_config::ConfigErrors),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unknown agent `{name}`{}", known_list(.known))]
    UnknownAgent { name: String, known: Vec<String> },
    #[error("input is {bytes} bytes; the limit is {limit} (runtime.max_input_bytes)")]
    InputTooLarge { bytes: usize, limit: usize },
    /// Bad input to an operation (e.g. an empty request input).
    #[error("{0}")]
    InvalidInput(String),
    #[error("invalid arguments for `{tool}`: {reason}")]
    InvalidArguments { tool: String, reason: String },
    #[error("{0}")]
    Model(String),
    #[error("{0}")]
    Locked(String),
    #[error("{0}")]
    Io(String),
}

/// What kind of failure an error is, stable across versions: the CLI's exit codes
/// and the HTTP API's statuses and `code` fields are derived from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// An id that names no record (or no store at all).
    NotFound,
    /// The record is not in a state that allows the action (an approval already
    /// decided, a finished request, a busy session, a workspace held by a worker).
    Conflict,
    /// The queue is at capacity: try again after [`ErrorClass::retry_after`].
    QueueFull,
    /// The caller's input is wrong (unknown agent, bad id, empty or too large input,
    /// arguments that fail the tool's schema).
    InvalidInput,
    /// No credentials, or unknown ones.
    Unauthorized,
    /// Credentials whose role does not allow the action.
    Forbidden,
    /// The store cannot be reached or is damaged; trying later may help.
    Unavailable,
    /// Anything else: a bug or an unexpected failure.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::QueueFull => "queue_full",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error's stable code, and when to retry if the refusal is temporary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorClass {
    pub code: ErrorCode,
    pub retry_after: Option<Duration>,
}

impl ErrorClass {
    fn of(code: ErrorCode) -> Self {
        Self {
            code,
            retry_after: None,
        }
    }
}

/// The class of a store error.
pub fn classify_store(e: &StoreError) -> ErrorClass {
    use ErrorCode::*;
    match e {
        StoreError::NotFound { .. } | StoreError::NoStore { .. } => ErrorClass::of(NotFound),
        // A session/request pair that does not match the approval is bad input.
        StoreError::ApprovalMismatch { .. } | StoreError::Artifact(_) => {
            ErrorClass::of(InvalidInput)
        }
        StoreError::QueueFull { retry_after, .. } => ErrorClass {
            code: QueueFull,
            retry_after: Some(*retry_after),
        },
        StoreError::ApprovalNotPending { .. }
        | StoreError::ApprovalExpired { .. }
        | StoreError::WrongState { .. }
        | StoreError::SessionBusy { .. }
        | StoreError::NotReplaced { .. }
        | StoreError::Locked(_)
        // Gone where a store existed: refused until an operator restores it or asks
        // for a new one.
        | StoreError::Missing { .. } => ErrorClass::of(Conflict),
        StoreError::Damaged { .. } => ErrorClass::of(Unavailable),
        e if e.is_transient() => ErrorClass::of(Unavailable),
        _ => ErrorClass::of(Internal),
    }
}

impl HarnessError {
    /// This error's stable class.
    pub fn class(&self) -> ErrorClass {
        use ErrorCode::*;
        match self {
            HarnessError::Store(s) => classify_store(s),
            HarnessError::Config(_)
            | HarnessError::UnknownAgent { .. }
            | HarnessError::InputTooLarge { .. }
            | HarnessError::InvalidInput(_)
            | HarnessError::InvalidArguments { .. } => ErrorClass::of(InvalidInput),
            HarnessError::Locked(_) => ErrorClass::of(Conflict),
            HarnessError::Model(_) | HarnessError::Io(_) => ErrorClass::of(Internal),
        }
    }
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!(" (known agents: {})", known.join(", "))
    }
}
