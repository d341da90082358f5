//! Pausing on approvals. A pause is one commit: the step awaiting approval, the
//! approval (new, or checked still pending), the request's `waiting_approval`
//! status and its ancestors' (a tree pauses as one), and the events.

use super::{Flow, Outcome, Run, calls::tool_body};
use harness_core::*;
use harness_store::{StepCommit, StoreError};

impl Run {
    /// A call whose tool needs approval: raise one and pause.
    pub(super) async fn request_approval(&mut self, call: ToolCall) -> Flow<()> {
        let approval = self.new_approval(&call, self.next_idx(), None);
        let step = self.new_step(
            StepStatus::AwaitingApproval,
            tool_body(&call, Some(approval.id.clone()), None),
        );
        let c = self.commit_for().insert(step);
        self.commit_pause(c, approval).await
    }

    /// Policy `ask`: the interrupted call waits for an operator to approve a re-run
    /// (same call id) or reject it (the model is told it did not run again).
    pub(super) async fn ask_rerun(&mut self, idx: u32, call: ToolCall) -> Flow<()> {
        let reason = Approval::rerun_reason(&call.call_id);
        let approval = self.new_approval(&call, idx, Some(reason));
        let mut step = self.journal_step(idx);
        step.status = StepStatus::AwaitingApproval;
        step.body = tool_body(&call, Some(approval.id.clone()), None);
        let c = self.commit_for().update(step).event(EventBody::interrupted(
            &call,
            false,
            true,
            "it was started but never completed; policy `ask`",
        ));
        self.commit_pause(c, approval).await
    }

    /// Waiting on an approval raised earlier (found again after a restart, or on
    /// a child resumed by its root). The pause applies only while the approval is
    /// still pending; decided meanwhile, the run goes on with the decision.
    pub(super) async fn pause(&mut self, approval_id: &ApprovalId) -> Flow<()> {
        let c = self
            .commit_for()
            .pause_on(approval_id)
            .event(EventBody::RequestWaitingApproval {
                approval_id: Some(approval_id.clone()),
                via_child: None,
            });
        match self.store(c).await {
            Ok(_) => Err(Outcome::Paused),
            Err(StoreError::ApprovalNotPending { .. }) => self.reload_approvals().await,
            Err(e) => Err(self.refused(e)),
        }
    }

    /// The step awaiting approval, the new approval and the pause: one commit.
    async fn commit_pause(&mut self, c: StepCommit, approval: Approval) -> Flow<()> {
        let c = c
            .event(EventBody::ApprovalRequested {
                approval: Box::new(approval.clone()),
            })
            .event(EventBody::RequestWaitingApproval {
                approval_id: Some(approval.id.clone()),
                via_child: None,
            })
            .raise(approval.clone());
        self.approvals.push(approval);
        self.commit(c).await?;
        // The call's `tool.call` span ends here; the run after the decision has its own.
        tracing::Span::current().record("outcome", "awaiting_approval");
        Err(Outcome::Paused)
    }

    fn new_approval(&self, call: &ToolCall, step_idx: u32, reason: Option<String>) -> Approval {
        let now = self.h.now();
        let ttl = self.h.inner.workspace.settings.runtime.approval_ttl;
        let (req, agent) = (&self.req, &self.agent.name);
        let mut a = Approval::for_call(
            call,
            &req.id,
            &req.session_id,
            agent,
            step_idx,
            now,
            now.plus(ttl),
        );
        a.reason = reason;
        a
    }
}
