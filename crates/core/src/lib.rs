//! Domain types and state machines of agent-harness.
//!
//! This crate does no I/O: no files, no clock reads except through [`Clock`], no
//! database. Every other crate speaks in these types; the store persists them and
//! the engine folds them. Serialization derives here are the durable record format
//! (rows, event payloads, exports), so changing a field is a compatibility decision.

pub mod conversation;
pub mod error_code;
pub mod event;
pub mod ids;
pub mod journal;
pub mod limits;
pub mod records;
pub mod redact;
pub mod status;
pub mod time;

pub use conversation::{
    Message, ModelDelta, ModelTurn, Role, StopReason, Thinking, ToolCall, TurnInfo, Usage,
    UsageTotals,
};
pub use error_code::ErrorCode;
pub use event::{EVENT_SCHEMA_VERSION, Event, EventBody, EventKind, NewEvent, preview};
pub use ids::{ApprovalId, ArtifactId, CallId, IdError, RequestId, SessionId, WorkerId};
pub use limits::{Hold, Limit, Wait, describe_holder, describe_key, describe_waiter};
pub use records::*;
pub use redact::{REDACTED, Redactor, is_secret_key};
pub use status::{ApprovalStatus, RequestStatus, StepStatus};
pub use time::{Clock, FixedClock, SystemClock, Timestamp, human_bytes, relative};
