//! `runtime export request|session` and `runtime verify-export`: argument parsing
//! and reporting around [`crate::export`], which builds and checks the packages.

use super::request_id_in;
use super::source::Source;
use super::{request_id, session_id};
use crate::context::Ctx;
use crate::output::{self, BOLD, DIM, GREEN, RED, line, paint};
use crate::remote::RemoteError;
use anyhow::{Context, Result};
use harness_core::ErrorCode;
use harness_engine::Harness;
use harness_export::{self as export, ExportOptions};
use std::io::{Read, Write};
use std::path::Path;
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
    if let Some(s) = &ctx.server {
        let summary = export_remote(&crate::remote::Client::new(s)?, c).await?;
        return report(ctx, &summary);
    }
    let h = ctx.inspect()?;
    let opts = match c {
        ExportCommand::Request(a) => options(&h, a.common, Some(&a.request)).await?,
        ExportCommand::Session(a) => options(&h, a, None).await?,
    };
    let summary = export::export(&h, &opts).await?;
    report(ctx, &summary)
}

fn report(ctx: &Ctx, summary: &export::ExportSummary) -> Result<ExitCode> {
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

/// `export request --server`: the package `GET /v1/requests/{id}/export` sends, written
/// to `--out` (a new `.tar.gz`: the API sends one), summarised from its manifest.
async fn export_remote(
    c: &crate::remote::Client,
    cmd: ExportCommand,
) -> Result<export::ExportSummary> {
    let a = match cmd {
        ExportCommand::Request(a) => a,
        ExportCommand::Session(_) => {
            return Err(crate::remote::not_remote("runtime export session"));
        }
    };
    let out = a
        .common
        .out
        .clone()
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .ok_or_else(|| {
            output::bad_input(
                "with --server, --out must name a new .tar.gz file (the API sends the package as one)",
            )
        })?;
    if std::fs::symlink_metadata(&out).is_ok() {
        return Err(output::bad_input(format!(
            "`{}` already exists: an export never overwrites; choose another --out path",
            out.display()
        )));
    }
    let session = session_id(&a.common.session)?;
    let src = Source::Remote(c.clone());
    let id = request_id_in(&src, &a.request).await?;
    // As a local export: an unknown request, or one of another session, is bad input.
    let req = match src.get_request(&id).await {
        Err(e)
            if e.downcast_ref::<RemoteError>()
                .is_some_and(|r| r.code == ErrorCode::NotFound) =>
        {
            return Err(output::bad_input(format!(
                "request `{id}` not found in session `{session}`"
            )));
        }
        other => other?,
    };
    if req.session_id != session {
        return Err(output::bad_input(format!(
            "request `{id}` belongs to session `{}`, not `{session}`",
            req.session_id
        )));
    }
    let query = [
        ("artifact_contents", a.common.artifact_contents.to_string()),
        ("health", a.common.health.to_string()),
    ];
    let mut res = c
        .send(
            reqwest::Method::GET,
            &format!("/v1/requests/{id}/export"),
            &query,
            None,
        )
        .await?;
    // Written beside the target, renamed into place once complete.
    let part = PathBuf::from(format!("{}.part", out.display()));
    let written = async {
        let mut f = std::fs::File::create_new(&part)
            .with_context(|| format!("cannot create `{}`", part.display()))?;
        while let Some(chunk) = res
            .chunk()
            .await
            .context("the export download was cut short")?
        {
            f.write_all(&chunk)?;
        }
        f.sync_all()?;
        let summary = summary_of(&part, &out)?;
        std::fs::rename(&part, &out)
            .with_context(|| format!("cannot move the package to `{}`", out.display()))?;
        Ok::<_, anyhow::Error>(summary)
    }
    .await;
    if written.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    written
}

/// What a local export reports, from a downloaded package's manifest.
fn summary_of(file: &Path, out: &Path) -> Result<export::ExportSummary> {
    #[derive(serde::Deserialize)]
    struct Counts {
        requests: usize,
        events: usize,
    }
    #[derive(serde::Deserialize)]
    struct Manifest {
        counts: Counts,
        files: Vec<serde_json::Value>,
    }
    let bytes = std::fs::metadata(file)?.len();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(file)?));
    for entry in archive
        .entries()
        .context("the downloaded package is not a .tar.gz")?
    {
        let mut entry = entry.context("the downloaded package is not a .tar.gz")?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if path == "manifest.json" || path.ends_with("/manifest.json") {
            let mut text = Vec::new();
            entry.read_to_end(&mut text)?;
            let m: Manifest = serde_json::from_slice(&text)
                .context("the downloaded package's manifest.json cannot be read")?;
            return Ok(export::ExportSummary {
                path: out.to_path_buf(),
                // `files` lists every file but the manifest itself.
                files: m.files.len() + 1,
                bytes,
                requests: m.counts.requests,
                events: m.counts.events,
            });
        }
    }
    anyhow::bail!("the downloaded package has no manifest.json")
}
