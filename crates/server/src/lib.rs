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
//!   A W3C `traceparent` header's trace id becomes the request's `trace_id` and the
//!   header is kept as its `traceparent` (an invalid one is ignored and a new trace
//!   starts, as trace-context says)
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
//! - `GET  /openapi.json`                            no token: this API's OpenAPI 3.1
//!   document, generated from the handlers' annotations ([`spec`])
//! - `GET  /docs`                                    no token: the same document as an
//!   HTML reference page
//! - `/mcp`                                          viewer: MCP over streamable HTTP
//!   ([`mcp`]): the reading tools; `resolve_approval` for operators; at most
//!   [`Limits::max_mcp_sessions`] sessions, its refusals the same JSON error bodies
//! - `/console…`                                     the operator web console (HTML pages,
//!   `console/`; viewer, deciding approvals operator); `/` redirects there
//!
//! Auth: `Authorization: Bearer TOKEN` against [`Tokens`], or the console's session
//! cookie (set by `/console/login`; a request it authenticates that changes state
//! must come from this site); none configured: open. A 401 carries
//! `WWW-Authenticate: Bearer realm="agent-harness"` ([`WWW_AUTHENTICATE`]).

mod auth;
mod console;
mod error;
mod events;
mod evidence;
pub mod mcp;
mod metrics;
mod openapi;

pub use auth::{AuthConfigError, Principal, Role, SERVER_FILE, Tokens};
pub use axum;
pub use error::{ApiError, WWW_AUTHENTICATE, status_of};
pub use evidence::{MAX_EXPORT_BYTES, Resumed, attachment};
pub use metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
pub use openapi::{ErrorBody, spec};

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

/// Bounds of what the server holds or sends.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The largest evidence package `GET /v1/requests/{id}/export` sends.
    pub max_export_bytes: u64,
    /// The most MCP sessions `/mcp` holds at once ([`mcp::MAX_SESSIONS`]); past
    /// it a new `initialize` is answered 503 `unavailable` with `Retry-After`.
    pub max_mcp_sessions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_export_bytes: MAX_EXPORT_BYTES,
            max_mcp_sessions: mcp::MAX_SESSIONS,
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
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/docs", get(openapi::docs))
        .merge(console::routes())
        .merge(mcp::routes(&state))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A known route called with a method it does not take: 405 (axum adds `Allow`)
/// with the API's JSON error body.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}", uri.path()),
    )
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
    /// Who this caller is in the records: its token's name, or `anonymous` of a
    /// server running open.
    pub fn actor(&self, tokens: &Tokens) -> Actor {
        let kind = if tokens.is_open() {
            ActorKind::Open
        } else {
            ActorKind::Token
        };
        Actor::new(kind, self.name.clone())
    }

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

#[utoipa::path(get, path = "/v1/health", tag = "health",
    description = "Role: viewer. The store's and the worker's health checks; `status` is the worst of them.",
    responses((status = 200, description = "The health report", body = HealthReport)))]
