//! `approval`: approval resolved → next step committed, p50/p99 over 200 requests
//! paused on an approval, with a worker running.
//!
//! One approval at a time: subscribe to the request's events from the current
//! cursor, call `resolve_approval`, and stop the clock when the subscription
//! yields the `tool.started` step the worker commits when it resumes the call.
//! Then wait for the request to complete, so measurements do not overlap.

use crate::util::*;
use crate::workspace::{self, Spec};
use anyhow::{Result, bail};
use harness_core::*;
use harness_engine::{Harness, WorkerOptions};
use std::time::{Duration, Instant};

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
        resolve_call.push(t0.elapsed());
        let mut stepped = false;
        loop {
            let ev = match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
                Ok(ev) => ev?,
                Err(_) => bail!("request {} did not continue within 10 s", a.request_id),
            };
            if ev.kind == EventKind::ToolStarted && !stepped {
                to_step.push(t0.elapsed());
                stepped = true;
            }
            if ev.kind.as_str().starts_with("request.") && ev.kind != EventKind::RequestStarted {
                if ev.kind != EventKind::RequestCompleted {
                    bail!("request {} ended with {}", a.request_id, ev.kind);
                }
                break;
            }
        }
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
