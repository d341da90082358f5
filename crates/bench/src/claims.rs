//! `claims`: the queue under a backlog. 10,000 requests queued across 100 sessions:
//! the latency of `Store::claim` (p50/p99, the claim alone, store level), then the
//! worker draining the same backlog (steps/s end to end). Each twice: without
//! limits, and with every call of the requests holding a resource pair and a tool
//! limit (`uses: [db, gpu]`, `max_concurrent`) sized so they never run out: the
//! cost of limits themselves. Then once with limits that bind (8 units for 100
//! slots): calls park and are claimed again, and the figure says what that costs.

use crate::util::*;
use crate::workspace::{self, Spec};
use anyhow::{Result, bail};
use harness_core::*;
use harness_engine::WorkerOptions;
use harness_store::{Acquire, StepCommit};
use std::time::{Duration, Instant};

const QUEUED: usize = 10_000;
const SESSIONS: usize = 100;
/// Claims measured at the store level (each claim of up to `CLAIM_LIMIT`, then its
/// requests run one call and complete so their sessions have a next one).
const CLAIMS: usize = 500;
const CLAIM_LIMIT: usize = 8;
const STEPS: u64 = 4;
/// Limits that never run out: as many units as worker slots.
const ROOMY: u32 = SESSIONS as u32;
/// Limits that bind: fewer units than worker slots.
const TIGHT: u32 = 8;

pub async fn run() -> Result<()> {
    println!(
        "claims: {} requests queued across {SESSIONS} sessions; {} claims of up to {CLAIM_LIMIT} \
         (store level), then a worker drains {} requests × {STEPS} steps; without limits, with \
         limits of {ROOMY} units (never full: their own cost), with limits of {TIGHT} (binding)",
        thousands(QUEUED as u64),
        thousands(CLAIMS as u64),
        thousands(QUEUED as u64),
    );
    let free = claim_latency(None).await?;
    let limited = claim_latency(Some(ROOMY)).await?;
    println!(
        "claims/latency: limits cost {:.1}% of the claim + call + complete loop's throughput",
        (1.0 - limited / free) * 100.0
    );
    let free = drain(None).await?;
    let limited = drain(Some(ROOMY)).await?;
    println!(
        "claims/drain: limits cost {:.1}% of steps/s (target: no more than 10%)",
        (1.0 - limited / free) * 100.0
    );
    drain(Some(TIGHT)).await?;
    Ok(())
}

fn label(limits: Option<u32>) -> String {
    match limits {
        None => "no limits".to_string(),
        Some(n) => format!("limits of {n}"),
    }
}

async fn backlog(
    max_concurrent: usize,
    limits: Option<u32>,
) -> Result<(tempfile::TempDir, harness_engine::Harness)> {
    let dir = temp_dir("claims")?;
    let tool = if limits.is_some() {
        "limited_list"
    } else {
        "list_files"
    };
    workspace::write(
        dir.path(),
        &Spec {
            max_concurrent_requests: max_concurrent,
            queue_capacity: 2 * QUEUED,
            agents: vec![workspace::Agent {
                name: "bench",
                max_steps: 1_000_000,
                turns: workspace::turns_for_steps_with(tool, STEPS),
            }],
            limits,
            ..Spec::default()
        },
    )?;
    let h = open(dir.path(), None)?;
    let sessions: Vec<SessionId> = (0..SESSIONS)
        .map(|i| SessionId::parse(&format!("bench-{i}")))
        .collect::<Result<_, _>>()?;
    for i in 0..QUEUED {
        // Interleaved, as if the sessions' clients submitted at once.
        let s = sessions[i % SESSIONS].clone();
        h.request(Some(s), "bench", &format!("bench input {i}"))
            .await?;
    }
    Ok((dir, h))
}

