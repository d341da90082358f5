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
        "models: {REQUESTS} rounds of requests of {TURNS} model turns (each a stream of {PIECES} \
         text pieces, a tool call in fragments and usage, then a list_files call; the last turn \
         answers), local OpenAI wire-format server at zero delay; the variants take turns within \
         each round; medians"
    );
    // On a runtime worker thread, as the engine's tasks run (not the block_on thread).
    tokio::spawn(measure()).await?
}

async fn measure() -> Result<()> {
    let server = FakeProvider::spawn();
    let dir = temp_dir("models")?;
    write_workspace(dir.path(), &server.openai_base_url())?;
    let h = crate::util::open(dir.path(), None)?;
    let worker = h
        .start_worker(WorkerOptions::default())
        .await
        .context("starting the worker")?;
    let client = reqwest_client()?;
    let url = format!("{}/chat/completions", server.openai_base_url());

    let (mut scripted, mut http, mut no_raw, mut base) = (vec![], vec![], vec![], vec![]);
    // What keeping the raw responses costs the file system alone: a new folder per
    // request and a new file per turn, of a turn's stream size.
    let mut files = vec![];
    let raw = stream_bytes(true);
    for round in 0..=REQUESTS {
        let s = one_request(&h, &server, "scripted", false).await?;
        let before = server.received().len();
        let t = one_request(&h, &server, "http", true).await?;
        // The HTTP client alone, sending the very bodies the runtime sent and reading
        // the same streams to their end.
        let bodies: Vec<String> = server.received()[before..]
            .iter()
            .map(|r| r.body.clone())
            .collect();
        let started = Instant::now();
        for body in &bodies {
            server.push(turn_reply(true));
            read_stream(&client, &url, body).await?;
        }
        let b = started.elapsed();
        let n = one_request(&h, &server, "http_no_raw", true).await?;
        let f = create_files(&dir.path().join(format!("files-{round}")), &raw)?;
        if round > 0 {
            scripted.push(s);
            http.push(t);
            base.push(b);
            no_raw.push(n);
            files.push(f);
        }
    }
    let (mut ttfd_runtime, mut ttfd_base) = (vec![], vec![]);
    let body = server.received()[0].body.clone();
    for round in 0..=TTFD {
        let r = ttfd_runtime_once(&h, &server).await?;
        let b = ttfd_client_once(&client, &url, &server, &body).await?;
        if round > 0 {
            ttfd_runtime.push(r);
            ttfd_base.push(b);
        }
    }
    ttfd_runtime.sort();
    ttfd_base.sort();
    worker.stop().await?;
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
    let beyond_no_raw = us(nr) - us(b) - us(s);
    println!(
        "models/turn added beyond the durable commit, raw responses not kept: {beyond_no_raw:.1} µs \
         — target ≤ 500 µs: {}",
        verdict(beyond_no_raw <= 500.0)
    );
    let beyond = us(hh) - us(b) - us(s);
    let file = us(per_turn(median(&files)));
    println!(
        "models/turn added beyond the durable commit, raw responses kept (the default): {beyond:.1} \
         µs, of which creating the raw response's file costs {file:.1} µs on this file system \
         ({} bytes, no fsync): {:.1} µs beyond the step's durable writes — target ≤ 500 µs: {}",
        raw.len(),
        beyond - file,
        verdict(beyond - file <= 500.0)
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

/// A new folder with [`TURNS`] new files of `bytes` in it, as the raw responses of
/// one request are written (no fsync, as the store writes them).
fn create_files(dir: &Path, bytes: &[u8]) -> Result<Duration> {
    use std::io::Write;
    let t = Instant::now();
    std::fs::create_dir_all(dir)?;
    for i in 0..TURNS {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(format!("model-turn-{i}.sse")))?;
        f.write_all(bytes)?;
    }
    Ok(t.elapsed())
}

/// The bytes of one streamed turn, as [`turn_reply`] sends them.
fn stream_bytes(calls: bool) -> Vec<u8> {
    turn(calls).events().concat().into_bytes()
}

/// One streamed turn: text pieces, then a `list_files` call in fragments (or, for
/// the last turn, nothing more), then usage.
fn turn_reply(calls: bool) -> Reply {
    turn(calls).reply()
}

fn turn(calls: bool) -> openai::Turn {
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
    t.usage(1000, PIECES as u64)
}

/// The wall time of one request to `agent`, from admission to its
/// `request.completed` event.
async fn one_request(
    h: &Harness,
    server: &FakeProvider,
    agent: &str,
    http: bool,
) -> Result<Duration> {
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
    let took = start.elapsed();
    let r = h.get_request(&req.id).await?;
    if r.status != RequestStatus::Completed || r.steps as usize != 2 * TURNS - 1 {
        bail!(
            "request {} of `{agent}`: {:?} after {} steps",
            r.id,
            r.status,
            r.steps
        );
    }
    if server.pending() != 0 {
        bail!("{} scripted replies were not asked for", server.pending());
    }
    Ok(took)
}

/// From the server's read of a request to a subscriber's first piece of its answer.
async fn ttfd_runtime_once(h: &Harness, server: &FakeProvider) -> Result<Duration> {
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
    // Let it finish before the next one (one stream at a time).
    loop {
        let r = h.get_request(&req.id).await?;
        if r.status.is_terminal() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(first.duration_since(at))
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

/// From the server's read of a request to the client holding the first chunk with
/// answer text.
async fn ttfd_client_once(
    client: &reqwest::Client,
    url: &str,
    server: &FakeProvider,
    body: &str,
) -> Result<Duration> {
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
    Ok(first.duration_since(server.received()[before].at))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
