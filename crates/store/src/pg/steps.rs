//! The journal on PostgreSQL: a step's writes in one transaction, sent as one pipeline.
//!
//! The common step (a root's, no pause, no limits to take, no approval, child or
//! artifact to write, this process holding the lease) is **one statement**: each
//! write a data-modifying CTE, then a `SELECT` of the fences and the transaction id
//! (`OneStatement`). The server executes one statement instead of ten (measured:
//! half the round trip's cost). It is handed to the group commit (`group.rs`), which
//! sends it alone (its own transaction, no `BEGIN` or `COMMIT`, with the NOTIFY in
//! one round trip) or in one transaction with other sessions' steps. The other
//! steps that need no pause or limits send `BEGIN`, their statements, `COMMIT` and
//! the NOTIFY as one pipeline. In both, a refusal (the request no longer running,
//! the lease lost, a step row missing) is raised by the server inside the
//! transaction (`step_fence`, migration V9), which then rolls back. Only then is
//! the step sent again the slow way, which says why (or commits, where a settled
//! request may still take the step).
//!
//! The slow way is two round trips: everything a step writes in one pipeline (with
//! `BEGIN`); what was refused (as above, or an approval decided meanwhile) is read
//! from the answers, and the transaction then commits or rolls back. A pause also
//! moves the ancestors, one statement at a time (it needs what each one returns).

use super::group::{Grouped, Owned};
use super::rows::{self, STEP_COLS};
use super::{PgStore, Stmt, Tx, approvals, events, in_tx, requests, tree};
use crate::StoreError;
use crate::steps::{RunStart, StepCommit, StepWrite};
use harness_core::*;
use tokio_postgres::types::ToSql;

type P<'a> = &'a (dyn ToSql + Sync);

impl PgStore {
    pub(crate) async fn commit_step(&self, commit: StepCommit) -> Result<Vec<i64>, StoreError> {
        let root = commit
            .ancestors
            .last()
            .unwrap_or(&commit.request_id)
            .clone();
        if let Some(to) = commit.patch.status
            && !RequestStatus::Running.can_move_to(to)
        {
            return Err(StoreError::WrongState {
                id: commit.request_id.to_string(),
                status: RequestStatus::Running,
                action: "move a running request there",
            });
        }
        let token = self.lease_of(&root);
        let one_trip = token.is_some()
            && commit.acquire.is_none()
            && commit.pause_on.is_none()
            && commit.patch.status != Some(RequestStatus::WaitingApproval);
        let t = token.as_deref();
        // A root's step that writes no approval, child or artifact: one statement,
        // committed with other sessions' (`group.rs`).
        let grouped = one_trip
            && commit.ancestors.is_empty()
            && commit.approval.is_none()
            && commit.child.is_none()
            && commit.artifacts.is_empty();
        // Boxed: a step's future is large, and a run's future holds it (a debug
        // build's tree of delegated runs overflowed a worker thread's stack).
        let fast = match t {
            Some(t) if grouped => Box::pin(self.commit_grouped(one_statement(&commit, t)?)).await?,
            _ if one_trip => in_tx!(self, |tx| Box::pin(commit_step(
                tx, &commit, &root, t, true
            ))
            .await)?,
            _ => None,
        };
        let seqs = match fast {
            Some(seqs) => seqs,
            None => in_tx!(self, |tx| Box::pin(commit_step(
                tx, &commit, &root, t, false
            ))
            .await)?
            .expect("the slow way answers"),
        };
        // The root left `running` (finished, parked or paused; a child's pause
        // pauses its root in the same commit): the claim's lease is over. Kept, the
        // heartbeat would report it lost while a new claim of the root registers
        // its run, and the stale loss would stop the new run.
        let root_left_running = match commit.patch.status {
            Some(RequestStatus::WaitingApproval) => true,
            Some(s) => commit.ancestors.is_empty() && s != RequestStatus::Running,
            None => false,
        };
        if root_left_running {
            self.forget_lease(&root, t);
        }
        Ok(seqs)
    }

