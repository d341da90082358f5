//! `mcp`: µs per MCP tool call over stdio, against the small rmcp server of
//! `crates/mcp/examples/test_server.rs` (its `echo` tool), three ways:
//!
//! - the rmcp client alone (one `tools/call` round trip over the child's pipes);
//! - the runtime's MCP client (`McpTools::call`: the server's state, argument
//!   shaping, the timeout and cancel select, converting the result);
//! - a durable tool-call step through the engine (a scripted agent calling
//!   `srv.echo` once per turn), beside the same agent calling the built-in
//!   `list_files`: the difference is what an MCP call costs a step.

use crate::util::{median, percentile, temp_dir, us};
use crate::workspace::{self, Agent, Spec};
use anyhow::{Context, Result, bail};
use harness_core::RequestStatus;
use harness_engine::WorkerOptions;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Measured calls per variant (after a warm-up of 100).
const CALLS: usize = 2_000;
/// Tool-call steps per request in the engine variants.
const STEPS: u64 = 500;

pub async fn run() -> Result<()> {
    let server = test_server()?;
    println!(
        "mcp: {CALLS} sequential `echo` calls to an rmcp stdio server ({}), then requests of \
         {STEPS} tool-call turns through the engine",
        server.display()
    );
    tokio::spawn(measure(server)).await?
}

/// The test server binary: `$AGENT_HARNESS_MCP_TEST_SERVER`, or `examples/test_server`
/// beside this binary (built by `cargo build --release -p harness-mcp --example test_server`).
fn test_server() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("AGENT_HARNESS_MCP_TEST_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let p = exe
        .parent()
        .context("the bench binary has no folder")?
        .join("examples/test_server");
    if !p.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release -p harness-mcp --example \
             test_server` (or set AGENT_HARNESS_MCP_TEST_SERVER)",
            p.display()
        );
    }
    Ok(p)
}

fn args() -> serde_json::Map<String, serde_json::Value> {
    match json!({"text": "hello"}) {
        serde_json::Value::Object(m) => m,
        _ => unreachable!(),
    }
}

async fn measure(server: PathBuf) -> Result<()> {
    // The rmcp client alone.
    let client = ()
        .serve(TokioChildProcess::new(tokio::process::Command::new(
            &server,
        ))?)
        .await
        .context("rmcp handshake")?;
    let mut alone = Vec::with_capacity(CALLS);
    for i in 0..CALLS + 100 {
        let t = Instant::now();
        let r = client
            .call_tool(CallToolRequestParams::new("echo").with_arguments(args()))
            .await?;
        if r.is_error == Some(true) {
            bail!("echo failed: {r:?}");
        }
        if i >= 100 {
            alone.push(t.elapsed());
        }
    }
    client.cancel().await?;

    // The runtime's client.
    let dir = temp_dir("mcp")?;
    write_workspace(dir.path(), &server)?;
    let ws = harness_config::load(dir.path())?;
    let tools = harness_mcp::McpTools::new(&ws, None, harness_core::Redactor::new::<&str>([]));
    tools.start().await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let value = serde_json::Value::Object(args());
    let mut ours = Vec::with_capacity(CALLS);
    for i in 0..CALLS + 100 {
        let t = Instant::now();
        let out = tools.call("srv.echo", &value, &cancel).await;
        if !out.ok {
            bail!("srv.echo failed: {}", out.content);
        }
        if i >= 100 {
            ours.push(t.elapsed());
        }
    }
    tools.shutdown().await;

    // Through the engine: a step per call (and one per model turn).
    let h = crate::util::open(dir.path(), None)?;
    let worker = h.start_worker(WorkerOptions::default()).await?;
    let mut per_step = Vec::new();
    for agent in ["via_mcp", "via_builtin", "via_mcp", "via_builtin"] {
        per_step.push((agent, request_time(&h, agent).await? / (2 * STEPS as u32)));
    }
    worker.stop().await?;
    let step = |name: &str| {
        per_step
            .iter()
            .filter(|(a, _)| *a == name)
            .map(|(_, d)| *d)
            .min()
            .unwrap_or_default()
    };

    let (mut a, mut o) = (alone.clone(), ours.clone());
    a.sort();
    o.sort();
    println!(
        "  rmcp client alone          p50 {:>7.1} µs   p99 {:>7.1} µs",
        us(median(&alone)),
        us(percentile(&a, 99.0))
    );
    println!(
        "  runtime McpTools::call     p50 {:>7.1} µs   p99 {:>7.1} µs   (adds {:+.1} µs at p50)",
        us(median(&ours)),
        us(percentile(&o, 99.0)),
        us(median(&ours)) - us(median(&alone))
    );
    let (m, b) = (step("via_mcp"), step("via_builtin"));
    println!(
        "  durable step, srv.echo     {:>7.1} µs per step (a model turn or a call; best of 2 requests)",
        us(m)
    );
    println!(
        "  durable step, list_files   {:>7.1} µs per step (the same agent with a built-in tool)",
        us(b)
    );
    println!(
        "  an MCP call adds           {:>7.1} µs to its request beyond a built-in call",
        2.0 * (us(m) - us(b))
    );
    Ok(())
}

/// Wall time of one request of `agent`, admitted to a running worker.
async fn request_time(h: &harness_engine::Harness, agent: &str) -> Result<Duration> {
    let t = Instant::now();
    let r = h.request(None, agent, "go").await?;
    loop {
        let now = h.get_request(&r.id).await?;
        if now.status.is_terminal() {
            if now.status != RequestStatus::Completed {
                bail!("{agent} request {}: {:?}", r.id, now.error);
            }
            return Ok(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn write_workspace(dir: &Path, server: &Path) -> Result<()> {
    let turns = |tool: &str, arguments: &str| {
        vec![
            format!(
                "- tool_calls: [{{tool: {tool}, arguments: {arguments}}}]\n  repeat: {STEPS}\n"
            ),
            workspace::text_turn("done"),
        ]
    };
    workspace::write(
        dir,
        &Spec {
            agents: vec![
                Agent {
                    name: "via_mcp",
                    max_steps: 1_000_000,
                    turns: turns("srv.echo", "{text: hello}"),
                },
                Agent {
                    name: "via_builtin",
                    max_steps: 1_000_000,
                    turns: turns("list_files", "{}"),
                },
            ],
            ..Default::default()
        },
    )?;
    std::fs::write(
        dir.join("config/mcp.yaml"),
        format!(
            "servers:\n  srv:\n    command: {}\n    idempotent: true\n",
            server.display()
        ),
    )?;
    // The MCP agent may call the server's tools.
    let agent = dir.join("config/agents/via_mcp.yaml");
    let text = std::fs::read_to_string(&agent)?;
    std::fs::write(
        &agent,
        text.replace(
            "tools: [list_files, approved_list]",
            "tools: [list_files, srv.echo]",
        ),
    )?;
    Ok(())
}
