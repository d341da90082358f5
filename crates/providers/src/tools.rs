//! [`WorkspaceTools`]: runs a workspace's tools (built-in file tools and command
//! tools from `config/tools.yaml`) after checking their arguments.
//!
//! Arguments are checked against the tool's JSON Schema, compiled once
//! ([`harness_config::CheckedTool`]);
//! `files` holds the built-in tools confined to the work folder, `command` runs
//! command tools as process groups with a timeout and cancellation, `running`
//! records running commands so a new worker can kill what a dead one left, and `gate`
//! lets a command exec only once its record is in place.

mod command;
mod files;
mod gate;
pub mod running;

pub use command::{PASSED_THROUGH, die_with_worker, expand_env};
pub use running::{ReapOutcome, Reaped, reap_call, reap_leftovers, running_dir};

use crate::{BoxFuture, ToolContext, ToolOutput, ToolRunner};
use harness_config::{Builtin, CheckedTool, ToolConfig};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The [`ToolRunner`] for a workspace: one entry per tool name.
#[derive(Clone, Debug)]
pub struct WorkspaceTools {
    tools: BTreeMap<String, Arc<CheckedTool>>,
}

impl WorkspaceTools {
    /// Built from `Workspace.tools`.
    pub fn new(tools: BTreeMap<String, ToolConfig>) -> Self {
        let tools = tools
            .into_iter()
            .map(|(name, t)| (name, Arc::new(CheckedTool::new(t))))
            .collect();
        Self::checked(tools)
    }

    /// Built from tools another part of the process holds too (the engine's), so
    /// each schema is compiled once.
    pub fn checked(tools: BTreeMap<String, Arc<CheckedTool>>) -> Self {
        Self { tools }
    }

    async fn run_tool(
        &self,
        name: &str,
        args: &serde_json::Value,
        ctx: &ToolContext,
    ) -> ToolOutput {
        let Some(config) = self.tools.get(name) else {
            return ToolOutput::error(format!("unknown tool `{name}`"));
        };
        if let Err(e) = config.check_arguments(args) {
            return ToolOutput::error(format!("invalid arguments for `{name}`: {e}"));
        }
        match (config.builtin, &config.command) {
            (Some(Builtin::Delegate), _) => ToolOutput::error("delegate is run by the engine"),
            (Some(builtin), _) => files::run_builtin(builtin, args, ctx).await,
            (None, Some(argv)) => command::run_command(name, config, argv, args, ctx).await,
            (None, None) => {
                ToolOutput::error(format!("tool `{name}` has neither `builtin` nor `command`"))
            }
        }
    }
}

impl ToolRunner for WorkspaceTools {
    fn run<'a>(
        &'a self,
        tool: &'a str,
        arguments: &'a serde_json::Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, ToolOutput> {
        Box::pin(self.run_tool(tool, arguments, ctx))
    }
}
