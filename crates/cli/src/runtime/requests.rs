//! `runtime requests list|tail|show|cancel|retry|resume`.

use super::drive;
use super::overview::{Delegate, agent_chain};
use super::screen::Quit;
use super::table::{Table, cell, dim, id, styled};
use super::{actions, ago, session_id, tree};
use crate::context::Ctx;
use crate::output::{self, DIM, line, paint, status_style};
use anyhow::Result;
use harness_core::*;
use harness_engine::Harness;
use serde::Serialize;
use std::collections::HashMap;
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum RequestsCommand {
    /// List requests, newest first.
    #[command(
        after_help = "Example:\n  agent-harness runtime requests list --workspace . --status failed,cancelled --agent assistant"
    )]
    List(ListArgs),
    /// The latest requests, with the last events of each active one; `--follow` streams new events.
    #[command(
        after_help = "Example:\n  agent-harness runtime requests tail --workspace . --once\n  agent-harness runtime requests tail --workspace . --follow\n\n\
Without --follow (or with --once) one snapshot is printed. With --follow, new events are printed \
as lines as their steps commit (like `tail -f`), from the snapshot's cursor: none is skipped."
    )]
    Tail(TailArgs),
    /// A request as a tree: steps, delegated child requests, approvals and artifacts in place.
    #[command(after_help = "Example:\n  agent-harness runtime requests show req_01j…")]
    Show {
        /// The request id (`req_…`).
        id: String,
    },
    /// Follow one request and its delegated children until it settles; exit with its outcome.
    #[command(after_help = super::watch::HELP)]
    Watch(super::watch::WatchArgs),
    /// Cancel a request that has not finished (and its delegated children).
    #[command(
        after_help = "Example:\n  agent-harness runtime requests cancel req_01j… --reason \"wrong customer\"\n\n\
A running request stops at its next step boundary; a running command tool is terminated.\n\
Cancelling a delegated child cancels it and everything under it; its parent goes on, and\n\
its model sees the delegate call fail as cancelled. Cancel the root to stop a whole tree."
    )]
    Cancel {
        /// The request id (`req_…`).
        id: String,
        /// Who cancels (default: $USER, else `operator`).
        #[arg(long = "as", value_name = "NAME")]
        by: Option<String>,
        /// Why, recorded on the request and in its events.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Add a note to a request without deciding anything (shown by `show`, in events and exports).
    #[command(
        after_help = "Example:\n  agent-harness runtime requests annotate req_01j… -m \"customer confirmed by phone\""
    )]
    Annotate(super::notes::AnnotateArgs),
    /// Admit a new request with the same session, agent and input as a finished one.
    #[command(after_help = "Example:\n  agent-harness runtime requests retry req_01j…")]
    Retry {
        /// The request id (`req_…`) to run again.
        id: String,
    },
    /// Run a queued or interrupted request in this process until it settles (when no worker runs).
    #[command(
        after_help = "Example:\n  agent-harness runtime requests resume req_01j…\n\n\
When a `serve` worker holds the workspace, the worker is already handling it and nothing is done."
    )]
    Resume {
        /// The request id (`req_…`).
        id: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only requests in these states (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', value_name = "STATUS")]
    pub status: Vec<RequestStatus>,
    /// Only requests of this agent.
    #[arg(long, value_name = "AGENT")]
    pub agent: Option<String>,
    /// Only requests of this session.
    #[arg(long, value_name = "SESSION")]
    pub session: Option<String>,
    /// Include delegated child requests (default: only requests admitted directly).
    #[arg(long)]
    pub all: bool,
    /// Only requests admitted within this long (`90m`, `2h`, `1d`) or since an instant
    /// (RFC 3339, e.g. `2026-01-05T17:00:00Z`).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only requests of this trace id (the `trace_id` of a log line or an event).
    #[arg(long, value_name = "TRACE_ID")]
    pub trace: Option<String>,
    /// Only requests whose input or error contains this text (ignoring case).
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
    /// Order: newest (admitted last first), oldest, or activity (latest activity first).
    #[arg(long, default_value = "newest", value_name = "ORDER")]
    pub sort: RequestOrder,
    /// At most this many (newest first).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub limit: usize,
}

#[derive(clap::Args, Debug)]
pub struct TailArgs {
    #[command(flatten)]
    pub list: ListArgs,
    /// Print one snapshot and exit (the default without --follow).
    #[arg(long, conflicts_with = "follow")]
    pub once: bool,
    /// Keep printing new events as their steps commit, until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// Events shown under each active request.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub events: usize,
}

pub async fn dispatch(ctx: &Ctx, c: RequestsCommand) -> Result<ExitCode> {
    match c {
        RequestsCommand::List(a) => list(ctx, a).await,
        RequestsCommand::Tail(a) => {
            ctx.local_only("runtime requests tail")?;
            tail(ctx, a).await
        }
        RequestsCommand::Show { id } => tree::show(ctx, &id).await,
        RequestsCommand::Watch(a) => {
            ctx.local_only("runtime requests watch")?;
            super::watch::run(ctx, a).await
        }
        RequestsCommand::Cancel { id, by, reason } => {
            actions::cancel(ctx, &id, by.as_deref(), reason.as_deref()).await
        }
        RequestsCommand::Retry { id } => actions::retry(ctx, &id).await,
        RequestsCommand::Annotate(a) => {
            ctx.local_only("runtime requests annotate")?;
            super::notes::annotate(ctx, a, false).await
        }
        RequestsCommand::Resume { id } => actions::resume(ctx, &id).await,
    }
}

fn filter(a: &ListArgs, now: Timestamp) -> Result<RequestFilter> {
    Ok(RequestFilter {
        statuses: a.status.clone(),
        session_id: a.session.as_deref().map(session_id).transpose()?,
        agent: a.agent.clone(),
        parent_id: None,
        roots_only: !a.all,
        since: a.since.as_deref().map(|s| since(s, now)).transpose()?,
        trace_id: a.trace.clone(),
        text: a.search.clone().filter(|s| !s.is_empty()),
        retry_of: None,
        order: a.sort,
        limit: a.limit,
    })
}

/// `--since`: a duration back from now, or an RFC 3339 instant.
fn since(s: &str, now: Timestamp) -> Result<Timestamp> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now.minus(d));
    }
    crate::context::parse_now(s).ok_or_else(|| {
        output::bad_input(format!(
            "--since `{s}` is neither a duration (90m, 2h, 1d) nor an RFC 3339 instant"
        ))
    })
}

