//! The runtime's inspection and control as MCP tools, a thin view like the CLI's and
//! the API's (the same records, the same JSON), with rmcp's server side. Tools:
//! `list_requests`, `get_request` (its tree, with where it stopped and what to do
//! next: [`harness_engine::views::doctor`]), `list_pending_approvals`, `health`, and
//! `resolve_approval` for callers who may decide. A failed call is a tool error
//! carrying the stable error code first (`not_found: …`, `forbidden: …`), not a
//! protocol error.
//!
//! Two transports serve the same [`McpServer`]: `agent-harness mcp` on stdio (one
//! caller, [`McpServer::stdio`]) and streamable HTTP at `/mcp` of the API
//! ([`routes`]), where every HTTP request is authenticated as the REST API's are and
//! its token's role decides: a viewer is offered the reading tools only and is
//! refused `resolve_approval` (`forbidden`); an operator or admin resolves, recorded
//! as the REST API records it (`Actor { kind: token, name: TOKEN NAME }`, or `open`,
//! `anonymous` on a server without tokens). Every HTTP refusal at `/mcp` (ours and
//! rmcp's: 401, 403, 404, 405, 406, 413, 415, 400, 503) is the REST API's JSON error
//! body with a stable code ([`json_errors`]), and live sessions are bounded
//! ([`MAX_SESSIONS`], [`BoundedSessions`]).

use crate::{ApiError, AppState, MAX_BODY_BYTES, Principal, Role, Tokens};
use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderName, header};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use harness_core::*;
use harness_engine::{ErrorCode, Harness};
use rmcp::ServerHandler;
use rmcp::model::*;
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::{
    EventStore, ServerSseMessage, SessionId as McpSessionId, SessionManager,
};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

/// The path the API serves MCP at.
pub const MCP_PATH: &str = "/mcp";

/// The largest page `list_requests` returns.
const MAX_LIST: u64 = 500;

/// The MCP tools over one [`Harness`], for one kind of caller.
#[derive(Clone)]
pub struct McpServer {
    h: Harness,
    caller: Caller,
}

#[derive(Clone)]
enum Caller {
    /// One caller for the whole connection (stdio): decisions are recorded as
    /// `actor`; `read_only` offers no `resolve_approval`.
    Fixed { actor: Actor, read_only: bool },
    /// Each HTTP request's [`Principal`], put in its extensions by [`authenticate`].
    Http { tokens: Arc<Tokens> },
}

/// Whether the caller of one MCP request may resolve approvals.
enum May {
    Resolve(Actor),
    /// Not offered at all (`--read-only`).
    NotOffered,
    /// Offered to others, refused to this caller: why.
    Refused(String),
}

impl McpServer {
    /// The stdio server: one caller, whose decisions are recorded as `actor`.
    pub fn stdio(h: Harness, actor: Actor, read_only: bool) -> Self {
        McpServer {
            h,
            caller: Caller::Fixed { actor, read_only },
        }
    }

    fn may(&self, ctx: &RequestContext<RoleServer>) -> May {
        match &self.caller {
            Caller::Fixed {
                read_only: true, ..
            } => May::NotOffered,
            Caller::Fixed { actor, .. } => May::Resolve(actor.clone()),
            Caller::Http { tokens } => {
                let principal = ctx
                    .extensions
                    .get::<axum::http::request::Parts>()
                    .and_then(|p| p.extensions.get::<Principal>());
                match principal {
                    Some(p) => match p.require(Role::Operator) {
                        Ok(()) => May::Resolve(p.actor(tokens)),
                        Err(e) => May::Refused(e.message),
                    },
                    // The auth layer puts a principal on every request it lets through.
                    None => May::Refused("the caller is not authenticated".into()),
                }
            }
        }
    }
}

/// A failed call: a stable code and a message.
struct ToolError {
    code: ErrorCode,
    message: String,
}

impl ToolError {
    fn invalid(message: impl Into<String>) -> Self {
        ToolError {
            code: ErrorCode::InvalidInput,
            message: message.into(),
        }
    }
}

impl<E: std::error::Error + 'static> From<E> for ToolError {
    fn from(e: E) -> Self {
        // The error and its causes joined with `: `, skipping a cause whose text the
        // message already holds (as the CLI prints an error).
        let mut message = String::new();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = cur {
            let text = err.to_string();
            if !message.contains(&text) {
                if !message.is_empty() {
                    message.push_str(": ");
                }
                message.push_str(&text);
            }
            cur = err.source();
        }
        ToolError {
            code: harness_engine::error_code(&e),
            message,
        }
    }
}

