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
//! `anonymous` on a server without tokens).

use crate::{AppState, MAX_BODY_BYTES, Principal, Role, Tokens};
use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use harness_core::*;
use harness_engine::{ErrorCode, Harness};
use rmcp::ServerHandler;
use rmcp::model::*;
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use std::sync::Arc;

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

/// `/mcp`: streamable HTTP MCP over the API's harness. Sessions live in this
/// process's memory (rmcp's `LocalSessionManager`: closed after 5 minutes without
/// a request, and all of them when `shutdown` turns true); POST bodies are bounded
/// by [`MAX_BODY_BYTES`]. Each HTTP request is authenticated like the REST API's
/// (401 without a known token) before rmcp sees it. A server without tokens (open,
/// loopback only) also refuses a `Host` that is not loopback and any browser
/// `Origin` (DNS rebinding, other sites' pages).
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
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
    let service = StreamableHttpService::new(
        move || {
            Ok(McpServer {
                h: h.clone(),
                caller: Caller::Http {
                    tokens: tokens.clone(),
                },
            })
        },
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new().route_service(MCP_PATH, service).route_layer(
        axum::middleware::from_fn_with_state(state.clone(), authenticate),
    )
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
