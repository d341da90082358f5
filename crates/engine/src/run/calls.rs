//! Tool calls: commit `started`, run, commit `completed`; calls a crash, a
//! cancel or a hard stop interrupted.

use super::{Flow, Outcome, Run};
use futures_util::FutureExt;
use harness_config::{ApprovalPolicy, Builtin, InterruptedPolicy};
use harness_core::*;
use harness_providers::{NewArtifact, ToolContext, ToolOutput};
use harness_store::{Acquire, NewRequest, Park, StepCommit, StoreError};

/// Longest tool output kept in a `tool.completed` event.
const EVENT_PREVIEW: usize = 200;

impl Run {
    pub(super) async fn start_call(&mut self, call: ToolCall) -> Flow<()> {
        self.check_max_steps().await?;
        let tool = self
            .h
            .tool(&call.tool)
            .filter(|_| crate::tools::offers(&self.agent, &call.tool));
        let refusal = match &tool {
            // Not a tool of this agent: the model is told, nothing runs.
            None => Some(format!(
                "tool `{}` is not available to agent `{}`",
                call.tool, self.agent.name
            )),
            Some(t) => t
                .check_arguments(&call.arguments)
                .err()
                .map(|reason| format!("invalid arguments for `{}`: {reason}", call.tool))
                .or_else(|| crate::tools::refusal(&self.agent, &call)),
        };
        if let Some(msg) = refusal {
            let idx = self.commit_started(None, &call, None, vec![]).await?;
            let out = ToolOutput::error(msg);
            return self
                .complete_call(idx, call, None, out, false, vec![])
                .await;
        }
        if tool.is_some_and(|t| t.approval == ApprovalPolicy::Required) {
            return self.request_approval(call).await;
        }
        self.run_call(None, call, None).await
    }

    /// Commits `started` (after `before`, e.g. why it is re-run), runs the call,
    /// commits `completed`.
    pub(super) async fn run_call(
        &mut self,
        existing: Option<u32>,
        call: ToolCall,
        before: Option<EventBody>,
    ) -> Flow<()> {
        if call.tool == Builtin::Delegate.name() {
            return self.delegate(existing, call).await;
        }
        let note = before
            .as_ref()
            .map(|_| "re-run after an interruption (the tool is idempotent)".to_string());
        let mut events: Vec<EventBody> = before.into_iter().collect();
        events.push(EventBody::ToolStarted {
            call: call.clone(),
            note,
        });
        if existing.is_some() {
            // Run again: nothing of an earlier execution may still run (a worker on
            // this host that lost the tree may be stopped, not dead, its command alive).
            self.reap_earlier_execution(&call).await?;
        }
        let idx = match self.acquire_for(&call) {
            None => self.commit_started(existing, &call, None, events).await?,
            Some(a) => self.commit_holding(existing, &call, events, a).await?,
        };
        self.run_started(idx, call).await
    }

    async fn reap_earlier_execution(&self, call: &ToolCall) -> Flow<()> {
        let runs = harness_providers::tools::running_dir(&self.h.inner.workspace.store_dir());
        let Some(reaped) = harness_providers::tools::reap_call(&runs, &call.call_id).await else {
            return Ok(());
        };
        if let harness_providers::tools::ReapOutcome::Survived { .. } = reaped.outcome {
            tracing::error!(request = %self.req.id, "{reaped}");
            return Err(Outcome::StoreFailed(format!(
                "an earlier execution of call {} still runs; it is not run again meanwhile",
                call.call_id
            )));
        }
        tracing::warn!(request = %self.req.id, "before running the call again: {reaped}");
        Ok(())
    }

    /// What a call of a tool with limits (`max_concurrent`, `uses`) acquires with
    /// its `started` row; None for a tool without.
    fn acquire_for(&self, call: &ToolCall) -> Option<Acquire> {
        let tool = self.h.tool(&call.tool)?;
        let limits =
            tool.concurrency_limits(&call.tool, &self.h.inner.workspace.settings.resources);
        if limits.is_empty() {
            return None;
        }
        let now = self.h.now();
        Some(Acquire {
            call_id: call.call_id.clone(),
            tool: call.tool.clone(),
            root_id: self.ancestors.last().unwrap_or(&self.req.id).clone(),
            limits,
            until: Timestamp(now.0.saturating_add(tool.timeout.as_millis() as i64)),
        })
    }

