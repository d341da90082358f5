//! Lossless subscriptions: events are always read from the store by cursor; the
//! store's wake-ups (and a short poll) are only hints to read again. Identical in-process, over the wire and after restart.

use crate::HarnessError;
use harness_core::{Event, EventFilter};
use harness_store::{Store, Wakeups};
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
    /// Made before the first read, so no commit falls between a read and the wait.
    wake: Option<Wakeups>,
}

impl EventStream {
    pub(crate) fn new(store: Store, from_seq: i64, filter: EventFilter) -> Self {
        Self {
            store,
            filter,
            cursor: from_seq,
            buf: VecDeque::new(),
            wake: None,
        }
    }

    /// The seq of the last event returned: pass it to `subscribe` to resume.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// The next committed event, waiting for one if needed.
    pub async fn next(&mut self) -> Result<Event, HarnessError> {
        loop {
            if self.wake.is_none() {
                self.wake = Some(self.store.wakeups().await);
            }
            if let Some(e) = self.try_next().await? {
                return Ok(e);
            }
            let wake = self.wake.as_mut().expect("made above");
            tokio::select! {
                _ = wake.changed() => {}
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
