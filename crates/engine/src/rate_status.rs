//! Rate limit waits for views in other processes. The limiter lives in the worker's
//! memory; at every change of a wait the worker rewrites `<store>/rate-limits.json`
//! (like `mcp-servers.json`), and a view trusts the file only while the pid that
//! wrote it holds the worker lock. On PostgreSQL each worker has its own limiter
//! and file, so a view sees the waits of a worker on its own host only.

use crate::{Harness, HarnessError};
use harness_core::{RequestId, Timestamp};
use harness_providers::{LimiterState, RateLimits};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One rate limit key as operators see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateLimitStatus {
    pub key: String,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
    /// Set while a provider's `Retry-After` holds every call of the key.
    pub blocked_until: Option<Timestamp>,
    pub calls_in_window: usize,
    pub tokens_in_window: u64,
    /// The calls waiting, first in line first.
    pub waiting: Vec<RateWait>,
}

/// A model call waiting for its rate limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateWait {
    pub model: String,
    pub request_id: Option<RequestId>,
    pub since: Timestamp,
    /// The earliest it may start.
    pub until: Timestamp,
    /// `retry_after`, `requests_per_minute`, `tokens_per_minute` or `queue`.
    pub reason: String,
}

#[derive(Serialize, Deserialize)]
struct FileBody {
    pid: u32,
    limits: Vec<RateLimitStatus>,
}

fn of(s: LimiterState) -> RateLimitStatus {
    RateLimitStatus {
        key: s.key,
        requests_per_minute: s.budget.requests_per_minute,
        tokens_per_minute: s.budget.tokens_per_minute,
        blocked_until: s.blocked_until,
        calls_in_window: s.calls_in_window,
        tokens_in_window: s.tokens_in_window,
        waiting: s
            .waiting
            .into_iter()
            .map(|w| RateWait {
                model: w.model,
                request_id: w.request_id,
                since: w.since,
                until: w.until,
                reason: w.reason.as_str().to_string(),
            })
            .collect(),
    }
}

pub(crate) fn file(ws: &harness_config::Workspace) -> PathBuf {
    ws.store_dir().join("rate-limits.json")
}

/// Keeps the file current: rewritten at every change of a wait.
pub(crate) fn publish(limits: &RateLimits, path: PathBuf) {
    let source = limits.clone();
    limits.on_wait(move |_| {
        let body = FileBody {
            pid: std::process::id(),
            limits: source.state().into_iter().map(of).collect(),
        };
        let Ok(bytes) = serde_json::to_vec_pretty(&body) else {
            return;
        };
        let tmp = path.with_extension("json.tmp");
        if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path)) {
            tracing::debug!(error = %e, "could not write the rate limit status file");
        }
    });
}

impl Harness {
    /// The rate limits of the worker holding the workspace: this process's own when
    /// it is the worker, else what the live worker last wrote (empty without one).
    pub async fn rate_limit_status(&self) -> Result<Vec<RateLimitStatus>, HarnessError> {
        if self.inner.worker.lock().expect("worker").is_some() {
            return Ok(self.inner.rate_limits.state().into_iter().map(of).collect());
        }
        let Some(holder) = self.worker_holder().await? else {
            return Ok(Vec::new());
        };
        let Ok(bytes) = std::fs::read(file(&self.inner.workspace)) else {
            return Ok(Vec::new());
        };
        Ok(serde_json::from_slice::<FileBody>(&bytes)
            .ok()
            .filter(|b| b.pid == holder.pid)
            .map(|b| b.limits)
            .unwrap_or_default())
    }

    /// The `rate_limits` check (in workspaces whose models set `rate_limit`, or
    /// while a key is held): warns while a provider's `Retry-After` holds a key.
    pub(crate) async fn rate_limits_check(
        &self,
        now: Timestamp,
    ) -> Result<Option<harness_core::HealthCheck>, HarnessError> {
        use harness_core::{HealthCheck, HealthStatus, relative};
        let configured = self
            .inner
            .workspace
            .models
            .values()
            .any(|m| m.rate_limit.is_some());
        let status = self.rate_limit_status().await?;
        let blocked: Vec<&RateLimitStatus> = status
            .iter()
            .filter(|s| s.blocked_until.is_some_and(|t| t > now))
            .collect();
        if !configured && blocked.is_empty() {
            return Ok(None);
        }
        let waiting: usize = status.iter().map(|s| s.waiting.len()).sum();
        let check = |status, detail| HealthCheck {
            name: "rate_limits".to_string(),
            status,
            detail,
        };
        let summary = format!(
            "{} call{} waiting for a rate limit",
            waiting,
            if waiting == 1 { "" } else { "s" }
        );
        Ok(Some(if blocked.is_empty() {
            check(HealthStatus::Ok, summary)
        } else {
            let held: Vec<String> = blocked
                .iter()
                .map(|s| {
                    let until = s.blocked_until.unwrap_or(now);
                    format!(
                        "the provider of `{}` asked to wait (Retry-After) until {} ({} from now)",
                        s.key,
                        until.to_rfc3339(),
                        relative(now.age(until))
                    )
                })
                .collect();
            check(
                HealthStatus::Warn,
                format!("{}; {summary}", held.join("; ")),
            )
        }))
    }
}
