//! `anthropic`: the Messages API, streamed.
//!
//! A response is a list of content blocks (`thinking`, `redacted_thinking`, `text`,
//! `tool_use`) streamed by index. Thinking blocks are kept with their signatures and
//! sent back before the turn's text and tool calls, as the API requires for a turn
//! that continues after its tool results. Tool results go back as `tool_result`
//! blocks of one user message, with the provider's own `toolu_…` ids.

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

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The API version this speaks.
pub const API_VERSION: &str = "2023-06-01";
/// `max_tokens` when the configuration sets none (the API requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// A model behind Anthropic's Messages API.
pub struct AnthropicModel(HttpModel<Anthropic>);

impl AnthropicModel {
    /// `name` is the model's key in `models.yaml`; `key` the API key.
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
        let protocol = Anthropic {
            model: config.model.clone(),
            max_tokens: config.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            temperature: config.temperature,
            thinking_budget: config.thinking_budget,
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

impl Model for AnthropicModel {
    fn complete<'a>(
        &'a self,
        req: ModelRequest<'a>,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>> {
        Box::pin(self.0.call(req))
    }
}

pub(crate) struct Anthropic {
    model: String,
    max_tokens: u32,
    temperature: Option<f64>,
    thinking_budget: Option<u32>,
}

impl Protocol for Anthropic {
    const NAME: &'static str = "anthropic";
    type Turn = AnthropicTurn;

    fn path(&self) -> &'static str {
        "/v1/messages"
    }

    fn headers(&self, key: Option<&str>) -> Vec<(&'static str, String)> {
        let mut h = vec![("anthropic-version", API_VERSION.to_string())];
        if let Some(k) = key {
            h.push(("x-api-key", k.to_string()));
        }
        h
    }

    fn body(&self, req: &ModelRequest<'_>) -> Result<Vec<u8>, ModelError> {
        let (system, messages) = messages(req.messages);
        let mut body = json!({
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": messages,
            "stream": true,
        });
        if !system.is_empty() {
            body["system"] = json!(system);
        }
        if !req.tools.is_empty() {
            body["tools"] = req
                .tools
                .iter()
                .map(|t| json!({"name": crate::wire_tool_name(&t.name), "description": t.description, "input_schema": t.arguments}))
                .collect();
        }
        if let Some(b) = self.thinking_budget {
            body["thinking"] = json!({"type": "enabled", "budget_tokens": b});
        }
        if let Some(t) = self.temperature {
            body["temperature"] = json!(t);
        }
        serde_json::to_vec(&body)
            .map_err(|e| ModelError::Call(format!("encoding the request: {e}")))
    }

    fn turn(&self) -> AnthropicTurn {
        AnthropicTurn::default()
    }
}

/// The system prompt, and the conversation as alternating user and assistant
/// messages of content blocks (consecutive messages of one role are merged: tool
/// results are the blocks of the user message after the turn that called them).
fn messages(messages: &[Message]) -> (String, Vec<Value>) {
    let mut system = String::new();
    let mut ids: HashMap<&CallId, &str> = HashMap::new();
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in messages {
        let (role, blocks) = match m.role {
            Role::System => {
                if !system.is_empty() {
                    system.push_str("\n\n");
                }
                system.push_str(&m.content);
                continue;
            }
            Role::User => ("user", vec![text_block(&m.content, "(empty)")]),
            Role::Tool => {
                let call = m.call_id.as_ref();
                let id = call
                    .and_then(|c| ids.get(c).copied())
                    .or(call.map(CallId::as_str))
                    .unwrap_or_default();
                let mut block = json!({"type": "tool_result", "tool_use_id": id,
                                       "content": non_empty(&m.content, "(no output)")});
                if m.is_error {
                    block["is_error"] = json!(true);
                }
                ("user", vec![block])
            }
            Role::Assistant => {
                let mut blocks = Vec::new();
                // Only this provider's signed blocks can go back; another provider's
                // reasoning (no signature) cannot.
                if m.info.provider == "anthropic" {
                    for t in &m.info.thinking {
                        match (&t.signature, &t.redacted) {
                            (_, Some(data)) => {
                                blocks.push(json!({"type": "redacted_thinking", "data": data}))
                            }
                            (Some(sig), None) => blocks.push(
                                json!({"type": "thinking", "thinking": t.text, "signature": sig}),
                            ),
                            (None, None) => {}
                        }
                    }
                }
                if !m.content.is_empty() {
                    blocks.push(text_block(&m.content, ""));
                }
                for c in &m.tool_calls {
                    let id = m
                        .info
                        .provider_call_ids
                        .get(&c.call_id)
                        .map_or(c.call_id.as_str(), String::as_str);
                    ids.insert(&c.call_id, id);
                    let input = match &c.arguments {
                        Value::Object(_) => c.arguments.clone(),
                        _ => json!({}),
                    };
                    blocks.push(
                        json!({"type": "tool_use", "id": id, "name": crate::wire_tool_name(&c.tool), "input": input}),
                    );
                }
                if blocks.is_empty() {
                    blocks.push(text_block("", "(no answer)"));
                }
                ("assistant", blocks)
            }
        };
        match out.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => out.push((role, blocks)),
        }
    }
    let messages = out
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    (system, messages)
}

