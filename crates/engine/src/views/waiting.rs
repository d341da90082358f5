//! What a queued request waits for: a limit others hold (and who), its session's
//! earlier request, or a worker slot; or, running, a model call held by its rate
//! limit.

use crate::{Harness, HarnessError, RateLimitStatus, RateWait};
use harness_core::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WaitsForReason {
    /// A limit (resource, tool or agent) without room.
    Limit,
    /// Its session's earlier request goes first.
    Session,
    /// A free worker slot.
    WorkerSlot,
    /// A running request's model call waits for its rate limit.
    RateLimit,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WaitsFor {
    pub reason: WaitsForReason,
    /// The limits without room (reason `limit`), each with who holds it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<HeldLimit>,
    /// The session's request that goes first (reason `session`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind: Option<RequestId>,
    /// The call that waits (reason `limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<CallId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Reason `rate_limit`: its key, the model, why and until when (at the earliest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateWait>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_key: Option<String>,
    pub since: Timestamp,
}

/// A limit and the calls holding it now.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeldLimit {
    pub key: String,
    pub capacity: u32,
    pub held_by: Vec<Hold>,
}

impl WaitsFor {
    fn bare(reason: WaitsForReason, since: Timestamp) -> Self {
        WaitsFor {
            reason,
            limits: vec![],
            behind: None,
            call_id: None,
            tool: None,
            rate_limit: None,
            rate_limit_key: None,
            since,
        }
    }
}

impl WaitsFor {
    /// One line, as every surface says it: "resource `prod-db` (1/1 held by call_…
    /// of req_… (tool `deploy`) for 12s) for its call of `deploy` since 3s ago",
    /// "its session: req_… goes first", "a worker slot".
    pub fn text(&self, now: Timestamp) -> String {
        let ago = |t: Timestamp| format!("{} ago", relative(t.age(now)));
        match self.reason {
            WaitsForReason::Limit => {
                let limits: Vec<String> = self.limits.iter().map(|l| l.text(now)).collect();
                format!(
                    "{} for {} since {}",
                    limits.join(" and "),
                    describe_waiter(self.tool.as_deref().unwrap_or("")),
                    ago(self.since)
                )
            }
            WaitsForReason::Session => format!(
                "its session: {} goes first",
                self.behind
                    .as_ref()
                    .map(|b| b.to_string())
                    .unwrap_or_default()
            ),
            WaitsForReason::RateLimit => match (&self.rate_limit, &self.rate_limit_key) {
                (Some(r), Some(key)) => format!(
                    "the rate limit `{key}` of model `{}` ({}) until {} at the earliest, since {}",
                    r.model,
                    r.reason,
                    r.until.to_rfc3339(),
                    ago(r.since)
                ),
                _ => "a rate limit".to_string(),
            },
            WaitsForReason::WorkerSlot => "a worker slot".to_string(),
        }
    }
}

impl HeldLimit {
    /// "resource `prod-db` (1/1 held by call_… of req_… (tool `deploy`) for 12s)".
    pub fn text(&self, now: Timestamp) -> String {
        let who: Vec<String> = self
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
            return format!("{} ({} free now)", describe_key(&self.key), self.capacity);
        }
        format!(
            "{} ({}/{} held by {})",
            describe_key(&self.key),
            self.held_by.len(),
            self.capacity,
            who.join(", ")
        )
    }
}

/// What the running request `r` waits for: a model call of it held by a rate limit
/// (from the worker's rate limit status), if any.
pub fn of_running(r: &Request, rates: &[RateLimitStatus]) -> Option<WaitsFor> {
    if r.status != RequestStatus::Running {
        return None;
    }
    rates.iter().find_map(|s| {
        let w = s
            .waiting
            .iter()
            .find(|w| w.request_id.as_ref() == Some(&r.id))?;
        Some(WaitsFor {
            rate_limit: Some(w.clone()),
            rate_limit_key: Some(s.key.clone()),
            ..WaitsFor::bare(WaitsForReason::RateLimit, w.since)
        })
    })
}

/// What the queued root `r` waits for (None unless it is a queued root request).
/// `waits` and `holds` are the store's (`Harness::waits`, `Harness::holds`).
pub async fn of(
    h: &Harness,
    r: &Request,
    waits: &[Wait],
    holds: &[Hold],
) -> Result<Option<WaitsFor>, HarnessError> {
    if r.status != RequestStatus::Queued || r.parent_id.is_some() {
        return Ok(None);
    }
    let mine: Vec<&Wait> = waits.iter().filter(|w| w.root_id == r.id).collect();
    if let Some(first) = mine.first() {
        return Ok(Some(WaitsFor {
            limits: mine
                .iter()
                .map(|w| HeldLimit {
                    key: w.key.clone(),
                    capacity: w.capacity,
                    held_by: holds.iter().filter(|h| h.key == w.key).cloned().collect(),
                })
                .collect(),
            call_id: Some(first.call_id.clone()),
            tool: Some(first.tool.clone()),
            ..WaitsFor::bare(WaitsForReason::Limit, first.since)
        }));
    }
    let active = h
        .list_requests(RequestFilter {
            session_id: Some(r.session_id.clone()),
            statuses: vec![
                RequestStatus::Queued,
                RequestStatus::Running,
                RequestStatus::WaitingApproval,
            ],
            roots_only: true,
            order: RequestOrder::Oldest,
            limit: 1,
            ..Default::default()
        })
        .await?;
    let ahead = active.into_iter().next().filter(|a| a.id != r.id);
    Ok(Some(match ahead {
        Some(a) => WaitsFor {
            behind: Some(a.id),
            ..WaitsFor::bare(WaitsForReason::Session, r.last_activity_at)
        },
        None => WaitsFor::bare(WaitsForReason::WorkerSlot, r.last_activity_at),
    }))
}
