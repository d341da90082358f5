//! The HTTP API: a thin view over [`harness_engine::Harness`], like the CLI.
//!
//! Routes (JSON unless said otherwise; every error is `{"code", "message"}` with the
//! engine's stable [`harness_engine::ErrorCode`]):
//! - `GET  /v1/health`                               viewer
//! - `GET  /v1/overview?recent=N`                    viewer: the overview projection
//!   ([`harness_engine::views::Overview`], what `runtime overview --json` prints)
//! - `POST /v1/sessions/{session}/requests`          operator: admit `{agent, input}`;
//!   201, or 200 (`Idempotent-Replayed: true`) with the request an `Idempotency-Key`
//!   header admitted before in the session; 409 when that key asked for other work.
//!   A W3C `traceparent` header's trace id becomes the request's `trace_id` (an
//!   invalid one is ignored and a new trace starts, as trace-context says)
//! - `GET  /v1/requests?status=&agent=&session=&since=&trace_id=&text=&limit=`  viewer
//! - `GET  /v1/requests/{id}`                        viewer
//! - `GET  /v1/requests/{id}/tree`                   viewer: the request as a tree of steps with
//!   its delegated children, approvals and artifacts ([`harness_engine::views::RequestTree`])
//! - `POST /v1/requests/{id}/cancel`                 operator: `{reason?}`
//! - `POST /v1/requests/{id}/retry`                  operator: 201 with the new request
//! - `POST /v1/requests/{id}/resume`                 operator: 202, the worker holding the
//!   workspace continues it; 409 when finished, paused for approval, or none holds it
//! - `GET  /v1/requests/{id}/artifacts`              viewer: every version's metadata
//! - `GET  /v1/artifacts/{id}`                       viewer: the bytes (`ETag`, 304)
//! - `GET  /v1/requests/{id}/export?artifact_contents=&health=`  operator: the
//!   evidence package as `.tar.gz` (at most [`MAX_EXPORT_BYTES`])
//! - `GET  /v1/sessions?limit=`                      viewer
//! - `GET  /v1/approvals?status=&session=&request=&limit=`  viewer
//! - `POST /v1/approvals/{id}/resolve`               operator: `{decision, message?, arguments?}`
//! - `GET  /v1/events?from=SEQ&request=&session=`    viewer: Server-Sent Events
//! - `GET  /metrics`                                 viewer: Prometheus text format
//! - `/console…`                                     the operator web console (HTML pages,
//!   `console/`; viewer, deciding approvals operator); `/` redirects there
//!
//! Auth: `Authorization: Bearer TOKEN` against [`Tokens`], or the console's session
//! cookie (set by `/console/login`; a request it authenticates that changes state
//! must come from this site); none configured: open.

mod auth;
mod console;
mod error;
mod events;
mod evidence;
mod metrics;

pub use auth::{AuthConfigError, Principal, Role, SERVER_FILE, Tokens};
pub use axum;
pub use error::{ApiError, status_of};
pub use evidence::{MAX_EXPORT_BYTES, Resumed, attachment};
pub use metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use harness_core::*;
use harness_engine::{Admit, ErrorCode, Harness};
use serde::Deserialize;
use std::sync::Arc;

/// The largest request body the API reads, in bytes (admission inputs are further
/// bounded by `runtime.max_input_bytes`).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub harness: Harness,
    pub tokens: Arc<Tokens>,
    /// Ends every event stream when the server stops (an SSE response never ends
    /// by itself, and a graceful shutdown waits for every response).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Event streams open now (the `agent_harness_sse_subscribers` gauge).
    pub sse_subscribers: Arc<std::sync::atomic::AtomicU64>,
    pub limits: Limits,
}

/// Bounds of what one answer holds.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The largest evidence package `GET /v1/requests/{id}/export` sends.
    pub max_export_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_export_bytes: MAX_EXPORT_BYTES,
        }
    }
}

