//! Worker heartbeats are rows, so any view can tell whether a worker is alive.

use crate::rows::{self, WORKER_COLS};
use crate::{SqliteStore, StoreError, events};
use harness_core::*;
use rusqlite::params;

impl SqliteStore {
    pub async fn register_worker(&self, w: Worker, recovered: usize) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                &format!("INSERT INTO workers ({WORKER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, NULL)"),
                params![
                    w.id.as_str(),
                    w.pid,
                    w.host,
                    w.started_at.0,
                    w.heartbeat_at.0
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
}
