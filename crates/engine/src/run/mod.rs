//! Executing one request: fold the journal, ask what comes next, do it, commit it.
//!
//! The same loop serves a fresh request, a resume after an approval and a
//! recovery after a crash: [`next_action`] decides from committed rows only.
//! Every step is committed before its effects are visible; a tool call is
//! committed `started` before it runs and `completed` after.
//!
//! By concern: `model` (model turns, and pre-starting the next call), `calls`
//! (running tool calls, interruptions), `approvals` (pausing), `delegate`
//! (child requests, run nested in their root's task), `finish` (settling).

mod approvals;
mod calls;
mod delegate;
mod finish;
mod model;

use crate::Harness;
use crate::runs::RunGuard;
use harness_config::AgentConfig;
use harness_core::journal::{NextAction, next_action, push_step};
use harness_core::*;
use harness_providers::BoxFuture;
use harness_store::{StepCommit, StepWrite, StoreError};
use std::collections::{HashMap, HashSet};
use tokio_util::sync::CancellationToken;

/// How a run ended (for this worker).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    Completed(String),
    Failed(String),
    /// Waiting for an approval (its tree paused with it); holds nothing in memory.
    Paused,
    /// A tool call's limits were full: the tree is parked on the queue (by the
    /// store, in one transaction) until they have room; it holds no slot meanwhile.
    Waiting,
    /// An operator cancelled it (or the tree above it).
    Cancelled,
    /// Something else settled or moved it while it ran (e.g. an expiry with
    /// policy `fail`); this run stops without touching it.
    Displaced(RequestStatus),
    /// The worker is stopping; the root goes back on the queue.
    Stopped,
    /// A commit failed (nothing of it was applied); the root goes back on the queue.
    StoreFailed(String),
    /// Fenced: another worker re-claimed the tree after this worker's lease lapsed
    /// (it was paused, partitioned or too slow to renew). Nothing more is committed
    /// and nothing is put back: the tree is the other worker's now.
    LeaseLost(String),
    Panicked(String),
}

impl Outcome {
    /// A short name for logs.
    fn name(&self) -> &'static str {
        match self {
            Outcome::Completed(_) => "completed",
            Outcome::Failed(_) => "failed",
            Outcome::Paused => "paused",
            Outcome::Waiting => "waiting",
            Outcome::Cancelled => "cancelled",
            Outcome::Displaced(_) => "displaced",
            Outcome::Stopped => "stopped",
            Outcome::StoreFailed(_) => "store_failed",
            Outcome::LeaseLost(_) => "lease_lost",
            Outcome::Panicked(_) => "panicked",
        }
    }
}

/// Executes a claimed root request until it settles, pauses or is parked. The
/// caller registered the run (`guard`) before spawning it, so the root counts as
/// live from its claim until this returns.
pub(crate) async fn run_root(
    h: Harness,
    req: Request,
    cancel: CancellationToken,
    guard: RunGuard,
) -> Outcome {
    let span = request_span(&req, None);
    // Every span of the run (and of the children it runs) is in the request's trace.
    crate::telemetry::join_trace(&span, &req);
    tracing::Instrument::instrument(root_inner(h, req, cancel, guard), span).await
}

async fn root_inner(
    h: Harness,
    req: Request,
    cancel: CancellationToken,
    guard: RunGuard,
) -> Outcome {
    let id = req.id.clone();
    let outcome = drive(h.clone(), req, Vec::new(), cancel, None).await;
    let _guard = guard;
    let reason = match &outcome {
        Outcome::Stopped => "the worker stopped before the request finished".to_string(),
        Outcome::StoreFailed(e) => format!("a store write failed ({e}); it will be retried"),
        _ => return outcome,
    };
    if let Err(e) = h
        .inner
        .store
        .release(vec![id.clone()], &reason, h.now())
        .await
    {
        // The safety net re-queues it once the store accepts writes again.
        tracing::error!(error = %e, "could not put the request back on the queue");
    }
    outcome
}

/// Records a panic of a run as its tree's failure.
pub(crate) async fn fail_after_panic(h: &Harness, id: &RequestId, msg: &str) {
    let msg = h.redactor().redact_str(msg);
    let error = format!("internal error while running the request: {msg}");
    if let Err(e) = h.inner.store.fail_tree(id, &error, h.now()).await {
        tracing::error!(request_id = %id, error = %e, "could not record a run's panic");
    }
}

/// The span every line logged about a run of `req` is in: its request, session and
/// trace ids (a child's span is inside its parent's `tool.call`), its root's id
/// (`root`, None for a root itself) and, once the run ends, its `outcome`.
fn request_span(req: &Request, root: Option<&RequestId>) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        request_id = %req.id,
        session_id = %req.session_id,
        trace_id = %req.trace_id,
        agent = %req.agent,
        root_id = %root.unwrap_or(&req.id),
        parent_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if let Some(parent) = &req.parent_id {
        span.record("parent_id", tracing::field::display(parent));
    }
    span
}

