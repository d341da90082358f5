//! `runtime requests watch R` (like `gh run watch`): follows one request and its
//! delegated children until it settles, and exits with its outcome. On a terminal
//! the tree and its last events are redrawn in place; otherwise each event is
//! printed once as a line (or a JSON line) as it commits.

use super::doctor::tree_lines;
use super::events::print;
use super::screen::{Quit, Screen};
use super::{ago, request_id};
use crate::context::Ctx;
use crate::output::{
    self, DIM, EXIT_INTERRUPTED, EXIT_WAITING_APPROVAL, GREEN, RED, YELLOW, line, paint,
};
use anyhow::Result;
use harness_core::*;
use harness_engine::Harness;
use std::collections::{HashMap, VecDeque};
use std::process::ExitCode;
use std::time::Duration;

pub const HELP: &str = "Example:\n  agent-harness runtime requests watch req_01j…\n\n\
Follows the request and everything it delegates until it settles: on a terminal the tree and \
its last events are redrawn in place; otherwise every event is printed once, as it commits \
(JSON Lines with --json, then the request itself as the last line).\n\n\
Exit status (the table `run` and `requests resume` share): 0 completed; 1 failed; 4 paused \
waiting for an approval; 5 cancelled; 130 stopped with Ctrl-C before it settled (the request goes on).";

/// Events kept on screen under the tree.
const SHOWN: usize = 10;
/// How deep a parent chain is followed to find whether an event is the tree's.
const MAX_DEPTH: usize = 32;

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// The request id (`req_…`).
    pub id: String,
    /// How often a terminal frame is redrawn when nothing happens (ages move on).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
}

pub async fn run(ctx: &Ctx, a: WatchArgs) -> Result<ExitCode> {
    let h = ctx.inspect()?;
    let id = request_id(&h, &a.id).await?;
    // The cursor is taken before the first look at the request: an event committed
    // in between is delivered, never missed.
    let cursor = h.store().last_seq().await?;
    let first = h.get_request(&id).await?;
    let mut events = h.subscribe(
        cursor,
        EventFilter {
            session_id: Some(first.session_id.clone()),
            ..Default::default()
        },
    );
    let mut screen = Screen::new();
    let live = screen.is_tty() && !ctx.json;
    let mut quit = Quit::new()?;
    let mut members = Members::new(id.clone());
    let ids = h.request_tree(&id).await?.ids();
    let mut shown: VecDeque<Event> = h.store().recent_events(ids, SHOWN).await?.into();
    if !live {
        for e in &shown {
            print(e, ctx.json)?;
        }
    }
    loop {
        let r = h.get_request(&id).await?;
        if settled(r.status) {
            // The settling commit's events may have landed after the last batch:
            // read on until caught up (they are visible, the status was).
            let mut rest = Vec::new();
            while let Some(e) = events.try_next().await? {
                rest.push(e);
            }
            show(&h, rest, &mut members, &mut shown, live, ctx.json).await?;
            if live {
                screen.draw(&frame(&h, &r, &shown).await?);
            }
            return finish(&h, &r, ctx.json).await;
        }
        if live {
            screen.draw(&frame(&h, &r, &shown).await?);
        }
        let e = tokio::select! {
            e = events.next() => Some(e?),
            _ = tokio::time::sleep(a.interval) => None,
            _ = quit.requested() => {
                if !ctx.json {
                    line(format!(
                        "{} stopped watching; {} is {} and goes on",
                        paint(YELLOW.bold(), "interrupted:"),
                        r.id,
                        r.status
                    ));
                }
                return Ok(ExitCode::from(EXIT_INTERRUPTED));
            }
        };
        // Everything already committed is taken at once: one redraw per burst.
        let mut batch: Vec<Event> = e.into_iter().collect();
        while let Some(e) = events.try_next().await? {
            batch.push(e);
        }
        show(&h, batch, &mut members, &mut shown, live, ctx.json).await?;
    }
}

/// Prints the tree's events of `batch` (as lines when not redrawing) and keeps
/// the last [`SHOWN`] for the frame.
async fn show(
    h: &Harness,
    batch: Vec<Event>,
    members: &mut Members,
    shown: &mut VecDeque<Event>,
    live: bool,
    json: bool,
) -> Result<()> {
    for e in batch {
        if !members.contains(h, &e).await? {
            continue;
        }
        if !live {
            print(&e, json)?;
        }
        shown.push_back(e);
        if shown.len() > SHOWN {
            shown.pop_front();
        }
    }
    Ok(())
}

/// Done watching: finished, or paused until a human decides.
fn settled(s: RequestStatus) -> bool {
    s.is_terminal() || s == RequestStatus::WaitingApproval
}

async fn frame(h: &Harness, r: &Request, shown: &VecDeque<Event>) -> Result<Vec<String>> {
    let now = h.now();
    let t = h.request_tree(&r.id).await?;
    let mut out = vec![paint(
        DIM,
        format!(
            "watching {} · last activity {} · Ctrl-C to stop watching",
            r.id,
            ago(now, r.last_activity_at)
        ),
    )];
    tree_lines(&t, "  ", &mut out);
    out.push(String::new());
    out.extend(shown.iter().map(|e| format!("  {}", output::event_line(e))));
    Ok(out)
}

async fn finish(h: &Harness, r: &Request, json: bool) -> Result<ExitCode> {
    let code = output::outcome_exit(r.status, EXIT_WAITING_APPROVAL);
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(code);
    }
    match r.status {
        RequestStatus::Completed => line(format!(
            "{} {}",
            paint(GREEN.bold(), "completed:"),
            r.output.as_deref().unwrap_or("")
        )),
        RequestStatus::WaitingApproval => {
            line(format!(
                "{} {} is paused for approval",
                paint(YELLOW.bold(), "waiting:"),
                r.id
            ));
            let t = h.request_tree(&r.id).await?;
            let d = super::doctor::diagnose(
                &t,
                true,
                h.now(),
                h.workspace().settings.runtime.stuck_after,
            );
            for c in d.next.commands {
                line(format!("  {c}"));
            }
        }
        s => line(format!(
            "{} {}",
            paint(RED.bold(), format!("{s}:")),
            r.error.as_deref().unwrap_or("")
        )),
    }
    Ok(code)
}

/// Which requests belong to the watched tree: the root, and any request whose
/// parent chain reaches it (looked up once per request, then cached).
struct Members {
    root: RequestId,
    known: HashMap<RequestId, bool>,
}

impl Members {
    fn new(root: RequestId) -> Self {
        let mut known = HashMap::new();
        known.insert(root.clone(), true);
        Members { root, known }
    }

    async fn contains(&mut self, h: &Harness, e: &Event) -> Result<bool> {
        let Some(id) = &e.request_id else {
            return Ok(false);
        };
        if let Some(k) = self.known.get(id) {
            return Ok(*k);
        }
        let mut chain = vec![id.clone()];
        let mut member = false;
        let mut at = h.get_request(id).await?;
        for _ in 0..MAX_DEPTH {
            let Some(p) = at.parent_id.clone() else { break };
            if let Some(k) = self.known.get(&p) {
                member = *k;
                break;
            }
            if p == self.root {
                member = true;
                break;
            }
            chain.push(p.clone());
            at = h.get_request(&p).await?;
        }
        for c in chain {
            self.known.insert(c, member);
        }
        Ok(member)
    }
}
