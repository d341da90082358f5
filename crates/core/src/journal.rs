//! The journal is the checkpoint: a request's state is a pure fold over its
//! committed steps. Resuming after a crash, after an approval, or continuing a
//! live run all ask the same question — [`next_action`] — of the same rows.

use crate::conversation::{Message, ModelTurn, ToolCall};
use crate::ids::ApprovalId;
use crate::records::{Approval, Step, StepBody};
use crate::status::{ApprovalStatus, StepStatus};

/// What a request must do next, given its journal.
#[derive(Clone, Debug, PartialEq)]
pub enum NextAction {
    /// Ask the model for the next turn.
    CallModel,
    /// A call proposed by the last model turn has no step yet.
    StartCall { call: ToolCall },
    /// The call's approval was granted: run it with these (possibly edited) arguments.
    RunApproved { step_idx: u32, call: ToolCall },
    /// The call's approval was rejected or expired: the model gets this as the result.
    RecordRejection {
        step_idx: u32,
        call: ToolCall,
        reason: String,
    },
    /// Still waiting for a decision.
    AwaitApproval { approval_id: ApprovalId },
    /// A call was started but never completed (the worker died while it ran).
    Interrupted {
        step_idx: u32,
        call: ToolCall,
        child: Option<crate::RequestId>,
    },
    /// The last model turn was a final answer.
    Complete { output: String },
}

/// Decides the next action from the committed steps and the request's approvals.
pub fn next_action(steps: &[Step], approvals: &[Approval]) -> NextAction {
    let Some(model_pos) = steps
        .iter()
        .rposition(|s| matches!(s.body, StepBody::ModelTurn { .. }))
    else {
        return NextAction::CallModel;
    };
    let StepBody::ModelTurn { turn, .. } = &steps[model_pos].body else {
        unreachable!()
    };
    let calls = match turn {
        ModelTurn::Text { text } => {
            return NextAction::Complete {
                output: text.clone(),
            };
        }
        ModelTurn::ToolCalls { calls, .. } => calls,
    };
    let after = &steps[model_pos + 1..];
    for call in calls {
        let Some(step) = after
            .iter()
            .find(|s| step_call(s).is_some_and(|c| c.call_id == call.call_id))
        else {
            return NextAction::StartCall { call: call.clone() };
        };
        let StepBody::ToolCall {
            call: recorded,
            approval_id,
            child_request_id,
            ..
        } = &step.body
        else {
            unreachable!()
        };
        match step.status {
            StepStatus::Completed => continue,
            StepStatus::Started | StepStatus::Interrupted => {
                return NextAction::Interrupted {
                    step_idx: step.idx,
                    call: recorded.clone(),
                    child: child_request_id.clone(),
                };
            }
            StepStatus::AwaitingApproval => {
                let approval = approval_id
                    .as_ref()
                    .and_then(|id| approvals.iter().find(|a| &a.id == id));
                let Some(approval) = approval else {
                    // The approval row is committed with the step, so this is corruption;
                    // treat it as still pending rather than running an unapproved call.
                    return NextAction::AwaitApproval {
                        approval_id: approval_id.clone().unwrap_or_else(ApprovalId::generate),
                    };
                };
                return match approval.status {
                    ApprovalStatus::Pending => NextAction::AwaitApproval {
                        approval_id: approval.id.clone(),
                    },
                    ApprovalStatus::Approved => NextAction::RunApproved {
                        step_idx: step.idx,
                        call: ToolCall {
                            arguments: approval.effective_arguments().clone(),
                            ..recorded.clone()
                        },
                    },
                    ApprovalStatus::Rejected | ApprovalStatus::Expired => {
                        NextAction::RecordRejection {
                            step_idx: step.idx,
                            call: recorded.clone(),
                            reason: rejection_text(approval),
                        }
                    }
                };
            }
        }
    }
    NextAction::CallModel
}

/// The tool result the model sees for a rejected or expired approval.
pub fn rejection_text(a: &Approval) -> String {
    let who = a.decided_by.as_deref().unwrap_or("the runtime");
    let verb = if a.status == ApprovalStatus::Expired {
        "expired"
    } else {
        "rejected"
    };
    match a.message.as_deref() {
        Some(m) if !m.is_empty() => format!("Tool call `{}` was {verb} by {who}: {m}", a.tool),
        _ => format!("Tool call `{}` was {verb} by {who}.", a.tool),
    }
}

fn step_call(step: &Step) -> Option<&ToolCall> {
    match &step.body {
        StepBody::ToolCall { call, .. } => Some(call),
        StepBody::ModelTurn { .. } => None,
    }
}

/// Appends the messages a request's committed steps contribute to a conversation.
pub fn fold_messages(messages: &mut Vec<Message>, steps: &[Step]) {
    for step in steps {
        push_step(messages, step);
    }
}

