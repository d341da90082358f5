//! The durable records every view is a query over.

use crate::conversation::{ModelTurn, ToolCall, TurnInfo};
use crate::ids::{ApprovalId, ArtifactId, RequestId, SessionId, WorkerId};
use crate::status::{ApprovalStatus, RequestStatus, StepStatus};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// One admitted unit of work.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: RequestId,
    pub session_id: SessionId,
    pub agent: String,
    /// Set on a delegated (child) request: the request that delegated to it.
    pub parent_id: Option<RequestId>,
    pub status: RequestStatus,
    /// How many times a worker has started executing it (1 on first run; +1 per recovery).
    pub attempt: u32,
    /// The agent executing right now: the request's own, or a delegate's while it runs.
    pub current_agent: Option<String>,
    pub input: String,
    pub output: Option<String>,
    pub error: Option<String>,
    /// Correlation id, joined to logs and traces.
    pub trace_id: String,
    /// The W3C `traceparent` the request was admitted with, in its version 00 form
    /// (`00-<trace_id>-<caller's span id>-<flags>`): its runs' `request` spans are
    /// children of that caller's span. None when it came without a valid one, and on
    /// a retry (a new trace) or a delegated child (inside its parent's spans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub last_activity_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// Committed steps so far.
    pub steps: u32,
    pub worker_id: Option<WorkerId>,
    /// Set on a request admitted by `retry`: the request it runs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<RequestId>,
    /// Claim priority (`PRIORITY_MIN..=PRIORITY_MAX`, default 0): higher first across
    /// sessions, aging one level per [`PRIORITY_AGING_MS`] waited.
    #[serde(default)]
    pub priority: i32,
}

/// The lowest request priority admission accepts.
pub const PRIORITY_MIN: i32 = -100;
/// The highest request priority admission accepts.
pub const PRIORITY_MAX: i32 = 100;
/// Aging: a queued request's priority counts one level higher for every this many
/// milliseconds it has waited to be claimed (30 s), so low priority is never starved.
pub const PRIORITY_AGING_MS: i64 = 30_000;

/// Checks a requested priority against `PRIORITY_MIN..=PRIORITY_MAX`.
pub fn check_priority(p: i64) -> Result<i32, String> {
    if (PRIORITY_MIN as i64..=PRIORITY_MAX as i64).contains(&p) {
        Ok(p as i32)
    } else {
        Err(format!(
            "priority {p} is out of range: use an integer from {PRIORITY_MIN} to {PRIORITY_MAX} (higher is claimed first; default 0)"
        ))
    }
}

/// A conversation thread: requests in one session see each other's history.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub created_at: Timestamp,
    pub last_activity_at: Timestamp,
    pub requests: u32,
    pub active_requests: u32,
    pub last_request_id: Option<RequestId>,
    pub last_agent: Option<String>,
}

/// An operator decision, pending or made.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: ApprovalId,
    pub request_id: RequestId,
    pub session_id: SessionId,
    pub agent: String,
    pub step_idx: u32,
    pub call_id: crate::ids::CallId,
    pub tool: String,
    pub arguments: serde_json::Value,
    pub status: ApprovalStatus,
    /// The name of who decided (see `decided_by_kind` for what the name is).
    pub decided_by: Option<String>,
    /// How who decided was identified: a server token, the local CLI, the MCP
    /// server, or the runtime itself (expiry). None while pending, and on records
    /// decided before the kind was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by_kind: Option<ActorKind>,
    pub message: Option<String>,
    pub edited_arguments: Option<serde_json::Value>,
    pub created_at: Timestamp,
    pub decided_at: Option<Timestamp>,
    pub expires_at: Timestamp,
    /// Why the decision is needed when it is not the tool's policy, e.g. whether to
    /// re-run a call a crash interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Approval {
    /// A new pending approval of `call`, asked at `created_at`.
    pub fn for_call(
        call: &ToolCall,
        request_id: &RequestId,
        session_id: &SessionId,
        agent: &str,
        step_idx: u32,
        created_at: Timestamp,
        expires_at: Timestamp,
    ) -> Approval {
        Approval {
            id: ApprovalId::generate(),
            request_id: request_id.clone(),
            session_id: session_id.clone(),
            agent: agent.to_string(),
            step_idx,
            call_id: call.call_id.clone(),
            tool: call.tool.clone(),
            arguments: call.arguments.clone(),
            status: ApprovalStatus::Pending,
            decided_by: None,
            decided_by_kind: None,
            message: None,
            edited_arguments: None,
            created_at,
            decided_at: None,
            expires_at,
            reason: None,
        }
    }

    /// The arguments the tool should run with: the operator's edit if any.
    pub fn effective_arguments(&self) -> &serde_json::Value {
        self.edited_arguments.as_ref().unwrap_or(&self.arguments)
    }

    /// The reason recorded on an approval asking whether to re-run a call a crash
    /// interrupted (policy `ask`).
    pub fn rerun_reason(call_id: &crate::ids::CallId) -> String {
        format!(
            "call {call_id} {RERUN_MARK}; it may or may not have taken effect. Approve to run it again."
        )
    }

    /// Whether this approval asks to re-run a call a crash interrupted (rather than
    /// applying the tool's approval policy): approving may repeat a side effect.
    pub fn is_crash_rerun(&self) -> bool {
        self.reason
            .as_deref()
            .is_some_and(|r| r.contains(RERUN_MARK))
    }
}

