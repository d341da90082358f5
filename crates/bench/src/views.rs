//! `views` (issue 4): the operator views as whole processes on a large store —
//! 100,000 requests and 1,000,000 events from the synthetic generator — each run
//! five times after a warm-up, median wall time.

use crate::util::*;
use crate::workspace::{self, Agent, Spec};
use anyhow::{Context, Result, bail};
use harness_core::{Clock, SystemClock};
use harness_store::synthetic::{SyntheticSpec, generate};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 5;

pub async fn run(keep: Option<PathBuf>) -> Result<()> {
    let bin = cli_binary();
    println!(
        "views: CLI {} on a synthetic store; each command run {RUNS} times after a warm-up (output to a pipe)",
        bin.display()
    );
    let tmp;
    let ws: PathBuf = match keep {
        Some(p) => p,
        None => {
            tmp = temp_dir("views")?;
            tmp.path().to_path_buf()
        }
    };
    let marker = ws.join(".agent-harness/synthetic-sample");
    let (sample, sample_waiting) = if marker.exists() {
        let text = std::fs::read_to_string(&marker)?;
        let mut l = text.lines();
        println!(
            "views/store: reusing the generated store in {}",
            ws.display()
        );
        (
            l.next().unwrap_or_default().to_string(),
            l.next().unwrap_or_default().to_string(),
        )
    } else {
        build(&ws)?
    };
    if !bin.exists() {
        bail!(
            "the CLI binary {} does not exist (build it with \
             `cargo build --release -p harness-cli`, or set AGENT_HARNESS_BIN)",
            bin.display()
        );
    }
    let w = ws.to_string_lossy().to_string();
    let commands: Vec<(&str, Vec<String>)> = vec![
        (
            "runtime overview",
            vec!["runtime", "overview", "--workspace", &w],
        ),
        (
            "runtime approvals watch --status pending --once",
            vec![
                "runtime",
                "approvals",
                "watch",
                "--workspace",
                &w,
                "--status",
                "pending",
                "--once",
            ],
        ),
        (
            "runtime requests tail --once",
            vec!["runtime", "requests", "tail", "--workspace", &w, "--once"],
        ),
        (
            "runtime requests show <completed request with an approval>",
            vec!["runtime", "requests", "show", &sample, "--workspace", &w],
        ),
        (
            "runtime requests show <request waiting for approval>",
            vec![
                "runtime",
                "requests",
                "show",
                &sample_waiting,
                "--workspace",
                &w,
            ],
        ),
    ]
    .into_iter()
    .map(|(l, a)| (l, a.into_iter().map(String::from).collect::<Vec<String>>()))
    .collect();
    let mut failed = Vec::new();
    for (label, args) in &commands {
        match time_command(&bin, args) {
            Ok((samples, out_bytes)) => {
                let med = median(&samples);
                let min = samples.iter().min().copied().unwrap_or_default();
                let max = samples.iter().max().copied().unwrap_or_default();
                println!(
                    "views/{label}: median {:.1} ms (min {:.1}, max {:.1}; {} B of output) — target < 100 ms: {}",
                    ms(med),
                    ms(min),
                    ms(max),
                    thousands(out_bytes as u64),
                    verdict(med < Duration::from_millis(100))
                );
            }
            Err(e) => {
                println!("views/{label}: FAILED — {e:#}");
                failed.push(*label);
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} commands failed: {}",
            failed.len(),
            commands.len(),
            failed.join("; ")
        );
    }
    Ok(())
}

/// The CLI: `$AGENT_HARNESS_BIN`, or `agent-harness` next to this binary.
pub(crate) fn cli_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("AGENT_HARNESS_BIN") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("agent-harness")))
        .unwrap_or_else(|| PathBuf::from("agent-harness"))
}

/// Writes the workspace and generates its store; returns two request ids to show.
fn build(ws: &Path) -> Result<(String, String)> {
    workspace::write(
        ws,
        &Spec {
            max_concurrent_requests: 8,
            queue_capacity: 1000,
            agents: vec![
                Agent {
                    name: "bench",
                    max_steps: 1_000_000,
                    turns: workspace::turns_for_steps(10),
                },
                Agent {
                    name: "writer",
                    max_steps: 5,
                    turns: workspace::turns_for_steps(10),
                },
            ],
            ..Spec::default()
        },
    )?;
    let spec = SyntheticSpec {
        now: SystemClock.now(),
        ..SyntheticSpec::default()
    };
    let start = Instant::now();
    let r =
        generate(&ws.join(".agent-harness"), &spec).context("generating the synthetic store")?;
    println!(
        "views/store: generated {} requests ({} completed, {} failed, {} cancelled, {} running, {} waiting \
         for approval, {} queued), {} sessions, {} steps, {} events, {} approvals ({} pending) in {:.1} s; \
         {} on disk",
        thousands(r.requests),
        thousands(r.completed),
        thousands(r.failed),
        thousands(r.cancelled),
        thousands(r.running),
        thousands(r.waiting_approval),
        thousands(r.queued),
        thousands(r.sessions),
        thousands(r.steps),
        thousands(r.events),
        thousands(r.approvals),
        thousands(r.pending_approvals),
        start.elapsed().as_secs_f64(),
        human_bytes(r.db_bytes)
    );
    let sample = r
        .sample_request
        .map(|id| id.to_string())
        .context("the generator made no sample request")?;
    let waiting = r
        .sample_waiting
        .map(|id| id.to_string())
        .unwrap_or_else(|| sample.clone());
    std::fs::write(
        ws.join(".agent-harness/synthetic-sample"),
        format!("{sample}\n{waiting}\n"),
    )?;
    Ok((sample, waiting))
}

/// Runs `bin args` once to warm up, then `RUNS` times; fails on a non-zero exit.
fn time_command(bin: &Path, args: &[String]) -> Result<(Vec<Duration>, usize)> {
    let mut samples = Vec::with_capacity(RUNS);
    let mut out_bytes = 0;
    for i in 0..=RUNS {
        let start = Instant::now();
        let out = Command::new(bin)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        let took = start.elapsed();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let first: Vec<&str> = err
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take(3)
                .collect();
            bail!(
                "`agent-harness {}` exited with {}: {}",
                args.join(" "),
                out.status,
                if first.is_empty() {
                    "(no stderr)".to_string()
                } else {
                    first.join(" | ")
                }
            );
        }
        if i > 0 {
            samples.push(took);
        }
        out_bytes = out.stdout.len();
    }
    Ok((samples, out_bytes))
}
