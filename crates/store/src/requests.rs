//! Requests and sessions: admission (the queue), claiming, listing, cancelling, recovery.

use crate::query::Query;
use crate::rows::{self, REQUEST_COLS};
use crate::{SqliteStore, StoreError, events, tree};
use harness_core::*;
use rusqlite::{Connection, OptionalExtension, params};
use std::time::Duration;

/// A request to admit.
#[derive(Clone, Debug)]
pub struct NewRequest {
    pub id: RequestId,
    pub session_id: SessionId,
    pub agent: String,
    pub input: String,
    pub trace_id: String,
    /// The caller's W3C `traceparent` (version 00 form, of trace `trace_id`), kept
    /// as the request's `traceparent`; None without one.
    pub traceparent: Option<String>,
    /// Claim priority; admission refuses values outside `PRIORITY_MIN..=PRIORITY_MAX`.
    pub priority: i32,
}

/// The request that runs `old` again, or why it cannot: only a finished request
/// admitted directly (not a delegated child) is retried. Checked in the admitting
/// transaction, so a request cannot be retried while it still runs. The retry is
/// in trace `trace_id` (a new one), so it keeps no `traceparent`: the original's
/// names a span of the original's trace.
pub(crate) fn retry_of(
    old: &Request,
    id: RequestId,
    trace_id: String,
) -> Result<NewRequest, StoreError> {
    if old.parent_id.is_some() {
        return Err(StoreError::WrongState {
            id: old.id.to_string(),
            status: old.status,
            action: "retry a delegated request (retry the request that delegated it)",
        });
    }
    if !old.status.is_terminal() {
        return Err(StoreError::WrongState {
            id: old.id.to_string(),
            status: old.status,
            action: "retry it before it finishes (cancel it first, or resume it)",
        });
    }
    Ok(NewRequest {
        id,
        session_id: old.session_id.clone(),
        agent: old.agent.clone(),
        input: old.input.clone(),
        trace_id,
        traceparent: None,
        priority: old.priority,
    })
}

/// The admission limits checked in the same transaction as the insert.
#[derive(Clone, Copy, Debug)]
pub struct Admission {
    pub queue_capacity: usize,
    /// Refuse when the session already has an active request (strategy `reject`).
    pub reject_if_session_busy: bool,
}

/// What an admission did: admitted `request` now, or found it admitted before under
/// the same idempotency key (`existing`: nothing was written).
#[derive(Clone, Debug)]
pub struct Admitted {
    pub request: Request,
    pub existing: bool,
}

/// The request an idempotency key admitted before, if it asked for the same work
/// (agent and input); a different ask under a used key is refused.
pub(crate) fn same_ask(
    existing: Request,
    new: &NewRequest,
    key: &str,
) -> Result<Admitted, StoreError> {
    if existing.agent == new.agent && existing.input == new.input {
        Ok(Admitted {
            request: existing,
            existing: true,
        })
    } else {
        Err(StoreError::IdempotencyKeyReused {
            key: key.to_string(),
            session: new.session_id.to_string(),
            existing: existing.id.to_string(),
        })
    }
}

