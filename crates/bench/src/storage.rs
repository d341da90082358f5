//! `storage`: bytes stored per step at the end of sessions of 100, 1,000 and
//! 5,000 steps — flat in session length means no record grows with the
//! conversation (each step stores only itself).

use crate::util::*;
use crate::workspace::{self, Spec};
use anyhow::{Result, bail};
use harness_core::RequestStatus;
use harness_engine::WorkerOptions;
use harness_store::synthetic::{StorageReport, storage_report};
use std::path::Path;
use std::time::{Duration, Instant};

const LENGTHS: [u64; 3] = [100, 1000, 5000];

pub async fn run() -> Result<()> {
    println!(
        "storage: one session per store; sizes after a WAL checkpoint and VACUUM, minus an empty store \
         (schema, one worker row)"
    );
    let empty = session_store(None).await?;
    println!(
        "storage/empty store: {} ({} pages of {} B)",
        human_bytes(empty.db_bytes()),
        empty.page_count,
        empty.page_size
    );
    let mut prev: Option<(u64, u64)> = None;
    let mut increments = Vec::new();
    for n in LENGTHS {
        let r = session_store(Some(n)).await?;
        let total = r.db_bytes().saturating_sub(empty.db_bytes());
        let journal = |name: &str| {
            name == "steps"
                || name == "events"
                || name.starts_with("sqlite_autoindex_steps")
                || name == "events_request"
        };
        let (jb, jp) = r.bytes_of(journal);
        let (eb, ep) = empty.bytes_of(journal);
        let jb = jb.saturating_sub(eb) as f64 / n as f64;
        let jp = jp.saturating_sub(ep) as f64 / n as f64;
        let increment = prev.map(|(pn, pb)| (total.saturating_sub(pb)) as f64 / (n - pn) as f64);
        if let Some(i) = increment {
            increments.push(i);
        }
        println!(
            "storage/session {n} steps: {:.0} B/step overall{} (db {} after VACUUM; db+wal before: {}); \
             steps+events tables and indexes {:.0} B/step, of which row payload {:.0} B/step; \
             rows: {} steps, {} events",
            total as f64 / n as f64,
            increment
                .map(|i| format!(", {i:.0} B/step for the steps added since the previous length"))
                .unwrap_or_default(),
            human_bytes(r.db_bytes()),
            human_bytes(r.files_before),
            jb,
            jp,
            thousands(r.rows_steps),
            thousands(r.rows_events),
        );
        prev = Some((n, total));
    }
    let (lo, hi) = increments
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let spread = (hi - lo) / lo * 100.0;
    println!(
        "storage/flatness: a step costs {:.0}..{:.0} B whether the session is at 100 or at 5,000 steps \
         ({spread:.1}% apart; the overall average only falls as the request's fixed rows are amortised) \
         — target flat: {}",
        lo,
        hi,
        verdict(spread <= 5.0)
    );
    Ok(())
}

/// A fresh store holding one completed session of `steps` steps (or none), measured.
async fn session_store(steps: Option<u64>) -> Result<StorageReport> {
    let dir = temp_dir("storage")?;
    let n = steps.unwrap_or(4);
    workspace::write(
        dir.path(),
        &Spec {
            agents: vec![workspace::steps_agent("bench", n)],
            ..Spec::default()
        },
    )?;
    {
        let h = crate::util::open(dir.path(), None)?;
        let worker = h.start_worker(WorkerOptions::default()).await?;
        if steps.is_some() {
            let req = h.request(None, "bench", "go").await?;
            let start = Instant::now();
            loop {
                let r = h.get_request(&req.id).await?;
                if r.status.is_terminal() {
                    if r.status != RequestStatus::Completed || r.steps as u64 != n {
                        bail!(
                            "session ended {} after {} steps: {:?}",
                            r.status,
                            r.steps,
                            r.error
                        );
                    }
                    break;
                }
                if start.elapsed() > Duration::from_secs(120) {
                    bail!("session of {n} steps did not finish in 120 s");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        worker.stop().await?;
    }
    // Let the store's writer thread close its connection.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(storage_report(&store_dir(dir.path()), true)?)
}

fn store_dir(ws: &Path) -> std::path::PathBuf {
    ws.join(".agent-harness")
}