const RERUN_MARK: &str = "was interrupted before it completed";

/// An operator's note on a request, or on one of its approvals: recorded as a
/// `note.added` event; it decides nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub request_id: RequestId,
    pub approval_id: Option<ApprovalId>,
    pub by: String,
    pub text: String,
}

impl Note {
    /// Its event, about `request` (the request the note names).
    pub fn event(&self, request: &Request) -> crate::NewEvent {
        crate::EventBody::NoteAdded {
            by: self.by.clone(),
            text: self.text.clone(),
            approval_id: self.approval_id.clone(),
        }
        .about(&request.id, &request.session_id)
    }
}

/// An operator's decision on an approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approved,
    Rejected,
}

impl Decision {
    pub fn status(self) -> ApprovalStatus {
        match self {
            Decision::Approved => ApprovalStatus::Approved,
            Decision::Rejected => ApprovalStatus::Rejected,
        }
    }
}

/// The one call that resolves an approval, from any surface.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolveApproval {
    pub session_id: SessionId,
    pub request_id: RequestId,
    pub approval_id: ApprovalId,
    pub decision: Decision,
    pub message: Option<String>,
    pub decided_by: Actor,
    pub edited_arguments: Option<serde_json::Value>,
}

/// Who acted on the runtime (resolved an approval, cancelled a request): how they
/// were identified and the name that identification gives. Recorded as two typed
/// fields, never parsed back out of free text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// An HTTP API or console caller, named by its configured token's name.
    Token,
    /// An HTTP API caller of a server running without tokens (`anonymous`).
    Open,
    /// The local CLI: `--as NAME`, else the operating-system user.
    Cli,
    /// The `agent-harness mcp` server: `--as NAME`, else the operating-system user.
    Mcp,
    /// The runtime itself (an approval that expired).
    Runtime,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Token => "token",
            ActorKind::Open => "open",
            ActorKind::Cli => "cli",
            ActorKind::Mcp => "mcp",
            ActorKind::Runtime => "runtime",
        }
    }

    pub fn parse(s: &str) -> Option<ActorKind> {
        Some(match s {
            "token" => ActorKind::Token,
            "open" => ActorKind::Open,
            "cli" => ActorKind::Cli,
            "mcp" => ActorKind::Mcp,
            "runtime" => ActorKind::Runtime,
            _ => return None,
        })
    }
}

impl Actor {
    pub fn new(kind: ActorKind, name: impl Into<String>) -> Actor {
        Actor {
            kind,
            name: name.into(),
        }
    }

    /// The runtime itself, named `runtime`.
    pub fn runtime() -> Actor {
        Actor::new(ActorKind::Runtime, "runtime")
    }
}

/// A file produced by a request, stored under the store folder. Immutable: writing
/// the same name again in the request adds a new version (a new id and file).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub id: ArtifactId,
    pub request_id: RequestId,
    pub session_id: SessionId,
    pub name: String,
    /// 1 for the first write of `name` in the request, then 2, 3… (records written
    /// before versions existed read as 1).
    #[serde(default = "first_version")]
    pub version: u32,
    pub media_type: String,
    pub size: u64,
    pub sha256: String,
    pub created_at: Timestamp,
}

