//! `breakdown`: the latency of the building blocks one durable step is made of —
//! a round trip through the store's writer thread (a one-row commit), a pooled
//! read, a `spawn_blocking` hop and a task spawn — to explain the `single` figure.

use crate::util::*;
use crate::workspace::{self, Spec};
use anyhow::Result;
use harness_engine::Harness;
use harness_store::Durability;
use std::time::{Duration, Instant};

const N: usize = 2000;

pub async fn run() -> Result<()> {
    println!("breakdown: sequential round trips, {N} each (median / p99 / max)");
    for (label, durability) in [("normal", Durability::Normal), ("full", Durability::Full)] {
        let dir = temp_dir("breakdown")?;
        workspace::write(
            dir.path(),
            &Spec {
                queue_capacity: 1_000_000,
                agents: vec![workspace::steps_agent("bench", 4)],
                ..Spec::default()
            },
        )?;
        let h = crate::util::open(dir.path(), Some(durability))?;
        // Run on a runtime worker thread, as the engine's tasks do.
        tokio::spawn(probe(h, label, durability == Durability::Full)).await??;
    }
    Ok(())
}

async fn probe(h: Harness, label: &'static str, full: bool) -> Result<()> {
    {
        // No worker: nothing is claimed while the probe runs.
        let id = harness_core::WorkerId::generate();
        let store = h.store().clone();
        // Admission is a real commit: session upsert, request row, one event.
        let mut a = Vec::with_capacity(N);
        for _ in 0..N / 4 {
            let t = Instant::now();
            h.request(None, "bench", "go").await?;
            a.push(t.elapsed());
        }
        show(&format!("admission commit (3 rows) {label}"), a);
        // A heartbeat of an unknown worker changes no row: SQLite writes nothing,
        // so this is the bare hop through the writer thread.
        let mut w = Vec::with_capacity(N);
        for _ in 0..N {
            let t = Instant::now();
            store.heartbeat(&id, h.now()).await?;
            w.push(t.elapsed());
        }
        show(&format!("writer round trip, no-op commit {label}"), w);
        if full {
            return Ok(());
        }
        let req = h.request(None, "bench", "go").await?;
        let mut r = Vec::with_capacity(N);
        for _ in 0..N {
            let t = Instant::now();
            store.get_request(&req.id).await?;
            r.push(t.elapsed());
        }
        show("pooled read (get_request)", r);
        let mut b = Vec::with_capacity(N);
        for _ in 0..N {
            let t = Instant::now();
            tokio::task::spawn_blocking(|| ()).await?;
            b.push(t.elapsed());
        }
        show("spawn_blocking hop", b);
        let mut s = Vec::with_capacity(N);
        for _ in 0..N {
            let t = Instant::now();
            tokio::spawn(async {}).await?;
            s.push(t.elapsed());
        }
        show("tokio::spawn hop", s);
        // The writer's pattern without SQLite: a job over std mpsc to a thread that
        // replies on a oneshot. Blocking: the thread sleeps in `recv` between jobs.
        // Spinning: it polls for 200 µs before sleeping.
        show("bare thread hop, blocking recv", bare_hops(false).await);
        show(
            "bare thread hop, thread spins 200 µs before sleeping",
            bare_hops(true).await,
        );
    }
    Ok(())
}

type Job = tokio::sync::oneshot::Sender<()>;

async fn bare_hops(spin: bool) -> Vec<Duration> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let thread = std::thread::spawn(move || {
        loop {
            let job = if spin {
                let t = Instant::now();
                loop {
                    match rx.try_recv() {
                        Ok(j) => break Some(j),
                        Err(std::sync::mpsc::TryRecvError::Disconnected) => break None,
                        Err(_) if t.elapsed() < Duration::from_micros(200) => {
                            std::hint::spin_loop()
                        }
                        Err(_) => break rx.recv().ok(),
                    }
                }
            } else {
                rx.recv().ok()
            };
            match job {
                Some(reply) => {
                    let _ = reply.send(());
                }
                None => return,
            }
        }
    });
    let mut v = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        let (reply, done) = tokio::sync::oneshot::channel();
        tx.send(reply).expect("thread alive");
        let _ = done.await;
        v.push(t.elapsed());
    }
    drop(tx);
    let _ = thread.join();
    v
}

fn show(what: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "breakdown/{what}: {:.1} µs / {:.1} µs / {:.1} µs",
        us(percentile(&v, 50.0)),
        us(percentile(&v, 99.0)),
        us(v.last().copied().unwrap_or_default())
    );
}
