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

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!(" (known agents: {})", known.join(", "))
    }
}
