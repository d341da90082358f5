//! Requests and sessions on PostgreSQL: admission, claiming with a lease, release,
//! cancel, and the reads.

use super::rows::{self, REQUEST_COLS};
use super::{PgStore, Stmt, Tx, events, in_tx, tree};
use crate::StoreError;
use crate::requests::{
    ACTIVE, Admission, Admitted, NewRequest, WAITING_FIRST_START, candidates_sql, claim_order,
    same_ask,
};
use crate::tree::{Settle, status_in};
use harness_core::*;
use std::time::Duration;

/// Admissions take this transaction lock: the capacity and session checks and the
/// insert must see every other admission (writers of steps never take it).
const ADMIT_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtext('agent-harness admit ' || current_schema()))";

impl PgStore {
    pub(crate) async fn admit(
        &self,
        new: NewRequest,
        adm: Admission,
        now: Timestamp,
    ) -> Result<Request, StoreError> {
        in_tx!(self, |tx| admit(tx, &new, None, None, adm, now).await).map(|a| a.request)
    }

    pub(crate) async fn admit_retry(
        &self,
        original: &RequestId,
        id: RequestId,
        trace_id: String,
        adm: Admission,
        now: Timestamp,
    ) -> Result<Request, StoreError> {
        in_tx!(self, |tx| {
            let old = tree::get_request(tx, original).await?;
            let new = crate::requests::retry_of(&old, id.clone(), trace_id.clone())?;
            admit(tx, &new, Some(&old.id), None, adm, now).await
        })
        .map(|a| a.request)
    }

    pub(crate) async fn admit_keyed(
        &self,
        new: NewRequest,
        key: Option<String>,
        adm: Admission,
        now: Timestamp,
    ) -> Result<Admitted, StoreError> {
        in_tx!(self, |tx| admit(tx, &new, None, key.as_deref(), adm, now)
            .await)
    }

