//! Worker heartbeats are rows, so any view can tell whether a worker is alive.

use crate::rows::{self, WORKER_COLS};
use crate::{SqliteStore, StoreError, events};
use harness_core::*;
use rusqlite::params;
use std::time::Duration;

/// [`crate::Store::list_workers`] lists workers stopped or dead this recently (and
/// every live one, and every dead one that still holds running requests)…
pub const WORKERS_RECENT: Duration = Duration::from_secs(3600);
/// …at most this many, newest first.
pub const WORKERS_LISTED: usize = 50;

/// A listed worker's state: a stop recorded wins (its lock may be let go a
/// moment later); else its lock says whether its process lives.
pub(crate) fn summary(worker: Worker, alive: bool, running: u64) -> WorkerSummary {
    let state = if worker.stopped_at.is_some() {
        WorkerState::Stopped
    } else if alive {
        WorkerState::Alive
    } else {
        WorkerState::Dead
    };
    WorkerSummary {
        worker,
        state,
        running,
    }
}

impl SqliteStore {
    pub async fn register_worker(&self, w: Worker, recovered: usize) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                &format!(
                    "INSERT INTO workers ({WORKER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6)"
                ),
                params![
                    w.id.as_str(),
                    w.pid,
                    w.host,
                    w.started_at.0,
                    w.heartbeat_at.0,
                    w.version
                ],
            )?;
            let body = EventBody::WorkerStarted {
                worker_id: w.id.clone(),
                pid: w.pid,
                host: w.host.clone(),
                recovered_requests: recovered,
            };
            events::append(c, w.started_at, &[body.runtime()])?;
            Ok(())
        })
        .await
    }

    /// The heartbeat row. SQLite has one worker at a time (the flock) and no
    /// leases: no claim is ever lost, so the list is empty.
    pub async fn heartbeat(
        &self,
        id: &WorkerId,
        now: Timestamp,
    ) -> Result<Vec<RequestId>, StoreError> {
        let id = id.clone();
        self.write(move |c| {
            c.prepare_cached("UPDATE workers SET heartbeat_at = ?2 WHERE id = ?1")?
                .execute(params![id.as_str(), now.0])?;
            Ok(Vec::new())
        })
        .await
    }

    pub async fn worker_stopped(&self, id: &WorkerId, now: Timestamp) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(move |c| {
            c.execute(
                "UPDATE workers SET stopped_at = ?2, heartbeat_at = ?2 WHERE id = ?1",
                params![id.as_str(), now.0],
            )?;
            let body = EventBody::WorkerStopped {
                worker_id: id.clone(),
            };
            events::append(c, now, &[body.runtime()])?;
            Ok(())
        })
        .await
    }

    /// The most recently started workers, newest first.
    pub async fn workers(&self, limit: usize) -> Result<Vec<Worker>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {WORKER_COLS} FROM workers ORDER BY started_at DESC LIMIT ?1"
            ))?;
            let rows = stmt.query_map([limit as i64], rows::worker)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// The workers to show at `now` (see [`WORKERS_RECENT`]), newest first, each with
    /// the root requests it runs. One worker holds a SQLite store: the holder of the
    /// worker lock is the live one; any other not stopped is dead.
    pub async fn list_workers(&self, now: Timestamp) -> Result<Vec<WorkerSummary>, StoreError> {
        let live = self.worker_holder().await?.map(|h| h.worker_id);
        let since = now.minus(WORKERS_RECENT).0;
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {WORKER_COLS}, \
                   (SELECT COUNT(*) FROM requests r WHERE r.status = 'running' \
                    AND r.parent_id IS NULL AND r.worker_id = workers.id) \
                 FROM workers WHERE id = ?1 OR heartbeat_at >= ?2 OR id IN \
                   (SELECT worker_id FROM requests WHERE status = 'running' AND parent_id IS NULL) \
                 ORDER BY started_at DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![live.as_deref(), since, WORKERS_LISTED as i64],
                |r| Ok((rows::worker(r)?, r.get::<_, i64>(7)?)),
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (w, running) = row?;
                let alive = live.as_deref() == Some(w.id.as_str());
                out.push(summary(w, alive, running as u64));
            }
            Ok(out)
        })
        .await
    }
}
