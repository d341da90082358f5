//! Approvals on PostgreSQL: raised with the step that needs them; resolved and
//! expired by one conditional update (`… AND status = 'pending'`), with the tree's
//! root locked first.

use super::rows::{self, APPROVAL_COLS};
use super::{PgStore, Stmt, Tx, events, in_tx, tree};
use crate::StoreError;
use crate::approvals::{expired_failure, expired_reason, refusal_of, resolved_reason};
use crate::tree::Settle;
use harness_core::*;
use tokio_postgres::types::ToSql;

/// Approvals by status (`$1`, none: any), session (`$2`) and request (`$3`), newest
/// first, at most `$4`.
pub(crate) fn list_sql() -> String {
    format!(
        "SELECT {APPROVAL_COLS} FROM approvals \
         WHERE (cardinality($1::text[]) = 0 OR status = ANY($1)) \
           AND ($2::text IS NULL OR session_id = $2) \
           AND ($3::text IS NULL OR request_id = $3) \
         ORDER BY created_at DESC, id DESC LIMIT $4"
    )
}

pub(super) const INSERT: &str = "INSERT INTO approvals (id, request_id, session_id, agent, step_idx, \
     call_id, tool, arguments, status, decided_by, message, edited_arguments, created_at, \
     decided_at, expires_at, reason, decided_by_kind) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";

/// The owned parameters of an approval row.
pub(super) struct ApprovalRow {
    id: String,
    request_id: String,
    session_id: String,
    agent: String,
    step_idx: i64,
    call_id: String,
    tool: String,
    arguments: String,
    status: &'static str,
    decided_by: Option<String>,
    message: Option<String>,
    edited_arguments: Option<String>,
    created_at: i64,
    decided_at: Option<i64>,
    expires_at: i64,
    reason: Option<String>,
    decided_by_kind: Option<&'static str>,
}

impl ApprovalRow {
    pub(super) fn of(a: &Approval) -> ApprovalRow {
        ApprovalRow {
            id: a.id.to_string(),
            request_id: a.request_id.to_string(),
            session_id: a.session_id.to_string(),
            agent: a.agent.clone(),
            step_idx: a.step_idx as i64,
            call_id: a.call_id.to_string(),
            tool: a.tool.clone(),
            arguments: a.arguments.to_string(),
            status: a.status.as_str(),
            decided_by: a.decided_by.clone(),
            message: a.message.clone(),
            edited_arguments: a.edited_arguments.as_ref().map(|v| v.to_string()),
            created_at: a.created_at.0,
            decided_at: a.decided_at.map(|t| t.0),
            expires_at: a.expires_at.0,
            reason: a.reason.clone(),
            decided_by_kind: a.decided_by_kind.map(|k| k.as_str()),
        }
    }

    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.id,
            &self.request_id,
            &self.session_id,
            &self.agent,
            &self.step_idx,
            &self.call_id,
            &self.tool,
            &self.arguments,
            &self.status,
            &self.decided_by,
            &self.message,
            &self.edited_arguments,
            &self.created_at,
            &self.decided_at,
            &self.expires_at,
            &self.reason,
            &self.decided_by_kind,
        ]
    }
}

pub(super) async fn get(tx: &mut Tx<'_>, id: &ApprovalId) -> Result<Approval, StoreError> {
    let row = tx
        .query_opt(
            &format!("SELECT {APPROVAL_COLS} FROM approvals WHERE id = $1"),
            &[&id.as_str()],
        )
        .await?;
    match row {
        Some(r) => rows::approval(&r),
        None => Err(StoreError::NotFound {
            kind: "approval",
            id: id.to_string(),
        }),
    }
}

impl PgStore {
    pub(crate) async fn resolve_approval(
        &self,
        r: ResolveApproval,
        now: Timestamp,
    ) -> Result<Approval, StoreError> {
        in_tx!(self, |tx| resolve(tx, &r, now).await)
    }

    pub(crate) async fn expire_approvals(
        &self,
        now: Timestamp,
        fail_request: bool,
    ) -> Result<Vec<Approval>, StoreError> {
        let due = self
            .read_rows(
                &format!(
                    "SELECT {APPROVAL_COLS} FROM approvals WHERE status = 'pending' AND expires_at <= $1"
                ),
                &[&now.0],
            )
            .await?;
        let due = rows::all(due, rows::approval)?;
        let mut out = Vec::with_capacity(due.len());
        // One transaction per approval: each locks its own tree's root.
        for a in due {
            if let Some(a) = in_tx!(self, |tx| expire_one(tx, &a, now, fail_request).await)? {
                out.push(a);
            }
        }
        Ok(out)
    }

    pub(crate) async fn get_approval(&self, id: &ApprovalId) -> Result<Approval, StoreError> {
        let row = self
            .read_opt(
                &format!("SELECT {APPROVAL_COLS} FROM approvals WHERE id = $1"),
                &[&id.as_str()],
            )
            .await?;
        match row {
            Some(r) => rows::approval(&r),
            None => Err(StoreError::NotFound {
                kind: "approval",
                id: id.to_string(),
            }),
        }
    }

