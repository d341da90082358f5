//! Chat Completions streams as OpenAI sends them: `data:` chunks of
//! `chat.completion.chunk`, tool calls in fragments keyed by index, a last chunk
//! with `usage` (`stream_options.include_usage`), then `data: [DONE]`.

use crate::{Reply, sse_event};
use serde_json::{Value, json};

/// Builds one streamed turn.
pub struct Turn {
    model: String,
    chunks: Vec<String>,
}

impl Turn {
    /// The stream's first chunk (the assistant role, empty content).
    pub fn new(model: &str) -> Turn {
        let t = Turn {
            model: model.to_string(),
            chunks: vec![],
        };
        t.delta(json!({"role": "assistant", "content": ""}))
    }

    fn chunk(&self, choices: Value, usage: Value) -> String {
        let body = json!({
            "id": "chatcmpl-fake0001", "object": "chat.completion.chunk",
            "created": 1_700_000_000, "model": self.model,
            "system_fingerprint": "fp_fake", "choices": choices, "usage": usage,
        });
        sse_event(None, &body.to_string())
    }

    /// A chunk with this `delta`.
    pub fn delta(mut self, delta: Value) -> Turn {
        let c = self.chunk(
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]),
            Value::Null,
        );
        self.chunks.push(c);
        self
    }

    /// A piece of answer text.
    pub fn text(self, piece: &str) -> Turn {
        self.delta(json!({"content": piece}))
    }

    /// A piece of reasoning, as DeepSeek and vLLM stream it.
    pub fn reasoning(self, piece: &str) -> Turn {
        self.delta(json!({"reasoning_content": piece}))
    }

    /// Tool call `index` (`id`, `name`), its arguments in these fragments.
    pub fn call(mut self, index: u32, id: &str, name: &str, fragments: &[&str]) -> Turn {
        self = self.delta(
            json!({"tool_calls": [{"index": index, "id": id, "type": "function",
            "function": {"name": name, "arguments": ""}}]}),
        );
        for f in fragments {
            self =
                self.delta(json!({"tool_calls": [{"index": index, "function": {"arguments": f}}]}));
        }
        self
    }

    /// The chunk with `finish_reason` (`stop`, `length`, `tool_calls`).
    pub fn finish(mut self, reason: &str) -> Turn {
        let c = self.chunk(
            json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": reason}]),
            Value::Null,
        );
        self.chunks.push(c);
        self
    }

    /// The usage chunk (no choices).
    pub fn usage(mut self, prompt: u64, completion: u64) -> Turn {
        let c = self.chunk(
            json!([]),
            json!({"prompt_tokens": prompt, "completion_tokens": completion,
                   "total_tokens": prompt + completion,
                   "prompt_tokens_details": {"cached_tokens": 0},
                   "completion_tokens_details": {"reasoning_tokens": 0}}),
        );
        self.chunks.push(c);
        self
    }

    /// The events so far, without the final `[DONE]`.
    pub fn events(self) -> Vec<String> {
        self.chunks
    }

    /// The stream as a reply: the chunks, then `data: [DONE]`.
    pub fn reply(self) -> Reply {
        let mut chunks = self.chunks;
        chunks.push(sse_event(None, "[DONE]"));
        Reply::sse(chunks)
    }
}

/// An error body as OpenAI sends one.
pub fn error_body(message: &str, kind: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}
