//! Prefixed, time-sortable identifiers (`req_…`, `apr_…`), so that logs, errors
//! and CLI output explain themselves.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An identifier that failed validation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("{kind} id `{value}` must start with `{prefix}`")]
    Prefix {
        kind: &'static str,
        value: String,
        prefix: &'static str,
    },
    #[error(
        "session id `{0}` must be 1-128 characters of letters, digits, `.`, `_`, `-`, and not `.` or `..`"
    )]
    Session(String),
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;
            /// A new id, sortable by creation time.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, ulid::Ulid::new().to_string().to_ascii_lowercase()))
            }
            /// Parses an id given by a user or read back from storage.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                if s.starts_with($prefix) && s.len() > $prefix.len() && s.len() <= 64 {
                    Ok(Self(s.to_string()))
                } else {
                    Err(IdError::Prefix { kind: $kind, value: s.to_string(), prefix: $prefix })
                }
            }
            /// Wraps a value known to be valid (read from our own store).
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
    };
}

prefixed_id!(
    /// One admitted unit of work: an input to an agent in a session.
    RequestId, "req_", "request");
prefixed_id!(
    /// One operator decision awaited by a paused tool call.
    ApprovalId, "apr_", "approval");
prefixed_id!(
    /// One stored file produced by a request.
    ArtifactId, "art_", "artifact");
prefixed_id!(
    /// One tool call proposed by a model turn; stable across retries so external
    /// systems can de-duplicate (exported to command tools as `AGENT_HARNESS_CALL_ID`).
    CallId, "call_", "call");
prefixed_id!(
    /// One worker process.
    WorkerId, "wrk_", "worker");

/// A conversation thread. Chosen by the caller (`--session support-42`) or generated.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    pub fn generate() -> Self {
        Self(format!(
            "ses_{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        ))
    }
    pub fn parse(s: &str) -> Result<Self, IdError> {
        // A session id names its work folder (`work/<session>/`): never `.` or `..`.
        let ok = !s.is_empty()
            && s.len() <= 128
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(IdError::Session(s.to_string()))
        }
    }
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_carry_prefix_and_sort_by_time() {
        let a = RequestId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = RequestId::generate();
        assert!(a.as_str().starts_with("req_"));
        assert!(a < b);
        assert_eq!(RequestId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn wrong_prefix_is_named() {
        let err = RequestId::parse("apr_123").unwrap_err();
        assert_eq!(
            err.to_string(),
            "request id `apr_123` must start with `req_`"
        );
    }

    #[test]
    fn session_ids_are_restricted() {
        assert!(SessionId::parse("session-123").is_ok());
        assert!(SessionId::parse("../etc").is_err());
        // They name work folders: the folder itself or its parent are refused.
        assert!(SessionId::parse(".").is_err());
        assert!(SessionId::parse("..").is_err());
        assert!(SessionId::parse("...").is_ok());
        assert!(SessionId::parse("").is_err());
    }
}