    /// Commits `started` holding `a`'s limits; when one is full, parks the tree
    /// (it leaves its worker slot) and ends the run with [`Outcome::Waiting`].
    async fn commit_holding(
        &mut self,
        existing: Option<u32>,
        call: &ToolCall,
        events: Vec<EventBody>,
        a: Acquire,
    ) -> Flow<u32> {
        // Room may appear between a refused commit and the park (the park then
        // writes nothing): try again, a few times.
        let mut busy = None;
        for _ in 0..3 {
            let (c, idx) = self.started_commit(existing, call, None, events.clone());
            match self.store(c.acquire(a.clone())).await {
                Ok(writes) => {
                    for w in writes {
                        self.apply(w);
                    }
                    return Ok(idx);
                }
                Err(e @ StoreError::LimitsBusy { .. }) => busy = Some(e),
                Err(e) => return Err(self.refused(e)),
            }
            if self.park(&a).await? {
                return Err(Outcome::Waiting);
            }
        }
        Err(self.refused(busy.expect("a refused commit came before")))
    }

    /// Parks the tree until `a`'s limits have room; false if they have room now
    /// (nothing was written).
    async fn park(&self, a: &Acquire) -> Flow<bool> {
        let park = Park {
            request_id: self.req.id.clone(),
            session_id: self.req.session_id.clone(),
            ancestors: self.ancestors.clone(),
            call_id: a.call_id.clone(),
            tool: a.tool.clone(),
            limits: a.limits.clone(),
            at: self.h.now(),
        };
        self.h
            .inner
            .store
            .park(park)
            .await
            .map_err(|e| self.refused(e))
    }

    /// A run of an agent with limits (`max_concurrent`, `uses`) holds them from
    /// its start (every start: after a claim, a pause or a park, nothing is held)
    /// until the request leaves `running`. The holder is the request itself (no tool).
    pub(super) async fn hold_agent_limits(&mut self) -> Flow<()> {
        let limits = self
            .agent
            .concurrency_limits(&self.h.inner.workspace.settings.resources);
        if limits.is_empty() {
            return Ok(());
        }
        let a = Acquire {
            call_id: CallId::from_trusted(self.req.id.to_string()),
            tool: String::new(),
            root_id: self.ancestors.last().unwrap_or(&self.req.id).clone(),
            limits,
            // A run has no timeout: only a call's hold can be overdue.
            until: Timestamp(i64::MAX),
        };
        for _ in 0..3 {
            match self.store(self.commit_for().acquire(a.clone())).await {
                Ok(_) => return Ok(()),
                Err(StoreError::LimitsBusy { .. }) => {}
                Err(e) => return Err(self.refused(e)),
            }
            if self.park(&a).await? {
                return Err(Outcome::Waiting);
            }
        }
        Err(Outcome::StoreFailed(
            "the agent's limits kept changing between the acquisition and the park".into(),
        ))
    }

    /// Runs a call committed `started`, then commits how it ended.
    pub(super) async fn run_started(&mut self, idx: u32, call: ToolCall) -> Flow<()> {
        let output = self.execute_tool(&call).await;
        if self.cancel.is_cancelled() {
            // Killed by a cancel or a hard stop: it may have taken effect or not.
            return Err(self.interrupted_by_stop(idx, call, output).await);
        }
        self.complete_call(idx, call, None, output, false, vec![])
            .await
    }

    /// Commits the call's `started` row (new, or updating the row at `existing`),
    /// with the child request a delegation starts. Returns the step's index.
    pub(super) async fn commit_started(
        &mut self,
        existing: Option<u32>,
        call: &ToolCall,
        child: Option<NewRequest>,
        events: Vec<EventBody>,
    ) -> Flow<u32> {
        let (c, idx) = self.started_commit(existing, call, child, events);
        self.commit(c).await?;
        Ok(idx)
    }

