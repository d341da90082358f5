//! Rate limits shared by every call that counts against one provider budget.
//!
//! A [`RateLimits`] is built once per process (the engine's `Harness`) and holds one
//! [`Limiter`] per key (`rate_limit.key` of a model in `models.yaml`, else the
//! model's name), so every run of the worker, and every model entry naming the same
//! key, draws on one budget:
//! - requests per minute: a sliding window of the last 60 s of call starts (each
//!   attempt, retries included, is a request to the provider). A call starts only
//!   when fewer than N started in the window; the N+1th waits until the oldest start
//!   leaves it. A sliding log rather than a token bucket: it never lets more than N
//!   through in any 60 s, which is what a provider's per-minute quota counts, and it
//!   holds at most N instants.
//! - tokens per minute: the tokens (input + output) the provider reported for the
//!   calls that finished in the last 60 s. A call waits while they reach the budget.
//!   Calls in flight are counted when they finish: the budget bounds what starts,
//!   not what is outstanding.
//! - a provider's `Retry-After` (on a retryable answer: 408, 429, 5xx) blocks the key
//!   until then: every call of the key waits for it instead of each finding out.
//!
//! Waiting calls queue in order (a fair mutex): the first waiter sleeps until the key
//! is ready, the rest behind it. Dropping a waiting call's future (a cancelled
//! request) leaves the queue at once. Every wait is reported to listeners
//! ([`RateLimits::on_wait`]) when it starts, when its expected end moves, and when it
//! ends; [`RateLimits::state`] is the state of every key now.

use harness_config::{ModelConfig, Provider, Workspace};
use harness_core::{RequestId, Timestamp};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// The window both budgets count over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// A key's budget (`rate_limit` of `models.yaml`); both unset: only `Retry-After`
/// blocks it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
}

impl Budget {
    pub fn of(config: &ModelConfig) -> Budget {
        let r = config.rate_limit.as_ref();
        Budget {
            requests_per_minute: r.and_then(|r| r.requests_per_minute),
            tokens_per_minute: r.and_then(|r| r.tokens_per_minute),
        }
    }
}

/// What a waiting call waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitReason {
    /// The provider answered a call of this key with `Retry-After`.
    RetryAfter,
    /// `requests_per_minute` calls started in the last 60 s.
    RequestsPerMinute,
    /// The calls that finished in the last 60 s used `tokens_per_minute`.
    TokensPerMinute,
    /// Other calls of the key wait before it (its `until` is theirs: a lower bound).
    Queue,
}

impl WaitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::RetryAfter => "retry_after",
            WaitReason::RequestsPerMinute => "requests_per_minute",
            WaitReason::TokensPerMinute => "tokens_per_minute",
            WaitReason::Queue => "queue",
        }
    }
}

impl std::fmt::Display for WaitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WaitReason::RetryAfter => "the provider's Retry-After",
            WaitReason::RequestsPerMinute => "requests_per_minute",
            WaitReason::TokensPerMinute => "tokens_per_minute",
            WaitReason::Queue => "earlier calls of the same rate limit",
        })
    }
}

/// A change in one call's wait, as listeners see it.
#[derive(Clone, Debug, PartialEq)]
pub struct WaitEvent {
    /// The rate limit's key.
    pub key: String,
    /// The model (`models.yaml` name) making the call.
    pub model: String,
    /// The request the call is for (None for a call outside any request).
    pub request_id: Option<RequestId>,
    pub change: WaitChange,
}

#[derive(Clone, Debug, PartialEq)]
pub enum WaitChange {
    /// The call waits (first report, or its expected end moved): it may start at
    /// `until` at the earliest.
    Waiting {
        since: Timestamp,
        until: Timestamp,
        reason: WaitReason,
    },
    /// The call stopped waiting: `started` (it goes to the provider now) or it was
    /// dropped (cancelled, stopped, or asked to wait longer than it may).
    Done { waited: Duration, started: bool },
}

