//! Events: the durable, ordered log that every view and subscriber reads.
//!
//! Kinds are a closed set; each kind's payload is a JSON object whose fields are
//! documented in `docs/events.md`. Payload format version: [`EVENT_SCHEMA_VERSION`].

use crate::conversation::{ModelTurn, ToolCall, TurnInfo};
use crate::ids::{ApprovalId, CallId, RequestId, SessionId, WorkerId};
use crate::records::{Actor, Approval, Artifact};
use crate::status::RequestStatus;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Bumped when any payload changes incompatibly.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

// By hand: utoipa's derive does not see a `rename` whose literal comes from a macro
// fragment, and would list the variants' Rust names.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for EventKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("Every kind of event the runtime emits."))
            .enum_values(Some(EventKind::ALL.iter().map(|k| k.as_str())))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for EventKind {}

macro_rules! event_kinds {
    ($($variant:ident => $s:literal),+ $(,)?) => {
        /// Every kind of event the runtime emits.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventKind { $(#[serde(rename = $s)] $variant),+ }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $(EventKind::$variant => $s),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(EventKind::$variant),)+ _ => None }
            }
        }
    };
}

event_kinds! {
    RequestQueued => "request.queued",
    RequestStarted => "request.started",
    RequestWaitingApproval => "request.waiting_approval",
    RequestRequeued => "request.requeued",
    RequestRepaired => "request.repaired",
    RequestReclaimed => "request.reclaimed",
    RequestWaiting => "request.waiting",
    RequestCompleted => "request.completed",
    RequestFailed => "request.failed",
    RequestCancelled => "request.cancelled",
    ModelTurn => "model.turn",
    ToolStarted => "tool.started",
    ToolCompleted => "tool.completed",
    ToolInterrupted => "tool.interrupted",
    ApprovalRequested => "approval.requested",
    ApprovalResolved => "approval.resolved",
    ApprovalExpired => "approval.expired",
    DelegateStarted => "delegate.started",
    DelegateCompleted => "delegate.completed",
    ArtifactCreated => "artifact.created",
    NoteAdded => "note.added",
    WorkerStarted => "worker.started",
    WorkerStopped => "worker.stopped",
}

impl EventKind {
    /// Whether a commit with this event may have given some worker work to claim: a
    /// request admitted or requeued, a tree runnable again after its approval, or a
    /// request finished (its session's next one may start). PostgreSQL tells workers
    /// in other processes of such a commit at once; other commits they see on their
    /// poll.
    pub fn may_free_work(self) -> bool {
        use EventKind::*;
        matches!(
            self,
            RequestQueued
                | RequestRequeued
                | RequestRepaired
                | ApprovalResolved
                | ApprovalExpired
                | RequestCompleted
                | RequestFailed
                | RequestCancelled
        )
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event as committed: `seq` is the global, gap-free, commit-ordered cursor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: i64,
    pub at: Timestamp,
    pub kind: EventKind,
    pub request_id: Option<RequestId>,
    pub session_id: Option<SessionId>,
    pub payload: serde_json::Value,
}

/// An event about to be committed (the store assigns `seq`).
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub request_id: Option<RequestId>,
    pub session_id: Option<SessionId>,
    pub payload: serde_json::Value,
}

impl NewEvent {
    /// The event as the store committed it, at `seq`.
    pub fn committed(self, seq: i64, at: Timestamp) -> Event {
        Event {
            seq,
            at,
            kind: self.kind,
            request_id: self.request_id,
            session_id: self.session_id,
            payload: self.payload,
        }
    }

    pub fn for_request(
        kind: EventKind,
        request: &RequestId,
        session: &SessionId,
        payload: serde_json::Value,
    ) -> Self {
        Self {
            kind,
            request_id: Some(request.clone()),
            session_id: Some(session.clone()),
            payload,
        }
    }
    pub fn runtime(kind: EventKind, payload: serde_json::Value) -> Self {
        Self {
            kind,
            request_id: None,
            session_id: None,
            payload,
        }
    }
}

