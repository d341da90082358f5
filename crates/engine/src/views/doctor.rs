//! Where a request's tree stopped and what to do next (`runtime doctor ID`, the MCP
//! server's `get_request`): the first steps of the incident playbook
//! (docs/incident-playbook.md) as a pure function of the records ([`diagnose`]):
//! the same tree and worker state always give the same advice.

use super::clip;
use super::tree::RequestTree;
use harness_core::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Where a request's tree stopped, as the records show it.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Stop {
    /// Paused on an operator's decision.
    Approval {
        request_id: RequestId,
        agent: String,
        approval: Box<Approval>,
        /// Approving re-runs a call a crash interrupted: it may or may not have taken effect.
        crash_rerun: bool,
    },
    /// Finished in failure.
    Failed {
        request_id: RequestId,
        agent: String,
        error: String,
        /// Tool calls of the tree that returned an error, by tool.
        failing_tools: Vec<ToolFailures>,
    },
    /// Cancelled by an operator (or with its tree).
    Cancelled {
        request_id: RequestId,
        error: Option<String>,
    },
    /// A step is executing: a tool call or a model turn.
    InFlight {
        request_id: RequestId,
        agent: String,
        /// `tool deploy (call_…)` or `model turn`.
        what: String,
        since: Timestamp,
        /// Idle past `runtime.stuck_after`.
        stuck: bool,
        /// No live worker holds the workspace: nothing is executing it.
        orphaned: bool,
    },
    /// Admitted (or runnable again) and waiting for a worker.
    Queued {
        request_id: RequestId,
        since: Timestamp,
        /// No live worker holds the workspace: it waits until one starts.
        no_worker: bool,
        /// What it waits for, in words (a limit and who holds it, its session).
        #[serde(skip_serializing_if = "Option::is_none")]
        waits_for: Option<String>,
    },
    Completed,
}

#[derive(Clone, Debug, Serialize)]
pub struct ToolFailures {
    pub tool: String,
    pub count: usize,
    pub last_error: String,
}

/// What to do next: a sentence and the commands that do it.
#[derive(Clone, Debug, Serialize)]
pub struct Next {
    /// `approve`, `retry`, `resume`, `start_worker`, `investigate`, `code_fix` or `none`.
    pub action: &'static str,
    pub summary: String,
    pub commands: Vec<String>,
}

/// The diagnosis of one request's tree.
#[derive(Clone, Debug, Serialize)]
pub struct Diagnosis {
    pub stop: Stop,
    pub next: Next,
    /// Whether a human has to act (everything but completed, cancelled and work
    /// a live worker is doing normally).
    pub needs_human: bool,
}

/// Where the tree stopped and what to do next. `worker_alive`: a live worker
/// holds the workspace; `stuck_after`: idle time past which a running request is stuck.
pub fn diagnose(
    t: &RequestTree,
    worker_alive: bool,
    now: Timestamp,
    stuck_after: Duration,
) -> Diagnosis {
    let stop = stop_of(t, worker_alive, now, stuck_after);
    let next = match (t.retries.last(), &stop) {
        // Retried already: the next question is about the retry, not this one.
        (Some(retry), Stop::Failed { .. } | Stop::Cancelled { .. }) => Next {
            action: "none",
            summary: format!(
                "already retried as {} ({}); follow that request",
                retry.id, retry.status
            ),
            commands: vec![format!("agent-harness runtime doctor {}", retry.id)],
        },
        _ => next_of(&t.request, &stop),
    };
    let needs_human = match &stop {
        Stop::Completed | Stop::Cancelled { .. } => false,
        Stop::InFlight {
            stuck, orphaned, ..
        } => *stuck || *orphaned,
        Stop::Queued { no_worker, .. } => *no_worker,
        Stop::Failed { .. } => t.retries.is_empty(),
        Stop::Approval { .. } => true,
    };
    Diagnosis {
        stop,
        next,
        needs_human,
    }
}

fn stop_of(t: &RequestTree, worker_alive: bool, now: Timestamp, stuck_after: Duration) -> Stop {
    let r = &t.request;
    // A pending approval anywhere in the tree is what the tree waits for.
    if let Some((req, a)) = pending_approval(t) {
        return Stop::Approval {
            request_id: req.id.clone(),
            agent: a.agent.clone(),
            crash_rerun: a.is_crash_rerun(),
            approval: Box::new(a.clone()),
        };
    }
    match r.status {
        RequestStatus::Completed => Stop::Completed,
        RequestStatus::Cancelled => Stop::Cancelled {
            request_id: r.id.clone(),
            error: r.error.clone(),
        },
        RequestStatus::Failed => {
            // The deepest failed request says most about the cause.
            let failed = t.deepest(|x| x.request.status == RequestStatus::Failed);
            Stop::Failed {
                request_id: failed.request.id.clone(),
                agent: failed.request.agent.clone(),
                error: failed
                    .request
                    .error
                    .clone()
                    .or_else(|| r.error.clone())
                    .unwrap_or_else(|| "no error recorded".to_string()),
                failing_tools: failing_tools(t),
            }
        }
        RequestStatus::Queued => Stop::Queued {
            request_id: r.id.clone(),
            since: r.last_activity_at,
            no_worker: !worker_alive,
            waits_for: t
                .waits_for
                .as_ref()
                .filter(|w| w.reason != super::waiting::WaitsForReason::WorkerSlot)
                .map(|w| w.text(now)),
        },
        RequestStatus::Running | RequestStatus::WaitingApproval => {
            let active = t.deepest(|x| !x.request.status.is_terminal());
            let (what, since) = active.in_flight_here();
            let idle = active.request.last_activity_at.age(now);
            Stop::InFlight {
                request_id: active.request.id.clone(),
                agent: active.request.agent.clone(),
                what,
                since,
                stuck: idle >= stuck_after,
                orphaned: !worker_alive,
            }
        }
    }
}