    pub(crate) async fn steps(&self, request: &RequestId) -> Result<Vec<Step>, StoreError> {
        let rows = self.read_rows(&steps_sql(), &[&request.as_str()]).await?;
        rows::all(rows, rows::step)
    }

    /// The three reads in one round trip on one connection (each its own snapshot,
    /// as when read apart).
    pub(crate) async fn run_start(
        &self,
        request: &RequestId,
        session: &SessionId,
        history: usize,
    ) -> Result<RunStart, StoreError> {
        let c = self.client().await?;
        let (steps, approvals, past) = futures_util::future::try_join3(
            c.prepare_cached(&steps_sql()),
            c.prepare_cached(&approvals::list_sql()),
            c.prepare_cached(requests::HISTORY_SQL),
        )
        .await?;
        let id = request.as_str();
        let (no_statuses, no_session, limit) = (Vec::<&str>::new(), None::<&str>, history as i64);
        let all = i64::MAX;
        let (steps, approvals, past) = futures_util::future::try_join3(
            c.query(&steps, &[&id]),
            c.query(&approvals, &[&no_statuses, &no_session, &Some(id), &all]),
            async {
                match history {
                    0 => Ok(Vec::new()),
                    _ => c.query(&past, &[&session.as_str(), &id, &limit]).await,
                }
            },
        )
        .await?;
        Ok(RunStart {
            steps: rows::all(steps, rows::step)?,
            approvals: rows::all(approvals, rows::approval)?,
            history: requests::history_of(past)?,
        })
    }
}

fn steps_sql() -> String {
    format!("SELECT {STEP_COLS} FROM steps WHERE request_id = $1 ORDER BY idx")
}

/// The owned parameters of a step row.
struct StepRow {
    request_id: String,
    idx: i64,
    agent: String,
    status: &'static str,
    body: String,
    started_at: i64,
    finished_at: Option<i64>,
}

impl StepRow {
    fn of(step: &Step) -> Result<StepRow, StoreError> {
        Ok(StepRow {
            request_id: step.request_id.to_string(),
            idx: step.idx as i64,
            agent: step.agent.clone(),
            status: step.status.as_str(),
            body: serde_json::to_string(&step.body)?,
            started_at: step.started_at.0,
            finished_at: step.finished_at.map(|t| t.0),
        })
    }
}

const INSERT_STEP: &str = "INSERT INTO steps (request_id, idx, agent, status, body, started_at, finished_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
macro_rules! update_step {
    () => {
        "UPDATE steps SET status = $3, body = $4, finished_at = $5 WHERE request_id = $1 AND idx = $2"
    };
}
macro_rules! patch {
    () => {
        "UPDATE requests SET last_activity_at = $2, status = COALESCE($3, status), \
         current_agent = COALESCE($4, current_agent), output = COALESCE($5, output), \
         error = COALESCE($6, error), finished_at = COALESCE($7, finished_at), steps = steps + $8, \
         lease_token = CASE WHEN COALESCE($3, 'running') = 'queued' THEN NULL ELSE lease_token END, \
         lease_expires_at = CASE WHEN COALESCE($3, 'running') = 'running' THEN lease_expires_at ELSE NULL END \
         WHERE id = $1 AND status = 'running' AND ($9::text IS NULL OR lease_token = $9)"
    };
}
const UPDATE_STEP: &str = update_step!();
const PATCH: &str = patch!();
const PATCH_RETURNING: &str = concat!(patch!(), " RETURNING 1");
const UPDATE_STEP_RETURNING: &str = concat!(update_step!(), " RETURNING 1");
const SESSION: &str = "UPDATE sessions SET last_activity_at = $2 WHERE id = $1";
const ANCESTOR: &str = "UPDATE requests SET last_activity_at = $2, \
     current_agent = COALESCE($3, current_agent) WHERE id = $1";
