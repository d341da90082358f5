//! `models`: what the runtime adds to a streamed model turn, against the local
//! wire-format server (`harness-fake-provider`, OpenAI Chat Completions) at zero delay.
//!
//! - Per turn: agents of 10 model turns per request (a text piece stream with a tool
//!   call in fragments, then a `list_files` call, …, then the answer), run by a
//!   worker. The same agent on the scripted model costs the engine's loop, the
//!   durable commits and the tool calls; the HTTP client alone (reqwest, sending the
//!   very bodies the runtime sent and reading the same streams to their end) costs
//!   the transport and the server. What remains is what the runtime adds per turn
//!   beyond the durable commit: the provider (SSE parsing, the turn, coalescing
//!   pieces for watchers), redaction, and keeping the raw response as an artifact
//!   (also shown without it, `keep_raw_responses: false`).
//! - Time to first delta: from the server having read a request to a subscriber of
//!   `Harness::subscribe_deltas` holding its first piece, vs reqwest holding the
//!   first chunk with answer text (the same anchor).

use crate::util::{median, percentile, temp_dir, us, verdict};
use crate::workspace::{self, Agent, Spec};
use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use harness_core::{EventFilter, RequestStatus};
use harness_engine::{DeltaItem, Harness, WorkerOptions};
use harness_fake_provider::{FakeProvider, Reply, openai};
use std::path::Path;
use std::time::{Duration, Instant};

/// Model turns per request.
const TURNS: usize = 10;
/// Measured requests per variant (after a warm-up).
const REQUESTS: usize = 30;
/// Time-to-first-delta samples.
const TTFD: usize = 200;
/// Text pieces per streamed turn (each one SSE event).
const PIECES: usize = 40;

pub async fn run() -> Result<()> {
    println!(
        "models: {REQUESTS} requests × {TURNS} model turns (each a stream of {PIECES} text pieces, a \
         tool call in fragments and usage, then a list_files call; the last turn answers), \
         local OpenAI wire-format server at zero delay; medians"
    );
    let server = FakeProvider::spawn();
    let dir = temp_dir("models")?;
    write_workspace(dir.path(), &server.openai_base_url())?;
    let h = crate::util::open(dir.path(), None)?;
    let worker = h
        .start_worker(WorkerOptions::default())
        .await
        .context("starting the worker")?;

    let scripted = per_request(&h, &server, "scripted", false).await?;
    let before = server.received().len();
    let http = per_request(&h, &server, "http", true).await?;
    let bodies: Vec<String> = server.received()[before..]
        .iter()
        .map(|r| r.body.clone())
        .collect();
    let no_raw = per_request(&h, &server, "http_no_raw", true).await?;
    let ttfd_runtime = ttfd_runtime(&h, &server).await?;
    worker.stop().await?;

    // The HTTP client alone, on the same bodies and the same streams.
    let client = reqwest_client()?;
    let url = format!("{}/chat/completions", server.openai_base_url());
    let mut base = Vec::with_capacity(REQUESTS);
    for request in bodies.chunks(TURNS).skip(1) {
        let t = Instant::now();
        for body in request {
            server.push(turn_reply(true));
            read_stream(&client, &url, body).await?;
        }
        base.push(t.elapsed());
    }
    let ttfd_base = ttfd_client(&client, &url, &server, &bodies[0]).await?;

    let per_turn = |d: Duration| d / TURNS as u32;
    let (s, hh, nr, b) = (
        per_turn(median(&scripted)),
        per_turn(median(&http)),
        per_turn(median(&no_raw)),
        per_turn(median(&base)),
    );
    println!(
        "models/turn, HTTP client alone (reqwest, same bodies and streams): {:.1} µs",
        us(b)
    );
    println!(
        "models/turn, same agent on the scripted model (engine loop, durable commits, the tool \
         call between turns): {:.1} µs",
        us(s)
    );
    println!(
        "models/turn, runtime on the HTTP model: {:.1} µs; {:.1} µs without keeping raw responses",
        us(hh),
        us(nr)
    );
    let added = us(hh) - us(b);
    println!(
        "models/turn added vs the HTTP client alone: {added:.1} µs (of which the step itself, as \
         with the scripted model: {:.1} µs)",
        us(s)
    );
    let beyond = us(hh) - us(b) - us(s);
    let beyond_no_raw = us(nr) - us(b) - us(s);
    println!(
        "models/turn added beyond the durable commit: {beyond:.1} µs ({beyond_no_raw:.1} µs \
         without keeping raw responses) — target ≤ 500 µs: {}",
        verdict(beyond <= 500.0)
    );
    let (rt50, rt99) = (
        percentile(&ttfd_runtime, 50.0),
        percentile(&ttfd_runtime, 99.0),
    );
    let (b50, b99) = (percentile(&ttfd_base, 50.0), percentile(&ttfd_base, 99.0));
    println!(
        "models/time to first delta from the server's read of the request, p50 / p99: HTTP client \
         alone {:.1} / {:.1} µs, a subscriber of the runtime {:.1} / {:.1} µs",
        us(b50),
        us(b99),
        us(rt50),
        us(rt99)
    );
    let added = us(rt50) - us(b50);
    println!(
        "models/time to first delta added (p50): {added:.1} µs — target ≤ 1000 µs: {}",
        verdict(added <= 1000.0)
    );
    Ok(())
}

