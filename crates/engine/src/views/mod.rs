//! Projections of the records that every surface shows the same way: the
//! overview, a request as a tree, and what a queued request waits for. The CLI,
//! the HTTP API and the web console render these; none computes its own.

pub mod doctor;
pub mod overview;
pub mod tree;
pub mod waiting;

pub use doctor::{Diagnosis, Next, Stop, ToolFailures, diagnose};
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

/// `s` on one line, cut to `max` characters with `…`.
pub fn clip(s: &str, max: usize) -> String {
    let one_line: String = s
        .trim_end()
        .chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