    pub(crate) async fn claim(
        &self,
        worker: &WorkerId,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<Request>, StoreError> {
        let token = format!(
            "lease_{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        );
        let expires = self.lease_expiry(now);
        let claimed = in_tx!(self, |tx| claim(tx, worker, limit, now, &token, expires)
            .await)?;
        let mut leases = self.leases();
        for r in &claimed {
            leases.insert(r.id.clone(), token.clone());
        }
        Ok(claimed)
    }

    pub(crate) async fn release(
        &self,
        ids: Vec<RequestId>,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let tokens: Vec<Option<String>> = ids.iter().map(|id| self.lease_of(id)).collect();
        in_tx!(self, |tx| {
            for (id, token) in ids.iter().zip(&tokens) {
                release_one(tx, id, token.as_deref(), reason, now).await?;
            }
            Ok(())
        })?;
        let mut leases = self.leases();
        for id in &ids {
            leases.remove(id);
        }
        Ok(())
    }

    pub(crate) async fn cancel(
        &self,
        id: &RequestId,
        by: &Actor,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<(Request, Vec<RequestId>), StoreError> {
        in_tx!(self, |tx| cancel(tx, id, by, reason, now).await)
    }

    pub(crate) async fn get_request(&self, id: &RequestId) -> Result<Request, StoreError> {
        let row = self
            .read_opt(
                &format!("SELECT {REQUEST_COLS} FROM requests WHERE id = $1"),
                &[&id.as_str()],
            )
            .await?;
        match row {
            Some(r) => rows::request(&r),
            None => Err(StoreError::NotFound {
                kind: "request",
                id: id.to_string(),
            }),
        }
    }

    pub(crate) async fn get_requests(&self, ids: &[RequestId]) -> Result<Vec<Request>, StoreError> {
        let ids: Vec<&str> = ids.iter().map(|i| i.as_str()).collect();
        let rows = self
            .read_rows(
                &format!("SELECT {REQUEST_COLS} FROM requests WHERE id = ANY($1)"),
                &[&ids],
            )
            .await?;
        rows::all(rows, rows::request)
    }

    pub(crate) async fn list_requests(&self, f: RequestFilter) -> Result<Vec<Request>, StoreError> {
        let statuses: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
        let session = f.session_id.as_ref().map(|s| s.to_string());
        let parent = f.parent_id.as_ref().map(|p| p.to_string());
        let limit = if f.limit == 0 {
            i64::MAX
        } else {
            f.limit as i64
        };
        let rows = self
            .read_rows(
                &format!(
                    "SELECT {REQUEST_COLS} FROM requests \
                     WHERE (cardinality($1::text[]) = 0 OR status = ANY($1)) \
                       AND ($2::text IS NULL OR session_id = $2) \
                       AND ($3::text IS NULL OR agent = $3) \
                       AND ($4::text IS NULL OR parent_id = $4) \
                       AND (NOT $5 OR parent_id IS NULL) \
                       AND ($7::bigint IS NULL OR created_at >= $7) \
                       AND ($8::text IS NULL OR trace_id = $8) \
                       AND ($9::text IS NULL OR input ILIKE $9 ESCAPE '\\' OR error ILIKE $9 ESCAPE '\\') \
                       AND ($10::text IS NULL OR retry_of = $10) \
                     ORDER BY {} LIMIT $6",
                    f.order.sql()
                ),
                &[
                    &statuses,
                    &session,
                    &f.agent,
                    &parent,
                    &f.roots_only,
                    &limit,
                    &f.since.map(|t| t.0),
                    &f.trace_id,
                    &f.text.as_deref().map(like_anywhere),
                    &f.retry_of.as_ref().map(|r| r.to_string()),
                ],
            )
            .await?;
        rows::all(rows, rows::request)
    }

    pub(crate) async fn list_sessions(&self, limit: usize) -> Result<Vec<Session>, StoreError> {
        self.sessions(None, limit).await
    }

    pub(crate) async fn get_session(&self, id: &SessionId) -> Result<Session, StoreError> {
        self.sessions(Some(id), 1)
            .await?
            .pop()
            .ok_or_else(|| StoreError::NotFound {
                kind: "session",
                id: id.to_string(),
            })
    }

    async fn sessions(
        &self,
        only: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<Session>, StoreError> {
        let limit = if limit == 0 { i64::MAX } else { limit as i64 };
        let only = only.map(|s| s.to_string());
        let rows = self
            .read_rows(
                &format!(
                    "SELECT s.id, s.created_at, s.last_activity_at, \
                       (SELECT COUNT(*) FROM requests r WHERE r.session_id = s.id AND r.parent_id IS NULL), \
                       (SELECT COUNT(*) FROM requests r WHERE r.session_id = s.id AND r.parent_id IS NULL AND r.status IN {ACTIVE}), \
                       (SELECT r.id FROM requests r WHERE r.session_id = s.id AND r.parent_id IS NULL ORDER BY r.queue_seq DESC LIMIT 1), \
                       (SELECT r.agent FROM requests r WHERE r.session_id = s.id AND r.parent_id IS NULL ORDER BY r.queue_seq DESC LIMIT 1) \
                     FROM sessions s WHERE ($1::text IS NULL OR s.id = $1) \
                     ORDER BY s.last_activity_at DESC LIMIT $2"
                ),
                &[&only, &limit],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Session {
                    id: SessionId::from_trusted(r.try_get(0)?),
                    created_at: Timestamp(r.try_get(1)?),
                    last_activity_at: Timestamp(r.try_get(2)?),
                    requests: r.try_get::<_, i64>(3)? as u32,
                    active_requests: r.try_get::<_, i64>(4)? as u32,
                    last_request_id: r
                        .try_get::<_, Option<String>>(5)?
                        .map(RequestId::from_trusted),
                    last_agent: r.try_get(6)?,
                })
            })
            .collect()
    }
}

/// A session's completed roots before request `$2`, the last `$3`, newest first.
pub(crate) const HISTORY_SQL: &str = "SELECT input, output FROM requests \
     WHERE session_id = $1 AND parent_id IS NULL AND status = 'completed' \
     AND queue_seq < (SELECT queue_seq FROM requests WHERE id = $2) \
     ORDER BY queue_seq DESC LIMIT $3";

/// [`HISTORY_SQL`]'s rows as (input, output), oldest first.
pub(crate) fn history_of(
    rows: Vec<tokio_postgres::Row>,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut out = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<_, String>(0)?,
                r.try_get::<_, Option<String>>(1)?.unwrap_or_default(),
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    out.reverse();
    Ok(out)
}

async fn admit(
    tx: &mut Tx<'_>,
    new: &NewRequest,
    retry_of: Option<&RequestId>,
    key: Option<&str>,
    adm: Admission,
    now: Timestamp,
) -> Result<Admitted, StoreError> {
    // Every admission holds the lock through its commit, so its round trips are
    // every admission's: the lock and the checks go in one, the writes and the row
    // back in another, then COMMIT. The lock also orders admissions under one
    // idempotency key: the second sees the first's row (the unique index refuses a
    // second row regardless).
    let session = new.session_id.as_str();
    let id = new.id.as_str();
    let key_text = key.unwrap_or_default();
    let count_at = 1;
    let count_sql = format!("SELECT COUNT(*) FROM requests WHERE {WAITING_FIRST_START}");
    let busy_sql =
        format!("SELECT id FROM requests WHERE session_id = $1 AND status IN {ACTIVE} LIMIT 1");
    let keyed: [P; 2] = [&session, &key_text];
    let in_session: [P; 1] = [&session];
    let mut checks = vec![Stmt::query(ADMIT_LOCK, &[]), Stmt::query(&count_sql, &[])];
    let key_at = key.map(|_| {
        checks.push(Stmt::query(
            "SELECT id FROM requests WHERE session_id = $1 AND idempotency_key = $2",
            &keyed,
        ));
        checks.len() - 1
    });
    let busy_at = adm.reject_if_session_busy.then(|| {
        checks.push(Stmt::query(&busy_sql, &in_session));
        checks.len() - 1
    });
    let out = tx.pipeline(&checks).await?;
    if let Some(row) = key_at.and_then(|i| out[i].rows_ref().first()) {
        let existing = RequestId::from_trusted(row.try_get::<_, String>(0)?);
        let existing = tree::get_request(tx, &existing).await?;
        return same_ask(existing, new, key_text);
    }
    let queued: i64 = match out[count_at].rows_ref().first() {
        Some(r) => r.try_get(0)?,
        None => 0,
    };
    if queued as usize >= adm.queue_capacity {
        return Err(StoreError::QueueFull {
            queued: queued as usize,
            capacity: adm.queue_capacity,
            retry_after: Duration::from_secs(1 + (queued as u64 / 100)),
        });
    }
    if let Some(active) = busy_at.and_then(|i| out[i].rows_ref().first()) {
        return Err(StoreError::SessionBusy {
            session: new.session_id.to_string(),
            active: active.try_get(0)?,
        });
    }

    let body = EventBody::RequestQueued {
        agent: new.agent.clone(),
        input_bytes: new.input.len(),
        trace_id: new.trace_id.clone(),
        retry_of: retry_of.cloned(),
    };
    let event_rows = events::rows_for(tx, now, &[body.about(&new.id, &new.session_id)])?;
    let event_params: Vec<_> = event_rows.iter().map(|r| r.params()).collect();
    let request = RequestRow::queued(new, now);
    let (session_params, request_params) = (request.session_params(), request.params());
    let original = retry_of.map(|o| o.as_str());
    let retry_params: [P; 2] = [&original, &id];
    let key_params: [P; 2] = [&id, &key_text];
    let row_params: [P; 1] = [&id];
    let select_row = format!("SELECT {REQUEST_COLS} FROM requests WHERE id = $1");
    let mut writes = vec![
        Stmt::exec(UPSERT_SESSION, &session_params),
        Stmt::exec(INSERT_CHILD, &request_params),
    ];
    if retry_of.is_some() {
        writes.push(Stmt::exec(
            "UPDATE requests SET retry_of = $1 WHERE id = $2",
            &retry_params,
        ));
    }
    if key.is_some() {
        writes.push(Stmt::exec(
            "UPDATE requests SET idempotency_key = $2 WHERE id = $1",
            &key_params,
        ));
    }
    for p in &event_params {
        writes.push(Stmt::exec(events::INSERT, p));
    }
    writes.push(Stmt::query(&select_row, &row_params));
    let out = tx.pipeline(&writes).await?;
    let row = out
        .last()
        .and_then(|o| o.rows_ref().first())
        .ok_or_else(|| StoreError::Io(format!("request {id} was not there after its insert")))?;
    Ok(Admitted {
        request: rows::request(row)?,
        existing: false,
    })
}

pub(super) const UPSERT_SESSION: &str = "INSERT INTO sessions (id, created_at, last_activity_at) VALUES ($1, $2, $2) \
     ON CONFLICT (id) DO UPDATE SET last_activity_at = excluded.last_activity_at";
/// A request row (a child when `parent_id` is set); `$10` is also its last activity.
/// Its parameters: [`RequestRow`].
pub(super) const INSERT_CHILD: &str = "INSERT INTO requests (id, session_id, agent, parent_id, status, attempt, current_agent, \
     input, trace_id, created_at, started_at, last_activity_at, priority, traceparent) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $10, $12, $13)";

type P<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// The parameters of [`UPSERT_SESSION`] and [`INSERT_CHILD`] for a new request: a
/// root admitted `queued`, or a delegated child that starts `running` with its
/// parent's step.
pub(super) struct RequestRow<'a> {
    new: &'a NewRequest,
    id: &'a str,
    session: &'a str,
    parent: Option<&'a str>,
    status: &'static str,
    attempt: i64,
    current_agent: Option<&'a str>,
    at: i64,
    started: Option<i64>,
}

impl<'a> RequestRow<'a> {
    pub(super) fn queued(new: &'a NewRequest, at: Timestamp) -> Self {
        RequestRow {
            new,
            id: new.id.as_str(),
            session: new.session_id.as_str(),
            parent: None,
            status: RequestStatus::Queued.as_str(),
            attempt: 0,
            current_agent: None,
            at: at.0,
            started: None,
        }
    }

