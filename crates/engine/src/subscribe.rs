//! Lossless subscriptions, with one shared reader of the store per harness.
//!
//! The store is the only source: every event a subscriber gets was read from it by
//! cursor, so a subscription is the same in-process, over the wire and after a
//! restart (resume with the last seq seen: no gap, no duplicate, seq order).
//!
//! **The shared feed.** While anyone subscribes, one task per [`crate::Harness`]
//! reads every event after its position once per wake-up (the store's wake-ups, and
//! a 100 ms poll for what they cannot tell; `Store::feed_events_after`, on SQLite
//! on a connection of its own, never queued behind other reads; on PostgreSQL a
//! read that finds committed events held back by an older open transaction, which
//! no wake-up announces the end of, looks again after 1 ms, doubling up to the
//! poll) and hands the batch
//! to the subscribers it concerns, who filter it in memory. N subscribers cost one store read per
//! wake-up, not N. The feed routes by the narrowest key a filter names: a request's
//! subscribers get (and are woken for) only batches holding that request's events,
//! a session's only those holding the session's; unfiltered and tree subscribers
//! get every batch. With 200 sessions followed, a batch wakes the few it concerns,
//! not all 200, and a quiet session's subscriber is never woken. The feed's
//! position only ever comes from what a read returned, so on PostgreSQL it never
//! passes an event a later read could still reveal (the store's watermark: see
//! `harness_store`'s `pg/events.rs`). The task ends when its last
//! subscriber leaves; the next one starts it again from the store's `last_seq`.
//!
//! **Joining.** A subscriber reads the store by its own cursor (with its filter, in
//! SQL) until a read comes back short, then takes the feed's batches. It registers
//! with the feed *before* that read: the feed's batches cover every event after the
//! feed's position at that moment, the read covers everything up to the store's
//! head, which is past that position, and events at or below the subscriber's
//! cursor are dropped from batches, so nothing is missed and nothing is repeated. A
//! subscriber whose cursor is already at or past the feed's position takes the feed
//! at once.
//!
//! **Bounded memory.** Subscribers hold only batches among the last
//! 2 × [`FEED_BATCHES`] the feed read (of at most 512 events, shared: a batch is
//! freed once every subscriber it went to took it). A subscriber that still holds
//! a batch [`FEED_BATCHES`] older than the one it is handed, or than the feed's
//! latest at a sweep (every [`FEED_BATCHES`] reads), is a slow consumer and is
//! detached: its batches are dropped, it reads the store by its cursor again, at
//! its own pace and holding one batch at a time, then rejoins. Nothing is lost and
//! the stream stays open; a slow consumer costs store reads, never memory, and
//! never holds back the feed or a run. A subscriber whose filter matches nothing for a while
//! holds nothing, so it is never detached for that.
//!
//! **Trees.** [`EventFilter::tree`] follows a request and everything delegated under
//! it. Store reads walk `parent_id` in SQL. Fed subscribers keep the tree's members
//! in memory: read from the store when they join the feed, then grown by every
//! `delegate.started` of a member (the store commits it with the child's row, and
//! before any event of the child).

use crate::HarnessError;
use harness_core::{Event, EventFilter, EventKind, RequestId, SessionId};
use harness_store::{Store, StoreError};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Notify;

/// Events one store read returns at most (the feed's and a subscriber's own).
pub const BATCH: usize = 512;
/// How many batches the feed reads before a subscriber still holding an older one
/// is detached (and reads the store by its cursor until it catches up).
pub const FEED_BATCHES: usize = 64;
/// How often the feed reads even without a wake-up.
const POLL: Duration = Duration::from_millis(100);
/// The first look again after a read found events held back (PostgreSQL).
const HELD_BACK_FIRST: Duration = Duration::from_millis(1);

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
    /// Batches handed to subscribers (each wakes one): a batch goes only to the
    /// subscribers whose filter it can match.
    pub handed: u64,
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
    handed: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            state: Mutex::new(State {
                running: false,
                generation: 0,
                pos: 0,
                read: 0,
                routes: Routes::default(),
            }),
            shared_reads: AtomicU64::new(0),
            own_reads: AtomicU64::new(0),
            detached: AtomicU64::new(0),
            handed: AtomicU64::new(0),
        }
    }
}

struct State {
    /// A task is reading for the subscribers.
    running: bool,
    /// Which start of the task is the current one.
    generation: u64,
    /// Every event after `pos` is (or will be) in a batch handed to the inboxes
    /// registered from now on that it concerns.
    pos: i64,
    /// Batches the feed has read (their numbers: the window is counted in them).
    read: u64,
    routes: Routes,
}

/// Where the feed hands batches: each registered inbox under the narrowest key
/// its filter names (an event matching the filter always carries that key).
#[derive(Default)]
struct Routes {
    next_id: u64,
    by_request: HashMap<RequestId, Vec<Arc<Inbox>>>,
    by_session: HashMap<SessionId, Vec<Arc<Inbox>>>,
    every: Vec<Arc<Inbox>>,
}