/// A call's answer: pretty JSON.
type Answer = Result<String, ToolError>;

fn pretty(v: &impl serde::Serialize) -> Answer {
    Ok(serde_json::to_string_pretty(v)?)
}

fn tool(name: &'static str, description: &'static str, schema: Value) -> Tool {
    let Value::Object(schema) = schema else {
        unreachable!("schemas are objects")
    };
    Tool::new(name, description, Arc::new(schema))
}

/// The tools offered: the reading ones, and `resolve_approval` when `resolve`.
fn tools(resolve: bool) -> Vec<Tool> {
    let mut all = vec![
        tool(
            "list_requests",
            "Root requests, newest first (like `runtime requests list --json`).",
            json!({"type": "object", "properties": {
                "status": {"type": "string", "enum": RequestStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>()},
                "agent": {"type": "string"},
                "session": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIST}
            }, "additionalProperties": false}),
        ),
        tool(
            "get_request",
            "One request with its steps, approvals, artifacts and delegated children, and where it stopped with the next action (like `runtime doctor ID --json`).",
            json!({"type": "object", "properties": {"id": {"type": "string", "description": "A request id, or a unique prefix of one."}},
                   "required": ["id"], "additionalProperties": false}),
        ),
        tool(
            "list_pending_approvals",
            "Approvals waiting for a decision, oldest first, with the tool, arguments and reason.",
            json!({"type": "object", "additionalProperties": false}),
        ),
        tool(
            "health",
            "The runtime's health checks (like `runtime health --json`).",
            json!({"type": "object", "additionalProperties": false}),
        ),
    ];
    if resolve {
        all.push(tool(
            "resolve_approval",
            "Approve or reject a pending approval; the worker then continues the request by itself.",
            json!({"type": "object", "properties": {
                "approval_id": {"type": "string"},
                "decision": {"type": "string", "enum": ["approve", "reject"]},
                "message": {"type": "string"},
                "arguments": {"type": "object", "description": "Edited arguments to run the call with (approve only)."}
            }, "required": ["approval_id", "decision"], "additionalProperties": false}),
        ));
    }
    all
}

/// A failed call, with the stable error code first.
fn failed(e: ToolError) -> CallToolResponse {
    let text = format!("{}: {}", e.code.as_str(), e.message);
    CallToolResult::error(vec![ContentBlock::text(text)]).into()
}

fn arg<'a>(args: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    args.get(key).and_then(Value::as_str)
}

impl McpServer {
    async fn call(&self, name: &str, args: serde_json::Map<String, Value>, may: May) -> Answer {
        let h = &self.h;
        match name {
            "list_requests" => {
                let statuses = match arg(&args, "status") {
                    Some(s) => vec![
                        s.parse::<RequestStatus>()
                            .map_err(|e| ToolError::invalid(e.to_string()))?,
                    ],
                    None => vec![],
                };
                let session_id = arg(&args, "session").map(SessionId::parse).transpose()?;
                let limit = args
                    .get("limit")
                    .and_then(Value::as_u64)
                    .unwrap_or(20)
                    .clamp(1, MAX_LIST);
                let requests = h
                    .list_requests(RequestFilter {
                        statuses,
                        session_id,
                        agent: arg(&args, "agent").map(str::to_string),
                        roots_only: true,
                        limit: limit as usize,
                        ..Default::default()
                    })
                    .await?;
                pretty(&json!({ "requests": requests }))
            }
            "get_request" => {
                let id = arg(&args, "id").ok_or_else(|| ToolError::invalid("`id` is required"))?;
                let id = h.find_request_id(id).await?;
                let t = h.request_tree(&id).await?;
                let alive = h.worker_holder().await?.is_some();
                let d = harness_engine::views::diagnose(
                    &t,
                    alive,
                    h.now(),
                    h.workspace().settings.runtime.stuck_after,
                );
                pretty(
                    &json!({ "tree": t, "stop": d.stop, "next": d.next, "needs_human": d.needs_human }),
                )
            }
            "list_pending_approvals" => {
                let mut pending = h
                    .list_approvals(ApprovalFilter {
                        statuses: vec![ApprovalStatus::Pending],
                        ..Default::default()
                    })
                    .await?;
                pending.reverse();
                pretty(&json!({ "approvals": pending }))
            }
            "health" => pretty(&h.health().await?),
            "resolve_approval" => match may {
                May::Resolve(actor) => self.resolve(args, actor).await,
                May::Refused(why) => Err(ToolError {
                    code: ErrorCode::Forbidden,
                    message: why,
                }),
                May::NotOffered => Err(ToolError::invalid("no tool `resolve_approval`")),
            },
            other => Err(ToolError::invalid(format!("no tool `{other}`"))),
        }
    }

