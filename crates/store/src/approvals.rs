//! Approvals: raised with the step that needs them; resolved by one conditional
//! update (`... AND status = 'pending'`), so concurrent approvers cannot both win.

use crate::query::Query;
use crate::rows::{self, APPROVAL_COLS};
use crate::{SqliteStore, StoreError, events, tree};
use harness_core::*;
use rusqlite::{Connection, OptionalExtension, params};

impl SqliteStore {
    /// Resolves a pending approval and makes its request runnable again, atomically.
    /// Refused (nothing changed) if the approval is not pending, expired, or does not
    /// belong to the given request and session.
    pub async fn resolve_approval(
        &self,
        r: ResolveApproval,
        now: Timestamp,
    ) -> Result<Approval, StoreError> {
        self.write(move |c| resolve(c, &r, now)).await
    }

    /// Marks pending approvals past their expiry as expired. With `fail_request`, their
    /// requests fail; otherwise they become runnable and the model sees the expiry.
    pub async fn expire_approvals(
        &self,
        now: Timestamp,
        fail_request: bool,
    ) -> Result<Vec<Approval>, StoreError> {
        self.write(move |c| expire(c, now, fail_request)).await
    }

    pub async fn get_approval(&self, id: &ApprovalId) -> Result<Approval, StoreError> {
        let id = id.clone();
        self.read(move |c| get(c, &id)).await
    }

    pub async fn list_approvals(&self, f: ApprovalFilter) -> Result<Vec<Approval>, StoreError> {
        self.read(move |c| list(c, &f)).await
    }

    /// Marks a delegated child request `running` again when its root resumes it
    /// (with a `request.started` event naming the root's worker).
    pub async fn resume_child(&self, id: &RequestId, now: Timestamp) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(move |c| {
            let moved = tree::move_to(
                c,
                &id,
                RequestStatus::Running,
                &[RequestStatus::Queued],
                now,
                None,
            )?;
            let root = tree::root_of(c, &id)?;
            if let (true, Some(worker_id)) = (moved, root.worker_id) {
                let child = crate::requests::get_request(c, &id)?;
                let body = EventBody::RequestStarted {
                    attempt: child.attempt,
                    worker_id,
                };
                events::append(c, now, &[body.about(&id, &child.session_id)])?;
            }
            Ok(())
        })
        .await
    }
}

pub(crate) fn insert(c: &Connection, a: &Approval) -> Result<(), StoreError> {
    c.prepare_cached(&format!(
        "INSERT INTO approvals ({APPROVAL_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))?
    .execute(params![
        a.id.as_str(),
        a.request_id.as_str(),
        a.session_id.as_str(),
        a.agent,
        a.step_idx,
        a.call_id.as_str(),
        a.tool,
        a.arguments.to_string(),
        a.status.as_str(),
        a.decided_by,
        a.message,
        a.edited_arguments.as_ref().map(|v| v.to_string()),
        a.created_at.0,
        a.decided_at.map(|t| t.0),
        a.expires_at.0,
        a.reason,
        a.decided_by_kind.map(|k| k.as_str()),
    ])?;
    Ok(())
}

pub(crate) fn get(c: &Connection, id: &ApprovalId) -> Result<Approval, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {APPROVAL_COLS} FROM approvals WHERE id = ?1"
    ))?
    .query_row([id.as_str()], rows::approval)
    .optional()?
    .ok_or_else(|| StoreError::NotFound {
        kind: "approval",
        id: id.to_string(),
    })
}

fn resolve(c: &Connection, r: &ResolveApproval, now: Timestamp) -> Result<Approval, StoreError> {
    let changed = c
        .prepare_cached(
            "UPDATE approvals SET status = ?2, decided_by = ?3, message = ?4, edited_arguments = ?5, \
             decided_at = ?6, decided_by_kind = ?9 WHERE id = ?1 AND status = 'pending' \
             AND request_id = ?7 AND session_id = ?8 AND expires_at > ?6",
        )?
        .execute(params![
            r.approval_id.as_str(),
            r.decision.status().as_str(),
            r.decided_by.name,
            r.message,
            r.edited_arguments.as_ref().map(|v| v.to_string()),
            now.0,
            r.request_id.as_str(),
            r.session_id.as_str(),
            r.decided_by.kind.as_str(),
        ])?;
    if changed == 0 {
        return Err(refusal(c, r, now)?);
    }
    let a = get(c, &r.approval_id)?;
    // The tree paused with its approval in one commit, so it wakes as one.
    let reason = resolved_reason(&a);
    tree::wake_chain(c, &a.request_id, now, &reason, true)?;
    let body = EventBody::ApprovalResolved {
        approval: Box::new(a.clone()),
    };
    events::append(c, now, &[body.about(&a.request_id, &a.session_id)])?;
    Ok(a)
}

