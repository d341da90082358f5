//! Workers on PostgreSQL: heartbeat rows (which also renew the worker's leases),
//! and the worker locks. Many workers share one database, so a worker holds, on a
//! connection of its own:
//! - the workspace lock *shared* (any number of workers; [`PgStore::worker_holder`]
//!   probes it exclusively to learn whether any worker runs), and
//! - its own liveness lock, exclusive, keyed by its worker id: while it is held
//!   the worker's process is alive (SIGSTOP included). The server releases both
//!   when the connection ends (the process exiting, however it exits, closes it),
//!   so a dead worker's running requests are recovered at once ([`DEAD_OWNER`]);
//!   a live but silent one's only once their lease expired (and then fenced).

use super::rows::{self, WORKER_COLS};
use super::{PgStore, connect_problem, events, in_tx};
use crate::StoreError;
use crate::worker_lock::{LockHolder, WorkerLock};
use harness_core::*;

const LOCK_KEY: &str = "hashtext('agent-harness worker ' || current_schema())";

/// A worker's liveness lock: the two-key advisory lock (namespace, worker).
const LIVE_KEYS: &str = "hashtext('agent-harness live ' || current_schema()), hashtext($1)";

/// SQL condition on a `requests` row: its `worker_id`'s liveness lock is held by no
/// session (the worker's connection is gone: it is dead). Two-key advisory locks
/// show in `pg_locks` as (classid, objid) with objsubid 2.
pub(crate) const DEAD_OWNER: &str = "NOT EXISTS (SELECT 1 FROM pg_locks l     WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())       AND l.classid = hashtext('agent-harness live ' || current_schema())::oid       AND l.objid = hashtext(requests.worker_id)::oid)";

/// A held lock: its connection, and the task driving it.
pub(crate) struct PgLock {
    _client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PgLock {
    fn drop(&mut self) {
        // Closing the connection releases the lock at once.
        self.task.abort();
    }
}

impl PgStore {
    pub(crate) async fn lock_worker(
        &self,
        worker: &WorkerId,
        since: Timestamp,
    ) -> Result<WorkerLock, StoreError> {
        let lock = self.lock_connection().await?;
        // Shared: every worker holds it. A probe by `worker_holder` holds it
        // exclusively for a moment, so wait for that rather than fail.
        lock._client
            .batch_execute("SET lock_timeout = '5s'")
            .await?;
        let got = lock
            ._client
            .execute(&format!("SELECT pg_advisory_lock_shared({LOCK_KEY})"), &[])
            .await
            .is_ok();
        if got {
            lock._client
                .execute(
                    &format!("SELECT pg_advisory_lock({LIVE_KEYS})"),
                    &[&worker.as_str()],
                )
                .await?;
        }
        if !got {
            let holder = self.holder_row().await?;
            return Err(StoreError::Locked(match holder {
                Some(h) => format!(
                    "the store {} is held by another worker (pid {}, worker {}, since {}); \
                     stop it first, or use `agent-harness request` to hand it work",
                    self.location(),
                    h.pid,
                    h.worker_id,
                    h.since
                ),
                None => format!("the store {} is held by another worker", self.location()),
            }));
        }
        let pid = std::process::id() as i64;
        // The last worker to start, for messages until it has its `workers` row.
        lock._client
            .execute(
                "INSERT INTO worker_lock (id, worker_id, pid, host, since) VALUES (1, $1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET worker_id = $1, pid = $2, host = $3, since = $4",
                &[
                    &worker.as_str(),
                    &pid,
                    &hostname(),
                    &since.to_rfc3339(),
                ],
            )
            .await?;
        Ok(WorkerLock::postgres(lock))
    }

    /// A connection of its own for advisory locks: the server drops them when it ends.
    async fn lock_connection(&self) -> Result<PgLock, StoreError> {
        let (client, conn) = self
            .inner
            .driver
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| StoreError::Unavailable {
                location: self.location(),
                problem: connect_problem(&e),
            })?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        let lock = PgLock {
            _client: client,
            task,
        };
        Ok(lock)
    }

    /// Holds the workspace lock exclusively, on a connection of its own, until the
    /// returned lock is dropped: no worker starts meanwhile (one starting waits
    /// 5 s, then is refused). `None` while a worker holds it.
    pub(crate) async fn lock_exclusive(&self) -> Result<Option<PgLock>, StoreError> {
        let lock = self.lock_connection().await?;
        let got: bool = lock
            ._client
            .query_one(&format!("SELECT pg_try_advisory_lock({LOCK_KEY})"), &[])
            .await?
            .try_get(0)?;
        Ok(got.then_some(lock))
    }

