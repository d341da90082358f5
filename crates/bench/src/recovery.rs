//! `recovery`: time from restart to all of 1,000 in-flight requests resumed after
//! SIGKILL.
//!
//! A child process (this binary, hidden subcommand `serve-child WORKSPACE`) runs a
//! worker over 1,000 requests whose scripted model takes a while per turn, so they
//! are all `running` with committed steps behind them. The parent SIGKILLs it,
//! then opens the workspace in-process, starts a worker and follows the event log
//! from the cursor it had at restart until every request was re-claimed (attempt
//! ≥ 2) and committed a new step.

use crate::util::*;
use crate::workspace::{self, Agent, Spec};
use anyhow::{Context, Result, bail};
use harness_core::{EventFilter, EventKind, RequestId, RequestStatus};
use harness_engine::{Harness, WorkerOptions};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const REQUESTS: usize = 1000;

pub async fn run(latency_ms: u64) -> Result<()> {
    println!(
        "recovery: {} requests in flight (scripted model {latency_ms} ms per turn, max_concurrent_requests {}) \
         in a child worker, SIGKILLed; restart in-process",
        thousands(REQUESTS as u64),
        REQUESTS
    );
    let dir = temp_dir("recovery")?;
    let ws = dir.path();
    workspace::write(
        ws,
        &Spec {
            max_concurrent_requests: REQUESTS,
            queue_capacity: 2 * REQUESTS,
            agents: vec![Agent {
                name: "slow",
                max_steps: 1_000_000,
                turns: vec![
                    workspace::tool_turn("list_files", 1, 100_000, latency_ms),
                    workspace::text_turn("done"),
                ],
            }],
            ..Spec::default()
        },
    )?;
    let ids: Vec<RequestId> = {
        let h = Harness::open(ws)?;
        admit_many(&h, "slow", REQUESTS)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect()
    };

    // The child worker: wait until every request is running with a step behind it.
    let exe = std::env::current_exe()?;
    let mut child = Command::new(&exe)
        .arg("serve-child")
        .arg(ws)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {} serve-child", exe.display()))?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line)?;
    if !line.starts_with("ready") {
        let _ = child.kill();
        bail!("serve-child did not start: {line:?}");
    }
    let before_kill = {
        let h = Harness::inspect(ws)?;
        let start = Instant::now();
        loop {
            let reqs = all_requests(&h).await?;
            let running = count_status(&reqs, RequestStatus::Running);
            let min_steps = reqs.iter().map(|r| r.steps).min().unwrap_or(0);
            if running == REQUESTS && min_steps >= 1 {
                break;
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                bail!("only {running} of {REQUESTS} requests running after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let them get into the middle of a model turn.
        tokio::time::sleep(Duration::from_millis(latency_ms / 2 + 50)).await;
        all_requests(&h).await?
    };
    // SIGKILL: no graceful stop, the store keeps whatever was committed.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
    }
    child.wait()?;
    let steps_before: u64 = before_kill.iter().map(|r| r.steps as u64).sum();
    println!(
        "recovery/setup: child killed with {} running requests ({} steps committed, ≥ 1 each)",
        thousands(count_status(&before_kill, RequestStatus::Running) as u64),
        thousands(steps_before)
    );

    // Restart, measured from here.
    let t0 = Instant::now();
    let h = Harness::open(ws)?;
    let opened = t0.elapsed();
    let seq0 = h.store().last_seq().await?;
    let worker = h.start_worker(WorkerOptions::default()).await?;
    let started = t0.elapsed();
    let recovered = worker.recovered.len();
    let mut sub = h.subscribe(seq0, EventFilter::default());
    let mut claimed: HashMap<RequestId, Duration> = HashMap::with_capacity(REQUESTS);
    let mut resumed: HashMap<RequestId, Duration> = HashMap::with_capacity(REQUESTS);
    let wanted: std::collections::HashSet<&RequestId> = ids.iter().collect();
    while resumed.len() < REQUESTS {
        let ev = match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
            Ok(ev) => ev?,
            Err(_) => bail!(
                "after 30 s without events: {} re-claimed, {} resumed",
                claimed.len(),
                resumed.len()
            ),
        };
        let Some(rid) = ev.request_id.clone() else {
            continue;
        };
        if !wanted.contains(&rid) {
            continue;
        }
        match ev.kind {
            EventKind::RequestStarted => {
                let attempt = ev
                    .payload
                    .get("attempt")
                    .and_then(|a| a.as_u64())
                    .unwrap_or(0);
                if attempt >= 2 {
                    claimed.entry(rid).or_insert_with(|| t0.elapsed());
                }
            }
            EventKind::ModelTurn
            | EventKind::ToolStarted
            | EventKind::ToolCompleted
            | EventKind::ToolInterrupted
            | EventKind::RequestCompleted
            | EventKind::RequestFailed
            | EventKind::RequestWaitingApproval
                if claimed.contains_key(&rid) =>
            {
                resumed.entry(rid).or_insert_with(|| t0.elapsed());
            }
            _ => {}
        }
    }
    let all_resumed = t0.elapsed();
    let mut c: Vec<Duration> = claimed.values().copied().collect();
    let mut r: Vec<Duration> = resumed.values().copied().collect();
    c.sort();
    r.sort();
    // Check the claim against the records, untimed.
    let reqs = all_requests(&h).await?;
    let min_attempt = reqs.iter().map(|r| r.attempt).min().unwrap_or(0);
    worker.stop().await?;
    println!(
        "recovery/restart: store opened in {:.1} ms; worker started (recovery re-queued {}) at {:.1} ms",
        ms(opened),
        thousands(recovered as u64),
        ms(started)
    );
    println!(
        "recovery/reclaimed: all {} re-claimed (attempt ≥ 2; min attempt now {min_attempt}) at {:.0} ms (p50 {:.0} ms)",
        thousands(REQUESTS as u64),
        ms(c.last().copied().unwrap_or_default()),
        ms(percentile(&c, 50.0)),
    );
    let model = Duration::from_millis(latency_ms);
    println!(
        "recovery/resumed: all {} resumed with a new committed step in {:.0} ms (p50 {:.0} ms); \
         this includes one scripted model turn of {latency_ms} ms, so the runtime's part is ≈ {:.0} ms \
         — target < 2 s: {}",
        thousands(REQUESTS as u64),
        ms(all_resumed),
        ms(percentile(&r, 50.0)),
        ms(all_resumed.saturating_sub(model)),
        verdict(all_resumed < Duration::from_secs(2))
    );
    Ok(())
}

/// The hidden child: a worker on `ws` until it is killed.
pub async fn serve_child(ws: &Path) -> Result<()> {
    let h = Harness::open(ws)?;
    let _worker = h.start_worker(WorkerOptions::default()).await?;
    println!("ready {}", std::process::id());
    use std::io::Write;
    std::io::stdout().flush()?;
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
