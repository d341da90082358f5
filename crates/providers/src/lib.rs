//! Providers: the models and tools an agent uses.
//!
//! The engine talks to models only through [`Model`] and to tools only through
//! [`ToolRunner`]; it never knows which provider runs. This crate knows nothing of
//! the store: tools return bytes for artifacts and the engine persists them.

pub mod anthropic;
mod http;
pub mod models;
pub mod openai;
pub mod ratelimit;
pub mod scripted;
pub mod stream;
pub mod tools;
pub mod trace;

pub use anthropic::AnthropicModel;
pub use http::install_crypto;
pub use models::build_model;
pub use openai::OpenAiModel;
pub use ratelimit::{LimiterState, RateLimits, WaitChange, WaitEvent, WaitReason};
pub use scripted::ScriptedModel;
pub use tools::WorkspaceTools;

use harness_core::{Message, ModelDelta, ModelTurn, RequestId, SessionId, TurnInfo};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a model is asked for one turn.
#[derive(Clone, Copy)]
pub struct ModelRequest<'a> {
    pub agent: &'a str,
    pub request_id: &'a RequestId,
    /// The request's W3C trace id (32 hex): HTTP providers send it in a `traceparent`
    /// header with a new span id per attempt. None: no header.
    pub trace_id: Option<&'a str>,
    /// The `traceparent` HTTP providers send: the runtime's `model.call` span, with
    /// its sampled flag, when traces are exported. None: a new span id per attempt
    /// in trace `trace_id`, sampled.
    pub traceparent: Option<&'a str>,
    pub messages: &'a [Message],
    /// The tools this agent may call.
    pub tools: &'a [ToolSpec],
    /// Where a streaming provider sends the turn's pieces as they arrive (coalesced);
    /// None when nobody watches.
    pub deltas: Option<&'a dyn DeltaSink>,
    /// Cancelled when the caller would rather the call not start at all (the worker
    /// is stopping): a call still waiting (for its rate limit, or between attempts)
    /// gives up with [`ModelError::Stopped`]; one in flight carries on. None: never.
    pub stop_waiting: Option<&'a tokio_util::sync::CancellationToken>,
}

impl std::fmt::Debug for ModelRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRequest")
            .field("agent", &self.agent)
            .field("request_id", &self.request_id)
            .field("messages", &self.messages.len())
            .field("tools", &self.tools.len())
            .finish()
    }
}

/// Receives a streaming turn's pieces. Called from the model call's task: it must
/// not block (the engine's sink only hands them to a bounded broadcast).
pub trait DeltaSink: Send + Sync {
    fn delta(&self, delta: ModelDelta);
}

/// What a model answered, with how it was produced.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelReply {
    pub turn: ModelTurn,
    pub info: TurnInfo,
    /// The response as received (for HTTP providers: the stream's bytes), to be kept
    /// as an artifact; None for scripted turns.
    pub raw: Option<RawResponse>,
}

impl ModelReply {
    /// A turn with nothing known of how it was produced.
    pub fn bare(turn: ModelTurn) -> Self {
        Self {
            turn,
            info: TurnInfo::default(),
            raw: None,
        }
    }
}

/// A provider's response bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct RawResponse {
    pub media_type: String,
    /// File extension for the artifact (`sse`, `json`).
    pub extension: &'static str,
    pub bytes: Vec<u8>,
}

/// A tool as shown to a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub arguments: serde_json::Value,
}

/// Why a model call failed. [`ModelError::is_retryable`] tells a failure that may
/// pass by itself (rate limit, overload, a dropped connection) from one that will
/// not until something changes (configuration, a refused request).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model's configuration is unusable (missing key, bad URL, unknown model).
    #[error("model configuration: {0}")]
    Config(String),
    /// The call failed in a way a retry will not fix (e.g. a malformed response).
    #[error("model call failed: {0}")]
    Call(String),
    /// The provider refused the request (a 4xx other than 408 and 429), with its message.
    #[error("model call refused: {message}")]
    Refused { status: u16, message: String },
    /// The call may succeed later (429, 5xx, timeouts, a connection lost); when the
    /// provider said when, `retry_after`. Returned once the model's own retries are spent.
    #[error("model call failed (retryable{}): {message}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The call gave up waiting (for its rate limit, or to retry) because
    /// [`ModelRequest::stop_waiting`] fired: no answer, nothing to record.
    #[error("model call given up: {0}")]
    Stopped(String),
}

