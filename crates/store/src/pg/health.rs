//! Health facts and counts on PostgreSQL.
//!
//! The store check reports the server: reachable, its version, one query's round
//! trip, this process's pool (size, in use, waiting) and the schema's size. The
//! full integrity check reads every table of the schema through (the server
//! verifies page checksums as it reads, when the cluster has them) and is recorded
//! in `integrity_checks` for views to reuse.

use super::PgStore;
use crate::stats::{IntegrityCheck, StoreStats, StuckRequest};
use crate::{StoreCheck, StoreError};
use harness_core::*;
use std::time::Instant;

/// A round trip slower than this is reported as a warning.
const SLOW_ROUND_TRIP_MS: f64 = 50.0;

const TABLES: &[&str] = &[
    "sessions",
    "requests",
    "steps",
    "approvals",
    "events",
    "artifacts",
    "artifact_versions",
    "artifact_blobs",
    "workers",
];

impl PgStore {
    /// The server's facts as this process sees them now.
    pub(crate) async fn database_info(&self) -> DatabaseInfo {
        let status = self.inner.pool.status();
        let mut info = DatabaseInfo {
            backend: "postgres".into(),
            location: self.location(),
            reachable: false,
            server_version: None,
            round_trip_ms: None,
            pool_size: status.max_size,
            pool_in_use: status.size.saturating_sub(status.available),
            pool_waiting: status.waiting,
            bytes: None,
        };
        let Ok(c) = self.client().await else {
            return info;
        };
        let started = Instant::now();
        if c.simple_query("").await.is_err() {
            return info;
        }
        info.round_trip_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
        info.reachable = true;
        let facts = c
            .query_one(
                "SELECT current_setting('server_version'), \
                   (SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
                    WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'm'))",
                &[],
            )
            .await;
        if let Ok(row) = facts {
            info.server_version = row.try_get(0).ok();
            info.bytes = row.try_get::<_, i64>(1).ok().map(|b| b as u64);
        }
        info
    }

    pub(crate) async fn health_check(
        &self,
        now: Timestamp,
        deep: bool,
    ) -> Result<StoreCheck, StoreError> {
        let info = self.database_info().await;
        let mut check = if !info.reachable {
            StoreCheck::new(
                HealthStatus::Fail,
                format!(
                    "{} is not reachable: check that the server runs and the URL in stores.yaml's \
                     `postgres.url_env` variable is right",
                    info.location
                ),
            )
        } else {
            let integrity = if deep {
                Some(self.check_integrity(now).await?)
            } else {
                self.last_integrity().await?
            };
            let rtt = info.round_trip_ms.unwrap_or_default();
            let saturated = info.pool_waiting > 0;
            let (status, integrity_text) = match &integrity {
                Some(c) if !c.ok => (
                    HealthStatus::Fail,
                    format!("integrity check failed at {}: {}", c.checked_at, c.detail),
                ),
                Some(c) => (
                    HealthStatus::Ok,
                    format!("integrity ok {} ago", relative(c.checked_at.age(now))),
                ),
                None => (HealthStatus::Ok, "integrity not checked yet".to_string()),
            };
            let status = if status == HealthStatus::Ok && (rtt > SLOW_ROUND_TRIP_MS || saturated) {
                HealthStatus::Warn
            } else {
                status
            };
            StoreCheck::new(
                status,
                format!(
                    "{} reachable (PostgreSQL {}), round trip {rtt:.2} ms, pool {}/{} in use{}, \
                     {integrity_text}, {}",
                    info.location,
                    info.server_version.as_deref().unwrap_or("?"),
                    info.pool_in_use,
                    info.pool_size,
                    if saturated {
                        format!(
                            " and {} waiting (raise `postgres.pool_size`)",
                            info.pool_waiting
                        )
                    } else {
                        String::new()
                    },
                    human_bytes(info.bytes.unwrap_or_default())
                ),
            )
        };
        check.database = Some(info);
        Ok(check)
    }

    pub(crate) async fn integrity_check(&self) -> Result<Result<(), String>, StoreError> {
        let c = self.client().await?;
        for table in TABLES {
            // Reads every page (the server verifies their checksums, when enabled).
            if let Err(e) = c
                .simple_query(&format!("SELECT count(*) FROM {table}"))
                .await
            {
                if e.as_db_error().is_some() {
                    return Ok(Err(format!("reading table {table}: {e}")));
                }
                return Err(e.into());
            }
        }
        Ok(Ok(()))
    }

    pub(crate) async fn check_integrity(
        &self,
        now: Timestamp,
    ) -> Result<IntegrityCheck, StoreError> {
        let started = Instant::now();
        let result = self.integrity_check().await?;
        let check = IntegrityCheck {
            ok: result.is_ok(),
            detail: result.err().unwrap_or_else(|| "ok".to_string()),
            checked_at: now,
            took_ms: started.elapsed().as_millis() as u64,
        };
        let took = check.took_ms as i64;
        self.read_rows(
            "INSERT INTO integrity_checks (id, ok, detail, checked_at, took_ms) VALUES (1, $1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET ok = $1, detail = $2, checked_at = $3, took_ms = $4",
            &[&check.ok, &check.detail, &check.checked_at.0, &took],
        )
        .await?;
        Ok(check)
    }

    pub(crate) async fn verify(&self, now: Timestamp) -> Result<(), StoreError> {
        let check = self.check_integrity(now).await?;
        if check.ok {
            return Ok(());
        }
        Err(StoreError::Damaged {
            path: self.location().into(),
            problem: format!("its integrity check fails: {}", check.detail),
        })
    }

    pub(crate) async fn last_integrity(&self) -> Result<Option<IntegrityCheck>, StoreError> {
        let row = self
            .read_opt(
                "SELECT ok, detail, checked_at, took_ms FROM integrity_checks WHERE id = 1",
                &[],
            )
            .await?;
        Ok(match row {
            Some(r) => Some(IntegrityCheck {
                ok: r.try_get(0)?,
                detail: r.try_get(1)?,
                checked_at: Timestamp(r.try_get(2)?),
                took_ms: r.try_get::<_, i64>(3)? as u64,
            }),
            None => None,
        })
    }

    pub(crate) async fn stats(
        &self,
        now: Timestamp,
        horizon: Timestamp,
    ) -> Result<StoreStats, StoreError> {
        let row = self
            .read_one(
                &format!(
                    "SELECT \
                       (SELECT COUNT(*) FROM requests WHERE {first}), \
                       (SELECT COUNT(*) FROM requests WHERE status = 'queued' AND parent_id IS NULL), \
                       (SELECT COUNT(*) FROM requests WHERE status = 'running' AND parent_id IS NULL), \
                       (SELECT COUNT(*) FROM requests WHERE status = 'waiting_approval' AND parent_id IS NULL), \
                       (SELECT COUNT(*) FROM requests WHERE status = 'completed'), \
                       (SELECT COUNT(*) FROM requests WHERE status = 'failed'), \
                       (SELECT COUNT(*) FROM requests WHERE status = 'cancelled'), \
                       (SELECT COUNT(*) FROM approvals WHERE status = 'pending'), \
                       (SELECT MIN(created_at) FROM approvals WHERE status = 'pending'), \
                       (SELECT COUNT(*) FROM approvals WHERE status = 'pending' AND expires_at > $1 AND expires_at <= $2), \
                       (SELECT COUNT(*) FROM approvals WHERE status = 'pending' AND expires_at <= $1), \
                       (SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
                        WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'm'))",
                    first = crate::requests::WAITING_FIRST_START
                ),
                &[&now.0, &horizon.0],
            )
            .await?;
        let n = |i: usize| -> Result<u64, StoreError> { Ok(row.try_get::<_, i64>(i)? as u64) };
        let queued = n(0)?;
        Ok(StoreStats {
            queued,
            resuming: n(1)?.saturating_sub(queued),
            running: n(2)?,
            waiting_approval: n(3)?,
            completed: n(4)?,
            failed: n(5)?,
            cancelled: n(6)?,
            pending_approvals: n(7)?,
            oldest_pending_approval: row.try_get::<_, Option<i64>>(8)?.map(Timestamp),
            approvals_expiring_soon: n(9)?,
            approvals_overdue: n(10)?,
            last_seq: self.last_seq().await?,
            db_bytes: n(11)?,
        })
    }

    pub(crate) async fn stuck_requests(
        &self,
        before: Timestamp,
    ) -> Result<Vec<StuckRequest>, StoreError> {
        let rows = self
            .read_rows(
                "SELECT id, session_id, agent, current_agent, last_activity_at FROM requests \
                 WHERE status = 'running' AND parent_id IS NULL AND last_activity_at < $1 \
                 ORDER BY last_activity_at LIMIT 100",
                &[&before.0],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StuckRequest {
                    id: RequestId::from_trusted(r.try_get(0)?),
                    session_id: SessionId::from_trusted(r.try_get(1)?),
                    agent: r.try_get(2)?,
                    current_agent: r.try_get(3)?,
                    last_activity_at: Timestamp(r.try_get(4)?),
                })
            })
            .collect()
    }
}