    async fn resolve(&self, args: serde_json::Map<String, Value>, actor: Actor) -> Answer {
        let h = &self.h;
        let id = arg(&args, "approval_id")
            .ok_or_else(|| ToolError::invalid("`approval_id` is required"))?;
        let id = h.find_approval_id(id).await?;
        let decision = match arg(&args, "decision") {
            Some("approve") => Decision::Approved,
            Some("reject") => Decision::Rejected,
            other => {
                return Err(ToolError::invalid(format!(
                    "`decision` must be `approve` or `reject`, not {other:?}"
                )));
            }
        };
        let edited = args.get("arguments").cloned();
        if edited.is_some() && decision == Decision::Rejected {
            return Err(ToolError::invalid(
                "edited `arguments` go with `approve` only",
            ));
        }
        let known = h.store().get_approval(&id).await?;
        let approval = h
            .resolve_approval(ResolveApproval {
                session_id: known.session_id,
                request_id: known.request_id,
                approval_id: id,
                decision,
                message: arg(&args, "message").map(str::to_string),
                decided_by: actor,
                edited_arguments: edited,
            })
            .await?;
        let worker = h.worker_holder().await?.is_some();
        let next = if worker {
            "the worker continues the request"
        } else {
            "no worker holds the workspace: the request continues when `agent-harness serve` runs"
        };
        pretty(&json!({ "approval": approval, "next": next }))
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new("agent-harness", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let resolve = matches!(self.may(&context), May::Resolve(_));
        Ok(ListToolsResult::with_all_items(tools(resolve)))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let may = self.may(&context);
        Ok(match self.call(request.name.as_ref(), args, may).await {
            Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]).into(),
            Err(e) => failed(e),
        })
    }
}

/// How many MCP sessions `/mcp` holds at once, by default
/// ([`crate::Limits::max_mcp_sessions`]). Each live session is a task with its own
/// channels and message cache, kept until 5 minutes pass without a request: without
/// a bound, a client that opens a session per call and never closes it (or anyone
/// holding a viewer token) grows the server's memory without limit. The callers of
/// `/mcp` are operators' agents and dashboards, a handful per deployment; a thousand
/// leaves them ample room while bounding what sessions can hold.
pub const MAX_SESSIONS: usize = 1000;

/// How long a refused `initialize` is told to wait (`Retry-After`): a place frees as
/// soon as a session is closed (DELETE) and at the latest when one has been idle for
/// 5 minutes; half a minute lets a retrying client find it without hammering.
const SESSIONS_FULL_RETRY: Duration = Duration::from_secs(30);

/// The header naming a streamable HTTP session; a POST without it opens one.
const SESSION_ID: &str = "mcp-session-id";

/// rmcp's in-memory sessions ([`LocalSessionManager`]), at most `cap` of them: a new
/// session past the cap is refused (its `initialize` answered 503 by
/// [`json_errors`]), the live ones go on, and a closed or expired one frees its place
/// (rmcp closes a session whose handler ended, an idle one included, and that
/// removes it from the map counted here).
pub(crate) struct BoundedSessions {
    inner: LocalSessionManager,
    cap: usize,
    /// Creations one at a time, so that two cannot both take the last place (only
    /// creation adds sessions).
    creating: tokio::sync::Mutex<()>,
}

impl BoundedSessions {
    pub(crate) fn new(cap: usize) -> Self {
        BoundedSessions {
            inner: LocalSessionManager::default(),
            cap,
            creating: tokio::sync::Mutex::new(()),
        }
    }

    async fn is_full(&self) -> bool {
        self.inner.sessions.read().await.len() >= self.cap
    }

