//! `agent-harness mcp`: runtime inspection and control as MCP tools over stdio, a
//! thin view like the CLI's (the same records, the same JSON). Tools:
//! `list_requests`, `get_request` (its tree, with where it stopped and what to do
//! next), `list_pending_approvals`, `health`, and `resolve_approval` (left out
//! with `--read-only`). A failed call is a tool error carrying the stable error
//! code (`not_found: …`, `conflict: …`), not a protocol error.

use super::{approval_id, doctor, operator, request_id};
use crate::context::Ctx;
use anyhow::Result;
use harness_core::*;
use harness_engine::Harness;
use rmcp::model::*;
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ServerHandler, ServiceExt};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct McpArgs {
    /// Offer only the reading tools (no `resolve_approval`).
    #[arg(long)]
    pub read_only: bool,
    /// Who resolutions are recorded as (default: `mcp:$USER`).
    #[arg(long = "as", value_name = "NAME")]
    pub decided_by: Option<String>,
}

#[derive(Clone)]
struct Inspector {
    h: Harness,
    read_only: bool,
    decided_by: String,
}

fn tool(name: &'static str, description: &'static str, schema: Value) -> Tool {
    let Value::Object(schema) = schema else {
        unreachable!("schemas are objects")
    };
    Tool::new(name, description, Arc::new(schema))
}

fn tools(read_only: bool) -> Vec<Tool> {
    let mut all = vec![
        tool(
            "list_requests",
            "Root requests, newest first (like `runtime requests list --json`).",
            json!({"type": "object", "properties": {
                "status": {"type": "string", "enum": RequestStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>()},
                "agent": {"type": "string"},
                "session": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 500}
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
    if !read_only {
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

fn ok_json(v: &impl serde::Serialize) -> CallToolResponse {
    let text =
        serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    CallToolResult::success(vec![ContentBlock::text(text)]).into()
}

/// A failed call, with the stable error code first.
fn failed(e: anyhow::Error) -> CallToolResponse {
    let text = format!(
        "{}: {}",
        crate::output::code_name(&e),
        crate::output::error_message(&e)
    );
    CallToolResult::error(vec![ContentBlock::text(text)]).into()
}

fn arg<'a>(args: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    args.get(key).and_then(Value::as_str)
}

impl Inspector {
    async fn call(
        &self,
        name: &str,
        args: serde_json::Map<String, Value>,
    ) -> Result<CallToolResponse> {
        let h = &self.h;
        Ok(match name {
            "list_requests" => {
                let statuses = match arg(&args, "status") {
                    Some(s) => vec![
                        s.parse::<RequestStatus>()
                            .map_err(crate::output::bad_input)?,
                    ],
                    None => vec![],
                };
                let session_id = arg(&args, "session").map(super::session_id).transpose()?;
                let limit = args
                    .get("limit")
                    .and_then(Value::as_u64)
                    .unwrap_or(20)
                    .clamp(1, 500);
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
                ok_json(&json!({ "requests": requests }))
            }
            "get_request" => {
                let id =
                    arg(&args, "id").ok_or_else(|| crate::output::bad_input("`id` is required"))?;
                let id = request_id(h, id).await?;
                let t = h.request_tree(&id).await?;
                let alive = h.worker_holder().await?.is_some();
                let now = h.now();
                let d =
                    doctor::diagnose(&t, alive, now, h.workspace().settings.runtime.stuck_after);
                ok_json(
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
                ok_json(&json!({ "approvals": pending }))
            }
            "health" => ok_json(&h.health().await?),
            "resolve_approval" if !self.read_only => self.resolve(args).await?,
            other => failed(crate::output::bad_input(format!("no tool `{other}`"))),
        })
    }

    async fn resolve(&self, args: serde_json::Map<String, Value>) -> Result<CallToolResponse> {
        let h = &self.h;
        let id = arg(&args, "approval_id")
            .ok_or_else(|| crate::output::bad_input("`approval_id` is required"))?;
        let id = approval_id(h, id).await?;
        let decision = match arg(&args, "decision") {
            Some("approve") => Decision::Approved,
            Some("reject") => Decision::Rejected,
            other => {
                return Err(crate::output::bad_input(format!(
                    "`decision` must be `approve` or `reject`, not {other:?}"
                )));
            }
        };
        let edited = args.get("arguments").cloned();
        if edited.is_some() && decision == Decision::Rejected {
            return Err(crate::output::bad_input(
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
                decided_by: Actor::new(ActorKind::Mcp, self.decided_by.clone()),
                edited_arguments: edited,
            })
            .await?;
        let worker = h.worker_holder().await?.is_some();
        let next = if worker {
            "the worker continues the request"
        } else {
            "no worker holds the workspace: the request continues when `agent-harness serve` runs"
        };
        Ok(ok_json(&json!({ "approval": approval, "next": next })))
    }
}

impl ServerHandler for Inspector {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools(self.read_only)))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        Ok(match self.call(request.name.as_ref(), args).await {
            Ok(r) => r,
            Err(e) => failed(e),
        })
    }
}

/// Serves MCP on stdin/stdout until the client closes it.
pub async fn run(ctx: &Ctx, a: McpArgs) -> Result<ExitCode> {
    let h = ctx.open_existing()?;
    let decided_by = a
        .decided_by
        .unwrap_or_else(|| format!("mcp:{}", operator(None)));
    let server = Inspector {
        h,
        read_only: a.read_only,
        decided_by,
    };
    let service = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("the MCP handshake failed: {e}"))?;
    let _ = service.waiting().await;
    Ok(ExitCode::SUCCESS)
}
