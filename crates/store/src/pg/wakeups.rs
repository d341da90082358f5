//! Wake-ups across processes: LISTEN/NOTIFY.
//!
//! NOTIFY is not sent inside a step's transaction: PostgreSQL serialises the
//! commits of notifying transactions on one lock held through their commit flush,
//! which would cap writers as a global lock does. A transaction that appended
//! events sends `pg_notify` right after its `COMMIT`, in the same round trip (the
//! statement is prepared once per connection), as a transaction of its own. That
//! transaction gets a transaction id (PostgreSQL assigns one to every notifying
//! transaction), so it writes a commit record: it commits with
//! `synchronous_commit = off`, so it never waits for a WAL flush (a second flush
//! per step otherwise, while holding the notify lock). Losing a notification in a
//! server crash loses only a hint: waiters read the records, and poll. The
//! committer does not wait for the NOTIFY's answer (it comes after COMMIT's).
//!
//! NOTIFYs are paced per store handle ([`Notifier`]): each is a transaction that
//! signals every listening backend, and one per step cost the server a good part
//! of what the step did. A commit takes its NOTIFY along while the handle's budget
//! allows ([`NOTIFY_BURST`] at once, refilled at one per [`NOTIFY_EVERY`]), so
//! commits of a quiet process (a CLI's, a worker's few) tell at once. Past the
//! budget (a busy worker), a commit defers its NOTIFY: one sent when the budget
//! has room again tells for every commit deferred meanwhile. Measured
//! (`agent-harness-bench postgres`, aggregate, one worker): 3,370–3,660 steps/s
//! with a NOTIFY per commit, 3,760–4,100 paced so. The refill was one per 5 ms
//! first: a worker running one request at a time (four commits in 5 – 6 ms) then
//! spent its burst and deferred NOTIFYs by up to 5 ms, which was the tail of commit
//! → subscriber in another process (p99 7 ms; 3.1 – 4.3 ms at 2 ms, with aggregate
//! throughput unchanged within the noise: `crates/bench/README.md`). (A process that exits with a NOTIFY
//! deferred may leave it unsent: waiters elsewhere find the commit at their next
//! poll.)
//!
//! One connection per process LISTENs (started by the first wake-up handle) and
//! reconnects after a failure; while it is down, waiters poll.

use super::PgStore;
use crate::Wakeups;
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_postgres::AsyncMessage;

/// Sent after a commit that appended events: wakes every LISTENing process. Its own
/// transaction commits without waiting for a flush (see the module's comment).
/// Its payload is [`FREES_WORK`] when the commit may have given a worker work to claim.
pub(super) const NOTIFY: &str =
    "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)";

/// A busy store handle sends at most one NOTIFY per this, on average.
const NOTIFY_EVERY: Duration = Duration::from_millis(2);
/// NOTIFYs a quiet store handle may send at once, each with its commit.
const NOTIFY_BURST: f64 = 8.0;

/// Paces a store handle's NOTIFYs: a token bucket of [`NOTIFY_BURST`] refilled at
/// one per [`NOTIFY_EVERY`]. A commit takes a token and its NOTIFY along; without
/// one, its NOTIFY is deferred until a token comes, shared by every commit
/// deferred until then.
#[derive(Default)]
pub(super) struct Notifier {
    state: std::sync::Mutex<Pacing>,
}

#[derive(Default)]
struct Pacing {
    /// The bucket at `at` (None: never used, full).
    tokens: f64,
    at: Option<tokio::time::Instant>,
    /// Commits wait for the deferred NOTIFY: `Some(frees_work)` over them all.
    deferred: Option<bool>,
}

impl Pacing {
    /// The tokens now, refilled since the last look.
    fn refill(&mut self, now: tokio::time::Instant) -> f64 {
        self.tokens = match self.at {
            None => NOTIFY_BURST,
            Some(at) => {
                let earned =
                    now.saturating_duration_since(at).as_secs_f64() / NOTIFY_EVERY.as_secs_f64();
                (self.tokens + earned).min(NOTIFY_BURST)
            }
        };
        self.at = Some(now);
        self.tokens
    }
}

impl Notifier {
    /// Whether a commit about to be sent may take its NOTIFY with it (a token is
    /// there and none is deferred); if so, the token is spent.
    pub(super) fn may_send_now(&self) -> bool {
        let mut s = self.state.lock().expect("notifier");
        let tokens = s.refill(tokio::time::Instant::now());
        let free = s.deferred.is_none() && tokens >= 1.0;
        if free {
            s.tokens -= 1.0;
        }
        free
    }

    /// A commit that appended events went without its NOTIFY: one NOTIFY, once a
    /// token comes, tells for it and every other commit deferred until then.
    pub(super) fn defer(&self, store: &PgStore, frees_work: bool) {
        let Some(at) = self.defer_until(frees_work) else {
            return;
        };
        let store = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let frees_work = store.inner.notifier.take_deferred();
            if let Err(e) = send_notify(&store, frees_work).await {
                tracing::debug!(error = %e, "a deferred NOTIFY failed (waiters poll)");
            }
        });
    }

    /// Adds a commit to the deferred NOTIFY; when none was deferred yet, when to
    /// send it (when a token comes).
    fn defer_until(&self, frees_work: bool) -> Option<tokio::time::Instant> {
        let mut s = self.state.lock().expect("notifier");
        if let Some(work) = &mut s.deferred {
            *work |= frees_work;
            return None;
        }
        s.deferred = Some(frees_work);
        let now = tokio::time::Instant::now();
        let missing = (1.0 - s.refill(now)).max(0.0);
        Some(now + NOTIFY_EVERY.mul_f64(missing))
    }

    /// The deferred NOTIFY is being sent (its token spent): whether one of its
    /// commits freed work.
    fn take_deferred(&self) -> bool {
        let mut s = self.state.lock().expect("notifier");
        s.refill(tokio::time::Instant::now());
        s.tokens -= 1.0;
        s.deferred.take().unwrap_or_default()
    }
}