enum Route {
    Request(RequestId),
    Session(SessionId),
    Every,
}

impl Route {
    fn of(filter: &EventFilter) -> Route {
        match (&filter.request_id, &filter.session_id) {
            (Some(r), _) => Route::Request(r.clone()),
            (None, Some(s)) => Route::Session(s.clone()),
            (None, None) => Route::Every,
        }
    }
}

impl Routes {
    fn list(&mut self, route: &Route) -> &mut Vec<Arc<Inbox>> {
        match route {
            Route::Request(r) => self.by_request.entry(r.clone()).or_default(),
            Route::Session(s) => self.by_session.entry(s.clone()).or_default(),
            Route::Every => &mut self.every,
        }
    }

    fn is_empty(&self) -> bool {
        self.every.is_empty() && self.by_request.is_empty() && self.by_session.is_empty()
    }

    /// Forgets inbox `id` (already gone if the feed closed every inbox), and its
    /// key once no inbox is left under it.
    fn remove(&mut self, route: &Route, id: u64) {
        fn drop_from<K: std::hash::Hash + Eq>(
            map: &mut HashMap<K, Vec<Arc<Inbox>>>,
            key: &K,
            id: u64,
        ) {
            if let Some(list) = map.get_mut(key) {
                list.retain(|i| i.id != id);
                if list.is_empty() {
                    map.remove(key);
                }
            }
        }
        match route {
            Route::Request(r) => drop_from(&mut self.by_request, r, id),
            Route::Session(s) => drop_from(&mut self.by_session, s, id),
            Route::Every => self.every.retain(|i| i.id != id),
        }
    }

    /// Hands batch `n` to every inbox it concerns, counting each in `handed`.
    fn hand(&self, n: u64, batch: &Arc<Vec<Event>>, handed: &AtomicU64) {
        let give = |inbox: &Arc<Inbox>| inbox.give(n, batch, handed);
        self.every.iter().for_each(give);
        if !self.by_request.is_empty() || !self.by_session.is_empty() {
            for e in batch.iter() {
                if let Some(list) = e.request_id.as_ref().and_then(|r| self.by_request.get(r)) {
                    list.iter().for_each(give);
                }
                if let Some(list) = e.session_id.as_ref().and_then(|s| self.by_session.get(s)) {
                    list.iter().for_each(give);
                }
            }
        }
    }

    fn inboxes(&self) -> impl Iterator<Item = &Arc<Inbox>> {
        self.every
            .iter()
            .chain(self.by_request.values().flatten())
            .chain(self.by_session.values().flatten())
    }

    /// Every inbox is told the feed ended, and forgotten.
    fn close_all(&mut self) {
        let lists = std::mem::take(&mut self.every)
            .into_iter()
            .chain(self.by_request.drain().flat_map(|(_, l)| l))
            .chain(self.by_session.drain().flat_map(|(_, l)| l));
        for inbox in lists {
            inbox.close();
        }
    }
}

/// One subscriber's batches from the feed, with what woke it.
struct Inbox {
    id: u64,
    held: Mutex<Held>,
    wake: Notify,
}

#[derive(Default)]
struct Held {
    /// Batches handed and not yet taken, with their numbers.
    batches: VecDeque<(u64, Arc<Vec<Event>>)>,
    /// Batches were dropped for being too old: the subscriber must read the store.
    lagged: bool,
    /// The feed's task ended.
    closed: bool,
}

impl Held {
    /// Drops everything held if the oldest batch is [`FEED_BATCHES`] older than
    /// `n` (the subscriber must read the store); true if it did.
    fn expire(&mut self, n: u64) -> bool {
        let old = self
            .batches
            .front()
            .is_some_and(|(m, _)| m + FEED_BATCHES as u64 <= n);
        if old {
            self.batches.clear();
            self.lagged = true;
        }
        old
    }
}

enum Taken {
    Batch(Arc<Vec<Event>>),
    Nothing,
    Lagged,
    Closed,
}

impl Inbox {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds batch `n` (once, however many of its events concern this inbox) and
    /// wakes the subscriber; if it still holds a batch [`FEED_BATCHES`] older, it
    /// lagged: everything held is dropped instead. Counted in `handed` before
    /// the subscriber can see it.
    fn give(&self, n: u64, batch: &Arc<Vec<Event>>, handed: &AtomicU64) {
        let mut h = self.held();
        if h.lagged || h.batches.back().is_some_and(|(m, _)| *m == n) {
            return;
        }
        handed.fetch_add(1, Ordering::Relaxed);
        if !h.expire(n) {
            h.batches.push_back((n, batch.clone()));
        }
        drop(h);
        self.wake.notify_one();
    }

