//! In-process counters and histograms for `/metrics` (kept since the process
//! started; never stored). What the records say — queue depth, running requests,
//! pending approvals — is read from the store at scrape time, not kept here.
//!
//! Every label is bounded: step kinds and approval decisions are fixed sets, error
//! codes are [`ErrorCode`]'s, model names come from the workspace configuration.

use harness_core::ErrorCode;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the step latency buckets.
pub const STEP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Upper bounds (seconds) of the approval wait buckets: seconds to days.
pub const APPROVAL_BUCKETS: &[f64] = &[
    1.0,
    10.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    4.0 * 3600.0,
    86400.0,
    7.0 * 86400.0,
];

/// A histogram with fixed buckets, observed in milliseconds.
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then +Inf; not cumulative.
    buckets: Vec<AtomicU64>,
    sum_ms: AtomicU64,
    count: AtomicU64,
}

/// A histogram as read: cumulative counts per upper bound (seconds), as Prometheus
/// exposes them.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// `(le, observations <= le)` for each bound, ascending; +Inf is `count`.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    /// Seconds.
    pub sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ms: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe_ms(&self, ms: u64) {
        let secs = ms as f64 / 1000.0;
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut acc = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.buckets)
            .map(|(b, n)| {
                acc += n.load(Ordering::Relaxed);
                (*b, acc)
            })
            .collect();
        let inf = self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            // Read from the buckets so `count` is never below the last bucket.
            count: acc + inf,
            sum: self.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}

/// The kinds of step whose latency is observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StepKind {
    ModelTurn,
    ToolCall,
}

impl StepKind {
    pub const ALL: [StepKind; 2] = [StepKind::ModelTurn, StepKind::ToolCall];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::ModelTurn => "model_turn",
            StepKind::ToolCall => "tool_call",
        }
    }
}

/// Tokens one configured model reported using, summed over its turns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenCount {
    pub input: u64,
    pub output: u64,
}

/// This process's counters and histograms (see [`crate::Harness::metrics`]).
pub struct Metrics {
    admitted: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    recovered: AtomicU64,
    claims: AtomicU64,
    claimed: AtomicU64,
    step_latency: [Histogram; 2],
    approval_wait: [Histogram; 2],
    tokens: Mutex<BTreeMap<String, TokenCount>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            admitted: AtomicU64::new(0),
            rejected: Mutex::new(BTreeMap::new()),
            recovered: AtomicU64::new(0),
            claims: AtomicU64::new(0),
            claimed: AtomicU64::new(0),
            step_latency: [Histogram::new(STEP_BUCKETS), Histogram::new(STEP_BUCKETS)],
            approval_wait: [
                Histogram::new(APPROVAL_BUCKETS),
                Histogram::new(APPROVAL_BUCKETS),
            ],
            tokens: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// Requests admitted by this process (new ones: an idempotent replay is not).
    pub fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }

    /// Admissions this process refused, by error code.
    pub fn rejected(&self) -> BTreeMap<&'static str, u64> {
        self.rejected.lock().expect("metrics").clone()
    }

    /// Requests re-queued by recovery at this process's worker starts.
    pub fn recovered(&self) -> u64 {
        self.recovered.load(Ordering::Relaxed)
    }

    /// Claim transactions this process's worker made (each reads every session
    /// with queued work), and the requests they claimed.
    pub fn claims(&self) -> (u64, u64) {
        (
            self.claims.load(Ordering::Relaxed),
            self.claimed.load(Ordering::Relaxed),
        )
    }

    /// Time from a step's start to the commit completing it.
    pub fn step_latency(&self, kind: StepKind) -> HistogramSnapshot {
        self.step_latency[kind as usize].snapshot()
    }

    /// Time from an approval's creation to its resolution through this process,
    /// by decision (`approved: true`, or rejected).
    pub fn approval_wait(&self, approved: bool) -> HistogramSnapshot {
        self.approval_wait[usize::from(!approved)].snapshot()
    }

    /// Tokens reported by model turns run here, by the model's configured name.
    pub fn tokens(&self) -> BTreeMap<String, TokenCount> {
        self.tokens.lock().expect("metrics").clone()
    }

    pub(crate) fn count_admitted(&self) {
        self.admitted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_rejected(&self, code: ErrorCode) {
        *self
            .rejected
            .lock()
            .expect("metrics")
            .entry(code.as_str())
            .or_default() += 1;
    }

    pub(crate) fn count_recovered(&self, n: usize) {
        self.recovered.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_claim(&self, claimed: usize) {
        self.claims.fetch_add(1, Ordering::Relaxed);
        self.claimed.fetch_add(claimed as u64, Ordering::Relaxed);
    }

    pub(crate) fn observe_step(&self, kind: StepKind, ms: u64) {
        self.step_latency[kind as usize].observe_ms(ms);
    }

    pub(crate) fn observe_approval_wait(&self, approved: bool, ms: u64) {
        self.approval_wait[usize::from(!approved)].observe_ms(ms);
    }

    pub(crate) fn count_tokens(&self, model: &str, input: u64, output: u64) {
        let mut t = self.tokens.lock().expect("metrics");
        let c = t.entry(model.to_string()).or_default();
        c.input += input;
        c.output += output;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_everything() {
        let h = Histogram::new(STEP_BUCKETS);
        for ms in [0, 3, 7, 120, 700_000] {
            h.observe_ms(ms);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 5);
        assert!((s.sum - 700.13).abs() < 1e-9, "{}", s.sum);
        assert_eq!(s.buckets[0], (0.005, 2));
        assert_eq!(s.buckets[1], (0.01, 3));
        assert_eq!(s.buckets.iter().find(|b| b.0 == 0.25).unwrap().1, 4);
        // 700 s is over the last bound: only +Inf (the count) holds it.
        assert_eq!(s.buckets.last().unwrap(), &(300.0, 4));
        assert!(s.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn tokens_and_rejections_add_up_by_label() {
        let m = Metrics::default();
        m.count_tokens("fast", 10, 2);
        m.count_tokens("fast", 5, 1);
        m.count_tokens("smart", 1, 0);
        let t = m.tokens();
        assert_eq!(
            t["fast"],
            TokenCount {
                input: 15,
                output: 3
            }
        );
        assert_eq!(t["smart"].input, 1);
        m.count_rejected(ErrorCode::QueueFull);
        m.count_rejected(ErrorCode::QueueFull);
        m.count_rejected(ErrorCode::InvalidInput);
        let r = m.rejected();
        assert_eq!(r["queue_full"], 2);
        assert_eq!(r["invalid_input"], 1);
        assert_eq!(m.approval_wait(true).count, 0);
        m.observe_approval_wait(false, 61_000);
        assert_eq!(m.approval_wait(false).count, 1);
        assert_eq!(m.approval_wait(true).count, 0);
    }
}