const ROOT_TOKEN: &str = "SELECT lease_token FROM requests WHERE id = $1";
const ROOT_LEASE: &str = "SELECT lease_token FROM requests WHERE id = $1 FOR UPDATE";

// The fenced forms (one round trip): the server refuses in the transaction.
const PATCH_FENCED: &str = concat!(
    "WITH patched AS (",
    patch!(),
    " RETURNING 1) SELECT step_fence(EXISTS (SELECT 1 FROM patched), 'the request')"
);
const UPDATE_STEP_FENCED: &str = concat!(
    "WITH updated AS (",
    update_step!(),
    " RETURNING 1) SELECT step_fence(EXISTS (SELECT 1 FROM updated), 'a step row')"
);
const ROOT_LEASE_FENCED: &str = "WITH root AS (SELECT lease_token FROM requests WHERE id = $1 \
     FOR UPDATE) SELECT step_fence(EXISTS (SELECT 1 FROM root WHERE lease_token = $2), \
     'the root''s lease')";
const APPROVAL_STATUS: &str = "SELECT status FROM approvals WHERE id = $1";

/// Sends a step. `one_trip`: the fenced statements, `COMMIT` in the same pipeline,
/// and `None` when the server refused it (rolled back: send it again the slow way).
async fn commit_step(
    tx: &mut Tx<'_>,
    s: &StepCommit,
    root: &RequestId,
    token: Option<&str>,
    one_trip: bool,
) -> Result<Option<Vec<i64>>, StoreError> {
    let p = &s.patch;
    let is_child = root != &s.request_id;
    let status = p.status.map(|st| st.as_str());
    let finished = p.status.filter(|st| st.is_terminal()).map(|_| s.at.0);
    let count = p.count_step as i64;
    // A child's commit is fenced on its root's lease (checked from the answer); a
    // root's, in its own update.
    let own_token = if is_child { None } else { token };
    let steps: Vec<StepRow> = s
        .steps
        .iter()
        .map(|w| match w {
            StepWrite::Insert(st) | StepWrite::Update(st) => StepRow::of(st),
        })
        .collect::<Result<_, _>>()?;
    let child = s.child.as_ref();
    let agent = p.current_agent.as_deref();
    let ancestors: Vec<&str> = s.ancestors.iter().map(|a| a.as_str()).collect();
    let artifacts: Vec<super::artifacts::ArtifactRow> = s
        .artifacts
        .iter()
        .map(super::artifacts::ArtifactRow::of)
        .collect();
    let approval = s.approval.as_ref().map(super::approvals::ApprovalRow::of);
    let pause_on = s.pause_on.as_ref().map(|a| a.as_str());
    let event_rows = events::rows_for(tx, s.at, &s.events)?;
    if let Some(a) = &s.acquire {
        // Before the pipeline: its keys' locks, then the counts (an extra round
        // trip per key, paid only by calls with limits).
        super::limits::acquire(tx, &s.request_id, a, s.at).await?;
    }
    let ended: Vec<&str> = s.ended_calls().map(|c| c.as_str()).collect();
    let ended_params: Vec<[P; 1]> = ended.iter().map(|c| [c as P]).collect();

    let request_id = s.request_id.as_str();
    let root_id = root.as_str();
    let session_id = s.session_id.as_str();
    let patch: [P; 9] = [
        &request_id,
        &s.at.0,
        &status,
        &p.current_agent,
        &p.output,
        &p.error,
        &finished,
        &count,
        &own_token,
    ];
    let session: [P; 2] = [&session_id, &s.at.0];
    let step_params: Vec<Vec<P>> = s
        .steps
        .iter()
        .zip(&steps)
        .map(|(w, r)| match w {
            StepWrite::Insert(_) => vec![
                &r.request_id as P,
                &r.idx,
                &r.agent,
                &r.status,
                &r.body,
                &r.started_at,
                &r.finished_at,
            ],
            StepWrite::Update(_) => vec![
                &r.request_id as P,
                &r.idx,
                &r.status,
                &r.body,
                &r.finished_at,
            ],
        })
        .collect();
    let child_row = child.map(|c| super::requests::RequestRow::child(c, &s.request_id, s.at));
    let child_params = child_row.as_ref().map(|r| (r.session_params(), r.params()));
    let ancestor_params: Vec<[P; 3]> = ancestors
        .iter()
        .map(|a| [a as P, &s.at.0, &agent])
        .collect();
    let artifact_params: Vec<Vec<P>> = artifacts.iter().map(|a| a.params()).collect();
    let approval_params: Option<Vec<P>> = approval.as_ref().map(|a| a.params());
    let event_params: Vec<[P; 6]> = event_rows.iter().map(|e| e.params()).collect();
    let root_param: [P; 1] = [&root_id];
    let lease_param: [P; 2] = [&root_id, &token];
    let pause_param: Option<[P; 1]> = pause_on.as_ref().map(|a| [a as P]);

    // The pipeline: what each answer means is found by position.
    let mut stmts: Vec<Stmt> = Vec::new();
    let lease_at = is_child.then(|| {
        stmts.push(match one_trip {
            true => Stmt::exec(ROOT_LEASE_FENCED, &lease_param),
            false => Stmt::query(ROOT_LEASE, &root_param),
        });
        stmts.len() - 1
    });
    let patch_at = stmts.len();
    stmts.push(Stmt::exec(
        if one_trip { PATCH_FENCED } else { PATCH },
        &patch,
    ));
    if p.status.is_some() {
        stmts.push(Stmt::exec(SESSION, &session));
    }
    let mut updates_at = Vec::new();
    for (w, params) in s.steps.iter().zip(&step_params) {
        match w {
            StepWrite::Insert(_) => stmts.push(Stmt::exec(INSERT_STEP, params)),
            StepWrite::Update(st) => {
                updates_at.push((stmts.len(), st));
                let sql = if one_trip {
                    UPDATE_STEP_FENCED
                } else {
                    UPDATE_STEP
                };
                stmts.push(Stmt::exec(sql, params));
            }
        }
    }
    if let Some(params) = &approval_params {
        stmts.push(Stmt::exec(super::approvals::INSERT, params));
    }
    let pause_at = pause_param.as_ref().map(|params| {
        stmts.push(Stmt::query(APPROVAL_STATUS, params));
        stmts.len() - 1
    });
    if let Some((ses, req)) = &child_params {
        stmts.push(Stmt::exec(super::requests::UPSERT_SESSION, ses));
        stmts.push(Stmt::exec(super::requests::INSERT_CHILD, req));
    }
    for params in &artifact_params {
        stmts.push(Stmt::exec(super::artifacts::INSERT, params));
    }
    for params in &ancestor_params {
        stmts.push(Stmt::exec(ANCESTOR, params));
    }
    for params in &ended_params {
        stmts.push(Stmt::exec(super::limits::RELEASE_CALL, params));
    }
    let request_param: [P; 1] = [&request_id];
    if p.status.is_some_and(|st| st.is_terminal()) {
        stmts.push(Stmt::exec(super::limits::RELEASE_REQUEST, &request_param));
    }
    let xid_at = (!event_params.is_empty()).then(|| {
        stmts.push(Stmt::query(events::XID, &[]));
        stmts.len() - 1
    });
    for params in &event_params {
        stmts.push(Stmt::exec(events::INSERT, params));
    }
    if one_trip {
        return match tx.pipeline_commit(&stmts).await? {
            Some(mut out) => Ok(Some(seqs_of(xid_at, &mut out, &event_rows)?)),
            None => Ok(None),
        };
    }
    let mut out = tx.pipeline(&stmts).await?;

    if let Some(i) = lease_at {
        let held: Option<String> = match out[i].rows_ref().first() {
            Some(r) => r.try_get(0)?,
            None => None,
        };
        if let Some(t) = token
            && held.as_deref() != Some(t)
        {
            return Err(StoreError::LeaseLost {
                id: root.to_string(),
            });
        }
    }
    if out[patch_at].count() == 0 {
        let req = tree::get_request(tx, &s.request_id).await?;
        // A settled root keeps the token of the claim that ran it last: a cancel
        // of this worker's run leaves ours (recording the interrupted call is
        // allowed), another worker's run after a take-over leaves theirs.
        let last_token = match own_token {
            Some(_) => tx
                .query_one(ROOT_TOKEN, &[&s.request_id.as_str()])
                .await?
                .try_get::<_, Option<String>>(0)?,
            None => None,
        };
        if own_token.is_some()
            && (req.status == RequestStatus::Running || last_token.as_deref() != own_token)
        {
            return Err(StoreError::LeaseLost {
                id: root.to_string(),
            });
        }
        if !(p.settled_ok && req.status.is_terminal()) {
            return Err(StoreError::WrongState {
                id: s.request_id.to_string(),
                status: req.status,
                action: "commit a step (it is no longer running)",
            });
        }
    }
    for (i, st) in updates_at {
        if out[i].count() == 0 {
            return Err(StoreError::NotFound {
                kind: "step",
                id: format!("{}#{}", st.request_id, st.idx),
            });
        }
    }
    if let (Some(i), Some(id)) = (pause_at, &s.pause_on) {
        let status: Option<String> = match out[i].rows_ref().first() {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        };
        if status.as_deref() != Some(ApprovalStatus::Pending.as_str()) {
            let a = super::approvals::get(tx, id).await?;
            return Err(StoreError::ApprovalNotPending {
                id: a.id.to_string(),
                status: a.status,
                decided_by: a.decided_by,
                decided_at: a.decided_at,
            });
        }
    }
    let mut seqs = seqs_of(xid_at, &mut out, &event_rows)?;
    if p.status == Some(RequestStatus::WaitingApproval) {
        // A tree pauses as one: the ancestors move with the child, in this commit.
        let approval = s.approval.as_ref().map(|a| &a.id).or(s.pause_on.as_ref());
        seqs.extend(tree::pause_ancestors(tx, &s.request_id, &s.ancestors, approval, s.at).await?);
    }
    Ok(Some(seqs))
}