/// Runs `req` (a root, or a delegated child under `ancestors`) until it settles.
/// A child registers its run here; a root's was registered by its caller. A root
/// runs in the span [`run_root`] entered, a child in a span of its own.
fn drive(
    h: Harness,
    req: Request,
    ancestors: Vec<RequestId>,
    cancel: CancellationToken,
    guard: Option<RunGuard>,
) -> BoxFuture<'static, Outcome> {
    let span = if ancestors.is_empty() {
        tracing::Span::current()
    } else {
        request_span(&req, ancestors.last())
    };
    Box::pin(tracing::Instrument::instrument(
        async move {
            let guard = guard.or_else(|| {
                (!ancestors.is_empty()).then(|| h.inner.runs.register(&h, &req.id, cancel.clone()))
            });
            tracing::info!("run started");
            let outcome = match Run::load(h, req, ancestors, cancel, guard).await {
                Ok(mut run) => run.execute().await,
                Err(outcome) => outcome,
            };
            tracing::info!(outcome = outcome.name(), "run ended");
            let span = tracing::Span::current();
            span.record("outcome", outcome.name());
            if matches!(outcome, Outcome::Failed(_) | Outcome::Panicked(_)) {
                span.record("otel.status_code", "error");
            }
            outcome
        },
        span,
    ))
}

pub(super) struct Run {
    h: Harness,
    req: Request,
    agent: AgentConfig,
    /// Parent first, root last.
    ancestors: Vec<RequestId>,
    steps: Vec<Step>,
    approvals: Vec<Approval>,
    messages: Vec<Message>,
    /// `messages`' size, counted as they are appended.
    context_size: crate::context::Tally,
    /// Cancelled with this request (or its tree), or when the worker aborts.
    cancel: CancellationToken,
    /// Calls this run committed `started` itself (live, not interrupted by a crash).
    live_started: HashSet<CallId>,
    /// When this run committed each tool call's `started` row, by step index (for
    /// the step latency metric).
    started_here: HashMap<u32, Timestamp>,
    _guard: Option<RunGuard>,
}

/// Early exit from the loop with the request's outcome.
type Flow<T> = Result<T, Outcome>;

impl Run {
    async fn load(
        h: Harness,
        req: Request,
        ancestors: Vec<RequestId>,
        cancel: CancellationToken,
        guard: Option<RunGuard>,
    ) -> Flow<Run> {
        let store = h.inner.store.clone();
        let agent = h.inner.workspace.agents.get(&req.agent).cloned();
        let mut run = Run {
            agent: agent.clone().unwrap_or_else(placeholder_agent),
            h,
            req,
            ancestors,
            steps: vec![],
            approvals: vec![],
            messages: vec![],
            context_size: Default::default(),
            cancel,
            live_started: HashSet::new(),
            started_here: HashMap::new(),
            _guard: guard,
        };
        if agent.is_none() {
            let msg = format!(
                "agent `{}` is no longer in the workspace configuration",
                run.req.agent
            );
            return Err(run.fail(msg).await);
        }
        // A root's conversation starts with its session's last exchanges.
        let history = if run.req.parent_id.is_none() { 20 } else { 0 };
        let start = store
            .run_start(&run.req.id, &run.req.session_id, history)
            .await
            .map_err(store_failure)?;
        run.steps = start.steps;
        run.approvals = start.approvals;
        let mut messages = Vec::with_capacity(run.steps.len() + 2 * start.history.len() + 4);
        let system = crate::tools::system_prompt(&run.agent, &run.h.inner.workspace);
        if !system.is_empty() {
            messages.push(Message::system(system));
        }
        for (input, output) in start.history {
            messages.push(Message::user(input));
            messages.push(Message::assistant(&ModelTurn::Text { text: output }));
        }
        messages.push(Message::user(run.req.input.clone()));
        harness_core::journal::fold_messages(&mut messages, &run.steps);
        run.messages = messages;
        Ok(run)
    }

    async fn reload_approvals(&mut self) -> Flow<()> {
        self.approvals = self
            .h
            .inner
            .store
            .list_approvals(ApprovalFilter {
                request_id: Some(self.req.id.clone()),
                ..Default::default()
            })
            .await
            .map_err(store_failure)?;
        Ok(())
    }

    async fn execute(&mut self) -> Outcome {
        if let Err(outcome) = self.hold_agent_limits().await {
            return outcome;
        }
        loop {
            if let Err(outcome) = self.step().await {
                return outcome;
            }
        }
    }