/// A call waiting now, in [`LimiterState::waiting`].
#[derive(Clone, Debug, PartialEq)]
pub struct WaitingCall {
    pub model: String,
    pub request_id: Option<RequestId>,
    pub since: Timestamp,
    pub until: Timestamp,
    pub reason: WaitReason,
}

/// One key's state now.
#[derive(Clone, Debug, PartialEq)]
pub struct LimiterState {
    pub key: String,
    pub budget: Budget,
    /// Set while a provider's `Retry-After` holds every call of the key.
    pub blocked_until: Option<Timestamp>,
    /// Calls started in the last 60 s.
    pub calls_in_window: usize,
    /// Tokens reported by the calls that finished in the last 60 s.
    pub tokens_in_window: u64,
    /// The calls waiting, first in line first.
    pub waiting: Vec<WaitingCall>,
}

type Listener = Arc<dyn Fn(&WaitEvent) + Send + Sync>;
type Listeners = Arc<RwLock<Vec<Listener>>>;

/// Every rate limit of one process, by key. Cloning shares it.
#[derive(Clone)]
pub struct RateLimits {
    limiters: Arc<Mutex<BTreeMap<String, Arc<Limiter>>>>,
    listeners: Listeners,
    anchor: Anchor,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            limiters: Default::default(),
            listeners: Default::default(),
            anchor: Anchor::now(),
        }
    }
}

/// The wall clock at one instant of the (monotonic, tokio) clock the limiter keeps
/// time with: its instants are reported as wall-clock times from here.
#[derive(Clone, Copy, Debug)]
struct Anchor {
    wall: Timestamp,
    at: Instant,
}

impl Anchor {
    fn now() -> Anchor {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Anchor {
            wall: Timestamp(ms),
            at: Instant::now(),
        }
    }

    fn wall(&self, at: Instant) -> Timestamp {
        if at >= self.at {
            self.wall.plus(at - self.at)
        } else {
            self.wall.minus(self.at - at)
        }
    }
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self
            .limiters
            .lock()
            .expect("limiters")
            .keys()
            .cloned()
            .collect();
        f.debug_struct("RateLimits").field("keys", &keys).finish()
    }
}

impl RateLimits {
    pub fn new() -> RateLimits {
        RateLimits::default()
    }

    /// A limiter for each HTTP model's key in `workspace` (so its state lists them
    /// before any call).
    pub fn for_workspace(workspace: &Workspace) -> RateLimits {
        let limits = RateLimits::new();
        for (name, m) in &workspace.models {
            if m.provider != Provider::Scripted {
                limits.limiter(m.rate_limit_key(name), Budget::of(m));
            }
        }
        limits
    }

    /// The limiter of `key`, made with `budget` if it is new (models sharing a key
    /// agree on its budget: `validate` sees to it).
    pub fn limiter(&self, key: &str, budget: Budget) -> Arc<Limiter> {
        let mut limiters = self.limiters.lock().expect("limiters");
        limiters
            .entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(Limiter {
                    key: key.to_string(),
                    budget,
                    window: Mutex::new(Window::default()),
                    line: tokio::sync::Mutex::new(()),
                    listeners: self.listeners.clone(),
                    anchor: self.anchor,
                })
            })
            .clone()
    }

    /// Calls `f` at every change of a call's wait, on the waiting call's task: it
    /// must not block. Listeners stay for the life of the `RateLimits`.
    pub fn on_wait(&self, f: impl Fn(&WaitEvent) + Send + Sync + 'static) {
        self.listeners.write().expect("listeners").push(Arc::new(f));
    }

    /// Every key's state now, by key.
    pub fn state(&self) -> Vec<LimiterState> {
        let limiters: Vec<Arc<Limiter>> = self
            .limiters
            .lock()
            .expect("limiters")
            .values()
            .cloned()
            .collect();
        limiters.iter().map(|l| l.state()).collect()
    }
}

/// One key's budget and what counts against it.
pub struct Limiter {
    key: String,
    budget: Budget,
    window: Mutex<Window>,
    /// Waiting calls queue here (tokio's mutex is FIFO): the holder is the next to start.
    line: tokio::sync::Mutex<()>,
    listeners: Listeners,
    anchor: Anchor,
}

