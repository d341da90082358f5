//! Lossless subscriptions, with one shared reader of the store per harness.
//!
//! The store is the only source: every event a subscriber gets was read from it by
//! cursor, so a subscription is the same in-process, over the wire and after a
//! restart (resume with the last seq seen: no gap, no duplicate, seq order).
//!
//! **The shared feed.** While anyone subscribes, one task per [`crate::Harness`]
//! reads `events_after(pos, all)` once per wake-up (the store's wake-ups, and a
//! 100 ms poll for what they cannot tell) and broadcasts the batch; every
//! subscriber filters it in memory. N subscribers cost one store read per wake-up,
//! not N. The feed's position only ever comes from what a read returned, so on
//! PostgreSQL it never passes an event a later read could still reveal (the store's
//! watermark: see `harness_store`'s `pg/events.rs`). The task ends when its last
//! subscriber leaves; the next one starts it again from the store's `last_seq`.
//!
//! **Joining.** A subscriber reads the store by its own cursor (with its filter, in
//! SQL) until a read comes back short, then takes the feed's batches. It subscribes
//! to the feed *before* that read: the feed's batches cover every event after the
//! feed's position at that moment, the read covers everything up to the store's
//! head, which is past that position, and events at or below the subscriber's
//! cursor are dropped from batches, so nothing is missed and nothing is repeated. A
//! subscriber whose cursor is already at or past the feed's position takes the feed
//! at once.
//!
//! **Bounded memory.** The feed keeps at most [`FEED_BATCHES`] batches of at most
//! 512 events, shared by every subscriber (a batch is dropped once every subscriber
//! took it). A subscriber more than that behind (slow consumer) is detached: it
//! reads the store by its cursor again, at its own pace and holding one batch at a
//! time, then rejoins. Nothing is lost and the stream stays open; a slow consumer
//! costs store reads, never memory, and never holds back the feed or a run.
//!
//! **Trees.** [`EventFilter::tree`] follows a request and everything delegated under
//! it. Store reads walk `parent_id` in SQL. Fed subscribers keep the tree's members
//! in memory: read from the store when they join the feed, then grown by every
//! `delegate.started` of a member (the store commits it with the child's row, and
//! before any event of the child).

use crate::HarnessError;
use harness_core::{Event, EventFilter, EventKind, RequestId};
use harness_store::{Store, StoreError};
use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::broadcast;

/// Events one store read returns at most (the feed's and a subscriber's own).
pub const BATCH: usize = 512;
/// Batches the shared feed keeps for subscribers behind it; a subscriber further
/// behind is detached and reads the store by its cursor until it catches up.
pub const FEED_BATCHES: usize = 64;
/// How often the feed reads even without a wake-up.
const POLL: Duration = Duration::from_millis(100);

/// Store reads made for subscriptions since the harness opened (see
/// [`crate::Harness::event_reads`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventReads {
    /// Reads by the shared feed: one per wake-up (or poll) whatever the number of
    /// subscribers, plus one per further batch while it catches up.
    pub shared: u64,
    /// Reads by subscribers themselves: catching up from their cursor (new with a
    /// past cursor, or detached for being slow), joining, `try_next`.
    pub own: u64,
    /// Times a subscriber was detached from the feed for falling behind it.
    pub detached: u64,
}

/// One harness's shared reader.
#[derive(Default)]
pub(crate) struct Feed {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    shared_reads: AtomicU64,
    own_reads: AtomicU64,
    detached: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            state: Mutex::new(State {
                running: false,
                generation: 0,
                pos: 0,
                tx: broadcast::channel(FEED_BATCHES).0,
            }),
            shared_reads: AtomicU64::new(0),
            own_reads: AtomicU64::new(0),
            detached: AtomicU64::new(0),
        }
    }
}

