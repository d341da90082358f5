//! Executing one request: fold the journal, ask what comes next, do it, commit it.
//!
//! The same loop serves a fresh request, a resume after an approval and a
//! recovery after a crash: [`next_action`] decides from committed rows only.
//! Every step is committed before its effects are visible; a tool call is
//! committed `started` before it runs and `completed` after.

use crate::Harness;
use harness_config::{AgentConfig, ApprovalPolicy, Builtin, InterruptedPolicy};
use harness_core::journal::{NextAction, next_action, push_step};
use harness_core::*;
use harness_providers::{BoxFuture, ModelRequest, ToolContext, ToolOutput, ToolSpec};
use harness_store::{RequestPatch, StepCommit, StepWrite, StoreError};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// How a run ended (for this worker).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    Completed(String),
    Failed(String),
    /// Waiting for an approval; holds nothing in memory.
    Paused,
    Cancelled,
    /// The worker is stopping; the request was parked for the next one.
    Stopped,
    Panicked(String),
}

/// Executes a claimed root request until it settles.
pub(crate) async fn run_root(h: Harness, req: Request, cancel: CancellationToken) -> Outcome {
    let id = req.id.clone();
    let outcome = drive(h.clone(), req, Vec::new(), cancel).await;
    if outcome == Outcome::Stopped {
        let _ = h.inner.store.release(vec![id], h.now()).await;
    }
    outcome
}

/// Records a panic of a run as its request's failure.
pub(crate) async fn fail_after_panic(h: &Harness, id: &RequestId, msg: &str) {
    let Ok(req) = h.inner.store.get_request(id).await else {
        return;
    };
    let error = format!("internal error while running the request: {msg}");
    let commit = StepCommit {
        request_id: req.id.clone(),
        session_id: req.session_id.clone(),
        at: h.now(),
        steps: vec![],
        patch: RequestPatch {
            status: Some(RequestStatus::Failed),
            error: Some(error.clone()),
            ..Default::default()
        },
        approval: None,
        child: None,
        artifacts: vec![],
        ancestors: vec![],
        events: vec![NewEvent::for_request(
            EventKind::RequestFailed,
            &req.id,
            &req.session_id,
            json!({"error": error}),
        )],
    };
    let _ = h.inner.store.commit_step(commit).await;
}

/// Runs `req` (a root, or a delegated child under `ancestors`) until it settles.
fn drive(
    h: Harness,
    req: Request,
    ancestors: Vec<RequestId>,
    cancel: CancellationToken,
) -> BoxFuture<'static, Outcome> {
    Box::pin(async move {
        let mut run = match Run::load(h, req, ancestors, cancel).await {
            Ok(run) => run,
            Err(outcome) => return outcome,
        };
        run.execute().await
    })
}

struct Run {
    h: Harness,
    req: Request,
    agent: AgentConfig,
    ancestors: Vec<RequestId>,
    steps: Vec<Step>,
    approvals: Vec<Approval>,
    messages: Vec<Message>,
    cancel: CancellationToken,
    /// Calls this run committed `started` itself (live, not interrupted by a crash).
    live_started: std::collections::HashSet<CallId>,
}

/// Early exit from the loop with the request's outcome.
type Flow<T> = Result<T, Outcome>;