    /// One iteration in a `step` span (with a `tool.call` span inside when the
    /// step is about a tool call).
    async fn step(&mut self) -> Flow<()> {
        let span = tracing::info_span!(
            "step",
            step.index = self.next_idx(),
            step.action = tracing::field::Empty,
        );
        tracing::Instrument::instrument(self.step_inner(), span).await
    }

    /// One iteration: decide from the journal, act, commit.
    async fn step_inner(&mut self) -> Flow<()> {
        if self.cancel.is_cancelled() {
            let outcome = self.interruption();
            self.settle_unrun_calls().await;
            return Err(outcome);
        }
        let next = next_action(&self.steps, &self.approvals);
        let action = match &next {
            // Pre-started with the commit before: this step runs it.
            NextAction::Interrupted {
                call, child: None, ..
            } if self.live_started.contains(&call.call_id) => "run_call",
            next => action_name(next),
        };
        tracing::Span::current().record("step.action", action);
        let span = self
            .call_of(&next)
            .map(|(call, approval)| tool_span(&call, approval));
        // On the heap: the action's future is large, and a debug build's stack (a
        // tokio worker's 2 MiB) overflowed with it inline in every step's future.
        let act = Box::pin(self.act(next));
        match span {
            Some(span) => tracing::Instrument::instrument(act, span).await,
            None => act.await,
        }
    }

    /// The call `next` is about, and whether its tool needs an approval.
    fn call_of(&self, next: &NextAction) -> Option<(ToolCall, bool)> {
        let call = match next {
            NextAction::StartCall { call }
            | NextAction::RunApproved { call, .. }
            | NextAction::RecordRejection { call, .. }
            | NextAction::Interrupted { call, .. } => call,
            NextAction::CallModel
            | NextAction::AwaitApproval { .. }
            | NextAction::Complete { .. } => return None,
        };
        let approval = self
            .h
            .tool(&call.tool)
            .is_some_and(|t| t.approval == harness_config::ApprovalPolicy::Required);
        Some((call.clone(), approval))
    }

    /// Does what `next` says.
    async fn act(&mut self, next: NextAction) -> Flow<()> {
        // A call this run already committed `started` is the step in flight: a
        // graceful stop finishes it rather than leave it looking interrupted.
        if let NextAction::Interrupted {
            step_idx,
            call,
            child: None,
        } = &next
            && self.live_started.contains(&call.call_id)
        {
            return self.run_started(*step_idx, call.clone()).await;
        }
        if self.h.stopping() {
            return Err(Outcome::Stopped);
        }
        match next {
            NextAction::CallModel => self.model_turn().await,
            NextAction::StartCall { call } => self.start_call(call).await,
            NextAction::RunApproved { step_idx, call } => {
                self.run_call(Some(step_idx), call, None).await
            }
            NextAction::RecordRejection {
                step_idx,
                call,
                reason,
            } => {
                let out = harness_providers::ToolOutput::error(reason);
                self.complete_call(step_idx, call, None, out, true, vec![])
                    .await
            }
            NextAction::AwaitApproval { approval_id } => self.pause(&approval_id).await,
            NextAction::Interrupted {
                step_idx,
                call,
                child,
            } => self.interrupted(step_idx, call, child).await,
            NextAction::Complete { output } => Err(self.complete(output).await),
        }
    }

    /// Why the token fired: the worker is aborting (park the request), or the
    /// request was cancelled.
    fn interruption(&self) -> Outcome {
        if self.h.aborting() {
            Outcome::Stopped
        } else {
            Outcome::Cancelled
        }
    }

    /// A commit for this request, carrying the agent and the tree above it.
    fn commit_for(&self) -> StepCommit {
        StepCommit::new(&self.req.id, &self.req.session_id, self.h.now())
            .agent(&self.agent.name)
            .ancestors(&self.ancestors)
    }

    /// Commits; a refusal because the request is no longer running ends the run.
    async fn commit(&mut self, c: StepCommit) -> Flow<()> {
        match self.store(c).await {
            Ok(writes) => {
                for w in writes {
                    self.apply(w);
                }
                Ok(())
            }
            Err(e) => Err(self.refused(e)),
        }
    }

    /// Every commit of a run goes through here: secrets are redacted before
    /// anything is stored. Returns the step rows as stored (for the in-memory
    /// journal, which must match them).
    async fn store(&mut self, mut c: StepCommit) -> Result<Vec<StepWrite>, StoreError> {
        self.h.inner.redactor.redact_commit(&mut c);
        let writes = c.steps.clone();
        self.h.inner.store.commit_step(c).await?;
        self.observe_commit(&writes);
        Ok(writes)
    }

