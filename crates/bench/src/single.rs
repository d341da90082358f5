//! `single`: µs per durable step for one session of 1,000 steps, at
//! `synchronous = NORMAL` and `FULL`.

use crate::util::{median, temp_dir, thousands, us, verdict};
use crate::workspace::{self, Spec};
use anyhow::{Result, bail};
use harness_core::RequestStatus;
use harness_engine::{Harness, WorkerOptions};
use harness_store::Durability;
use std::time::{Duration, Instant};

const STEPS: u64 = 1000;
const RUNS: usize = 5;

pub async fn run(only: Option<String>) -> Result<()> {
    println!(
        "single: one session of {} steps (one commit per step: a tool call's `started` row rides \
         with the commit before it), median of {RUNS} runs after a warm-up",
        thousands(STEPS),
    );
    for (label, durability, target) in [
        ("normal", Durability::Normal, 120.0),
        ("full", Durability::Full, 300.0),
    ] {
        if only.as_deref().is_some_and(|o| o != label) {
            continue;
        }
        let dir = temp_dir("single")?;
        workspace::write(
            dir.path(),
            &Spec {
                agents: vec![
                    workspace::steps_agent("warm", 100),
                    workspace::steps_agent("bench", STEPS),
                ],
                ..Spec::default()
            },
        )?;
        let h = crate::util::open(dir.path(), Some(durability))?;
        let worker = h.start_worker(WorkerOptions::default()).await?;
        one_session(&h, "warm").await?;
        let mut samples = Vec::with_capacity(RUNS);
        let mut steps = 0;
        for _ in 0..RUNS {
            let (d, n) = one_session(&h, "bench").await?;
            samples.push(d);
            steps = n;
        }
        worker.stop().await?;
        let per_step: Vec<Duration> = samples.iter().map(|d| *d / steps.max(1)).collect();
        let med = median(&per_step);
        let min = per_step.iter().min().copied().unwrap_or_default();
        let max = per_step.iter().max().copied().unwrap_or_default();
        println!(
            "steps/single-session {label}: {} steps, {:.1} µs/step (min {:.1}, max {:.1}; {:.0} ms per session) \
             — target ≤ {target:.0} µs: {}",
            thousands(steps as u64),
            us(med),
            us(min),
            us(max),
            med.as_secs_f64() * 1e3 * steps as f64,
            verdict(us(med) <= target)
        );
    }
    Ok(())
}

/// Admits one request and waits for it to complete; returns the time and its steps.
pub(crate) async fn one_session(h: &Harness, agent: &str) -> Result<(Duration, u32)> {
    let start = Instant::now();
    let req = h.request(None, agent, "go").await?;
    loop {
        let r = h.get_request(&req.id).await?;
        if r.status.is_terminal() {
            if r.status != RequestStatus::Completed {
                bail!("bench request {} ended {}: {:?}", r.id, r.status, r.error);
            }
            return Ok((start.elapsed(), r.steps));
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("bench request {} did not finish in 120 s", r.id);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
