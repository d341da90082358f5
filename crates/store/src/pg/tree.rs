//! Request trees and status moves on PostgreSQL: the rules of `crate::tree`, the
//! same statements in PostgreSQL's dialect. Every status update is conditional on
//! [`RequestStatus::can_move_to`] (`crate::tree::status_in`), and every change
//! appends its event in the same transaction.

use super::rows::{self, APPROVAL_COLS, REQUEST_COLS};
use super::{Tx, events};
use crate::StoreError;
use crate::tree::{Settle, status_in};
use harness_core::*;

pub(super) async fn get_request(tx: &mut Tx<'_>, id: &RequestId) -> Result<Request, StoreError> {
    let row = tx
        .query_opt(
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

/// Locks `root`'s row: every transaction that changes a tree takes its root first,
/// so two of them on one tree queue instead of deadlocking.
pub(super) async fn lock_root(tx: &mut Tx<'_>, root: &RequestId) -> Result<(), StoreError> {
    tx.query(
        "SELECT 1 FROM requests WHERE id = $1 FOR UPDATE",
        &[&root.as_str()],
    )
    .await?;
    Ok(())
}

/// Moves one request to `to` (from any status that may move there, narrowed to
/// `from`); returns whether it moved.
pub(super) async fn move_to(
    tx: &mut Tx<'_>,
    id: &RequestId,
    to: RequestStatus,
    from: &[RequestStatus],
    now: Timestamp,
    error: Option<&str>,
) -> Result<bool, StoreError> {
    let sql = format!(
        "UPDATE requests SET status = $2, last_activity_at = $3, \
         finished_at = CASE WHEN $4 THEN $3 ELSE finished_at END, error = COALESCE($5, error), \
         worker_id = CASE WHEN $2 = 'queued' THEN NULL ELSE worker_id END, \
         lease_token = CASE WHEN $2 = 'queued' THEN NULL ELSE lease_token END, \
         lease_expires_at = CASE WHEN $2 = 'running' THEN lease_expires_at ELSE NULL END \
         WHERE id = $1 AND {}",
        status_in(to, from)
    );
    let changed = tx
        .execute(
            &sql,
            &[
                &id.as_str(),
                &to.as_str(),
                &now.0,
                &to.is_terminal(),
                &error,
            ],
        )
        .await?;
    Ok(changed > 0)
}

/// `id` and every request delegated under it, parents before children.
pub(super) async fn subtree(tx: &mut Tx<'_>, id: &RequestId) -> Result<Vec<RequestId>, StoreError> {
    let rows = tx
        .query(
            "WITH RECURSIVE t(id, depth) AS (SELECT $1::text, 0 \
               UNION ALL SELECT r.id, t.depth + 1 FROM requests r JOIN t ON r.parent_id = t.id) \
             SELECT id FROM t ORDER BY depth, id",
            &[&id.as_str()],
        )
        .await?;
    rows.iter()
        .map(|r| Ok(RequestId::from_trusted(r.try_get(0)?)))
        .collect()
}

/// The root of `id`'s tree.
pub(super) async fn root_of(tx: &mut Tx<'_>, id: &RequestId) -> Result<Request, StoreError> {
    let mut r = get_request(tx, id).await?;
    while let Some(pid) = r.parent_id.clone() {
        r = get_request(tx, &pid).await?;
    }
    Ok(r)
}

/// The root's id of `id`'s tree, without reading the rows twice when `id` is one.
pub(super) async fn root_id(tx: &mut Tx<'_>, id: &RequestId) -> Result<RequestId, StoreError> {
    let row = tx
        .query_opt(
            "WITH RECURSIVE up(id, parent_id) AS (SELECT id, parent_id FROM requests WHERE id = $1 \
               UNION ALL SELECT r.id, r.parent_id FROM requests r JOIN up ON r.id = up.parent_id) \
             SELECT id FROM up WHERE parent_id IS NULL",
            &[&id.as_str()],
        )
        .await?;
    match row {
        Some(r) => Ok(RequestId::from_trusted(r.try_get(0)?)),
        None => Err(StoreError::NotFound {
            kind: "request",
            id: id.to_string(),
        }),
    }
}

/// Settles every active request of `top`'s subtree, rejecting their pending
/// approvals; returns the requests it moved. Each change gets its event.
pub(super) async fn settle_subtree(
    tx: &mut Tx<'_>,
    s: &Settle<'_>,
    now: Timestamp,
) -> Result<Vec<RequestId>, StoreError> {
    let mut moved = Vec::new();
    for id in subtree(tx, s.top).await? {
        let error = s.error();
        if !move_to(tx, &id, s.to, &[], now, Some(&error)).await? {
            continue;
        }
        let req = get_request(tx, &id).await?;
        reject_pending(tx, &id, s.by, s.message(), now).await?;
        let body = s.event(&id, error);
        events::append(tx, now, &[body.about(&id, &req.session_id)]).await?;
        moved.push(id);
    }
    Ok(moved)
}

/// Rejects the request's pending approvals, each with its `approval.resolved` event.
async fn reject_pending(
    tx: &mut Tx<'_>,
    id: &RequestId,
    by: &Actor,
    message: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let pending = tx
        .query(
            &format!(
                "SELECT {APPROVAL_COLS} FROM approvals WHERE request_id = $1 AND status = 'pending'"
            ),
            &[&id.as_str()],
        )
        .await?;
    for row in pending {
        let mut a = rows::approval(&row)?;
        let changed = tx
            .execute(
                "UPDATE approvals SET status = 'rejected', decided_by = $2, message = $3, \
                 decided_at = $4, decided_by_kind = $5 WHERE id = $1 AND status = 'pending'",
                &[
                    &a.id.as_str(),
                    &by.name,
                    &message,
                    &now.0,
                    &by.kind.as_str(),
                ],
            )
            .await?;
        if changed == 0 {
            continue;
        }
        a.status = ApprovalStatus::Rejected;
        a.decided_by = Some(by.name.clone());
        a.decided_by_kind = Some(by.kind);
        a.message = Some(message.to_string());
        a.decided_at = Some(now);
        let (rid, sid) = (a.request_id.clone(), a.session_id.clone());
        let body = EventBody::ApprovalResolved {
            approval: Box::new(a),
        };
        events::append(tx, now, &[body.about(&rid, &sid)]).await?;
    }
    Ok(())
}

/// Makes `id` and every ancestor waiting on it runnable again (`waiting_approval`
/// → `queued`), each with a `request.requeued` event giving `reason` — except `id`
/// itself when the caller's own event explains it. Returns the requests it moved.
pub(super) async fn wake_chain(
    tx: &mut Tx<'_>,
    id: &RequestId,
    now: Timestamp,
    reason: &str,
    explained: bool,
) -> Result<Vec<RequestId>, StoreError> {
    let (moved, events) = wake_chain_events(tx, id, now, reason, explained).await?;
    events::append(tx, now, &events).await?;
    Ok(moved)
}

/// [`wake_chain`]'s move, in one statement, without its events: the requests it
/// moved, `id` first and the root last, and the events to append for them.
pub(super) async fn wake_chain_events(
    tx: &mut Tx<'_>,
    id: &RequestId,
    now: Timestamp,
    reason: &str,
    explained: bool,
) -> Result<(Vec<RequestId>, Vec<NewEvent>), StoreError> {
    // `move_to`'s assignments for a move to `queued`: the worker and its lease go.
    let sql = format!(
        "WITH RECURSIVE up(id, parent_id, depth) AS ( \
           SELECT id, parent_id, 0 FROM requests WHERE id = $1 \
           UNION ALL SELECT r.id, r.parent_id, up.depth + 1 FROM requests r JOIN up ON r.id = up.parent_id) \
         UPDATE requests r SET status = 'queued', last_activity_at = $2, worker_id = NULL, \
           lease_token = NULL, lease_expires_at = NULL \
         FROM up WHERE r.id = up.id AND r.{} \
         RETURNING r.id, r.session_id, up.depth",
        status_in(RequestStatus::Queued, &[RequestStatus::WaitingApproval])
    );
    let rows = tx.query(&sql, &[&id.as_str(), &now.0]).await?;
    let mut moved = Vec::with_capacity(rows.len());
    for r in &rows {
        let depth: i32 = r.try_get(2)?;
        let rid = RequestId::from_trusted(r.try_get(0)?);
        let session = SessionId::from_trusted(r.try_get(1)?);
        moved.push((depth, rid, session));
    }
    moved.sort_by_key(|(depth, ..)| *depth);
    let events = moved
        .iter()
        .filter(|(_, rid, _)| !(explained && rid == id))
        .map(|(_, rid, session)| {
            EventBody::RequestRequeued {
                reason: reason.to_string(),
            }
            .about(rid, session)
        })
        .collect();
    Ok((moved.into_iter().map(|(_, rid, _)| rid).collect(), events))
}

/// The ancestors of a child that pauses on `approval` pause with it (`running` →
/// `waiting_approval`), each with its event. An ancestor that is no longer
/// running refuses the whole commit.
pub(super) async fn pause_ancestors(
    tx: &mut Tx<'_>,
    child: &RequestId,
    ancestors: &[RequestId],
    approval: Option<&ApprovalId>,
    now: Timestamp,
) -> Result<Vec<i64>, StoreError> {
    let mut seqs = Vec::new();
    for id in ancestors {
        let moved = move_to(
            tx,
            id,
            RequestStatus::WaitingApproval,
            &[RequestStatus::Running],
            now,
            None,
        )
        .await?;
        let r = get_request(tx, id).await?;
        if !moved {
            return Err(StoreError::WrongState {
                id: id.to_string(),
                status: r.status,
                action: "pause with its delegated child",
            });
        }
        let body = EventBody::RequestWaitingApproval {
            approval_id: approval.cloned(),
            via_child: Some(child.clone()),
        };
        seqs.extend(events::append(tx, now, &[body.about(id, &r.session_id)]).await?);
    }
    Ok(seqs)
}

/// Whether `id` or anything delegated under it has a pending approval.
pub(super) async fn has_pending_approval(
    tx: &mut Tx<'_>,
    id: &RequestId,
) -> Result<bool, StoreError> {
    let row = tx
        .query_opt(
            "WITH RECURSIVE t(id) AS (SELECT $1::text \
               UNION ALL SELECT r.id FROM requests r JOIN t ON r.parent_id = t.id) \
             SELECT 1 FROM approvals a JOIN t ON a.request_id = t.id \
             WHERE a.status = 'pending' LIMIT 1",
            &[&id.as_str()],
        )
        .await?;
    Ok(row.is_some())
}

/// Requests matching `condition` (with `$1`… bound to `args`).
pub(super) async fn requests_where(
    tx: &mut Tx<'_>,
    condition: &str,
    args: super::Params<'_>,
) -> Result<Vec<Request>, StoreError> {
    let rows = tx
        .query(
            &format!("SELECT {REQUEST_COLS} FROM requests WHERE {condition}"),
            args,
        )
        .await?;
    rows::all(rows, rows::request)
}