fn first_version() -> u32 {
    1
}

/// What a tool call produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolOutcome {
    pub ok: bool,
    /// Shown to the model; bounded (large outputs become an artifact).
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
}

/// One entry of a request's journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Step {
    pub request_id: RequestId,
    pub idx: u32,
    pub agent: String,
    pub status: StepStatus,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// A model turn (`kind: model_turn`) or a tool call (`kind: tool_call`); not
    /// itemised in the API's document.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub body: StepBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum StepBody {
    ModelTurn {
        turn: ModelTurn,
        /// Provider, model, usage, stop reason, thinking, the raw response's artifact.
        /// Empty for scripted turns and for turns recorded before providers existed.
        #[serde(default, skip_serializing_if = "TurnInfo::is_empty")]
        info: TurnInfo,
    },
    ToolCall {
        call: ToolCall,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approval_id: Option<ApprovalId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<ToolOutcome>,
        /// For `delegate` calls: the child request doing the work.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        child_request_id: Option<RequestId>,
    },
}

impl StepBody {
    /// A model turn's body with nothing known of how it was produced (scripted turns).
    pub fn model_turn(turn: ModelTurn) -> StepBody {
        StepBody::ModelTurn {
            turn,
            info: TurnInfo::default(),
        }
    }
}

/// A worker process, as its heartbeat rows show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Worker {
    pub id: WorkerId,
    pub pid: u32,
    pub host: String,
    pub started_at: Timestamp,
    pub heartbeat_at: Timestamp,
    pub stopped_at: Option<Timestamp>,
    /// The version of the binary it runs (empty for workers recorded before it was kept).
    #[serde(default)]
    pub version: String,
}

/// Whether a listed worker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Its process holds its lock (SQLite: the workspace's worker lock; PostgreSQL:
    /// its liveness lock), so it is alive, even if silent (hung, SIGSTOPped).
    Alive,
    /// It stopped cleanly (its requests went back to the queue).
    Stopped,
    /// It ended without stopping (killed, crashed): its lock is free.
    Dead,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Alive => "alive",
            WorkerState::Stopped => "stopped",
            WorkerState::Dead => "dead",
        }
    }
}

/// A worker as the store lists it: its heartbeat row, whether it is alive, and how
/// many root requests it runs now (those whose claim it holds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerSummary {
    #[serde(flatten)]
    pub worker: Worker,
    pub state: WorkerState,
    pub running: u64,
}

/// Filter for listing requests; every field narrows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestFilter {
    pub statuses: Vec<RequestStatus>,
    pub session_id: Option<SessionId>,
    pub agent: Option<String>,
    pub parent_id: Option<RequestId>,
    /// Only requests admitted directly (not delegated children).
    pub roots_only: bool,
    /// Only requests admitted at or after this instant.
    pub since: Option<Timestamp>,
    /// Only requests of this trace (the id a log line carries).
    pub trace_id: Option<String>,
    /// Only requests whose input or error holds this text (case-insensitive for ASCII).
    pub text: Option<String>,
    /// Only the retries of this request.
    pub retry_of: Option<RequestId>,
    pub order: RequestOrder,
    /// At most this many, in `order` (0 = no limit).
    pub limit: usize,
}

/// The order requests are listed in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOrder {
    /// Most recently admitted first.
    #[default]
    Newest,
    /// Earliest admitted first.
    Oldest,
    /// Most recent activity first.
    Activity,
}

impl RequestOrder {
    pub const ALL: [RequestOrder; 3] = [Self::Newest, Self::Oldest, Self::Activity];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Newest => "newest",
            Self::Oldest => "oldest",
            Self::Activity => "activity",
        }
    }

    /// The SQL `ORDER BY` (the same on both backends; `queue_seq` breaks ties).
    pub fn sql(self) -> &'static str {
        match self {
            Self::Newest => "queue_seq DESC",
            Self::Oldest => "queue_seq ASC",
            Self::Activity => "last_activity_at DESC, queue_seq DESC",
        }
    }
}