#[derive(Serialize)]
struct Listing {
    now: Timestamp,
    requests: Vec<Request>,
}

async fn list(ctx: &Ctx, a: ListArgs) -> Result<ExitCode> {
    let src = ctx.source()?;
    let now = src.now()?;
    let s = Listing {
        now,
        requests: src.list_requests(filter(&a, now)?).await?,
    };
    if ctx.json {
        output::print_json(&s)?;
        return Ok(ExitCode::SUCCESS);
    }
    if s.requests.is_empty() {
        line(paint(DIM, "no requests match"));
    }
    let mut t = Table::new(&[
        "REQUEST", "SESSION", "AGENT", "STATUS", "STEPS", "CREATED", "ACTIVITY", "DETAIL",
    ]);
    for r in &s.requests {
        t.row(vec![
            id(&r.id),
            cell(r.session_id.to_string()),
            cell(&r.agent),
            styled(status_style(r.status), r.status.as_str()),
            cell(r.steps.to_string()),
            dim(ago(s.now, r.created_at)),
            dim(ago(s.now, r.last_activity_at)),
            cell(detail(r)),
        ]);
    }
    if !s.requests.is_empty() {
        t.lines().into_iter().for_each(line);
    }
    Ok(ExitCode::SUCCESS)
}

/// The answer or the error of a finished request, clipped; a parent for a child.
pub fn detail(r: &Request) -> String {
    let text = match r.status {
        RequestStatus::Completed => r.output.clone().unwrap_or_default(),
        RequestStatus::Failed | RequestStatus::Cancelled => r.error.clone().unwrap_or_default(),
        _ => String::new(),
    };
    match &r.parent_id {
        Some(p) if text.is_empty() => format!("delegated by {p}"),
        _ => output::clip(&text, 60),
    }
}

