//! `paused`: resident memory with 1,000 requests paused on an approval and a
//! worker running. Measured twice: in the process that ran them until they paused,
//! and in a fresh worker process started on the same store (hidden subcommand
//! `paused-child WORKSPACE`), which shows what the paused requests themselves hold.

use crate::util::*;
use crate::workspace::{self, Spec};
use anyhow::{Context, Result, bail};
use harness_engine::{Harness, WorkerOptions};
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const REQUESTS: usize = 1000;

pub async fn run() -> Result<()> {
    println!(
        "paused: {} requests paused on an approval, worker running",
        thousands(REQUESTS as u64)
    );
    let dir = temp_dir("paused")?;
    workspace::write(
        dir.path(),
        &Spec {
            max_concurrent_requests: REQUESTS,
            queue_capacity: 2 * REQUESTS,
            agents: vec![workspace::gated_agent("gated")],
            ..Spec::default()
        },
    )?;
    {
        let h = Harness::open(dir.path())?;
        let worker = h.start_worker(WorkerOptions::default()).await?;
        let idle = rss();
        admit_many(&h, "gated", REQUESTS).await?;
        wait_stats(
            &h,
            Duration::from_millis(10),
            Duration::from_secs(60),
            "every request to pause",
            |s| s.pending_approvals as usize >= REQUESTS && s.running == 0 && s.queued == 0,
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss();
        println!(
            "rss/paused in-process: {} with {} paused (worker idle before admission: {}; peak {}; {} threads) \
             — target < 50 MB: {}",
            human_bytes(now),
            thousands(REQUESTS as u64),
            human_bytes(idle),
            human_bytes(peak_rss()),
            threads(),
            verdict(now < 50 * 1000 * 1000)
        );
        // tokio lets idle blocking threads exit after 10 s.
        tokio::time::sleep(Duration::from_secs(11)).await;
        println!(
            "rss/paused in-process 11 s later: {} ({} threads)",
            human_bytes(rss()),
            threads()
        );
        worker.stop().await?;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let exe = std::env::current_exe()?;
    let out = Command::new(&exe)
        .arg("paused-child")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {} paused-child", exe.display()))?;
    let mut line = String::new();
    let mut child = out;
    std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    child.wait()?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [rss_now, waiting, threads] = fields[..] else {
        bail!("paused-child said {line:?}");
    };
    println!(
        "rss/paused fresh worker process: {} with {} requests waiting for approval ({threads} threads) \
         — target < 50 MB: {}",
        human_bytes(rss_now),
        thousands(waiting),
        verdict(rss_now < 50 * 1000 * 1000)
    );
    Ok(())
}

/// The hidden child: opens the store, starts a worker, lets it settle, reports RSS.
pub async fn child(ws: &Path) -> Result<()> {
    let h = Harness::open(ws)?;
    let worker = h.start_worker(WorkerOptions::default()).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = h.now();
    let s = h.store().stats(now, now).await?;
    println!("{} {} {}", rss(), s.waiting_approval, threads());
    worker.stop().await?;
    Ok(())
}