/// A typed event: its kind and its payload fields together, so every emitter writes
/// the shape `docs/events.md` documents. [`EventBody::into_event`] makes the row.
#[derive(Clone, Debug, PartialEq)]
pub enum EventBody {
    RequestQueued {
        agent: String,
        input_bytes: usize,
        trace_id: String,
        /// Set when the request was admitted by `retry`: the request it runs again.
        retry_of: Option<RequestId>,
    },
    RequestStarted {
        attempt: u32,
        worker_id: WorkerId,
    },
    /// Paused on its own approval, or (`via_child`) because a delegated child is.
    RequestWaitingApproval {
        approval_id: Option<ApprovalId>,
        via_child: Option<RequestId>,
    },
    RequestRequeued {
        reason: String,
    },
    /// The runtime's safety net moved a request that could not progress.
    RequestRepaired {
        problem: String,
        action: String,
    },
    /// A worker took a running root back from another worker that died or let
    /// its lease lapse; the old worker's later commits for it are refused.
    RequestReclaimed {
        from_worker: WorkerId,
        by_worker: WorkerId,
        reason: String,
    },
    /// A tool call needs limits others hold: the tree went back on the queue and
    /// is claimed again once every key has room.
    RequestWaiting {
        call_id: CallId,
        tool: String,
        /// The keys that had no room (`resource:NAME`, `tool:NAME`).
        limits: Vec<String>,
        /// The calls holding them.
        held_by: Vec<CallId>,
    },
    RequestCompleted {
        output_bytes: usize,
        steps: u32,
    },
    RequestFailed {
        error: String,
    },
    RequestCancelled {
        by: Actor,
        reason: Option<String>,
        /// The request the operator cancelled, when this one went with its tree.
        with: Option<RequestId>,
    },
    ModelTurn {
        step: u32,
        turn: ModelTurn,
        /// Its provider, model, usage and stop reason go in the payload (when known).
        info: Option<Box<TurnInfo>>,
    },
    ToolStarted {
        call: ToolCall,
        note: Option<String>,
    },
    ToolCompleted {
        tool: String,
        call_id: CallId,
        ok: bool,
        rejected: bool,
        output_bytes: usize,
        preview: String,
        artifact: Option<String>,
    },
    ToolInterrupted {
        tool: String,
        call_id: CallId,
        /// Re-run now (idempotent tool).
        rerun: bool,
        /// Waiting for an operator to decide whether to re-run it.
        awaiting_decision: bool,
        reason: String,
    },
    ApprovalRequested {
        approval: Box<Approval>,
    },
    ApprovalResolved {
        approval: Box<Approval>,
    },
    ApprovalExpired {
        approval: Box<Approval>,
    },
    DelegateStarted {
        child_request_id: RequestId,
        agent: String,
        call_id: CallId,
    },
    DelegateCompleted {
        child_request_id: RequestId,
        ok: bool,
        status: RequestStatus,
    },
    ArtifactCreated {
        artifact: Box<Artifact>,
        call_id: CallId,
    },
    /// An operator's note on a request or one of its approvals; decides nothing.
    NoteAdded {
        by: String,
        text: String,
        approval_id: Option<ApprovalId>,
    },
    WorkerStarted {
        worker_id: WorkerId,
        pid: u32,
        host: String,
        recovered_requests: usize,
    },
    WorkerStopped {
        worker_id: WorkerId,
    },
}

/// Longest model text kept in a `model.turn` event.
pub const TURN_TEXT_PREVIEW: usize = 2000;

impl EventBody {
    /// `tool.interrupted` for `call`.
    pub fn interrupted(
        call: &ToolCall,
        rerun: bool,
        awaiting_decision: bool,
        reason: &str,
    ) -> Self {
        EventBody::ToolInterrupted {
            tool: call.tool.clone(),
            call_id: call.call_id.clone(),
            rerun,
            awaiting_decision,
            reason: reason.to_string(),
        }
    }

