//! `agent-harness runtime …`: operator views and actions over the durable records.
//!
//! Every view is a thin query over the library API ([`harness_engine::Harness`]);
//! nothing here keeps state. Views open the workspace with `inspect` (never create
//! a store, never take the worker lock); actions that need existing records open it
//! with `open_existing`, so a failed command changes nothing.

mod actions;
mod approvals;
mod artifacts;
mod doctor;
pub(crate) mod drive;
mod events;
mod export_cmd;
mod health;
mod maintenance;
pub mod mcp_server;
mod migrate;
mod notes;
mod overview;
mod replay_cmd;
mod requests;
mod screen;
mod sessions;
pub(crate) mod source;
mod table;
mod tree;
mod waiting;
mod watch;

use crate::context::Ctx;
use crate::output;
use anyhow::Result;
use harness_core::{ApprovalId, RequestId, SessionId, Timestamp, relative};
use harness_engine::Harness;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Subcommand, Debug)]
pub enum RuntimeCommand {
    /// One screen: worker, health, queue, approvals, stuck and recent requests.
    #[command(after_help = "Example:\n  agent-harness runtime overview --workspace .")]
    Overview(overview::OverviewArgs),
    /// What needs a human now; with a request id, where it stopped, why, and the next action.
    #[command(after_help = doctor::HELP)]
    Doctor(doctor::DoctorArgs),
    /// Every health check with status and detail; the exit status summarises them.
    #[command(after_help = health::HELP)]
    Health(health::HealthArgs),
    /// List, watch, show and resolve approvals.
    #[command(
        subcommand,
        after_help = "Example:\n  agent-harness runtime approvals watch --workspace . --status pending --once"
    )]
    Approvals(approvals::ApprovalsCommand),
    /// List, tail, show, cancel, retry and resume requests.
    #[command(
        subcommand,
        after_help = "Example:\n  agent-harness runtime requests tail --workspace . --once"
    )]
    Requests(requests::RequestsCommand),
    /// Read a request's artifacts: list them, show one, or print its contents.
    #[command(
        subcommand,
        after_help = "Example:\n  agent-harness runtime artifacts cat req_01j… summary.md"
    )]
    Artifacts(artifacts::ArtifactsCommand),
    /// List sessions, or show one with its requests.
    #[command(
        subcommand,
        after_help = "Example:\n  agent-harness runtime sessions show support-42 --workspace ."
    )]
    Sessions(sessions::SessionsCommand),
    /// Print the event log from a cursor; `--follow` keeps printing new events.
    #[command(after_help = events::HELP)]
    Events(events::EventsArgs),
    /// Write an evidence package for a request or a whole session.
    #[command(
        subcommand,
        after_help = "Example:\n  agent-harness runtime export request --workspace . --session support-42 --request req_01j… --artifact-contents --health"
    )]
    Export(export_cmd::ExportCommand),
    /// Check every hash of an evidence package and report tampering by file.
    #[command(
        name = "verify-export",
        after_help = "Example:\n  agent-harness runtime verify-export exports/req_01j…\n\n\
Exit status: 0 when every file matches the manifest, 1 when any file was changed, added or removed."
    )]
    VerifyExport(export_cmd::VerifyArgs),
    /// Run a finished request again from its recording and report the first divergence.
    #[command(subcommand, after_help = replay_cmd::HELP)]
    Replay(replay_cmd::ReplayCommand),
    /// Prune finished requests' records past retention, then compact the store.
    #[command(after_help = maintenance::HELP)]
    Maintenance(maintenance::MaintenanceArgs),
    /// Copy the SQLite store into PostgreSQL, check the copy, and say how to switch.
    #[command(name = "migrate-store", after_help = migrate::HELP)]
    MigrateStore(migrate::MigrateStoreArgs),
}