    /// The commit of a call's `started` row, and the step's index.
    fn started_commit(
        &self,
        existing: Option<u32>,
        call: &ToolCall,
        child: Option<NewRequest>,
        events: Vec<EventBody>,
    ) -> (StepCommit, u32) {
        let body = tool_body(
            call,
            self.approval_for(call),
            child.as_ref().map(|c| c.id.clone()),
        );
        let mut step = self.new_step(StepStatus::Started, body);
        if let Some(idx) = existing {
            step.idx = idx;
            step.started_at = self.journal_step(idx).started_at;
        }
        let idx = step.idx;
        let mut c = self.commit_for();
        c = match existing {
            Some(_) => c.update(step),
            None => c.insert(step),
        };
        for e in events {
            c = c.event(e);
        }
        if let Some(child) = child {
            c = c.agent(&child.agent).child(child);
        }
        (c, idx)
    }

    pub(super) fn approval_for(&self, call: &ToolCall) -> Option<ApprovalId> {
        // The newest: a re-run decision comes after the call's own approval.
        self.approvals
            .iter()
            .rev()
            .find(|a| a.call_id == call.call_id)
            .map(|a| a.id.clone())
    }

    async fn execute_tool(&self, call: &ToolCall) -> ToolOutput {
        let ws = &self.h.inner.workspace;
        let work_dir = match ws.work_dir(self.req.session_id.as_str(), &self.req.agent) {
            Ok(dir) => dir,
            Err(e) => return ToolOutput::error(e),
        };
        let ctx = ToolContext {
            workspace_root: ws.root.clone(),
            work_dir,
            request_id: self.req.id.clone(),
            session_id: self.req.session_id.clone(),
            call_id: call.call_id.clone(),
            trace_id: self.req.trace_id.clone(),
            traceparent: crate::telemetry::traceparent_of(&tracing::Span::current()),
            cancel: self.cancel.clone(),
            runs_dir: harness_providers::tools::running_dir(&self.h.inner.workspace.store_dir()),
        };
        let tools = self.h.inner.tools.clone();
        let (name, args) = (call.tool.clone(), call.arguments.clone());
        // A panicking tool fails its own call, never the worker. Polled in this
        // task rather than spawned: a spawned task cost every call a wake-up of
        // another runtime thread (about a tenth of a step's CPU), and dropping the
        // run now drops the call with it (a command tool's process group is killed).
        let run = async move {
            let out = tools.run(&name, &args, &ctx).await;
            tracing::info!(ok = out.ok, "tool call ended");
            out
        };
        match std::panic::AssertUnwindSafe(run).catch_unwind().await {
            Ok(out) => out,
            Err(panic) => {
                let msg = crate::worker::panic_message(panic.as_ref())
                    .unwrap_or_else(|| "a panic".to_string());
                ToolOutput::error(format!("tool `{}` crashed: {msg}", call.tool))
            }
        }
    }