/// The API's routes over `harness`. `shutdown` turning true ends the event streams.
pub fn router(
    harness: Harness,
    tokens: Tokens,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Router {
    router_with(harness, tokens, shutdown, Limits::default())
}

/// [`router`] with other [`Limits`].
pub fn router_with(
    harness: Harness,
    tokens: Tokens,
    shutdown: tokio::sync::watch::Receiver<bool>,
    limits: Limits,
) -> Router {
    let state = AppState {
        harness,
        tokens: Arc::new(tokens),
        shutdown,
        sse_subscribers: Arc::default(),
        limits,
    };
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/overview", get(overview))
        .route("/v1/sessions", get(list_sessions))
        .route("/v1/sessions/{session}/requests", post(admit))
        .route("/v1/requests", get(list_requests))
        .route("/v1/requests/{id}", get(get_request))
        .route("/v1/requests/{id}/tree", get(request_tree))
        .route("/v1/requests/{id}/cancel", post(cancel))
        .route("/v1/requests/{id}/retry", post(retry))
        .route("/v1/requests/{id}/resume", post(evidence::resume))
        .route("/v1/requests/{id}/artifacts", get(evidence::list))
        .route("/v1/requests/{id}/export", get(evidence::export))
        .route("/v1/artifacts/{id}", get(evidence::download))
        .route("/v1/approvals", get(list_approvals))
        .route("/v1/approvals/{id}/resolve", post(resolve))
        .route("/v1/events", get(events::events))
        .route("/metrics", get(metrics::metrics))
        .merge(console::routes())
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        if s.tokens.is_open() {
            return Ok(Principal {
                name: "anonymous".into(),
                role: Role::Admin,
            });
        }
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let token = match bearer {
            Some(t) => t,
            // The console's session: a browser sends it with every same-site request.
            None => {
                let t = console::session::cookie_token(&parts.headers).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::Unauthorized,
                        "this server needs a token: send `Authorization: Bearer TOKEN` (or log in at /console/login)",
                    )
                })?;
                console::session::same_origin(&parts.method, &parts.headers)
                    .map_err(|m| ApiError::new(ErrorCode::Forbidden, m))?;
                t
            }
        };
        s.tokens.check(token.trim()).ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "the token is not one this server knows",
            )
        })
    }
}

impl Principal {
    /// Refuses (403) a caller whose role is below `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "token `{}` has role {}; this needs {}",
                    self.name,
                    self.role.as_str(),
                    role.as_str()
                ),
            ))
        }
    }
}

pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;