    fn full(&self) -> Response {
        ApiError {
            retry_after: Some(SESSIONS_FULL_RETRY),
            ..ApiError::new(
                ErrorCode::Unavailable,
                SessionsError::Full(self.cap).to_string(),
            )
        }
        .into_response()
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionsError {
    #[error(
        "this server holds its most MCP sessions ({0}): close one (DELETE /mcp with its Mcp-Session-Id) or retry later"
    )]
    Full(usize),
    #[error(transparent)]
    Local(#[from] LocalSessionManagerError),
}

tokio::task_local! {
    /// Set when the request being answered was refused a session: rmcp calls the
    /// session manager within the request's own task, and answers its error as a
    /// plain 500 that [`json_errors`] turns into the 503 it is.
    static REFUSED_FULL: Cell<bool>;
}

impl SessionManager for BoundedSessions {
    type Error = SessionsError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(McpSessionId, Self::Transport), SessionsError> {
        let _one_at_a_time = self.creating.lock().await;
        if self.is_full().await {
            let _ = REFUSED_FULL.try_with(|r| r.set(true));
            return Err(SessionsError::Full(self.cap));
        }
        Ok(self.inner.create_session().await?)
    }

    async fn initialize_session(
        &self,
        id: &McpSessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, SessionsError> {
        Ok(self.inner.initialize_session(id, message).await?)
    }

    async fn has_session(&self, id: &McpSessionId) -> Result<bool, SessionsError> {
        Ok(self.inner.has_session(id).await?)
    }

    async fn close_session(&self, id: &McpSessionId) -> Result<(), SessionsError> {
        Ok(self.inner.close_session(id).await?)
    }

    async fn create_stream(
        &self,
        id: &McpSessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, SessionsError> {
        Ok(self.inner.create_stream(id, message).await?)
    }

    async fn accept_message(
        &self,
        id: &McpSessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), SessionsError> {
        Ok(self.inner.accept_message(id, message).await?)
    }

    async fn create_standalone_stream(
        &self,
        id: &McpSessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, SessionsError> {
        Ok(self.inner.create_standalone_stream(id).await?)
    }

    async fn resume(
        &self,
        id: &McpSessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, SessionsError> {
        Ok(self.inner.resume(id, last_event_id).await?)
    }

    // `restore_session` stays rmcp's default (not supported): no session store is
    // configured, and restoring would add sessions past the cap.

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.inner.event_store()
    }
}

/// `/mcp`: streamable HTTP MCP over the API's harness. Sessions live in this
/// process's memory (rmcp's `LocalSessionManager`: closed after 5 minutes without a
/// request, and all of them when `shutdown` turns true), at most
/// [`crate::Limits::max_mcp_sessions`] at once ([`BoundedSessions`]); POST bodies
/// are bounded by [`MAX_BODY_BYTES`]. Each HTTP request is authenticated like the
/// REST API's (401 without a known token, with `WWW-Authenticate`) before rmcp sees
/// it. A server without tokens (open, loopback only) also refuses a `Host` that is
/// not loopback and any browser `Origin` (DNS rebinding, other sites' pages). Every
/// refusal is the REST API's JSON error body ([`json_errors`]).
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    routes_with(state, BoundedSessions::new(state.limits.max_mcp_sessions))
}

/// [`routes`] keeping its sessions in `sessions`.
fn routes_with(state: &AppState, sessions: BoundedSessions) -> Router<AppState> {
    let cancel = tokio_util::sync::CancellationToken::new();
    // A session's event stream never ends by itself, and a graceful shutdown waits
    // for every response: end them all when the server stops.
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let mut stopped = state.shutdown.clone();
        let cancel = cancel.clone();
        rt.spawn(async move {
            if stopped.wait_for(|v| *v).await.is_ok() {
                cancel.cancel();
            }
        });
    }
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(cancel)
        .with_max_request_body_bytes(MAX_BODY_BYTES);
    config = if state.tokens.is_open() {
        config.enforce_origin_validation()
    } else {
        // Every request carries a token: any host name may reach it.
        config.disable_allowed_hosts()
    };
    let h = state.harness.clone();
    let tokens = state.tokens.clone();
    let sessions = Arc::new(sessions);
    let service = StreamableHttpService::new(
        move || {
            Ok(McpServer {
                h: h.clone(),
                caller: Caller::Http {
                    tokens: tokens.clone(),
                },
            })
        },
        sessions.clone(),
        config,
    );
    Router::new()
        .route_service(MCP_PATH, service)
        .route_layer(axum::middleware::from_fn_with_state(sessions, json_errors))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
}

/// Lets through a request with a known token (or any on an open server), its
/// [`Principal`] in its extensions; answers 401 (or 403) as the REST API does.
async fn authenticate(
    State(s): State<AppState>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    match Principal::from_request_parts(&mut parts, &s).await {
        Ok(p) => {
            parts.extensions.insert(p);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => e.into_response(),
    }
}

/// The most of a refusal's text [`json_errors`] reads (rmcp's are one line).
const MAX_REFUSAL_TEXT: usize = 64 * 1024;

/// Answers rmcp's refusals as the REST API answers its own: a JSON body
/// `{"code", "message"}` with the stable code of the status ([`ApiError::with_status`]), rmcp's
/// status and its text as the message, its other headers (`Allow`) kept. An
/// `initialize` refused for want of a session place ([`BoundedSessions`]) is 503
/// `unavailable` with `Retry-After`: answered here when the sessions are already
/// full (rmcp, refused by the session manager, would log an error for each one), by
/// the manager when two race for the last place. Successes, event streams and
/// JSON-RPC error bodies (already JSON, for the MCP client) pass untouched.
async fn json_errors(
    State(sessions): State<Arc<BoundedSessions>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let opens_session =
        req.method() == axum::http::Method::POST && !req.headers().contains_key(SESSION_ID);
    if opens_session && sessions.is_full().await {
        return sessions.full();
    }
    let (res, full) = REFUSED_FULL
        .scope(Cell::new(false), async move {
            let res = next.run(req).await;
            (res, REFUSED_FULL.with(Cell::get))
        })
        .await;
    if full {
        return sessions.full();
    }
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json_or_stream(&res) {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, MAX_REFUSAL_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("refused").to_string()
    } else {
        text
    };
    let mut out = ApiError::with_status(status, message).into_response();
    let ours: Vec<HeaderName> = out.headers().keys().cloned().collect();
    for name in parts.headers.keys() {
        if *name == header::CONTENT_LENGTH || ours.contains(name) {
            continue;
        }
        for value in parts.headers.get_all(name) {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out
}

/// Whether an answer is JSON (a JSON-RPC error) or an event stream.
fn is_json_or_stream(res: &Response) -> bool {
    let Some(ct) = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json") || essence == "text/event-stream"
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use tower::ServiceExt;

    fn post(body: Value, session: Option<&str>) -> axum::http::Request<Body> {
        let mut b = axum::http::Request::post(MCP_PATH)
            .header("host", "127.0.0.1")
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json");
        if let Some(id) = session {
            b = b
                .header("mcp-session-id", id)
                .header("mcp-protocol-version", "2025-06-18");
        }
        b.body(Body::from(body.to_string())).unwrap()
    }

    fn initialize() -> Value {
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"}}})
    }

    /// A session that rmcp ends for idleness frees its place, as a closed one does.
    #[tokio::test]
    async fn an_expired_session_frees_its_place() {
        let dir = tempfile::tempdir().unwrap();
        harness_config::init(dir.path(), false).unwrap();
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let state = AppState {
            harness: Harness::open(dir.path()).unwrap(),
            tokens: Arc::new(Tokens::open()),
            shutdown,
            sse_subscribers: Arc::default(),
            limits: crate::Limits::default(),
        };
        let mut sessions = BoundedSessions::new(1);
        sessions.inner.session_config.keep_alive = Some(Duration::from_millis(300));
        let app = routes_with(&state, sessions).with_state(state);

        let res = app.clone().oneshot(post(initialize(), None)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let first = res.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        drop(res);
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let res = app.clone().oneshot(post(note, Some(&first))).await.unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let res = app.clone().oneshot(post(initialize(), None)).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);

        // Idle past its keep-alive, the first session ends and its place is free.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let res = app.clone().oneshot(post(initialize(), None)).await.unwrap();
            if res.status() == StatusCode::OK {
                break;
            }
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(
                std::time::Instant::now() < deadline,
                "the idle session still holds the only place"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
        let res = app.oneshot(post(ping, Some(&first))).await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
}