    pub fn kind(&self) -> EventKind {
        use EventBody as B;
        match self {
            B::RequestQueued { .. } => EventKind::RequestQueued,
            B::RequestStarted { .. } => EventKind::RequestStarted,
            B::RequestWaitingApproval { .. } => EventKind::RequestWaitingApproval,
            B::RequestRequeued { .. } => EventKind::RequestRequeued,
            B::RequestRepaired { .. } => EventKind::RequestRepaired,
            B::RequestReclaimed { .. } => EventKind::RequestReclaimed,
            B::RequestWaiting { .. } => EventKind::RequestWaiting,
            B::RequestCompleted { .. } => EventKind::RequestCompleted,
            B::RequestFailed { .. } => EventKind::RequestFailed,
            B::RequestCancelled { .. } => EventKind::RequestCancelled,
            B::ModelTurn { .. } => EventKind::ModelTurn,
            B::ToolStarted { .. } => EventKind::ToolStarted,
            B::ToolCompleted { .. } => EventKind::ToolCompleted,
            B::ToolInterrupted { .. } => EventKind::ToolInterrupted,
            B::ApprovalRequested { .. } => EventKind::ApprovalRequested,
            B::ApprovalResolved { .. } => EventKind::ApprovalResolved,
            B::ApprovalExpired { .. } => EventKind::ApprovalExpired,
            B::DelegateStarted { .. } => EventKind::DelegateStarted,
            B::DelegateCompleted { .. } => EventKind::DelegateCompleted,
            B::ArtifactCreated { .. } => EventKind::ArtifactCreated,
            B::NoteAdded { .. } => EventKind::NoteAdded,
            B::WorkerStarted { .. } => EventKind::WorkerStarted,
            B::WorkerStopped { .. } => EventKind::WorkerStopped,
        }
    }

