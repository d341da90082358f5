//! `claims`: the queue under a backlog. 10,000 requests queued across 100 sessions:
//! the latency of `Store::claim` (p50/p99, the claim alone, store level), then the
//! worker draining the same backlog (steps/s end to end).

use crate::util::*;
use crate::workspace::{self, Spec};
use anyhow::{Result, bail};
use harness_core::{RequestStatus, SessionId, WorkerId};
use harness_engine::WorkerOptions;
use harness_store::StepCommit;
use std::time::{Duration, Instant};

const QUEUED: usize = 10_000;
const SESSIONS: usize = 100;
/// Claims measured at the store level (each claim of up to `CLAIM_LIMIT`, then its
/// requests are completed so their sessions have a next one).
const CLAIMS: usize = 500;
const CLAIM_LIMIT: usize = 8;
const STEPS: u64 = 4;

pub async fn run() -> Result<()> {
    println!(
        "claims: {} requests queued across {SESSIONS} sessions; {} claims of up to {CLAIM_LIMIT} \
         (store level), then a worker drains {} requests × {STEPS} steps",
        thousands(QUEUED as u64),
        thousands(CLAIMS as u64),
        thousands(QUEUED as u64),
    );
    claim_latency().await?;
    drain().await
}

async fn backlog(max_concurrent: usize) -> Result<(tempfile::TempDir, harness_engine::Harness)> {
    let dir = temp_dir("claims")?;
    workspace::write(
        dir.path(),
        &Spec {
            max_concurrent_requests: max_concurrent,
            queue_capacity: 2 * QUEUED,
            agents: vec![workspace::steps_agent("bench", STEPS)],
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

async fn claim_latency() -> Result<()> {
    let (_dir, h) = backlog(CLAIM_LIMIT).await?;
    let store = h.store();
    let worker = WorkerId::generate();
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
            store
                .commit_step(StepCommit::new(&r.id, &r.session_id, h.now()).output("done"))
                .await?;
        }
    }
    let elapsed = start.elapsed();
    lat.sort();
    println!(
        "claims/latency: p50 {:.0} µs, p99 {:.0} µs per claim of up to {CLAIM_LIMIT} \
         ({} requests claimed; claim + complete loop {} requests/s), queue {} → {}",
        us(percentile(&lat, 50.0)),
        us(percentile(&lat, 99.0)),
        thousands(claimed_total as u64),
        thousands((claimed_total as f64 / elapsed.as_secs_f64()) as u64),
        thousands(QUEUED as u64),
        thousands((QUEUED - claimed_total) as u64),
    );
    Ok(())
}

async fn drain() -> Result<()> {
    let (_dir, h) = backlog(SESSIONS).await?;
    let start = Instant::now();
    let worker = h.start_worker(WorkerOptions::default()).await?;
    wait_stats(
        &h,
        Duration::from_millis(10),
        Duration::from_secs(300),
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
    let steps: u64 = reqs.iter().map(|r| r.steps as u64).sum();
    println!(
        "claims/drain: {} steps in {:.0} ms → {} steps/s (max_concurrent_requests {SESSIONS})",
        thousands(steps),
        ms(elapsed),
        thousands((steps as f64 / elapsed.as_secs_f64()) as u64),
    );
    Ok(())
}
