//! `approval`: approval resolved → next step committed, p50/p99 over 200 requests
//! paused on an approval, with a worker running.
//!
//! One approval at a time: subscribe to the request's events from the current
//! cursor, call `resolve_approval`, and stop the clock when the subscription
//! yields the `tool.started` step the worker commits when it resumes the call.
//! Then wait for the request to complete, so measurements do not overlap.

use crate::util::*;
use crate::workspace::{self, Spec};
use anyhow::Result;
use harness_core::*;
use harness_engine::{Harness, WorkerOptions};
use std::time::Duration;

const REQUESTS: usize = 200;

pub async fn run() -> Result<()> {
    println!(
        "approval: {REQUESTS} requests paused on an approval-required tool; resolved one at a time with a worker running"
    );
    let dir = temp_dir("approval")?;
    workspace::write(
        dir.path(),
        &Spec {
            max_concurrent_requests: 1000,
            queue_capacity: 2000,
            agents: vec![workspace::gated_agent("gated")],
            ..Spec::default()
        },
    )?;
    let h = Harness::open(dir.path())?;
    let worker = h.start_worker(WorkerOptions::default()).await?;
    admit_many(&h, "gated", REQUESTS).await?;
    wait_stats(
        &h,
        Duration::from_millis(10),
        Duration::from_secs(60),
        "every request to pause on its approval",
        |s| s.pending_approvals as usize >= REQUESTS && s.running == 0 && s.queued == 0,
    )
    .await?;
    let pending = h
        .list_approvals(ApprovalFilter {
            statuses: vec![ApprovalStatus::Pending],
            ..Default::default()
        })
        .await?;
    let mut to_step = Vec::with_capacity(pending.len());
    let mut resolve_call = Vec::with_capacity(pending.len());
    for a in &pending {
        let r = resolve_and_follow(&h, a, String::new).await?;
        resolve_call.push(r.call);
        to_step.push(r.to_step);
    }
    worker.stop().await?;
    to_step.sort();
    resolve_call.sort();
    let p99 = percentile(&to_step, 99.0);
    println!(
        "approval/resolve→next step: n={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms — target p99 < 5 ms: {}",
        to_step.len(),
        ms(percentile(&to_step, 50.0)),
        ms(p99),
        ms(to_step.last().copied().unwrap_or_default()),
        verdict(p99 < Duration::from_millis(5))
    );
    println!(
        "approval/resolve call alone (commit of the decision): p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&resolve_call, 50.0)),
        ms(percentile(&resolve_call, 99.0)),
    );
    Ok(())
}