/// The first pending approval in the tree, with the request that raised it.
fn pending_approval(t: &RequestTree) -> Option<(&Request, &Approval)> {
    if let Some(a) = t
        .approvals
        .iter()
        .find(|a| a.status == ApprovalStatus::Pending)
    {
        return Some((&t.request, a));
    }
    t.children().find_map(pending_approval)
}

/// Tool calls of the whole tree that returned an error, by tool, most first.
pub fn failing_tools(t: &RequestTree) -> Vec<ToolFailures> {
    let mut by_tool: BTreeMap<String, ToolFailures> = BTreeMap::new();
    collect_failures(t, &mut by_tool);
    let mut out: Vec<ToolFailures> = by_tool.into_values().collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.tool.cmp(&b.tool)));
    out
}

fn collect_failures(t: &RequestTree, into: &mut BTreeMap<String, ToolFailures>) {
    for n in &t.steps {
        if let StepBody::ToolCall {
            call,
            outcome: Some(o),
            ..
        } = &n.step.body
            && !o.ok
            && call.tool != "delegate"
        {
            let f = into
                .entry(call.tool.clone())
                .or_insert_with(|| ToolFailures {
                    tool: call.tool.clone(),
                    count: 0,
                    last_error: String::new(),
                });
            f.count += 1;
            f.last_error = o.content.clone();
        }
        if let Some(c) = &n.child {
            collect_failures(c, into);
        }
    }
}

fn next_of(root: &Request, stop: &Stop) -> Next {
    let id = &root.id;
    match stop {
        Stop::Approval {
            approval,
            crash_rerun,
            ..
        } => Next {
            action: "approve",
            summary: if *crash_rerun {
                format!(
                    "decide whether to re-run `{}`: a crash interrupted it and it may or may not have taken effect; check its effect first",
                    approval.tool
                )
            } else {
                format!(
                    "decide on `{}`: approve, approve with edited arguments, or reject with a reason",
                    approval.tool
                )
            },
            commands: vec![
                approve_command(approval),
                format!(
                    "agent-harness runtime approvals reject {} --message \"why\"",
                    approval.id
                ),
            ],
        },
        Stop::Failed {
            failing_tools,
            error,
            ..
        } => match failing_tools.first() {
            Some(f) => Next {
                action: "code_fix",
                summary: format!(
                    "code fix: the tool `{}` failed {} time{} with: {}; fix it (or its inputs), then retry",
                    f.tool,
                    f.count,
                    if f.count == 1 { "" } else { "s" },
                    clip(f.last_error.trim(), 120)
                ),
                commands: vec![format!("agent-harness runtime requests retry {id}")],
            },
            None => Next {
                action: "retry",
                summary: format!(
                    "the run failed ({}); if the cause was passing (a provider outage, a timeout) retry, otherwise fix the agent or its model settings first",
                    clip(error, 120)
                ),
                commands: vec![format!("agent-harness runtime requests retry {id}")],
            },
        },
        Stop::Cancelled { .. } => Next {
            action: "none",
            summary: "cancelled; run it again only if the work is still wanted".to_string(),
            commands: vec![format!("agent-harness runtime requests retry {id}")],
        },
        Stop::InFlight { orphaned: true, .. } | Stop::Queued { no_worker: true, .. } => Next {
            action: "start_worker",
            summary: "no worker holds the workspace, so nothing runs it: start one (it recovers the request by the journal rules), or run this one request here".to_string(),
            commands: vec![
                "agent-harness serve".to_string(),
                format!("agent-harness runtime requests resume {id}"),
            ],
        },
        Stop::InFlight {
            stuck: true,
            what,
            request_id,
            ..
        } => Next {
            action: "investigate",
            summary: format!(
                "{what} shows no progress past runtime.stuck_after; follow its events, and cancel it if it hangs"
            ),
            commands: vec![
                format!("agent-harness runtime events --request {request_id} --from end --follow"),
                format!("agent-harness runtime requests cancel {id} --reason \"hung: {what}\""),
            ],
        },
        Stop::InFlight { .. } | Stop::Queued { .. } => Next {
            action: "none",
            summary: "the worker is running it; follow it until it settles".to_string(),
            commands: vec![format!("agent-harness runtime requests watch {id}")],
        },
        Stop::Completed => Next {
            action: "none",
            summary: "completed; nothing to do".to_string(),
            commands: Vec::new(),
        },
    }
}

/// The command that approves `a`.
pub fn approve_command(a: &Approval) -> String {
    format!("agent-harness runtime approvals approve {}", a.id)
}