    pub(crate) async fn list_approvals(
        &self,
        f: ApprovalFilter,
    ) -> Result<Vec<Approval>, StoreError> {
        let statuses: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
        let session = f.session_id.as_ref().map(|s| s.to_string());
        let request = f.request_id.as_ref().map(|r| r.to_string());
        let limit = if f.limit == 0 {
            i64::MAX
        } else {
            f.limit as i64
        };
        let rows = self
            .read_rows(&list_sql(), &[&statuses, &session, &request, &limit])
            .await?;
        rows::all(rows, rows::approval)
    }

    pub(crate) async fn resume_child(
        &self,
        id: &RequestId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            let root = tree::root_of(tx, id).await?;
            tree::lock_root(tx, &root.id).await?;
            let moved = tree::move_to(
                tx,
                id,
                RequestStatus::Running,
                &[RequestStatus::Queued],
                now,
                None,
            )
            .await?;
            if let (true, Some(worker_id)) = (moved, root.worker_id) {
                let child = tree::get_request(tx, id).await?;
                let body = EventBody::RequestStarted {
                    attempt: child.attempt,
                    worker_id,
                };
                events::append(tx, now, &[body.about(id, &child.session_id)]).await?;
            }
            Ok(())
        })
    }
}

/// Locks the root of the tree of approval `$1`'s request (no row when there is
/// no such approval).
const LOCK_APPROVALS_ROOT: &str = "WITH RECURSIVE up(id, parent_id) AS ( \
       SELECT r.id, r.parent_id FROM requests r JOIN approvals a ON r.id = a.request_id WHERE a.id = $1 \
       UNION ALL SELECT r.id, r.parent_id FROM requests r JOIN up ON r.id = up.parent_id) \
     SELECT 1 FROM requests WHERE id = (SELECT id FROM up WHERE parent_id IS NULL) FOR UPDATE";

/// Decides a pending approval in three round trips: the root's lock with the
/// conditional update (pipelined: the server runs the update once the lock is
/// held), the wake-up of the tree, and the events with the `COMMIT`.
async fn resolve(
    tx: &mut Tx<'_>,
    r: &ResolveApproval,
    now: Timestamp,
) -> Result<Approval, StoreError> {
    let edited = r.edited_arguments.as_ref().map(|v| v.to_string());
    let id = r.approval_id.as_str();
    let update = format!(
        "UPDATE approvals SET status = $2, decided_by = $3, message = $4, edited_arguments = $5, \
         decided_at = $6, decided_by_kind = $9 WHERE id = $1 AND status = 'pending' \
         AND request_id = $7 AND session_id = $8 AND expires_at > $6 RETURNING {APPROVAL_COLS}"
    );
    let update_params: [&(dyn ToSql + Sync); 9] = [
        &id,
        &r.decision.status().as_str(),
        &r.decided_by.name,
        &r.message,
        &edited,
        &now.0,
        &r.request_id.as_str(),
        &r.session_id.as_str(),
        &r.decided_by.kind.as_str(),
    ];
    let locked = tx
        .pipeline(&[
            Stmt::query(LOCK_APPROVALS_ROOT, &[&id]),
            Stmt::query(&update, &update_params),
        ])
        .await?;
    let Some(row) = locked[1].rows_ref().first() else {
        return Err(refusal_of(&get(tx, &r.approval_id).await?, r, now));
    };
    let a = rows::approval(row)?;
    // The tree paused with its approval in one commit, so it wakes as one.
    let (_, mut wake) =
        tree::wake_chain_events(tx, &a.request_id, now, &resolved_reason(&a), true).await?;
    let body = EventBody::ApprovalResolved {
        approval: Box::new(a.clone()),
    };
    wake.push(body.about(&a.request_id, &a.session_id));
    events::append_and_commit(tx, now, &wake).await?;
    Ok(a)
}

async fn expire_one(
    tx: &mut Tx<'_>,
    a: &Approval,
    now: Timestamp,
    fail_request: bool,
) -> Result<Option<Approval>, StoreError> {
    let root = tree::root_id(tx, &a.request_id).await?;
    tree::lock_root(tx, &root).await?;
    let changed = tx
        .execute(
            "UPDATE approvals SET status = 'expired', decided_by = 'runtime', \
             decided_by_kind = 'runtime', decided_at = $2 WHERE id = $1 AND status = 'pending'",
            &[&a.id.as_str(), &now.0],
        )
        .await?;
    if changed == 0 {
        return Ok(None);
    }
    let body = EventBody::ApprovalExpired {
        approval: Box::new(a.clone()),
    };
    events::append(tx, now, &[body.about(&a.request_id, &a.session_id)]).await?;
    if fail_request {
        let reason = expired_failure(a);
        tree::settle_subtree(
            tx,
            &Settle {
                to: RequestStatus::Failed,
                by: &Actor::runtime(),
                reason: Some(&reason),
                top: &root,
            },
            now,
        )
        .await?;
    } else {
        tree::wake_chain(tx, &a.request_id, now, &expired_reason(a), true).await?;
    }
    Ok(Some(get(tx, &a.id).await?))
}