impl ModelError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ModelError::Transient { .. })
    }

    /// How long the provider asked to wait before retrying, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ModelError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The same error with `redactor` applied to its message (a provider's error may
    /// quote the key it refused, or what it was sent).
    pub fn redacted(self, redactor: &harness_core::Redactor) -> ModelError {
        let r = |m: String| redactor.redact_str(&m).into_owned();
        match self {
            ModelError::Config(m) => ModelError::Config(r(m)),
            ModelError::Call(m) => ModelError::Call(r(m)),
            ModelError::Stopped(m) => ModelError::Stopped(m),
            ModelError::Refused { status, message } => ModelError::Refused {
                status,
                message: r(message),
            },
            ModelError::Transient {
                message,
                retry_after,
            } => ModelError::Transient {
                message: r(message),
                retry_after,
            },
        }
    }
}

/// One language model. Implementations: [`scripted::ScriptedModel`],
/// [`openai::OpenAiModel`], [`anthropic::AnthropicModel`].
///
/// Dropping the returned future abandons the call: an HTTP provider's connection is
/// closed, so nothing more is read or paid for.
pub trait Model: Send + Sync + 'static {
    fn complete<'a>(
        &'a self,
        req: ModelRequest<'a>,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>>;
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
    /// The request's work folder (`Workspace::work_dir`: `<workspace>/work/<session>`
    /// by default): built-in file tools are confined to it, command tools start in it.
    pub work_dir: std::path::PathBuf,
    pub request_id: RequestId,
    pub session_id: SessionId,
    /// Stable across re-runs of the same call (exported as `AGENT_HARNESS_CALL_ID`).
    pub call_id: harness_core::CallId,
    /// The request's W3C trace id (32 hex): command tools get `TRACEPARENT` with it.
    pub trace_id: String,
    /// The `TRACEPARENT` command tools get: the runtime's `tool.call` span, with its
    /// sampled flag, when traces are exported. None: a new span id per call in trace
    /// `trace_id`, sampled.
    pub traceparent: Option<String>,
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

/// A tool call's streamed argument text as JSON. Text that is not JSON is kept as a
/// string, which the call's argument check refuses so the model is told and may try
/// again; unless the model was cut at its output limit mid-arguments, which fails
/// the turn with what to change.
pub(crate) fn parse_arguments(
    tool: &str,
    text: &str,
    stop: harness_core::StopReason,
) -> Result<serde_json::Value, ModelError> {
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(_) if stop == harness_core::StopReason::MaxTokens => Err(ModelError::Call(format!(
            "the model reached its output limit in the middle of the arguments of `{tool}`; \
             raise `max_tokens` for this model in config/models.yaml"
        ))),
        Err(_) => Ok(serde_json::Value::String(text.to_string())),
    }
}

/// A tool's name as sent to an HTTP provider: they accept letters, digits, `_` and
/// `-`, so an MCP tool's `server.tool` goes as `server__tool`.
/// [`runtime_tool_name`] maps a call's name back.
pub fn wire_tool_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains('.') {
        std::borrow::Cow::Owned(name.replace('.', "__"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// The tool of `tools` a model's call named `called` means (its wire name, or its
/// own), or `called` itself.
pub fn runtime_tool_name(called: &str, tools: &[ToolSpec]) -> String {
    tools
        .iter()
        .find(|t| t.name == called || wire_tool_name(&t.name) == called)
        .map_or_else(|| called.to_string(), |t| t.name.clone())
}
