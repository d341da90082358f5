//! `postgres-workers` (issue 10): several `agent-harness serve` processes on one
//! PostgreSQL store — real processes of the release CLI (`$AGENT_HARNESS_BIN`, or
//! `agent-harness` next to this binary), each on a fresh schema dropped after.
//!
//! - aggregate: 1,000 sessions × 10 steps admitted, then 1, 2 or 4 workers started
//!   together, each taking at most 1,000 / N requests at a time (the same 1,000
//!   sessions in flight in every case). Steps/s from the first claim to the last
//!   completion (the events' commit times), beside the raw 4-statement step
//!   transaction (`postgres::raw`) at the connections the workers may use (N × the
//!   pool size), measured right after on the same server. Meanwhile the bench
//!   process follows every event: commit → subscriber in another process.
//! - approval: 200 requests paused on an approval with 2 workers running; each is
//!   resolved from the bench process (a process that is no worker, as the CLI), and
//!   the clock stops when the bench's subscription yields the `tool.started` a
//!   worker committed when it resumed the request.
//! - recovery: 1,000 requests in flight on worker A (scripted model 1 s per turn),
//!   worker B idle beside it; A is SIGKILLed (dead: its liveness lock is freed) or
//!   SIGSTOPped (alive but silent: only its leases expire), and B takes the requests
//!   back. The leases' expiry, the re-claims and the first new step are timed from
//!   the signal, separately, by polling the request rows every 25 ms.

use crate::util::*;
use crate::workspace::{self, Agent, Spec};
use anyhow::{Context, Result, bail};
use harness_core::*;
use harness_engine::Harness;
use harness_store::testing::TestSchema;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SESSIONS: usize = 1000;
const STEPS: u64 = 10;
/// Connections per worker process (`postgres.pool_size`): 4 workers and the bench
/// stay well inside the server's 100 connections, shared with other users.
const POOL: usize = 8;
const APPROVALS: usize = 200;
const IN_FLIGHT: usize = 1000;
/// The scripted model's time per turn in `recovery`: 1,000 requests then ask ~2,000
/// steps/s of the store, which one worker sustains.
const TURN_MS: u64 = 1000;
/// The default `postgres.lease_secs`, and the shortest allowed.
const DEFAULT_LEASE: u64 = 15;
const SHORT_LEASE: u64 = 5;

pub async fn run(only: Option<String>) -> Result<()> {
    let bin = crate::views::cli_binary();
    if !bin.exists() {
        bail!(
            "the CLI binary {} does not exist (build it with \
             `cargo build --release -p harness-cli`, or set AGENT_HARNESS_BIN)",
            bin.display()
        );
    }
    if std::env::var(harness_store::testing::TEST_DATABASE_URL).is_err() {
        bail!("set AGENT_HARNESS_TEST_DATABASE_URL to a PostgreSQL server to measure it");
    }
    println!(
        "postgres-workers: `{} serve` processes on one PostgreSQL schema (pool_size {POOL} each)",
        bin.display()
    );
    let want = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if let Some(o) = only.as_deref()
        && !["aggregate", "approval", "recovery"].contains(&o)
    {
        bail!("--only takes aggregate, approval or recovery, not {o:?}");
    }
    if want("aggregate") {
        for n in [1, 2, 4] {
            aggregate(&bin, n).await?;
        }
    }
    if want("approval") {
        approval(&bin).await?;
    }
    if want("recovery") {
        recovery(&bin, Signal::Kill, SHORT_LEASE).await?;
        recovery(&bin, Signal::Kill, DEFAULT_LEASE).await?;
        recovery(&bin, Signal::Stop, SHORT_LEASE).await?;
        recovery(&bin, Signal::Stop, DEFAULT_LEASE).await?;
    }
    Ok(())
}

/// One `agent-harness serve` process. Dropped while running, it gets SIGKILL (by
/// its pid) and is reaped.
struct Serve {
    child: Child,
}