    pub(crate) async fn worker_holder(&self) -> Result<Option<LockHolder>, StoreError> {
        // Taking the lock to test it: the connection goes back to the pool only once
        // it let go again (dropped halfway, it is closed, and the lock with it).
        let c = super::Guarded(Some(self.client().await?), Default::default());
        let free: bool = c
            .object()
            .query_one(&format!("SELECT pg_try_advisory_lock({LOCK_KEY})"), &[])
            .await?
            .try_get(0)?;
        if free {
            c.object()
                .query_one(&format!("SELECT pg_advisory_unlock({LOCK_KEY})"), &[])
                .await?;
        }
        c.1.store(true, std::sync::atomic::Ordering::Release);
        drop(c);
        if free {
            return Ok(None);
        }
        self.holder_row().await
    }

    /// The most recently started worker whose liveness lock is held (else the last
    /// to take the lock, while it has no `workers` row yet).
    async fn holder_row(&self) -> Result<Option<LockHolder>, StoreError> {
        let live = self
            .read_opt(
                &format!(
                    "SELECT id, pid, started_at FROM workers \
                     WHERE stopped_at IS NULL AND NOT {} ORDER BY started_at DESC LIMIT 1",
                    DEAD_OWNER.replace("requests.worker_id", "workers.id")
                ),
                &[],
            )
            .await?;
        if let Some(r) = live {
            return Ok(Some(LockHolder {
                worker_id: r.try_get(0)?,
                pid: r.try_get::<_, i64>(1)? as u32,
                since: Timestamp(r.try_get(2)?).to_rfc3339(),
            }));
        }
        let row = self
            .read_opt(
                "SELECT worker_id, pid, since FROM worker_lock WHERE id = 1",
                &[],
            )
            .await?;
        Ok(match row {
            Some(r) => Some(LockHolder {
                worker_id: r.try_get(0)?,
                pid: r.try_get::<_, i64>(1)? as u32,
                since: r.try_get(2)?,
            }),
            None => None,
        })
    }

