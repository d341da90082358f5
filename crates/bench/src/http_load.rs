//! `http-load`: the HTTP API under load, on loopback. The server runs in this
//! process (the `harness-server` router on 127.0.0.1, a worker beside it, a temp
//! workspace whose agent answers in one scripted turn). It opens N SSE
//! subscribers (`GET /v1/events?session=…`, one session each), admits over HTTP
//! (`POST /v1/sessions/{s}/requests`, spread over those sessions) as fast as the
//! queue accepts for the given time, then drains. It checks that every subscriber
//! saw every event of its session exactly once, in seq order, and that nothing
//! runs after the drain, then prints admissions/s, admission latency p50/p99,
//! commit → subscriber latency p50/p99 (the event's `at`, its commit time in ms,
//! against the wall clock when its frame arrived) and the 429 count.

use crate::util::*;
use crate::workspace::{self, Agent, Spec};
use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use harness_core::{EventFilter, SessionId};
use harness_engine::WorkerOptions;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Concurrent admission connections, unless `--admitters` says otherwise.
pub const ADMITTERS: usize = 32;

/// What one subscriber saw: each event's seq and its commit → receipt latency (ms).
#[derive(Default)]
struct Seen {
    seqs: Vec<i64>,
    lag_ms: Vec<i64>,
}

async fn subscribe(
    client: reqwest::Client,
    url: String,
    stop: Arc<AtomicBool>,
    ready: Arc<AtomicU64>,
) -> Result<Seen> {
    let res = client.get(&url).send().await?;
    if !res.status().is_success() {
        bail!("{url}: {}", res.status());
    }
    ready.fetch_add(1, Ordering::Relaxed);
    let mut body = res.bytes_stream();
    let mut text = String::new();
    let mut seen = Seen::default();
    while !stop.load(Ordering::Relaxed) {
        let chunk = match tokio::time::timeout(Duration::from_millis(200), body.next()).await {
            Ok(Some(c)) => c?,
            Ok(None) => break,
            Err(_) => continue,
        };
        // Whole milliseconds, as the events' `at`.
        let now = crate::util::wall_ms() as i64;
        text.push_str(std::str::from_utf8(&chunk)?);
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(data)?;
            if let (Some(seq), Some(at)) = (v["seq"].as_i64(), v["at"].as_i64()) {
                seen.seqs.push(seq);
                seen.lag_ms.push(now - at);
            }
        }
    }
    Ok(seen)
}

