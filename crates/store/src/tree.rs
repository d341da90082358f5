//! Request trees and status moves.
//!
//! A delegated child and its ancestors are one unit for an operator: any change
//! that pauses, wakes, cancels or fails part of a tree moves the rest of it in
//! the same transaction, with an event for every row it changes. Every request
//! status change in this crate goes through [`status_in`], so an update only
//! applies from the statuses [`RequestStatus::can_move_to`] allows.

use crate::rows::{self, APPROVAL_COLS, REQUEST_COLS};
use crate::{StoreError, events, requests};
use harness_core::*;
use rusqlite::{Connection, params};

/// `status IN (…)`: the statuses that may move to `to`, narrowed to `from` when given.
pub(crate) fn status_in(to: RequestStatus, from: &[RequestStatus]) -> String {
    let allowed: Vec<String> = RequestStatus::sources(to)
        .into_iter()
        .filter(|s| from.is_empty() || from.contains(s))
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    assert!(
        !allowed.is_empty(),
        "no status in {from:?} may move to {to}: a bug in the caller"
    );
    format!("status IN ({})", allowed.join(","))
}

/// Moves one request to `to` (from any status that may move there, narrowed to
/// `from`); returns whether it moved. Terminal moves set `finished_at`, and
/// `error` when given; a move back to `queued` clears the worker.
pub(crate) fn move_to(
    c: &Connection,
    id: &RequestId,
    to: RequestStatus,
    from: &[RequestStatus],
    now: Timestamp,
    error: Option<&str>,
) -> Result<bool, StoreError> {
    let sql = format!(
        "UPDATE requests SET status = ?2, last_activity_at = ?3, \
         finished_at = CASE WHEN ?4 THEN ?3 ELSE finished_at END, error = COALESCE(?5, error), \
         worker_id = CASE WHEN ?2 = 'queued' THEN NULL ELSE worker_id END \
         WHERE id = ?1 AND {}",
        status_in(to, from)
    );
    let changed = c.prepare_cached(&sql)?.execute(params![
        id.as_str(),
        to.as_str(),
        now.0,
        to.is_terminal(),
        error
    ])?;
    Ok(changed > 0)
}

/// `id` and every request delegated under it, parents before children.
pub(crate) fn subtree(c: &Connection, id: &RequestId) -> Result<Vec<RequestId>, StoreError> {
    let mut out = vec![id.clone()];
    let mut i = 0;
    let mut stmt = c.prepare_cached("SELECT id FROM requests WHERE parent_id = ?1")?;
    while i < out.len() {
        let children = stmt.query_map([out[i].as_str()], |r| r.get::<_, String>(0))?;
        for child in children {
            out.push(RequestId::from_trusted(child?));
        }
        i += 1;
    }
    Ok(out)
}

/// The root of `id`'s tree.
pub(crate) fn root_of(c: &Connection, id: &RequestId) -> Result<Request, StoreError> {
    let mut r = requests::get_request(c, id)?;
    while let Some(pid) = r.parent_id.clone() {
        r = requests::get_request(c, &pid)?;
    }
    Ok(r)
}

/// Why a subtree is being settled, and by whom.
pub(crate) struct Settle<'a> {
    /// `Cancelled` or `Failed`.
    pub to: RequestStatus,
    /// Who decided (an operator, or the runtime).
    pub by: &'a Actor,
    /// The operator's reason, or the failure.
    pub reason: Option<&'a str>,
    /// The request the action named (events of the others point at it).
    pub top: &'a RequestId,
}

impl Settle<'_> {
    /// The `error` recorded on each settled request.
    pub(crate) fn error(&self) -> String {
        match self.to {
            RequestStatus::Cancelled => match self.reason {
                Some(r) => format!("cancelled by {}: {r}", self.by.name),
                None => format!("cancelled by {}", self.by.name),
            },
            _ => self.reason.unwrap_or("failed").to_string(),
        }
    }

    /// The message on each approval the settle rejects.
    pub(crate) fn message(&self) -> &'static str {
        match self.to {
            RequestStatus::Cancelled => "request cancelled",
            _ => "request failed",
        }
    }

    /// The event about settled request `id`.
    pub(crate) fn event(&self, id: &RequestId, error: String) -> EventBody {
        let with = (id != self.top).then(|| self.top.clone());
        match self.to {
            RequestStatus::Cancelled => EventBody::RequestCancelled {
                by: self.by.clone(),
                reason: self.reason.map(str::to_string),
                with,
            },
            _ => EventBody::RequestFailed { error },
        }
    }
}

