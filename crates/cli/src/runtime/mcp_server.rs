//! `agent-harness mcp`: runtime inspection and control as MCP tools over stdio. The
//! tools are `harness_server::mcp` (the same ones `serve --listen` offers at `/mcp`);
//! here one caller, recorded as `mcp` with `--as` (default `mcp:$USER`), and
//! `--read-only` leaving out `resolve_approval`.

use super::operator;
use crate::context::Ctx;
use anyhow::Result;
use harness_core::{Actor, ActorKind};
use harness_server::mcp::McpServer;
use rmcp::ServiceExt;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct McpArgs {
    /// Offer only the reading tools (no `resolve_approval`).
    #[arg(long)]
    pub read_only: bool,
    /// Who resolutions are recorded as (default: `mcp:$USER`).
    #[arg(long = "as", value_name = "NAME")]
    pub decided_by: Option<String>,
}

/// Serves MCP on stdin/stdout until the client closes it.
pub async fn run(ctx: &Ctx, a: McpArgs) -> Result<ExitCode> {
    let h = ctx.open_existing()?;
    let decided_by = a
        .decided_by
        .unwrap_or_else(|| format!("mcp:{}", operator(None)));
    let server = McpServer::stdio(h, Actor::new(ActorKind::Mcp, decided_by), a.read_only);
    let service = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("the MCP handshake failed: {e}"))?;
    let _ = service.waiting().await;
    Ok(ExitCode::SUCCESS)
}
