//! The store's own health check: reachable, intact, how large.
//!
//! SQLite: the file is compared with its header and `store.json` (cheap, catches
//! truncation at any size), then the full integrity check runs live on stores up
//! to [`LIVE_CHECK_MAX_BYTES`]; on larger ones (it reads the whole file) the
//! worker's recorded result is used.

use crate::sqlite::SqliteStore;
use crate::{IntegrityCheck, StoreError};
use harness_core::{HealthStatus, Timestamp, human_bytes, relative};
use serde::Serialize;
use std::time::Duration;

/// How often a worker runs the full integrity check.
pub const INTEGRITY_EVERY: Duration = Duration::from_secs(600);
/// On a large store, a recorded integrity result younger than this is reused as is.
const INTEGRITY_FRESH: Duration = Duration::from_secs(900);
/// Older than this, a recorded result is reported as a warning.
const INTEGRITY_STALE: Duration = Duration::from_secs(24 * 3600);
/// Stores up to this size are checked live every time (a recorded result may predate
/// the damage); larger ones use the worker's recorded result.
const LIVE_CHECK_MAX_BYTES: u64 = 64 << 20;

/// The outcome of [`crate::Store::health_check`].
#[derive(Clone, Debug, Serialize)]
pub struct StoreCheck {
    pub status: HealthStatus,
    /// What an operator reads: where the store is, what was found, what to do.
    pub detail: String,
    /// The database server's facts (PostgreSQL).
    pub database: Option<harness_core::DatabaseInfo>,
}

impl StoreCheck {
    pub(crate) fn new(status: HealthStatus, detail: String) -> StoreCheck {
        StoreCheck {
            status,
            detail,
            database: None,
        }
    }
}

impl SqliteStore {
    pub(crate) fn location(&self) -> String {
        self.dir().display().to_string()
    }

    pub(crate) async fn verify(&self, now: Timestamp) -> Result<(), StoreError> {
        let check = self.check_integrity(now).await?;
        if check.ok {
            return Ok(());
        }
        Err(StoreError::Damaged {
            path: self.db_path().to_path_buf(),
            problem: format!("its integrity check fails: {}", check.detail),
        })
    }

    pub(crate) async fn health_check(
        &self,
        now: Timestamp,
        deep: bool,
    ) -> Result<StoreCheck, StoreError> {
        // The file against its header and its recorded size: catches truncation at any
        // size, whatever a recorded check said.
        if let Err(e) = self.check_file().await {
            return Ok(StoreCheck::new(HealthStatus::Fail, e.to_string()));
        }
        let bytes = self.disk_bytes();
        let (result, live) = if deep || bytes <= LIVE_CHECK_MAX_BYTES {
            (self.check_integrity(now).await?, true)
        } else {
            let cached = self.last_integrity().await?;
            match cached
                .as_ref()
                .filter(|c| c.checked_at.age(now) < INTEGRITY_FRESH)
            {
                Some(c) => (c.clone(), false),
                None => return Ok(self.large_store_check(now, bytes, cached.as_ref())),
            }
        };
        if !result.ok {
            return Ok(self.integrity_failed(&result));
        }
        let when = if live {
            String::new()
        } else {
            format!(" (checked {} ago)", relative(result.checked_at.age(now)))
        };
        Ok(StoreCheck::new(
            HealthStatus::Ok,
            format!(
                "{} reachable, integrity ok{when}, {} on disk",
                self.dir().display(),
                human_bytes(bytes)
            ),
        ))
    }

    fn integrity_failed(&self, c: &IntegrityCheck) -> StoreCheck {
        StoreCheck::new(
            HealthStatus::Fail,
            format!(
                "{} failed its integrity check at {}: {}. Stop every process using it, then \
                 restore it from a backup, or start a new store with `agent-harness serve --new-store`",
                self.db_path().display(),
                c.checked_at,
                c.detail
            ),
        )
    }

    /// A large store without a fresh recorded check: report the last one, do not run it here.
    fn large_store_check(
        &self,
        now: Timestamp,
        bytes: u64,
        last: Option<&IntegrityCheck>,
    ) -> StoreCheck {
        let (status, when) = match last {
            Some(c) if !c.ok => return self.integrity_failed(c),
            Some(c) if c.checked_at.age(now) < INTEGRITY_STALE => (
                HealthStatus::Ok,
                format!("integrity ok {} ago", relative(c.checked_at.age(now))),
            ),
            Some(c) => (
                HealthStatus::Warn,
                format!(
                    "last integrity check {} ago",
                    relative(c.checked_at.age(now))
                ),
            ),
            None => (HealthStatus::Warn, "integrity not checked yet".to_string()),
        };
        StoreCheck::new(
            status,
            format!(
                "{} reachable, {when} ({} on disk: the worker checks it every {}; `runtime health --deep` checks now)",
                self.dir().display(),
                human_bytes(bytes),
                relative(INTEGRITY_EVERY)
            ),
        )
    }
}
