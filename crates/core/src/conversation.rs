//! What a model sees and says. Providers translate these to their wire formats.

use crate::ids::CallId;
use serde::{Deserialize, Serialize};

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
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
            tool_calls: vec![],
            call_id: None,
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
            tool_calls: vec![],
            call_id: None,
        }
    }
    pub fn assistant(turn: &ModelTurn) -> Self {
        match turn {
            ModelTurn::Text { text } => Self {
                role: Role::Assistant,
                content: text.clone(),
                tool_calls: vec![],
                call_id: None,
            },
            ModelTurn::ToolCalls { text, calls } => Self {
                role: Role::Assistant,
                content: text.clone(),
                tool_calls: calls.clone(),
                call_id: None,
            },
        }
    }
    pub fn tool(call_id: CallId, content: impl Into<String>) -> Self {
        Self {
            role: Role::Tool,
            content: content.into(),
            tool_calls: vec![],
            call_id: Some(call_id),
        }
    }
}
