//! The stable error code set every surface speaks: the CLI maps a code to its exit
//! code, the HTTP API to its status, and both print the code's name.

use serde::{Deserialize, Serialize};

/// What kind of failure an operation met, independent of how it is shown.
/// The names (`as_str`, the serde form) are a public contract: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// An id or name that does not exist.
    NotFound,
    /// The target exists but is in a state that refuses the operation
    /// (a request already finished, an approval already decided, a busy session).
    Conflict,
    /// The queue is at capacity; retry after the error's `retry_after`.
    QueueFull,
    /// The input is malformed or breaks a limit.
    InvalidInput,
    /// No credentials, or credentials that match no principal.
    Unauthorized,
    /// A known principal whose role does not allow the operation.
    Forbidden,
    /// A dependency (the database) cannot be reached; the same call may succeed later.
    Unavailable,
    /// Anything else: a bug or an unexpected failure.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::QueueFull,
        ErrorCode::InvalidInput,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

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

    /// The CLI's exit code (docs/cli-json.md): 2 bad input (an unknown id is bad
    /// input to a command), 3 refused by the current state, 1 anything else.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorCode::NotFound | ErrorCode::InvalidInput => 2,
            ErrorCode::Conflict
            | ErrorCode::QueueFull
            | ErrorCode::Unauthorized
            | ErrorCode::Forbidden => 3,
            ErrorCode::Unavailable | ErrorCode::Internal => 1,
        }
    }

    /// The HTTP status an API answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::QueueFull => 429,
            ErrorCode::InvalidInput => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_serde_form_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            let json = serde_json::to_value(c).unwrap();
            assert_eq!(json, c.as_str());
            assert!(seen.insert(c.as_str()));
            assert_eq!(
                serde_json::from_value::<ErrorCode>(json).unwrap(),
                c,
                "round trip"
            );
        }
    }

    #[test]
    fn statuses_and_exit_codes() {
        assert_eq!(ErrorCode::QueueFull.http_status(), 429);
        assert_eq!(ErrorCode::NotFound.http_status(), 404);
        assert_eq!(ErrorCode::NotFound.exit_code(), 2);
        assert_eq!(ErrorCode::Conflict.exit_code(), 3);
        assert_eq!(ErrorCode::Internal.exit_code(), 1);
        for c in ErrorCode::ALL {
            assert!((400..600).contains(&c.http_status()));
        }
    }
}
