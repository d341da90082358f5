//! Coalescing a turn's pieces for watchers: the first piece goes out at once (so
//! time to first delta is the provider's, not ours), later ones at most every
//! [`INTERVAL`], merged by kind, in the order they came. A fast model therefore costs
//! watchers a few messages a second, not one per token.

use crate::DeltaSink;
use harness_core::ModelDelta;
use std::time::{Duration, Instant};

/// Longest a piece waits to be merged with the next ones.
pub const INTERVAL: Duration = Duration::from_millis(50);

pub struct Coalescer<'a> {
    sink: Option<&'a dyn DeltaSink>,
    /// Pieces ready to go, oldest first; the last one still grows.
    pending: Vec<ModelDelta>,
    last_sent: Option<Instant>,
    emitted: bool,
}

impl<'a> Coalescer<'a> {
    pub fn new(sink: Option<&'a dyn DeltaSink>) -> Self {
        Self {
            sink,
            pending: Vec::new(),
            last_sent: None,
            emitted: false,
        }
    }

    /// Whether any piece of this attempt was seen (sent, or waiting to be).
    pub fn emitted(&self) -> bool {
        self.emitted
    }

    pub fn text(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        match self.pending.last_mut() {
            Some(ModelDelta::Text { text }) => text.push_str(s),
            _ => self.pending.push(ModelDelta::Text {
                text: s.to_string(),
            }),
        }
        self.added();
    }

    pub fn thinking(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        match self.pending.last_mut() {
            Some(ModelDelta::Thinking { text }) => text.push_str(s),
            _ => self.pending.push(ModelDelta::Thinking {
                text: s.to_string(),
            }),
        }
        self.added();
    }

    /// The `index`-th call of the turn: its name when it starts, then argument text.
    pub fn call(&mut self, index: u32, name: Option<&str>, arguments: &str) {
        if name.is_none() && arguments.is_empty() {
            return;
        }
        match self.pending.last_mut() {
            Some(ModelDelta::ToolCall {
                index: i,
                arguments: a,
                ..
            }) if *i == index && name.is_none() => a.push_str(arguments),
            _ => self.pending.push(ModelDelta::ToolCall {
                index,
                name: name.map(str::to_string),
                arguments: arguments.to_string(),
            }),
        }
        self.added();
    }

    fn added(&mut self) {
        self.emitted = true;
        if self.last_sent.is_none() {
            self.flush();
        }
    }

    /// When the pieces waiting should go out (None: nothing waits).
    pub fn due(&self) -> Option<Instant> {
        if self.pending.is_empty() {
            return None;
        }
        Some(self.last_sent.map_or_else(Instant::now, |t| t + INTERVAL))
    }

    /// Sends what waits (if anyone listens; else drops it).
    pub fn flush(&mut self) {
        self.last_sent = Some(Instant::now());
        match self.sink {
            Some(sink) => self.pending.drain(..).for_each(|d| sink.delta(d)),
            None => self.pending.clear(),
        }
    }

    /// What watchers saw of this attempt is void: it failed and will be retried.
    pub fn restart(&mut self, reason: String) {
        self.pending.clear();
        if let Some(sink) = self.sink {
            sink.delta(ModelDelta::Restart { reason });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Seen(Mutex<Vec<ModelDelta>>);
    impl DeltaSink for Seen {
        fn delta(&self, d: ModelDelta) {
            self.0.lock().unwrap().push(d);
        }
    }

    #[test]
    fn the_first_piece_goes_at_once_then_pieces_merge_by_kind_in_order() {
        let seen = Seen::default();
        let mut c = Coalescer::new(Some(&seen));
        c.text("He");
        assert_eq!(seen.0.lock().unwrap().len(), 1, "first piece is not held");
        c.text("llo");
        c.text(" world");
        c.call(0, Some("send_mail"), "");
        c.call(0, None, "{\"to\":");
        c.call(0, None, "\"x\"}");
        c.call(1, Some("word_count"), "{}");
        assert!(c.due().is_some());
        c.flush();
        assert!(c.due().is_none());
        let seen = seen.0.into_inner().unwrap();
        assert_eq!(
            seen,
            vec![
                ModelDelta::Text { text: "He".into() },
                ModelDelta::Text {
                    text: "llo world".into()
                },
                ModelDelta::ToolCall {
                    index: 0,
                    name: Some("send_mail".into()),
                    arguments: "{\"to\":\"x\"}".into()
                },
                ModelDelta::ToolCall {
                    index: 1,
                    name: Some("word_count".into()),
                    arguments: "{}".into()
                },
            ]
        );
    }
}