/// The API refuses empty text blocks.
fn text_block(text: &str, instead: &str) -> Value {
    json!({"type": "text", "text": non_empty(text, instead)})
}

fn non_empty<'a>(text: &'a str, instead: &'a str) -> &'a str {
    if text.trim().is_empty() {
        instead
    } else {
        text
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart {
        #[serde(borrow)]
        message: Start<'a>,
    },
    ContentBlockStart {
        index: u32,
        #[serde(borrow)]
        content_block: Block<'a>,
    },
    ContentBlockDelta {
        index: u32,
        #[serde(borrow)]
        delta: BlockDelta<'a>,
    },
    ContentBlockStop {},
    MessageDelta {
        #[serde(borrow)]
        delta: MessageDelta<'a>,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop {},
    Ping {},
    Error {
        error: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Start<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        #[serde(default, borrow)]
        text: Cow<'a, str>,
    },
    Thinking {
        #[serde(default, borrow)]
        thinking: Cow<'a, str>,
        #[serde(default, borrow)]
        signature: Cow<'a, str>,
    },
    RedactedThinking {
        #[serde(borrow)]
        data: Cow<'a, str>,
    },
    ToolUse {
        #[serde(borrow)]
        id: Cow<'a, str>,
        #[serde(borrow)]
        name: Cow<'a, str>,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta<'a> {
    TextDelta {
        #[serde(borrow)]
        text: Cow<'a, str>,
    },
    ThinkingDelta {
        #[serde(borrow)]
        thinking: Cow<'a, str>,
    },
    SignatureDelta {
        #[serde(borrow)]
        signature: Cow<'a, str>,
    },
    InputJsonDelta {
        #[serde(borrow)]
        partial_json: Cow<'a, str>,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct MessageDelta<'a> {
    #[serde(default, borrow)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

/// One attempt's message as it streams in.
#[derive(Default)]
pub(crate) struct AnthropicTurn {
    id: Option<String>,
    model: Option<String>,
    /// Content blocks by their index.
    blocks: Vec<(u32, Part)>,
    stop: Option<String>,
    stopped: bool,
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
    usage_seen: bool,
}

enum Part {
    Text(String),
    Thinking {
        text: String,
        signature: String,
    },
    Redacted(String),
    /// A call: its position among the turn's calls, provider id, name, argument text.
    Call {
        nth: u32,
        id: String,
        name: String,
        json: String,
    },
    Ignored,
}

impl TurnBuilder for AnthropicTurn {
    fn event(
        &mut self,
        _name: Option<&str>,
        data: &str,
        out: &mut Coalescer<'_>,
    ) -> Result<bool, ModelError> {
        let event: Event = serde_json::from_str(data).map_err(|e| {
            ModelError::Call(format!(
                "unreadable stream event ({e}): {}",
                harness_core::preview(data, 300)
            ))
        })?;
        match event {
            Event::MessageStart { message } => {
                self.id = message.id.map(Cow::into_owned);
                self.model = message.model.map(Cow::into_owned);
                if let Some(u) = message.usage {
                    self.usage(u);
                }
            }
            Event::ContentBlockStart {
                index,
                content_block,
            } => {
                let part = match content_block {
                    Block::Text { text } => {
                        out.text(&text);
                        Part::Text(text.into_owned())
                    }
                    Block::Thinking {
                        thinking,
                        signature,
                    } => {
                        out.thinking(&thinking);
                        Part::Thinking {
                            text: thinking.into_owned(),
                            signature: signature.into_owned(),
                        }
                    }
                    Block::RedactedThinking { data } => Part::Redacted(data.into_owned()),
                    Block::ToolUse { id, name } => {
                        let nth = self.calls();
                        out.call(nth, Some(&name), "");
                        Part::Call {
                            nth,
                            id: id.into_owned(),
                            name: name.into_owned(),
                            json: String::new(),
                        }
                    }
                    Block::Other => Part::Ignored,
                };
                self.blocks.push((index, part));
            }
            Event::ContentBlockDelta { index, delta } => {
                let Some((_, part)) = self.blocks.iter_mut().find(|(i, _)| *i == index) else {
                    return Err(ModelError::Call(format!(
                        "a delta for content block {index}, which never started"
                    )));
                };
                match (part, delta) {
                    (Part::Text(t), BlockDelta::TextDelta { text }) => {
                        out.text(&text);
                        t.push_str(&text);
                    }
                    (Part::Thinking { text, .. }, BlockDelta::ThinkingDelta { thinking }) => {
                        out.thinking(&thinking);
                        text.push_str(&thinking);
                    }
                    (
                        Part::Thinking { signature: s, .. },
                        BlockDelta::SignatureDelta { signature },
                    ) => s.push_str(&signature),
                    (Part::Call { nth, json, .. }, BlockDelta::InputJsonDelta { partial_json }) => {
                        out.call(*nth, None, &partial_json);
                        json.push_str(&partial_json);
                    }
                    _ => {}
                }
            }
            Event::MessageDelta { delta, usage } => {
                if let Some(r) = delta.stop_reason {
                    self.stop = Some(r.into_owned());
                }
                if let Some(u) = usage {
                    self.usage(u);
                }
            }
            Event::MessageStop {} => {
                self.stopped = true;
                return Ok(true);
            }
            Event::Error { error } => return Err(stream_error(&json!({"error": error}))),
            Event::ContentBlockStop {} | Event::Ping {} | Event::Other => {}
        }
        Ok(false)
    }

    fn finish(self) -> Result<(ModelTurn, TurnInfo), ModelError> {
        if !self.stopped {
            return Err(ModelError::Transient {
                message: "the stream ended before the model finished (no message_stop)".into(),
                retry_after: None,
            });
        }
        let raw_stop = self.stop.unwrap_or_else(|| "end_turn".to_string());
        let stop = StopReason::from_provider(&raw_stop);
        let mut info = TurnInfo {
            model: self.model.unwrap_or_default(),
            response_id: self.id,
            stop_reason: Some(stop),
            provider_stop_reason: Some(raw_stop),
            usage: self.usage_seen.then_some(Usage {
                input_tokens: self.input + self.cache_read + self.cache_write,
                output_tokens: self.output,
                cache_read_tokens: self.cache_read,
                cache_write_tokens: self.cache_write,
                reasoning_tokens: 0,
            }),
            ..Default::default()
        };
        let mut blocks = self.blocks;
        blocks.sort_by_key(|(i, _)| *i);
        let mut text = String::new();
        let mut calls = Vec::new();
        for (_, part) in blocks {
            match part {
                Part::Text(t) => text.push_str(&t),
                Part::Thinking { text, signature } => info.thinking.push(Thinking {
                    text,
                    signature: (!signature.is_empty()).then_some(signature),
                    redacted: None,
                }),
                Part::Redacted(data) => info.thinking.push(Thinking {
                    redacted: Some(data),
                    ..Default::default()
                }),
                Part::Call { id, name, json, .. } => {
                    let arguments = crate::parse_arguments(&name, &json, stop)?;
                    let call_id = CallId::generate();
                    info.provider_call_ids.insert(call_id.clone(), id);
                    calls.push(ToolCall {
                        call_id,
                        tool: name,
                        arguments,
                    });
                }
                Part::Ignored => {}
            }
        }
        let turn = if calls.is_empty() {
            ModelTurn::Text { text }
        } else {
            ModelTurn::ToolCalls { text, calls }
        };
        Ok((turn, info))
    }
}

impl AnthropicTurn {
    fn calls(&self) -> u32 {
        self.blocks
            .iter()
            .filter(|(_, p)| matches!(p, Part::Call { .. }))
            .count() as u32
    }

    /// Usage arrives in `message_start` and again (cumulative) in `message_delta`.
    fn usage(&mut self, u: WireUsage) {
        self.usage_seen = true;
        if let Some(n) = u.input_tokens {
            self.input = n;
        }
        if let Some(n) = u.output_tokens {
            self.output = n;
        }
        if let Some(n) = u.cache_creation_input_tokens {
            self.cache_write = n;
        }
        if let Some(n) = u.cache_read_input_tokens {
            self.cache_read = n;
        }
    }
}
