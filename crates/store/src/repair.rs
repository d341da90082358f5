//! Recovery and the safety net.
//!
//! [`Store::recover`] puts back on the queue what a dead worker left running
//! (counting the attempt, failing a request past `max_attempts`). [`Store::stranded`]
//! finds any request whose state cannot progress as it stands, and
//! [`Store::repair`] moves each with a visible `request.repaired` event. The
//! repair is a backstop: every path that changes a tree is meant to leave it
//! consistent; health reports what this finds as failing until it is repaired.

use crate::tree::{self, Settle};
use crate::{SqliteStore, StoreError, events};
use harness_core::*;
use rusqlite::{Connection, params};
use serde::Serialize;
use std::collections::HashSet;

/// A request that cannot progress as it stands.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stranded {
    pub id: RequestId,
    pub session_id: SessionId,
    pub agent: String,
    pub status: RequestStatus,
    pub last_activity_at: Timestamp,
    pub problem: Problem,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// Waiting for approval, but nothing in its tree is pending.
    WaitingOnNothing,
    /// Running, but no live worker runs it.
    NoLiveRun { worker_id: Option<WorkerId> },
    /// Still active under a parent that has settled.
    OrphanedChild {
        parent_id: RequestId,
        parent_status: RequestStatus,
    },
}

impl Problem {
    pub fn describe(&self) -> String {
        match self {
            Problem::WaitingOnNothing => {
                "waits for approval, but no approval in its tree is pending".to_string()
            }
            Problem::NoLiveRun { worker_id: Some(w) } => {
                format!("running, but no live worker runs it (it was claimed by worker {w})")
            }
            Problem::NoLiveRun { worker_id: None } => {
                "running, but no live worker runs it".to_string()
            }
            Problem::OrphanedChild {
                parent_id,
                parent_status,
            } => format!("still active, but its parent {parent_id} is {parent_status}"),
        }
    }
}

/// Who runs what, as the caller knows it.
#[derive(Clone, Debug, Default)]
pub struct Liveness {
    /// The worker holding the workspace, if any: running roots it owns are live…
    pub owner: Option<WorkerId>,
    /// …except, when the owner itself asks, those not in this set.
    pub running: Option<HashSet<RequestId>>,
}

/// What recovery or repair did to one request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Repaired {
    pub id: RequestId,
    pub problem: Problem,
    /// `requeued`, or the status it was settled as.
    pub action: String,
}

/// What [`Store::recover`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Recovery {
    pub requeued: Vec<RequestId>,
    /// Past `max_attempts`: failed instead of re-queued.
    pub failed: Vec<RequestId>,
}

/// The reason recovery gives each request it re-queues.
/// `request.reclaimed` when worker `by` takes the running root `r` back from the
/// worker that claimed it (dead, or its lease lapsed); `None` if either is unknown
/// or they are the same.
pub(crate) fn reclaimed(r: &Request, by: Option<&WorkerId>, reason: &str) -> Option<NewEvent> {
    let from = r.worker_id.as_ref()?;
    let by = by?;
    (from != by).then(|| {
        EventBody::RequestReclaimed {
            from_worker: from.clone(),
            by_worker: by.clone(),
            reason: reason.to_string(),
        }
        .about(&r.id, &r.session_id)
    })
}

/// Why a dead worker's request is taken back (SQLite: the lock is exclusive, so
/// only a dead worker can have left one running).
pub(crate) const WORKER_GONE: &str = "its worker is gone";

pub(crate) const RECOVERED: &str = "the worker running it stopped without finishing it";

