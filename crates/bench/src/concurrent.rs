//! `concurrent`: aggregate durable steps/s with 1,000 concurrent sessions × 10
//! steps, and the peak RSS while they run.

use crate::util::*;
use crate::workspace::{self, Spec};
use anyhow::{Result, bail};
use harness_core::RequestStatus;
use harness_engine::WorkerOptions;
use harness_store::Durability;
use std::time::{Duration, Instant};

const SESSIONS: usize = 1000;
const STEPS: u64 = 10;

pub async fn run(only: Option<String>) -> Result<()> {
    if only.is_none() {
        // One process per setting, so each peak RSS is its own.
        println!(
            "concurrent: {} sessions × {STEPS} steps, max_concurrent_requests {SESSIONS}, all admitted before the worker starts",
            thousands(SESSIONS as u64)
        );
        let exe = std::env::current_exe()?;
        for label in ["normal", "full"] {
            let status = std::process::Command::new(&exe)
                .args(["concurrent", "--no-header", "--quiet", "--only", label])
                .status()?;
            if !status.success() {
                bail!("concurrent --only {label} failed");
            }
        }
        return Ok(());
    }
    if !std::env::args().any(|a| a == "--quiet") {
        println!(
            "concurrent: {} sessions × {STEPS} steps, max_concurrent_requests {SESSIONS}, all admitted before the worker starts",
            thousands(SESSIONS as u64)
        );
    }
    for (label, durability) in [("normal", Durability::Normal), ("full", Durability::Full)] {
        if only.as_deref().is_some_and(|o| o != label) {
            continue;
        }
        let dir = temp_dir("concurrent")?;
        workspace::write(
            dir.path(),
            &Spec {
                max_concurrent_requests: SESSIONS,
                queue_capacity: 2 * SESSIONS,
                agents: vec![workspace::steps_agent("bench", STEPS)],
                ..Spec::default()
            },
        )?;
        let h = crate::util::open(dir.path(), Some(durability))?;
        let t = Instant::now();
        admit_many(&h, "bench", SESSIONS).await?;
        let admitted = t.elapsed();
        let rss_before = rss();
        reset_peak_rss();
        let start = Instant::now();
        let worker = h.start_worker(WorkerOptions::default()).await?;
        wait_stats(
            &h,
            Duration::from_millis(5),
            Duration::from_secs(120),
            "every request to finish",
            |s| (s.completed + s.failed + s.cancelled) as usize >= SESSIONS,
        )
        .await?;
        let elapsed = start.elapsed();
        let peak = peak_rss();
        worker.stop().await?;
        let reqs = all_requests(&h).await?;
        let completed = count_status(&reqs, RequestStatus::Completed);
        if completed != SESSIONS {
            bail!("only {completed} of {SESSIONS} requests completed");
        }
        let steps: u64 = reqs.iter().map(|r| r.steps as u64).sum();
        let rate = steps as f64 / elapsed.as_secs_f64();
        println!(
            "steps/concurrent {label}: {} sessions × {STEPS} = {} steps in {:.0} ms → {} steps/s \
             (one commit per step) — target ≥ 10,000 steps/s: {}",
            thousands(SESSIONS as u64),
            thousands(steps),
            ms(elapsed),
            thousands(rate as u64),
            verdict(rate >= 10_000.0)
        );
        println!(
            "rss/concurrent {label}: peak {} while running (before the worker started: {}; {} threads at the end); \
             admission of {} requests took {:.0} ms ({} admissions/s)",
            human_bytes(peak),
            human_bytes(rss_before),
            threads(),
            thousands(SESSIONS as u64),
            ms(admitted),
            thousands((SESSIONS as f64 / admitted.as_secs_f64()) as u64)
        );
    }
    Ok(())
}
