//! Aggregates for health and overview: counts come from indexed queries only.

use crate::{SqliteStore, StoreError};
use harness_core::*;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

/// Queue and record counts at one instant.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StoreStats {
    /// Admitted root requests not started yet: what `queue_capacity` bounds.
    pub queued: u64,
    /// Root requests runnable again after an approval or a recovery (not counted
    /// against capacity: they were admitted already).
    pub resuming: u64,
    /// Root requests executing (delegated children run inside their root's slot).
    pub running: u64,
    /// Root requests paused on an approval in their tree.
    pub waiting_approval: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub pending_approvals: u64,
    pub oldest_pending_approval: Option<Timestamp>,
    /// Pending approvals that expire before the horizon passed to [`Store::stats`].
    pub approvals_expiring_soon: u64,
    /// Pending approvals already past expiry (maintenance has not marked them yet).
    pub approvals_overdue: u64,
    pub last_seq: i64,
    pub db_bytes: u64,
}

/// The result of one full integrity check.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IntegrityCheck {
    pub ok: bool,
    pub detail: String,
    pub checked_at: Timestamp,
    pub took_ms: u64,
}

/// A running request with no committed activity for too long.
#[derive(Clone, Debug, Serialize)]
pub struct StuckRequest {
    pub id: RequestId,
    pub session_id: SessionId,
    pub agent: String,
    pub current_agent: Option<String>,
    pub last_activity_at: Timestamp,
}

impl SqliteStore {
    /// Counts by status and approval expiry relative to `now` and `horizon`.
    pub async fn stats(
        &self,
        now: Timestamp,
        horizon: Timestamp,
    ) -> Result<StoreStats, StoreError> {
        let bytes = self.disk_bytes();
        let mut s = self.read(move |c| stats(c, now, horizon)).await?;
        s.db_bytes = bytes;
        Ok(s)
    }

    /// Running requests whose last activity is older than `before`.
    pub async fn stuck_requests(&self, before: Timestamp) -> Result<Vec<StuckRequest>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, session_id, agent, current_agent, last_activity_at FROM requests \
                 WHERE status = 'running' AND parent_id IS NULL AND last_activity_at < ?1 ORDER BY last_activity_at LIMIT 100",
            )?;
            let rows = stmt.query_map([before.0], |r| {
                Ok(StuckRequest {
                    id: RequestId::from_trusted(r.get(0)?),
                    session_id: SessionId::from_trusted(r.get(1)?),
                    agent: r.get(2)?,
                    current_agent: r.get(3)?,
                    last_activity_at: Timestamp(r.get(4)?),
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Runs SQLite `quick_check` now (reads the whole file) and records the result in
    /// the store's sidecar file (not in the database: a damaged file cannot be trusted
    /// to keep the result that says so).
    pub async fn check_integrity(&self, now: Timestamp) -> Result<IntegrityCheck, StoreError> {
        let started = std::time::Instant::now();
        let result = self.integrity_check().await?;
        let check = IntegrityCheck {
            ok: result.is_ok(),
            detail: result.err().unwrap_or_else(|| "ok".to_string()),
            checked_at: now,
            took_ms: started.elapsed().as_millis() as u64,
        };
        let dir = self.dir().to_path_buf();
        let db = self.db_path().to_path_buf();
        let row = check.clone();
        let recorded = tokio::task::spawn_blocking(move || {
            let len = crate::sqlite::file_len(&db);
            crate::sidecar::update(&dir, len, |k| {
                if row.ok && len > k.min_db_bytes {
                    k.min_db_bytes = len;
                    k.seen_at = SystemClock.now();
                }
                k.last_integrity = Some(row);
            })
        })
        .await
        .map_err(|e| StoreError::Io(format!("{e}")))
        .and_then(|r| r);
        // The check ran: its result is reported even when it cannot be recorded (a
        // full disk), so `runtime health` can still say what is wrong.
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "could not record the integrity check's result");
        }
        Ok(check)
    }

    /// The last recorded integrity check, if any (from the sidecar file).
    pub async fn last_integrity(&self) -> Result<Option<IntegrityCheck>, StoreError> {
        Ok(crate::sidecar::read(self.dir()).and_then(|k| k.last_integrity))
    }

    /// SQLite `quick_check`: `Ok(())` or the problems it found. Reads the whole file.
    pub async fn integrity_check(&self) -> Result<Result<(), String>, StoreError> {
        let checked = self
            .read(|c| {
                let mut stmt = c.prepare("PRAGMA quick_check")?;
                let rows: Vec<String> = stmt
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                Ok(if rows == ["ok"] {
                    Ok(())
                } else {
                    Err(rows.join("; "))
                })
            })
            .await;
        match checked {
            // Damage bad enough that the check itself stops is a result, not a failure to check.
            Err(e) if e.is_corrupt() => Ok(Err(e.to_string())),
            other => other,
        }
    }

    /// The cheap checks of [`Store::open`] again, now: the database file against its
    /// header and against the sidecar's record of its size. A file smaller than
    /// recorded gets a full check (it may have been compacted by another program).
    /// Reads 100 bytes, except in that case.
    pub(crate) async fn check_file(&self) -> Result<(), StoreError> {
        let dir = self.dir().to_path_buf();
        let db = self.db_path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let known = crate::sidecar::read(&dir);
            let len = std::fs::metadata(&db)
                .map(|m| m.len())
                .map_err(|e| StoreError::Damaged {
                    path: db.clone(),
                    problem: format!("the file cannot be read: {e}"),
                })?;
            let problem = match crate::sidecar::look(&db, len, known.as_ref()) {
                crate::sidecar::Look::Fine => return Ok(()),
                crate::sidecar::Look::Damaged(p) => p,
                crate::sidecar::Look::Shrunk(p) => match crate::sqlite::full_check(&db) {
                    Ok(()) => {
                        crate::sidecar::update(&dir, len, |k| {
                            k.min_db_bytes = len;
                            k.seen_at = SystemClock.now();
                        })?;
                        return Ok(());
                    }
                    Err(found) => format!("{p}; the full check found: {found}"),
                },
            };
            Err(StoreError::Damaged { path: db, problem })
        })
        .await
        .map_err(|e| StoreError::Io(format!("checking the store file failed: {e}")))?
    }
}

