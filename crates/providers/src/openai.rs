//! `openai`: any OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM, Ollama,
//! LM Studio, llama.cpp server, LiteLLM), streamed.
//!
//! Tool calls arrive as fragments keyed by their index; several may be in one turn.
//! Reasoning text some servers stream (`reasoning_content`, `reasoning`) is kept as
//! thinking but never sent back (those servers refuse it in a request). Usage comes
//! in a last chunk (`stream_options.include_usage`).

use crate::http::{HttpModel, Protocol, TurnBuilder, stream_error};
use crate::stream::Coalescer;
use crate::{BoxFuture, Model, ModelError, ModelReply, ModelRequest};
use harness_config::ModelConfig;
use harness_core::{
    CallId, Message, ModelTurn, Role, StopReason, Thinking, ToolCall, TurnInfo, Usage,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::HashMap;

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// A model behind an OpenAI-compatible Chat Completions API.
pub struct OpenAiModel(HttpModel<OpenAi>);

impl OpenAiModel {
    /// `name` is the model's key in `models.yaml`; `key` the API key, if any.
    pub fn new(name: &str, config: &ModelConfig, key: Option<String>) -> Result<Self, ModelError> {
        Self::with_rate_limits(name, config, key, &crate::RateLimits::new())
    }

    /// As [`Self::new`], counting its calls against `limits` (shared with the other
    /// models of the process; see [`crate::ratelimit`]).
    pub fn with_rate_limits(
        name: &str,
        config: &ModelConfig,
        key: Option<String>,
        limits: &crate::RateLimits,
    ) -> Result<Self, ModelError> {
        let protocol = OpenAi {
            model: config.model.clone(),
            max_tokens: config.max_tokens,
            temperature: config.temperature,
        };
        Ok(Self(HttpModel::new(
            name,
            config,
            DEFAULT_BASE_URL,
            key,
            protocol,
            limits,
        )?))
    }
}

impl Model for OpenAiModel {
    fn complete<'a>(
        &'a self,
        req: ModelRequest<'a>,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>> {
        Box::pin(self.0.call(req))
    }
}

pub(crate) struct OpenAi {
    model: String,
    max_tokens: Option<u32>,
    temperature: Option<f64>,
}

impl Protocol for OpenAi {
    const NAME: &'static str = "openai";
    type Turn = OpenAiTurn;

    fn path(&self) -> &'static str {
        "/chat/completions"
    }

    fn headers(&self, key: Option<&str>) -> Vec<(&'static str, String)> {
        key.map(|k| ("authorization", format!("Bearer {k}")))
            .into_iter()
            .collect()
    }

    fn body(&self, req: &ModelRequest<'_>) -> Result<Vec<u8>, ModelError> {
        let mut body = json!({
            "model": self.model,
            "messages": messages(req.messages),
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if !req.tools.is_empty() {
            body["tools"] = req
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": crate::wire_tool_name(&t.name), "description": t.description, "parameters": t.arguments,
                    }})
                })
                .collect();
        }
        if let Some(n) = self.max_tokens {
            body["max_tokens"] = json!(n);
        }
        if let Some(t) = self.temperature {
            body["temperature"] = json!(t);
        }
        serde_json::to_vec(&body)
            .map_err(|e| ModelError::Call(format!("encoding the request: {e}")))
    }

    fn turn(&self) -> OpenAiTurn {
        OpenAiTurn::default()
    }
}

/// The conversation in Chat Completions form. Calls and their results carry the ids
/// the provider gave them (the runtime's own id for calls it never named).
fn messages(messages: &[Message]) -> Vec<Value> {
    let mut ids: HashMap<&CallId, &str> = HashMap::new();
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let v = match m.role {
            Role::System => json!({"role": "system", "content": m.content}),
            Role::User => json!({"role": "user", "content": m.content}),
            Role::Assistant => {
                let mut v = json!({"role": "assistant", "content": m.content});
                if !m.tool_calls.is_empty() {
                    if m.content.is_empty() {
                        v["content"] = Value::Null;
                    }
                    v["tool_calls"] = m
                        .tool_calls
                        .iter()
                        .map(|c| {
                            let id = m
                                .info
                                .provider_call_ids
                                .get(&c.call_id)
                                .map_or(c.call_id.as_str(), String::as_str);
                            ids.insert(&c.call_id, id);
                            let arguments = match &c.arguments {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            json!({"id": id, "type": "function",
                                   "function": {"name": crate::wire_tool_name(&c.tool), "arguments": arguments}})
                        })
                        .collect();
                }
                v
            }
            Role::Tool => {
                let call = m.call_id.as_ref();
                let id = call
                    .and_then(|c| ids.get(c).copied())
                    .or(call.map(CallId::as_str))
                    .unwrap_or_default();
                json!({"role": "tool", "tool_call_id": id, "content": m.content})
            }
        };
        out.push(v);
    }
    out
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<CallDelta<'a>>>,
}

