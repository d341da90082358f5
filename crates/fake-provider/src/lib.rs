//! A local HTTP server that answers like OpenAI's Chat Completions and Anthropic's
//! Messages APIs: server-sent-event streams in their wire formats, errors with
//! their bodies and `Retry-After`, a slow first byte, a connection dropped part-way.
//! Tests and the benchmark script its replies in order and read back what it was
//! sent; nothing leaves the machine.
//!
//! ```no_run
//! use harness_fake_provider::{FakeProvider, openai};
//! let server = FakeProvider::spawn();
//! server.push(openai::Turn::new("gpt-test").text("Hello").finish("stop").reply());
//! // point a model's `base_url` at `server.openai_base_url()`
//! ```

pub mod anthropic;
pub mod openai;
mod server;

pub use server::{FakeProvider, Received};

use std::time::Duration;

/// One scripted response.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Wait this long before answering at all (no status line, no byte).
    pub first_byte_delay: Duration,
    pub parts: Vec<Part>,
    /// Close the connection after the parts without ending the body properly.
    pub drop_after: bool,
}

#[derive(Clone, Debug)]
pub enum Part {
    /// Bytes written as one chunk.
    Bytes(Vec<u8>),
    /// A pause in the stream.
    Pause(Duration),
}

impl Reply {
    /// A `200` event stream of these SSE events (each already `event:`/`data:` lines
    /// ending in a blank line), one chunk each.
    pub fn sse(events: Vec<String>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            first_byte_delay: Duration::ZERO,
            parts: events
                .into_iter()
                .map(|e| Part::Bytes(e.into_bytes()))
                .collect(),
            drop_after: false,
        }
    }

    /// A `200` event stream with exactly these bytes (a recorded stream), cut into
    /// chunks of `chunk` bytes (so events straddle chunk boundaries).
    pub fn raw_sse(bytes: &[u8], chunk: usize) -> Reply {
        Reply {
            parts: bytes
                .chunks(chunk.max(1))
                .map(|c| Part::Bytes(c.to_vec()))
                .collect(),
            ..Reply::sse(vec![])
        }
    }

    /// An error response with a JSON body.
    pub fn error(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            first_byte_delay: Duration::ZERO,
            parts: vec![Part::Bytes(body.to_string().into_bytes())],
            drop_after: false,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn first_byte_after(mut self, delay: Duration) -> Reply {
        self.first_byte_delay = delay;
        self
    }

    /// Sends only the first `n` parts, then drops the connection.
    pub fn drop_after_parts(mut self, n: usize) -> Reply {
        self.parts.truncate(n);
        self.drop_after = true;
        self
    }

    /// A pause before every part.
    pub fn paced(mut self, every: Duration) -> Reply {
        self.parts = self
            .parts
            .into_iter()
            .flat_map(|p| [Part::Pause(every), p])
            .collect();
        self
    }
}

/// One SSE event: optional `event:` line, `data:` line, blank line.
pub fn sse_event(event: Option<&str>, data: &str) -> String {
    match event {
        Some(e) => format!("event: {e}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

/// Streams in the providers' exact wire format, byte for byte.
pub mod recorded {
    /// OpenAI (gpt-4o): two parallel tool calls, arguments in fragments (one with
    /// escapes and non-ASCII text), `finish_reason: tool_calls`, then usage with
    /// cached prompt tokens.
    pub const OPENAI_PARALLEL_TOOL_CALLS: &str =
        include_str!("../fixtures/openai_parallel_tool_calls.sse");
    /// Anthropic (claude-sonnet-4): a signed thinking block, text, two `tool_use`
    /// blocks with input in fragments, a ping, `stop_reason: tool_use`, cache reads.
    pub const ANTHROPIC_THINKING_TOOL_USE: &str =
        include_str!("../fixtures/anthropic_thinking_tool_use.sse");
}