/// Sends one NOTIFY on a pooled connection.
async fn send_notify(store: &PgStore, frees_work: bool) -> Result<(), crate::StoreError> {
    let c = store.client().await?;
    let st = c.prepare_cached(NOTIFY).await?;
    let payload = payload(frees_work, &store.inner.handle);
    c.execute(&st, &[&store.inner.channel, &payload]).await?;
    Ok(())
}

/// The payload of a commit that may have given a worker work to claim
/// (`EventKind::may_free_work`) starts with this, then names the store handle that
/// committed (its own commits wake a worker in process already); other commits send
/// an empty payload.
const FREES_WORK: &str = "w";

/// A name for this store handle, unique among the processes on the channel.
pub(super) fn handle_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The NOTIFY payload of a commit by the store handle named `handle`.
pub(super) fn payload(frees_work: bool, handle: &str) -> String {
    match frees_work {
        true => format!("{FREES_WORK}{handle}"),
        false => String::new(),
    }
}

/// How often waiters look again while no LISTEN connection is up.
pub(crate) const FALLBACK_POLL: Duration = Duration::from_millis(100);
/// The pause before the listener reconnects.
const RECONNECT: Duration = Duration::from_millis(500);

/// Whether this process's LISTEN connection is up.
#[derive(Clone, Default)]
pub(crate) struct Listening {
    up: Arc<AtomicBool>,
}

impl Listening {
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }
}

/// The NOTIFY channel of a schema (a channel name is at most 63 bytes).
pub(super) fn channel(schema: &str) -> String {
    let mut c = format!("ah_{schema}");
    c.truncate(63);
    c
}

impl PgStore {
    pub(crate) async fn wakeups(&self) -> Wakeups {
        if !self.inner.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(listen(self.clone()));
        }
        let mut local = self.inner.local.subscribe();
        local.borrow_and_update();
        let mut frees_work = self.inner.frees_work.subscribe();
        frees_work.borrow_and_update();
        Wakeups::postgres(local, frees_work, self.inner.listening.clone())
    }
}

/// Keeps one connection LISTENing; each notification wakes this process's waiters.
/// Ends when the store is dropped (only the task holds a reference then).
async fn listen(store: PgStore) {
    let channel = channel(&store.inner.schema);
    loop {
        if Arc::strong_count(&store.inner) == 1 {
            return;
        }
        match store.inner.driver.connect(tokio_postgres::NoTls).await {
            Ok((client, mut conn)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let mine = format!("{FREES_WORK}{}", store.inner.handle);
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(n)) => {
                                let p = n.payload();
                                let _ = tx.send(p.starts_with(FREES_WORK) && p != mine);
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                });
                if client
                    .batch_execute(&format!("LISTEN {channel}"))
                    .await
                    .is_ok()
                {
                    store.inner.listening.up.store(true, Ordering::Release);
                    // Anything committed while no one listened: look once.
                    store.inner.local.send_modify(|v| *v = v.wrapping_add(1));
                    loop {
                        tokio::select! {
                            got = rx.recv() => match got {
                                Some(frees_work) => {
                                    store.inner.local.send_modify(|v| *v = v.wrapping_add(1));
                                    if frees_work {
                                        store.inner.frees_work.send_modify(|v| *v = v.wrapping_add(1));
                                    }
                                }
                                None => break,
                            },
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                                if Arc::strong_count(&store.inner) == 1 {
                                    driver.abort();
                                    return;
                                }
                            }
                        }
                    }
                    store.inner.listening.up.store(false, Ordering::Release);
                }
                driver.abort();
            }
            Err(e) => {
                tracing::debug!(error = %super::connect_problem(&e), "wake-up listener cannot connect");
            }
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{Instant, advance};

    /// A quiet handle's commits take their NOTIFYs along, a burst's worth; past
    /// it, commits share one NOTIFY sent when a token comes (saying work was freed
    /// if any of them freed work), and a busy handle sends one per refill.
    #[tokio::test(start_paused = true)]
    async fn notifies_are_paced_by_a_token_bucket_and_none_is_dropped() {
        let n = Notifier::default();
        for k in 0..NOTIFY_BURST as usize {
            assert!(
                n.may_send_now(),
                "commit {k} of a quiet handle tells at once"
            );
        }
        assert!(!n.may_send_now(), "past the burst, a commit waits");
        let t0 = Instant::now();
        assert_eq!(n.defer_until(false), Some(t0 + NOTIFY_EVERY));
        assert_eq!(n.defer_until(true), None, "joins the deferred one");
        assert_eq!(n.defer_until(false), None);
        advance(NOTIFY_EVERY).await;
        assert!(!n.may_send_now(), "not while one is deferred");
        assert!(n.take_deferred(), "one commit of the deferred freed work");
        assert!(!n.may_send_now(), "the deferred one took the token");
        let t1 = Instant::now();
        assert_eq!(n.defer_until(false), Some(t1 + NOTIFY_EVERY));
        advance(NOTIFY_EVERY).await;
        assert!(!n.take_deferred(), "none of these freed work");
        // Quiet again: the bucket refills up to a burst.
        advance(NOTIFY_EVERY * 100).await;
        for _ in 0..NOTIFY_BURST as usize {
            assert!(n.may_send_now());
        }
        assert!(!n.may_send_now());
    }
}