async fn health(p: Principal, State(s): State<AppState>) -> ApiResult<HealthReport> {
    p.require(Role::Viewer)?;
    Ok(Json(s.harness.health().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverviewQuery {
    /// How many of the newest root requests to list (default 8, at most 100).
    recent: Option<usize>,
}

async fn overview(
    p: Principal,
    State(s): State<AppState>,
    q: Result<Query<OverviewQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<harness_engine::views::Overview> {
    p.require(Role::Viewer)?;
    let Query(q) = q?;
    let recent = match q.recent {
        None => 8,
        Some(n) if n > 100 => {
            return Err(ApiError::invalid(format!(
                "recent {n} is over the largest, 100"
            )));
        }
        Some(n) => n,
    };
    Ok(Json(s.harness.overview(recent).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdmitBody {
    agent: String,
    input: String,
    /// Claim priority, -100..=100 (default 0).
    #[serde(default)]
    priority: i64,
}

/// The header a client retries an admission with: the same key (per session)
/// returns the request it admitted.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// W3C trace-context: the caller's trace, which an admitted request joins.
pub const TRACEPARENT: &str = "traceparent";
/// Set (`true`) on an admission answered with the request an idempotency key
/// admitted before.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

async fn admit(
    p: Principal,
    State(s): State<AppState>,
    Path(session): Path<String>,
    headers: HeaderMap,
    body: Result<Json<AdmitBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    p.require(Role::Operator)?;
    let session = SessionId::parse(&session)?;
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::invalid("the Idempotency-Key header must be printable ASCII")
                })?
                .to_string(),
        ),
    };
    // Not text: invalid, which the engine ignores (a new trace), as it does any other.
    let traceparent = headers
        .get(TRACEPARENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let Json(b) = body?;
    let a = s
        .harness
        .admit(Admit {
            session: Some(session),
            agent: b.agent,
            input: b.input,
            idempotency_key: key,
            priority: b.priority,
            traceparent,
        })
        .await?;
    Ok(if a.existing {
        (
            StatusCode::OK,
            [(IDEMPOTENT_REPLAYED, "true")],
            Json(a.request),
        )
            .into_response()
    } else {
        (StatusCode::CREATED, Json(a.request)).into_response()
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RequestQuery {
    /// Comma-separated statuses.
    status: Option<String>,
    agent: Option<String>,
    session: Option<String>,
    parent: Option<String>,
    roots_only: Option<bool>,
    /// RFC 3339 instant, or milliseconds since the epoch.
    since: Option<String>,
    trace_id: Option<String>,
    text: Option<String>,
    /// Only the retries of this request.
    retry_of: Option<String>,
    order: Option<String>,
    limit: Option<usize>,
}

/// The default and largest page of a list.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

fn limit(l: Option<usize>) -> Result<usize, ApiError> {
    match l {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(ApiError::invalid("limit must be at least 1")),
        Some(n) if n > MAX_LIMIT => Err(ApiError::invalid(format!(
            "limit {n} is over the largest page, {MAX_LIMIT}"
        ))),
        Some(n) => Ok(n),
    }
}

fn statuses<T>(s: &Option<String>, parse: fn(&str) -> Option<T>) -> Result<Vec<T>, ApiError> {
    let Some(s) = s else { return Ok(Vec::new()) };
    s.split(',')
        .map(|x| parse(x.trim()).ok_or_else(|| ApiError::invalid(format!("unknown status `{x}`"))))
        .collect()
}

fn instant(s: &str) -> Result<Timestamp, ApiError> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(Timestamp(ms));
    }
    ::time::OffsetDateTime::parse(s, &::time::format_description::well_known::Rfc3339)
        .map(|t| Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64))
        .map_err(|_| {
            ApiError::invalid(format!(
                "since `{s}` is neither an RFC 3339 instant nor milliseconds since the epoch"
            ))
        })
}

async fn list_requests(
    p: Principal,
    State(s): State<AppState>,
    q: Result<Query<RequestQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Vec<Request>> {
    p.require(Role::Viewer)?;
    let Query(q) = q?;
    let f = RequestFilter {
        statuses: statuses(&q.status, RequestStatus::parse)?,
        session_id: q.session.as_deref().map(SessionId::parse).transpose()?,
        agent: q.agent,
        parent_id: q.parent.as_deref().map(RequestId::parse).transpose()?,
        roots_only: q.roots_only.unwrap_or(false),
        since: q.since.as_deref().map(instant).transpose()?,
        trace_id: q.trace_id,
        text: q.text,
        retry_of: q.retry_of.as_deref().map(RequestId::parse).transpose()?,
        order: match q.order.as_deref() {
            None => RequestOrder::default(),
            Some(o) => o.parse().map_err(|e: String| ApiError::invalid(e))?,
        },
        limit: limit(q.limit)?,
    };
    Ok(Json(s.harness.list_requests(f).await?))
}

async fn get_request(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Request> {
    p.require(Role::Viewer)?;
    let id = RequestId::parse(&id)?;
    Ok(Json(s.harness.get_request(&id).await?))
}

async fn request_tree(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<harness_engine::views::RequestTree> {
    p.require(Role::Viewer)?;
    let id = RequestId::parse(&id)?;
    Ok(Json(s.harness.request_tree(&id).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: Option<String>,
}

async fn cancel(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Option<Json<CancelBody>>,
) -> ApiResult<Request> {
    p.require(Role::Operator)?;
    let id = RequestId::parse(&id)?;
    let b = body.map(|Json(b)| b).unwrap_or_default();
    Ok(Json(
        s.harness.cancel(&id, &p.name, b.reason.as_deref()).await?,
    ))
}

/// Admits a new request running a finished one again (`retry_of` links them).
async fn retry(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Request>), ApiError> {
    p.require(Role::Operator)?;
    let id = RequestId::parse(&id)?;
    Ok((StatusCode::CREATED, Json(s.harness.retry(&id).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    limit: Option<usize>,
}

async fn list_sessions(
    p: Principal,
    State(s): State<AppState>,
    q: Result<Query<LimitQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Vec<Session>> {
    p.require(Role::Viewer)?;
    let Query(q) = q?;
    Ok(Json(s.harness.list_sessions(limit(q.limit)?).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalQuery {
    status: Option<String>,
    session: Option<String>,
    request: Option<String>,
    limit: Option<usize>,
}

async fn list_approvals(
    p: Principal,
    State(s): State<AppState>,
    q: Result<Query<ApprovalQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Vec<Approval>> {
    p.require(Role::Viewer)?;
    let Query(q) = q?;
    let f = ApprovalFilter {
        statuses: statuses(&q.status, ApprovalStatus::parse)?,
        session_id: q.session.as_deref().map(SessionId::parse).transpose()?,
        request_id: q.request.as_deref().map(RequestId::parse).transpose()?,
        limit: limit(q.limit)?,
    };
    Ok(Json(s.harness.list_approvals(f).await?))
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum DecisionBody {
    Approve,
    Reject,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    decision: DecisionBody,
    message: Option<String>,
    /// Approve with these arguments instead of the model's (checked against the
    /// tool's schema).
    arguments: Option<serde_json::Value>,
}

async fn resolve(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<ResolveBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Approval> {
    p.require(Role::Operator)?;
    let id = ApprovalId::parse(&id)?;
    let Json(b) = body?;
    if b.arguments.is_some() && matches!(b.decision, DecisionBody::Reject) {
        return Err(ApiError::invalid(
            "`arguments` edits what an approval runs: give them only with `\"decision\": \"approve\"`",
        ));
    }
    let a = s
        .harness
        .store()
        .get_approval(&id)
        .await
        .map_err(harness_engine::HarnessError::from)?;
    let r = ResolveApproval {
        session_id: a.session_id,
        request_id: a.request_id,
        approval_id: id,
        decision: match b.decision {
            DecisionBody::Approve => Decision::Approved,
            DecisionBody::Reject => Decision::Rejected,
        },
        message: b.message,
        decided_by: p.name,
        edited_arguments: b.arguments,
    };
    Ok(Json(s.harness.resolve_approval(r).await?))
}
