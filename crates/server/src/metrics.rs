//! `GET /metrics`: Prometheus text exposition format (version 0.0.4), written by
//! hand (a few dozen series do not need a client library).
//!
//! Gauges of the records (queue depth, running, waiting for approval, pending
//! approvals and the oldest one's age) are read from the store at each scrape: the
//! records are the source of truth, whichever process changed them. Counters and
//! histograms are this process's since it started ([`harness_engine::Metrics`]),
//! plus the event streams this server holds open now.

use crate::{ApiError, AppState, Principal, Role};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use harness_engine::{HistogramSnapshot, StepKind};
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The rejection codes always exposed (0 until one happens), so a rate over them
/// exists from the first scrape.
const REJECTION_CODES: [&str; 3] = ["queue_full", "invalid_input", "conflict"];

#[utoipa::path(get, path = "/metrics", tag = "metrics",
    description = "Role: viewer. Prometheus text exposition format (0.0.4): gauges of the \
        records, read at each scrape, and this process's counters and histograms.",
    responses(
        (status = 200, description = "The metrics",
            content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
    ))]
pub(crate) async fn metrics(p: Principal, State(s): State<AppState>) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    let h = &s.harness;
    let now = h.now();
    let stats = h
        .store()
        .stats(now, now)
        .await
        .map_err(harness_engine::HarnessError::from)?;
    let m = h.metrics();
    let mut out = Text::default();

    out.gauge(
        "agent_harness_queue_depth",
        "Admitted root requests not started yet (what runtime.queue_capacity bounds).",
        stats.queued,
    );
    out.gauge(
        "agent_harness_queue_capacity",
        "runtime.queue_capacity.",
        h.workspace().settings.runtime.queue_capacity as u64,
    );
    out.gauge(
        "agent_harness_requests_resuming",
        "Root requests runnable again after an approval or a recovery.",
        stats.resuming,
    );
    out.gauge(
        "agent_harness_requests_running",
        "Root requests executing now (on any worker of the store).",
        stats.running,
    );
    out.gauge(
        "agent_harness_requests_waiting_approval",
        "Root requests paused on an approval in their tree.",
        stats.waiting_approval,
    );
    out.gauge(
        "agent_harness_approvals_pending",
        "Approvals waiting for a decision.",
        stats.pending_approvals,
    );
    out.head(
        "agent_harness_approval_oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest pending approval (0 when none is pending).",
    );
    let age_ms = stats
        .oldest_pending_approval
        .map(|t| now.0.saturating_sub(t.0).max(0))
        .unwrap_or(0);
    out.sample(
        "agent_harness_approval_oldest_pending_age_seconds",
        &[],
        age_ms as f64 / 1000.0,
    );

    out.head(
        "agent_harness_requests_admitted_total",
        "counter",
        "Requests this process admitted (retries included, idempotent replays not).",
    );
    out.sample(
        "agent_harness_requests_admitted_total",
        &[],
        m.admitted() as f64,
    );
    out.head(
        "agent_harness_admissions_rejected_total",
        "counter",
        "Admissions this process refused, by error code.",
    );
    let mut rejected = m.rejected();
    for code in REJECTION_CODES {
        rejected.entry(code).or_default();
    }
    for (code, n) in rejected {
        out.sample(
            "agent_harness_admissions_rejected_total",
            &[("code", code)],
            n as f64,
        );
    }
    out.head(
        "agent_harness_recoveries_total",
        "counter",
        "Requests re-queued by recovery when this process's worker started.",
    );
    out.sample("agent_harness_recoveries_total", &[], m.recovered() as f64);
    let (claims, claimed) = m.claims();
    out.head(
        "agent_harness_claims_total",
        "counter",
        "Claim transactions this process's worker made (each reads every session with queued work).",
    );
    out.sample("agent_harness_claims_total", &[], claims as f64);
    out.head(
        "agent_harness_claimed_total",
        "counter",
        "Requests this process's worker claimed.",
    );
    out.sample("agent_harness_claimed_total", &[], claimed as f64);

    out.head(
        "agent_harness_step_latency_seconds",
        "histogram",
        "Time from a step's start to the commit completing it, by kind.",
    );
    for kind in StepKind::ALL {
        out.histogram(
            "agent_harness_step_latency_seconds",
            ("kind", kind.as_str()),
            &m.step_latency(kind),
        );
    }
    out.head(
        "agent_harness_approval_wait_seconds",
        "histogram",
        "Time from an approval's creation to its resolution through this process, by decision.",
    );
    for (approved, decision) in [(true, "approved"), (false, "rejected")] {
        out.histogram(
            "agent_harness_approval_wait_seconds",
            ("decision", decision),
            &m.approval_wait(approved),
        );
    }
    out.head(
        "agent_harness_model_tokens_total",
        "counter",
        "Tokens model turns run here reported, by configured model and direction (in, out).",
    );
    for (model, t) in m.tokens() {
        for (direction, n) in [("in", t.input), ("out", t.output)] {
            out.sample(
                "agent_harness_model_tokens_total",
                &[("model", &model), ("direction", direction)],
                n as f64,
            );
        }
    }
    out.gauge(
        "agent_harness_sse_subscribers",
        "Event streams (GET /v1/events) this server holds open.",
        s.sse_subscribers.load(Ordering::Relaxed),
    );
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], out.0).into_response())
}

/// Counts an open event stream while alive.
pub(crate) struct Subscriber(Arc<AtomicU64>);

impl Subscriber {
    pub(crate) fn new(count: &Arc<AtomicU64>) -> Subscriber {
        count.fetch_add(1, Ordering::Relaxed);
        Subscriber(count.clone())
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Text(String);

impl Text {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn gauge(&mut self, name: &str, help: &str, v: u64) {
        self.head(name, "gauge", help);
        self.sample(name, &[], v as f64);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(val));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {v}");
    }

    fn histogram(&mut self, name: &str, label: (&str, &str), h: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        for (le, n) in &h.buckets {
            let le = le.to_string();
            self.sample(&bucket, &[label, ("le", &le)], *n as f64);
        }
        self.sample(&bucket, &[label, ("le", "+Inf")], h.count as f64);
        self.sample(&format!("{name}_sum"), &[label], h.sum);
        self.sample(&format!("{name}_count"), &[label], h.count as f64);
    }
}

/// A label value as the text format needs it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_label_values_and_histograms_end_with_inf() {
        let mut t = Text::default();
        t.sample("m", &[("model", "a\"b\\c\nd")], 2.0);
        assert_eq!(t.0, "m{model=\"a\\\"b\\\\c\\nd\"} 2\n");
        let mut t = Text::default();
        let h = HistogramSnapshot {
            buckets: vec![(0.5, 1), (1.0, 2)],
            count: 3,
            sum: 4.25,
        };
        t.histogram("x", ("kind", "k"), &h);
        assert_eq!(
            t.0,
            "x_bucket{kind=\"k\",le=\"0.5\"} 1\n\
             x_bucket{kind=\"k\",le=\"1\"} 2\n\
             x_bucket{kind=\"k\",le=\"+Inf\"} 3\n\
             x_sum{kind=\"k\"} 4.25\n\
             x_count{kind=\"k\"} 3\n"
        );
    }
}