impl std::str::FromStr for RequestOrder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not one of: newest, oldest, activity"))
    }
}

/// `text` as a LIKE pattern matching it anywhere, with `\` escaping LIKE's
/// wildcards (both backends: `… LIKE ? ESCAPE '\'`).
pub fn like_anywhere(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Filter for listing approvals; every field narrows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApprovalFilter {
    pub statuses: Vec<ApprovalStatus>,
    pub session_id: Option<SessionId>,
    pub request_id: Option<RequestId>,
    pub limit: usize,
}

/// Filter for reading events after a cursor; every field set narrows (an event
/// passes when it matches all of them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventFilter {
    /// That request's own events.
    pub request_id: Option<RequestId>,
    pub session_id: Option<SessionId>,
    /// A request tree: the events of this request and of every request delegated
    /// under it, at any depth (for a root, its whole tree).
    pub tree: Option<RequestId>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Warn,
    Fail,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Ok => "ok",
            HealthStatus::Warn => "warn",
            HealthStatus::Fail => "fail",
        }
    }
}

/// One named health check.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub name: String,
    pub status: HealthStatus,
    pub detail: String,
}

/// All health checks at one instant; `status` is the worst of them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub status: HealthStatus,
    pub at: Timestamp,
    pub checks: Vec<HealthCheck>,
    /// The database server's facts, when the store is a database server's
    /// (PostgreSQL); absent for SQLite's file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseInfo>,
}

/// What `runtime health` reports about a database server. Never its credentials.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    /// `postgres`.
    pub backend: String,
    /// Host, port, database and schema.
    pub location: String,
    pub reachable: bool,
    /// The server's version (`SHOW server_version`), when reachable.
    pub server_version: Option<String>,
    /// One trivial query's round trip, in milliseconds, when reachable.
    pub round_trip_ms: Option<f64>,
    /// Connections this process may open.
    pub pool_size: usize,
    /// Connections in use by this process now.
    pub pool_in_use: usize,
    /// Callers waiting for a connection now.
    pub pool_waiting: usize,
    /// The store's tables and indexes, in bytes, when reachable.
    pub bytes: Option<u64>,
}

impl HealthReport {
    pub fn new(at: Timestamp, checks: Vec<HealthCheck>) -> Self {
        let status = checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(HealthStatus::Ok);
        Self {
            status,
            at,
            checks,
            database: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{StopReason, Usage};

    /// Steps written before turns carried their provider's details still read, and
    /// are written back byte for byte.
    #[test]
    fn model_turns_recorded_before_providers_still_read() {
        for old in [
            r#"{"kind":"model_turn","turn":{"type":"text","text":"hi"}}"#,
            r#"{"kind":"model_turn","turn":{"type":"tool_calls","calls":[{"call_id":"call_1","tool":"t","arguments":{}}]}}"#,
        ] {
            let body: StepBody = serde_json::from_str(old).unwrap();
            let StepBody::ModelTurn { info, .. } = &body else {
                panic!("{body:?}")
            };
            assert!(info.is_empty());
            assert_eq!(serde_json::to_string(&body).unwrap(), old);
        }
    }

    #[test]
    fn a_turn_with_its_details_round_trips_and_unknown_reasons_read_as_other() {
        let mut info = TurnInfo {
            provider: "anthropic".into(),
            model: "claude-x".into(),
            stop_reason: Some(StopReason::ToolUse),
            provider_stop_reason: Some("tool_use".into()),
            usage: Some(Usage {
                input_tokens: 10,
                output_tokens: 2,
                cache_read_tokens: 4,
                ..Default::default()
            }),
            ..Default::default()
        };
        info.provider_call_ids.insert(
            crate::CallId::from_trusted("call_1".into()),
            "toolu_01".into(),
        );
        let body = StepBody::ModelTurn {
            turn: ModelTurn::Text { text: "x".into() },
            info,
        };
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(serde_json::from_str::<StepBody>(&text).unwrap(), body);
        let later = text.replace("\"tool_use\",\"provider_stop", "\"paused\",\"provider_stop");
        let StepBody::ModelTurn { info, .. } = serde_json::from_str(&later).unwrap() else {
            unreachable!()
        };
        assert_eq!(info.stop_reason, Some(StopReason::Other));
    }
}