/// Claim + one call (holding the limits, if any) + complete, at the store level.
/// Returns requests/s.
async fn claim_latency(limits: Option<u32>) -> Result<f64> {
    let (_dir, h) = backlog(CLAIM_LIMIT, limits).await?;
    let store = h.store();
    let worker = WorkerId::generate();
    let keys: Vec<Limit> = match limits {
        Some(n) => vec![
            Limit::resource("db", n),
            Limit::resource("gpu", n),
            Limit::tool("limited_list", n),
        ],
        None => vec![],
    };
    let mut lat = Vec::with_capacity(CLAIMS);
    let mut claimed_total = 0usize;
    let start = Instant::now();
    for _ in 0..CLAIMS {
        let t = Instant::now();
        let claimed = store.claim(&worker, CLAIM_LIMIT, h.now()).await?;
        lat.push(t.elapsed());
        if claimed.is_empty() {
            bail!("claim returned nothing with a backlog queued");
        }
        claimed_total += claimed.len();
        for r in &claimed {
            let call = ToolCall {
                call_id: CallId::generate(),
                tool: "limited_list".into(),
                arguments: serde_json::json!({}),
            };
            let step = |status: StepStatus| Step {
                request_id: r.id.clone(),
                idx: 0,
                agent: "bench".into(),
                status,
                started_at: h.now(),
                finished_at: None,
                body: StepBody::ToolCall {
                    call: call.clone(),
                    approval_id: None,
                    outcome: None,
                    child_request_id: None,
                },
            };
            let mut started =
                StepCommit::new(&r.id, &r.session_id, h.now()).insert(step(StepStatus::Started));
            if !keys.is_empty() {
                started = started.acquire(Acquire {
                    call_id: call.call_id.clone(),
                    tool: call.tool.clone(),
                    root_id: r.id.clone(),
                    limits: keys.clone(),
                    until: h.now().plus(Duration::from_secs(60)),
                });
            }
            store.commit_step(started).await?;
            store
                .commit_step(
                    StepCommit::new(&r.id, &r.session_id, h.now())
                        .update(step(StepStatus::Completed))
                        .output("done"),
                )
                .await?;
        }
    }
    let elapsed = start.elapsed();
    if !store.holds().await?.is_empty() {
        bail!("calls that completed still hold limits");
    }
    lat.sort();
    let rate = claimed_total as f64 / elapsed.as_secs_f64();
    println!(
        "claims/latency ({}): p50 {:.0} µs, p99 {:.0} µs per claim of up to {CLAIM_LIMIT} \
         ({} requests claimed; claim + call + complete loop {} requests/s), queue {} → {}",
        label(limits),
        us(percentile(&lat, 50.0)),
        us(percentile(&lat, 99.0)),
        thousands(claimed_total as u64),
        thousands(rate as u64),
        thousands(QUEUED as u64),
        thousands((QUEUED - claimed_total) as u64),
    );
    Ok(rate)
}

/// A worker drains the backlog; returns steps/s.
async fn drain(limits: Option<u32>) -> Result<f64> {
    let (_dir, h) = backlog(SESSIONS, limits).await?;
    let start = Instant::now();
    let worker = h.start_worker(WorkerOptions::default()).await?;
    wait_stats(
        &h,
        Duration::from_millis(10),
        Duration::from_secs(600),
        "the backlog to drain",
        |s| (s.completed + s.failed + s.cancelled) as usize >= QUEUED,
    )
    .await?;
    let elapsed = start.elapsed();
    worker.stop().await?;
    let reqs = all_requests(&h).await?;
    let completed = count_status(&reqs, RequestStatus::Completed);
    if completed != QUEUED {
        bail!("only {completed} of {QUEUED} requests completed");
    }
    let waits = h
        .store()
        .events_after(0, EventFilter::default(), 0)
        .await?
        .iter()
        .filter(|e| e.kind == EventKind::RequestWaiting)
        .count();
    let steps: u64 = reqs.iter().map(|r| r.steps as u64).sum();
    let rate = steps as f64 / elapsed.as_secs_f64();
    println!(
        "claims/drain ({}): {} steps in {:.0} ms → {} steps/s (max_concurrent_requests {SESSIONS}; \
         {} calls parked)",
        label(limits),
        thousands(steps),
        ms(elapsed),
        thousands(rate as u64),
        thousands(waits as u64),
    );
    Ok(rate)
}