#[derive(Default)]
struct Window {
    /// When calls started, oldest first, within the last 60 s.
    starts: VecDeque<Instant>,
    /// Tokens reported, with when, oldest first, within the last 60 s.
    tokens: VecDeque<(Instant, u64)>,
    token_sum: u64,
    blocked_until: Option<Instant>,
    /// The calls waiting now, by ticket (in the order they came).
    waiting: BTreeMap<u64, WaitingCall>,
    next_ticket: u64,
}

impl Window {
    fn prune(&mut self, now: Instant) {
        while self.starts.front().is_some_and(|s| *s + WINDOW <= now) {
            self.starts.pop_front();
        }
        while let Some((at, n)) = self.tokens.front().copied()
            && at + WINDOW <= now
        {
            self.tokens.pop_front();
            self.token_sum -= n;
        }
        if self.blocked_until.is_some_and(|b| b <= now) {
            self.blocked_until = None;
        }
    }

    /// When a call may start (None: now), and what holds it until then.
    fn ready_at(&self, now: Instant, budget: Budget) -> Option<(Instant, WaitReason)> {
        let mut ready: Option<(Instant, WaitReason)> = None;
        let mut later = |at: Instant, why: WaitReason| {
            if at > now && ready.is_none_or(|(r, _)| at > r) {
                ready = Some((at, why));
            }
        };
        if let Some(b) = self.blocked_until {
            later(b, WaitReason::RetryAfter);
        }
        if let Some(rpm) = budget.requests_per_minute {
            let rpm = rpm as usize;
            if self.starts.len() >= rpm {
                // Fewer than `rpm` remain once this one leaves the window.
                let oldest_to_go = self.starts[self.starts.len() - rpm];
                later(oldest_to_go + WINDOW, WaitReason::RequestsPerMinute);
            }
        }
        if let Some(tpm) = budget.tokens_per_minute
            && self.token_sum >= tpm
        {
            let mut sum = self.token_sum;
            for (at, n) in &self.tokens {
                sum -= n;
                if sum < tpm {
                    later(*at + WINDOW, WaitReason::TokensPerMinute);
                    break;
                }
            }
        }
        ready
    }
}

/// A call may not wait this long: the provider asked the key to wait past the
/// caller's patience (its `retry.max_backoff`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLong {
    pub wait: Duration,
}

/// Who is asking, for the wait reports.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    pub model: &'a str,
    pub request_id: Option<&'a RequestId>,
}

impl Limiter {
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Waits until a call of this key may start, and counts it as started. A
    /// `Retry-After` block longer than `max_block` from now is refused at once
    /// (`TooLong`, with how long it would be). Dropping the future leaves the queue.
    pub async fn acquire(
        &self,
        caller: Caller<'_>,
        max_block: Option<Duration>,
    ) -> Result<(), TooLong> {
        let mut wait = Wait {
            limiter: self,
            caller,
            ticket: None,
            since: Instant::now(),
            last: None,
        };
        let _turn = match self.line.try_lock() {
            Ok(turn) => turn,
            Err(_) => {
                let now = Instant::now();
                let (until, _) = self
                    .window()
                    .ready_at(now, self.budget)
                    .unwrap_or((now, WaitReason::Queue));
                wait.report(until, WaitReason::Queue);
                self.line.lock().await
            }
        };
        loop {
            let now = Instant::now();
            let ready = {
                let mut w = self.window();
                w.prune(now);
                let ready = w.ready_at(now, self.budget);
                if ready.is_none() {
                    w.starts.push_back(now);
                }
                ready
            };
            let Some((until, reason)) = ready else {
                wait.started();
                return Ok(());
            };
            if reason == WaitReason::RetryAfter
                && let Some(max) = max_block
                && until - now > max
            {
                return Err(TooLong { wait: until - now });
            }
            wait.report(until, reason);
            // A block set meanwhile moves `until` later: the next turn sees it.
            tokio::time::sleep_until(until).await;
        }
    }

