//! `runtime sessions list|show`.

use super::requests::detail;
use super::table::{Table, cell, dim, styled};
use super::{ago, session_id};
use crate::context::Ctx;
use crate::output::{self, BOLD, DIM, line, paint, status_style};
use anyhow::Result;
use harness_core::*;
use serde::Serialize;
use std::process::ExitCode;

/// Delegation deeper than this is not indented further (a guard against damaged records).
const MAX_DEPTH: usize = 16;

#[derive(clap::Subcommand, Debug)]
pub enum SessionsCommand {
    /// Sessions, most recently active first.
    #[command(
        after_help = "Example:\n  agent-harness runtime sessions list --workspace . --limit 10"
    )]
    List {
        /// At most this many.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: usize,
    },
    /// One session and its requests (delegated children indented under their parent).
    #[command(after_help = "Example:\n  agent-harness runtime sessions show support-42")]
    Show {
        /// The session id.
        id: String,
        /// At most this many requests (newest first).
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: usize,
    },
}

pub async fn dispatch(ctx: &Ctx, c: SessionsCommand) -> Result<ExitCode> {
    match c {
        SessionsCommand::List { limit } => list(ctx, limit).await,
        SessionsCommand::Show { id, limit } => {
            ctx.local_only("runtime sessions show")?;
            show(ctx, &id, limit).await
        }
    }
}

#[derive(Serialize)]
struct Listing {
    now: Timestamp,
    sessions: Vec<Session>,
}

async fn list(ctx: &Ctx, limit: usize) -> Result<ExitCode> {
    let src = ctx.source()?;
    let s = Listing {
        now: src.now()?,
        sessions: src.list_sessions(limit).await?,
    };
    if ctx.json {
        output::print_json(&s)?;
        return Ok(ExitCode::SUCCESS);
    }
    if s.sessions.is_empty() {
        line(paint(DIM, "no sessions yet"));
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&[
        "SESSION",
        "REQUESTS",
        "ACTIVE",
        "LAST AGENT",
        "LAST REQUEST",
        "ACTIVITY",
    ]);
    for x in &s.sessions {
        t.row(vec![
            cell(x.id.to_string()),
            cell(x.requests.to_string()),
            cell(x.active_requests.to_string()),
            cell(x.last_agent.clone().unwrap_or_default()),
            cell(
                x.last_request_id
                    .as_ref()
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
            ),
            dim(ago(s.now, x.last_activity_at)),
        ]);
    }
    t.lines().into_iter().for_each(line);
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Shown {
    now: Timestamp,
    session: Session,
    /// Newest first, delegated children included (they carry `parent_id`).
    requests: Vec<Request>,
    /// Tokens of every model turn of the session (all its requests, not only those shown).
    usage: UsageTotals,
    /// Tokens of each request shown that used any (its own turns).
    request_usage: std::collections::BTreeMap<RequestId, UsageTotals>,
    /// The session's memory: each completed root request shown, oldest first, as
    /// the next request's model is sent it (within its agent's context budget).
    conversation: Vec<Exchange>,
}

/// One request and its answer in a session's conversation.
#[derive(Serialize)]
struct Exchange {
    request_id: RequestId,
    input: String,
    output: String,
}

/// The completed root requests of `requests` (newest first), oldest first.
fn conversation(requests: &[Request]) -> Vec<Exchange> {
    requests
        .iter()
        .rev()
        .filter(|r| r.parent_id.is_none() && r.status == RequestStatus::Completed)
        .filter_map(|r| {
            Some(Exchange {
                request_id: r.id.clone(),
                input: r.input.clone(),
                output: r.output.clone()?,
            })
        })
        .collect()
}

/// `text` on one line, cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

async fn show(ctx: &Ctx, id: &str, limit: usize) -> Result<ExitCode> {
    let id = session_id(id)?;
    let h = ctx.inspect()?;
    let session = h.store().get_session(&id).await?;
    let requests = h
        .list_requests(RequestFilter {
            session_id: Some(id),
            limit,
            ..Default::default()
        })
        .await?;
    let usage = h.store().session_usage(&session.id).await?;
    let ids = requests.iter().map(|r| r.id.clone()).collect();
    let request_usage = h.store().request_usage(ids).await?.into_iter().collect();
    let s = Shown {
        now: h.now(),
        session,
        conversation: conversation(&requests),
        requests,
        usage,
        request_usage,
    };
    if ctx.json {
        output::print_json(&s)?;
    } else {
        show_lines(&s).into_iter().for_each(line);
    }
    Ok(ExitCode::SUCCESS)
}

fn show_lines(s: &Shown) -> Vec<String> {
    let x = &s.session;
    let mut out = vec![
        format!(
            "{} {}",
            paint(BOLD, format!("session {}", x.id)),
            paint(
                DIM,
                format!(
                    "· {} requests · {} active · created {} · last activity {}{}",
                    x.requests,
                    x.active_requests,
                    ago(s.now, x.created_at),
                    ago(s.now, x.last_activity_at),
                    if s.usage.is_empty() {
                        String::new()
                    } else {
                        format!(" · {}", output::tokens(&s.usage))
                    }
                )
            )
        ),
        String::new(),
    ];
    // A tokens column only for sessions whose models report usage (not scripted ones).
    let mut headers = vec!["REQUEST", "AGENT", "STATUS", "STEPS"];
    if !s.request_usage.is_empty() {
        headers.push("TOKENS IN/OUT");
    }
    headers.extend(["CREATED", "DETAIL"]);
    let mut t = Table::new(&headers);
    for r in s.requests.iter().filter(|r| r.parent_id.is_none()) {
        add_row(&mut t, s, r, 0);
    }
    // Children whose parent fell outside the limit.
    let shown = |p: &RequestId| s.requests.iter().any(|r| &r.id == p);
    for r in s
        .requests
        .iter()
        .filter(|r| r.parent_id.as_ref().is_some_and(|p| !shown(p)))
    {
        add_row(&mut t, s, r, 1);
    }
    out.extend(t.lines());
    if !s.conversation.is_empty() {
        out.push(String::new());
        out.push(paint(
            BOLD,
            "conversation (what the session's next request is sent, within its agent's context budget)",
        ));
        for x in &s.conversation {
            out.push(format!("  > {}", one_line(&x.input, 100)));
            out.push(format!("  < {}", one_line(&x.output, 100)));
        }
    }
    out
}

/// A request's row, then its children's rows indented under it.
fn add_row(t: &mut Table, s: &Shown, r: &Request, depth: usize) {
    let indent = match depth {
        0 => String::new(),
        d => format!("{}↳ ", "  ".repeat(d - 1)),
    };
    let mut row = vec![
        cell(format!("{indent}{}", r.id)),
        cell(&r.agent),
        styled(status_style(r.status), r.status.as_str()),
        cell(r.steps.to_string()),
    ];
    if !s.request_usage.is_empty() {
        row.push(match s.request_usage.get(&r.id) {
            Some(u) => cell(format!(
                "{}/{}",
                output::thousands(u.input_tokens),
                output::thousands(u.output_tokens)
            )),
            None => dim("-"),
        });
    }
    row.extend([dim(ago(s.now, r.created_at)), cell(detail(r))]);
    t.row(row);
    let mut children: Vec<&Request> = s
        .requests
        .iter()
        .filter(|c| c.parent_id.as_ref() == Some(&r.id))
        .collect();
    children.reverse();
    if depth >= MAX_DEPTH {
        return;
    }
    for c in children {
        add_row(t, s, c, depth + 1);
    }
}