impl SqliteStore {
    /// Puts every request left `running` by a dead worker back on the queue (its
    /// `attempt` goes up by one), or fails it once it has been started
    /// `max_attempts` times. Only sound while this process holds the workspace lock.
    pub async fn recover(
        &self,
        by: &WorkerId,
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Recovery, StoreError> {
        let by = by.clone();
        self.write(move |c| {
            let mut out = Recovery::default();
            let orphans = tree::requests_where(
                c,
                "status = 'running' AND parent_id IS NULL ORDER BY queue_seq",
                [],
            )?;
            for r in orphans {
                let reason = RECOVERED;
                if let Some(e) = reclaimed(&r, Some(&by), WORKER_GONE) {
                    events::append(c, now, &[e])?;
                }
                if requeue_or_fail(c, &r, now, max_attempts, reason, true)? {
                    out.requeued.push(r.id);
                } else {
                    out.failed.push(r.id);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Requests that cannot progress as they stand. `quiet_since`: only requests
    /// with no activity since then count for the problems that a commit in flight
    /// could still resolve (a grace period).
    pub async fn stranded(
        &self,
        live: Liveness,
        quiet_since: Timestamp,
    ) -> Result<Vec<Stranded>, StoreError> {
        self.read(move |c| stranded(c, &live, quiet_since)).await
    }

    /// Finds stranded requests and moves each so it can progress: a waiting tree
    /// with nothing pending, or a running root nobody runs, goes back on the queue
    /// (the journal decides what comes next); a child under a settled parent is
    /// settled too. Each move commits with a `request.repaired` event.
    pub async fn repair(
        &self,
        live: Liveness,
        quiet_since: Timestamp,
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Vec<Repaired>, StoreError> {
        self.write(move |c| {
            let mut out = Vec::new();
            for s in stranded(c, &live, quiet_since)? {
                if let Some(action) = repair_one(c, &s, &live, now, max_attempts)? {
                    out.push(Repaired {
                        id: s.id,
                        problem: s.problem,
                        action,
                    });
                }
            }
            Ok(out)
        })
        .await
    }
}

fn stranded(
    c: &Connection,
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
        c,
        "status = 'waiting_approval' AND last_activity_at < ?1 ORDER BY queue_seq LIMIT 1000",
        [quiet_since.0],
    )?;
    for r in &waiting {
        if !tree::has_pending_approval(c, &r.id)? {
            out.push(found(r, Problem::WaitingOnNothing));
        }
    }
    let running = tree::requests_where(
        c,
        "status = 'running' AND parent_id IS NULL ORDER BY queue_seq LIMIT 1000",
        [],
    )?;
    for r in &running {
        let owned = live.owner.is_some() && r.worker_id == live.owner;
        let live_here = live.running.as_ref().is_none_or(|ids| ids.contains(&r.id));
        if !(owned && live_here) {
            let worker_id = r.worker_id.clone();
            out.push(found(r, Problem::NoLiveRun { worker_id }));
        }
    }
    let orphans = tree::requests_where(
        c,
        "status IN ('queued','running','waiting_approval') AND parent_id IS NOT NULL \
         AND last_activity_at < ?1 \
         AND parent_id IN (SELECT id FROM requests WHERE status IN ('completed','failed','cancelled')) \
         LIMIT 1000",
        [quiet_since.0],
    )?;
    for r in &orphans {
        let parent_id = r.parent_id.clone().expect("selected with a parent");
        let parent_status = crate::requests::get_request(c, &parent_id)?.status;
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

fn repair_one(
    c: &Connection,
    s: &Stranded,
    live: &Liveness,
    now: Timestamp,
    max_attempts: u32,
) -> Result<Option<String>, StoreError> {
    let event = |c: &Connection, id: &RequestId, session: &SessionId, action: &str| {
        let body = EventBody::RequestRepaired {
            problem: s.problem.describe(),
            action: action.to_string(),
        };
        events::append(c, now, &[body.about(id, session)])
    };
    match &s.problem {
        Problem::WaitingOnNothing => {
            // Its ancestors get `request.requeued` from the wake; it gets this.
            let moved = tree::wake_chain(c, &s.id, now, &s.problem.describe(), true)?;
            if moved.contains(&s.id) {
                event(c, &s.id, &s.session_id, "requeued")?;
            }
            Ok((!moved.is_empty()).then(|| "requeued".to_string()))
        }
        Problem::NoLiveRun { .. } => {
            let r = crate::requests::get_request(c, &s.id)?;
            if r.status != RequestStatus::Running {
                return Ok(None);
            }
            event(c, &s.id, &s.session_id, "requeued")?;
            if let Some(e) = reclaimed(&r, live.owner.as_ref(), WORKER_GONE) {
                events::append(c, now, &[e])?;
            }
            // Claimed by the live worker itself, whose run ended without its commit
            // (a store failure): not a crash, so not an attempt.
            let crashed = live.owner.is_none() || r.worker_id != live.owner;
            let reason = s.problem.describe();
            let requeued = requeue_or_fail(c, &r, now, max_attempts, &reason, crashed)?;
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
                c,
                &Settle {
                    to,
                    by: &Actor::runtime(),
                    reason: Some(&reason),
                    top: &s.id,
                },
                now,
            )?;
            for id in &moved {
                event(c, id, &s.session_id, to.as_str())?;
            }
            Ok((!moved.is_empty()).then(|| to.to_string()))
        }
    }
}

/// Why a request started `max_attempts` times is failed instead of re-queued.
pub(crate) fn gave_up(r: &Request, max_attempts: u32) -> String {
    format!(
        "started {} times and its worker stopped each time without finishing it \
         (runtime.max_attempts is {max_attempts}); a step of this request may crash the \
         worker: inspect it with `agent-harness runtime requests show {}`, then retry it",
        r.attempt, r.id
    )
}

/// A running root whose worker is gone: back on the queue with one more attempt,
/// or failed (with its tree) once `max_attempts` starts have not finished it.
/// Returns whether it was re-queued.
fn requeue_or_fail(
    c: &Connection,
    r: &Request,
    now: Timestamp,
    max_attempts: u32,
    reason: &str,
    counts: bool,
) -> Result<bool, StoreError> {
    if counts && r.attempt >= max_attempts.max(1) {
        let error = gave_up(r, max_attempts);
        tree::settle_subtree(
            c,
            &Settle {
                to: RequestStatus::Failed,
                by: &Actor::runtime(),
                reason: Some(&error),
                top: &r.id,
            },
            now,
        )?;
        return Ok(false);
    }
    let sql = format!(
        "UPDATE requests SET status = 'queued', worker_id = NULL, attempt = attempt + ?3, \
         last_activity_at = ?2 WHERE id = ?1 AND {}",
        tree::status_in(RequestStatus::Queued, &[RequestStatus::Running])
    );
    c.prepare_cached(&sql)?
        .execute(params![r.id.as_str(), now.0, counts as i64])?;
    let body = EventBody::RequestRequeued {
        reason: reason.to_string(),
    };
    events::append(c, now, &[body.about(&r.id, &r.session_id)])?;
    Ok(true)
}

impl SqliteStore {
    /// Fails every active request of `id`'s tree (from its root), e.g. after its
    /// run panicked; returns the requests it moved.
    pub async fn fail_tree(
        &self,
        id: &RequestId,
        error: &str,
        now: Timestamp,
    ) -> Result<Vec<RequestId>, StoreError> {
        let (id, error) = (id.clone(), error.to_string());
        self.write(move |c| {
            let root = tree::root_of(c, &id)?;
            tree::settle_subtree(
                c,
                &Settle {
                    to: RequestStatus::Failed,
                    by: &Actor::runtime(),
                    reason: Some(&error),
                    top: &root.id,
                },
                now,
            )
        })
        .await
    }
}