/// The claim's candidates: for each session with a queued root request and no
/// running or paused one, its oldest queued root (FIFO within a session). Found by
/// walking the distinct sessions of the `requests_queued_roots` index (one seek per
/// session, not a scan of the queue). Columns: id, effective priority, the
/// session's claim counter, queue_seq. `now` and `aging` are the placeholders for
/// now (ms) and the aging step (`PRIORITY_AGING_MS`).
///
/// The effective priority is `priority + waited / PRIORITY_AGING_MS`, where waited
/// counts from the later of its admission and its session's last claim (when the
/// request could first be next). Written for both backends (`MAX` vs `GREATEST`);
/// `walk` is SQLite's `INDEXED BY requests_queued_roots`: its planner otherwise
/// walks `requests_status`, reading every queued request per session (measured:
/// 143 ms against 1 ms for a claim over 9,000 queued in 100 sessions).
pub(crate) fn candidates_sql(greatest: &str, now: &str, aging: &str, walk: &str) -> String {
    format!(
        "WITH RECURSIVE qs(sid) AS (            SELECT MIN(session_id) FROM requests {walk} WHERE status = 'queued' AND parent_id IS NULL            UNION ALL            SELECT (SELECT MIN(q.session_id) FROM requests q {walk}                    WHERE q.status = 'queued' AND q.parent_id IS NULL AND q.session_id > qs.sid)            FROM qs WHERE qs.sid IS NOT NULL),          heads(id) AS (            SELECT (SELECT h.id FROM requests h WHERE h.status = 'queued' AND h.parent_id IS NULL                    AND h.session_id = qs.sid ORDER BY h.queue_seq LIMIT 1)            FROM qs WHERE qs.sid IS NOT NULL AND NOT EXISTS (              SELECT 1 FROM requests o WHERE o.session_id = qs.sid AND o.parent_id IS NULL              AND o.status IN ('running', 'waiting_approval')))          SELECT r.id,            r.priority + {greatest}(0, {now} - {greatest}(r.created_at, COALESCE(s.last_claimed_at, 0))) / {aging} AS eff,            s.claim_seq, r.queue_seq          FROM heads JOIN requests r ON r.id = heads.id JOIN sessions s ON s.id = r.session_id"
    )
}

/// The claim's order over [`candidates_sql`]: highest effective priority first,
/// then (round robin) the session claimed least recently, then admission order.
/// `c` names the candidates' relation.
pub(crate) fn claim_order(c: &str) -> String {
    format!("{c}.eff DESC, {c}.claim_seq, {c}.queue_seq")
}

pub(crate) const ACTIVE: &str = "('queued','running','waiting_approval')";

/// The queue that capacity bounds: admitted root requests not yet started. A
/// request woken by an approval (or re-queued by recovery) was admitted already
/// and is counted as resuming, not against capacity.
pub(crate) const WAITING_FIRST_START: &str =
    "status = 'queued' AND parent_id IS NULL AND started_at IS NULL";

impl SqliteStore {
    /// Admits a request (status `queued`), or refuses it at once: queue full, session busy.
    pub async fn admit(
        &self,
        new: NewRequest,
        adm: Admission,
        now: Timestamp,
    ) -> Result<Request, StoreError> {
        self.write(move |c| admit(c, &new, None, None, adm, now))
            .await
            .map(|a| a.request)
    }

    pub async fn admit_retry(
        &self,
        original: &RequestId,
        id: RequestId,
        trace_id: String,
        adm: Admission,
        now: Timestamp,
    ) -> Result<Request, StoreError> {
        let original = original.clone();
        self.write(move |c| {
            let old = get_request(c, &original)?;
            let new = retry_of(&old, id, trace_id)?;
            admit(c, &new, Some(&old.id), None, adm, now)
        })
        .await
        .map(|a| a.request)
    }

    /// Admits a request under an idempotency key (unique per session): the request
    /// the key admitted before if it asked for the same agent and input, else a new
    /// one, looked up and inserted in one transaction.
    pub async fn admit_keyed(
        &self,
        new: NewRequest,
        key: Option<String>,
        adm: Admission,
        now: Timestamp,
    ) -> Result<Admitted, StoreError> {
        self.write(move |c| admit(c, &new, None, key.as_deref(), adm, now))
            .await
    }

