//! The MCP client: starts a workspace's MCP servers (`config/mcp.yaml`), lists
//! their tools, runs calls to them, and restarts a server that died.
//!
//! [`McpTools`] is what the engine holds. Each server has a supervisor task
//! (`server.rs`) that connects (a child process over stdio, or streamable HTTP),
//! lists the tools, then waits for the connection to end and reconnects with a
//! doubling backoff. A server that cannot start is never fatal: its state says why
//! (with the tail of its stderr), and calls to it fail their own tool call.
//! Tools are named `server.tool`; their specs come from the last listing.
//!
//! This crate knows nothing of the store or of the engine's runs: it returns a
//! [`ToolOutput`] like every other tool.

mod connect;
mod output;
mod server;
mod tail;

pub use server::{ServerState, ServerStatus, StatusFileBody};

use harness_config::{ApprovalPolicy, McpServer, ToolConfig, Workspace, split_mcp_name};
use harness_core::Redactor;
use harness_providers::{ToolOutput, ToolSpec};
use server::Server;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// A workspace's MCP servers and their tools.
pub struct McpTools {
    servers: BTreeMap<String, Arc<Server>>,
    /// Cancelled by [`McpTools::shutdown`]: every supervisor stops its server.
    stop: Mutex<Option<CancellationToken>>,
}

/// One MCP tool as the registry knows it: its spec from the server's last listing
/// and its policy from `mcp.yaml`.
#[derive(Clone, Debug)]
pub struct McpTool {
    /// `server.tool`.
    pub name: String,
    pub config: ToolConfig,
}

impl McpTools {
    /// The servers of `workspace` (none started yet). `status_file`, when set, is
    /// rewritten with every server's state at each change, for other processes'
    /// health views. `redactor` is applied to what servers print and to errors.
    pub fn new(workspace: &Workspace, status_file: Option<PathBuf>, redactor: Redactor) -> Self {
        let status = Arc::new(server::StatusFile::new(status_file));
        let servers = workspace
            .mcp
            .servers
            .iter()
            .map(|(name, config)| {
                let s = Server::new(
                    name.clone(),
                    config.clone(),
                    workspace.root.clone(),
                    redactor.clone(),
                    status.clone(),
                );
                (name.clone(), Arc::new(s))
            })
            .collect();
        Self {
            servers,
            stop: Mutex::new(None),
        }
    }

    /// True when the workspace defines no MCP server.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Starts every server's supervisor (once; a second call does nothing) and
    /// waits until each has listed its tools or failed its first attempt (at most
    /// its `startup_timeout`). Failures are states, never errors.
    pub async fn start(&self) {
        {
            let mut stop = self.stop.lock().expect("mcp stop");
            if stop.is_some() {
                return;
            }
            let token = CancellationToken::new();
            for s in self.servers.values() {
                tokio::spawn(server::supervise(s.clone(), token.clone()));
            }
            *stop = Some(token);
        }
        let firsts = self.servers.values().map(|s| s.first_attempt());
        wait_all(firsts).await;
    }

    /// Stops every server (stdio servers: their input is closed, then they are
    /// killed) and waits for them to end.
    pub async fn shutdown(&self) {
        let token = self.stop.lock().expect("mcp stop").take();
        if let Some(token) = token {
            token.cancel();
            wait_all(self.servers.values().map(|s| s.stopped())).await;
        }
    }

    /// Every server's state now.
    pub fn status(&self) -> Vec<ServerStatus> {
        self.servers.values().map(|s| s.status()).collect()
    }

    /// Whether `name` (`server.tool`) names a server of this workspace.
    pub fn owns(&self, name: &str) -> bool {
        split_mcp_name(name).is_some_and(|(server, _)| self.servers.contains_key(server))
    }

    /// The tool `server.tool`, if its server listed it.
    pub fn tool(&self, name: &str) -> Option<McpTool> {
        let (server, tool) = split_mcp_name(name)?;
        let s = self.servers.get(server)?;
        s.listed(tool).map(|t| tool_entry(server, &s.config, &t))
    }

    /// Every tool of `server` from its last listing, sorted by name.
    pub fn tools_of(&self, server: &str) -> Vec<McpTool> {
        let Some(s) = self.servers.get(server) else {
            return vec![];
        };
        s.all_listed()
            .iter()
            .map(|t| tool_entry(server, &s.config, t))
            .collect()
    }

    /// Runs `name` (`server.tool`) with `arguments`. A server that is down, a
    /// protocol error or the tool's own error is an `ok: false` output that says
    /// which; `cancel` abandons the call (the server is sent
    /// `notifications/cancelled`).
    pub async fn call(
        &self,
        name: &str,
        arguments: &serde_json::Value,
        cancel: &CancellationToken,
    ) -> ToolOutput {
        let Some((server, tool)) = split_mcp_name(name) else {
            return ToolOutput::error(format!("`{name}` is not an MCP tool (`server.tool`)"));
        };
        let Some(s) = self.servers.get(server) else {
            return ToolOutput::error(format!("unknown MCP server `{server}`"));
        };
        s.call(tool, arguments, cancel).await
    }
}

impl std::fmt::Debug for McpTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpTools")
            .field("servers", &self.servers.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn tool_entry(server: &str, config: &McpServer, tool: &server::Listed) -> McpTool {
    let (approval, idempotent): (ApprovalPolicy, bool) = config.policy(&tool.name);
    McpTool {
        name: format!("{server}.{}", tool.name),
        config: ToolConfig {
            description: tool.description.clone(),
            builtin: None,
            command: None,
            env: BTreeMap::new(),
            arguments: tool.input_schema.clone(),
            timeout: config.timeout,
            approval,
            idempotent,
            allow_shell_placeholders: false,
            max_concurrent: None,
            uses: vec![],
            limits: Default::default(),
        },
    }
}

impl McpTool {
    /// The spec shown to a model.
    pub fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name.clone(),
            description: self.config.description.clone(),
            arguments: self.config.arguments.clone(),
        }
    }
}

async fn wait_all<F: std::future::Future<Output = ()>>(futs: impl Iterator<Item = F>) {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    for f in set {
        f.await;
    }
}