    /// Detaches a subscriber still holding a batch [`FEED_BATCHES`] older than `n`.
    fn sweep(&self, n: u64) {
        let expired = self.held().expire(n);
        if expired {
            self.wake.notify_one();
        }
    }

    fn close(&self) {
        self.held().closed = true;
        self.wake.notify_one();
    }

    fn take(&self) -> Taken {
        let mut h = self.held();
        if h.lagged {
            Taken::Lagged
        } else if let Some((_, b)) = h.batches.pop_front() {
            Taken::Batch(b)
        } else if h.closed {
            Taken::Closed
        } else {
            Taken::Nothing
        }
    }
}

/// A subscriber's place in the feed's routes; leaving it (drop) unregisters.
struct Registration {
    shared: Arc<Shared>,
    route: Route,
    inbox: Arc<Inbox>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared
            .state()
            .routes
            .remove(&self.route, self.inbox.id);
    }
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
            handed: self.shared.handed.load(Ordering::Relaxed),
        }
    }
}

impl State {
    fn register(&mut self, shared: &Arc<Shared>, filter: &EventFilter) -> Registration {
        let routes = &mut self.routes;
        routes.next_id += 1;
        let inbox = Arc::new(Inbox {
            id: routes.next_id,
            held: Mutex::default(),
            wake: Notify::new(),
        });
        let route = Route::of(filter);
        routes.list(&route).push(inbox.clone());
        Registration {
            shared: shared.clone(),
            route,
            inbox,
        }
    }
}

/// Registers with the feed, starting its task if none runs: the registration,
/// and the position after which the batches it is handed cover every event its
/// filter matches.
async fn join(
    shared: &Arc<Shared>,
    store: &Store,
    filter: &EventFilter,
) -> Result<(Registration, i64), StoreError> {
    {
        let mut st = shared.state();
        if st.running {
            let reg = st.register(shared, filter);
            return Ok((reg, st.pos));
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
    let reg = st.register(shared, filter);
    Ok((reg, st.pos))
}

/// Ends a feed task's tenure however the task ends: a task that did not end by
/// itself (store error, runtime shut down) closes every inbox, so its subscribers
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
            st.routes.close_all();
        }
    }
}

/// The feed task: one read per wake-up, handed to the subscribers it concerns.
async fn read_for_all(shared: Arc<Shared>, store: Store, generation: u64) {
    let _tenure = Tenure {
        shared: shared.clone(),
        generation,
    };
    let mut wake = store.wakeups().await;
    // How soon to look again while committed events are held back.
    let mut again = HELD_BACK_FIRST;
    loop {
        let pos = shared.state().pos;
        shared.shared_reads.fetch_add(1, Ordering::Relaxed);
        let (batch, held_back) = match store.feed_events_after(pos, BATCH).await {
            Ok(read) => (read.events, read.held_back),
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
                st.read += 1;
                st.routes.hand(st.read, &Arc::new(batch), &shared.handed);
                if st.read.is_multiple_of(FEED_BATCHES as u64) {
                    // A subscriber no batch went to lately may still hold old ones.
                    st.routes.inboxes().for_each(|i| i.sweep(st.read));
                }
            }
            if st.routes.is_empty() {
                st.running = false;
                return;
            }
        }
        if full {
            continue;
        }
        // Events held back wait for an older transaction to end, which no wake-up
        // announces: look again soon, backing off (a transaction left open for
        // long holds them back that long) up to the poll.
        let pause = match held_back {
            true => {
                let now = again;
                again = (again * 2).min(POLL);
                now
            }
            false => {
                again = HELD_BACK_FIRST;
                POLL
            }
        };
        tokio::select! {
            _ = wake.changed() => {}
            _ = tokio::time::sleep(pause) => {}
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
    reg: Option<Registration>,
    /// Every event after `cursor` not yet in `buf` that the filter matches will
    /// be handed to `reg`'s inbox.
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
        self.reg = None;
        self.fed = false;
        self.members = None;
        self.cur = None;
    }

    async fn next(&mut self) -> Result<Event, HarnessError> {
        loop {
            if let Some(e) = self.pop() {
                return Ok(e);
            }
            if self.reg.is_none() {
                let (reg, pos) = join(&self.shared, &self.store, &self.filter).await?;
                self.reg = Some(reg);
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
            let inbox = self.reg.as_ref().expect("joined above").inbox.clone();
            match inbox.take() {
                Taken::Batch(batch) => self.arrived(batch),
                // A batch handed after `take` looked leaves a permit: no wake-up lost.
                Taken::Nothing => inbox.wake.notified().await,
                Taken::Lagged => {
                    self.shared.detached.fetch_add(1, Ordering::Relaxed);
                    self.detach();
                }
                // The feed's task ended (store error, runtime gone): start another.
                Taken::Closed => self.detach(),
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
            reg: None,
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
