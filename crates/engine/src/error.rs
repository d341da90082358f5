//! Engine errors, mapped by the CLI to documented exit codes.

use harness_store::StoreError;

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

impl HarnessError {
    /// The stable error code of this error.
    pub fn code(&self) -> harness_core::ErrorCode {
        use harness_core::ErrorCode as C;
        match self {
            HarnessError::Store(s) => s.code(),
            HarnessError::Config(_)
            | HarnessError::InputTooLarge { .. }
            | HarnessError::InvalidInput(_)
            | HarnessError::InvalidArguments { .. } => C::InvalidInput,
            // The agent is named in the request path or body: bad input, listing the known ones.
            HarnessError::UnknownAgent { .. } => C::InvalidInput,
            HarnessError::Locked(_) => C::Conflict,
            HarnessError::Model(_) | HarnessError::Io(_) => C::Internal,
        }
    }

    /// How long to wait before retrying (a full queue).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            HarnessError::Store(s) => s.retry_after(),
            _ => None,
        }
    }
}

/// The stable error code of any error: the first [`HarnessError`], [`StoreError`]
/// or id error in its chain decides; anything else is `internal`.
pub fn error_code(e: &(dyn std::error::Error + 'static)) -> harness_core::ErrorCode {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<HarnessError>() {
            return h.code();
        }
        if let Some(s) = err.downcast_ref::<StoreError>() {
            return s.code();
        }
        if err.downcast_ref::<harness_core::IdError>().is_some() {
            return harness_core::ErrorCode::InvalidInput;
        }
        cur = err.source();
    }
    harness_core::ErrorCode::Internal
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!(" (known agents: {})", known.join(", "))
    }
}