impl Run {
    async fn load(
        h: Harness,
        req: Request,
        ancestors: Vec<RequestId>,
        cancel: CancellationToken,
    ) -> Flow<Run> {
        let store = &h.inner.store;
        let Some(agent) = h.inner.workspace.agents.get(&req.agent).cloned() else {
            let msg = format!(
                "agent `{}` is no longer in the workspace configuration",
                req.agent
            );
            let mut run = Run {
                h,
                req,
                agent: placeholder_agent(),
                ancestors,
                steps: vec![],
                approvals: vec![],
                messages: vec![],
                cancel,
                live_started: Default::default(),
            };
            return Err(run.fail(msg).await);
        };
        let steps = store.steps(&req.id).await.map_err(|e| store_failure(&e))?;
        let approvals = store
            .list_approvals(ApprovalFilter {
                request_id: Some(req.id.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| store_failure(&e))?;
        let mut messages = Vec::with_capacity(steps.len() + 8);
        if !agent.system_prompt.is_empty() {
            messages.push(Message::system(agent.system_prompt.clone()));
        }
        if req.parent_id.is_none() {
            let history = store
                .session_history(&req.session_id, &req.id, 20)
                .await
                .map_err(|e| store_failure(&e))?;
            for (input, output) in history {
                messages.push(Message::user(input));
                messages.push(Message::assistant(&ModelTurn::Text { text: output }));
            }
        }
        messages.push(Message::user(req.input.clone()));
        harness_core::journal::fold_messages(&mut messages, &steps);
        Ok(Run {
            h,
            req,
            agent,
            ancestors,
            steps,
            approvals,
            messages,
            cancel,
            live_started: Default::default(),
        })
    }

    async fn execute(&mut self) -> Outcome {
        loop {
            match self.step().await {
                Ok(()) => {}
                Err(outcome) => return outcome,
            }
        }
    }

    /// One iteration: decide from the journal, act, commit.
    async fn step(&mut self) -> Flow<()> {
        let next = next_action(&self.steps, &self.approvals);
        if self.cancel.is_cancelled() {
            return Err(Outcome::Cancelled);
        }
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
        if *self.h.inner.stopping.borrow() {
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
                self.complete_call(step_idx, call, None, ToolOutput::error(reason), true)
                    .await
            }
            NextAction::AwaitApproval { approval_id } => Err(self.pause(&approval_id).await),
            NextAction::Interrupted {
                step_idx,
                call,
                child,
            } => self.interrupted(step_idx, call, child).await,
            NextAction::Complete { output } => Err(self.complete(output).await),
        }
    }

    fn base_commit(&self, events: Vec<NewEvent>) -> StepCommit {
        StepCommit {
            request_id: self.req.id.clone(),
            session_id: self.req.session_id.clone(),
            at: self.h.now(),
            steps: vec![],
            patch: RequestPatch {
                current_agent: Some(self.agent.name.clone()),
                ..Default::default()
            },
            approval: None,
            child: None,
            artifacts: vec![],
            ancestors: self.ancestors.clone(),
            events,
        }
    }

    fn event(&self, kind: EventKind, payload: serde_json::Value) -> NewEvent {
        NewEvent::for_request(kind, &self.req.id, &self.req.session_id, payload)
    }

    /// Commits; a refusal because the request stopped running (cancelled) ends the run.
    async fn commit(&mut self, mut c: StepCommit) -> Flow<()> {
        self.h.inner.redactor.redact_commit(&mut c);
        let writes = c.steps.clone();
        match self.h.inner.store.commit_step(c).await {
            Ok(_) => {
                for w in writes {
                    self.apply(w);
                }
                Ok(())
            }
            Err(StoreError::WrongState {
                status: RequestStatus::Cancelled,
                ..
            }) => Err(Outcome::Cancelled),
            Err(e) => Err(store_failure(&e)),
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

    async fn model_turn(&mut self) -> Flow<()> {
        self.check_max_steps().await?;
        let model = match self.h.model(&self.agent.model) {
            Ok(m) => m,
            Err(e) => return Err(self.fail(e.to_string()).await),
        };
        let specs = self.tool_specs();
        let turn = model
            .complete(ModelRequest {
                agent: &self.agent.name,
                request_id: &self.req.id,
                messages: &self.messages,
                tools: &specs,
            })
            .await;
        let turn = match turn {
            Ok(t) => t,
            Err(e) => return Err(self.fail(e.to_string()).await),
        };
        let step = self.new_step(
            StepStatus::Completed,
            StepBody::ModelTurn { turn: turn.clone() },
        );
        let mut events = vec![self.event(EventKind::ModelTurn, turn_payload(&turn, step.idx))];
        let mut c = self.base_commit(vec![]);
        c.patch.count_step = true;
        if let ModelTurn::Text { text } = &turn {
            // The final answer and the request's completion are one commit.
            c.patch.status = Some(RequestStatus::Completed);
            c.patch.output = Some(text.clone());
            events.push(self.event(
                EventKind::RequestCompleted,
                json!({"output_bytes": text.len(), "steps": self.req.steps + 1}),
            ));
        }
        c.events = events;
        let next_idx = step.idx + 1;
        c.steps.push(StepWrite::Insert(step));
        if let ModelTurn::ToolCalls { calls, .. } = &turn
            && let Some(first) = calls.first()
        {
            self.prestart(&mut c, first, next_idx);
        }
        self.commit(c).await?;
        if let ModelTurn::Text { text } = turn {
            return Err(Outcome::Completed(text));
        }
        Ok(())
    }

    /// Adds `call`'s `started` row (and event) to commit `c` when the call can run
    /// right away — a known tool of this agent, valid arguments, no approval, not a
    /// delegation — so each step costs one commit. The row is durable before the
    /// call runs, as always.
    fn prestart(&mut self, c: &mut StepCommit, call: &ToolCall, idx: u32) {
        let tools = &self.h.inner.workspace.tools;
        let runnable = self.agent.tools.contains(&call.tool)
            && call.tool != Builtin::Delegate.name()
            && (idx as usize) < self.agent.max_steps as usize
            && tools.get(&call.tool).is_some_and(|t| {
                t.approval == ApprovalPolicy::Never
                    && harness_config::validate_arguments(&t.arguments, &call.arguments).is_ok()
            });
        if !runnable {
            return;
        }
        let mut step = self.new_step(StepStatus::Started, tool_body(call, None, None));
        step.idx = idx;
        c.steps.push(StepWrite::Insert(step));
        c.events.push(self.event(
            EventKind::ToolStarted,
            json!({"tool": call.tool, "call_id": call.call_id, "arguments": call.arguments}),
        ));
        self.live_started.insert(call.call_id.clone());
    }

    /// Runs a call this run committed `started`, then commits its completion.
    async fn run_started(&mut self, idx: u32, call: ToolCall) -> Flow<()> {
        let output = self.execute_tool(&call).await;
        self.complete_call(idx, call, None, output, false).await
    }

    /// The call proposed after `call` by the same model turn, if any.
    fn call_after(&self, call: &CallId) -> Option<ToolCall> {
        let turn = self.steps.iter().rev().find_map(|s| match &s.body {
            StepBody::ModelTurn {
                turn: ModelTurn::ToolCalls { calls, .. },
            } => Some(calls),
            _ => None,
        })?;
        let pos = turn.iter().position(|c| &c.call_id == call)?;
        turn.get(pos + 1).cloned()
    }

    async fn check_max_steps(&mut self) -> Flow<()> {
        if self.steps.len() as u32 >= self.agent.max_steps {
            let msg = format!(
                "exceeded the agent's max_steps ({}) of agent `{}`",
                self.agent.max_steps, self.agent.name
            );
            return Err(self.fail(msg).await);
        }
        Ok(())
    }

    fn tool_specs(&self) -> Vec<ToolSpec> {
        let tools = &self.h.inner.workspace.tools;
        self.agent
            .tools
            .iter()
            .filter_map(|name| tools.get(name).map(|t| (name, t)))
            .map(|(name, t)| ToolSpec {
                name: name.clone(),
                description: t.description.clone(),
                arguments: t.arguments.clone(),
            })
            .collect()
    }

    async fn start_call(&mut self, call: ToolCall) -> Flow<()> {
        self.check_max_steps().await?;
        let tool = self
            .h
            .inner
            .workspace
            .tools
            .get(&call.tool)
            .filter(|_| self.agent.tools.contains(&call.tool));
        let Some(tool) = tool.cloned() else {
            // Not a tool of this agent: the model is told, nothing runs.
            let msg = format!(
                "tool `{}` is not available to agent `{}`",
                call.tool, self.agent.name
            );
            let step = self.new_step(StepStatus::Started, tool_body(&call, None, None));
            let idx = step.idx;
            let mut c = self.base_commit(vec![]);
            c.steps.push(StepWrite::Insert(step));
            self.commit(c).await?;
            return self
                .complete_call(idx, call, None, ToolOutput::error(msg), false)
                .await;
        };
        if let Err(reason) = harness_config::validate_arguments(&tool.arguments, &call.arguments) {
            let step = self.new_step(StepStatus::Started, tool_body(&call, None, None));
            let idx = step.idx;
            let mut c = self.base_commit(vec![]);
            c.steps.push(StepWrite::Insert(step));
            self.commit(c).await?;
            let msg = format!("invalid arguments for `{}`: {reason}", call.tool);
            return self
                .complete_call(idx, call, None, ToolOutput::error(msg), false)
                .await;
        }
        if tool.approval == ApprovalPolicy::Required {
            return Err(self.request_approval(call).await);
        }
        self.run_call(None, call, None).await
    }

    /// The step, the approval, the request's pause and their events: one commit.
    async fn request_approval(&mut self, call: ToolCall) -> Outcome {
        let approval = self.new_approval(&call, self.next_idx(), None);
        let step = self.new_step(
            StepStatus::AwaitingApproval,
            tool_body(&call, Some(approval.id.clone()), None),
        );
        let c = self.base_commit(vec![
            self.approval_event(&approval, &call, step.idx),
            self.event(
                EventKind::RequestWaitingApproval,
                json!({"approval_id": approval.id}),
            ),
        ]);
        self.commit_pause(c, StepWrite::Insert(step), approval)
            .await
    }

    /// Waiting on an approval raised earlier (e.g. found again after a restart).
    async fn pause(&mut self, approval_id: &ApprovalId) -> Outcome {
        let mut c = self.base_commit(vec![self.event(
            EventKind::RequestWaitingApproval,
            json!({"approval_id": approval_id}),
        )]);
        c.patch.status = Some(RequestStatus::WaitingApproval);
        match self.commit(c).await {
            Ok(()) => Outcome::Paused,
            Err(o) => o,
        }
    }

    /// Commits `started`, runs the call, commits `completed`.
    async fn run_call(
        &mut self,
        existing: Option<u32>,
        call: ToolCall,
        note: Option<&str>,
    ) -> Flow<()> {
        if call.tool == Builtin::Delegate.name() {
            return self.delegate(existing, call).await;
        }
        let mut payload =
            json!({"tool": call.tool, "call_id": call.call_id, "arguments": call.arguments});
        if let Some(n) = note {
            payload["note"] = json!(n);
        }
        let idx = self
            .commit_started(
                existing,
                &call,
                None,
                vec![self.event(EventKind::ToolStarted, payload)],
            )
            .await?;
        let output = self.execute_tool(&call).await;
        self.complete_call(idx, call, None, output, false).await
    }

    async fn commit_started(
        &mut self,
        existing: Option<u32>,
        call: &ToolCall,
        child: Option<harness_store::NewRequest>,
        events: Vec<NewEvent>,
    ) -> Flow<u32> {
        let body = tool_body(
            call,
            self.approval_for(call),
            child.as_ref().map(|c| c.id.clone()),
        );
        let mut step = self.new_step(StepStatus::Started, body);
        let write = match existing {
            Some(idx) => {
                step.idx = idx;
                step.started_at = self
                    .steps
                    .iter()
                    .find(|s| s.idx == idx)
                    .map(|s| s.started_at)
                    .unwrap_or(step.started_at);
                StepWrite::Update(step)
            }
            None => StepWrite::Insert(step),
        };
        let idx = match &write {
            StepWrite::Insert(s) | StepWrite::Update(s) => s.idx,
        };
        let mut c = self.base_commit(events);
        c.steps.push(write);
        if let Some(child) = child {
            c.patch.current_agent = Some(child.agent.clone());
            c.child = Some(child);
        }
        self.commit(c).await?;
        Ok(idx)
    }

    fn approval_for(&self, call: &ToolCall) -> Option<ApprovalId> {
        // The newest: a re-run decision comes after the call's own approval.
        self.approvals
            .iter()
            .rev()
            .find(|a| a.call_id == call.call_id)
            .map(|a| a.id.clone())
    }

    async fn execute_tool(&self, call: &ToolCall) -> ToolOutput {
        let ws = &self.h.inner.workspace;
        let ctx = ToolContext {
            workspace_root: ws.root.clone(),
            work_dir: ws.root.join("work"),
            request_id: self.req.id.clone(),
            session_id: self.req.session_id.clone(),
            call_id: call.call_id.clone(),
            cancel: self.cancel.clone(),
        };
        let tools = self.h.inner.tools.clone();
        let (name, args) = (call.tool.clone(), call.arguments.clone());
        // A panicking tool fails its own call, never the worker.
        match tokio::spawn(async move { tools.run(&name, &args, &ctx).await }).await {
            Ok(out) => out,
            Err(e) => ToolOutput::error(format!("tool `{}` crashed: {e}", call.tool)),
        }
    }

    /// Bounds the output, stores its artifacts, commits `completed` with its events.
    async fn complete_call(
        &mut self,
        idx: u32,
        call: ToolCall,
        child: Option<RequestId>,
        output: ToolOutput,
        rejected: bool,
    ) -> Flow<()> {
        let limit = self
            .h
            .inner
            .workspace
            .settings
            .runtime
            .max_inline_output_bytes;
        let (mut outcome, files) = bound_output(output, limit, &call);
        let mut artifacts = Vec::with_capacity(files.len());
        let mut events = Vec::new();
        for f in files {
            let stored = self.h.inner.store.write_artifact_file(
                &self.req.id,
                &self.req.session_id,
                &f.name,
                &f.media_type,
                &f.bytes,
                self.h.now(),
            );
            match stored {
                Ok(a) => {
                    events.push(self.event(
                        EventKind::ArtifactCreated,
                        json!({
                            "artifact_id": a.id, "name": a.name, "version": a.version,
                            "media_type": a.media_type, "size": a.size, "sha256": a.sha256,
                            "call_id": call.call_id,
                        }),
                    ));
                    artifacts.push(a);
                }
                Err(e) => {
                    // A refused artifact (bad name, too large) fails the call, not the request.
                    outcome = ToolOutcome {
                        ok: false,
                        content: e.to_string(),
                        artifact: None,
                    };
                    artifacts.clear();
                    events.clear();
                    break;
                }
            }
        }
        events.insert(0, self.event(EventKind::ToolCompleted, json!({
            "tool": call.tool, "call_id": call.call_id, "ok": outcome.ok, "rejected": rejected,
            "output_bytes": outcome.content.len(), "preview": preview(&outcome.content, 200), "artifact": outcome.artifact,
        })));
        let started = self
            .steps
            .iter()
            .find(|s| s.idx == idx)
            .map(|s| s.started_at)
            .unwrap_or_else(|| self.h.now());
        let approval_id = self.approval_for(&call);
        let next_call = self.call_after(&call.call_id);
        self.live_started.remove(&call.call_id);
        let step = Step {
            request_id: self.req.id.clone(),
            idx,
            agent: self.agent.name.clone(),
            status: StepStatus::Completed,
            started_at: started,
            finished_at: Some(self.h.now()),
            body: StepBody::ToolCall {
                call,
                approval_id,
                outcome: Some(outcome),
                child_request_id: child,
            },
        };
        let mut c = self.base_commit(events);
        c.steps.push(StepWrite::Update(step));
        c.patch.count_step = true;
        c.artifacts = artifacts;
        if let Some(next) = next_call {
            let next_idx = self.next_idx();
            self.prestart(&mut c, &next, next_idx);
        }
        self.commit(c).await
    }

    /// A call that was started but not completed before a crash.
    async fn interrupted(
        &mut self,
        idx: u32,
        call: ToolCall,
        child: Option<RequestId>,
    ) -> Flow<()> {
        if let Some(child) = child {
            return self.resume_delegate(idx, call, child).await;
        }
        let idempotent = self
            .h
            .inner
            .workspace
            .tools
            .get(&call.tool)
            .is_some_and(|t| t.idempotent);
        if idempotent {
            let note = "re-run after an interruption (the tool is idempotent)";
            let ev = self.event(
                EventKind::ToolInterrupted,
                json!({"tool": call.tool, "call_id": call.call_id, "rerun": true}),
            );
            let c = self.base_commit(vec![ev]);
            self.commit(c).await?;
            return self.run_call(Some(idx), call, Some(note)).await;
        }
        if self.h.inner.workspace.settings.runtime.on_interrupted == InterruptedPolicy::Ask {
            return Err(self.ask_rerun(idx, call).await);
        }
        let reason = format!(
            "tool call {} (`{}`) was interrupted before it completed and is not idempotent, so it was not re-run; \
             check its effect, then retry the request if needed",
            call.call_id, call.tool
        );
        let mut step = self.journal_step(idx);
        step.status = StepStatus::Interrupted;
        step.finished_at = Some(self.h.now());
        let mut c = self.base_commit(vec![
            self.event(
                EventKind::ToolInterrupted,
                json!({"tool": call.tool, "call_id": call.call_id, "rerun": false}),
            ),
            self.event(EventKind::RequestFailed, json!({"error": reason})),
        ]);
        c.steps.push(StepWrite::Update(step));
        c.patch.status = Some(RequestStatus::Failed);
        c.patch.error = Some(reason.clone());
        self.commit(c).await?;
        Err(Outcome::Failed(reason))
    }

    /// The committed step at `idx` (the fold found it there, so it exists).
    fn journal_step(&self, idx: u32) -> Step {
        let step = self.steps.iter().find(|s| s.idx == idx);
        step.cloned()
            .expect("a step named by next_action is in the journal")
    }

    /// Policy `ask`: the interrupted call waits for an operator to approve a re-run
    /// (same call id) or reject it (the model is told it did not run again).
    async fn ask_rerun(&mut self, idx: u32, call: ToolCall) -> Outcome {
        let reason = format!(
            "call {} was interrupted by a crash before it completed; it may or may not have taken effect. Approve to run it again.",
            call.call_id
        );
        let approval = self.new_approval(&call, idx, Some(reason.clone()));
        let mut step = self.journal_step(idx);
        step.status = StepStatus::AwaitingApproval;
        step.body = tool_body(&call, Some(approval.id.clone()), None);
        let c = self.base_commit(vec![
            self.event(EventKind::ToolInterrupted, json!({"tool": call.tool, "call_id": call.call_id, "rerun": false, "awaiting_decision": true})),
            self.approval_event(&approval, &call, idx),
            self.event(EventKind::RequestWaitingApproval, json!({"approval_id": approval.id})),
        ]);
        self.commit_pause(c, StepWrite::Update(step), approval)
            .await
    }

    /// The step awaiting approval, the approval, and the request's pause: one commit.
    async fn commit_pause(
        &mut self,
        mut c: StepCommit,
        step: StepWrite,
        approval: Approval,
    ) -> Outcome {
        c.patch.status = Some(RequestStatus::WaitingApproval);
        c.steps.push(step);
        c.approval = Some(approval.clone());
        self.approvals.push(approval);
        match self.commit(c).await {
            Ok(()) => Outcome::Paused,
            Err(o) => o,
        }
    }

    fn new_approval(&self, call: &ToolCall, step_idx: u32, reason: Option<String>) -> Approval {
        let now = self.h.now();
        let ttl = self.h.inner.workspace.settings.runtime.approval_ttl;
        Approval {
            id: ApprovalId::generate(),
            request_id: self.req.id.clone(),
            session_id: self.req.session_id.clone(),
            agent: self.agent.name.clone(),
            step_idx,
            call_id: call.call_id.clone(),
            tool: call.tool.clone(),
            arguments: call.arguments.clone(),
            status: ApprovalStatus::Pending,
            decided_by: None,
            message: None,
            edited_arguments: None,
            created_at: now,
            decided_at: None,
            expires_at: now.plus(ttl),
            reason,
        }
    }

    fn approval_event(&self, a: &Approval, call: &ToolCall, step: u32) -> NewEvent {
        self.event(EventKind::ApprovalRequested, json!({
            "approval_id": a.id, "tool": call.tool, "call_id": call.call_id,
            "arguments": call.arguments, "expires_at": a.expires_at, "step": step, "reason": a.reason,
        }))
    }

    /// The built-in `delegate` tool: run another agent as a child request.
    async fn delegate(&mut self, existing: Option<u32>, call: ToolCall) -> Flow<()> {
        let target = call
            .arguments
            .get("agent")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let input = call
            .arguments
            .get("input")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        if !self.agent.delegates.contains(&target) {
            let msg = format!(
                "agent `{}` may not delegate to `{target}` (delegates: {})",
                self.agent.name,
                self.agent.delegates.join(", ")
            );
            let idx = self.commit_started(existing, &call, None, vec![]).await?;
            return self
                .complete_call(idx, call, None, ToolOutput::error(msg), false)
                .await;
        }
        let child_id = RequestId::generate();
        let child = harness_store::NewRequest {
            id: child_id.clone(),
            session_id: self.req.session_id.clone(),
            agent: target.clone(),
            input,
            trace_id: self.req.trace_id.clone(),
        };
        let events = vec![
            self.event(
                EventKind::ToolStarted,
                json!({"tool": call.tool, "call_id": call.call_id, "arguments": call.arguments}),
            ),
            self.event(
                EventKind::DelegateStarted,
                json!({"child_request_id": child_id, "agent": target, "call_id": call.call_id}),
            ),
        ];
        let idx = self
            .commit_started(existing, &call, Some(child), events)
            .await?;
        self.drive_child(idx, call, child_id).await
    }

    async fn resume_delegate(&mut self, idx: u32, call: ToolCall, child: RequestId) -> Flow<()> {
        let _ = self.h.inner.store.resume_child(&child, self.h.now()).await;
        self.drive_child(idx, call, child).await
    }

    async fn drive_child(&mut self, idx: u32, call: ToolCall, child_id: RequestId) -> Flow<()> {
        let child = self
            .h
            .inner
            .store
            .get_request(&child_id)
            .await
            .map_err(|e| store_failure(&e))?;
        let outcome = match child.status {
            RequestStatus::Completed => {
                Outcome::Completed(child.output.clone().unwrap_or_default())
            }
            RequestStatus::Failed => Outcome::Failed(child.error.clone().unwrap_or_default()),
            RequestStatus::Cancelled => Outcome::Cancelled,
            _ => {
                let mut ancestors = vec![self.req.id.clone()];
                ancestors.extend(self.ancestors.iter().cloned());
                drive(self.h.clone(), child, ancestors, self.cancel.clone()).await
            }
        };
        let output = match outcome {
            Outcome::Completed(text) => ToolOutput::ok(text),
            Outcome::Failed(err) => {
                ToolOutput::error(format!("delegate `{}` failed: {err}", child_id))
            }
            Outcome::Paused => {
                let mut c = self.base_commit(vec![self.event(
                    EventKind::RequestWaitingApproval,
                    json!({"child_request_id": child_id}),
                )]);
                c.patch.status = Some(RequestStatus::WaitingApproval);
                self.commit(c).await?;
                return Err(Outcome::Paused);
            }
            other => return Err(other),
        };
        let ok = output.ok;
        let done = self.event(
            EventKind::DelegateCompleted,
            json!({"child_request_id": child_id, "ok": ok}),
        );
        self.complete_call(idx, call, Some(child_id), output, false)
            .await?;
        let c = self.base_commit(vec![done]);
        self.commit(c).await
    }

    async fn complete(&mut self, output: String) -> Outcome {
        let mut c = self.base_commit(vec![self.event(
            EventKind::RequestCompleted,
            json!({"output_bytes": output.len()}),
        )]);
        c.patch.status = Some(RequestStatus::Completed);
        c.patch.output = Some(output.clone());
        match self.commit(c).await {
            Ok(()) => Outcome::Completed(output),
            Err(o) => o,
        }
    }

    async fn fail(&mut self, reason: String) -> Outcome {
        let mut c = self.base_commit(vec![
            self.event(EventKind::RequestFailed, json!({"error": reason})),
        ]);
        c.patch.status = Some(RequestStatus::Failed);
        c.patch.error = Some(reason.clone());
        match self.commit(c).await {
            Ok(()) => Outcome::Failed(reason),
            Err(o) => o,
        }
    }
}

fn tool_body(
    call: &ToolCall,
    approval_id: Option<ApprovalId>,
    child: Option<RequestId>,
) -> StepBody {
    StepBody::ToolCall {
        call: call.clone(),
        approval_id,
        outcome: None,
        child_request_id: child,
    }
}

fn turn_payload(turn: &ModelTurn, step: u32) -> serde_json::Value {
    match turn {
        ModelTurn::Text { text } => {
            json!({"step": step, "text": preview(text, 2000), "final": true})
        }
        ModelTurn::ToolCalls { text, calls } => json!({
            "step": step,
            "text": preview(text, 2000),
            "calls": calls.iter().map(|c| json!({"tool": c.tool, "call_id": c.call_id})).collect::<Vec<_>>(),
        }),
    }
}

/// Large outputs become an artifact; the model and the events get a bounded preview.
fn bound_output(
    out: ToolOutput,
    limit: usize,
    call: &ToolCall,
) -> (ToolOutcome, Vec<harness_providers::NewArtifact>) {
    let mut files = out.artifacts;
    if out.content.len() <= limit {
        let artifact = files.first().map(|f| f.name.clone());
        return (
            ToolOutcome {
                ok: out.ok,
                content: out.content,
                artifact,
            },
            files,
        );
    }
    let name = format!("output-{}.txt", call.call_id);
    let content = format!(
        "{}\n… (output truncated: {} bytes in total; full output stored as artifact {name})",
        preview(&out.content, limit),
        out.content.len()
    );
    files.push(harness_providers::NewArtifact {
        name: name.clone(),
        media_type: "text/plain".into(),
        bytes: out.content.into_bytes(),
    });
    (
        ToolOutcome {
            ok: out.ok,
            content,
            artifact: Some(name),
        },
        files,
    )
}

/// The first `max` bytes of `s`, cut at a character boundary.
fn preview(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn store_failure(e: &StoreError) -> Outcome {
    tracing::error!(error = %e, "store failure during a run");
    Outcome::Failed(format!("store failure: {e}"))
}

fn placeholder_agent() -> AgentConfig {
    AgentConfig {
        name: String::new(),
        description: String::new(),
        model: String::new(),
        system_prompt: String::new(),
        tools: vec![],
        delegates: vec![],
        max_steps: 0,
    }
}
