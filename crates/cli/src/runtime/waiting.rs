//! What a queued request waits for: a limit others hold (and who), its session's
//! earlier request, or a worker slot. One projection of the records, shared by
//! `requests show`, `doctor` and `overview`.

use super::ago;
use anyhow::Result;
use harness_core::*;
use harness_engine::Harness;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct WaitsFor {
    /// `limit`, `session`, `worker_slot`, or `rate_limit` (a running request's
    /// model call waits for its rate limit).
    pub reason: &'static str,
    /// The limits without room (reason `limit`), each with who holds it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<HeldLimit>,
    /// The session's request that goes first (reason `session`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind: Option<RequestId>,
    /// The call that waits (reason `limit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<CallId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Reason `rate_limit`: its key, the model, why and until when (at the earliest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<harness_engine::RateWait>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_key: Option<String>,
    pub since: Timestamp,
}

/// A limit and the calls holding it now.
#[derive(Clone, Debug, Serialize)]
pub struct HeldLimit {
    pub key: String,
    pub capacity: u32,
    pub held_by: Vec<Hold>,
}

/// What the running request `r` waits for: a model call of it held by a rate limit
/// (from the worker's rate limit status), if any.
pub fn of_running(r: &Request, rates: &[harness_engine::RateLimitStatus]) -> Option<WaitsFor> {
    if r.status != RequestStatus::Running {
        return None;
    }
    rates.iter().find_map(|s| {
        let w = s
            .waiting
            .iter()
            .find(|w| w.request_id.as_ref() == Some(&r.id))?;
        Some(WaitsFor {
            reason: "rate_limit",
            limits: vec![],
            behind: None,
            call_id: None,
            tool: None,
            rate_limit: Some(w.clone()),
            rate_limit_key: Some(s.key.clone()),
            since: w.since,
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
) -> Result<Option<WaitsFor>> {
    if r.status != RequestStatus::Queued || r.parent_id.is_some() {
        return Ok(None);
    }
    let mine: Vec<&Wait> = waits.iter().filter(|w| w.root_id == r.id).collect();
    if let Some(first) = mine.first() {
        return Ok(Some(WaitsFor {
            reason: "limit",
            limits: mine
                .iter()
                .map(|w| HeldLimit {
                    key: w.key.clone(),
                    capacity: w.capacity,
                    held_by: holds.iter().filter(|h| h.key == w.key).cloned().collect(),
                })
                .collect(),
            behind: None,
            call_id: Some(first.call_id.clone()),
            tool: Some(first.tool.clone()),
            rate_limit: None,
            rate_limit_key: None,
            since: first.since,
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
            reason: "session",
            limits: vec![],
            behind: Some(a.id),
            call_id: None,
            tool: None,
            rate_limit: None,
            rate_limit_key: None,
            since: r.last_activity_at,
        },
        None => WaitsFor {
            reason: "worker_slot",
            limits: vec![],
            behind: None,
            call_id: None,
            tool: None,
            rate_limit: None,
            rate_limit_key: None,
            since: r.last_activity_at,
        },
    }))
}

/// One line: "resource `prod-db` (1/1 held by call_… of req_…, tool deploy, for 12s)".
pub fn text(w: &WaitsFor, now: Timestamp) -> String {
    match w.reason {
        "limit" => {
            let limits: Vec<String> = w.limits.iter().map(|l| limit_text(l, now)).collect();
            format!(
                "{} for {} since {}",
                limits.join(" and "),
                describe_waiter(w.tool.as_deref().unwrap_or("")),
                ago(now, w.since)
            )
        }
        "session" => format!(
            "its session: {} goes first",
            w.behind.as_ref().map(|b| b.to_string()).unwrap_or_default()
        ),
        "rate_limit" => match (&w.rate_limit, &w.rate_limit_key) {
            (Some(r), Some(key)) => format!(
                "the rate limit `{key}` of model `{}` ({}) until {} at the earliest, since {}",
                r.model,
                r.reason,
                r.until.to_rfc3339(),
                ago(now, r.since)
            ),
            _ => "a rate limit".to_string(),
        },
        _ => "a worker slot".to_string(),
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