/// The bench workspace plus the model `local` on `base_url` (also without raw
/// responses) and agents of [`TURNS`] turns on each model.
fn write_workspace(dir: &Path, base_url: &str) -> Result<()> {
    let mut turns = vec![workspace::tool_turn("list_files", 1, TURNS as u64 - 1, 0)];
    turns.push(workspace::text_turn("done"));
    let agent = |name| Agent {
        name,
        max_steps: 1000,
        turns: turns.clone(),
    };
    let first = Agent {
        name: "ttfd",
        max_steps: 10,
        turns: vec![workspace::text_turn("done")],
    };
    workspace::write(
        dir,
        &Spec {
            agents: vec![
                agent("scripted"),
                agent("http"),
                agent("http_no_raw"),
                first,
            ],
            ..Spec::default()
        },
    )?;
    let models = dir.join("config/models.yaml");
    let mut text = std::fs::read_to_string(&models)?;
    for (name, raw) in [("local", true), ("local_no_raw", false)] {
        text.push_str(&format!(
            "  {name}:\n    provider: openai\n    model: bench\n    base_url: {base_url}\n    \
             keep_raw_responses: {raw}\n"
        ));
    }
    std::fs::write(&models, text)?;
    for (agent, model) in [
        ("http", "local"),
        ("http_no_raw", "local_no_raw"),
        ("ttfd", "local"),
    ] {
        let path = dir.join(format!("config/agents/{agent}.yaml"));
        let text =
            std::fs::read_to_string(&path)?.replace("model: scripted", &format!("model: {model}"));
        std::fs::write(path, text)?;
    }
    Ok(())
}

/// One streamed turn: text pieces, then a `list_files` call in fragments (or, for
/// the last turn, nothing more), then usage.
fn turn_reply(calls: bool) -> Reply {
    let mut t = openai::Turn::new("bench-model");
    for i in 0..PIECES {
        t = t.text(&format!("word{i} "));
    }
    if calls {
        t = t
            .call(0, "call_bench", "list_files", &["{", "}"])
            .finish("tool_calls");
    } else {
        t = t.finish("stop");
    }
    t.usage(1000, PIECES as u64).reply()
}

