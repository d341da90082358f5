//! Projections of the records that every surface shows the same way: the
//! overview, a request as a tree, and what a queued request waits for. The CLI,
//! the HTTP API and the web console render these; none computes its own.

pub mod overview;
pub mod tree;
pub mod waiting;

pub use overview::{
    Activity, ApprovalInfo, Delegate, HealthSummary, LimitInfo, Overview, QueueInfo, RecentRequest,
    StuckInfo, WorkerInfo, WorkerRow, WorkspaceInfo,
};
pub use tree::{RequestTree, Retry, StepNode};
pub use waiting::{HeldLimit, WaitsFor, WaitsForReason};

use harness_core::Timestamp;

/// Milliseconds from `from` to `to` (none while `to` is unset; never negative).
pub fn millis_between(from: Timestamp, to: Option<Timestamp>) -> Option<i64> {
    to.map(|t| (t.0 - from.0).max(0))
}

fn age_ms(now: Timestamp, t: Timestamp) -> i64 {
    t.age(now).as_millis() as i64
}
