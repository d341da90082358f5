//! `runtime requests cancel|retry|resume`: actions on one request.

use super::drive::{self, Continued};
use super::{operator, request_id};
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
    let h = ctx.open_existing()?;
    let id = request_id(&h, id).await?;
    let before = h.get_request(&id).await?;
    let r = h
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
            match h.worker_holder().await? {
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
    let h = ctx.open_existing()?;
    let id = request_id(&h, id).await?;
    let old = h.get_request(&id).await?;
    if let Some(parent) = &old.parent_id {
        return Err(refused(format!(
            "request {id} was delegated by {parent}; retry the request that delegated it"
        )));
    }
    let new = h.retry(&old.id).await?;
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
    if h.worker_holder().await?.is_none() {
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
