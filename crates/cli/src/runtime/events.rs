//! `runtime events`: the durable event log from a cursor, optionally followed.

use super::screen::Quit;
use super::{request_id, session_id};
use crate::context::Ctx;
use crate::output::{self, line};
use anyhow::Result;
use harness_core::{Event, EventFilter};
use harness_engine::Harness;
use std::process::ExitCode;

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