    /// Step latency of what this commit completed: a model turn from its
    /// `started_at` (the model call included); a tool call from the commit that
    /// started it in this run (a call that waited for an operator or for limits
    /// waited before it started). A call completed without starting here — a
    /// rejection recorded, a call an earlier run started — is no latency of this
    /// process's and is not observed.
    fn observe_commit(&mut self, writes: &[StepWrite]) {
        let now = self.h.now();
        let ms = |from: Timestamp| now.0.saturating_sub(from.0).max(0) as u64;
        for w in writes {
            let (StepWrite::Insert(step) | StepWrite::Update(step)) = w;
            match (step.status, &step.body) {
                (StepStatus::Started, StepBody::ToolCall { .. }) => {
                    self.started_here.insert(step.idx, now);
                }
                (StepStatus::Completed, StepBody::ModelTurn { .. }) => {
                    let m = &self.h.inner.metrics;
                    m.observe_step(crate::StepKind::ModelTurn, ms(step.started_at));
                }
                (StepStatus::Completed, StepBody::ToolCall { .. }) => {
                    if let Some(t) = self.started_here.remove(&step.idx) {
                        let m = &self.h.inner.metrics;
                        m.observe_step(crate::StepKind::ToolCall, ms(t));
                    }
                }
                _ => {}
            }
        }
    }

    /// The outcome of a refused commit.
    fn refused(&self, e: StoreError) -> Outcome {
        match e {
            StoreError::WrongState {
                status: RequestStatus::Cancelled,
                ..
            } => Outcome::Cancelled,
            StoreError::WrongState { status, .. } => Outcome::Displaced(status),
            StoreError::LeaseLost { id } => {
                tracing::warn!(
                    request = %id,
                    "lease lost: another worker re-claimed this request; this run stops and commits nothing"
                );
                Outcome::LeaseLost(id)
            }
            e if e.is_corrupt() => {
                self.h.fault(format!("the store is damaged: {e}"));
                store_failure(e)
            }
            e => store_failure(e),
        }
    }

    /// Mirrors a committed step in memory (journal and conversation).
    fn apply(&mut self, w: StepWrite) {
        match w {
            StepWrite::Insert(step) => {
                push_step(&mut self.messages, &step);
                self.steps.push(step);
            }
            StepWrite::Update(step) => {
                push_step(&mut self.messages, &step);
                if let Some(s) = self.steps.iter_mut().find(|s| s.idx == step.idx) {
                    *s = step;
                }
            }
        }
    }

    fn next_idx(&self) -> u32 {
        self.steps.last().map(|s| s.idx + 1).unwrap_or(0)
    }

    fn new_step(&self, status: StepStatus, body: StepBody) -> Step {
        let now = self.h.now();
        Step {
            request_id: self.req.id.clone(),
            idx: self.next_idx(),
            agent: self.agent.name.clone(),
            status,
            started_at: now,
            finished_at: (status == StepStatus::Completed).then_some(now),
            body,
        }
    }

    /// The committed step at `idx` (the fold found it there, so it exists).
    fn journal_step(&self, idx: u32) -> Step {
        let step = self.steps.iter().find(|s| s.idx == idx);
        step.cloned()
            .expect("a step named by next_action is in the journal")
    }
}

/// `step.action` of a step span.
fn action_name(next: &NextAction) -> &'static str {
    match next {
        NextAction::CallModel => "call_model",
        NextAction::StartCall { .. } => "start_call",
        NextAction::RunApproved { .. } => "run_approved",
        NextAction::RecordRejection { .. } => "record_rejection",
        NextAction::AwaitApproval { .. } => "await_approval",
        NextAction::Interrupted { .. } => "interrupted",
        NextAction::Complete { .. } => "complete",
    }
}

/// The span of a tool call's step: `outcome` is recorded when its `completed` (or
/// a pause for approval) is committed.
fn tool_span(call: &ToolCall, approval_required: bool) -> tracing::Span {
    tracing::info_span!(
        "tool.call",
        call_id = %call.call_id,
        tool = %call.tool,
        gen_ai.tool.name = %call.tool,
        gen_ai.tool.call.id = %call.call_id,
        approval_required,
        outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

fn store_failure(e: StoreError) -> Outcome {
    tracing::error!(error = %e, detail = ?e, "store failure during a run");
    Outcome::StoreFailed(e.to_string())
}

fn placeholder_agent() -> AgentConfig {
    AgentConfig {
        name: String::new(),
        description: String::new(),
        model: String::new(),
        system_prompt: String::new(),
        skills: vec![],
        tools: vec![],
        delegates: vec![],
        max_steps: 0,
        context: Default::default(),
        max_concurrent: None,
        uses: vec![],
    }
}
