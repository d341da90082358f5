//! `runtime export request|session` and `runtime verify-export`: argument parsing
//! and reporting around [`crate::export`], which builds and checks the packages.

use super::{request_id, session_id};
use crate::context::Ctx;
use crate::output::{self, BOLD, DIM, GREEN, RED, line, paint};
use anyhow::Result;
use harness_engine::Harness;
use harness_export::{self as export, ExportOptions};
use std::path::PathBuf;
use std::process::ExitCode;

macro_rules! export_help {
    ($example:literal) => {
        concat!(
            "Example:\n  ",
            $example,
            "\n\n--out PATH: a directory, or a .tar.gz file when PATH ends so; by default a new \
folder under the workspace's exports/, whose path is printed.\n\n\
The package holds manifest.json (format version, what was exported, when, by which version, the \
sha256 of every file), the request(s) with their delegated children and journals, events as \
JSONL, approvals with who decided and when, artifact metadata (contents with \
--artifact-contents), the health snapshot (with --health), the workspace configuration with \
secrets redacted, and trace ids. Check it with `agent-harness runtime verify-export PATH`."
        )
    };
}

#[derive(clap::Subcommand, Debug)]
pub enum ExportCommand {
    /// Export one request (and its delegated children) as an evidence package.
    #[command(after_help = export_help!(
        "agent-harness runtime export request --workspace . --session support-42 --request req_01j… --artifact-contents --health"
    ))]
    Request(RequestArgs),
    /// Export every request of a session as an evidence package.
    #[command(after_help = export_help!(
        "agent-harness runtime export session --workspace . --session support-42 --out evidence.tar.gz"
    ))]
    Session(CommonArgs),
}

#[derive(clap::Args, Debug)]
pub struct CommonArgs {
    /// The session to export from.
    #[arg(long, value_name = "SESSION")]
    pub session: String,
    /// Include the contents of artifacts (metadata is always included).
    #[arg(long)]
    pub artifact_contents: bool,
    /// Include a health snapshot taken at export time.
    #[arg(long)]
    pub health: bool,
    /// Where to write: a new directory, or a `.tar.gz` file.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct RequestArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The request to export.
    #[arg(long, value_name = "REQUEST")]
    pub request: String,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The package: a directory or a `.tar.gz` file.
    pub path: PathBuf,
}

async fn options(h: &Harness, c: CommonArgs, request: Option<&str>) -> Result<ExportOptions> {
    Ok(ExportOptions {
        session: session_id(&c.session)?,
        request: match request {
            Some(r) => Some(request_id(h, r).await?),
            None => None,
        },
        artifact_contents: c.artifact_contents,
        health: c.health,
        out: c.out,
    })
}

pub async fn export(ctx: &Ctx, c: ExportCommand) -> Result<ExitCode> {
    let h = ctx.inspect()?;
    let opts = match c {
        ExportCommand::Request(a) => options(&h, a.common, Some(&a.request)).await?,
        ExportCommand::Session(a) => options(&h, a, None).await?,
    };
    let summary = export::export(&h, &opts).await?;
    if ctx.json {
        output::print_json(&summary)?;
        return Ok(ExitCode::SUCCESS);
    }
    line(format!(
        "{} {} ({} files, {} bytes; {} requests, {} events)",
        paint(GREEN.bold(), "exported"),
        summary.path.display(),
        summary.files,
        summary.bytes,
        summary.requests,
        summary.events
    ));
    line(paint(
        DIM,
        format!(
            "verify: agent-harness runtime verify-export {}",
            summary.path.display()
        ),
    ));
    Ok(ExitCode::SUCCESS)
}

pub fn verify(ctx: &Ctx, a: VerifyArgs) -> Result<ExitCode> {
    let report = export::verify_export(&a.path)?;
    let code = if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if ctx.json {
        output::print_json(&report)?;
        return Ok(code);
    }
    if report.ok {
        line(format!(
            "{} {}: {} files match the manifest",
            paint(GREEN.bold(), "ok"),
            report.path.display(),
            report.checked
        ));
        return Ok(code);
    }
    line(format!(
        "{} {}: {} problem(s) in {} files checked",
        paint(RED.bold(), "tampered"),
        report.path.display(),
        report.problems.len(),
        report.checked
    ));
    for p in &report.problems {
        line(format!("  {} {}", paint(BOLD, &p.file), p.problem));
    }
    Ok(code)
}