pub async fn dispatch(ctx: &Ctx, c: RuntimeCommand) -> Result<ExitCode> {
    match c {
        RuntimeCommand::Overview(a) => overview::run(ctx, a).await,
        RuntimeCommand::Doctor(a) => {
            ctx.local_only("runtime doctor")?;
            doctor::run(ctx, a).await
        }
        RuntimeCommand::Health(a) => health::run(ctx, a).await,
        RuntimeCommand::Approvals(c) => approvals::dispatch(ctx, c).await,
        RuntimeCommand::Requests(c) => requests::dispatch(ctx, c).await,
        RuntimeCommand::Sessions(c) => sessions::dispatch(ctx, c).await,
        RuntimeCommand::Artifacts(c) => artifacts::dispatch(ctx, c).await,
        RuntimeCommand::Events(a) => events::run(ctx, a).await,
        RuntimeCommand::Export(c) => export_cmd::export(ctx, c).await,
        RuntimeCommand::VerifyExport(a) => export_cmd::verify(ctx, a),
        RuntimeCommand::Maintenance(a) => {
            ctx.local_only("runtime maintenance")?;
            maintenance::run(ctx, a).await
        }
        RuntimeCommand::MigrateStore(a) => {
            ctx.local_only("runtime migrate-store")?;
            migrate::run(ctx, a).await
        }
        RuntimeCommand::Replay(c) => {
            ctx.local_only("runtime replay")?;
            replay_cmd::run(ctx, c).await
        }
    }
}

/// The width operator tables fit (`None`: no limit).
pub fn set_table_width(w: Option<usize>) {
    table::set_max_width(w);
}

/// A request id as given: in full, or a unique prefix of one (the short ids views print).
pub(crate) async fn request_id(h: &Harness, s: &str) -> Result<RequestId> {
    Ok(h.find_request_id(s).await?)
}

/// An approval id as given: in full, or a unique prefix of one.
pub(crate) async fn approval_id(h: &Harness, s: &str) -> Result<ApprovalId> {
    Ok(h.find_approval_id(s).await?)
}

/// A request id in `src`: remotely only in full (the API has no prefix lookup).
pub(crate) async fn request_id_in(src: &source::Source, s: &str) -> Result<RequestId> {
    match src {
        source::Source::Local(h) => request_id(h, s).await,
        source::Source::Remote(_) => {
            let id = RequestId::parse(s)?;
            full_only("request", RequestId::PREFIX, id.as_str())?;
            Ok(id)
        }
    }
}

/// An approval id in `src`: remotely only in full.
pub(crate) async fn approval_id_in(src: &source::Source, s: &str) -> Result<ApprovalId> {
    match src {
        source::Source::Local(h) => approval_id(h, s).await,
        source::Source::Remote(_) => {
            let id = ApprovalId::parse(s)?;
            full_only("approval", ApprovalId::PREFIX, id.as_str())?;
            Ok(id)
        }
    }
}

fn full_only(what: &str, prefix: &str, s: &str) -> Result<()> {
    if s.len() - prefix.len() < harness_engine::ids::FULL_ID {
        return Err(output::bad_input(format!(
            "{what} id `{s}` is short: with --server give the full id (the API does not look up prefixes)"
        )));
    }
    Ok(())
}

/// `--as` with `--server`: refused, since the server records the token's name.
pub(crate) fn no_as_remote(src: &source::Source, given: Option<&str>) -> Result<()> {
    if matches!(src, source::Source::Remote(_)) && given.is_some() {
        return Err(output::bad_input(
            "--as does not apply with --server: the server records the name of the token's owner",
        ));
    }
    Ok(())
}

pub(crate) fn session_id(s: &str) -> Result<SessionId> {
    Ok(SessionId::parse(s)?)
}

/// Who an operator action is recorded as: `--as`, else `$USER`, else `operator`.
pub(crate) fn operator(name: Option<&str>) -> String {
    name.map(str::to_string)
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "operator".to_string())
}

/// `3m ago`, from the harness clock.
pub(crate) fn ago(now: Timestamp, t: Timestamp) -> String {
    format!("{} ago", relative(t.age(now)))
}

/// `42ms`, `1.2s`, `3m 5s`: a step or request duration.
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => {
            let s = d.as_secs();
            if s < 3600 {
                format!("{}m {}s", s / 60, s % 60)
            } else {
                format!("{}h {}m", s / 3600, (s % 3600) / 60)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_short() {
        assert_eq!(duration(Duration::from_millis(42)), "42ms");
        assert_eq!(duration(Duration::from_millis(1250)), "1.2s");
        assert_eq!(duration(Duration::from_secs(185)), "3m 5s");
        assert_eq!(duration(Duration::from_secs(7300)), "2h 1m");
    }
}