/// Appends one step's message (if it has one yet) — the incremental form of [`fold_messages`].
pub fn push_step(messages: &mut Vec<Message>, step: &Step) {
    match &step.body {
        StepBody::ModelTurn { turn, info } => messages.push(Message::assistant_turn(turn, info)),
        StepBody::ToolCall {
            call,
            outcome: Some(outcome),
            ..
        } if step.status == StepStatus::Completed => messages.push(Message::tool_result(
            call.call_id.clone(),
            outcome.content.clone(),
            outcome.ok,
        )),
        StepBody::ToolCall { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CallId, RequestId, SessionId};
    use crate::records::ToolOutcome;
    use crate::time::Timestamp;
    use serde_json::json;

    fn call(name: &str) -> ToolCall {
        ToolCall {
            call_id: CallId::generate(),
            tool: name.into(),
            arguments: json!({"x": 1}),
        }
    }
    fn step(idx: u32, status: StepStatus, body: StepBody) -> Step {
        Step {
            request_id: RequestId::from_trusted("req_x".into()),
            idx,
            agent: "a".into(),
            status,
            started_at: Timestamp(0),
            finished_at: None,
            body,
        }
    }
    fn model(idx: u32, turn: ModelTurn) -> Step {
        step(idx, StepStatus::Completed, StepBody::model_turn(turn))
    }
    fn tool(idx: u32, status: StepStatus, call: &ToolCall, approval: Option<&Approval>) -> Step {
        let outcome = (status == StepStatus::Completed).then(|| ToolOutcome {
            ok: true,
            content: "done".into(),
            artifact: None,
        });
        step(
            idx,
            status,
            StepBody::ToolCall {
                call: call.clone(),
                approval_id: approval.map(|a| a.id.clone()),
                outcome,
                child_request_id: None,
            },
        )
    }
    fn approval(call: &ToolCall, status: ApprovalStatus) -> Approval {
        Approval {
            id: ApprovalId::generate(),
            request_id: RequestId::from_trusted("req_x".into()),
            session_id: SessionId::parse("s").unwrap(),
            agent: "a".into(),
            step_idx: 1,
            call_id: call.call_id.clone(),
            tool: call.tool.clone(),
            arguments: call.arguments.clone(),
            status,
            decided_by: Some("ops".into()),
            decided_by_kind: Some(crate::ActorKind::Cli),
            message: Some("not today".into()),
            edited_arguments: Some(json!({"x": 2})),
            created_at: Timestamp(0),
            decided_at: None,
            expires_at: Timestamp(0),
            reason: None,
        }
    }
    fn calls(cs: &[&ToolCall]) -> ModelTurn {
        ModelTurn::ToolCalls {
            text: String::new(),
            calls: cs.iter().map(|c| (*c).clone()).collect(),
        }
    }

    #[test]
    fn empty_journal_calls_the_model() {
        assert_eq!(next_action(&[], &[]), NextAction::CallModel);
    }

    #[test]
    fn calls_run_in_order_then_model_again() {
        let (a, b) = (call("a"), call("b"));
        let mut steps = vec![model(0, calls(&[&a, &b]))];
        assert_eq!(
            next_action(&steps, &[]),
            NextAction::StartCall { call: a.clone() }
        );
        steps.push(tool(1, StepStatus::Completed, &a, None));
        assert_eq!(
            next_action(&steps, &[]),
            NextAction::StartCall { call: b.clone() }
        );
        steps.push(tool(2, StepStatus::Completed, &b, None));
        assert_eq!(next_action(&steps, &[]), NextAction::CallModel);
    }

    #[test]
    fn started_but_not_completed_is_interrupted_never_rerun_silently() {
        let a = call("a");
        let steps = vec![
            model(0, calls(&[&a])),
            tool(1, StepStatus::Started, &a, None),
        ];
        assert!(matches!(
            next_action(&steps, &[]),
            NextAction::Interrupted { step_idx: 1, .. }
        ));
    }

    #[test]
    fn approval_states_drive_the_call() {
        let a = call("send");
        for (status, expect_run) in [
            (ApprovalStatus::Pending, None),
            (ApprovalStatus::Approved, Some(true)),
            (ApprovalStatus::Rejected, Some(false)),
            (ApprovalStatus::Expired, Some(false)),
        ] {
            let ap = approval(&a, status);
            let steps = vec![
                model(0, calls(&[&a])),
                tool(1, StepStatus::AwaitingApproval, &a, Some(&ap)),
            ];
            match (next_action(&steps, std::slice::from_ref(&ap)), expect_run) {
                (NextAction::AwaitApproval { approval_id }, None) => assert_eq!(approval_id, ap.id),
                (NextAction::RunApproved { call, .. }, Some(true)) => {
                    assert_eq!(call.arguments, json!({"x": 2}), "edited arguments are used")
                }
                (NextAction::RecordRejection { reason, .. }, Some(false)) => {
                    assert!(reason.contains("by ops: not today"), "{reason}")
                }
                (other, _) => panic!("{status:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn text_turn_completes() {
        let steps = vec![model(0, ModelTurn::Text { text: "hi".into() })];
        assert_eq!(
            next_action(&steps, &[]),
            NextAction::Complete {
                output: "hi".into()
            }
        );
    }

    #[test]
    fn fold_skips_unfinished_calls() {
        let a = call("a");
        let steps = vec![
            model(0, calls(&[&a])),
            tool(1, StepStatus::Started, &a, None),
        ];
        let mut msgs = vec![];
        fold_messages(&mut msgs, &steps);
        assert_eq!(msgs.len(), 1);
    }
}
