//! `runtime events`: the durable event log from a cursor, optionally followed.

use super::screen::Quit;
use super::source::Source;
use super::{request_id, request_id_in, session_id};
use crate::context::Ctx;
use crate::output::{self, line};
use crate::remote::{Client, RemoteError};
use anyhow::Result;
use harness_core::{ErrorCode, RequestFilter};
use harness_core::{Event, EventFilter};
use harness_engine::Harness;
use std::process::ExitCode;
use std::time::Duration;

pub const HELP: &str = "Examples:\n  agent-harness runtime events --workspace . --request req_01j…\n  \
agent-harness runtime events --workspace . --from 1200 --follow\n  \
agent-harness runtime events --workspace . --from end --follow --json\n\n\
Every event carries `seq`, the global commit-ordered cursor: `--from SEQ` prints the events after \
SEQ, so passing the last seq you saw resumes without skipping or repeating one. With --json each \
event is one JSON object per line.";

const PAGE: usize = 1000;

#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    /// Only events of this request.
    #[arg(long, value_name = "REQUEST")]
    pub request: Option<String>,
    /// Only events of this session.
    #[arg(long, value_name = "SESSION", conflicts_with = "request")]
    pub session: Option<String>,
    /// Print events after this sequence number (`end`: only new ones).
    #[arg(long, default_value = "0", value_name = "SEQ")]
    pub from: String,
    /// Keep printing new events as they commit, until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// Stop after this many events (0: no limit).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub limit: usize,
}

pub async fn run(ctx: &Ctx, a: EventsArgs) -> Result<ExitCode> {
    if let Some(s) = &ctx.server {
        return run_remote(ctx, &Client::new(s)?, a).await;
    }
    let h = ctx.inspect()?;
    let filter = filter(&h, &a).await?;
    let from = match a.from.as_str() {
        "end" => h.store().last_seq().await?,
        s => s.parse::<i64>().map_err(|_| {
            output::bad_input(format!("--from `{s}` is not a sequence number (or `end`)"))
        })?,
    };
    let limit = if a.limit == 0 { usize::MAX } else { a.limit };
    if a.follow {
        follow(&h, filter, from, limit, ctx.json).await?;
    } else {
        dump(&h, filter, from, limit, ctx.json).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The filter, after checking that the request or session named exists.
async fn filter(h: &Harness, a: &EventsArgs) -> Result<EventFilter> {
    let mut f = EventFilter::default();
    if let Some(r) = &a.request {
        let id = request_id(h, r).await?;
        h.get_request(&id).await?;
        f.request_id = Some(id);
    }
    if let Some(s) = &a.session {
        let id = session_id(s)?;
        h.store().get_session(&id).await?;
        f.session_id = Some(id);
    }
    Ok(f)
}

/// One event: a JSON line, or a human line.
pub(crate) fn print(e: &Event, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(e)?);
    } else {
        line(output::event_line(e));
    }
    Ok(())
}

async fn dump(h: &Harness, f: EventFilter, from: i64, limit: usize, json: bool) -> Result<()> {
    let (mut cursor, mut left) = (from, limit);
    while left > 0 {
        let page = h
            .store()
            .events_after(cursor, f.clone(), PAGE.min(left))
            .await?;
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        left -= page.len();
        for e in &page {
            print(e, json)?;
        }
    }
    Ok(())
}

async fn follow(h: &Harness, f: EventFilter, from: i64, limit: usize, json: bool) -> Result<()> {
    let mut events = h.subscribe(from, f);
    let mut quit = Quit::new()?;
    for _ in 0..limit {
        let e = tokio::select! {
            e = events.next() => e?,
            _ = quit.requested() => return Ok(()),
        };
        print(&e, json)?;
    }
    Ok(())
}

/// How long `--follow` keeps trying to reconnect to a server that went away.
const RECONNECT_FOR: Duration = Duration::from_secs(30);

/// `events` through the API's event stream. Without --follow it prints up to the
/// newest event at the start (the overview's last activity), narrowing the stream
/// here; with --follow the server narrows it, and a dropped stream is reopened
/// from the last event printed (`Last-Event-ID`).
async fn run_remote(ctx: &Ctx, c: &Client, a: EventsArgs) -> Result<ExitCode> {
    let src = Source::Remote(c.clone());
    let mut f = EventFilter::default();
    let mut query = Vec::new();
    if let Some(r) = &a.request {
        let id = request_id_in(&src, r).await?;
        src.get_request(&id).await?;
        query.push(("request", id.to_string()));
        f.request_id = Some(id);
    }
    if let Some(s) = &a.session {
        let id = session_id(s)?;
        // The API has no session lookup: a session exists once it has a request.
        let any = src
            .list_requests(RequestFilter {
                session_id: Some(id.clone()),
                limit: 1,
                ..Default::default()
            })
            .await?;
        if any.is_empty() {
            return Err(RemoteError {
                code: ErrorCode::NotFound,
                message: format!("session `{id}` not found"),
            }
            .into());
        }
        query.push(("session", id.to_string()));
        f.session_id = Some(id);
    }
    let newest = || async {
        Ok::<i64, anyhow::Error>(
            src.overview(0)
                .await?
                .last_activity
                .map(|x| x.seq)
                .unwrap_or(0),
        )
    };
    let from = match a.from.as_str() {
        "end" => newest().await?,
        s => s.parse::<i64>().map_err(|_| {
            output::bad_input(format!("--from `{s}` is not a sequence number (or `end`)"))
        })?,
    };
    let mut left = if a.limit == 0 { usize::MAX } else { a.limit };
    if !a.follow {
        let end = newest().await?;
        if from >= end || left == 0 {
            return Ok(ExitCode::SUCCESS);
        }
        let mut events = c.events(from, &[]).await?;
        while let Some(e) = events.next().await? {
            if e.seq > end {
                break;
            }
            let wanted = f
                .request_id
                .as_ref()
                .is_none_or(|r| e.request_id.as_ref() == Some(r))
                && f.session_id
                    .as_ref()
                    .is_none_or(|s| e.session_id.as_ref() == Some(s));
            if wanted {
                print(&e, ctx.json)?;
                left -= 1;
            }
            if e.seq >= end || left == 0 {
                break;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut quit = Quit::new()?;
    let mut cursor = from;
    let mut lost_at: Option<std::time::Instant> = None;
    while left > 0 {
        let opened = tokio::select! {
            o = c.events(cursor, &query) => o,
            _ = quit.requested() => return Ok(ExitCode::SUCCESS),
        };
        let mut events = match opened {
            Ok(s) => {
                lost_at = None;
                s
            }
            // The server is restarting: try again for a while.
            Err(e)
                if e.downcast_ref::<RemoteError>()
                    .is_some_and(|r| r.code == ErrorCode::Unavailable) =>
            {
                let since = *lost_at.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > RECONNECT_FOR {
                    return Err(e);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = quit.requested() => return Ok(ExitCode::SUCCESS),
                }
            }
            Err(e) => return Err(e),
        };
        while left > 0 {
            let next = tokio::select! {
                e = events.next() => e?,
                _ = quit.requested() => return Ok(ExitCode::SUCCESS),
            };
            let Some(e) = next else {
                eprintln!("the event stream ended; reconnecting after #{cursor}");
                break;
            };
            cursor = e.seq;
            print(&e, ctx.json)?;
            left -= 1;
        }
    }
    Ok(ExitCode::SUCCESS)
}