/// Why a resolution changed nothing, as precisely as the row allows.
fn refusal(c: &Connection, r: &ResolveApproval, now: Timestamp) -> Result<StoreError, StoreError> {
    Ok(refusal_of(&get(c, &r.approval_id)?, r, now))
}

/// Why resolving `a` as `r` asks is refused.
pub(crate) fn refusal_of(a: &Approval, r: &ResolveApproval, now: Timestamp) -> StoreError {
    if a.request_id != r.request_id {
        StoreError::ApprovalMismatch {
            id: a.id.to_string(),
            field: "request",
            actual: a.request_id.to_string(),
            given: r.request_id.to_string(),
        }
    } else if a.session_id != r.session_id {
        StoreError::ApprovalMismatch {
            id: a.id.to_string(),
            field: "session",
            actual: a.session_id.to_string(),
            given: r.session_id.to_string(),
        }
    } else if a.status == ApprovalStatus::Pending && a.expires_at <= now {
        StoreError::ApprovalExpired {
            id: a.id.to_string(),
            expires_at: a.expires_at,
        }
    } else {
        StoreError::ApprovalNotPending {
            id: a.id.to_string(),
            status: a.status,
            decided_by: a.decided_by.clone(),
            decided_at: a.decided_at,
        }
    }
}

/// The reason given to the requests an approval's resolution wakes.
pub(crate) fn resolved_reason(a: &Approval) -> String {
    format!(
        "approval {} of request {} was {}",
        a.id, a.request_id, a.status
    )
}

/// The reason given to the requests an approval's expiry wakes.
pub(crate) fn expired_reason(a: &Approval) -> String {
    format!("approval {} of request {} expired", a.id, a.request_id)
}

/// The failure of a tree whose approval expired under policy `fail`.
pub(crate) fn expired_failure(a: &Approval) -> String {
    format!(
        "approval {} for `{}` expired at {}",
        a.id, a.tool, a.expires_at
    )
}

fn expire(c: &Connection, now: Timestamp, fail_request: bool) -> Result<Vec<Approval>, StoreError> {
    let due: Vec<Approval> = {
        let mut stmt = c.prepare_cached(&format!(
            "SELECT {APPROVAL_COLS} FROM approvals WHERE status = 'pending' AND expires_at <= ?1"
        ))?;
        let rows = stmt.query_map([now.0], rows::approval)?;
        rows.collect::<Result<_, _>>()?
    };
    let mut out = Vec::with_capacity(due.len());
    for a in due {
        let changed = c.execute(
            "UPDATE approvals SET status = 'expired', decided_by = 'runtime', \
             decided_by_kind = 'runtime', decided_at = ?2 WHERE id = ?1 AND status = 'pending'",
            params![a.id.as_str(), now.0],
        )?;
        if changed == 0 {
            continue;
        }
        let body = EventBody::ApprovalExpired {
            approval: Box::new(a.clone()),
        };
        events::append(c, now, &[body.about(&a.request_id, &a.session_id)])?;
        if fail_request {
            fail_tree(c, &a, now)?;
        } else {
            let reason = expired_reason(&a);
            tree::wake_chain(c, &a.request_id, now, &reason, true)?;
        }
        out.push(get(c, &a.id)?);
    }
    Ok(out)
}

/// Policy `fail`: the approval's whole tree fails.
fn fail_tree(c: &Connection, a: &Approval, now: Timestamp) -> Result<(), StoreError> {
    let reason = expired_failure(a);
    let root = tree::root_of(c, &a.request_id)?;
    tree::settle_subtree(
        c,
        &tree::Settle {
            to: RequestStatus::Failed,
            by: &Actor::runtime(),
            reason: Some(&reason),
            top: &root.id,
        },
        now,
    )?;
    Ok(())
}

/// A request's approvals, newest first.
pub(crate) fn of_request(c: &Connection, id: &RequestId) -> Result<Vec<Approval>, StoreError> {
    list(
        c,
        &ApprovalFilter {
            request_id: Some(id.clone()),
            ..Default::default()
        },
    )
}

fn list(c: &Connection, f: &ApprovalFilter) -> Result<Vec<Approval>, StoreError> {
    Query::select(APPROVAL_COLS, "approvals")
        .any_of("status", f.statuses.iter().map(|s| s.as_str()))
        .eq("session_id", f.session_id.as_ref().map(|s| s.to_string()))
        .eq("request_id", f.request_id.as_ref().map(|r| r.to_string()))
        .fetch(c, "created_at DESC, id DESC", f.limit, rows::approval)
}
