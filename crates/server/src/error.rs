//! Every error the API answers: a JSON body `{"code": …, "message": …}` with the
//! engine's stable code, its HTTP status, `Retry-After` when the queue is full, and
//! on a 401 the bearer challenge [`WWW_AUTHENTICATE`] (RFC 6750).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use harness_engine::{ErrorCode, HarnessError};
use std::time::Duration;

/// The challenge every 401 carries in `WWW-Authenticate`: send a bearer token
/// (RFC 6750; RFC 9110 requires a challenge on every 401).
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"agent-harness\"";

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
}

/// The HTTP status of a stable error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::QueueFull => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: status_of(code),
            code: code.as_str(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }

    /// An error answered with `status`, under the stable code that status stands
    /// for (`invalid_input` for any other 4xx, `internal` for any other status).
    pub fn with_status(status: StatusCode, message: impl Into<String>) -> Self {
        let code = ErrorCode::ALL
            .into_iter()
            .find(|c| status_of(*c) == status)
            .unwrap_or(if status.is_client_error() {
                ErrorCode::InvalidInput
            } else {
                ErrorCode::Internal
            });
        Self {
            status,
            ..Self::new(code, message)
        }
    }

    /// A body over the size limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            ..Self::invalid(message)
        }
    }
}

impl From<HarnessError> for ApiError {
    fn from(e: HarnessError) -> Self {
        let code = e.code();
        let mut a = ApiError::new(code, e.to_string());
        if code == ErrorCode::Internal {
            tracing::error!(error = %e, "request failed");
        }
        if let HarnessError::InputTooLarge { .. } = e {
            a.status = StatusCode::PAYLOAD_TOO_LARGE;
        }
        a.retry_after = e.retry_after();
        a
    }
}

impl From<harness_core::IdError> for ApiError {
    fn from(e: harness_core::IdError) -> Self {
        ApiError::invalid(e.to_string())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        let status = r.status();
        let message = r.body_text();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(message)
        } else {
            ApiError {
                status,
                ..ApiError::invalid(message)
            }
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::invalid(r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"code": self.code, "message": self.message});
        let mut res = (self.status, axum::Json(body)).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(WWW_AUTHENTICATE),
            );
        }
        res
    }
}
