//! `runtime artifacts list|show|cat`: read a request's artifacts without exporting.

use super::source::Source;
use super::table::{Table, cell, dim};
use super::{ago, request_id_in};
use crate::context::Ctx;
use crate::output::{self, BOLD, DIM, line, paint};
use anyhow::Result;
use harness_core::*;
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

/// `show` prints at most this much of a text artifact; `cat` prints all of it.
const PREVIEW: usize = 4096;

#[derive(clap::Subcommand, Debug)]
pub enum ArtifactsCommand {
    /// Every version of every artifact of a request (and, with --tree, of what it delegated).
    #[command(after_help = "Example:\n  agent-harness runtime artifacts list req_01j… --tree")]
    List {
        /// The request id (`req_…`).
        request: String,
        /// Include the artifacts of delegated child requests.
        #[arg(long)]
        tree: bool,
    },
    /// One artifact's record and, for text, the start of its contents.
    #[command(after_help = "Example:\n  agent-harness runtime artifacts show req_01j… summary.md")]
    Show(Which),
    /// An artifact's contents, byte for byte, on stdout.
    #[command(
        after_help = "Example:\n  agent-harness runtime artifacts cat req_01j… summary.md > summary.md\n\n\
Binary contents are refused on a terminal (redirect them to a file)."
    )]
    Cat(Which),
}

#[derive(clap::Args, Debug)]
pub struct Which {
    /// The request id (`req_…`).
    pub request: String,
    /// The artifact's name.
    pub name: String,
    /// Which version (default: the latest). (`--version` prints the program's.)
    #[arg(long = "artifact-version", value_name = "N")]
    pub artifact_version: Option<u32>,
}

pub async fn dispatch(ctx: &Ctx, c: ArtifactsCommand) -> Result<ExitCode> {
    match c {
        ArtifactsCommand::List { request, tree } => list(ctx, &request, tree).await,
        ArtifactsCommand::Show(w) => show(ctx, w).await,
        ArtifactsCommand::Cat(w) => cat(ctx, w).await,
    }
}

#[derive(Serialize)]
struct Listing {
    now: Timestamp,
    artifacts: Vec<Artifact>,
}

async fn list(ctx: &Ctx, id: &str, tree: bool) -> Result<ExitCode> {
    let h = ctx.source()?;
    let id = request_id_in(&h, id).await?;
    h.get_request(&id).await?;
    let mut ids = vec![id];
    if tree {
        let mut i = 0;
        while i < ids.len() {
            let children = h
                .list_requests(RequestFilter {
                    parent_id: Some(ids[i].clone()),
                    ..Default::default()
                })
                .await?;
            ids.extend(children.into_iter().rev().map(|c| c.id));
            i += 1;
        }
    }
    let mut artifacts = Vec::new();
    for id in &ids {
        artifacts.extend(h.artifacts(id).await?);
    }
    let l = Listing {
        now: h.now()?,
        artifacts,
    };
    if ctx.json {
        output::print_json(&l)?;
        return Ok(ExitCode::SUCCESS);
    }
    if l.artifacts.is_empty() {
        line(paint(DIM, "no artifacts"));
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&["NAME", "VERSION", "TYPE", "SIZE", "CREATED", "REQUEST"]);
    for a in &l.artifacts {
        t.row(vec![
            cell(&a.name),
            cell(a.version.to_string()),
            cell(&a.media_type),
            cell(human_bytes(a.size)),
            dim(ago(l.now, a.created_at)),
            dim(a.request_id.to_string()),
        ]);
    }
    t.lines().into_iter().for_each(line);
    Ok(ExitCode::SUCCESS)
}

/// The artifact `w` names: its record and its contents.
async fn find(h: &Source, w: &Which) -> Result<(Artifact, Vec<u8>)> {
    let id = request_id_in(h, &w.request).await?;
    h.get_request(&id).await?;
    let all = h.artifacts(&id).await?;
    let versions: Vec<&Artifact> = all.iter().filter(|a| a.name == w.name).collect();
    if versions.is_empty() {
        let names: std::collections::BTreeSet<&str> = all.iter().map(|a| a.name.as_str()).collect();
        let known = if names.is_empty() {
            "it has none".to_string()
        } else {
            format!(
                "it has: {}",
                names.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        return Err(output::bad_input(format!(
            "request {id} has no artifact named `{}` ({known})",
            w.name
        )));
    }
    let a = match w.artifact_version {
        None => versions.iter().max_by_key(|a| a.version).copied(),
        Some(v) => versions.iter().find(|a| a.version == v).copied(),
    }
    .ok_or_else(|| {
        let have: Vec<String> = versions.iter().map(|a| a.version.to_string()).collect();
        output::bad_input(format!(
            "artifact `{}` of {id} has no version {} (versions: {})",
            w.name,
            w.artifact_version.unwrap_or_default(),
            have.join(", ")
        ))
    })?
    .clone();
    let bytes = h.read_artifact(&a).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "the contents of artifact `{}` v{} ({}) are missing from the store",
            a.name,
            a.version,
            a.id
        )
    })?;
    Ok((a, bytes))
}

#[derive(Serialize)]
struct Shown {
    artifact: Artifact,
    /// The start of the contents when they are UTF-8 text.
    text: Option<String>,
    truncated: bool,
}

async fn show(ctx: &Ctx, w: Which) -> Result<ExitCode> {
    let h = ctx.source()?;
    let (a, bytes) = find(&h, &w).await?;
    let head = &bytes[..bytes.len().min(PREVIEW)];
    // A cut in the middle of a character still shows the text before it.
    let text = match std::str::from_utf8(head) {
        Ok(s) => Some(s.to_string()),
        Err(e) if e.error_len().is_none() => {
            Some(String::from_utf8_lossy(&head[..e.valid_up_to()]).into_owned())
        }
        Err(_) => None,
    };
    let s = Shown {
        truncated: text.is_some() && bytes.len() > PREVIEW,
        text,
        artifact: a,
    };
    if ctx.json {
        output::print_json(&s)?;
        return Ok(ExitCode::SUCCESS);
    }
    let a = &s.artifact;
    let field = |k: &str, v: String| format!("{} {v}", paint(BOLD, format!("{k:<9}")));
    line(field(
        "artifact",
        format!("{} v{} ({})", a.name, a.version, a.id),
    ));
    line(field("request", a.request_id.to_string()));
    line(field("type", a.media_type.clone()));
    line(field(
        "size",
        format!("{} ({} bytes)", human_bytes(a.size), a.size),
    ));
    line(field("sha256", a.sha256.clone()));
    line(field("created", a.created_at.to_string()));
    match &s.text {
        Some(t) => {
            line(String::new());
            t.lines().for_each(line);
            if s.truncated {
                line(paint(
                    DIM,
                    format!(
                        "… first {PREVIEW} bytes shown: agent-harness runtime artifacts cat {} {}",
                        a.request_id, a.name
                    ),
                ));
            }
        }
        None => line(paint(
            DIM,
            "(binary contents: use `artifacts cat … > file`)",
        )),
    }
    Ok(ExitCode::SUCCESS)
}

async fn cat(ctx: &Ctx, w: Which) -> Result<ExitCode> {
    let h = ctx.source()?;
    let (a, bytes) = find(&h, &w).await?;
    let mut out = std::io::stdout().lock();
    if out.is_terminal() && std::str::from_utf8(&bytes).is_err() {
        return Err(output::bad_input(format!(
            "artifact `{}` v{} is binary ({}): redirect it to a file",
            a.name, a.version, a.media_type
        )));
    }
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
