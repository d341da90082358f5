//! Events: the durable, ordered log that every view and subscriber reads.
//!
//! Kinds are a closed set; each kind's payload is a JSON object whose fields are
//! documented in `docs/events.md`. Payload format version: [`EVENT_SCHEMA_VERSION`].

use crate::ids::{RequestId, SessionId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Bumped when any payload changes incompatibly.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

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
    WorkerStarted => "worker.started",
    WorkerStopped => "worker.stopped",
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