fn count(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<u64, StoreError> {
    Ok(c.prepare_cached(sql)?
        .query_row(p, |r| r.get::<_, i64>(0))? as u64)
}

fn stats(c: &Connection, now: Timestamp, horizon: Timestamp) -> Result<StoreStats, StoreError> {
    let by_status = |s: RequestStatus| {
        count(
            c,
            "SELECT COUNT(*) FROM requests WHERE status = ?1",
            [s.as_str()],
        )
    };
    let roots = |s: RequestStatus| {
        count(
            c,
            "SELECT COUNT(*) FROM requests WHERE status = ?1 AND parent_id IS NULL",
            [s.as_str()],
        )
    };
    let pending = "SELECT COUNT(*) FROM approvals WHERE status = 'pending'";
    let queued = count(
        c,
        &format!(
            "SELECT COUNT(*) FROM requests WHERE {}",
            crate::requests::WAITING_FIRST_START
        ),
        [],
    )?;
    Ok(StoreStats {
        queued,
        // Two statements, two snapshots: an admission between them may make
        // `queued` the larger (the load bench's scrapes did).
        resuming: roots(RequestStatus::Queued)?.saturating_sub(queued),
        running: roots(RequestStatus::Running)?,
        waiting_approval: roots(RequestStatus::WaitingApproval)?,
        completed: by_status(RequestStatus::Completed)?,
        failed: by_status(RequestStatus::Failed)?,
        cancelled: by_status(RequestStatus::Cancelled)?,
        pending_approvals: count(c, pending, [])?,
        oldest_pending_approval: c
            .prepare_cached("SELECT MIN(created_at) FROM approvals WHERE status = 'pending'")?
            .query_row([], |r| r.get::<_, Option<i64>>(0))?
            .map(Timestamp),
        approvals_expiring_soon: count(
            c,
            "SELECT COUNT(*) FROM approvals WHERE status = 'pending' AND expires_at > ?1 AND expires_at <= ?2",
            params![now.0, horizon.0],
        )?,
        approvals_overdue: count(
            c,
            "SELECT COUNT(*) FROM approvals WHERE status = 'pending' AND expires_at <= ?1",
            [now.0],
        )?,
        last_seq: c.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?,
        db_bytes: 0,
    })
}