    pub(crate) async fn register_worker(
        &self,
        w: Worker,
        recovered: usize,
    ) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            let pid = w.pid as i64;
            tx.execute(
                &format!(
                    "INSERT INTO workers ({WORKER_COLS}) VALUES ($1, $2, $3, $4, $5, NULL, $6)"
                ),
                &[
                    &w.id.as_str(),
                    &pid,
                    &w.host,
                    &w.started_at.0,
                    &w.heartbeat_at.0,
                    &w.version,
                ],
            )
            .await?;
            let body = EventBody::WorkerStarted {
                worker_id: w.id.clone(),
                pid: w.pid,
                host: w.host.clone(),
                recovered_requests: recovered,
            };
            events::append(tx, w.started_at, &[body.runtime()]).await?;
            Ok(())
        })
    }

    /// The heartbeat row, and the lease of every root this process claimed and
    /// still runs, each renewal conditional on the lease token its claim issued.
    /// Returns the roots whose lease this process no longer holds (claimed again
    /// elsewhere after it expired, or settled by another process). Their stale
    /// token stays here, so every later commit of theirs from this process is
    /// refused (`StoreError::LeaseLost`) rather than made unconditional.
    pub(crate) async fn heartbeat(
        &self,
        id: &WorkerId,
        now: Timestamp,
    ) -> Result<Vec<RequestId>, StoreError> {
        let expires = self.lease_expiry(now);
        let held: Vec<(RequestId, String)> = self
            .leases()
            .iter()
            .map(|(r, t)| (r.clone(), t.clone()))
            .collect();
        let ids: Vec<&str> = held.iter().map(|(r, _)| r.as_str()).collect();
        let tokens: Vec<&str> = held.iter().map(|(_, t)| t.as_str()).collect();
        // The renewal skips rows another transaction holds (a step commit, often a
        // group of them: `group.rs`) rather than wait for them while holding every
        // other root's row: it can neither deadlock with a group nor make the
        // commits that lock a root (pauses, resolutions) queue behind one. A row
        // skipped is renewed at the next beat; whether it is still this worker's is
        // read apart, without a lock.
        let ours: std::collections::HashSet<String> = in_tx!(self, |tx| {
            let out = tx
                .pipeline(&[
                    super::Stmt::exec(
                        "UPDATE workers SET heartbeat_at = $2 WHERE id = $1",
                        &[&id.as_str(), &now.0],
                    ),
                    super::Stmt::exec(
                        "WITH free AS (SELECT r.id FROM requests r \
                         JOIN unnest($1::text[], $2::text[]) AS h(id, token) \
                         ON r.id = h.id AND r.lease_token = h.token \
                         WHERE r.status = 'running' FOR NO KEY UPDATE OF r SKIP LOCKED) \
                         UPDATE requests r SET lease_expires_at = $3 FROM free WHERE r.id = free.id",
                        &[&ids, &tokens, &expires],
                    ),
                    super::Stmt::query(
                        "SELECT r.id FROM requests r JOIN unnest($1::text[], $2::text[]) AS h(id, token) \
                         ON r.id = h.id AND r.lease_token = h.token WHERE r.status = 'running'",
                        &[&ids, &tokens],
                    ),
                ])
                .await?;
            // The last answer is the read of what is still ours.
            let read = out.into_iter().next_back().map(super::Out::rows);
            read.unwrap_or_default()
                .iter()
                .map(|row| row.try_get::<_, String>(0).map_err(StoreError::from))
                .collect::<Result<std::collections::HashSet<String>, StoreError>>()
        })?;
        let lost: Vec<(RequestId, String)> = held
            .into_iter()
            .filter(|(r, _)| !ours.contains(r.as_str()))
            .collect();
        let leases = self.leases();
        Ok(lost
            .into_iter()
            // Finished meanwhile (its entry gone, or a newer claim's): not a loss.
            .filter(|(root, token)| leases.get(root) == Some(token))
            .map(|(root, _)| root)
            .collect())
    }

    pub(crate) async fn worker_stopped(
        &self,
        id: &WorkerId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            tx.execute(
                "UPDATE workers SET stopped_at = $2, heartbeat_at = $2 WHERE id = $1",
                &[&id.as_str(), &now.0],
            )
            .await?;
            let body = EventBody::WorkerStopped {
                worker_id: id.clone(),
            };
            events::append(tx, now, &[body.runtime()]).await?;
            Ok(())
        })
    }

    pub(crate) async fn workers(&self, limit: usize) -> Result<Vec<Worker>, StoreError> {
        let limit = limit as i64;
        let rows = self
            .read_rows(
                &format!("SELECT {WORKER_COLS} FROM workers ORDER BY started_at DESC LIMIT $1"),
                &[&limit],
            )
            .await?;
        rows::all(rows, rows::worker)
    }

    /// The workers to show at `now` (see [`crate::workers::WORKERS_RECENT`]), newest
    /// first. A worker is alive while its liveness lock is held (the same test as
    /// [`DEAD_OWNER`], read once from `pg_locks` for all of them); it runs the
    /// running roots whose lease it holds (`requests.worker_id`).
    pub(crate) async fn list_workers(
        &self,
        now: Timestamp,
    ) -> Result<Vec<WorkerSummary>, StoreError> {
        use crate::workers::{WORKERS_LISTED, WORKERS_RECENT, summary};
        let since = now.minus(WORKERS_RECENT).0;
        let limit = WORKERS_LISTED as i64;
        let rows = self
            .read_rows(
                &format!(
                    "WITH live AS (SELECT l.objid FROM pg_locks l \
                       WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted \
                       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                       AND l.classid = hashtext('agent-harness live ' || current_schema())::oid), \
                     running AS (SELECT worker_id, COUNT(*) AS n FROM requests \
                       WHERE status = 'running' AND parent_id IS NULL AND worker_id IS NOT NULL \
                       GROUP BY worker_id), \
                     listed AS (SELECT w.*, hashtext(w.id)::oid IN (SELECT objid FROM live) AS alive, \
                       COALESCE(r.n, 0)::bigint AS running \
                       FROM workers w LEFT JOIN running r ON r.worker_id = w.id) \
                     SELECT {WORKER_COLS}, alive, running FROM listed \
                     WHERE (alive AND stopped_at IS NULL) OR heartbeat_at >= $1 OR running > 0 \
                     ORDER BY started_at DESC LIMIT $2"
                ),
                &[&since, &limit],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let alive: bool = r.try_get(7)?;
            let running: i64 = r.try_get(8)?;
            out.push(summary(rows::worker(r)?, alive, running as u64));
        }
        Ok(out)
    }

    /// How long a claim's lease lasts (renewed by each heartbeat).
    pub(crate) fn lease(&self) -> std::time::Duration {
        self.inner.lease
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".to_string())
}