/// Settles every active request of `top`'s subtree, rejecting their pending
/// approvals; returns the requests it moved. Each change gets its event.
pub(crate) fn settle_subtree(
    c: &Connection,
    s: &Settle<'_>,
    now: Timestamp,
) -> Result<Vec<RequestId>, StoreError> {
    let mut moved = Vec::new();
    for id in subtree(c, s.top)? {
        let error = s.error();
        if !move_to(c, &id, s.to, &[], now, Some(&error))? {
            continue;
        }
        let req = requests::get_request(c, &id)?;
        reject_pending(c, &id, s.by, s.message(), now)?;
        let body = s.event(&id, error);
        events::append(c, now, &[body.about(&id, &req.session_id)])?;
        moved.push(id);
    }
    Ok(moved)
}

/// Rejects the request's pending approvals (its run will never ask again), each
/// with its `approval.resolved` event.
fn reject_pending(
    c: &Connection,
    id: &RequestId,
    by: &Actor,
    message: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let pending: Vec<Approval> = {
        let mut stmt = c.prepare_cached(&format!(
            "SELECT {APPROVAL_COLS} FROM approvals WHERE request_id = ?1 AND status = 'pending'"
        ))?;
        let rows = stmt.query_map([id.as_str()], rows::approval)?;
        rows.collect::<Result<_, _>>()?
    };
    for mut a in pending {
        let changed = c
            .prepare_cached(
                "UPDATE approvals SET status = 'rejected', decided_by = ?2, message = ?3, \
                 decided_at = ?4, decided_by_kind = ?5 WHERE id = ?1 AND status = 'pending'",
            )?
            .execute(params![
                a.id.as_str(),
                by.name,
                message,
                now.0,
                by.kind.as_str()
            ])?;
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
        events::append(c, now, &[body.about(&rid, &sid)])?;
    }
    Ok(())
}

/// Makes `id` and every ancestor waiting on it runnable again (`waiting_approval`
/// → `queued`), each with a `request.requeued` event giving `reason` — except `id`
/// itself when the caller's own event explains it (`approval.resolved`, say).
/// Returns the requests it moved.
pub(crate) fn wake_chain(
    c: &Connection,
    id: &RequestId,
    now: Timestamp,
    reason: &str,
    explained: bool,
) -> Result<Vec<RequestId>, StoreError> {
    let mut moved = Vec::new();
    let mut next = Some(id.clone());
    while let Some(rid) = next {
        let r = requests::get_request(c, &rid)?;
        if move_to(
            c,
            &rid,
            RequestStatus::Queued,
            &[RequestStatus::WaitingApproval],
            now,
            None,
        )? {
            if !(explained && &rid == id) {
                let body = EventBody::RequestRequeued {
                    reason: reason.to_string(),
                };
                events::append(c, now, &[body.about(&rid, &r.session_id)])?;
            }
            moved.push(rid.clone());
        }
        next = r.parent_id;
    }
    Ok(moved)
}

/// The ancestors of a child that pauses on `approval` pause with it (`running` →
/// `waiting_approval`), each with its event. An ancestor that is no longer
/// running (the tree was cancelled) refuses the whole commit.
pub(crate) fn pause_ancestors(
    c: &Connection,
    child: &RequestId,
    ancestors: &[RequestId],
    approval: Option<&ApprovalId>,
    now: Timestamp,
) -> Result<(), StoreError> {
    for id in ancestors {
        if !move_to(
            c,
            id,
            RequestStatus::WaitingApproval,
            &[RequestStatus::Running],
            now,
            None,
        )? {
            let r = requests::get_request(c, id)?;
            return Err(StoreError::WrongState {
                id: id.to_string(),
                status: r.status,
                action: "pause with its delegated child",
            });
        }
        let r = requests::get_request(c, id)?;
        let body = EventBody::RequestWaitingApproval {
            approval_id: approval.cloned(),
            via_child: Some(child.clone()),
        };
        events::append(c, now, &[body.about(id, &r.session_id)])?;
    }
    Ok(())
}

/// Whether `id` or anything delegated under it has a pending approval.
pub(crate) fn has_pending_approval(c: &Connection, id: &RequestId) -> Result<bool, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT 1 FROM approvals WHERE request_id = ?1 AND status = 'pending' LIMIT 1",
    )?;
    for rid in subtree(c, id)? {
        if stmt.exists([rid.as_str()])? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Requests of `ids`, read in one place for the repair scan.
pub(crate) fn requests_where(
    c: &Connection,
    condition: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Request>, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {REQUEST_COLS} FROM requests WHERE {condition}"
    ))?;
    let rows = stmt.query_map(args, rows::request)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
