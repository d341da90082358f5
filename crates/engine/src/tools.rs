//! The tool registry: the workspace's tools (built-in and command tools) and the
//! tools its MCP servers listed at start, by name; and the runner that sends each
//! call to the one that owns it.

use crate::Harness;
use harness_config::{AgentConfig, ToolConfig, Workspace, split_mcp_name};
use harness_mcp::McpTools;
use harness_providers::tools::WorkspaceTools;
use harness_providers::{BoxFuture, ToolContext, ToolOutput, ToolRunner, ToolSpec};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the worker keeps its MCP servers' states for other processes' health views.
pub(crate) fn mcp_status_file(ws: &Workspace) -> PathBuf {
    ws.store_dir().join("mcp-servers.json")
}

/// Whether `agent` lists `tool`: by name, or as one of `server.*`.
pub(crate) fn offers(agent: &AgentConfig, tool: &str) -> bool {
    agent.tools.iter().any(|t| t == tool)
        || split_mcp_name(tool)
            .is_some_and(|(server, _)| agent.tools.iter().any(|t| t == &format!("{server}.*")))
}

impl Harness {
    /// The tool `name` with its policy and argument schema: a workspace tool, or an
    /// MCP tool its server listed.
    pub fn tool(&self, name: &str) -> Option<ToolConfig> {
        if let Some(t) = self.inner.workspace.tools.get(name) {
            return Some(t.clone());
        }
        self.inner.mcp.tool(name).map(|t| t.config)
    }

    /// The specs of the tools `agent` lists, as its model is shown them (`server.*`
    /// is every tool its server listed; an MCP tool its server has not listed is
    /// left out).
    pub fn tool_specs(&self, agent: &AgentConfig) -> Vec<ToolSpec> {
        let ws = &self.inner.workspace;
        let mut specs = Vec::new();
        for name in &agent.tools {
            if let Some(t) = ws.tools.get(name) {
                specs.push(ToolSpec {
                    name: name.clone(),
                    description: t.description.clone(),
                    arguments: t.arguments.clone(),
                });
            } else if let Some((server, "*")) = split_mcp_name(name) {
                specs.extend(self.inner.mcp.tools_of(server).iter().map(|t| t.spec()));
            } else if let Some(t) = self.inner.mcp.tool(name) {
                specs.push(t.spec());
            }
        }
        specs
    }

    /// The MCP servers' states as this process sees them.
    pub fn mcp_status(&self) -> Vec<harness_mcp::ServerStatus> {
        self.inner.mcp.status()
    }
}

/// Runs workspace tools and MCP tools.
pub(crate) struct Tools {
    pub workspace: WorkspaceTools,
    pub mcp: Arc<McpTools>,
}

impl ToolRunner for Tools {
    fn run<'a>(
        &'a self,
        tool: &'a str,
        arguments: &'a serde_json::Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, ToolOutput> {
        if self.mcp.owns(tool) {
            Box::pin(self.mcp.call(tool, arguments, &ctx.cancel))
        } else {
            self.workspace.run(tool, arguments, ctx)
        }
    }
}
