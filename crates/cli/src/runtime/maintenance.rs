//! `runtime maintenance`: retention pruning and compaction.

use crate::context::Ctx;
use crate::output::{self, BOLD, DIM, GREEN, line, paint};
use anyhow::Result;
use harness_engine::PruneReport;
use serde::Serialize;
use std::process::ExitCode;
use std::time::Duration;

pub const HELP: &str = "Examples:\n  agent-harness runtime maintenance --workspace . --older-than 30d --dry-run\n  \
agent-harness runtime maintenance --workspace . --older-than 30d\n  \
agent-harness runtime maintenance --workspace . --older-than 30d --vacuum   # with no worker running\n\n\
Deletes every record (steps, events, approvals, artifacts and their files) of requests that \
finished more than --older-than ago, with their delegated children, and sessions left empty. \
Active requests are never touched. It deletes in short transactions and leaves the store \
free between them, so it is safe to run while `serve` is running; the freed space is reused \
by new records, but the file does not shrink. --vacuum then compacts the file, which blocks \
every commit until it is done: it is refused while a worker holds the workspace.";

#[derive(clap::Args, Debug)]
pub struct MaintenanceArgs {
    /// Prune requests finished longer ago than this (default: runtime.retention).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "AGE")]
    pub older_than: Option<Duration>,
    /// Only count what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    /// After pruning, compact the store file (VACUUM). Refused while `serve` runs.
    #[arg(long, conflicts_with = "dry_run")]
    pub vacuum: bool,
}

#[derive(Serialize)]
struct Report {
    dry_run: bool,
    vacuum: bool,
    older_than_ms: u64,
    cutoff: harness_core::Timestamp,
    #[serde(flatten)]
    removed: PruneReport,
}

pub async fn run(ctx: &Ctx, a: MaintenanceArgs) -> Result<ExitCode> {
    let h = ctx.open_existing()?;
    let older_than = a
        .older_than
        .unwrap_or(h.workspace().settings.runtime.retention);
    let removed = h.maintenance(older_than, a.dry_run, a.vacuum).await?;
    let r = Report {
        dry_run: a.dry_run,
        vacuum: a.vacuum,
        older_than_ms: older_than.as_millis() as u64,
        cutoff: h.now().minus(older_than),
        removed,
    };
    if ctx.json {
        output::print_json(&r)?;
    } else {
        lines(&r, older_than).into_iter().for_each(line);
    }
    Ok(ExitCode::SUCCESS)
}

fn lines(r: &Report, older_than: Duration) -> Vec<String> {
    let p = &r.removed;
    let verb = if r.dry_run { "would remove" } else { "removed" };
    let mut out = vec![format!(
        "{} requests finished before {} {}: {verb}",
        paint(if r.dry_run { BOLD } else { GREEN.bold() }, "maintenance:"),
        r.cutoff,
        paint(
            DIM,
            format!("(older than {})", humantime::format_duration(older_than))
        )
    )];
    let rows = [
        ("requests", p.requests),
        ("steps", p.steps),
        ("events", p.events),
        ("approvals", p.approvals),
        ("artifacts", p.artifacts),
        ("artifact bytes", p.artifact_bytes),
        ("sessions", p.sessions),
    ];
    for (name, n) in rows {
        if !(r.dry_run && name == "sessions") {
            out.push(format!("  {name:<15} {n}"));
        }
    }
    let after = if r.dry_run {
        "(unchanged: dry run)".to_string()
    } else if r.vacuum {
        p.bytes_after.to_string()
    } else {
        format!(
            "{} (freed space is reused; --vacuum shrinks the file)",
            p.bytes_after
        )
    };
    out.push(format!(
        "  {:<15} {} → {after}",
        "store bytes", p.bytes_before
    ));
    out
}