struct State {
    /// A task is reading for the subscribers.
    running: bool,
    /// Which start of the task is the current one.
    generation: u64,
    /// Every event after `pos` is (or will be) in a batch sent on `tx` from now on.
    pos: i64,
    tx: broadcast::Sender<Arc<Vec<Event>>>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent (no
        // multi-step updates), so a poisoned lock is used as it is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Feed {
    pub(crate) fn reads(&self) -> EventReads {
        EventReads {
            shared: self.shared.shared_reads.load(Ordering::Relaxed),
            own: self.shared.own_reads.load(Ordering::Relaxed),
            detached: self.shared.detached.load(Ordering::Relaxed),
        }
    }
}

/// Subscribes to the feed, starting its task if none runs: the receiver, and the
/// position after which its batches cover every event.
async fn join(
    shared: &Arc<Shared>,
    store: &Store,
) -> Result<(broadcast::Receiver<Arc<Vec<Event>>>, i64), StoreError> {
    {
        let st = shared.state();
        if st.running {
            return Ok((st.tx.subscribe(), st.pos));
        }
    }
    // Read before taking the feed: the joiner's own read, made after this, reaches
    // at least this far, so a feed starting here leaves it no gap.
    shared.own_reads.fetch_add(1, Ordering::Relaxed);
    let head = store.last_seq().await?;
    let mut st = shared.state();
    if !st.running {
        st.running = true;
        st.generation += 1;
        st.pos = head;
        tokio::spawn(read_for_all(shared.clone(), store.clone(), st.generation));
    }
    Ok((st.tx.subscribe(), st.pos))
}

/// Ends a feed task's tenure however the task ends: a task that did not end by
/// itself (store error, runtime shut down) closes its channel, so its subscribers
/// notice, read the store themselves and start another.
struct Tenure {
    shared: Arc<Shared>,
    generation: u64,
}

impl Drop for Tenure {
    fn drop(&mut self) {
        let mut st = self.shared.state();
        if st.running && st.generation == self.generation {
            st.running = false;
            st.tx = broadcast::channel(FEED_BATCHES).0;
        }
    }
}

/// The feed task: one read per wake-up, broadcast to every subscriber.
async fn read_for_all(shared: Arc<Shared>, store: Store, generation: u64) {
    let _tenure = Tenure {
        shared: shared.clone(),
        generation,
    };
    let mut wake = store.wakeups().await;
    loop {
        let pos = shared.state().pos;
        shared.shared_reads.fetch_add(1, Ordering::Relaxed);
        let batch = match store.events_after(pos, EventFilter::default(), BATCH).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "the event feed could not read the store; subscribers read it themselves");
                return;
            }
        };
        let full = batch.len() == BATCH;
        {
            let mut st = shared.state();
            if let Some(last) = batch.last() {
                st.pos = last.seq;
                // Err only when nobody listens, handled below.
                let _ = st.tx.send(Arc::new(batch));
            }
            if st.tx.receiver_count() == 0 {
                st.running = false;
                return;
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = wake.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// A subscriber's state; every `await` in [`Sub::next`] leaves it consistent, so
/// a `next` dropped half-way loses nothing.
struct Sub {
    store: Store,
    shared: Arc<Shared>,
    filter: EventFilter,
    /// The seq of the last event returned.
    cursor: i64,
    /// A copy of `cursor` readable while a `next` is in flight.
    cursor_out: Arc<AtomicI64>,
    /// Events read from the store, not yet returned.
    buf: VecDeque<Event>,
    /// The feed's batch being taken, and how far.
    cur: Option<(Arc<Vec<Event>>, usize)>,
    rx: Option<broadcast::Receiver<Arc<Vec<Event>>>>,
    /// Every event after `cursor` not yet in `buf` will come on `rx`.
    fed: bool,
    /// The followed tree's members, while fed.
    members: Option<HashSet<RequestId>>,
}

impl Sub {
    fn take(&mut self, e: Event) -> Event {
        self.cursor = e.seq;
        self.cursor_out.store(e.seq, Ordering::Relaxed);
        e
    }

    fn matches(&self, e: &Event) -> bool {
        let f = &self.filter;
        f.request_id
            .as_ref()
            .is_none_or(|r| e.request_id.as_ref() == Some(r))
            && f.session_id
                .as_ref()
                .is_none_or(|s| e.session_id.as_ref() == Some(s))
            && (f.tree.is_none()
                || match (&self.members, &e.request_id) {
                    (Some(m), Some(r)) => m.contains(r),
                    _ => false,
                })
    }

    /// The next event already held.
    fn pop(&mut self) -> Option<Event> {
        if let Some(e) = self.buf.pop_front() {
            return Some(self.take(e));
        }
        while let Some((batch, i)) = self.cur.take() {
            let mut i = i;
            while i < batch.len() {
                let e = &batch[i];
                i += 1;
                if e.seq > self.cursor && self.matches(e) {
                    let e = e.clone();
                    if i < batch.len() {
                        self.cur = Some((batch, i));
                    }
                    return Some(self.take(e));
                }
            }
        }
        None
    }

    /// One read of the store by this subscriber's cursor; true if it came back short.
    async fn read_own(&mut self) -> Result<bool, HarnessError> {
        self.shared.own_reads.fetch_add(1, Ordering::Relaxed);
        let batch = self
            .store
            .events_after(self.cursor, self.filter.clone(), BATCH)
            .await?;
        let short = batch.len() < BATCH;
        self.buf.extend(batch);
        Ok(short)
    }

    /// A batch of the feed arrived: grow the tree by its delegations (all of them,
    /// even below the cursor, which may be ahead of the log), then hold it.
    fn arrived(&mut self, batch: Arc<Vec<Event>>) {
        if let Some(m) = &mut self.members {
            for e in batch.iter() {
                if e.kind == EventKind::DelegateStarted
                    && e.request_id.as_ref().is_some_and(|r| m.contains(r))
                    && let Some(child) = e.payload.get("child_request_id").and_then(|c| c.as_str())
                {
                    m.insert(RequestId::from_trusted(child.to_string()));
                }
            }
        }
        self.cur = Some((batch, 0));
    }

    fn detach(&mut self) {
        self.rx = None;
        self.fed = false;
        self.members = None;
        self.cur = None;
    }

    async fn next(&mut self) -> Result<Event, HarnessError> {
        loop {
            if let Some(e) = self.pop() {
                return Ok(e);
            }
            if self.rx.is_none() {
                let (rx, pos) = join(&self.shared, &self.store).await?;
                self.rx = Some(rx);
                // At or past the feed's position: the feed brings all the rest.
                self.fed = self.cursor >= pos;
            }
            if !self.fed {
                if self.read_own().await? {
                    self.fed = true;
                }
                continue;
            }
            if let (Some(root), None) = (&self.filter.tree, &self.members) {
                // Read after the subscription to the feed: a request delegated later
                // has its `delegate.started` in a batch to come.
                self.shared.own_reads.fetch_add(1, Ordering::Relaxed);
                let ids = self.store.subtree_ids(root).await?;
                self.members = Some(ids.into_iter().collect());
            }
            let rx = self.rx.as_mut().expect("joined above");
            match rx.recv().await {
                Ok(batch) => self.arrived(batch),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.shared.detached.fetch_add(1, Ordering::Relaxed);
                    self.detach();
                }
                // The feed's task ended (store error, runtime gone): start another.
                Err(broadcast::error::RecvError::Closed) => self.detach(),
            }
        }
    }

    async fn try_next(&mut self) -> Result<Option<Event>, HarnessError> {
        if let Some(e) = self.pop() {
            return Ok(Some(e));
        }
        // Whatever the feed has not brought yet: later batches drop it by seq.
        self.read_own().await?;
        Ok(self.pop())
    }
}

type Pending = Pin<Box<dyn Future<Output = Result<Event, HarnessError>> + Send>>;

/// A resumable stream of committed events, in seq order, each once; see the
/// module's documentation. Also a [`futures_util::Stream`] that never ends (a
/// store error is an item; polling again retries from the cursor).
pub struct EventStream {
    sub: Arc<tokio::sync::Mutex<Sub>>,
    cursor: Arc<AtomicI64>,
    /// The `poll_next` in flight.
    pending: Option<Pending>,
}

impl EventStream {
    pub(crate) fn new(store: Store, feed: &Feed, from_seq: i64, filter: EventFilter) -> Self {
        let cursor = Arc::new(AtomicI64::new(from_seq));
        let sub = Sub {
            store,
            shared: feed.shared.clone(),
            filter,
            cursor: from_seq,
            cursor_out: cursor.clone(),
            buf: VecDeque::new(),
            cur: None,
            rx: None,
            fed: false,
            members: None,
        };
        Self {
            sub: Arc::new(tokio::sync::Mutex::new(sub)),
            cursor,
            pending: None,
        }
    }

    /// The seq of the last event returned: pass it to `subscribe` to resume.
    pub fn cursor(&self) -> i64 {
        self.cursor.load(Ordering::Relaxed)
    }

    /// The next committed event, waiting for one if needed. Cancel-safe: a call
    /// dropped before it returns loses nothing.
    pub async fn next(&mut self) -> Result<Event, HarnessError> {
        self.pending = None;
        self.sub.lock().await.next().await
    }

    /// The next committed event if one is already there (in the store now), without
    /// waiting for a commit.
    pub async fn try_next(&mut self) -> Result<Option<Event>, HarnessError> {
        self.pending = None;
        self.sub.lock().await.try_next().await
    }
}

impl futures_util::Stream for EventStream {
    type Item = Result<Event, HarnessError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let sub = this.sub.clone();
        let fut = this
            .pending
            .get_or_insert_with(|| Box::pin(async move { sub.lock_owned().await.next().await }));
        match fut.as_mut().poll(cx) {
            Poll::Ready(r) => {
                this.pending = None;
                Poll::Ready(Some(r))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
