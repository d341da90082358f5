//! `runtime requests cancel|retry|resume`: actions on one request.

use super::drive::{self, Continued};
use super::source::Source;
use super::{operator, request_id, request_id_in};
use crate::context::Ctx;
use crate::output::{self, BOLD, DIM, line, paint, status_style};
use anyhow::Result;
use harness_core::*;
use harness_engine::Resumable;
use serde::Serialize;
use std::process::ExitCode;

pub async fn cancel(
    ctx: &Ctx,
    id: &str,
    by: Option<&str>,
    reason: Option<&str>,
) -> Result<ExitCode> {
    let src = source(ctx)?;
    super::no_as_remote(&src, by)?;
    let id = request_id_in(&src, id).await?;
    let before = src.get_request(&id).await?;
    let r = src
        .cancel(&id, &Actor::new(ActorKind::Cli, operator(by)), reason)
        .await?;
    if ctx.json {
        output::print_json(&r)?;
    } else {
        line(format!(
            "{} {} (was {}){}",
            paint(status_style(r.status).bold(), "cancelled"),
            r.id,
            before.status,
            match src.worker().await? {
                Some(w) if before.status == RequestStatus::Running =>
                    format!("; worker {} stops it at its next step", w.worker_id),
                _ => String::new(),
            }
        ));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Retried {
    retried_from: RequestId,
    request: Request,
}

pub async fn retry(ctx: &Ctx, id: &str) -> Result<ExitCode> {
    let src = source(ctx)?;
    let id = request_id_in(&src, id).await?;
    let old = src.get_request(&id).await?;
    if let Some(parent) = &old.parent_id {
        return Err(refused(format!(
            "request {id} was delegated by {parent}; retry the request that delegated it"
        )));
    }
    let new = src.retry(&old.id).await?;
    if ctx.json {
        output::print_json(&Retried {
            retried_from: old.id,
            request: new,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    line(format!(
        "{} {}",
        new.id,
        paint(
            DIM,
            format!(
                "(retry of {} · session {} · agent {})",
                old.id, new.session_id, new.agent
            )
        )
    ));
    if src.worker().await?.is_none() {
        line(paint(
            DIM,
            format!(
                "no worker is running: run it now with `agent-harness runtime requests resume {}`",
                new.id
            ),
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn refused(message: String) -> anyhow::Error {
    output::CliError {
        code: output::EXIT_REFUSED,
        message,
    }
    .into()
}

pub async fn resume(ctx: &Ctx, id: &str) -> Result<ExitCode> {
    if let Some(s) = &ctx.server {
        return resume_remote(ctx, &crate::remote::Client::new(s)?, id).await;
    }
    let h = ctx.open_existing()?;
    let id = request_id(&h, id).await?;
    let root = match h.resumable(&id).await? {
        Resumable::Ready(root) => root,
        Resumable::WaitingApproval { root, pending } => return Err(waiting(&root, &pending)),
    };
    let from = h.store().last_seq().await?;
    if !ctx.json {
        line(format!(
            "{} {} ({})",
            paint(BOLD, "resuming"),
            root.id,
            root.status
        ));
    }
    let continued: Continued = drive::continue_run(&h, &root, from, ctx.json).await?;
    if ctx.json {
        output::print_json(&continued)?;
    } else {
        drive::report(&continued);
    }
    Ok(match continued.handled_by {
        drive::HandledBy::InProcess => output::outcome_exit(continued.request.status, 0),
        drive::HandledBy::Worker { .. } => ExitCode::SUCCESS,
    })
}

/// A paused request resumes only through its approval: say which one.
fn waiting(root: &Request, pending: &[Approval]) -> anyhow::Error {
    let how: Vec<String> = pending
        .iter()
        .map(|a| format!("\n  {}", super::approvals::approve_command(a)))
        .collect();
    refused(format!(
        "request {} is waiting for approval; it resumes when the approval is resolved:{}",
        root.id,
        how.concat()
    ))
}

/// Actions act on existing records: the workspace opened as `open_existing`, or the API.
fn source(ctx: &Ctx) -> Result<Source> {
    Ok(match &ctx.server {
        Some(s) => Source::Remote(crate::remote::Client::new(s)?),
        None => Source::Local(ctx.open_existing()?),
    })
}

/// `requests resume` through the API: the server's worker continues the request
/// (`POST /v1/requests/{id}/resume` answers who; it refuses one paused for
/// approval, finished, or with no worker to run it).
async fn resume_remote(ctx: &Ctx, c: &crate::remote::Client, id: &str) -> Result<ExitCode> {
    let src = Source::Remote(c.clone());
    let id = request_id_in(&src, id).await?;
    let root = src.root_of(&id).await?;
    let continued: Continued = c
        .post(&format!("/v1/requests/{id}/resume"), serde_json::json!({}))
        .await?;
    if ctx.json {
        output::print_json(&continued)?;
    } else {
        line(format!(
            "{} {} ({})",
            paint(BOLD, "resuming"),
            root.id,
            root.status
        ));
        drive::report(&continued);
    }
    Ok(ExitCode::SUCCESS)
}