    /// Bounds the output, stores its artifacts, and commits `completed` with its
    /// events (then `after`, e.g. `delegate.completed`), pre-starting the turn's
    /// next call in the same commit.
    pub(super) async fn complete_call(
        &mut self,
        idx: u32,
        call: ToolCall,
        child: Option<RequestId>,
        output: ToolOutput,
        rejected: bool,
        after: Vec<EventBody>,
    ) -> Flow<()> {
        let limit = self
            .h
            .inner
            .workspace
            .settings
            .runtime
            .max_inline_output_bytes;
        let (mut outcome, files) = bound_output(output, limit, &call);
        let (artifacts, created) = match self.store_artifacts(files, &call).await {
            Ok(stored) => stored,
            Err(refused) => {
                // A refused artifact (bad name, too large) fails the call, not the request.
                outcome = ToolOutcome {
                    ok: false,
                    content: refused,
                    artifact: None,
                };
                (vec![], vec![])
            }
        };
        let completed = EventBody::ToolCompleted {
            tool: call.tool.clone(),
            call_id: call.call_id.clone(),
            ok: outcome.ok,
            rejected,
            output_bytes: outcome.content.len(),
            preview: preview(&outcome.content, EVENT_PREVIEW),
            artifact: outcome.artifact.clone(),
        };
        let next_call = self.call_after(&call.call_id);
        self.live_started.remove(&call.call_id);
        let ok = outcome.ok;
        let step = self.finished_step(idx, call, child, outcome, StepStatus::Completed);
        let mut c = self
            .commit_for()
            .update(step.clone())
            .count_step()
            .artifacts(artifacts.clone())
            .event(completed.clone());
        for e in created.iter().cloned().chain(after) {
            c = c.event(e);
        }
        if let Some(next) = next_call {
            let next_idx = self.next_idx();
            c = self.prestart(c, &next, next_idx);
        }
        match self.store(c).await {
            Ok(writes) => {
                for w in writes {
                    self.apply(w);
                }
                let span = tracing::Span::current();
                span.record(
                    "outcome",
                    match (rejected, ok) {
                        (true, _) => "rejected",
                        (false, true) => "ok",
                        (false, false) => "error",
                    },
                );
                if !ok {
                    span.record("otel.status_code", "error");
                }
                Ok(())
            }
            Err(StoreError::WrongState {
                status: RequestStatus::Cancelled,
                ..
            }) => {
                // Cancelled while the call ran: still record how the call ended.
                let mut record = self.commit_for().update(step).artifacts(artifacts);
                record.patch.settled_ok = true;
                for e in std::iter::once(completed).chain(created) {
                    record = record.event(e);
                }
                let _ = self.store(record).await;
                Err(Outcome::Cancelled)
            }
            Err(e) => Err(self.refused(e)),
        }
    }

    async fn store_artifacts(
        &self,
        files: Vec<NewArtifact>,
        call: &ToolCall,
    ) -> Result<(Vec<Artifact>, Vec<EventBody>), String> {
        let mut artifacts = Vec::with_capacity(files.len());
        let mut events = Vec::with_capacity(files.len());
        for f in files {
            let a = self
                .h
                .inner
                .store
                .put_artifact(
                    &self.req.id,
                    &self.req.session_id,
                    &f.name,
                    &f.media_type,
                    &f.bytes,
                    self.h.now(),
                )
                .await
                .map_err(|e| e.to_string())?;
            events.push(EventBody::ArtifactCreated {
                artifact: Box::new(a.clone()),
                call_id: call.call_id.clone(),
            });
            artifacts.push(a);
        }
        Ok((artifacts, events))
    }

    /// The call's step as it ends (`completed` or `interrupted`).
    fn finished_step(
        &self,
        idx: u32,
        call: ToolCall,
        child: Option<RequestId>,
        outcome: ToolOutcome,
        status: StepStatus,
    ) -> Step {
        let started = self
            .steps
            .iter()
            .find(|s| s.idx == idx)
            .map(|s| s.started_at)
            .unwrap_or_else(|| self.h.now());
        Step {
            request_id: self.req.id.clone(),
            idx,
            agent: self.agent.name.clone(),
            status,
            started_at: started,
            finished_at: Some(self.h.now()),
            body: StepBody::ToolCall {
                approval_id: self.approval_for(&call),
                call,
                outcome: Some(outcome),
                child_request_id: child,
            },
        }
    }

    /// The call proposed after `call` by the same model turn, if any.
    fn call_after(&self, call: &CallId) -> Option<ToolCall> {
        let turn = self.steps.iter().rev().find_map(|s| match &s.body {
            StepBody::ModelTurn {
                turn: ModelTurn::ToolCalls { calls, .. },
                ..
            } => Some(calls),
            _ => None,
        })?;
        let pos = turn.iter().position(|c| &c.call_id == call)?;
        turn.get(pos + 1).cloned()
    }