#[derive(Deserialize)]
struct CallDelta<'a> {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

/// One attempt's turn as it streams in.
#[derive(Default)]
pub(crate) struct OpenAiTurn {
    id: Option<String>,
    model: Option<String>,
    text: String,
    thinking: String,
    calls: Vec<PendingCall>,
    finish: Option<String>,
    usage: Option<Usage>,
}

#[derive(Default)]
struct PendingCall {
    index: u32,
    id: Option<String>,
    name: String,
    arguments: String,
}

impl TurnBuilder for OpenAiTurn {
    fn event(
        &mut self,
        _name: Option<&str>,
        data: &str,
        out: &mut Coalescer<'_>,
    ) -> Result<bool, ModelError> {
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            ModelError::Call(format!(
                "unreadable stream chunk ({e}): {}",
                harness_core::preview(data, 300)
            ))
        })?;
        if let Some(error) = &chunk.error {
            return Err(stream_error(&json!({"error": error})));
        }
        if self.id.is_none() {
            self.id = chunk.id.map(Cow::into_owned);
        }
        if let Some(m) = chunk.model.filter(|m| !m.is_empty()) {
            self.model = Some(m.into_owned());
        }
        if let Some(u) = chunk.usage {
            let cached = u.prompt_tokens_details.and_then(|d| d.cached_tokens);
            let reasoning = u.completion_tokens_details.and_then(|d| d.reasoning_tokens);
            self.usage = Some(Usage {
                input_tokens: u.prompt_tokens,
                output_tokens: u.completion_tokens,
                cache_read_tokens: cached.unwrap_or(0),
                cache_write_tokens: 0,
                reasoning_tokens: reasoning.unwrap_or(0),
            });
        }
        // One answer is asked for (no `n`): only the first choice counts.
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(d) = choice.delta {
                self.delta(d, out);
            }
            if let Some(f) = choice.finish_reason {
                self.finish = Some(f.into_owned());
            }
        }
        Ok(false)
    }

    fn finish(self) -> Result<(ModelTurn, TurnInfo), ModelError> {
        let Some(finish) = self.finish else {
            return Err(ModelError::Transient {
                message: "the stream ended before the model finished (no finish_reason)".into(),
                retry_after: None,
            });
        };
        let stop = StopReason::from_provider(&finish);
        let mut info = TurnInfo {
            model: self.model.unwrap_or_default(),
            response_id: self.id,
            stop_reason: Some(stop),
            provider_stop_reason: Some(finish),
            usage: self.usage,
            ..Default::default()
        };
        if !self.thinking.is_empty() {
            info.thinking.push(Thinking {
                text: self.thinking,
                ..Default::default()
            });
        }
        let mut calls = Vec::with_capacity(self.calls.len());
        for c in self.calls {
            if c.name.is_empty() {
                return Err(ModelError::Call(format!(
                    "the model sent tool call #{} without a name",
                    c.index
                )));
            }
            let arguments = crate::parse_arguments(&c.name, &c.arguments, stop)?;
            let call_id = CallId::generate();
            if let Some(id) = c.id.filter(|id| !id.is_empty()) {
                info.provider_call_ids.insert(call_id.clone(), id);
            }
            calls.push(ToolCall {
                call_id,
                tool: c.name,
                arguments,
            });
        }
        let turn = if calls.is_empty() {
            ModelTurn::Text { text: self.text }
        } else {
            ModelTurn::ToolCalls {
                text: self.text,
                calls,
            }
        };
        Ok((turn, info))
    }
}

impl OpenAiTurn {
    fn delta(&mut self, d: Delta<'_>, out: &mut Coalescer<'_>) {
        for text in [d.content, d.refusal].into_iter().flatten() {
            out.text(&text);
            self.text.push_str(&text);
        }
        for thinking in [d.reasoning_content, d.reasoning].into_iter().flatten() {
            out.thinking(&thinking);
            self.thinking.push_str(&thinking);
        }
        for (pos, c) in d.tool_calls.into_iter().flatten().enumerate() {
            // Some servers leave out `index` when each chunk holds whole calls.
            let index = c.index.unwrap_or(pos as u32);
            let slot = match self.calls.iter().position(|p| p.index == index) {
                Some(i) => i,
                None => {
                    self.calls.push(PendingCall {
                        index,
                        ..Default::default()
                    });
                    self.calls.len() - 1
                }
            };
            let call = &mut self.calls[slot];
            if let Some(id) = c.id
                && call.id.is_none()
            {
                call.id = Some(id.into_owned());
            }
            let (name, arguments) = match c.function {
                Some(f) => (f.name, f.arguments),
                None => (None, None),
            };
            let new_name = name.filter(|n| !n.is_empty() && call.name.is_empty());
            if let Some(n) = &new_name {
                call.name.push_str(n);
            }
            let arguments = arguments.unwrap_or_default();
            call.arguments.push_str(&arguments);
            out.call(slot as u32, new_name.as_deref(), &arguments);
        }
    }
}
