//! The tool registry: the workspace's tools (built-in and command tools) and the
//! tools its MCP servers listed at start, by name; and the runner that sends each
//! call to the one that owns it.

use crate::Harness;
use harness_config::{AgentConfig, Builtin, CheckedTool, Workspace, split_mcp_name};
use harness_mcp::McpTools;
use harness_providers::tools::WorkspaceTools;
use harness_providers::{BoxFuture, ToolContext, ToolOutput, ToolRunner, ToolSpec};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the worker keeps its MCP servers' states for other processes' health views.
pub(crate) fn mcp_status_file(ws: &Workspace) -> PathBuf {
    ws.store_dir().join("mcp-servers.json")
}

/// The agent's system prompt, followed by its skills' descriptions.
pub(crate) fn system_prompt(agent: &AgentConfig, ws: &Workspace) -> String {
    let mut text = agent.system_prompt.clone();
    let skills: Vec<_> = agent
        .skills
        .iter()
        .filter_map(|s| ws.skills.get(s))
        .collect();
    if skills.is_empty() {
        return text;
    }
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    text.push_str(&format!(
        "Skills you have (before following one, load its full instructions with the `{}` tool):",
        Builtin::LoadSkill.name()
    ));
    for s in skills {
        text.push_str(&format!("\n- {}: {}", s.name, s.description));
    }
    text
}

/// Why `agent` may not make `call` although it may use its tool: a skill it does
/// not have.
pub(crate) fn refusal(agent: &AgentConfig, call: &harness_core::ToolCall) -> Option<String> {
    if call.tool != Builtin::LoadSkill.name() {
        return None;
    }
    let name = call.arguments.get("name").and_then(|n| n.as_str())?;
    (!agent.skills.iter().any(|s| s == name)).then(|| {
        format!(
            "`{name}` is not a skill of agent `{}` (its skills: {})",
            agent.name,
            if agent.skills.is_empty() {
                "none".to_string()
            } else {
                agent.skills.join(", ")
            }
        )
    })
}

/// Whether `agent` lists `tool`: by name, or as one of `server.*`; `load_skill`
/// when it has skills.
pub(crate) fn offers(agent: &AgentConfig, tool: &str) -> bool {
    (tool == Builtin::LoadSkill.name() && !agent.skills.is_empty())
        || agent.tools.iter().any(|t| t == tool)
        || split_mcp_name(tool)
            .is_some_and(|(server, _)| agent.tools.iter().any(|t| t == &format!("{server}.*")))
}

impl Harness {
    /// The tool `name` with its policy and argument schema: a workspace tool, or an
    /// MCP tool its server listed.
    pub fn tool(&self, name: &str) -> Option<Arc<CheckedTool>> {
        if let Some(t) = self.inner.checked_tools.get(name) {
            return Some(t.clone());
        }
        let listed = self.inner.mcp.tool(name)?;
        Some(Arc::new(CheckedTool::new(listed.config)))
    }

    /// The specs of the tools `agent` lists, as its model is shown them (`server.*`
    /// is every tool its server listed; an MCP tool its server has not listed is
    /// left out).
    pub fn tool_specs(&self, agent: &AgentConfig) -> Vec<ToolSpec> {
        let ws = &self.inner.workspace;
        let mut specs = Vec::new();
        let load_skill = Builtin::LoadSkill.name().to_string();
        let skills =
            (!agent.skills.is_empty() && !agent.tools.contains(&load_skill)).then_some(&load_skill);
        for name in agent.tools.iter().chain(skills) {
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
