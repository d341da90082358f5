//! Messages API streams as Anthropic sends them: `message_start`, content blocks
//! (`thinking` with a `signature_delta`, `redacted_thinking`, `text`, `tool_use`
//! with `input_json_delta` fragments) by index, `ping`s, `message_delta` with the
//! stop reason and output tokens, `message_stop`.

use crate::{Reply, sse_event};
use serde_json::{Value, json};

/// Builds one streamed message.
pub struct Turn {
    events: Vec<String>,
    index: u32,
}

fn event(kind: &str, data: Value) -> String {
    sse_event(Some(kind), &data.to_string())
}

impl Turn {
    /// `message_start`, reporting `input_tokens` of prompt.
    pub fn new(model: &str, input_tokens: u64) -> Turn {
        Turn {
            events: vec![event(
                "message_start",
                json!({"type": "message_start", "message": {
                    "id": "msg_fake0001", "type": "message", "role": "assistant", "content": [],
                    "model": model, "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 0, "output_tokens": 1}}}),
            )],
            index: 0,
        }
    }

    fn block(mut self, start: Value, deltas: Vec<Value>) -> Turn {
        let index = self.index;
        self.index += 1;
        self.events.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        for d in deltas {
            self.events.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": d}),
            ));
        }
        self.events.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        self
    }

    /// A thinking block in these pieces, signed.
    pub fn thinking(self, pieces: &[&str], signature: &str) -> Turn {
        let mut deltas: Vec<Value> = pieces
            .iter()
            .map(|p| json!({"type": "thinking_delta", "thinking": p}))
            .collect();
        deltas.push(json!({"type": "signature_delta", "signature": signature}));
        self.block(
            json!({"type": "thinking", "thinking": "", "signature": ""}),
            deltas,
        )
    }

    pub fn redacted_thinking(self, data: &str) -> Turn {
        self.block(json!({"type": "redacted_thinking", "data": data}), vec![])
    }

    /// A text block in these pieces.
    pub fn text(self, pieces: &[&str]) -> Turn {
        let deltas = pieces
            .iter()
            .map(|p| json!({"type": "text_delta", "text": p}))
            .collect();
        self.block(json!({"type": "text", "text": ""}), deltas)
    }

    /// A `tool_use` block, its input in these JSON fragments.
    pub fn tool_use(self, id: &str, name: &str, fragments: &[&str]) -> Turn {
        let deltas = fragments
            .iter()
            .map(|f| json!({"type": "input_json_delta", "partial_json": f}))
            .collect();
        self.block(
            json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
            deltas,
        )
    }

    pub fn ping(mut self) -> Turn {
        self.events.push(event("ping", json!({"type": "ping"})));
        self
    }

    /// `message_delta` (stop reason, output tokens) and `message_stop`.
    pub fn stop(mut self, reason: &str, output_tokens: u64) -> Turn {
        self.events.push(event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null},
                   "usage": {"output_tokens": output_tokens}}),
        ));
        self.events
            .push(event("message_stop", json!({"type": "message_stop"})));
        self
    }

    pub fn events(self) -> Vec<String> {
        self.events
    }

    pub fn reply(self) -> Reply {
        Reply::sse(self.events)
    }
}

/// An error body as Anthropic sends one.
pub fn error_body(message: &str, kind: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// An `error` event in a stream.
pub fn error_event(message: &str, kind: &str) -> String {
    event("error", error_body(message, kind))
}
