//! `runtime replay request|export`: run a finished request again from its
//! recording against the workspace as it is now, and report the first divergence
//! (see `harness_engine::replay`).

use super::request_id;
use crate::context::Ctx;
use crate::output::{self, BOLD, DIM, GREEN, RED, line, paint};
use anyhow::Result;
use harness_core::RequestId;
use harness_engine::replay::{self, Recording, ReplayReport};
use std::path::PathBuf;
use std::process::ExitCode;

pub const HELP: &str = "Examples:\n  agent-harness runtime replay request req_01j… --workspace .\n  \
agent-harness runtime replay export exports/req_01j… --workspace .\n\n\
The replay runs the request's agent again with a model that answers from the recorded model turns \
and tools that answer from the recorded results (no model is called, no tool runs), applies the \
recorded approval decisions, in a temporary store that is then discarded. It compares, request by \
request in delegation order, each step (a call's tool, arguments, status, outcome, whether it \
waited for an approval) and the outcome, and reports the first difference: what changing the \
workspace's agents, tools or policies does to a run that happened. MCP servers are started to \
list their tools, never called. Artifact contents and expired approvals are not replayed.\n\n\
Exit status: 0 when the replay matches the recording, 1 when it diverged.";

#[derive(clap::Subcommand, Debug)]
pub enum ReplayCommand {
    /// Replay a finished request of this workspace's store.
    Request {
        /// The request (a root request: a delegated child is replayed with its root).
        id: String,
    },
    /// Replay a request from an evidence package (verified first).
    Export {
        /// The package: its folder, or its .tar.gz file.
        path: PathBuf,
        /// The request to replay when the package holds several (a session export).
        #[arg(long, value_name = "REQUEST")]
        request: Option<String>,
    },
}

pub async fn run(ctx: &Ctx, c: ReplayCommand) -> Result<ExitCode> {
    let rec = match c {
        ReplayCommand::Request { id } => {
            let h = ctx.inspect()?;
            let id = request_id(&h, &id).await?;
            Recording::of_request(&h, &id).await?
        }
        ReplayCommand::Export { path, request } => {
            let request = request.as_deref().map(RequestId::parse).transpose()?;
            harness_export::recording(&path, request.as_ref())?
        }
    };
    let report = replay::replay(&ctx.root()?, &rec).await?;
    if ctx.json {
        output::print_json(&report)?;
    } else {
        render(&report).into_iter().for_each(line);
    }
    Ok(if report.identical {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn render(r: &ReplayReport) -> Vec<String> {
    let mut out = vec![format!(
        "{} {} {}",
        paint(BOLD, "replayed"),
        r.request_id,
        paint(
            DIM,
            format!("({}) against the workspace as it is now", r.agent)
        )
    )];
    out.push(format!(
        "  {}",
        paint(
            DIM,
            format!(
                "recorded {} · replayed {} · {} request{} and {} step{} compared",
                r.recorded_status,
                r.replayed_status,
                r.requests_compared,
                if r.requests_compared == 1 { "" } else { "s" },
                r.steps_compared,
                if r.steps_compared == 1 { "" } else { "s" },
            )
        )
    ));
    match &r.divergence {
        None => out.push(format!(
            "  {} the run matches its recording",
            paint(GREEN.bold(), "identical:")
        )),
        Some(d) => {
            let at = match d.step_idx {
                Some(i) => format!("step #{i} of {} ({})", d.request_id, d.agent),
                None => format!("{} ({})", d.request_id, d.agent),
            };
            out.push(format!("  {} at {at}", paint(RED.bold(), "diverged")));
            out.push(format!("    {} {}", paint(BOLD, "recorded:"), d.recorded));
            out.push(format!("    {} {}", paint(BOLD, "replayed:"), d.replayed));
        }
    }
    out
}