    /// Counts `tokens` (reported by a call that finished now) against the window.
    pub fn record_tokens(&self, tokens: u64) {
        if tokens == 0 {
            return;
        }
        let now = Instant::now();
        let mut w = self.window();
        w.prune(now);
        w.tokens.push_back((now, tokens));
        w.token_sum += tokens;
    }

    /// The provider asked to wait `after`: no call of this key starts before then
    /// (a later block than one set already wins). Waiting calls are told their new
    /// expected end.
    pub fn block_for(&self, after: Duration) {
        let until = Instant::now() + after;
        let moved: Vec<WaitEvent> = {
            let mut w = self.window();
            if w.blocked_until.is_some_and(|b| b >= until) {
                return;
            }
            w.blocked_until = Some(until);
            let at = self.anchor.wall(until);
            w.waiting
                .values_mut()
                .filter(|c| c.until < at)
                .map(|c| {
                    c.until = at;
                    c.reason = WaitReason::RetryAfter;
                    self.event(
                        &c.model,
                        c.request_id.as_ref(),
                        WaitChange::Waiting {
                            since: c.since,
                            until: at,
                            reason: WaitReason::RetryAfter,
                        },
                    )
                })
                .collect()
        };
        for e in moved {
            self.emit(&e);
        }
    }

    /// This key's state now.
    pub fn state(&self) -> LimiterState {
        let now = Instant::now();
        let mut w = self.window();
        w.prune(now);
        LimiterState {
            key: self.key.clone(),
            budget: self.budget,
            blocked_until: w.blocked_until.map(|b| self.anchor.wall(b)),
            calls_in_window: w.starts.len(),
            tokens_in_window: w.token_sum,
            waiting: w.waiting.values().cloned().collect(),
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().expect("rate limit window")
    }

    fn event(&self, model: &str, request_id: Option<&RequestId>, change: WaitChange) -> WaitEvent {
        WaitEvent {
            key: self.key.clone(),
            model: model.to_string(),
            request_id: request_id.cloned(),
            change,
        }
    }

    /// Tells every listener (outside the window's lock: a listener may read state).
    fn emit(&self, e: &WaitEvent) {
        let listeners = self.listeners.read().expect("listeners").clone();
        for l in listeners {
            l(e);
        }
    }
}

/// One call's wait: listed in the window while it lasts, reported when it starts,
/// moves and ends (also when its future is dropped).
struct Wait<'a> {
    limiter: &'a Limiter,
    caller: Caller<'a>,
    ticket: Option<u64>,
    since: Instant,
    /// The last `until` and reason reported.
    last: Option<(Timestamp, WaitReason)>,
}

