//! Live model output while a request runs in this process, on a terminal only: the
//! pieces of each model turn as they stream (answer text, thinking dimmed, the tool
//! calls it is writing), on a line of their own that the next event line closes.
//! The pieces are ephemeral (the turn's `model.turn` event is what was recorded);
//! a worker in another process streams to its own watchers, not to this one.

use crate::output::{CYAN, DIM, paint};
use harness_core::{EventFilter, ModelDelta, RequestId, SessionId};
use harness_engine::{DeltaItem, DeltaStream, Harness};
use std::io::{IsTerminal, Write};

pub struct Live {
    stream: DeltaStream,
    /// The turn whose pieces the open line shows (None: no line open).
    open: Option<(RequestId, u32)>,
}

impl Live {
    /// Watches the model turns of `session`'s runs in this process, when stdout is a
    /// terminal and output is for humans.
    pub fn on_terminal(h: &Harness, session: &SessionId, json: bool) -> Option<Live> {
        if json || !std::io::stdout().is_terminal() {
            return None;
        }
        Some(Live {
            stream: h.subscribe_deltas(EventFilter {
                session_id: Some(session.clone()),
                ..Default::default()
            }),
            open: None,
        })
    }

    /// The next piece (pending forever without a watcher, or once the harness is gone).
    pub async fn next(live: &mut Option<Live>) -> DeltaItem {
        match live {
            Some(l) => match l.stream.next().await {
                Some(d) => d,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    pub fn show(&mut self, item: DeltaItem) {
        let mut text = String::new();
        match item {
            DeltaItem::Lagged(n) => {
                text.push_str(&paint(DIM, format!(" … ({n} pieces not shown)")));
            }
            DeltaItem::Delta(d) => {
                let turn = (d.request_id.clone(), d.step);
                if let ModelDelta::Restart { reason } = &d.delta {
                    self.end_line();
                    print(&format!("  {}\n", paint(DIM, format!("↻ {reason}"))));
                    return;
                }
                if self.open.as_ref() != Some(&turn) {
                    self.end_line();
                    text.push_str(&paint(DIM, format!("  ▸ {}: ", d.agent)));
                    self.open = Some(turn);
                }
                match &d.delta {
                    ModelDelta::Text { text: t } => text.push_str(&indent(t)),
                    ModelDelta::Thinking { text: t } => {
                        text.push_str(&paint(DIM.italic(), indent(t)));
                    }
                    ModelDelta::ToolCall {
                        name, arguments, ..
                    } => {
                        if let Some(name) = name {
                            text.push_str(&paint(CYAN, format!(" → {name} ")));
                        }
                        text.push_str(&paint(DIM, indent(arguments)));
                    }
                    ModelDelta::Restart { .. } => unreachable!("handled above"),
                }
            }
        }
        print(&text);
    }

    /// Before an event line (or the final report): shows the pieces already here
    /// (they precede the event that records their turn), then ends the open line.
    pub fn close_line(&mut self) {
        while let Some(item) = self.stream.try_next() {
            self.show(item);
        }
        self.end_line();
    }

    fn end_line(&mut self) {
        if self.open.take().is_some() {
            print("\n");
        }
    }
}

/// Continuation lines of a piece stay under the turn's first line.
fn indent(text: &str) -> String {
    text.replace('\n', "\n    ")
}

fn print(text: &str) {
    let mut out = anstream::stdout();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
