//! Continuing a request after an operator action (approve, reject, resume): in
//! this process when no worker holds the workspace, printing its events as they
//! commit; otherwise the worker continues it and we say so.

use crate::live::Live;
use crate::output::{self, BOLD, DIM, GREEN, YELLOW, line, paint, status_style};
use anyhow::{Context, Result};
use harness_core::*;
use harness_engine::{Harness, HarnessError, LockHolder, WorkerOptions};
use serde::Serialize;

/// Who continues the run.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum HandledBy {
    /// This process ran it until it settled.
    InProcess,
    /// The worker holding the workspace picks it up.
    Worker { worker_id: String, pid: u32 },
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Continued {
    pub handled_by: HandledBy,
    /// The root request as it is now (settled when run in process).
    pub request: Request,
}

/// The root of a delegation chain: the request a worker claims and runs.
pub async fn root_of(h: &Harness, id: &RequestId) -> Result<Request> {
    Ok(h.root_of(id).await?)
}

fn worker(w: LockHolder) -> HandledBy {
    HandledBy::Worker {
        worker_id: w.worker_id,
        pid: w.pid,
    }
}

/// Continues `root` (a root request) from event cursor `from`.
pub async fn continue_run(h: &Harness, root: &Request, from: i64, json: bool) -> Result<Continued> {
    if let Some(w) = h.worker_holder().await? {
        return Ok(Continued {
            handled_by: worker(w),
            request: h.get_request(&root.id).await?,
        });
    }
    if !json {
        line(paint(
            DIM,
            "no worker holds the workspace: continuing in this process",
        ));
    }
    let print = |e: &Event| {
        if !json {
            print_event(e)
        }
    };
    let live = crate::live::Live::on_terminal(h, &root.session_id, json);
    match run_in_process(h, root, from, live, print).await? {
        // A worker started meanwhile and took the workspace: it continues the run.
        Err(HarnessError::Locked(_)) => Ok(Continued {
            handled_by: h
                .worker_holder()
                .await?
                .map(worker)
                .unwrap_or(HandledBy::Worker {
                    worker_id: String::new(),
                    pid: 0,
                }),
            request: h.get_request(&root.id).await?,
        }),
        Err(e) => Err(e.into()),
        Ok(request) => Ok(Continued {
            handled_by: HandledBy::InProcess,
            request,
        }),
    }
}

/// Runs `root` in this process until it settles, passing the session's events
/// from cursor `from` to `on_event` as they commit. The inner error is the
/// worker's (e.g. `Locked` when another worker took the workspace first).
///
/// This process now owns running requests: a closed stdout (`… | head`) must
/// not kill it mid-step, so SIGPIPE is ignored from here on (output to a closed
/// pipe is dropped). Ctrl-C (or SIGTERM) stops the run hard: running tools are
/// terminated, their calls recorded as interrupted, and the request goes back on
/// the queue, which [`report`]/[`interrupted`] then say. With `live`, the model
/// turns' pieces are printed as they stream, between the event lines.
pub async fn run_in_process(
    h: &Harness,
    root: &Request,
    from: i64,
    mut live: Option<Live>,
    mut on_event: impl FnMut(&Event),
) -> Result<Result<Request, HarnessError>> {
    // SAFETY: setting a signal disposition has no memory effects.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let mut signals = crate::core_cmds::Signals::install()?;
    let (h2, id) = (h.clone(), root.id.clone());
    let mut runner = tokio::spawn(async move {
        harness_engine::run_until_settled(&h2, &id, WorkerOptions::default()).await
    });
    let mut events = h.subscribe(
        from,
        EventFilter {
            session_id: Some(root.session_id.clone()),
            ..Default::default()
        },
    );
    let mut event = |e: &Event, live: &mut Option<Live>| {
        if let Some(l) = live {
            l.close_line();
        }
        on_event(e)
    };
    let outcome = loop {
        tokio::select! {
            done = &mut runner => break done.context("the in-process worker failed")?,
            e = events.next() => event(&e?, &mut live),
            d = Live::next(&mut live) => live.as_mut().expect("a piece comes from a watcher").show(d),
            () = signals.next() => h.abort(),
        }
    };
    while let Some(e) = events.try_next().await? {
        event(&e, &mut live);
    }
    // A turn cut short (Ctrl-C) leaves its line open: end it before the report.
    if let Some(l) = &mut live {
        l.close_line();
    }
    Ok(outcome)
}

fn print_event(e: &Event) {
    line(format!("  {}", output::event_line(e)));
}

/// The human report after an action: who continues the run, and where it stands.
pub fn report(c: &Continued) {
    match &c.handled_by {
        HandledBy::Worker { worker_id, pid } => {
            line(format!(
                "handed to worker {worker_id} (pid {pid}); follow it with: agent-harness runtime requests tail --follow"
            ));
        }
        HandledBy::InProcess => settled(&c.request),
    }
}

/// The run was stopped before it settled (Ctrl-C): where it was left, and how
/// to continue it.
pub fn interrupted(r: &Request) {
    line(format!(
        "{} request {} was stopped and is {} (attempt {}, {} steps committed); a call that was running is recorded as interrupted.\n  resume it: agent-harness runtime requests resume {}\n  or start a worker: agent-harness serve",
        paint(YELLOW.bold(), "interrupted:"),
        r.id,
        r.status,
        r.attempt,
        r.steps,
        r.id
    ));
}

fn settled(r: &Request) {
    match r.status {
        RequestStatus::Queued | RequestStatus::Running => interrupted(r),
        RequestStatus::Completed => line(format!(
            "{} {} {}",
            paint(GREEN.bold(), "completed:"),
            r.id,
            output::clip(r.output.as_deref().unwrap_or(""), 200)
        )),
        RequestStatus::WaitingApproval => line(format!(
            "{} {} is paused for approval: agent-harness runtime approvals list --status pending",
            paint(YELLOW.bold(), "waiting:"),
            r.id
        )),
        s => line(format!(
            "{} {} {}",
            paint(status_style(s).bold(), format!("{s}:")),
            paint(BOLD, &r.id),
            r.error.as_deref().unwrap_or("")
        )),
    }
}