    /// The payload object, as documented in `docs/events.md`.
    pub fn payload(&self) -> serde_json::Value {
        use EventBody as B;
        use serde_json::json;
        match self {
            B::RequestQueued {
                agent,
                input_bytes,
                trace_id,
                retry_of: None,
            } => json!({"agent": agent, "input_bytes": input_bytes, "trace_id": trace_id}),
            B::RequestQueued {
                agent,
                input_bytes,
                trace_id,
                retry_of: Some(original),
            } => json!({"agent": agent, "input_bytes": input_bytes, "trace_id": trace_id,
                        "retry_of": original}),
            B::RequestStarted { attempt, worker_id } => {
                json!({"attempt": attempt, "worker_id": worker_id})
            }
            B::RequestWaitingApproval {
                approval_id,
                via_child,
            } => {
                let mut p = json!({});
                if let Some(a) = approval_id {
                    p["approval_id"] = json!(a);
                }
                if let Some(c) = via_child {
                    p["child_request_id"] = json!(c);
                }
                p
            }
            B::RequestRequeued { reason } => json!({"reason": reason}),
            B::RequestRepaired { problem, action } => {
                json!({"problem": problem, "action": action})
            }
            B::RequestReclaimed {
                from_worker,
                by_worker,
                reason,
            } => json!({"from_worker": from_worker, "by_worker": by_worker, "reason": reason}),
            B::RequestWaiting {
                call_id,
                tool,
                limits,
                held_by,
            } => json!({"call_id": call_id, "tool": tool, "limits": limits, "held_by": held_by}),
            B::RequestCompleted {
                output_bytes,
                steps,
            } => json!({"output_bytes": output_bytes, "steps": steps}),
            B::RequestFailed { error } => json!({"error": error}),
            B::RequestCancelled { by, reason, with } => {
                let mut p = json!({"by": by.name, "by_kind": by.kind});
                if let Some(r) = reason {
                    p["reason"] = json!(r);
                }
                if let Some(w) = with {
                    p["with"] = json!(w);
                }
                p
            }
            B::ModelTurn { step, turn, info } => {
                let mut p = match turn {
                    ModelTurn::Text { text } => {
                        json!({"step": step, "text": preview(text, TURN_TEXT_PREVIEW), "final": true})
                    }
                    ModelTurn::ToolCalls { text, calls } => json!({
                        "step": step,
                        "text": preview(text, TURN_TEXT_PREVIEW),
                        "calls": calls.iter().map(|c| json!({"tool": c.tool, "call_id": c.call_id})).collect::<Vec<_>>(),
                    }),
                };
                if let Some(info) = info.as_deref() {
                    if !info.provider.is_empty() {
                        p["provider"] = json!(info.provider);
                    }
                    if !info.model.is_empty() {
                        p["model"] = json!(info.model);
                    }
                    if let Some(u) = &info.usage {
                        p["usage"] = json!(u);
                    }
                    if let Some(r) = info.stop_reason {
                        p["stop_reason"] = json!(r);
                    }
                    if let Some(a) = &info.raw_artifact {
                        p["raw_artifact"] = json!(a);
                    }
                }
                p
            }
            B::ToolStarted { call, note } => {
                let mut p = json!({"tool": call.tool, "call_id": call.call_id, "arguments": call.arguments});
                if let Some(n) = note {
                    p["note"] = json!(n);
                }
                p
            }
            B::ToolCompleted {
                tool,
                call_id,
                ok,
                rejected,
                output_bytes,
                preview,
                artifact,
            } => json!({
                "tool": tool, "call_id": call_id, "ok": ok, "rejected": rejected,
                "output_bytes": output_bytes, "preview": preview, "artifact": artifact,
            }),
            B::ToolInterrupted {
                tool,
                call_id,
                rerun,
                awaiting_decision,
                reason,
            } => {
                let mut p =
                    json!({"tool": tool, "call_id": call_id, "rerun": rerun, "reason": reason});
                if *awaiting_decision {
                    p["awaiting_decision"] = json!(true);
                }
                p
            }
            B::ApprovalRequested { approval: a } => json!({
                "approval_id": a.id, "tool": a.tool, "call_id": a.call_id,
                "arguments": a.arguments, "expires_at": a.expires_at, "step": a.step_idx,
                "reason": a.reason,
            }),
            B::ApprovalResolved { approval: a } => json!({
                "approval_id": a.id, "decision": a.status, "decided_by": a.decided_by,
                "decided_by_kind": a.decided_by_kind,
                "message": a.message, "edited": a.edited_arguments.is_some(),
                "tool": a.tool, "call_id": a.call_id,
            }),
            B::ApprovalExpired { approval: a } => json!({
                "approval_id": a.id, "tool": a.tool, "call_id": a.call_id, "expires_at": a.expires_at,
            }),
            B::DelegateStarted {
                child_request_id,
                agent,
                call_id,
            } => json!({"child_request_id": child_request_id, "agent": agent, "call_id": call_id}),
            B::DelegateCompleted {
                child_request_id,
                ok,
                status,
            } => json!({"child_request_id": child_request_id, "ok": ok, "status": status}),
            B::ArtifactCreated {
                artifact: a,
                call_id,
            } => json!({
                "artifact_id": a.id, "name": a.name, "version": a.version, "media_type": a.media_type,
                "size": a.size, "sha256": a.sha256, "call_id": call_id,
            }),
            B::WorkerStarted {
                worker_id,
                pid,
                host,
                recovered_requests,
            } => json!({
                "worker_id": worker_id, "pid": pid, "host": host,
                "recovered_requests": recovered_requests,
            }),
            B::WorkerStopped { worker_id } => json!({"worker_id": worker_id}),
            B::NoteAdded {
                by,
                text,
                approval_id,
            } => {
                let mut p = json!({"by": by, "text": text});
                if let Some(a) = approval_id {
                    p["approval_id"] = json!(a);
                }
                p
            }
        }
    }

    /// The event about `request` in `session`.
    pub fn about(self, request: &RequestId, session: &SessionId) -> NewEvent {
        NewEvent::for_request(self.kind(), request, session, self.payload())
    }

    /// A runtime event (no request: worker lifecycle).
    pub fn runtime(self) -> NewEvent {
        NewEvent::runtime(self.kind(), self.payload())
    }
}

/// The first `max` bytes of `s`, cut at a character boundary.
pub fn preview(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
