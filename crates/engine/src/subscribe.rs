//! Lossless subscriptions: events are always read from the store by cursor; the
//! in-process commit broadcast (and a short poll, for other processes' commits)
//! is only a wake-up hint. Identical in-process, over the wire and after restart.

use crate::HarnessError;
use harness_core::{Event, EventFilter};
use harness_store::Store;
use std::collections::VecDeque;
use std::time::Duration;

const BATCH: usize = 512;
const POLL: Duration = Duration::from_millis(100);

/// A resumable stream of committed events.
pub struct EventStream {
    store: Store,
    filter: EventFilter,
    cursor: i64,
    buf: VecDeque<Event>,
    seq_rx: tokio::sync::watch::Receiver<i64>,
}

impl EventStream {
    pub(crate) fn new(store: Store, from_seq: i64, filter: EventFilter) -> Self {
        let seq_rx = store.committed_seq();
        Self {
            store,
            filter,
            cursor: from_seq,
            buf: VecDeque::new(),
            seq_rx,
        }
    }

    /// The seq of the last event returned: pass it to `subscribe` to resume.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// The next committed event, waiting for one if needed.
    pub async fn next(&mut self) -> Result<Event, HarnessError> {
        loop {
            if let Some(e) = self.try_next().await? {
                return Ok(e);
            }
            tokio::select! {
                _ = self.seq_rx.changed() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// The next committed event if one is already there.
    pub async fn try_next(&mut self) -> Result<Option<Event>, HarnessError> {
        if self.buf.is_empty() {
            let batch = self
                .store
                .events_after(self.cursor, self.filter.clone(), BATCH)
                .await?;
            self.buf.extend(batch);
        }
        Ok(self.buf.pop_front().inspect(|e| self.cursor = e.seq))
    }
}