    /// A call killed by a cancel or a hard stop: recorded `interrupted` (it may
    /// or may not have taken effect), so the next run decides by the usual rules.
    async fn interrupted_by_stop(&mut self, idx: u32, call: ToolCall, out: ToolOutput) -> Outcome {
        let outcome = self.interruption();
        let reason = match outcome {
            Outcome::Cancelled => "the request was cancelled while the call ran",
            _ => "the worker was stopped while the call ran",
        };
        self.live_started.remove(&call.call_id);
        let event = EventBody::interrupted(&call, false, false, reason);
        let outcome_row = ToolOutcome {
            ok: false,
            content: format!("interrupted: {reason}\n{}", out.content),
            artifact: None,
        };
        let step = self.finished_step(idx, call, None, outcome_row, StepStatus::Interrupted);
        let mut c = self.commit_for().update(step).event(event);
        c.patch.settled_ok = true;
        if let Err(e) = self.store(c).await {
            tracing::warn!(request = %self.req.id, error = %e, "could not record an interrupted call");
        }
        outcome
    }

    /// Calls pre-started by this run that never ran (a cancel or a hard stop came
    /// first) are recorded as not run, so no later run counts them as interrupted.
    pub(super) async fn settle_unrun_calls(&mut self) {
        let unrun: Vec<CallId> = self.live_started.drain().collect();
        for call_id in unrun {
            let Some(step) = self.steps.iter().find(|s| {
                s.status == StepStatus::Started
                    && matches!(&s.body, StepBody::ToolCall { call, .. } if call.call_id == call_id)
            }) else {
                continue;
            };
            let StepBody::ToolCall { call, .. } = step.body.clone() else {
                continue;
            };
            let idx = step.idx;
            let outcome = ToolOutcome {
                ok: false,
                content: "not run: the request was stopped before this call started".into(),
                artifact: None,
            };
            let completed = EventBody::ToolCompleted {
                tool: call.tool.clone(),
                call_id: call.call_id.clone(),
                ok: false,
                rejected: false,
                output_bytes: outcome.content.len(),
                preview: outcome.content.clone(),
                artifact: None,
            };
            let step = self.finished_step(idx, call, None, outcome, StepStatus::Completed);
            // Never ran: no latency to observe.
            self.started_here.remove(&idx);
            let mut c = self.commit_for().update(step).event(completed);
            c.patch.settled_ok = true;
            if let Err(e) = self.commit(c).await {
                tracing::warn!(request = %self.req.id, outcome = ?e, "could not record an unrun call");
            }
        }
    }

    /// A call that was started but not completed before a crash (or a hard stop).
    pub(super) async fn interrupted(
        &mut self,
        idx: u32,
        call: ToolCall,
        child: Option<RequestId>,
    ) -> Flow<()> {
        if let Some(child) = child {
            return self.resume_delegate(idx, call, child).await;
        }
        let idempotent = self.h.tool(&call.tool).is_some_and(|t| t.idempotent);
        if idempotent {
            let rerun = EventBody::interrupted(
                &call,
                true,
                false,
                "it was started but never completed; the tool is idempotent",
            );
            return self.run_call(Some(idx), call, Some(rerun)).await;
        }
        if self.h.inner.workspace.settings.runtime.on_interrupted == InterruptedPolicy::Ask {
            return self.ask_rerun(idx, call).await;
        }
        let reason = format!(
            "tool call {} (`{}`) was interrupted before it completed and is not idempotent, so it was not re-run; \
             check its effect, then retry the request if needed",
            call.call_id, call.tool
        );
        let mut step = self.journal_step(idx);
        step.status = StepStatus::Interrupted;
        step.finished_at = Some(self.h.now());
        let c = self
            .commit_for()
            .update(step)
            .event(EventBody::interrupted(
                &call,
                false,
                false,
                "it was started but never completed; the tool is not idempotent",
            ))
            .event(EventBody::RequestFailed {
                error: reason.clone(),
            })
            .error(&reason);
        self.commit(c).await?;
        Err(Outcome::Failed(reason))
    }
}

pub(super) fn tool_body(
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

/// Large outputs become an artifact; the model and the events get a bounded preview.
fn bound_output(out: ToolOutput, limit: usize, call: &ToolCall) -> (ToolOutcome, Vec<NewArtifact>) {
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
    files.push(NewArtifact {
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