#[derive(Serialize)]
struct TailEntry {
    #[serde(flatten)]
    request: Request,
    delegates: Vec<Delegate>,
    /// The last events of an active request (and of its delegated children), oldest first.
    recent_events: Vec<Event>,
}

#[derive(Serialize)]
struct TailSnapshot {
    now: Timestamp,
    /// Event cursor at the snapshot: `events --from CURSOR --follow` continues from here.
    cursor: i64,
    requests: Vec<TailEntry>,
}

async fn tail_snapshot(h: &Harness, a: &TailArgs) -> Result<TailSnapshot> {
    let cursor = h.store().last_seq().await?;
    let requests = h.list_requests(filter(&a.list, h.now())?).await?;
    let mut out = Vec::with_capacity(requests.len());
    for request in requests {
        let delegates = h.delegates_of(&request.id).await?;
        let recent_events = if request.status.is_terminal() || a.events == 0 {
            Vec::new()
        } else {
            last_events(h, &request, &delegates, a.events).await?
        };
        out.push(TailEntry {
            request,
            delegates,
            recent_events,
        });
    }
    Ok(TailSnapshot {
        now: h.now(),
        cursor,
        requests: out,
    })
}

/// The last `n` events of a request and its children, oldest first.
async fn last_events(
    h: &Harness,
    r: &Request,
    delegates: &[Delegate],
    n: usize,
) -> Result<Vec<Event>> {
    let mut ids = vec![r.id.clone()];
    ids.extend(delegates.iter().map(|d| d.id.clone()));
    Ok(h.store().recent_events(ids, n).await?)
}

async fn tail(ctx: &Ctx, a: TailArgs) -> Result<ExitCode> {
    let h = ctx.inspect()?;
    let snap = tail_snapshot(&h, &a).await?;
    if ctx.json {
        println!("{}", serde_json::to_string(&snap)?);
    } else {
        tail_lines(&snap).into_iter().for_each(line);
    }
    if a.follow {
        follow(&h, &a, snap.cursor, ctx.json).await?;
    }
    Ok(ExitCode::SUCCESS)
}

fn tail_lines(s: &TailSnapshot) -> Vec<String> {
    if s.requests.is_empty() {
        return vec![paint(DIM, "no requests match")];
    }
    let mut t = Table::new(&["REQUEST", "AGENT", "STATUS", "STEPS", "ACTIVITY", "DETAIL"]);
    for e in &s.requests {
        let r = &e.request;
        t.row(vec![
            id(&r.id),
            cell(agent_chain(&r.agent, &e.delegates)),
            styled(status_style(r.status), r.status.as_str()),
            cell(r.steps.to_string()),
            dim(ago(s.now, r.last_activity_at)),
            cell(detail(r)),
        ]);
        for ev in &e.recent_events {
            t.note(format!("  {}", output::event_line(ev)));
        }
    }
    t.lines()
}

/// Prints events after `cursor` as they commit, narrowed like the listing.
async fn follow(h: &Harness, a: &TailArgs, cursor: i64, json: bool) -> Result<()> {
    let f = filter(&a.list, h.now())?;
    let mut events = h.subscribe(
        cursor,
        EventFilter {
            session_id: f.session_id.clone(),
            ..Default::default()
        },
    );
    let mut agents: HashMap<RequestId, String> = HashMap::new();
    let mut quit = Quit::new()?;
    loop {
        let e = tokio::select! {
            e = events.next() => e?,
            _ = quit.requested() => return Ok(()),
        };
        if !matches_agent(h, &e, f.agent.as_deref(), &mut agents).await? {
            continue;
        }
        if json {
            println!("{}", serde_json::to_string(&e)?);
        } else {
            line(output::event_line(&e));
        }
    }
}

/// With `--agent`, only events of that agent's requests (children count as their root's).
async fn matches_agent(
    h: &Harness,
    e: &Event,
    agent: Option<&str>,
    cache: &mut HashMap<RequestId, String>,
) -> Result<bool> {
    let (Some(agent), Some(id)) = (agent, &e.request_id) else {
        return Ok(agent.is_none());
    };
    if !cache.contains_key(id) {
        let root = drive::root_of(h, id).await?;
        cache.insert(id.clone(), root.agent);
    }
    Ok(cache.get(id).map(String::as_str) == Some(agent))
}
