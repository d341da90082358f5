//! The journal: one transaction per step, carrying the step row, the request's
//! new state, any approval or child request it raises, and its events.

use crate::rows::{self, STEP_COLS};
use crate::{SqliteStore, StoreError, approvals, events, requests, tree};
use harness_core::*;
use rusqlite::{Connection, params};

/// Everything one step changes, committed atomically. Build it with
/// [`StepCommit::new`] and the chained setters.
#[derive(Clone, Debug)]
pub struct StepCommit {
    pub request_id: RequestId,
    pub session_id: SessionId,
    pub at: Timestamp,
    /// Step rows written, in order (a tool call's `started` row may ride along with
    /// the commit before it, so one commit per step suffices).
    pub steps: Vec<StepWrite>,
    pub patch: RequestPatch,
    /// An approval raised by this step (status `pending`).
    pub approval: Option<Approval>,
    /// Pausing on an approval raised earlier: the commit applies only while that
    /// approval is still pending (else [`StoreError::ApprovalNotPending`]).
    pub pause_on: Option<ApprovalId>,
    /// A delegated child request started by this step (inserted as `running`).
    pub child: Option<requests::NewRequest>,
    /// Artifact rows whose files were already stored with [`crate::Store::put_artifact`].
    pub artifacts: Vec<Artifact>,
    /// Requests above this one (parent first): their last activity and current
    /// agent follow this step, and they pause with it.
    pub ancestors: Vec<RequestId>,
    pub events: Vec<NewEvent>,
    /// Limits a call started by this commit holds while it runs: all of them, or
    /// the commit is refused ([`StoreError::LimitsBusy`]) and nothing is kept. A
    /// call's step updated to `completed` or `interrupted` releases its holds.
    pub acquire: Option<crate::limits::Acquire>,
}

impl StepCommit {
    /// An empty commit for `request` (nothing changes until something is added).
    pub fn new(request: &RequestId, session: &SessionId, at: Timestamp) -> Self {
        Self {
            request_id: request.clone(),
            session_id: session.clone(),
            at,
            steps: vec![],
            patch: RequestPatch::default(),
            approval: None,
            pause_on: None,
            child: None,
            artifacts: vec![],
            ancestors: vec![],
            events: vec![],
            acquire: None,
        }
    }

    /// The call this commit starts holds `a`'s limits (see [`StepCommit::acquire`]).
    pub fn acquire(mut self, a: crate::limits::Acquire) -> Self {
        self.acquire = Some(a);
        self
    }

    /// The agent executing (the request's `current_agent`, and its ancestors').
    pub fn agent(mut self, name: &str) -> Self {
        self.patch.current_agent = Some(name.to_string());
        self
    }

    pub fn ancestors(mut self, ids: &[RequestId]) -> Self {
        self.ancestors = ids.to_vec();
        self
    }

    pub fn insert(mut self, step: Step) -> Self {
        self.steps.push(StepWrite::Insert(step));
        self
    }

    pub fn update(mut self, step: Step) -> Self {
        self.steps.push(StepWrite::Update(step));
        self
    }

    pub fn write(mut self, w: StepWrite) -> Self {
        self.steps.push(w);
        self
    }

    /// An event about this request.
    pub fn event(mut self, body: EventBody) -> Self {
        let e = body.about(&self.request_id, &self.session_id);
        self.events.push(e);
        self
    }

    pub fn status(mut self, status: RequestStatus) -> Self {
        self.patch.status = Some(status);
        self
    }

    /// Completed with `output`.
    pub fn output(mut self, output: &str) -> Self {
        self.patch.status = Some(RequestStatus::Completed);
        self.patch.output = Some(output.to_string());
        self
    }

    /// Failed with `error`.
    pub fn error(mut self, error: &str) -> Self {
        self.patch.status = Some(RequestStatus::Failed);
        self.patch.error = Some(error.to_string());
        self
    }

    /// This commit adds a step to the request's count.
    pub fn count_step(mut self) -> Self {
        self.patch.count_step = true;
        self
    }

    /// Pauses on a new approval (inserted by this commit).
    pub fn raise(mut self, approval: Approval) -> Self {
        self.patch.status = Some(RequestStatus::WaitingApproval);
        self.approval = Some(approval);
        self
    }

