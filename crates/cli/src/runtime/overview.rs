//! `runtime overview`: the one screen an operator reads in five seconds.

use super::table::{Table, cell, dim, styled};
use super::{ago, health};
use crate::context::Ctx;
use crate::output::{self, BOLD, DIM, GREEN, RED, YELLOW, line, paint, status_style};
use anyhow::Result;
use harness_core::*;
use harness_engine::overview::*;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct OverviewArgs {
    /// How many of the most recent requests to show.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub recent: usize,
}

pub async fn run(ctx: &Ctx, a: OverviewArgs) -> Result<ExitCode> {
    let h = ctx.inspect()?;
    let o = h.overview(a.recent).await?;
    if ctx.json {
        output::print_json(&o)?;
    } else {
        for l in render(&o) {
            line(l);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn label(name: &str, value: impl AsRef<str>) -> String {
    format!("{} {}", paint(BOLD, format!("{name:<10}")), value.as_ref())
}

pub fn render(o: &Overview) -> Vec<String> {
    let now = o.now;
    let mut out = vec![
        label(
            "workspace",
            format!(
                "{} {}",
                o.workspace.name,
                paint(DIM, o.workspace.root.display())
            ),
        ),
        label("store", o.workspace.store.display().to_string()),
        label("worker", worker_text(&o.worker, now)),
    ];
    let health = health::summary_from(o.health.status, &o.health.problems);
    out.push(label("health", &health[0]));
    out.extend(health[1..].iter().map(|l| format!("{:11}{l}", "")));
    out.push(label("queue", queue_text(&o.queue)));
    out.push(label("approvals", approvals_text(&o.approvals, now)));
    out.extend(stuck_lines(&o.stuck, now));
    out.push(label(
        "activity",
        match &o.last_activity {
            Some(a) => format!(
                "last {} {}",
                ago(now, a.at),
                paint(DIM, format!("(#{} {})", a.seq, a.kind))
            ),
            None => paint(DIM, "none yet"),
        },
    ));
    out.push(String::new());
    out.push(paint(BOLD, "recent requests"));
    out.extend(recent_lines(&o.recent, now));
    out
}

fn worker_text(w: &WorkerInfo, now: Timestamp) -> String {
    let beat = w
        .last_heartbeat_at
        .map(|t| format!("last heartbeat {}", ago(now, t)))
        .unwrap_or_else(|| "no worker has ever run".to_string());
    let who = match (&w.worker_id, w.pid) {
        (Some(id), Some(pid)) => format!(" ({id}, pid {pid})"),
        _ => String::new(),
    };
    if w.alive {
        format!("{} · {beat}{}", paint(GREEN, "alive"), paint(DIM, who))
    } else {
        format!(
            "{} · {beat}{}",
            paint(YELLOW, "not running"),
            paint(DIM, who)
        )
    }
}

fn queue_text(q: &QueueInfo) -> String {
    let resuming = if q.resuming > 0 {
        format!(" (+{} resuming)", q.resuming)
    } else {
        String::new()
    };
    format!(
        "{} queued / {} capacity{resuming} · {}/{} running · {} waiting for approval",
        q.queued, q.capacity, q.running, q.slots, q.waiting_approval
    )
}

fn approvals_text(a: &ApprovalInfo, now: Timestamp) -> String {
    match a.oldest_created_at {
        Some(t) if a.pending > 0 => format!(
            "{} · oldest {}",
            paint(YELLOW, format!("{} pending", a.pending)),
            ago(now, t)
        ),
        _ => "0 pending".to_string(),
    }
}

fn stuck_lines(stuck: &[StuckInfo], now: Timestamp) -> Vec<String> {
    if stuck.is_empty() {
        return vec![label("stuck", "none")];
    }
    // The store returns at most 100 stuck requests.
    let count = match stuck.len() {
        100 => "100+".to_string(),
        n => n.to_string(),
    };
    let mut out = vec![label(
        "stuck",
        paint(RED, format!("{count} running request(s) idle")),
    )];
    let mut t = Table::new(&["REQUEST", "AGENT", "IDLE"]);
    for s in stuck.iter().take(5) {
        t.row(vec![
            cell(s.id.to_string()),
            cell(s.current_agent.clone().unwrap_or_else(|| s.agent.clone())),
            cell(relative(s.last_activity_at.age(now))),
        ]);
    }
    out.extend(t.lines().into_iter().map(|l| format!("         {l}")));
    out
}

/// `assistant → researcher`: the agent and the agents it delegated to.
pub fn agent_chain(agent: &str, delegates: &[Delegate]) -> String {
    let mut s = agent.to_string();
    for d in delegates {
        s.push_str(" → ");
        s.push_str(&d.agent);
    }
    s
}

fn recent_lines(recent: &[RecentRequest], now: Timestamp) -> Vec<String> {
    if recent.is_empty() {
        return vec![format!(
            "  {}",
            paint(
                DIM,
                "no requests yet: agent-harness run --agent <name> \"…\""
            )
        )];
    }
    let mut t = Table::new(&["REQUEST", "AGENT", "STATUS", "CURRENT", "STEPS", "ACTIVITY"]);
    for r in recent {
        let req = &r.request;
        let current = if req.status.is_terminal() {
            "-".to_string()
        } else {
            req.current_agent.clone().unwrap_or_else(|| "-".to_string())
        };
        t.row(vec![
            cell(req.id.to_string()),
            cell(agent_chain(&req.agent, &r.delegates)),
            styled(status_style(req.status), req.status.as_str()),
            cell(current),
            cell(req.steps.to_string()),
            dim(ago(now, req.last_activity_at)),
        ]);
    }
    t.lines()
}
