//! Streams are ephemeral, turns are durable: the pieces of a model turn go to
//! in-process watchers as they arrive, never to the store. The completed turn is
//! one durable step, committed as before.
//!
//! One bounded `broadcast` per harness: sending never waits, and a watcher that
//! falls behind loses the oldest pieces (it is told how many) instead of slowing
//! the run. Providers coalesce pieces before they get here (see
//! `harness_providers::stream`), so a fast model does not mean one message per token.

use harness_core::{EventFilter, ModelDelta, Redactor, RequestId, SessionId};
use harness_providers::DeltaSink;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Pieces kept for watchers that fall behind, per harness.
const CAPACITY: usize = 1024;

/// A piece of the model turn that will be step `step` of `request_id`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TurnDelta {
    pub request_id: RequestId,
    pub session_id: SessionId,
    pub agent: String,
    pub step: u32,
    pub delta: ModelDelta,
}

/// What a [`DeltaStream`] yields.
#[derive(Clone, Debug, PartialEq)]
pub enum DeltaItem {
    Delta(Arc<TurnDelta>),
    /// This watcher fell behind and missed this many pieces.
    Lagged(u64),
}

pub(crate) struct Deltas {
    tx: broadcast::Sender<Arc<TurnDelta>>,
}

impl Default for Deltas {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Deltas {
    pub(crate) fn subscribe(&self, filter: EventFilter) -> DeltaStream {
        DeltaStream {
            rx: self.tx.subscribe(),
            filter,
        }
    }

    /// The sink for the turn that will be step `step` of a request.
    pub(crate) fn sink(
        &self,
        request_id: &RequestId,
        session_id: &SessionId,
        agent: &str,
        step: u32,
        redactor: &Redactor,
    ) -> TurnSink {
        TurnSink {
            tx: self.tx.clone(),
            request_id: request_id.clone(),
            session_id: session_id.clone(),
            agent: agent.to_string(),
            step,
            redactor: redactor.clone(),
        }
    }
}

/// Sends one turn's pieces, redacted piece by piece (a secret split across two
/// pieces is not recognised: pieces are never stored, and the recorded turn is
/// redacted whole).
pub(crate) struct TurnSink {
    tx: broadcast::Sender<Arc<TurnDelta>>,
    request_id: RequestId,
    session_id: SessionId,
    agent: String,
    step: u32,
    redactor: Redactor,
}

impl DeltaSink for TurnSink {
    fn delta(&self, mut delta: ModelDelta) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        match &mut delta {
            ModelDelta::Text { text }
            | ModelDelta::Thinking { text }
            | ModelDelta::Restart { reason: text } => {
                self.redactor.redact_string(text);
            }
            ModelDelta::ToolCall { arguments, .. } => {
                self.redactor.redact_string(arguments);
            }
        }
        // Err only when every watcher left meanwhile.
        let _ = self.tx.send(Arc::new(TurnDelta {
            request_id: self.request_id.clone(),
            session_id: self.session_id.clone(),
            agent: self.agent.clone(),
            step: self.step,
            delta,
        }));
    }
}

/// The pieces of model turns as they stream, from the moment of subscribing; see
/// [`crate::Harness::subscribe_deltas`].
pub struct DeltaStream {
    rx: broadcast::Receiver<Arc<TurnDelta>>,
    filter: EventFilter,
}

impl DeltaStream {
    /// The next piece that passes the filter (or how many were missed); None once
    /// the harness is gone.
    pub async fn next(&mut self) -> Option<DeltaItem> {
        loop {
            match self.rx.recv().await {
                Ok(d) if self.wanted(&d) => return Some(DeltaItem::Delta(d)),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => return Some(DeltaItem::Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// A piece that is already waiting, without waiting for one.
    pub fn try_next(&mut self) -> Option<DeltaItem> {
        loop {
            match self.rx.try_recv() {
                Ok(d) if self.wanted(&d) => return Some(DeltaItem::Delta(d)),
                Ok(_) => continue,
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    return Some(DeltaItem::Lagged(n));
                }
                Err(_) => return None,
            }
        }
    }

    fn wanted(&self, d: &TurnDelta) -> bool {
        self.filter
            .request_id
            .as_ref()
            .is_none_or(|r| r == &d.request_id)
            && self
                .filter
                .session_id
                .as_ref()
                .is_none_or(|s| s == &d.session_id)
    }
}