/// `worker_during`: the worker runs while admissions go on (else it starts once
/// they end: the admission path alone, then the drain).
pub async fn run(
    secs: u64,
    subscribers: usize,
    admitters: usize,
    queue_capacity: usize,
    worker_during: bool,
) -> Result<()> {
    println!(
        "http-load: {subscribers} SSE subscribers (one session each), {admitters} admitting connections for {secs} s, queue_capacity {}, loopback, worker in process {}",
        thousands(queue_capacity as u64),
        if worker_during {
            "running throughout"
        } else {
            "started once admission ends"
        }
    );
    let dir = temp_dir("http-load")?;
    workspace::write(
        dir.path(),
        &Spec {
            max_concurrent_requests: 64,
            queue_capacity,
            agents: vec![Agent {
                name: "bench",
                max_steps: 10,
                turns: vec![workspace::text_turn("done")],
            }],
            ..Spec::default()
        },
    )?;
    let h = open(dir.path(), None)?;
    let mut worker = if worker_during {
        Some(h.start_worker(WorkerOptions::default()).await?)
    } else {
        None
    };
    let (stop_server, stopped) = tokio::sync::watch::channel(false);
    let app = harness_server::router(h.clone(), harness_server::Tokens::open(), stopped);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut shutdown = stop_server.subscribe();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|v| *v).await;
            })
            .await
    });
    let base = format!("http://{addr}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(admitters + subscribers)
        .build()?;

    let head = h.store().last_seq().await?;
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicU64::new(0));
    let subs: Vec<_> = (0..subscribers)
        .map(|i| {
            tokio::spawn(subscribe(
                client.clone(),
                format!("{base}/v1/events?session=s{i}&from={head}"),
                stop.clone(),
                ready.clone(),
            ))
        })
        .collect();
    while ready.load(Ordering::Relaxed) < subscribers as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let deadline = Instant::now() + Duration::from_secs(secs);
    let rejected = Arc::new(AtomicU64::new(0));
    let cpu_at_start = cpu_time();
    let started = Instant::now();
    let admitting: Vec<_> = (0..admitters)
        .map(|a| {
            let (client, base, rejected) = (client.clone(), base.clone(), rejected.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = a;
                while Instant::now() < deadline {
                    let url = format!("{base}/v1/sessions/s{}/requests", i % subscribers);
                    let t = Instant::now();
                    let res = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(r#"{"agent": "bench", "input": "go"}"#)
                        .send()
                        .await?;
                    let status = res.status();
                    let _ = res.bytes().await?;
                    match status.as_u16() {
                        201 => {
                            latencies.push(t.elapsed());
                            i += admitters;
                        }
                        429 => {
                            rejected.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        s => bail!("admission answered {s}"),
                    }
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut admitted: Vec<Duration> = Vec::new();
    for a in admitting {
        admitted.extend(a.await??);
    }
    let admitting = started.elapsed();
    let cpu = cpu_time() - cpu_at_start;
    let now = h.now();
    let at_end = h.store().stats(now, now).await?;
    if worker.is_none() {
        worker = Some(h.start_worker(WorkerOptions::default()).await?);
    }

    // Drain: every admitted request settles, then every subscriber catches up.
    wait_stats(
        &h,
        // Not more often: `stats` counts every request by status (~10 ms at
        // 70,000 requests), and at 50 ms it took 12 % of the drain's CPU.
        Duration::from_millis(250),
        Duration::from_secs(600),
        "the drain",
        |s| s.queued == 0 && s.running == 0 && s.resuming == 0,
    )
    .await?;
    let drained = started.elapsed();
    let mut want = Vec::with_capacity(subscribers);
    for i in 0..subscribers {
        let filter = EventFilter {
            session_id: Some(SessionId::parse(&format!("s{i}"))?),
            ..Default::default()
        };
        let seqs: Vec<i64> = h
            .store()
            .events_after(head, filter, 0)
            .await?
            .iter()
            .map(|e| e.seq)
            .collect();
        want.push(seqs);
    }
    // Give the streams time to deliver the last commits, then stop them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lags = Vec::new();
    let mut events = 0usize;
    for (i, s) in subs.into_iter().enumerate() {
        let seen = s.await?.with_context(|| format!("subscriber {i}"))?;
        if seen.seqs != want[i] {
            bail!(
                "subscriber {i} saw {} events, its session has {} (first difference at {:?})",
                seen.seqs.len(),
                want[i].len(),
                seen.seqs.iter().zip(&want[i]).position(|(a, b)| a != b)
            );
        }
        events += seen.seqs.len();
        lags.extend(seen.lag_ms);
    }
    let now = h.now();
    let stats = h.store().stats(now, now).await?;
    let reads = h.event_reads();
    stop_server.send_replace(true);
    if let Some(w) = worker {
        w.stop().await?;
    }
    let _ = server.await;

    admitted.sort();
    lags.sort();
    let lag = |p: f64| lags[((lags.len() - 1) as f64 * p) as usize];
    let n = admitted.len();
    let rate = n as f64 / admitting.as_secs_f64();
    println!(
        "  admitted {} in {:.1} s: {:.0} admissions/s ({} at ≥ 5,000/s), p50 {:.2} ms, p99 {:.2} ms; 429s: {}",
        thousands(n as u64),
        admitting.as_secs_f64(),
        rate,
        verdict(rate >= 5_000.0),
        ms(percentile(&admitted, 50.0)),
        ms(percentile(&admitted, 99.0)),
        rejected.load(Ordering::Relaxed)
    );
    println!(
        "  completed while admitting: {} ({:.0}/s); queued at the end of admission: {}",
        thousands(at_end.completed),
        at_end.completed as f64 / admitting.as_secs_f64(),
        thousands(at_end.queued)
    );
    // Load generator included: it shares the process.
    println!(
        "  CPU while admitting: {:.2} cores; {:.0} µs per admission + completion (client, server, worker and store)",
        cpu.as_secs_f64() / admitting.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / (n as u64 + at_end.completed).max(1) as f64
    );
    let (claims, claimed) = h.metrics().claims();
    println!(
        "  claims (whole run): {} transactions for {} requests ({:.1} per claim)",
        thousands(claims),
        thousands(claimed),
        claimed as f64 / claims.max(1) as f64
    );
    println!(
        "  drained after {:.1} s; running {} queued {} after the drain; {} events delivered, each exactly once to its subscriber",
        drained.as_secs_f64(),
        stats.running,
        stats.queued,
        thousands(events as u64)
    );
    println!(
        "  commit → SSE subscriber: p50 {} ms, p99 {} ms ({} at p99 < 20 ms; ms resolution)",
        lag(0.50),
        lag(0.99),
        verdict(lag(0.99) < 20)
    );
    println!(
        "  store reads for subscriptions: {} shared, {} by subscribers themselves, {} detachments; {} batches handed to subscribers ({:.1} per shared read, of {subscribers} subscribers)",
        reads.shared,
        reads.own,
        reads.detached,
        thousands(reads.handed),
        reads.handed as f64 / reads.shared.max(1) as f64
    );
    if stats.running != 0 {
        bail!("{} requests still running after the drain", stats.running);
    }
    Ok(())
}