impl Serve {
    fn start(bin: &Path, ws: &Path) -> Result<Serve> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(ws.join("serve.log"))?;
        let child = Command::new(bin)
            .args(["serve", "--workspace"])
            .arg(ws)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} serve", bin.display()))?;
        Ok(Serve { child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: libc::c_int) {
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A workspace on a fresh schema, the bench's own harness on it (no worker), and
/// the `serve` processes. Dropped: the processes are killed, then the schema dropped.
struct Fleet {
    bin: PathBuf,
    serves: Vec<Serve>,
    h: Harness,
    ws: PathBuf,
    _dir: tempfile::TempDir,
    schema: TestSchema,
}

impl Fleet {
    fn new(
        bin: &Path,
        label: &str,
        max_concurrent: usize,
        agents: Vec<Agent>,
        lease_secs: Option<u64>,
    ) -> Result<Fleet> {
        let schema = TestSchema::new().context("no PostgreSQL server configured")?;
        let dir = temp_dir(label)?;
        let ws = dir.path().to_path_buf();
        workspace::write(
            &ws,
            &Spec {
                max_concurrent_requests: max_concurrent,
                queue_capacity: 4 * SESSIONS,
                agents,
                postgres: Some(schema.config.schema.clone()),
                ..Spec::default()
            },
        )?;
        // The bench's pool size, and the lease under test.
        std::fs::write(
            ws.join("config/stores.yaml"),
            format!(
                "backend: postgres\npostgres:\n  url_env: {}\n  pool_size: {POOL}\n  schema: {}\n{}",
                harness_store::testing::TEST_DATABASE_URL,
                schema.config.schema,
                lease_secs
                    .map(|s| format!("  lease_secs: {s}\n"))
                    .unwrap_or_default()
            ),
        )?;
        let h = open(&ws, None)?;
        Ok(Fleet {
            bin: bin.to_path_buf(),
            serves: Vec::new(),
            h,
            ws,
            _dir: dir,
            schema,
        })
    }

    /// Starts `n` workers together; returns their indexes in `serves`.
    fn spawn(&mut self, n: usize) -> Result<Vec<usize>> {
        let mut out = Vec::new();
        for _ in 0..n {
            self.serves.push(Serve::start(&self.bin, &self.ws)?);
            out.push(self.serves.len() - 1);
        }
        Ok(out)
    }

    /// Waits until the processes at `which` are listed as alive workers; their ids.
    async fn alive(&mut self, which: &[usize]) -> Result<Vec<WorkerId>> {
        let pids: Vec<u32> = which.iter().map(|&i| self.serves[i].pid()).collect();
        let start = Instant::now();
        loop {
            self.check_running()?;
            let list = self.h.store().list_workers(self.h.now()).await?;
            let ids: Vec<Option<WorkerId>> = pids
                .iter()
                .map(|p| {
                    list.iter()
                        .find(|w| w.worker.pid == *p && w.state == WorkerState::Alive)
                        .map(|w| w.worker.id.clone())
                })
                .collect();
            if ids.iter().all(Option::is_some) {
                return Ok(ids.into_iter().flatten().collect());
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!(
                    "serve processes {pids:?} were not all alive workers after 30 s\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Fails, with their log, if a `serve` exited that should not have.
    fn check_running(&mut self) -> Result<()> {
        for s in &mut self.serves {
            if let Some(status) = s.exited() {
                let pid = s.pid();
                bail!(
                    "serve {pid} exited ({status}) during the bench\n{}",
                    self.log_tail()
                );
            }
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.ws.join("serve.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("last lines of serve.log:\n{tail}")
    }

    /// Graceful stop of every running `serve` (SIGTERM, together), each within 30 s.
    async fn stop_all(&mut self) -> Result<()> {
        for s in &mut self.serves {
            if s.exited().is_none() {
                s.signal(libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for s in &mut self.serves {
            loop {
                match s.exited() {
                    Some(status) if status.success() => break,
                    Some(status) => bail!(
                        "serve {} ended with {status} after SIGTERM\n{}",
                        s.pid(),
                        tail_of(&self.ws)
                    ),
                    None if Instant::now() > deadline => {
                        bail!("serve {} did not stop within 30 s of SIGTERM", s.pid())
                    }
                    None => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
        Ok(())
    }
}

fn tail_of(ws: &Path) -> String {
    let log = std::fs::read_to_string(ws.join("serve.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// What the bench process saw of a workload's events.
#[derive(Default)]
struct Followed {
    /// Receipt time minus the event's `at` (taken by the committing worker just
    /// before its transaction), in ms, for every event of the workload.
    lags: Vec<f64>,
    first_start: Option<i64>,
    last_done: i64,
}

/// Follows every event from `from` until all of `ids` completed; fails on a
/// failed request or after 30 s without an event of the workload.
async fn follow(h: Harness, from: i64, ids: HashSet<RequestId>) -> Result<Followed> {
    let mut sub = h.subscribe(from, EventFilter::default());
    let mut out = Followed::default();
    let mut done = HashSet::new();
    while done.len() < ids.len() {
        let ev = match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
            Ok(ev) => ev?,
            Err(_) => bail!(
                "30 s without an event: {} of {} requests completed",
                done.len(),
                ids.len()
            ),
        };
        let lag = wall_ms() - ev.at.0 as f64;
        let Some(id) = ev.request_id.clone().filter(|id| ids.contains(id)) else {
            continue;
        };
        out.lags.push(lag);
        match ev.kind {
            EventKind::RequestStarted => {
                out.first_start = Some(out.first_start.map_or(ev.at.0, |t| t.min(ev.at.0)));
            }
            EventKind::RequestCompleted => {
                out.last_done = out.last_done.max(ev.at.0);
                done.insert(id);
            }
            EventKind::RequestFailed | EventKind::RequestCancelled => {
                bail!("request {id} ended with {}: {}", ev.kind, ev.payload)
            }
            _ => {}
        }
    }
    Ok(out)
}

/// p50 / p99 / max of millisecond samples.
fn spread_ms(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| {
        if samples.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
        samples[rank.clamp(1, samples.len()) - 1]
    };
    (at(50.0), at(99.0), samples.last().copied().unwrap_or(0.0))
}

/// 1,000 sessions × 10 steps through `n` worker processes, beside the raw step
/// transaction at `n × POOL` clients.
async fn aggregate(bin: &Path, n: usize) -> Result<()> {
    let mut f = Fleet::new(
        bin,
        "pgw-aggregate",
        SESSIONS.div_ceil(n),
        vec![workspace::steps_agent("many", STEPS)],
        None,
    )?;
    let ids: HashSet<RequestId> = admit_many(&f.h, "many", SESSIONS)
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let from = f.h.store().last_seq().await?;
    let follower = tokio::spawn(follow(f.h.clone(), from, ids.clone()));
    let started = Instant::now();
    let which = f.spawn(n)?;
    let workers = f.alive(&which).await?;
    let seen = match tokio::time::timeout(Duration::from_secs(300), follower).await {
        Ok(r) => r??,
        Err(_) => bail!("the workload did not finish within 300 s\n{}", f.log_tail()),
    };
    let wall = started.elapsed();
    f.check_running()?;
    f.stop_all().await?;

    let reqs = all_requests(&f.h).await?;
    let steps: u64 = reqs.iter().map(|r| r.steps as u64).sum();
    if steps != SESSIONS as u64 * STEPS {
        bail!(
            "{steps} steps committed, expected {}",
            SESSIONS as u64 * STEPS
        );
    }
    let mut per_worker: HashMap<&WorkerId, (usize, i64)> = HashMap::new();
    for r in &reqs {
        let Some(w) = &r.worker_id else { continue };
        let e = per_worker.entry(w).or_insert((0, i64::MAX));
        e.0 += 1;
        e.1 = e.1.min(r.started_at.map_or(i64::MAX, |t| t.0));
    }
    let counts: Vec<String> = workers
        .iter()
        .map(|w| per_worker.get(w).map_or(0, |c| c.0).to_string())
        .collect();
    let firsts: Vec<i64> = per_worker.values().map(|c| c.1).collect();
    let claim_spread =
        firsts.iter().max().copied().unwrap_or(0) - firsts.iter().min().copied().unwrap_or(0);
    let first = seen.first_start.context("no request.started event seen")?;
    let span_ms = (seen.last_done - first).max(1) as f64;
    let rate = steps as f64 / (span_ms / 1e3);
    println!(
        "postgres-workers/aggregate {n} worker{}: {} sessions × {STEPS} = {} steps in {span_ms:.0} ms \
         (first claim → last completion; {:.0} ms from starting the processes) → {} steps/s; \
         requests per worker {}; first claims {claim_spread} ms apart",
        if n == 1 { "" } else { "s" },
        thousands(SESSIONS as u64),
        thousands(steps),
        ms(wall),
        thousands(rate as u64),
        counts.join(" / "),
    );
    let mut lags = seen.lags;
    let (p50, p99, max) = spread_ms(&mut lags);
    println!(
        "postgres-workers/commit→subscriber with {n} worker{} committing (bench process following every event): \
         n={} p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms (event times are whole ms)",
        if n == 1 { "" } else { "s" },
        thousands(lags.len() as u64),
    );

    // The raw limit at the connections the workers could use, right after.
    let clients = n * POOL;
    let url = &f.schema.config.url;
    let schema = &f.schema.config.schema;
    let raw = crate::postgres::raw(url, schema, clients, crate::postgres::Raw::OneByOne).await?;
    let raw_p = crate::postgres::raw(url, schema, clients, crate::postgres::Raw::Pipelined).await?;
    println!(
        "postgres-workers/aggregate {n} worker{} vs raw at {clients} clients: {} steps/s against {} one by one \
         ({:.0}%; target ≥ 70%: {}) and {} pipelined ({:.0}%)",
        if n == 1 { "" } else { "s" },
        thousands(rate as u64),
        thousands(raw as u64),
        100.0 * rate / raw,
        verdict(rate >= 0.7 * raw),
        thousands(raw_p as u64),
        100.0 * rate / raw_p,
    );
    Ok(())
}

/// Approval resolved from the bench process → the resumed step committed by a
/// worker process, with two workers running.
async fn approval(bin: &Path) -> Result<()> {
    let mut f = Fleet::new(
        bin,
        "pgw-approval",
        1000,
        vec![workspace::gated_agent("gated")],
        None,
    )?;
    let which = f.spawn(2)?;
    let workers = f.alive(&which).await?;
    admit_many(&f.h, "gated", APPROVALS).await?;
    wait_stats(
        &f.h,
        Duration::from_millis(10),
        Duration::from_secs(60),
        "every request to pause on its approval",
        |s| s.pending_approvals as usize >= APPROVALS && s.running == 0 && s.queued == 0,
    )
    .await?;
    let h = f.h.clone();
    let pending = h
        .list_approvals(ApprovalFilter {
            statuses: vec![ApprovalStatus::Pending],
            ..Default::default()
        })
        .await?;
    let mut to_step = Vec::with_capacity(pending.len());
    let mut calls = Vec::with_capacity(pending.len());
    let mut lags = Vec::with_capacity(pending.len());
    let mut moved = 0;
    let mut by_worker: HashMap<WorkerId, usize> = HashMap::new();
    for a in &pending {
        let paused_on = h.get_request(&a.request_id).await?.worker_id;
        let r = resolve_and_follow(&h, a, || format!("\n{}", f.log_tail())).await?;
        to_step.push(r.to_step);
        calls.push(r.call);
        lags.push(r.lag_ms);
        let ran_on = h.get_request(&a.request_id).await?.worker_id;
        if let Some(w) = &ran_on {
            *by_worker.entry(w.clone()).or_default() += 1;
        }
        if ran_on != paused_on {
            moved += 1;
        }
    }
    f.check_running()?;
    f.stop_all().await?;
    to_step.sort();
    let p99 = percentile(&to_step, 99.0);
    let split: Vec<String> = workers
        .iter()
        .map(|w| by_worker.get(w).copied().unwrap_or(0).to_string())
        .collect();
    println!(
        "postgres-workers/approval resolve (bench process) → next step committed (a worker process), 2 workers: \
         n={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms — target p99 < 5 ms (SQLite's): {}; \
         resumed per worker {}, {moved} on the other worker than the one that paused them",
        to_step.len(),
        ms(percentile(&to_step, 50.0)),
        ms(p99),
        ms(to_step.last().copied().unwrap_or_default()),
        verdict(p99 < Duration::from_millis(5)),
        split.join(" / "),
    );
    calls.sort();
    println!(
        "postgres-workers/approval resolve call (its transaction, from the bench process): \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&calls, 50.0)),
        ms(percentile(&calls, 99.0)),
        ms(calls.last().copied().unwrap_or_default()),
    );
    let (p50, p99, max) = spread_ms(&mut lags);
    println!(
        "postgres-workers/commit→subscriber, one commit at a time (the `tool.started` above): \
         p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms (event times are whole ms)"
    );
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Signal {
    /// The worker is dead: the server frees its liveness lock with its connections.
    Kill,
    /// The worker is alive but silent: only its leases expire.
    Stop,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Kill => "SIGKILL",
            Signal::Stop => "SIGSTOP",
        }
    }
}

/// 1,000 requests in flight on worker A, worker B beside it; A gets `signal` and B
/// takes the requests back. Times from the signal: the leases' expiry, requeued
/// (attempt 2), re-claimed (running on B), resumed (a new step committed).
async fn recovery(bin: &Path, signal: Signal, lease_secs: u64) -> Result<()> {
    let slow = Agent {
        name: "slow",
        max_steps: 1_000_000,
        turns: vec![
            workspace::tool_turn("list_files", 1, 100_000, TURN_MS),
            workspace::text_turn("done"),
        ],
    };
    let mut f = Fleet::new(bin, "pgw-recovery", IN_FLIGHT, vec![slow], Some(lease_secs))?;
    admit_many(&f.h, "slow", IN_FLIGHT).await?;
    let a = f.spawn(1)?;
    let a_id = f.alive(&a).await?.remove(0);
    let start = Instant::now();
    loop {
        f.check_running()?;
        let reqs = all_requests(&f.h).await?;
        let on_a = reqs
            .iter()
            .filter(|r| r.status == RequestStatus::Running && r.worker_id.as_ref() == Some(&a_id))
            .filter(|r| r.steps >= 1)
            .count();
        if on_a == IN_FLIGHT {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!(
                "only {on_a} of {IN_FLIGHT} requests running with a step on worker A after 120 s"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = f.spawn(1)?;
    let b_id = f.alive(&b).await?.remove(0);
    // Let A's runs get into the middle of a model turn.
    tokio::time::sleep(Duration::from_millis(TURN_MS / 2)).await;
    let cursor = f.h.store().last_seq().await?;

    f.serves[a[0]].signal(match signal {
        Signal::Kill => libc::SIGKILL,
        Signal::Stop => libc::SIGSTOP,
    });
    let t0 = Instant::now();
    let t0_wall = wall_ms();
    // Untimed: what A left, frozen now (it commits nothing more).
    let at_signal = all_requests(&f.h).await?;
    let steps_then: HashMap<RequestId, u32> =
        at_signal.iter().map(|r| (r.id.clone(), r.steps)).collect();
    let on_a = at_signal
        .iter()
        .filter(|r| r.status == RequestStatus::Running && r.worker_id.as_ref() == Some(&a_id))
        .count();
    if on_a < IN_FLIGHT {
        // Seen under heavy load with a 5 s lease: A's heartbeat came late, its
        // leases lapsed while it was alive, and B's safety net took its requests.
        bail!(
            "before the {} only {on_a} of {IN_FLIGHT} requests still ran on worker A              (lease_secs {lease_secs}): its leases lapsed while it was alive and B took the rest",
            signal.name()
        );
    }
    let (lease_min, lease_max) = leases_of(&f.schema, &a_id).await?;

    let mut requeued: HashMap<RequestId, Duration> = HashMap::new();
    let mut reclaimed: HashMap<RequestId, Duration> = HashMap::new();
    let mut resumed: HashMap<RequestId, Duration> = HashMap::new();
    let limit = Duration::from_secs(lease_secs + 60);
    while resumed.len() < IN_FLIGHT {
        if t0.elapsed() > limit {
            bail!(
                "{} s after {}: {} requeued, {} re-claimed by B, {} resumed of {IN_FLIGHT}\n{}",
                limit.as_secs(),
                signal.name(),
                requeued.len(),
                reclaimed.len(),
                resumed.len(),
                f.log_tail()
            );
        }
        let now = t0.elapsed();
        for r in all_requests(&f.h).await? {
            if r.attempt < 2 {
                continue;
            }
            requeued.entry(r.id.clone()).or_insert(now);
            if r.worker_id.as_ref() == Some(&b_id) {
                reclaimed.entry(r.id.clone()).or_insert(now);
                if r.steps > steps_then.get(&r.id).copied().unwrap_or(u32::MAX) {
                    resumed.entry(r.id.clone()).or_insert(now);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Why B took them: from the `request.reclaimed` events (A is killed first, so
    // no transaction of a stopped A holds back the events' watermark).
    f.serves[a[0]].signal(libc::SIGKILL);
    let reasons = reclaim_reasons(&f.h, cursor, IN_FLIGHT).await?;
    let (requeued, reclaimed, resumed) = (sorted(&requeued), sorted(&reclaimed), sorted(&resumed));
    let expiry = |t: i64| (t as f64 - t0_wall) / 1e3;
    let last = |v: &[Duration]| v.last().copied().unwrap_or_default();
    println!(
        "postgres-workers/recovery {} of worker A, lease_secs {lease_secs}{}: A's {} leases expire {:.2} – {:.2} s after the signal; \
         requeued (attempt 2) {:.2} – {:.2} s; re-claimed by B {:.2} – {:.2} s (p50 {:.2} s); \
         resumed (a new step, after a {TURN_MS} ms model turn) all at {:.2} s; reclaim reasons: {reasons}",
        signal.name(),
        if lease_secs == DEFAULT_LEASE {
            " (the default)"
        } else {
            ""
        },
        thousands(IN_FLIGHT as u64),
        expiry(lease_min),
        expiry(lease_max),
        requeued[0].as_secs_f64(),
        last(&requeued).as_secs_f64(),
        reclaimed[0].as_secs_f64(),
        last(&reclaimed).as_secs_f64(),
        percentile(&reclaimed, 50.0).as_secs_f64(),
        last(&resumed).as_secs_f64(),
    );
    let all_reclaimed = last(&reclaimed).as_secs_f64();
    let after_expiry = all_reclaimed - expiry(lease_max);
    println!(
        "postgres-workers/recovery {} lease_secs {lease_secs}: all {} re-claimed {:.2} s after the signal, \
         {} — target < 2 s after lease expiry: {}",
        signal.name(),
        thousands(IN_FLIGHT as u64),
        all_reclaimed,
        if after_expiry < 0.0 {
            format!(
                "{:.2} s before the last lease expired (A's liveness lock was free)",
                -after_expiry
            )
        } else {
            format!("{after_expiry:.2} s after the last lease expired")
        },
        verdict(after_expiry < 2.0)
    );
    Ok(())
}

fn sorted(m: &HashMap<RequestId, Duration>) -> Vec<Duration> {
    let mut v: Vec<Duration> = m.values().copied().collect();
    v.sort();
    v
}

/// The earliest and latest lease expiry (ms since the epoch) of the requests
/// `worker` runs, read from the table: the store's API does not show leases.
async fn leases_of(schema: &TestSchema, worker: &WorkerId) -> Result<(i64, i64)> {
    let (client, conn) = tokio_postgres::connect(&schema.config.url, tokio_postgres::NoTls)
        .await
        .context("connecting to the bench database")?;
    let task = tokio::spawn(conn);
    let row = client
        .query_one(
            &format!(
                "SELECT min(lease_expires_at), max(lease_expires_at) FROM \"{}\".requests \
                 WHERE status = 'running' AND worker_id = $1",
                schema.config.schema
            ),
            &[&worker.as_str()],
        )
        .await?;
    drop(client);
    let _ = task.await;
    let (lo, hi): (Option<i64>, Option<i64>) = (row.get(0), row.get(1));
    match (lo, hi) {
        (Some(lo), Some(hi)) => Ok((lo, hi)),
        _ => bail!("worker {worker} holds no lease"),
    }
}

/// Counts of the `request.reclaimed` events' reasons after `cursor`, waiting (at
/// most 30 s) until `n` are visible.
async fn reclaim_reasons(h: &Harness, cursor: i64, n: usize) -> Result<String> {
    let start = Instant::now();
    loop {
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut from = cursor;
        loop {
            let page = h
                .store()
                .events_after(from, EventFilter::default(), 1000)
                .await?;
            let Some(last) = page.last() else { break };
            from = last.seq;
            for e in page
                .iter()
                .filter(|e| e.kind == EventKind::RequestReclaimed)
            {
                let reason = e.payload["reason"].as_str().unwrap_or("?");
                // "its lease expired at <time> without renewal": one bucket.
                let key = if reason.starts_with("its lease expired") {
                    "lease expired"
                } else {
                    reason
                };
                *counts.entry(key.to_string()).or_default() += 1;
            }
        }
        if counts.values().sum::<usize>() >= n {
            let mut v: Vec<String> = counts.iter().map(|(k, c)| format!("{c} × {k}")).collect();
            v.sort();
            return Ok(v.join(", "));
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!(
                "only {} request.reclaimed events visible 30 s after the re-claims",
                counts.values().sum::<usize>()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
