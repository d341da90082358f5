//! What a queued request waits for: a limit others hold (and who), its session's
//! earlier request, or a worker slot. One projection of the records, shared by
//! `requests show`, `doctor` and `overview`.

use super::ago;
use harness_core::*;
pub use harness_engine::views::{HeldLimit, WaitsFor, WaitsForReason};

/// One line: "resource `prod-db` (1/1 held by call_… of req_…, tool deploy, for 12s)".
pub fn text(w: &WaitsFor, now: Timestamp) -> String {
    match w.reason {
        WaitsForReason::Limit => {
            let limits: Vec<String> = w.limits.iter().map(|l| limit_text(l, now)).collect();
            format!(
                "{} for {} since {}",
                limits.join(" and "),
                describe_waiter(w.tool.as_deref().unwrap_or("")),
                ago(now, w.since)
            )
        }
        WaitsForReason::Session => format!(
            "its session: {} goes first",
            w.behind.as_ref().map(|b| b.to_string()).unwrap_or_default()
        ),
        WaitsForReason::RateLimit => match (&w.rate_limit, &w.rate_limit_key) {
            (Some(r), Some(key)) => format!(
                "the rate limit `{key}` of model `{}` ({}) until {} at the earliest, since {}",
                r.model,
                r.reason,
                r.until.to_rfc3339(),
                ago(now, r.since)
            ),
            _ => "a rate limit".to_string(),
        },
        WaitsForReason::WorkerSlot => "a worker slot".to_string(),
    }
}

fn limit_text(l: &HeldLimit, now: Timestamp) -> String {
    let who: Vec<String> = l
        .held_by
        .iter()
        .map(|h| {
            format!(
                "{} for {}",
                describe_holder(h),
                relative(h.acquired_at.age(now))
            )
        })
        .collect();
    if who.is_empty() {
        // Freed since the tree parked: the next claim takes it.
        return format!("{} ({} free now)", describe_key(&l.key), l.capacity);
    }
    format!(
        "{} ({}/{} held by {})",
        describe_key(&l.key),
        l.held_by.len(),
        l.capacity,
        who.join(", ")
    )
}
