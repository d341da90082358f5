//! Wake-ups: one API for "something was committed, maybe by another process".
//!
//! This process's own commits are published on a `watch` channel right after they
//! commit. Other processes' commits reach it the way the backend allows: SQLite has
//! no notifications, so it polls `PRAGMA data_version` (cheap, and it changes only
//! when another connection commits). PostgreSQL is told with LISTEN/NOTIFY
//! (`pg/wakeups.rs`), and polls only while its listener is down.

use crate::sqlite::SqliteStore;
use std::time::Duration;
use tokio::sync::watch;

/// How often SQLite looks for other processes' commits while someone waits.
pub(crate) const SQLITE_POLL: Duration = Duration::from_millis(100);

/// Tells when something may have been committed. Always a hint: whoever is woken
/// re-reads the records (events by cursor, the queue by a claim).
pub struct Wakeups {
    /// This process's commits.
    local: watch::Receiver<i64>,
    other: Other,
}

/// PostgreSQL's notifications of commits that may have given a worker work to claim.
struct FreesWork(watch::Receiver<i64>);

enum Other {
    /// The `data_version` last seen (None until read once).
    Sqlite {
        store: SqliteStore,
        version: Option<i64>,
    },
    /// Other processes' commits arrive on `local` through LISTEN; while the
    /// listener is down, every check says "maybe".
    Postgres(crate::pg::Listening, FreesWork),
}

impl Wakeups {
    pub(crate) async fn sqlite(store: &SqliteStore) -> Wakeups {
        let mut local = store.committed_seq();
        local.borrow_and_update();
        let version = store.data_version().await.ok();
        Wakeups {
            local,
            other: Other::Sqlite {
                store: store.clone(),
                version,
            },
        }
    }

    pub(crate) fn postgres(
        local: watch::Receiver<i64>,
        frees_work: watch::Receiver<i64>,
        listening: crate::pg::Listening,
    ) -> Wakeups {
        Wakeups {
            local,
            other: Other::Postgres(listening, FreesWork(frees_work)),
        }
    }

    /// Waits until a commit by any process may have given a worker work to claim
    /// (`EventKind::may_free_work`), as PostgreSQL notifies it. On SQLite, with no
    /// notifications, it never returns: a worker polls ([`Wakeups::check`]).
    pub async fn work_freed(&mut self) {
        match &mut self.other {
            Other::Postgres(_, FreesWork(rx)) => {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            Other::Sqlite { .. } => std::future::pending::<()>().await,
        }
    }

    /// Whether anything was committed since the last call (or since this handle was
    /// made): by this process, or by another as the backend sees it now. Does not wait.
    pub async fn check(&mut self) -> bool {
        let local = self.local.has_changed().unwrap_or(false);
        if local {
            self.local.borrow_and_update();
        }
        self.check_other().await || local
    }

    /// Waits until something was committed since the last call: this process's
    /// commits wake it at once, another process's within the backend's polling
    /// interval (SQLite: 100 ms).
    pub async fn changed(&mut self) {
        let poll = self.poll();
        loop {
            tokio::select! {
                r = self.local.changed() => {
                    if r.is_err() {
                        // The store is closing: nothing more will commit here.
                        std::future::pending::<()>().await;
                    }
                    self.local.borrow_and_update();
                    return;
                }
                _ = tokio::time::sleep(poll) => {
                    if self.check_other().await {
                        return;
                    }
                }
            }
        }
    }

    /// How often other processes' commits are looked for while waiting.
    fn poll(&self) -> Duration {
        match &self.other {
            Other::Sqlite { .. } => SQLITE_POLL,
            // Notified: the timer only notices a listener that went down.
            Other::Postgres(..) => crate::pg::FALLBACK_POLL,
        }
    }

    async fn check_other(&mut self) -> bool {
        match &mut self.other {
            Other::Postgres(listening, _) => !listening.is_up(),
            Other::Sqlite { store, version } => {
                let Ok(now) = store.data_version().await else {
                    // Unreadable now: say "maybe", so the caller looks for itself.
                    return true;
                };
                let changed = version.is_some_and(|v| v != now);
                *version = Some(now);
                changed
            }
        }
    }
}
