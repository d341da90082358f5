//! What a model sees and says. Providers translate these to their wire formats.

use crate::ids::{ArtifactId, CallId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One tool call proposed by a model turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub call_id: CallId,
    pub tool: String,
    pub arguments: serde_json::Value,
}

/// What a model answered in one turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ModelTurn {
    /// A final answer: the request completes with this text.
    Text { text: String },
    /// Tool calls to run (in order) before the next turn.
    ToolCalls {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
        calls: Vec<ToolCall>,
    },
}

/// One message of the conversation a model is given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// For assistant messages: the calls it proposed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For tool messages: which call this is the result of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<CallId>,
    /// For tool messages: the call failed (a provider may mark the result an error).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
    /// For assistant messages: how the turn was produced (its thinking and the
    /// provider's call ids are sent back to the provider with it).
    #[serde(default, skip_serializing_if = "TurnInfo::is_empty")]
    pub info: TurnInfo,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
            tool_calls: vec![],
            call_id: None,
            is_error: false,
            info: TurnInfo::default(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
            tool_calls: vec![],
            call_id: None,
            is_error: false,
            info: TurnInfo::default(),
        }
    }
    pub fn assistant(turn: &ModelTurn) -> Self {
        match turn {
            ModelTurn::Text { text } => Self {
                role: Role::Assistant,
                content: text.clone(),
                tool_calls: vec![],
                call_id: None,
                is_error: false,
                info: TurnInfo::default(),
            },
            ModelTurn::ToolCalls { text, calls } => Self {
                role: Role::Assistant,
                content: text.clone(),
                tool_calls: calls.clone(),
                call_id: None,
                is_error: false,
                info: TurnInfo::default(),
            },
        }
    }
    pub fn tool(call_id: CallId, content: impl Into<String>) -> Self {
        Self {
            role: Role::Tool,
            content: content.into(),
            tool_calls: vec![],
            call_id: Some(call_id),
            is_error: false,
            info: TurnInfo::default(),
        }
    }

    /// An assistant message with how its turn was produced.
    pub fn assistant_turn(turn: &ModelTurn, info: &TurnInfo) -> Self {
        Self {
            info: info.clone(),
            ..Self::assistant(turn)
        }
    }

    /// A tool result; `ok: false` marks it an error.
    pub fn tool_result(call_id: CallId, content: impl Into<String>, ok: bool) -> Self {
        Self {
            is_error: !ok,
            ..Self::tool(call_id, content)
        }
    }
}

/// How a model turn was produced: which provider and model, why it stopped, what it
/// cost, the thinking that came with it, the provider's own call ids, and where the
/// raw response is kept. Durable (inside the model turn's step body): every field is
/// optional, so turns recorded before providers existed (and scripted turns, which
/// have none of it) read back as the empty default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnInfo {
    /// `openai` or `anthropic` (empty for scripted turns).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
    /// The model as the provider named it in its response (e.g. `gpt-4o-2024-08-06`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// The provider's id of the response (`chatcmpl-…`, `msg_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    /// The stop or finish reason exactly as the provider sent it (`stop`, `length`,
    /// `tool_calls`, `end_turn`, `max_tokens`, `tool_use`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_stop_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Thinking (reasoning) blocks, in the order the model produced them. Anthropic's
    /// carry a signature and are sent back with the turn so a continued turn is accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thinking: Vec<Thinking>,
    /// The provider's own id of each call of the turn (`toolu_…`, `call_…`), by the
    /// call's runtime id: later turns send the provider its own ids back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provider_call_ids: BTreeMap<CallId, String>,
    /// The raw response (the bytes of the stream as received, redacted), stored as an
    /// artifact of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_artifact: Option<ArtifactId>,
    /// HTTP attempts the turn took (more than 1 after retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Milliseconds from sending the request to the first streamed delta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_delta_ms: Option<u64>,
}

impl TurnInfo {
    pub fn is_empty(&self) -> bool {
        self == &TurnInfo::default()
    }
}

/// Why a model stopped, normalised across providers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A natural end (`stop`, `end_turn`).
    EndTurn,
    /// It wants its tool calls run (`tool_calls`, `tool_use`).
    ToolUse,
    /// Cut at the output token limit (`length`, `max_tokens`): the text may be incomplete.
    MaxTokens,
    /// A stop sequence was produced (`stop_sequence`).
    StopSequence,
    /// Withheld by the provider (`content_filter`, `refusal`).
    Refused,
    /// Anything else (the provider's own word is in `provider_stop_reason`).
    #[serde(other)]
    Other,
}

impl StopReason {
    /// The normalised reason for a provider's finish or stop reason.
    pub fn from_provider(reason: &str) -> StopReason {
        match reason {
            "stop" | "end_turn" | "eos" => StopReason::EndTurn,
            "tool_calls" | "tool_use" | "function_call" => StopReason::ToolUse,
            "length" | "max_tokens" | "model_context_window_exceeded" => StopReason::MaxTokens,
            "stop_sequence" => StopReason::StopSequence,
            "content_filter" | "refusal" => StopReason::Refused,
            _ => StopReason::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::ToolUse => "tool_use",
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopSequence => "stop_sequence",
            StopReason::Refused => "refused",
            StopReason::Other => "other",
        }
    }
}

/// Tokens one model call used. `input_tokens` counts every prompt token, cached or
/// not (OpenAI's `prompt_tokens`; Anthropic's `input_tokens` plus its cache reads and
/// writes), so totals compare across providers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Of `input_tokens`: read from the provider's prompt cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_read_tokens: u64,
    /// Of `input_tokens`: written to the provider's prompt cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_tokens: u64,
    /// Of `output_tokens`: spent on reasoning (when the provider says).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Token totals over many model turns (a request, a session).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageTotals {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Model turns that reported usage.
    pub turns: u64,
}

impl UsageTotals {
    pub fn is_empty(&self) -> bool {
        self.turns == 0
    }
}

/// One thinking block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thinking {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// Anthropic's signature over the block (required to send it back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// A redacted thinking block: the provider's encrypted data, sent back as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted: Option<String>,
}

/// A piece of a model turn while it streams: ephemeral, for watchers only. The
/// completed turn is what is recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ModelDelta {
    /// More answer text.
    Text { text: String },
    /// More thinking text.
    Thinking { text: String },
    /// The `index`-th tool call of the turn: its name (in its first delta) and more
    /// of its JSON arguments.
    ToolCall {
        index: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        arguments: String,
    },
    /// The call failed part-way and is being retried: what streamed so far for this
    /// turn is void.
    Restart { reason: String },
}
