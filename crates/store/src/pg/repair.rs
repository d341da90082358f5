//! Recovery and the safety net on PostgreSQL: the rules of `crate::repair`.

use super::workers::DEAD_OWNER;
use super::{PgStore, Tx, events, in_tx, tree};
use crate::StoreError;
use crate::repair::{
    Liveness, Problem, RECOVERED, Recovery, Repaired, Stranded, gave_up, reclaimed,
};
use crate::tree::{Settle, status_in};
use harness_core::*;

impl PgStore {
    pub(crate) async fn recover(
        &self,
        by: &WorkerId,
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Recovery, StoreError> {
        self.reclaim(by, now, max_attempts, None).await
    }

    /// What [`PgStore::recover`] does, for a running worker: at most
    /// [`TAKE_OVER_BATCH`] roots per call, skipping rows a transaction in flight
    /// holds (the next call takes them).
    pub(crate) async fn take_over(
        &self,
        by: &WorkerId,
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Recovery, StoreError> {
        self.reclaim(by, now, max_attempts, Some(TAKE_OVER_BATCH))
            .await
    }

    async fn reclaim(
        &self,
        by: &WorkerId,
        now: Timestamp,
        max_attempts: u32,
        batch: Option<i64>,
    ) -> Result<Recovery, StoreError> {
        let recovery = in_tx!(self, |tx| reclaim(tx, by, now, max_attempts, batch).await)?;
        // Only what was taken back: this process may run other roots (many workers
        // per database; an in-process run beside a worker) whose leases still hold.
        let mut leases = self.leases();
        for id in recovery.requeued.iter().chain(&recovery.failed) {
            leases.remove(id);
        }
        drop(leases);
        Ok(recovery)
    }

    pub(crate) async fn stranded(
        &self,
        live: Liveness,
        quiet_since: Timestamp,
    ) -> Result<Vec<Stranded>, StoreError> {
        in_tx!(self, |tx| stranded(tx, &live, quiet_since).await)
    }

    pub(crate) async fn repair(
        &self,
        live: Liveness,
        quiet_since: Timestamp,
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Vec<Repaired>, StoreError> {
        let found = self.stranded(live.clone(), quiet_since).await?;
        let mut out = Vec::new();
        // One transaction per request, each locking its own tree's root, and
        // re-checking the problem there (a commit may have solved it meanwhile).
        for s in found {
            let action = in_tx!(self, |tx| repair_one(tx, &s, &live, now, max_attempts)
                .await)?;
            if let Some(action) = action {
                out.push(Repaired {
                    id: s.id,
                    problem: s.problem,
                    action,
                });
            }
        }
        Ok(out)
    }

    pub(crate) async fn fail_tree(
        &self,
        id: &RequestId,
        error: &str,
        now: Timestamp,
    ) -> Result<Vec<RequestId>, StoreError> {
        in_tx!(self, |tx| {
            let root = tree::root_id(tx, id).await?;
            tree::lock_root(tx, &root).await?;
            tree::settle_subtree(
                tx,
                &Settle {
                    to: RequestStatus::Failed,
                    by: &Actor::runtime(),
                    reason: Some(error),
                    top: &root,
                },
                now,
            )
            .await
        })
    }
}

/// How many running roots one take-over transaction moves: it holds their row
/// locks until it commits, so it stays short; a full batch is followed at once by
/// the next.
const TAKE_OVER_BATCH: i64 = 500;

/// Puts back on the queue (or fails, past `max_attempts`) the running roots of
/// other workers that are dead (their liveness lock is free) or silent (their lease
/// lapsed), each with `request.reclaimed` naming why, then `request.requeued`.
/// A batch of them costs a fixed number of round trips, not a few per request.
async fn reclaim(
    tx: &mut Tx<'_>,
    by: &WorkerId,
    now: Timestamp,
    max_attempts: u32,
    batch: Option<i64>,
) -> Result<Recovery, StoreError> {
    let select = "SELECT id, lease_expires_at FROM requests \
                  WHERE status = 'running' AND parent_id IS NULL AND worker_id IS DISTINCT FROM $2 \
                  AND (lease_expires_at IS NULL OR lease_expires_at < $1";
    let found = match batch {
        // At start: any root whose worker holds no liveness lock, waiting for a
        // commit in flight on its row.
        None => {
            let sql = format!("{select} OR {DEAD_OWNER}) ORDER BY queue_seq FOR UPDATE");
            tx.query(&sql, &[&now.0, &by.as_str()]).await?
        }
        // Running: the workers not stopped whose process is gone, read once (not
        // the lock table per running row; a stopped worker released its runs, and
        // what it could not release lapses); rows a transaction in flight holds
        // are skipped and taken by the next call.
        Some(n) => {
            let dead: Vec<String> = tx
                .query(
                    &format!(
                        "SELECT id FROM workers WHERE stopped_at IS NULL AND {}",
                        DEAD_OWNER.replace("requests.worker_id", "workers.id")
                    ),
                    &[],
                )
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            let sql = format!(
                "{select} OR worker_id = ANY($3)) ORDER BY queue_seq LIMIT {n} FOR UPDATE SKIP LOCKED"
            );
            tx.query(&sql, &[&now.0, &by.as_str(), &dead]).await?
        }
    };
    let mut out = Recovery::default();
    if found.is_empty() {
        return Ok(out);
    }
    let mut expiry = std::collections::HashMap::new();
    for row in &found {
        let id: String = row.try_get(0)?;
        let expires: Option<i64> = row.try_get(1)?;
        expiry.insert(id, expires);
    }
    let ids: Vec<&str> = expiry.keys().map(String::as_str).collect();
    let roots = tree::requests_where(tx, "id = ANY($1) ORDER BY queue_seq", &[&ids]).await?;
    let mut events = Vec::new();
    let mut back = Vec::new();
    for r in roots {
        let expires = expiry.get(r.id.as_str()).copied().flatten();
        events.extend(reclaimed(&r, Some(by), &reclaim_reason(expires, now)));
        if r.attempt >= max_attempts.max(1) {
            // Its `request.reclaimed` before the failure's events.
            events::append(tx, now, &std::mem::take(&mut events)).await?;
            fail_gave_up(tx, &r, now, max_attempts).await?;
            out.failed.push(r.id);
        } else {
            events.push(
                EventBody::RequestRequeued {
                    reason: RECOVERED.to_string(),
                }
                .about(&r.id, &r.session_id),
            );
            back.push(r.id.as_str().to_string());
            out.requeued.push(r.id);
        }
    }
    requeue(tx, &back, now, true).await?;
    events::append(tx, now, &events).await?;
    Ok(out)
}

/// Why a root is taken from its worker: its lease lapsed, or the worker is gone.
fn reclaim_reason(expires: Option<i64>, now: Timestamp) -> String {
    match expires {
        Some(t) if t < now.0 => format!(
            "its lease expired at {} without renewal",
            Timestamp(t).to_rfc3339()
        ),
        _ => crate::repair::WORKER_GONE.to_string(),
    }
}

async fn stranded(
    tx: &mut Tx<'_>,
    live: &Liveness,
    quiet_since: Timestamp,
) -> Result<Vec<Stranded>, StoreError> {
    let mut out = Vec::new();
    let found = |r: &Request, problem| Stranded {
        id: r.id.clone(),
        session_id: r.session_id.clone(),
        agent: r.agent.clone(),
        status: r.status,
        last_activity_at: r.last_activity_at,
        problem,
    };
    let waiting = tree::requests_where(
        tx,
        "status = 'waiting_approval' AND last_activity_at < $1 ORDER BY queue_seq LIMIT 1000",
        &[&quiet_since.0],
    )
    .await?;
    for r in &waiting {
        if !tree::has_pending_approval(tx, &r.id).await? {
            out.push(found(r, Problem::WaitingOnNothing));
        }
    }
    // Another worker's run is live while that worker is alive and its lease holds.
    let running = tree::requests_where(
        tx,
        &format!(
            "status = 'running' AND parent_id IS NULL \
             AND (worker_id = $1 OR lease_expires_at IS NULL OR lease_expires_at < $2 OR {DEAD_OWNER}) \
             ORDER BY queue_seq LIMIT 1000"
        ),
        &[&live.owner.as_ref().map(|w| w.as_str()).unwrap_or(""), &quiet_since.0],
    )
    .await?;
    for r in &running {
        let owned = live.owner.is_some() && r.worker_id == live.owner;
        let live_here = live.running.as_ref().is_none_or(|ids| ids.contains(&r.id));
        if !(owned && live_here) {
            let worker_id = r.worker_id.clone();
            out.push(found(r, Problem::NoLiveRun { worker_id }));
        }
    }
    let orphans = tree::requests_where(
        tx,
        "status IN ('queued','running','waiting_approval') AND parent_id IS NOT NULL \
         AND last_activity_at < $1 \
         AND parent_id IN (SELECT id FROM requests WHERE status IN ('completed','failed','cancelled')) \
         LIMIT 1000",
        &[&quiet_since.0],
    )
    .await?;
    for r in &orphans {
        let parent_id = r.parent_id.clone().expect("selected with a parent");
        let parent_status = tree::get_request(tx, &parent_id).await?.status;
        out.push(found(
            r,
            Problem::OrphanedChild {
                parent_id,
                parent_status,
            },
        ));
    }
    Ok(out)
}

async fn repair_one(
    tx: &mut Tx<'_>,
    s: &Stranded,
    live: &Liveness,
    now: Timestamp,
    max_attempts: u32,
) -> Result<Option<String>, StoreError> {
    let root = tree::root_id(tx, &s.id).await?;
    tree::lock_root(tx, &root).await?;
    let event = |id: &RequestId, session: &SessionId, action: &str| {
        EventBody::RequestRepaired {
            problem: s.problem.describe(),
            action: action.to_string(),
        }
        .about(id, session)
    };
    match &s.problem {
        Problem::WaitingOnNothing => {
            // Still waiting on nothing, now that the tree is locked?
            if tree::has_pending_approval(tx, &s.id).await? {
                return Ok(None);
            }
            let moved = tree::wake_chain(tx, &s.id, now, &s.problem.describe(), true).await?;
            if moved.contains(&s.id) {
                events::append(tx, now, &[event(&s.id, &s.session_id, "requeued")]).await?;
            }
            Ok((!moved.is_empty()).then(|| "requeued".to_string()))
        }
        Problem::NoLiveRun { worker_id } => {
            let r = tree::get_request(tx, &s.id).await?;
            if r.status != RequestStatus::Running || &r.worker_id != worker_id {
                return Ok(None);
            }
            events::append(tx, now, &[event(&s.id, &s.session_id, "requeued")]).await?;
            record_reclaim(tx, &r, live.owner.as_ref(), now).await?;
            // Claimed by the live worker itself, whose run ended without its commit
            // (a store failure): not a crash, so not an attempt.
            let crashed = live.owner.is_none() || r.worker_id != live.owner;
            let reason = s.problem.describe();
            let requeued = requeue_or_fail(tx, &r, now, max_attempts, &reason, crashed).await?;
            Ok(Some(
                if requeued { "requeued" } else { "failed" }.to_string(),
            ))
        }
        Problem::OrphanedChild { parent_status, .. } => {
            let to = if *parent_status == RequestStatus::Cancelled {
                RequestStatus::Cancelled
            } else {
                RequestStatus::Failed
            };
            let reason = s.problem.describe();
            let moved = tree::settle_subtree(
                tx,
                &Settle {
                    to,
                    by: &Actor::runtime(),
                    reason: Some(&reason),
                    top: &s.id,
                },
                now,
            )
            .await?;
            for id in &moved {
                events::append(tx, now, &[event(id, &s.session_id, to.as_str())]).await?;
            }
            Ok((!moved.is_empty()).then(|| to.to_string()))
        }
    }
}

/// `request.reclaimed` when `by` takes `r` from another worker, saying whether
/// that worker's lease lapsed or the worker is gone.
async fn record_reclaim(
    tx: &mut Tx<'_>,
    r: &Request,
    by: Option<&WorkerId>,
    now: Timestamp,
) -> Result<(), StoreError> {
    if r.worker_id.is_none() || by.is_none() || r.worker_id.as_ref() == by {
        return Ok(());
    }
    let expires: Option<i64> = tx
        .query_one(
            "SELECT lease_expires_at FROM requests WHERE id = $1",
            &[&r.id.as_str()],
        )
        .await?
        .try_get(0)?;
    if let Some(e) = reclaimed(r, by, &reclaim_reason(expires, now)) {
        events::append(tx, now, &[e]).await?;
    }
    Ok(())
}

/// A running root whose worker is gone: back on the queue with one more attempt,
/// or failed (with its tree) once `max_attempts` starts have not finished it.
async fn requeue_or_fail(
    tx: &mut Tx<'_>,
    r: &Request,
    now: Timestamp,
    max_attempts: u32,
    reason: &str,
    counts: bool,
) -> Result<bool, StoreError> {
    if counts && r.attempt >= max_attempts.max(1) {
        fail_gave_up(tx, r, now, max_attempts).await?;
        return Ok(false);
    }
    requeue(tx, &[r.id.as_str().to_string()], now, counts).await?;
    let body = EventBody::RequestRequeued {
        reason: reason.to_string(),
    };
    events::append(tx, now, &[body.about(&r.id, &r.session_id)]).await?;
    Ok(true)
}

/// Puts running roots `ids` back on the queue, their lease cleared, one more
/// attempt counted when `counts` (a crash, not a store failure of the live worker).
async fn requeue(
    tx: &mut Tx<'_>,
    ids: &[String],
    now: Timestamp,
    counts: bool,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE requests SET status = 'queued', worker_id = NULL, attempt = attempt + $3, \
         lease_token = NULL, lease_expires_at = NULL, last_activity_at = $2 \
         WHERE id = ANY($1) AND {}",
        status_in(RequestStatus::Queued, &[RequestStatus::Running])
    );
    tx.execute(&sql, &[&ids, &now.0, &(counts as i64)]).await?;
    Ok(())
}

/// Fails `r` with its tree: started `max_attempts` times, and its worker died each time.
async fn fail_gave_up(
    tx: &mut Tx<'_>,
    r: &Request,
    now: Timestamp,
    max_attempts: u32,
) -> Result<(), StoreError> {
    let error = gave_up(r, max_attempts);
    tree::settle_subtree(
        tx,
        &Settle {
            to: RequestStatus::Failed,
            by: &Actor::runtime(),
            reason: Some(&error),
            top: &r.id,
        },
        now,
    )
    .await?;
    Ok(())
}