impl Wait<'_> {
    fn report(&mut self, until: Instant, reason: WaitReason) {
        let until = self.limiter.anchor.wall(until);
        if self.last == Some((until, reason)) {
            return;
        }
        self.last = Some((until, reason));
        let since = self.limiter.anchor.wall(self.since);
        let call = WaitingCall {
            model: self.caller.model.to_string(),
            request_id: self.caller.request_id.cloned(),
            since,
            until,
            reason,
        };
        {
            let mut w = self.limiter.window();
            let ticket = *self.ticket.get_or_insert_with(|| {
                w.next_ticket += 1;
                w.next_ticket
            });
            w.waiting.insert(ticket, call);
        }
        let e = self.limiter.event(
            self.caller.model,
            self.caller.request_id,
            WaitChange::Waiting {
                since,
                until,
                reason,
            },
        );
        self.limiter.emit(&e);
    }

    fn started(&mut self) {
        self.end(true);
    }

    fn end(&mut self, started: bool) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        self.limiter.window().waiting.remove(&ticket);
        let e = self.limiter.event(
            self.caller.model,
            self.caller.request_id,
            WaitChange::Done {
                waited: self.since.elapsed(),
                started,
            },
        );
        self.limiter.emit(&e);
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        self.end(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    fn budget(rpm: Option<u32>, tpm: Option<u64>) -> Budget {
        Budget {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
        }
    }

    fn caller<'a>(id: &'a RequestId) -> Caller<'a> {
        Caller {
            model: "m",
            request_id: Some(id),
        }
    }

    /// Every event the limits report, in order.
    fn recorded(limits: &RateLimits) -> Arc<StdMutex<Vec<WaitEvent>>> {
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let s = seen.clone();
        limits.on_wait(move |e| s.lock().unwrap().push(e.clone()));
        seen
    }

    /// Lets spawned tasks run up to their next wait, without moving the clock.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn n_calls_pass_in_a_minute_and_the_next_waits_for_the_window_to_free() {
        let limits = RateLimits::new();
        let l = limits.limiter("k", budget(Some(3), None));
        let id = RequestId::generate();
        let t0 = Instant::now();
        for gap in [0, 10, 10] {
            tokio::time::sleep(Duration::from_secs(gap)).await;
            l.acquire(caller(&id), None).await.unwrap();
        }
        assert_eq!(t0.elapsed(), Duration::from_secs(20), "three pass at once");
        assert_eq!(l.state().calls_in_window, 3);
        // The fourth waits until the first start (t0) leaves the window, the fifth
        // until the second (t0 + 10 s) does.
        l.acquire(caller(&id), None).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_secs(60));
        l.acquire(caller(&id), None).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_secs(70));
        assert_eq!(l.state().calls_in_window, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_calls_start_in_the_order_they_came() {
        let limits = RateLimits::new();
        let l = limits.limiter("k", budget(Some(1), None));
        let t0 = Instant::now();
        l.acquire(caller(&RequestId::generate()), None)
            .await
            .unwrap();
        let order = Arc::new(StdMutex::new(Vec::new()));
        let mut tasks = vec![];
        for i in 0..3 {
            let (l, order) = (l.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let id = RequestId::generate();
                l.acquire(caller(&id), None).await.unwrap();
                order.lock().unwrap().push((i, t0.elapsed().as_secs()));
            }));
            settle().await;
        }
        let state = l.state();
        assert_eq!(state.waiting.len(), 3);
        assert_eq!(state.waiting[0].reason, WaitReason::RequestsPerMinute);
        assert_eq!(state.waiting[1].reason, WaitReason::Queue);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![(0, 60), (1, 120), (2, 180)]);
        assert!(l.state().waiting.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_blocks_every_caller_until_then() {
        let limits = RateLimits::new();
        let seen = recorded(&limits);
        let l = limits.limiter("account", Budget::default());
        let t0 = Instant::now();
        l.block_for(Duration::from_secs(5));
        let mut tasks = vec![];
        for _ in 0..3 {
            let l = l.clone();
            tasks.push(tokio::spawn(async move {
                let id = RequestId::generate();
                l.acquire(caller(&id), Some(Duration::from_secs(30)))
                    .await
                    .unwrap();
                t0.elapsed()
            }));
        }
        settle().await;
        let state = limits.state();
        assert_eq!(state.len(), 1);
        assert_eq!(state[0].key, "account");
        assert_eq!(state[0].waiting.len(), 3);
        let blocked = state[0].blocked_until.expect("blocked");
        // A later Retry-After moves every waiting call's end.
        tokio::time::sleep(Duration::from_secs(2)).await;
        l.block_for(Duration::from_secs(6));
        let moved = l.state().blocked_until.unwrap();
        assert!(
            moved.millis() - blocked.millis() >= 2900,
            "{blocked} {moved}"
        );
        assert!(
            l.state()
                .waiting
                .iter()
                .all(|w| w.until == moved && w.reason == WaitReason::RetryAfter)
        );
        // An earlier one does not shorten it.
        l.block_for(Duration::from_secs(1));
        assert_eq!(l.state().blocked_until, Some(moved));
        for t in tasks {
            assert_eq!(t.await.unwrap(), Duration::from_secs(8));
        }
        let state = l.state();
        assert_eq!((state.blocked_until, state.calls_in_window), (None, 3));
        let seen = seen.lock().unwrap();
        let done: Vec<_> = seen
            .iter()
            .filter(|e| matches!(e.change, WaitChange::Done { started: true, .. }))
            .collect();
        assert_eq!(done.len(), 3, "{seen:#?}");
        assert!(seen.iter().any(|e| matches!(
            e.change,
            WaitChange::Waiting { until, reason: WaitReason::RetryAfter, .. } if until == moved
        )));
        assert!(seen.iter().all(|e| e.key == "account" && e.model == "m"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_block_longer_than_the_caller_may_wait_is_refused_at_once() {
        let limits = RateLimits::new();
        let l = limits.limiter("k", Budget::default());
        l.block_for(Duration::from_secs(120));
        let t0 = Instant::now();
        let id = RequestId::generate();
        let err = l
            .acquire(caller(&id), Some(Duration::from_secs(30)))
            .await
            .unwrap_err();
        assert_eq!(err.wait, Duration::from_secs(120));
        assert_eq!(t0.elapsed(), Duration::ZERO);
        assert!(l.state().waiting.is_empty());
        assert_eq!(l.state().calls_in_window, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_reported_in_the_window_hold_calls_while_over_budget() {
        let limits = RateLimits::new();
        let l = limits.limiter("k", budget(None, Some(1000)));
        let id = RequestId::generate();
        let t0 = Instant::now();
        l.acquire(caller(&id), None).await.unwrap();
        l.record_tokens(600);
        tokio::time::sleep(Duration::from_secs(10)).await;
        l.acquire(caller(&id), None).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_secs(10), "600 < 1000: no wait");
        l.record_tokens(500);
        assert_eq!(l.state().tokens_in_window, 1100);
        // Over budget until the 600 reported at t0 leave the window (500 < 1000).
        l.acquire(caller(&id), None).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_secs(60));
        assert_eq!(l.state().tokens_in_window, 500);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(l.state().tokens_in_window, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_wait_leaves_the_queue_at_once() {
        let limits = RateLimits::new();
        let seen = recorded(&limits);
        let l = limits.limiter("k", Budget::default());
        l.block_for(Duration::from_secs(30));
        let cancel = tokio_util::sync::CancellationToken::new();
        let (l2, c2) = (l.clone(), cancel.clone());
        let first = RequestId::generate();
        let f = first.clone();
        let waiter = tokio::spawn(async move {
            tokio::select! {
                r = l2.acquire(caller(&f), None) => Some(r),
                () = c2.cancelled() => None,
            }
        });
        // A second caller queues behind the first.
        let l3 = l.clone();
        let second = tokio::spawn(async move {
            let id = RequestId::generate();
            l3.acquire(caller(&id), None).await
        });
        settle().await;
        assert_eq!(l.state().waiting.len(), 2);
        let t0 = Instant::now();
        cancel.cancel();
        assert_eq!(waiter.await.unwrap(), None);
        assert_eq!(
            t0.elapsed(),
            Duration::ZERO,
            "the cancel ends the wait at once"
        );
        let state = l.state();
        assert_eq!(state.waiting.len(), 1);
        assert_ne!(state.waiting[0].request_id.as_ref(), Some(&first));
        assert!(
            seen.lock()
                .unwrap()
                .iter()
                .any(|e| e.request_id.as_ref() == Some(&first)
                    && matches!(e.change, WaitChange::Done { started: false, .. }))
        );
        // The one behind it takes its place and starts when the block ends.
        second.await.unwrap().unwrap();
        assert_eq!(t0.elapsed(), Duration::from_secs(30));
        assert_eq!(
            l.state().calls_in_window,
            1,
            "the dropped call never started"
        );
    }

    #[test]
    fn models_sharing_a_key_share_one_limiter() {
        let limits = RateLimits::new();
        let a = limits.limiter("account", budget(Some(5), None));
        let b = limits.limiter("account", budget(Some(5), None));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(limits.state().len(), 1);
    }
}