async fn health(p: Principal, State(s): State<AppState>) -> ApiResult<HealthReport> {
    p.require(Role::Viewer)?;
    Ok(Json(s.harness.health().await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct OverviewQuery {
    /// How many of the newest root requests to list (default 8, at most 100).
    recent: Option<usize>,
}

#[utoipa::path(get, path = "/v1/overview", tag = "health",
    description = "Role: viewer. The overview `runtime overview --json` prints: workers, \
        health problems, queue, pending approvals, stuck requests, limits, rate limits, \
        recent requests and the last activity (`harness_engine::views::Overview`).",
    params(OverviewQuery),
    responses(
        (status = 200, description = "The overview", body = harness_engine::views::Overview),
        (status = 400, description = "`recent` over 100, or an unknown parameter", body = ErrorBody),
    ))]
async fn overview(
    p: Principal,
    State(s): State<AppState>,
    q: Result<Query<OverviewQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<harness_engine::views::Overview> {
    p.require(Role::Viewer)?;
    let Query(q) = q?;
    use harness_engine::views::overview::{DEFAULT_RECENT, MAX_RECENT};
    let recent = match q.recent {
        None => DEFAULT_RECENT,
        Some(n) if n > MAX_RECENT => {
            return Err(ApiError::invalid(format!(
                "recent {n} is over the largest, {MAX_RECENT}"
            )));
        }
        Some(n) => n,
    };
    Ok(Json(s.harness.overview(recent).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AdmitBody {
    /// The agent to run (one of the workspace's).
    agent: String,
    /// The input given to the agent (at most `runtime.max_input_bytes`).
    input: String,
    /// Claim priority, -100..=100 (default 0).
    #[serde(default)]
    #[schema(minimum = -100, maximum = 100)]
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

#[utoipa::path(post, path = "/v1/sessions/{session}/requests", tag = "requests",
    description = "Role: operator. Admits a request into the session's queue. An \
        `Idempotency-Key` header makes a retry safe: the same key in the session answers \
        200 with the request it admitted (`Idempotent-Replayed: true`), or 409 when it \
        asked for another agent or input. A W3C `traceparent` header's trace id becomes \
        the request's `trace_id`, and the header is kept as its `traceparent` (the \
        caller's span is the parent of the request's spans).",
    params(
        ("session" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$", description = "The session: 1-128 letters, digits, `.`, `_`, `-` (created on first use)"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retry key, unique per session"),
        ("traceparent" = Option<String>, Header, description = "W3C trace-context of the caller's trace"),
    ),
    request_body = AdmitBody,
    responses(
        (status = 201, description = "Admitted", body = Request),
        (status = 200, description = "The request this idempotency key admitted before",
            body = Request, headers(("Idempotent-Replayed" = String, description = "`true`"))),
        (status = 400, description = "Bad session id, agent, input or priority; malformed JSON", body = ErrorBody),
        (status = 409, description = "The idempotency key admitted other work", body = ErrorBody),
        (status = 413, description = "The body or input is over its limit", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "The JSON does not have the body's shape", body = ErrorBody),
        (status = 429, description = "The queue is full", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
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

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RequestQuery {
    /// Comma-separated statuses.
    status: Option<String>,
    /// Only requests of this agent.
    agent: Option<String>,
    /// Only requests of this session.
    session: Option<String>,
    /// Only the children this request delegated to.
    parent: Option<String>,
    /// Only requests admitted directly (not delegated children).
    roots_only: Option<bool>,
    /// RFC 3339 instant, or milliseconds since the epoch.
    since: Option<String>,
    trace_id: Option<String>,
    text: Option<String>,
    /// Only the retries of this request.
    retry_of: Option<String>,
    /// `newest` (default), `oldest` or `activity`.
    order: Option<String>,
    /// At most this many (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
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

#[utoipa::path(get, path = "/v1/requests", tag = "requests",
    description = "Role: viewer. Requests, filtered; every filter narrows.",
    params(RequestQuery),
    responses(
        (status = 200, description = "The requests, in `order`", body = Vec<Request>),
        (status = 400, description = "An unknown status or order, a bad id, instant or limit", body = ErrorBody),
    ))]
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

#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests",
    description = "Role: viewer. One request.",
    params(("id" = String, Path, pattern = "^req_[0-9a-z]{1,60}$", description = "A request id (`req_…`)")),
    responses(
        (status = 200, description = "The request", body = Request),
        (status = 400, description = "Not a request id", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
    ))]
async fn get_request(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Request> {
    p.require(Role::Viewer)?;
    let id = RequestId::parse(&id)?;
    Ok(Json(s.harness.get_request(&id).await?))
}

#[utoipa::path(get, path = "/v1/requests/{id}/tree", tag = "requests",
    description = "Role: viewer. The request as a tree: its steps, each delegated child's \
        own tree under the step that delegated, approvals and artifacts in place, token \
        usage, retries and what it waits for (`harness_engine::views::RequestTree`, what \
        `runtime requests show --json` prints; a step's body is not itemised).",
    params(("id" = String, Path, pattern = "^req_[0-9a-z]{1,60}$", description = "A request id (`req_…`)")),
    responses(
        (status = 200, description = "The request tree", body = harness_engine::views::RequestTree),
        (status = 400, description = "Not a request id", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
    ))]
async fn request_tree(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<harness_engine::views::RequestTree> {
    p.require(Role::Viewer)?;
    let id = RequestId::parse(&id)?;
    Ok(Json(s.harness.request_tree(&id).await?))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    /// Recorded with the cancellation.
    reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/requests/{id}/cancel", tag = "requests",
    description = "Role: operator. Cancels a request and its delegated children; the \
        token's name is recorded as who cancelled. The body is optional.",
    params(("id" = String, Path, pattern = "^req_[0-9a-z]{1,60}$", description = "A request id (`req_…`)")),
    request_body(content = Option<CancelBody>, description = "Optional: why"),
    responses(
        (status = 200, description = "The request as it is now", body = Request),
        (status = 400, description = "Not a request id; malformed JSON", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 409, description = "The request is finished", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 422, description = "The JSON does not have the body's shape", body = ErrorBody),
    ))]
async fn cancel(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Option<Json<CancelBody>>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Request> {
    p.require(Role::Operator)?;
    let id = RequestId::parse(&id)?;
    let b = body?.map(|Json(b)| b).unwrap_or_default();
    Ok(Json(
        s.harness
            .cancel(&id, &p.actor(&s.tokens), b.reason.as_deref())
            .await?,
    ))
}

/// Admits a new request running a finished one again (`retry_of` links them).
#[utoipa::path(post, path = "/v1/requests/{id}/retry", tag = "requests",
    description = "Role: operator. Admits a new request running a finished one again \
        (its `retry_of` names the original).",
    params(("id" = String, Path, pattern = "^req_[0-9a-z]{1,60}$", description = "A request id (`req_…`)")),
    responses(
        (status = 201, description = "The new request", body = Request),
        (status = 400, description = "Not a request id", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 409, description = "The request is not finished, or is a delegated child", body = ErrorBody),
        (status = 429, description = "The queue is full", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
async fn retry(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Request>), ApiError> {
    p.require(Role::Operator)?;
    let id = RequestId::parse(&id)?;
    Ok((StatusCode::CREATED, Json(s.harness.retry(&id).await?)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    /// At most this many (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/sessions", tag = "sessions",
    description = "Role: viewer. Sessions, most recently active first.",
    params(LimitQuery),
    responses(
        (status = 200, description = "The sessions", body = Vec<Session>),
        (status = 400, description = "A bad limit", body = ErrorBody),
    ))]
async fn list_sessions(
    p: Principal,
    State(s): State<AppState>,
    q: Result<Query<LimitQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Vec<Session>> {
    p.require(Role::Viewer)?;
    let Query(q) = q?;
    Ok(Json(s.harness.list_sessions(limit(q.limit)?).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ApprovalQuery {
    /// Comma-separated statuses.
    status: Option<String>,
    /// Only approvals of this session.
    session: Option<String>,
    /// Only approvals of this request.
    request: Option<String>,
    /// At most this many (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/approvals", tag = "approvals",
    description = "Role: viewer. Approvals, filtered; every filter narrows.",
    params(ApprovalQuery),
    responses(
        (status = 200, description = "The approvals", body = Vec<Approval>),
        (status = 400, description = "An unknown status, a bad id or limit", body = ErrorBody),
    ))]
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

#[derive(Deserialize, Clone, Copy, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum DecisionBody {
    Approve,
    Reject,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    decision: DecisionBody,
    /// Recorded with the decision (and shown to the model on a rejection).
    message: Option<String>,
    /// Approve with these arguments instead of the model's (checked against the
    /// tool's schema).
    arguments: Option<serde_json::Value>,
}

#[utoipa::path(post, path = "/v1/approvals/{id}/resolve", tag = "approvals",
    description = "Role: operator. Approves or rejects a pending approval; the token's \
        name is recorded as who decided. `arguments` (with `approve` only) replace the \
        model's, checked against the tool's schema.",
    params(("id" = String, Path, pattern = "^apr_[0-9a-z]{1,60}$", description = "An approval id (`apr_…`)")),
    request_body = ResolveBody,
    responses(
        (status = 200, description = "The approval as decided", body = Approval),
        (status = 400, description = "Not an approval id; arguments with a rejection or not matching the tool's schema; malformed JSON", body = ErrorBody),
        (status = 404, description = "No such approval", body = ErrorBody),
        (status = 409, description = "The approval is already decided or expired", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "The JSON does not have the body's shape", body = ErrorBody),
    ))]
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
        decided_by: p.actor(&s.tokens),
        edited_arguments: b.arguments,
    };
    Ok(Json(s.harness.resolve_approval(r).await?))
}