    /// Pauses on an approval raised earlier, if it is still pending.
    pub fn pause_on(mut self, approval: &ApprovalId) -> Self {
        self.patch.status = Some(RequestStatus::WaitingApproval);
        self.pause_on = Some(approval.clone());
        self
    }

    pub fn child(mut self, child: requests::NewRequest) -> Self {
        self.child = Some(child);
        self
    }

    pub fn artifacts(mut self, artifacts: Vec<Artifact>) -> Self {
        self.artifacts = artifacts;
        self
    }
}

impl StepCommit {
    /// The tool calls whose step this commit moves to `completed` or `interrupted`:
    /// whatever they held is released in the same transaction.
    pub(crate) fn ended_calls(&self) -> impl Iterator<Item = &CallId> {
        self.steps.iter().filter_map(|w| match w {
            StepWrite::Update(Step {
                status: StepStatus::Completed | StepStatus::Interrupted,
                body: StepBody::ToolCall { call, .. },
                ..
            }) => Some(&call.call_id),
            _ => None,
        })
    }
}

#[derive(Clone, Debug)]
pub enum StepWrite {
    Insert(Step),
    /// Replaces status, body and finished time of the step at (`request_id`, `idx`).
    Update(Step),
}

/// Changes to the request row. The update only applies while the request is
/// `running`: a request cancelled meanwhile refuses the commit (the run then stops).
#[derive(Clone, Debug, Default)]
pub struct RequestPatch {
    pub status: Option<RequestStatus>,
    pub current_agent: Option<String>,
    pub output: Option<String>,
    pub error: Option<String>,
    /// This commit adds a step to the request's count.
    pub count_step: bool,
    /// Record the steps and events even if the request has settled meanwhile
    /// (how a call ended under a cancelled request); the request row is then left
    /// as it is. Without it, such a commit is refused.
    pub settled_ok: bool,
}

impl SqliteStore {
    /// Commits one step; returns the sequence numbers of its events.
    pub async fn commit_step(&self, commit: StepCommit) -> Result<Vec<i64>, StoreError> {
        self.write(move |c| commit_step(c, &commit)).await
    }

    /// The request's journal, in order.
    pub async fn steps(&self, request: &RequestId) -> Result<Vec<Step>, StoreError> {
        let request = request.clone();
        self.read(move |c| steps_of(c, &request)).await
    }

    pub async fn run_start(
        &self,
        request: &RequestId,
        session: &SessionId,
        history: usize,
    ) -> Result<RunStart, StoreError> {
        let (request, session) = (request.clone(), session.clone());
        self.read(move |c| {
            // One snapshot: under a busy writer every new one costs the
            // connection its page cache.
            let tx = c.unchecked_transaction()?;
            let start = RunStart {
                steps: steps_of(&tx, &request)?,
                approvals: approvals::of_request(&tx, &request)?,
                history: match history {
                    0 => Vec::new(),
                    n => requests::history(&tx, &session, &request, n)?,
                },
            };
            tx.commit()?;
            Ok(start)
        })
        .await
    }
}

/// What a run reads when it starts: see [`crate::Store::run_start`].
#[derive(Clone, Debug, Default)]
pub struct RunStart {
    /// The request's journal, in order.
    pub steps: Vec<Step>,
    /// Its approvals, newest first.
    pub approvals: Vec<Approval>,
    /// Its session's earlier completed roots as (input, output), oldest first.
    pub history: Vec<(String, String)>,
}

