//! The bench workspace: written from scratch (not from `init`), so that only
//! runtime cost is measured — a scripted model at zero latency, agents whose
//! script is sized for the bench, the cheap idempotent built-in `list_files`,
//! and an approval-gated alias of it.

use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;

/// One agent of the bench workspace and its scripted turns.
pub struct Agent {
    pub name: &'static str,
    pub max_steps: u32,
    /// YAML list items (each starting with `- `) under `turns:`.
    pub turns: Vec<String>,
}

pub struct Spec {
    pub max_concurrent_requests: usize,
    pub queue_capacity: usize,
    /// `normal` or `full` (the default in `stores.yaml`; benches may override).
    pub synchronous: &'static str,
    pub agents: Vec<Agent>,
    /// Declares `resources: {db: N, gpu: N}` and the tool `limited_list` (an alias
    /// of `list_files` that uses both and has `max_concurrent: N`), where N is this.
    pub limits: Option<u32>,
    /// A PostgreSQL store in this schema (URL in `AGENT_HARNESS_TEST_DATABASE_URL`)
    /// instead of SQLite.
    pub postgres: Option<String>,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 8,
            queue_capacity: 1000,
            synchronous: "normal",
            agents: vec![],
            limits: None,
            postgres: None,
        }
    }
}

/// A turn calling `tool` (`calls` times in one turn), played `repeat` times.
pub fn tool_turn(tool: &str, calls: usize, repeat: u64, latency_ms: u64) -> String {
    let call = format!("{{tool: {tool}, arguments: {{}}}}");
    let calls = vec![call; calls].join(", ");
    let mut s = format!("- tool_calls: [{calls}]\n");
    if repeat > 1 {
        let _ = writeln!(s, "  repeat: {repeat}");
    }
    if latency_ms > 0 {
        let _ = writeln!(s, "  latency_ms: {latency_ms}");
    }
    s
}

pub fn text_turn(text: &str) -> String {
    format!("- text: {text:?}\n")
}

/// Turns that make a request of exactly `steps` durable steps (a model turn and a
/// tool call are one step each): single-call tool turns, one two-call turn to make
/// the count even, then the final answer. `steps` must be even and at least 4.
pub fn turns_for_steps(steps: u64) -> Vec<String> {
    turns_for_steps_with("list_files", steps)
}

/// [`turns_for_steps`] calling `tool`.
pub fn turns_for_steps_with(tool: &str, steps: u64) -> Vec<String> {
    assert!(
        steps >= 4 && steps.is_multiple_of(2),
        "steps must be even and >= 4"
    );
    let single = (steps - 4) / 2;
    let mut turns = Vec::new();
    if single > 0 {
        turns.push(tool_turn(tool, 1, single, 0));
    }
    turns.push(tool_turn(tool, 2, 1, 0));
    turns.push(text_turn("done"));
    turns
}

/// Writes the workspace's configuration into `dir`.
pub fn write(dir: &Path, spec: &Spec) -> Result<()> {
    let w = |rel: &str, text: &str| -> Result<()> {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
    };
    w(
        "config/workspace.yaml",
        &format!(
            "name: bench\nruntime:\n  max_concurrent_requests: {}\n  queue_capacity: {}\n  \
             session_strategy: enqueue\n  approval_ttl: 24h\n  approval_expiry: reject\n  \
             stuck_after: 10m\n  retention: 30d\n{}",
            spec.max_concurrent_requests,
            spec.queue_capacity,
            spec.limits
                .map(|n| format!("resources:\n  db: {n}\n  gpu: {n}\n"))
                .unwrap_or_default()
        ),
    )?;
    w(
        "config/models.yaml",
        "models:\n  scripted:\n    provider: scripted\n    model: bench\n    script: resources/scripts/bench.yaml\n",
    )?;
    w(
        "config/stores.yaml",
        &match &spec.postgres {
            Some(schema) => format!(
                "backend: postgres\npostgres:\n  url_env: AGENT_HARNESS_TEST_DATABASE_URL\n  pool_size: 16\n  schema: {schema}\n"
            ),
            None => format!(
                "sqlite:\n  path: .agent-harness\n  synchronous: {}\n",
                spec.synchronous
            ),
        },
    )?;
    let limited = spec
        .limits
        .map(|n| {
            format!(
                "  limited_list:\n    builtin: list_files\n    uses: [db, gpu]\n    max_concurrent: {n}\n"
            )
        })
        .unwrap_or_default();
    w(
        "config/tools.yaml",
        &format!(
            "tools:\n  approved_list:\n    builtin: list_files\n    \
             description: List files, after an operator approved it.\n    approval: required\n{limited}"
        ),
    )?;
    w("config/mcp.yaml", "servers: {}\n")?;
    let mut script = String::from("agents:\n");
    for a in &spec.agents {
        w(
            &format!("config/agents/{}.yaml", a.name),
            &format!(
                "name: {}\nmodel: scripted\nsystem_prompt: You are a benchmark agent.\n\
                 tools: [list_files, approved_list{}]\nmax_steps: {}\n",
                a.name,
                if spec.limits.is_some() {
                    ", limited_list"
                } else {
                    ""
                },
                a.max_steps
            ),
        )?;
        let _ = writeln!(script, "  {}:\n    turns:", a.name);
        for t in &a.turns {
            for line in t.lines() {
                let _ = writeln!(script, "      {line}");
            }
        }
    }
    w("resources/scripts/bench.yaml", &script)?;
    std::fs::create_dir_all(dir.join("work"))?;
    Ok(())
}

/// An agent whose requests are `steps` steps long.
pub fn steps_agent(name: &'static str, steps: u64) -> Agent {
    Agent {
        name,
        max_steps: 1_000_000,
        turns: turns_for_steps(steps),
    }
}

/// An agent that calls the approval-gated tool once, then answers.
pub fn gated_agent(name: &'static str) -> Agent {
    Agent {
        name,
        max_steps: 100,
        turns: vec![tool_turn("approved_list", 1, 1, 0), text_turn("done")],
    }
}