    pub(super) fn child(new: &'a NewRequest, parent: &'a RequestId, at: Timestamp) -> Self {
        RequestRow {
            parent: Some(parent.as_str()),
            status: RequestStatus::Running.as_str(),
            attempt: 1,
            current_agent: Some(&new.agent),
            started: Some(at.0),
            ..RequestRow::queued(new, at)
        }
    }

    /// [`UPSERT_SESSION`]'s.
    pub(super) fn session_params(&self) -> [P<'_>; 2] {
        [&self.session, &self.at]
    }

    /// [`INSERT_CHILD`]'s.
    pub(super) fn params(&self) -> [P<'_>; 13] {
        [
            &self.id,
            &self.session,
            &self.new.agent,
            &self.parent,
            &self.status,
            &self.attempt,
            &self.current_agent,
            &self.new.input,
            &self.new.trace_id,
            &self.at,
            &self.started,
            &self.new.priority,
            &self.new.traceparent,
        ]
    }
}

async fn claim(
    tx: &mut Tx<'_>,
    worker: &WorkerId,
    limit: usize,
    now: Timestamp,
    token: &str,
    expires: i64,
) -> Result<Vec<Request>, StoreError> {
    let wanted = limit;
    let limit = (limit + crate::limits::CLAIM_SLACK) as i64;
    // The candidates are each idle session's oldest queued root, in the claim
    // order (`requests::candidates_sql`). SKIP LOCKED: workers claiming at once take
    // different requests; a session's head locked by another claim is skipped, and
    // its later requests are no candidates (the head is still the oldest queued),
    // so a session never gets two. A head claimed and committed meanwhile fails the
    // re-check of `status = 'queued'` under the row lock.
    let aging = PRIORITY_AGING_MS;
    // Each with whether its tree waits for limits (parked): only those need their
    // waits read before they are taken.
    let ids: Vec<(String, bool)> = tx
        .query(
            &format!(
                "SELECT r.id, EXISTS (SELECT 1 FROM waits w WHERE w.root_id = r.id) \
                 FROM ({}) c JOIN requests r ON r.id = c.id \
                 WHERE r.status = 'queued' AND {} \
                 ORDER BY {} LIMIT $3 FOR UPDATE OF r SKIP LOCKED",
                candidates_sql("GREATEST", "$1::bigint", "$2::bigint", ""),
                crate::limits::has_room("c.id"),
                claim_order("c")
            ),
            &[&now.0, &aging, &limit],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, StoreError>>()?;
    let ids = super::limits::with_room(tx, ids, wanted).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let worker_id = worker.as_str();
    // Stamped no earlier than the session's last activity: `now` was read before
    // this transaction, and the session's previous request may have finished since
    // (a start before that finish would misorder the session's timeline).
    let sql = format!(
        "UPDATE requests SET status = 'running', attempt = GREATEST(attempt, 1), worker_id = $2, \
             started_at = COALESCE(started_at, GREATEST($3, (SELECT last_activity_at FROM sessions s WHERE s.id = requests.session_id))), \
             last_activity_at = GREATEST($3, (SELECT last_activity_at FROM sessions s WHERE s.id = requests.session_id)), \
             current_agent = COALESCE(current_agent, agent), lease_token = $4, lease_expires_at = $5 \
         WHERE id = $1 AND {} RETURNING {REQUEST_COLS}",
        status_in(RequestStatus::Running, &[RequestStatus::Queued])
    );
    let params: Vec<[&(dyn tokio_postgres::types::ToSql + Sync); 5]> = ids
        .iter()
        .map(|id| {
            [
                id as &(dyn tokio_postgres::types::ToSql + Sync),
                &worker_id,
                &now.0,
                &token,
                &expires,
            ]
        })
        .collect();
    let mut stmts: Vec<Stmt> = params.iter().map(|p| Stmt::query(&sql, p)).collect();
    // The sessions served now go to the back of the round robin.
    let served = "UPDATE sessions SET last_claimed_at = $2, claim_seq = nextval('session_claim_seq') \
         WHERE id = (SELECT session_id FROM requests WHERE id = $1)";
    let served_params: Vec<[&(dyn tokio_postgres::types::ToSql + Sync); 2]> = ids
        .iter()
        .map(|id| [id as &(dyn tokio_postgres::types::ToSql + Sync), &now.0])
        .collect();
    stmts.extend(served_params.iter().map(|p| Stmt::exec(served, p)));
    // A claimed root starts with nothing held and nothing waited for.
    let root_params: Vec<[&(dyn tokio_postgres::types::ToSql + Sync); 1]> = ids
        .iter()
        .map(|id| [id as &(dyn tokio_postgres::types::ToSql + Sync)])
        .collect();
    for p in &root_params {
        stmts.push(Stmt::exec(super::limits::CLEAR_HOLDS, p));
        stmts.push(Stmt::exec(super::limits::CLEAR_WAITS, p));
    }
    let mut claimed = Vec::with_capacity(ids.len());
    for out in tx.pipeline(&stmts).await? {
        for row in out.rows() {
            claimed.push(rows::request(&row)?);
        }
    }
    let started: Vec<NewEvent> = claimed
        .iter()
        .map(|r| {
            EventBody::RequestStarted {
                attempt: r.attempt,
                worker_id: worker.clone(),
            }
            .about(&r.id, &r.session_id)
        })
        .collect();
    events::append_and_commit(tx, now, &started).await?;
    Ok(claimed)
}

async fn release_one(
    tx: &mut Tx<'_>,
    id: &RequestId,
    token: Option<&str>,
    reason: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE requests SET status = 'queued', worker_id = NULL, lease_token = NULL, \
         lease_expires_at = NULL, last_activity_at = $2 \
         WHERE id = $1 AND {} AND ($3::text IS NULL OR lease_token = $3) RETURNING session_id",
        status_in(RequestStatus::Queued, &[RequestStatus::Running])
    );
    let row = tx.query_opt(&sql, &[&id.as_str(), &now.0, &token]).await?;
    if let Some(row) = row {
        let session = SessionId::from_trusted(row.try_get(0)?);
        let body = EventBody::RequestRequeued {
            reason: reason.to_string(),
        };
        events::append(tx, now, &[body.about(id, &session)]).await?;
    }
    Ok(())
}

async fn cancel(
    tx: &mut Tx<'_>,
    id: &RequestId,
    by: &Actor,
    reason: Option<&str>,
    now: Timestamp,
) -> Result<(Request, Vec<RequestId>), StoreError> {
    let root = tree::root_id(tx, id).await?;
    tree::lock_root(tx, &root).await?;
    let req = tree::get_request(tx, id).await?;
    if req.status.is_terminal() {
        return Err(StoreError::WrongState {
            id: id.to_string(),
            status: req.status,
            action: "cancel it",
        });
    }
    let settled = tree::settle_subtree(
        tx,
        &Settle {
            to: RequestStatus::Cancelled,
            by,
            reason,
            top: id,
        },
        now,
    )
    .await?;
    if let Some(parent) = &req.parent_id {
        let reason = format!("delegated request {id} was cancelled");
        tree::wake_chain(tx, parent, now, &reason, false).await?;
    }
    Ok((tree::get_request(tx, id).await?, settled))
}
