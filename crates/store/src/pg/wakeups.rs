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
//! committer does not wait for the NOTIFY's answer (it comes after COMMIT's). One
//! connection per process LISTENs (started by the first wake-up handle) and
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
