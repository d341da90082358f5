//! Small helpers shared by the benches: process memory, temp folders, waiting on
//! store counts, percentiles and number formatting.

use anyhow::{Context, Result, bail};
use harness_core::{RequestFilter, RequestStatus};
use harness_engine::{Harness, StoreStats};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A field of `/proc/self/status` given in kB (VmRSS, VmHWM), in bytes.
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Current resident set size.
pub fn rss() -> u64 {
    proc_status_bytes("VmRSS").unwrap_or(0)
}

/// Peak resident set size since the start (or the last [`reset_peak_rss`]).
pub fn peak_rss() -> u64 {
    proc_status_bytes("VmHWM").unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux: `echo 5 > /proc/self/clear_refs`).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

pub fn threads() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time this process has used (all threads, user + system).
pub fn cpu_time() -> Duration {
    let (user, system) = cpu_times();
    user + system
}

/// CPU time this process has used (all threads): (user, system).
pub fn cpu_times() -> (Duration, Duration) {
    let u = rusage();
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    (tv(u.ru_utime), tv(u.ru_stime))
}

/// This process's minor page faults, and its threads' voluntary and involuntary
/// context switches, so far.
pub fn faults_and_switches() -> (u64, u64, u64) {
    let u = rusage();
    (u.ru_minflt as u64, u.ru_nvcsw as u64, u.ru_nivcsw as u64)
}

/// `getrusage` of this process (all threads).
fn rusage() -> libc::rusage {
    // SAFETY: getrusage writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u
}

/// Time this process's live threads have spent runnable but not running (waiting
/// on a run queue, wake-ups included), summed from `/proc/self/task/*/schedstat`;
/// zero where the kernel does not keep it.
pub fn run_queue_wait() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// Where bench workspaces go: `$AGENT_HARNESS_BENCH_DIR` or the system temp folder.
/// It should be on a real disk (fsync cost matters for `synchronous = FULL`).
pub fn bench_base() -> PathBuf {
    std::env::var_os("AGENT_HARNESS_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

pub fn temp_dir(label: &str) -> Result<tempfile::TempDir> {
    let base = bench_base();
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    tempfile::Builder::new()
        .prefix(&format!("harness-bench-{label}-"))
        .tempdir_in(&base)
        .with_context(|| format!("creating a temp folder in {}", base.display()))
}

/// Polls the store's counts every `every` until `done` holds (or `timeout` passes).
pub async fn wait_stats(
    h: &Harness,
    every: Duration,
    timeout: Duration,
    what: &str,
    done: impl Fn(&StoreStats) -> bool,
) -> Result<StoreStats> {
    let start = Instant::now();
    loop {
        let now = h.now();
        let s = h.store().stats(now, now).await?;
        if done(&s) {
            return Ok(s);
        }
        if start.elapsed() > timeout {
            bail!(
                "timed out after {:?} waiting for {what} (queued {}, running {}, waiting {}, completed {}, failed {})",
                timeout,
                s.queued,
                s.running,
                s.waiting_approval,
                s.completed,
                s.failed
            );
        }
        tokio::time::sleep(every).await;
    }
}

/// Admits `n` requests to `agent` at once (each in its own new session).
pub async fn admit_many(h: &Harness, agent: &str, n: usize) -> Result<Vec<harness_core::Request>> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let h = h.clone();
        let agent = agent.to_string();
        set.spawn(async move { h.request(None, &agent, &format!("bench input {i}")).await });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        out.push(r??);
    }
    Ok(out)
}

/// Every root request, newest first.
pub async fn all_requests(h: &Harness) -> Result<Vec<harness_core::Request>> {
    Ok(h.list_requests(RequestFilter {
        roots_only: true,
        ..Default::default()
    })
    .await?)
}

/// Opens a bench workspace with the real clock and, if given, a durability override.
pub fn open(
    dir: &std::path::Path,
    durability: Option<harness_store::Durability>,
) -> Result<Harness> {
    let opts = harness_engine::HarnessOptions {
        durability,
        ..Default::default()
    };
    Ok(Harness::open_with(dir, opts, true)?)
}

pub fn count_status(reqs: &[harness_core::Request], s: RequestStatus) -> usize {
    reqs.iter().filter(|r| r.status == s).count()
}

/// The `p`-th percentile (0..=100) of sorted samples, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    percentile(&s, 50.0)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// 1234567 -> "1,234,567".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub use harness_core::human_bytes;

/// "MET" / "MISSED" against a target, for the summary lines.
pub fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// What resolving one approval took: the `resolve_approval` call itself, the time
/// until a worker committed the request's next step (`tool.started`), and that
/// event's commit → subscriber lag (from its `at`, whole ms, to its receipt).
pub struct Resolved {
    pub call: Duration,
    pub to_step: Duration,
    pub lag_ms: f64,
}

/// Wall-clock milliseconds now, with sub-millisecond precision (events carry
/// whole milliseconds).
pub fn wall_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0)
}

/// Approves `a` and follows its request until it completes, timing the way to its
/// next step. Fails if the request does not continue within 10 s (`why` adds
/// context, e.g. a worker's log) or ends otherwise than completed.
pub async fn resolve_and_follow(
    h: &Harness,
    a: &harness_core::Approval,
    why: impl Fn() -> String,
) -> Result<Resolved> {
    use harness_core::*;
    let cursor = h.store().last_seq().await?;
    let mut sub = h.subscribe(
        cursor,
        EventFilter {
            request_id: Some(a.request_id.clone()),
            ..Default::default()
        },
    );
    let t0 = Instant::now();
    h.resolve_approval(ResolveApproval {
        session_id: a.session_id.clone(),
        request_id: a.request_id.clone(),
        approval_id: a.id.clone(),
        decision: Decision::Approved,
        message: None,
        decided_by: Actor::new(ActorKind::Cli, "bench"),
        edited_arguments: None,
    })
    .await?;
    let call = t0.elapsed();
    let mut stepped = None;
    loop {
        let ev = match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
            Ok(ev) => ev?,
            Err(_) => bail!(
                "request {} did not continue within 10 s of its approval{}",
                a.request_id,
                why()
            ),
        };
        if ev.kind == EventKind::ToolStarted && stepped.is_none() {
            // Taken at receipt: the request goes on (two more commits) before
            // this loop ends.
            stepped = Some((t0.elapsed(), wall_ms() - ev.at.0 as f64));
        }
        if ev.kind.as_str().starts_with("request.") && ev.kind != EventKind::RequestStarted {
            if ev.kind != EventKind::RequestCompleted {
                bail!("request {} ended with {}", a.request_id, ev.kind);
            }
            break;
        }
    }
    let (to_step, lag_ms) = stepped
        .with_context(|| format!("request {} completed without a tool step", a.request_id))?;
    Ok(Resolved {
        call,
        to_step,
        lag_ms,
    })
}