/// A root's step that needs no pause or limits and writes no approval, child or
/// artifact, as one statement (see [`OneStatement`]) that owns its parameters, for
/// the group commit (`group.rs`). `token`: the root's lease, which the request's
/// update requires.
pub(super) fn one_statement(s: &StepCommit, token: &str) -> Result<Grouped, StoreError> {
    fn own<T: ToSql + Sync + Send + 'static>(v: T) -> Owned {
        Box::new(v)
    }
    let p = &s.patch;
    let mut one = OneStatement::default();
    let finished = p.status.filter(|st| st.is_terminal()).map(|_| s.at.0);
    let patch = vec![
        own(s.request_id.to_string()),
        own(s.at.0),
        own(p.status.map(|st| st.as_str())),
        own(p.current_agent.clone()),
        own(p.output.clone()),
        own(p.error.clone()),
        own(finished),
        own(p.count_step as i64),
        own(Some(token.to_string())),
    ];
    one.part("patched", PATCH_RETURNING, patch);
    one.fence("patched", "the request");
    if p.status.is_some() {
        let session = vec![own(s.session_id.to_string()), own(s.at.0)];
        one.part("session", SESSION, session);
    }
    for (k, w) in s.steps.iter().enumerate() {
        match w {
            StepWrite::Insert(st) => {
                let r = StepRow::of(st)?;
                let params = vec![
                    own(r.request_id),
                    own(r.idx),
                    own(r.agent),
                    own(r.status),
                    own(r.body),
                    own(r.started_at),
                    own(r.finished_at),
                ];
                one.part(&format!("inserted{k}"), INSERT_STEP, params);
            }
            StepWrite::Update(st) => {
                let r = StepRow::of(st)?;
                let params = vec![
                    own(r.request_id),
                    own(r.idx),
                    own(r.status),
                    own(r.body),
                    own(r.finished_at),
                ];
                one.part(&format!("updated{k}"), UPDATE_STEP_RETURNING, params);
                one.fence(&format!("updated{k}"), "a step row");
            }
        }
    }
    for (k, call) in s.ended_calls().enumerate() {
        let params = vec![own(call.to_string())];
        one.part(&format!("released{k}"), super::limits::RELEASE_CALL, params);
    }
    if p.status.is_some_and(|st| st.is_terminal()) {
        let params = vec![own(s.request_id.to_string())];
        one.part("released", super::limits::RELEASE_REQUEST, params);
    }
    let (rows, frees_work) = events::rows_from(0, s.at, &s.events)?;
    let events = (!rows.is_empty()).then(|| {
        // Its parameters come last: the group renumbers the events' indexes.
        one.part("appended", events::INSERT_ARRAYS, Vec::new());
        events::EventArrays::of(&rows)
    });
    let (sql, params) = one.finish();
    Ok(Grouped {
        request: s.request_id.to_string(),
        sql,
        params,
        events,
        frees_work,
    })
}