fn steps_of(c: &Connection, request: &RequestId) -> Result<Vec<Step>, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {STEP_COLS} FROM steps WHERE request_id = ?1 ORDER BY idx"
    ))?;
    let rows = stmt.query_map([request.as_str()], rows::step)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn commit_step(c: &Connection, s: &StepCommit) -> Result<Vec<i64>, StoreError> {
    patch_request(c, s)?;
    if let Some(a) = &s.acquire {
        crate::limits::acquire(c, &s.request_id, a, s.at)?;
    }
    for write in &s.steps {
        match write {
            StepWrite::Insert(step) => insert_step(c, step)?,
            StepWrite::Update(step) => update_step(c, step)?,
        }
    }
    for call in s.ended_calls() {
        crate::limits::release_call(c, call)?;
    }
    if s.patch.status.is_some_and(|st| st.is_terminal()) {
        crate::limits::release_request(c, &s.request_id)?;
    }
    if let Some(a) = &s.approval {
        approvals::insert(c, a)?;
    }
    if let Some(id) = &s.pause_on {
        ensure_pending(c, id)?;
    }
    if let Some(child) = &s.child {
        requests::insert_request(c, child, Some(&s.request_id), RequestStatus::Running, s.at)?;
    }
    for a in &s.artifacts {
        crate::artifacts::insert(c, a)?;
    }
    let agent = s.patch.current_agent.as_deref();
    for ancestor in &s.ancestors {
        c.prepare_cached(
            "UPDATE requests SET last_activity_at = ?2, current_agent = COALESCE(?3, current_agent) WHERE id = ?1",
        )?
        .execute(params![ancestor.as_str(), s.at.0, agent])?;
    }
    let mut seqs = events::append(c, s.at, &s.events)?;
    if s.patch.status == Some(RequestStatus::WaitingApproval) {
        // A tree pauses as one: the ancestors move with the child, in this commit.
        let approval = s.approval.as_ref().map(|a| &a.id).or(s.pause_on.as_ref());
        tree::pause_ancestors(c, &s.request_id, &s.ancestors, approval, s.at)?;
        seqs.push(events::last_seq(c)?);
    }
    Ok(seqs)
}

/// A pause on an earlier approval applies only while it is pending: an operator
/// who decided it meanwhile must not find the request parked on a decided approval.
fn ensure_pending(c: &Connection, id: &ApprovalId) -> Result<(), StoreError> {
    let a = approvals::get(c, id)?;
    if a.status != ApprovalStatus::Pending {
        return Err(StoreError::ApprovalNotPending {
            id: a.id.to_string(),
            status: a.status,
            decided_by: a.decided_by,
            decided_at: a.decided_at,
        });
    }
    Ok(())
}

fn patch_request(c: &Connection, s: &StepCommit) -> Result<(), StoreError> {
    let p = &s.patch;
    if let Some(to) = p.status
        && !RequestStatus::Running.can_move_to(to)
    {
        return Err(StoreError::WrongState {
            id: s.request_id.to_string(),
            status: RequestStatus::Running,
            action: "move a running request there",
        });
    }
    let finished = p.status.filter(|st| st.is_terminal()).map(|_| s.at.0);
    // Most steps leave the status alone. SQLite rewrites an index entry whenever
    // the UPDATE assigns one of its columns, even to the same value: naming
    // `status` and `finished_at` on every step cost two more WAL pages per commit
    // (`requests_status`, `requests_active_roots`), about a quarter of a step's.
    let sql = if p.status.is_some() {
        "UPDATE requests SET last_activity_at = ?2, status = ?3, \
         current_agent = COALESCE(?4, current_agent), output = COALESCE(?5, output), \
         error = COALESCE(?6, error), finished_at = COALESCE(?7, finished_at), \
         steps = steps + ?8 WHERE id = ?1 AND status = 'running'"
    } else {
        "UPDATE requests SET last_activity_at = ?2, \
         current_agent = COALESCE(?4, current_agent), output = COALESCE(?5, output), \
         error = COALESCE(?6, error), steps = steps + ?8 WHERE id = ?1 AND status = 'running'"
    };
    let changed = c.prepare_cached(sql)?.execute(params![
        s.request_id.as_str(),
        s.at.0,
        p.status.map(|st| st.as_str()),
        p.current_agent,
        p.output,
        p.error,
        finished,
        p.count_step as i64,
    ])?;
    if changed == 0 {
        let req = requests::get_request(c, &s.request_id)?;
        if p.settled_ok && req.status.is_terminal() {
            return Ok(());
        }
        return Err(StoreError::WrongState {
            id: s.request_id.to_string(),
            status: req.status,
            action: "commit a step (it is no longer running)",
        });
    }
    if p.status.is_some() {
        c.prepare_cached("UPDATE sessions SET last_activity_at = ?2 WHERE id = ?1")?
            .execute(params![s.session_id.as_str(), s.at.0])?;
    }
    Ok(())
}