/// The wall time of each of [`REQUESTS`] requests to `agent`, one after another
/// (after one warm-up request), from admission to the `request.completed` event.
async fn per_request(
    h: &Harness,
    server: &FakeProvider,
    agent: &str,
    http: bool,
) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(REQUESTS);
    for i in 0..=REQUESTS {
        if http {
            for t in 0..TURNS {
                server.push(turn_reply(t + 1 < TURNS));
            }
        }
        let from = h.store().last_seq().await?;
        let start = Instant::now();
        let req = h.request(None, agent, "go").await?;
        let mut events = h.subscribe(
            from,
            EventFilter {
                request_id: Some(req.id.clone()),
                ..Default::default()
            },
        );
        loop {
            let e = tokio::time::timeout(Duration::from_secs(60), events.next())
                .await
                .with_context(|| format!("request {} of `{agent}` did not finish", req.id))??;
            if e.kind == harness_core::EventKind::RequestCompleted {
                break;
            }
            if e.kind == harness_core::EventKind::RequestFailed {
                bail!("request {} of `{agent}` failed: {}", req.id, e.payload);
            }
        }
        if i > 0 {
            out.push(start.elapsed());
        }
        let r = h.get_request(&req.id).await?;
        if r.status != RequestStatus::Completed || r.steps as usize != 2 * TURNS - 1 {
            bail!(
                "request {} of `{agent}`: {:?} after {} steps",
                r.id,
                r.status,
                r.steps
            );
        }
    }
    if server.pending() != 0 {
        bail!("{} scripted replies were not asked for", server.pending());
    }
    Ok(out)
}

/// From the server's read of each request to a subscriber's first piece.
async fn ttfd_runtime(h: &Harness, server: &FakeProvider) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(TTFD);
    for i in 0..=TTFD {
        server.push(turn_reply(false));
        let mut deltas = h.subscribe_deltas(EventFilter::default());
        let before = server.received().len();
        let req = h.request(None, "ttfd", "go").await?;
        let first = loop {
            match tokio::time::timeout(Duration::from_secs(30), deltas.next()).await {
                Ok(Some(DeltaItem::Delta(d))) if d.request_id == req.id => break Instant::now(),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => bail!("no delta for {}", req.id),
            }
        };
        let at = server
            .received()
            .get(before)
            .map(|r| r.at)
            .context("the server saw no request")?;
        if i > 0 {
            out.push(first.duration_since(at));
        }
        // Let it finish before the next one (one stream at a time).
        loop {
            let r = h.get_request(&req.id).await?;
            if r.status.is_terminal() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    out.sort();
    Ok(out)
}

fn reqwest_client() -> Result<reqwest::Client> {
    // As the providers do: rustls with ring (unused over plain HTTP, but required).
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder().build()?)
}

async fn send(client: &reqwest::Client, url: &str, body: &str) -> Result<reqwest::Response> {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(body.to_string())
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("the server answered {}", r.status());
    }
    Ok(r)
}

/// Sends `body` and reads the whole stream.
async fn read_stream(client: &reqwest::Client, url: &str, body: &str) -> Result<usize> {
    let mut n = 0;
    let mut stream = send(client, url, body).await?.bytes_stream();
    while let Some(chunk) = stream.next().await {
        n += chunk?.len();
    }
    Ok(n)
}

/// From the server's read of each request to the client holding the first chunk
/// with answer text.
async fn ttfd_client(
    client: &reqwest::Client,
    url: &str,
    server: &FakeProvider,
    body: &str,
) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(TTFD);
    for i in 0..=TTFD {
        server.push(turn_reply(false));
        let before = server.received().len();
        let mut stream = send(client, url, body).await?.bytes_stream();
        let mut seen = Vec::new();
        let mut first = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            seen.extend_from_slice(&chunk);
            if first.is_none() && contains(&seen, b"\"content\":\"word") {
                first = Some(Instant::now());
            }
        }
        let first = first.context("no text in the stream")?;
        let at = server.received()[before].at;
        if i > 0 {
            out.push(first.duration_since(at));
        }
    }
    out.sort();
    Ok(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
