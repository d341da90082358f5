//! Providers: the models and tools an agent uses.
//!
//! The engine talks to models only through [`Model`] and to tools only through
//! [`ToolRunner`]; it never knows which provider runs. This crate knows nothing of
//! the store: tools return bytes for artifacts and the engine persists them.

pub mod models;
pub mod scripted;
pub mod tools;

pub use models::build_model;
pub use scripted::ScriptedModel;
pub use tools::{WorkspaceTools, validate_arguments};

use harness_core::{Message, ModelTurn, RequestId, SessionId};
use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a model is asked for one turn.
#[derive(Clone, Debug)]
pub struct ModelRequest<'a> {
    pub agent: &'a str,
    pub request_id: &'a RequestId,
    pub messages: &'a [Message],
    /// The tools this agent may call.
    pub tools: &'a [ToolSpec],
}

/// A tool as shown to a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub arguments: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model configuration: {0}")]
    Config(String),
    #[error("model call failed: {0}")]
    Call(String),
}

/// One language model. Implementations: [`scripted::ScriptedModel`]; HTTP providers later.
pub trait Model: Send + Sync + 'static {
    fn complete<'a>(
        &'a self,
        req: ModelRequest<'a>,
    ) -> BoxFuture<'a, Result<ModelTurn, ModelError>>;
}

/// A file a tool produced, to be stored as an artifact of the request.
#[derive(Clone, Debug, PartialEq)]
pub struct NewArtifact {
    pub name: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// What a tool call produced, before the engine bounds and persists it.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolOutput {
    pub ok: bool,
    pub content: String,
    pub artifacts: Vec<NewArtifact>,
}

impl ToolOutput {
    pub fn ok(content: impl Into<String>) -> Self {
        Self {
            ok: true,
            content: content.into(),
            artifacts: vec![],
        }
    }
    pub fn error(content: impl Into<String>) -> Self {
        Self {
            ok: false,
            content: content.into(),
            artifacts: vec![],
        }
    }
}

/// Everything a tool execution may know about where it runs.
#[derive(Clone, Debug)]
pub struct ToolContext {
    pub workspace_root: std::path::PathBuf,
    /// Files tools read and write are confined here (`<workspace>/work`).
    pub work_dir: std::path::PathBuf,
    pub request_id: RequestId,
    pub session_id: SessionId,
    /// Stable across re-runs of the same call (exported as `AGENT_HARNESS_CALL_ID`).
    pub call_id: harness_core::CallId,
    /// Where a running command call is recorded (`<store>/running`, see
    /// [`tools::running_dir`]) so the next worker can kill it if this one dies.
    pub runs_dir: std::path::PathBuf,
    /// Cancelled when the request (or an ancestor in its tree) is cancelled or the
    /// worker stops hard: a running command gets SIGTERM, then SIGKILL after a grace period.
    pub cancel: tokio_util::sync::CancellationToken,
}

/// Runs the workspace's tools (built-in ones other than `delegate`, and command tools).
pub trait ToolRunner: Send + Sync + 'static {
    /// Runs `tool` with `arguments`. Errors of the tool itself (bad arguments, non-zero
    /// exit, timeout) are an `ok: false` output the model sees, not an `Err`.
    fn run<'a>(
        &'a self,
        tool: &'a str,
        arguments: &'a serde_json::Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, ToolOutput>;
}
