//! The built-in `delegate` tool: another agent runs as a child request, nested
//! in its root's task (the root holds the worker slot for the whole tree).
//!
//! A child settles into its parent's tool result: completed → the answer,
//! failed or cancelled → an error the parent's model sees. A child that pauses
//! pauses its whole tree in the same commit (see `approvals`).

use super::{Flow, Outcome, Run, drive};
use harness_core::*;
use harness_providers::ToolOutput;
use harness_store::NewRequest;

impl Run {
    pub(super) async fn delegate(&mut self, existing: Option<u32>, call: ToolCall) -> Flow<()> {
        let arg = |k: &str| {
            call.arguments
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let (target, input) = (arg("agent"), arg("input"));
        if let Some(msg) = self.delegation_refused(&target) {
            let idx = self.commit_started(existing, &call, None, vec![]).await?;
            let out = ToolOutput::error(msg);
            return self
                .complete_call(idx, call, None, out, false, vec![])
                .await;
        }
        let child_id = RequestId::generate();
        let child = NewRequest {
            id: child_id.clone(),
            session_id: self.req.session_id.clone(),
            agent: target.clone(),
            input,
            trace_id: self.req.trace_id.clone(),
            // Its spans are inside this call's `tool.call` span, not a caller's.
            traceparent: None,
            priority: self.req.priority,
        };
        let events = vec![
            EventBody::ToolStarted {
                call: call.clone(),
                note: None,
            },
            EventBody::DelegateStarted {
                child_request_id: child_id.clone(),
                agent: target,
                call_id: call.call_id.clone(),
            },
        ];
        let idx = self
            .commit_started(existing, &call, Some(child), events)
            .await?;
        self.drive_child(idx, call, child_id).await
    }

    /// Why this delegation may not start, if it may not: the agent's `delegates`,
    /// the tree's depth limit, the request's fan-out limit.
    fn delegation_refused(&self, target: &str) -> Option<String> {
        let limits = &self.h.inner.workspace.settings.runtime;
        let depth = self.ancestors.len() as u32 + 1;
        let children = self
            .steps
            .iter()
            .filter(|s| {
                matches!(
                    &s.body,
                    StepBody::ToolCall {
                        child_request_id: Some(_),
                        ..
                    }
                )
            })
            .count() as u32;
        if !self.agent.delegates.iter().any(|d| d == target) {
            Some(format!(
                "agent `{}` may not delegate to `{target}` (delegates: {})",
                self.agent.name,
                self.agent.delegates.join(", ")
            ))
        } else if depth > limits.max_delegation_depth {
            Some(format!(
                "delegation refused: `{target}` would run at depth {depth}, past runtime.max_delegation_depth ({})",
                limits.max_delegation_depth
            ))
        } else if children >= limits.max_delegation_fanout {
            Some(format!(
                "delegation refused: request {} already started {children} delegated requests (runtime.max_delegation_fanout)",
                self.req.id
            ))
        } else {
            None
        }
    }

    /// A delegation whose child was left unfinished (a crash, a stop, a pause).
    pub(super) async fn resume_delegate(
        &mut self,
        idx: u32,
        call: ToolCall,
        child: RequestId,
    ) -> Flow<()> {
        let store = &self.h.inner.store;
        if let Err(e) = store.resume_child(&child, self.h.now()).await {
            return Err(self.refused(e));
        }
        self.drive_child(idx, call, child).await
    }

    async fn drive_child(&mut self, idx: u32, call: ToolCall, child_id: RequestId) -> Flow<()> {
        let store = self.h.inner.store.clone();
        let child = store
            .get_request(&child_id)
            .await
            .map_err(|e| self.refused(e))?;
        let outcome = if child.status.is_terminal() {
            Outcome::Displaced(child.status)
        } else {
            let mut ancestors = vec![self.req.id.clone()];
            ancestors.extend(self.ancestors.iter().cloned());
            let token = self.cancel.child_token();
            drive(self.h.clone(), child, ancestors, token, None).await
        };
        let (output, status) = match outcome {
            Outcome::Completed(text) => (ToolOutput::ok(text), RequestStatus::Completed),
            Outcome::Failed(err) => (
                ToolOutput::error(format!("delegated request {child_id} failed: {err}")),
                RequestStatus::Failed,
            ),
            // The child alone was cancelled (or settled by someone else): its
            // parent carries on with the result the child's row holds.
            Outcome::Cancelled | Outcome::Displaced(_) if !self.cancel.is_cancelled() => {
                let child = store
                    .get_request(&child_id)
                    .await
                    .map_err(|e| self.refused(e))?;
                match child.status {
                    RequestStatus::Completed => (
                        ToolOutput::ok(child.output.unwrap_or_default()),
                        child.status,
                    ),
                    RequestStatus::Failed | RequestStatus::Cancelled => (
                        ToolOutput::error(format!(
                            "delegated request {child_id} (agent `{}`) {}: {}",
                            child.agent,
                            child.status,
                            child.error.unwrap_or_default()
                        )),
                        child.status,
                    ),
                    other => return Err(Outcome::Displaced(other)),
                }
            }
            other => return Err(other),
        };
        let done = EventBody::DelegateCompleted {
            child_request_id: child_id.clone(),
            ok: output.ok,
            status,
        };
        self.complete_call(idx, call, Some(child_id), output, false, vec![done])
            .await
    }
}