pub(crate) fn insert_step(c: &Connection, step: &Step) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO steps (request_id, idx, agent, status, body, started_at, finished_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        step.request_id.as_str(),
        step.idx,
        step.agent,
        step.status.as_str(),
        serde_json::to_string(&step.body)?,
        step.started_at.0,
        step.finished_at.map(|t| t.0),
    ])?;
    Ok(())
}

fn update_step(c: &Connection, step: &Step) -> Result<(), StoreError> {
    let changed = c
        .prepare_cached(
            "UPDATE steps SET status = ?3, body = ?4, finished_at = ?5 WHERE request_id = ?1 AND idx = ?2",
        )?
        .execute(params![
            step.request_id.as_str(),
            step.idx,
            step.status.as_str(),
            serde_json::to_string(&step.body)?,
            step.finished_at.map(|t| t.0),
        ])?;
    if changed == 0 {
        return Err(StoreError::NotFound {
            kind: "step",
            id: format!("{}#{}", step.request_id, step.idx),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The pages (b-tree names) of the WAL's frames from frame `from` on, in the
    /// WAL's current generation (frames left from before its last restart carry
    /// other salts and are not read).
    async fn wal_pages(s: &SqliteStore, wal: &std::path::Path, from: usize) -> Vec<String> {
        let bytes = std::fs::read(wal).unwrap();
        let page_size = u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let salt = bytes[16..24].to_vec();
        let mut pages = Vec::new();
        let mut at = 32;
        while at + 24 + page_size <= bytes.len() && bytes[at + 8..at + 16] == salt[..] {
            pages.push(i64::from(u32::from_be_bytes(
                bytes[at..at + 4].try_into().unwrap(),
            )));
            at += 24 + page_size;
        }
        let names: HashMap<i64, String> = s
            .read(|c| {
                let mut st = c.prepare("SELECT pageno, name FROM dbstat")?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
            .unwrap();
        pages
            .iter()
            .skip(from)
            .map(|p| names.get(p).cloned().unwrap_or_else(|| format!("page {p}")))
            .collect()
    }

    /// A step's commit writes the pages its rows live on and no page of an index it
    /// does not change. SQLite rewrites an index entry whenever an UPDATE assigns
    /// one of the index's columns, even to the value it has: assigning `status` on
    /// every step once cost two more WAL pages per step (`requests_status`,
    /// `requests_active_roots`), a quarter of a step's pages and of its fsync.
    #[tokio::test]
    async fn a_step_writes_no_page_of_a_request_index_it_leaves_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (store, s) = crate::sqlite::open_for_test(dir.path());
        let req = crate::testing::running_request(&store, "s1").await;
        // The WAL starts over with the next commit.
        let busy: i64 = s
            .write_raw(|c| Ok(c.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(busy, 0, "the WAL could not start over");
        for idx in 0..20u32 {
            let step = Step {
                request_id: req.id.clone(),
                idx,
                agent: "a".into(),
                status: StepStatus::Completed,
                started_at: Timestamp(3),
                finished_at: Some(Timestamp(3)),
                body: StepBody::model_turn(ModelTurn::Text {
                    text: format!("turn {idx}"),
                }),
            };
            let c = StepCommit::new(&req.id, &req.session_id, Timestamp(3 + i64::from(idx)))
                .agent("a")
                .event(EventBody::ModelTurn {
                    step: idx,
                    turn: ModelTurn::Text { text: "t".into() },
                    info: None,
                })
                .count_step()
                .insert(step);
            store.commit_step(c).await.unwrap();
        }
        let wal = crate::sidecar::wal_path(&dir.path().join(crate::DB_FILE));
        let stepped = wal_pages(&s, &wal, 0).await;
        assert!(stepped.iter().any(|p| p == "requests"), "{stepped:?}");
        let untouched = |pages: &[String]| {
            pages
                .iter()
                .filter(|p| p.starts_with("requests_"))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(untouched(&stepped), Vec::<String>::new(), "{stepped:?}");
        // A commit that changes the status rewrites the status indexes (so the
        // check above can see them).
        let done = StepCommit::new(&req.id, &req.session_id, Timestamp(30)).output("done");
        store.commit_step(done).await.unwrap();
        let finished = wal_pages(&s, &wal, stepped.len()).await;
        assert!(
            finished.iter().any(|p| p == "requests_status"),
            "{finished:?}"
        );
    }
}