/// A step as one statement: each write a data-modifying CTE, then a `SELECT` of the
/// fences (the request patched, each step row updated) and the transaction id. Its
/// text depends only on the step's shape (which writes, how many), so the prepared
/// statements are few. One statement is one transaction: a fence that raises
/// rolls back every write of it.
#[derive(Default)]
struct OneStatement {
    ctes: Vec<String>,
    fences: Vec<String>,
    params: Vec<Owned>,
}

impl OneStatement {
    /// Adds `sql` (its parameters numbered from `$1`) as the CTE `name`. A part
    /// given no parameters for a `sql` that takes some must be the last: its
    /// parameters follow the statement's others.
    fn part(&mut self, name: &str, sql: &str, params: Vec<Owned>) {
        let offset = self.params.len();
        self.ctes
            .push(format!("{name} AS ({})", renumber(sql, offset)));
        self.params.extend(params);
    }

    /// Refuses the step unless the CTE `name` returned a row.
    fn fence(&mut self, name: &str, what: &str) {
        self.fences.push(format!(
            "step_fence(EXISTS (SELECT 1 FROM {name}), '{what}')"
        ));
    }

    fn finish(self) -> (String, Vec<Owned>) {
        let sql = format!(
            "WITH {} SELECT {}, pg_current_xact_id()::text::bigint",
            self.ctes.join(", "),
            self.fences.join(", ")
        );
        (sql, self.params)
    }
}

/// `sql` with each parameter `$n` renumbered `$(n + offset)`.
fn renumber(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut n = String::new();
        while let Some(d) = chars.next_if(|d| d.is_ascii_digit()) {
            n.push(d);
        }
        if let Ok(n) = n.parse::<usize>() {
            out.push_str(&(n + offset).to_string());
        }
    }
    out
}

/// The seqs of a step's events, from the transaction id the pipeline read (at `xid_at`).
fn seqs_of(
    xid_at: Option<usize>,
    out: &mut [super::Out],
    event_rows: &[events::EventRow],
) -> Result<Vec<i64>, StoreError> {
    let Some(i) = xid_at else {
        return Ok(Vec::new());
    };
    let xid: i64 = std::mem::replace(&mut out[i], super::Out::Count(0)).rows()[0].try_get(0)?;
    Ok(event_rows
        .iter()
        .map(|e| events::seq_of(xid, e.idx))
        .collect())
}