    /// Claims up to `limit` runnable root requests, at most one per session (its
    /// oldest queued root, once nothing of the session is active), marking them
    /// `running` for `worker`. See [`claim_order`] for which sessions go first.
    pub async fn claim(
        &self,
        worker: &WorkerId,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<Request>, StoreError> {
        let worker = worker.clone();
        self.write(move |c| claim(c, &worker, limit, now)).await
    }

    /// Puts this worker's own running requests back on the queue (graceful stop),
    /// each with a `request.requeued` event saying why.
    pub async fn release(
        &self,
        ids: Vec<RequestId>,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let reason = reason.to_string();
        self.write(move |c| {
            for id in &ids {
                let moved = tree::move_to(
                    c,
                    id,
                    RequestStatus::Queued,
                    &[RequestStatus::Running],
                    now,
                    None,
                )?;
                if moved {
                    let r = get_request(c, id)?;
                    let body = EventBody::RequestRequeued {
                        reason: reason.clone(),
                    };
                    events::append(c, now, &[body.about(id, &r.session_id)])?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Cancels a request that has not finished, with everything delegated under
    /// it. A cancelled child becomes an error its parent's model sees: if the tree
    /// above was paused on it, the tree is runnable again. Returns the request and
    /// every request the cancel settled (to stop their runs).
    pub async fn cancel(
        &self,
        id: &RequestId,
        by: &Actor,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<(Request, Vec<RequestId>), StoreError> {
        let (id, by, reason) = (id.clone(), by.clone(), reason.map(str::to_string));
        self.write(move |c| cancel(c, &id, &by, reason.as_deref(), now))
            .await
    }

    pub async fn get_request(&self, id: &RequestId) -> Result<Request, StoreError> {
        let id = id.clone();
        self.read(move |c| get_request(c, &id)).await
    }

    pub async fn get_requests(&self, ids: &[RequestId]) -> Result<Vec<Request>, StoreError> {
        let ids = ids.to_vec();
        self.read(move |c| {
            let mut out = Vec::with_capacity(ids.len());
            for id in &ids {
                match get_request(c, id) {
                    Ok(r) => out.push(r),
                    Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn list_requests(&self, filter: RequestFilter) -> Result<Vec<Request>, StoreError> {
        self.read(move |c| list_requests(c, &filter)).await
    }

    pub async fn list_sessions(&self, limit: usize) -> Result<Vec<Session>, StoreError> {
        self.read(move |c| list_sessions(c, None, limit)).await
    }

    pub async fn get_session(&self, id: &SessionId) -> Result<Session, StoreError> {
        let id = id.clone();
        self.read(move |c| {
            list_sessions(c, Some(&id), 1)?
                .pop()
                .ok_or_else(|| StoreError::NotFound {
                    kind: "session",
                    id: id.to_string(),
                })
        })
        .await
    }
}

/// The limit is in the text, not bound: see `events::after_query`.
fn history_sql(limit: usize) -> String {
    format!(
        "SELECT input, output FROM requests WHERE session_id = ?1 AND parent_id IS NULL \
         AND status = 'completed' AND queue_seq < (SELECT queue_seq FROM requests WHERE id = ?2) \
         ORDER BY queue_seq DESC LIMIT {limit}"
    )
}

/// `session`'s completed roots admitted before `before`, as (input, output), the
/// last `limit` of them, oldest first.
pub(crate) fn history(
    c: &Connection,
    session: &SessionId,
    before: &RequestId,
    limit: usize,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = c.prepare_cached(&history_sql(limit))?;
    let rows = stmt.query_map(params![session.as_str(), before.as_str()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?.unwrap_or_default(),
        ))
    })?;
    let mut out: Vec<(String, String)> = rows.collect::<Result<_, _>>()?;
    out.reverse();
    Ok(out)
}

pub(crate) fn get_request(c: &Connection, id: &RequestId) -> Result<Request, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {REQUEST_COLS} FROM requests WHERE id = ?1"
    ))?
    .query_row([id.as_str()], rows::request)
    .optional()?
    .ok_or_else(|| StoreError::NotFound {
        kind: "request",
        id: id.to_string(),
    })
}

fn admit(
    c: &Connection,
    new: &NewRequest,
    retry_of: Option<&RequestId>,
    key: Option<&str>,
    adm: Admission,
    now: Timestamp,
) -> Result<Admitted, StoreError> {
    if let Some(key) = key {
        let existing: Option<String> = c
            .prepare_cached(
                "SELECT id FROM requests WHERE session_id = ?1 AND idempotency_key = ?2",
            )?
            .query_row(params![new.session_id.as_str(), key], |r| r.get(0))
            .optional()?;
        if let Some(id) = existing {
            let existing = get_request(c, &RequestId::from_trusted(id))?;
            return same_ask(existing, new, key);
        }
    }
    // Kept by triggers (migration V11): counting the queue read every queued row,
    // in the writer, for every admission and every refusal.
    let queued: i64 = c
        .prepare_cached("SELECT waiting FROM queue_depth WHERE id = 1")?
        .query_row([], |r| r.get(0))?;
    if queued as usize >= adm.queue_capacity {
        return Err(StoreError::QueueFull {
            queued: queued as usize,
            capacity: adm.queue_capacity,
            retry_after: Duration::from_secs(1 + (queued as u64 / 100)),
        });
    }
    if adm.reject_if_session_busy {
        let active: Option<String> = c
            .prepare_cached(&format!(
                "SELECT id FROM requests WHERE session_id = ?1 AND status IN {ACTIVE} LIMIT 1"
            ))?
            .query_row([new.session_id.as_str()], |r| r.get(0))
            .optional()?;
        if let Some(active) = active {
            return Err(StoreError::SessionBusy {
                session: new.session_id.to_string(),
                active,
            });
        }
    }
    insert_request(c, new, None, RequestStatus::Queued, now)?;
    if let Some(original) = retry_of {
        c.prepare_cached("UPDATE requests SET retry_of = ?1 WHERE id = ?2")?
            .execute(params![original.as_str(), new.id.as_str()])?;
    }
    if let Some(key) = key {
        c.prepare_cached("UPDATE requests SET idempotency_key = ?2 WHERE id = ?1")?
            .execute(params![new.id.as_str(), key])?;
    }
    let body = EventBody::RequestQueued {
        agent: new.agent.clone(),
        input_bytes: new.input.len(),
        trace_id: new.trace_id.clone(),
        retry_of: retry_of.cloned(),
    };
    events::append(c, now, &[body.about(&new.id, &new.session_id)])?;
    Ok(Admitted {
        request: get_request(c, &new.id)?,
        existing: false,
    })
}

/// Inserts a request row (and its session if new).
pub(crate) fn insert_request(
    c: &Connection,
    new: &NewRequest,
    parent: Option<&RequestId>,
    status: RequestStatus,
    now: Timestamp,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO sessions (id, created_at, last_activity_at) VALUES (?1, ?2, ?2) \
         ON CONFLICT (id) DO UPDATE SET last_activity_at = excluded.last_activity_at",
    )?
    .execute(params![new.session_id.as_str(), now.0])?;
    let running = status == RequestStatus::Running;
    c.prepare_cached(
        "INSERT INTO requests (id, session_id, agent, parent_id, status, attempt, current_agent, input, \
         trace_id, created_at, started_at, last_activity_at, queue_seq, priority, traceparent) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?10, \
                 (SELECT COALESCE(MAX(queue_seq), 0) + 1 FROM requests), ?12, ?13)",
    )?
    .execute(params![
        new.id.as_str(),
        new.session_id.as_str(),
        new.agent,
        parent.map(|p| p.as_str()),
        status.as_str(),
        if running { 1 } else { 0 },
        running.then_some(new.agent.as_str()),
        new.input,
        new.trace_id,
        now.0,
        running.then_some(now.0),
        new.priority,
        new.traceparent,
    ])?;
    Ok(())
}

/// The claim's candidates on SQLite, in claim order: `?1` now, `?2` the aging step
/// (the caller takes as many as it needs).
fn claim_sql() -> String {
    format!(
        "SELECT c.id FROM ({}) c WHERE {} ORDER BY {}",
        candidates_sql("MAX", "?1", "?2", "INDEXED BY requests_queued_roots"),
        crate::limits::has_room("c.id"),
        claim_order("c")
    )
}

fn claim(
    c: &Connection,
    worker: &WorkerId,
    limit: usize,
    now: Timestamp,
) -> Result<Vec<Request>, StoreError> {
    let ids: Vec<String> = {
        let mut stmt = c.prepare_cached(&claim_sql())?;
        // Taken here, not by a bound `LIMIT` (see `events::after_query`): the
        // claim asks for as many as slots are free, a different number each time.
        let read = limit + crate::limits::CLAIM_SLACK;
        let rows = stmt.query_map(params![now.0, PRIORITY_AGING_MS], |r| r.get(0))?;
        crate::limits::with_room(c, rows.take(read).collect::<Result<_, _>>()?, limit)?
    };
    let mut claimed = Vec::with_capacity(ids.len());
    // Stamped no earlier than the session's last activity: `now` was read before
    // this transaction, and the session's previous request may have finished since
    // (a start before that finish would misorder the session's timeline).
    for id in ids {
        c.prepare_cached(&format!(
            "UPDATE requests SET status = 'running', attempt = MAX(attempt, 1), worker_id = ?2, \
                 started_at = COALESCE(started_at, MAX(?3, COALESCE((SELECT last_activity_at FROM sessions s WHERE s.id = requests.session_id), ?3))), \
                 last_activity_at = MAX(?3, COALESCE((SELECT last_activity_at FROM sessions s WHERE s.id = requests.session_id), ?3)), \
                 current_agent = COALESCE(current_agent, agent) WHERE id = ?1 AND {}",
            tree::status_in(RequestStatus::Running, &[RequestStatus::Queued])
        ))?
        .execute(params![id, worker.as_str(), now.0])?;
        let req = get_request(c, &RequestId::from_trusted(id))?;
        crate::limits::clear_root(c, &req.id)?;
        c.prepare_cached(
            "UPDATE sessions SET last_claimed_at = ?2, \
             claim_seq = (SELECT COALESCE(MAX(claim_seq), 0) + 1 FROM sessions) WHERE id = ?1",
        )?
        .execute(params![req.session_id.as_str(), now.0])?;
        let body = EventBody::RequestStarted {
            attempt: req.attempt,
            worker_id: worker.clone(),
        };
        events::append(c, now, &[body.about(&req.id, &req.session_id)])?;
        claimed.push(req);
    }
    Ok(claimed)
}

fn cancel(
    c: &Connection,
    id: &RequestId,
    by: &Actor,
    reason: Option<&str>,
    now: Timestamp,
) -> Result<(Request, Vec<RequestId>), StoreError> {
    let req = get_request(c, id)?;
    if req.status.is_terminal() {
        return Err(StoreError::WrongState {
            id: id.to_string(),
            status: req.status,
            action: "cancel it",
        });
    }
    let settled = tree::settle_subtree(
        c,
        &tree::Settle {
            to: RequestStatus::Cancelled,
            by,
            reason,
            top: id,
        },
        now,
    )?;
    if let Some(parent) = &req.parent_id {
        // The parent continues (its delegate call fails): a tree paused on this
        // child becomes runnable.
        let reason = format!("delegated request {id} was cancelled");
        tree::wake_chain(c, parent, now, &reason, false)?;
    }
    Ok((get_request(c, id)?, settled))
}

fn list_requests(c: &Connection, f: &RequestFilter) -> Result<Vec<Request>, StoreError> {
    Query::select(REQUEST_COLS, "requests")
        .any_of("status", f.statuses.iter().map(|s| s.as_str()))
        .eq("session_id", f.session_id.as_ref().map(|s| s.to_string()))
        .eq("agent", f.agent.clone())
        .eq("parent_id", f.parent_id.as_ref().map(|p| p.to_string()))
        .when(f.roots_only, "parent_id IS NULL")
        .at_least("created_at", f.since.map(|t| t.0))
        .eq("trace_id", f.trace_id.clone())
        .like_any(&["input", "error"], f.text.as_deref().map(like_anywhere))
        .eq("retry_of", f.retry_of.as_ref().map(|r| r.to_string()))
        .fetch(c, f.order.sql(), f.limit, rows::request)
}

fn list_sessions(
    c: &Connection,
    only: Option<&SessionId>,
    limit: usize,
) -> Result<Vec<Session>, StoreError> {
    let filter = if only.is_some() {
        "WHERE s.id = ?1"
    } else {
        "WHERE ?1 IS NULL"
    };
    let sql = format!(
        "SELECT s.id, s.created_at, s.last_activity_at, \
           (SELECT COUNT(*) FROM requests r WHERE r.session_id = s.id AND r.parent_id IS NULL), \
           (SELECT COUNT(*) FROM requests r WHERE r.session_id = s.id AND r.parent_id IS NULL AND r.status IN {ACTIVE}), \
           (SELECT r.id FROM requests r WHERE r.session_id = s.id AND r.parent_id IS NULL ORDER BY r.queue_seq DESC LIMIT 1), \
           (SELECT r.agent FROM requests r WHERE r.session_id = s.id AND r.parent_id IS NULL ORDER BY r.queue_seq DESC LIMIT 1) \
         FROM sessions s {filter} ORDER BY s.last_activity_at DESC LIMIT ?2"
    );
    let limit = if limit == 0 { i64::MAX } else { limit as i64 };
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![only.map(|s| s.as_str()), limit], |r| {
        Ok(Session {
            id: SessionId::from_trusted(r.get(0)?),
            created_at: Timestamp(r.get(1)?),
            last_activity_at: Timestamp(r.get(2)?),
            requests: r.get(3)?,
            active_requests: r.get(4)?,
            last_request_id: r.get::<_, Option<String>>(5)?.map(RequestId::from_trusted),
            last_agent: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim's walk over sessions must seek the partial index of queued roots:
    /// SQLite's planner, left alone, reads `requests_status` (every queued request
    /// per session; 143 ms instead of 1 ms per claim with 9,000 queued).
    #[tokio::test]
    async fn the_claim_walks_the_queued_roots_index() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, s) = crate::sqlite::open_for_test(dir.path());
        let plan: Vec<String> = s
            .read(|c| {
                let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {}", claim_sql()))?;
                let rows = stmt.query_map(params![1, 30_000], |r| r.get::<_, String>(3))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
            .unwrap();
        let walks: Vec<&String> = plan.iter().filter(|l| l.contains("SEARCH")).collect();
        assert!(
            plan.iter()
                .any(|l| l.contains("requests_queued_roots (session_id>?)")),
            "{plan:#?}"
        );
        assert!(
            !walks.iter().any(|l| l.contains("requests_status")),
            "{plan:#?}"
        );
    }

    /// The statements every run, claim and event read executes stay prepared:
    /// SQLite prepares again, at its next step, a statement whose bound `LIMIT`
    /// was bound anew (measured: 11 % of `http-load`'s CPU went to re-preparing
    /// the session history, the claim and the event reads).
    #[tokio::test]
    async fn hot_statements_are_not_prepared_again_at_each_use() {
        use rusqlite::StatementStatus::RePrepare;
        let dir = tempfile::tempdir().unwrap();
        let (store, s) = crate::sqlite::open_for_test(dir.path());
        let adm = Admission {
            queue_capacity: 100,
            reject_if_session_busy: false,
        };
        let mut ids = Vec::new();
        for i in 0..6 {
            let new = crate::testing::new_request(&format!("s{}", i % 3), 0);
            ids.push((new.id.clone(), new.session_id.clone()));
            store.admit(new, adm, Timestamp(1_000 + i)).await.unwrap();
        }
        let worker = WorkerId::generate();
        let reprepared = s
            .write(move |c| {
                claim(c, &worker, 1, Timestamp(2_000))?;
                claim(c, &worker, 2, Timestamp(2_001))?;
                Ok(c.prepare_cached(&claim_sql())?.get_status(RePrepare))
            })
            .await
            .unwrap();
        assert_eq!(reprepared, 0, "the claim");
        let reprepared = s
            .read(move |c| {
                for (id, session) in &ids {
                    history(c, session, id, 20)?;
                }
                let all = EventFilter::default();
                crate::events::events_after(c, 0, &all, 512)?;
                crate::events::events_after(c, 3, &all, 512)?;
                let (events, _) =
                    crate::events::after_query(crate::rows::EVENT_COLS, &all, "", 512, |n| {
                        format!("?{n}")
                    });
                // The control: a bound limit, bound again, is prepared again.
                let bound = "SELECT seq FROM events ORDER BY seq LIMIT ?1";
                for n in [1, 2] {
                    c.prepare_cached(bound)?.query_map([n], |_| Ok(()))?.count();
                }
                Ok([
                    c.prepare_cached(&history_sql(20))?.get_status(RePrepare),
                    c.prepare_cached(&events)?.get_status(RePrepare),
                    c.prepare_cached(bound)?.get_status(RePrepare),
                ])
            })
            .await
            .unwrap();
        assert_eq!(
            reprepared[..2],
            [0, 0],
            "the session history, the event read"
        );
        assert!(
            reprepared[2] > 0,
            "SQLite no longer re-prepares for a bound LIMIT: {reprepared:?}"
        );
    }
}
