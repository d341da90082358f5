//! `runtime overview`: the one screen an operator reads in five seconds.

use super::table::{Table, cell, dim, id, styled};
use super::{ago, health};
use crate::context::Ctx;
use crate::output::{self, BOLD, DIM, GREEN, RED, YELLOW, line, paint, status_style};
use anyhow::Result;
use harness_core::*;
use harness_engine::views::overview::LISTED;
pub use harness_engine::views::{
    ApprovalInfo, Delegate, LimitInfo, Overview, QueueInfo, RecentRequest, StuckInfo, WorkerInfo,
    WorkerRow,
};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct OverviewArgs {
    /// How many of the most recent requests to show (at most 100, as the API).
    #[arg(long, default_value_t = harness_engine::views::overview::DEFAULT_RECENT, value_name = "N",
          value_parser = recent_count)]
    pub recent: usize,
}

/// `--recent`: refused above the largest the API lists, locally and remotely alike.
fn recent_count(s: &str) -> Result<usize, String> {
    use harness_engine::views::overview::MAX_RECENT;
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if n > MAX_RECENT {
        return Err(format!("{n} is over the largest, {MAX_RECENT}"));
    }
    Ok(n)
}

pub async fn run(ctx: &Ctx, a: OverviewArgs) -> Result<ExitCode> {
    let o = ctx.source()?.overview(a.recent).await?;
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
    ];
    if o.worker.shared {
        out.push(label("workers", workers_text(&o.workers)));
        out.extend(worker_lines(&o.workers, now));
    } else {
        out.push(label("worker", worker_text(&o.worker, now)));
    }
    let health = health::summary_from(o.health.status, &o.health.problems);
    out.push(label("health", &health[0]));
    out.extend(health[1..].iter().map(|l| format!("{:11}{l}", "")));
    out.push(label("queue", queue_text(&o.queue)));
    out.push(label("approvals", approvals_text(&o.approvals, now)));
    out.extend(approval_lines(&o.approvals, now));
    out.extend(stuck_lines(&o.stuck, now));
    out.extend(limit_lines(&o.limits, now));
    out.extend(rate_limit_lines(&o.rate_limits, now));
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

/// Rate limit keys that hold calls back (blocked by a provider, or with waiting
/// calls): one line each.
fn rate_limit_lines(rates: &[harness_engine::RateLimitStatus], now: Timestamp) -> Vec<String> {
    rates
        .iter()
        .filter(|s| !s.waiting.is_empty() || s.blocked_until.is_some_and(|t| t > now))
        .enumerate()
        .map(|(i, s)| {
            let mut text = format!("`{}` {} calls in the last minute", s.key, s.calls_in_window);
            if let Some(t) = s.blocked_until.filter(|t| *t > now) {
                text.push_str(&format!(
                    " · {}",
                    paint(
                        YELLOW,
                        format!(
                            "held by the provider (Retry-After) for {}",
                            relative(now.age(t))
                        )
                    )
                ));
            }
            if let Some(last) = s.waiting.iter().map(|w| w.until).max() {
                text.push_str(&format!(
                    " · {}",
                    paint(
                        YELLOW,
                        format!(
                            "{} waiting, the last until {}",
                            s.waiting.len(),
                            last.to_rfc3339()
                        )
                    )
                ));
            }
            match i {
                0 => label("rates", text),
                _ => format!("{:11}{text}", ""),
            }
        })
        .collect()
}

/// One line per limit (held / capacity, how many wait), then the holders and the
/// oldest waiting trees by name.
fn limit_lines(limits: &[LimitInfo], now: Timestamp) -> Vec<String> {
    let mut out = Vec::new();
    for (i, l) in limits.iter().enumerate() {
        let cap = l
            .capacity
            .map(|c| c.to_string())
            .unwrap_or_else(|| "?".into());
        let full = l.capacity.is_some_and(|c| l.held_by.len() as u32 >= c);
        let held = format!("{}/{cap} held", l.held_by.len());
        let mut text = format!(
            "{} {}",
            describe_key(&l.key),
            if full { paint(YELLOW, held) } else { held }
        );
        if !l.waiting.is_empty() {
            text.push_str(&format!(
                " · {}",
                paint(YELLOW, format!("{} waiting", l.waiting.len()))
            ));
        }
        out.push(match i {
            0 => label("limits", text),
            _ => format!("{:11}{text}", ""),
        });
        for x in &l.held_by {
            out.push(format!(
                "{:13}{}",
                "",
                paint(
                    DIM,
                    format!(
                        "held by {} for {}",
                        describe_holder(x),
                        relative(x.acquired_at.age(now))
                    )
                )
            ));
        }
        for w in l.waiting.iter().take(LISTED) {
            out.push(format!(
                "{:13}{}",
                "",
                paint(
                    DIM,
                    format!(
                        "{} waits ({} in {}) since {}",
                        w.root_id,
                        describe_waiter(&w.tool),
                        w.request_id,
                        ago(now, w.since)
                    )
                )
            ));
        }
        if l.waiting.len() > LISTED {
            out.push(format!(
                "{:13}{}",
                "",
                paint(DIM, format!("… {} more", l.waiting.len() - LISTED))
            ));
        }
    }
    out
}

fn worker_text(w: &WorkerInfo, now: Timestamp) -> String {
    let beat = w
        .last_heartbeat_at
        .map(|t| format!("last heartbeat {}", ago(now, t)))
        .unwrap_or_else(|| "no worker has ever run".to_string());
    let who = match (&w.worker_id, w.pid) {
        (Some(id), Some(pid)) => format!(" ({}, pid {pid})", super::table::short_id(id)),
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

/// `2 alive · 1 dead · 1 stopped`: the workers of a shared store by state.
fn workers_text(workers: &[WorkerRow]) -> String {
    let count = |s: WorkerState| workers.iter().filter(|w| w.state == s).count();
    let alive = count(WorkerState::Alive);
    let mut parts = vec![if alive > 0 {
        paint(GREEN, format!("{alive} alive"))
    } else {
        paint(YELLOW, "none alive")
    }];
    let dead = count(WorkerState::Dead);
    if dead > 0 {
        parts.push(paint(RED, format!("{dead} dead")));
    }
    let stopped = count(WorkerState::Stopped);
    if stopped > 0 {
        parts.push(format!("{stopped} stopped"));
    }
    parts.join(" · ")
}

/// The workers of a shared store, one row each.
fn worker_lines(workers: &[WorkerRow], now: Timestamp) -> Vec<String> {
    if workers.is_empty() {
        return Vec::new();
    }
    let mut t = Table::new(&[
        "WORKER",
        "HOST",
        "PID",
        "VERSION",
        "HEARTBEAT",
        "RUNNING",
        "STATE",
    ])
    .indent(11);
    for w in workers {
        t.row(vec![
            id(&w.id),
            cell(&w.host),
            cell(w.pid.to_string()),
            cell(if w.version.is_empty() {
                "-"
            } else {
                &w.version
            }),
            dim(ago(now, w.heartbeat_at)),
            cell(w.running.to_string()),
            styled(
                match w.state {
                    WorkerState::Alive => GREEN,
                    WorkerState::Stopped => DIM,
                    WorkerState::Dead => RED,
                },
                w.state.as_str(),
            ),
        ]);
    }
    t.lines()
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

/// The oldest pending approvals, each with its reason and the command that decides it.
fn approval_lines(a: &ApprovalInfo, now: Timestamp) -> Vec<String> {
    if a.oldest.is_empty() {
        return Vec::new();
    }
    let mut t = Table::new(&["APPROVAL", "TOOL", "AGENT", "REQUEST", "AGE", "REASON"]).indent(11);
    for p in &a.oldest {
        let reason = match &p.reason {
            Some(_) if p.is_crash_rerun() => {
                "crash re-run: may or may not have taken effect".to_string()
            }
            Some(r) => output::clip(r, 60),
            None => "tool policy".to_string(),
        };
        t.row(vec![
            id(&p.id),
            cell(&p.tool),
            cell(&p.agent),
            id(&p.request_id),
            dim(relative(p.created_at.age(now))),
            cell(reason),
        ]);
        t.note(paint(
            DIM,
            format!("  → {}", super::approvals::approve_command(p)),
        ));
    }
    let mut out = t.lines();
    if a.pending as usize > a.oldest.len() {
        out.push(format!(
            "           {}",
            paint(
                DIM,
                format!(
                    "… {} more: agent-harness runtime approvals list --status pending",
                    a.pending as usize - a.oldest.len()
                )
            )
        ));
    }
    out
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
    let mut t = Table::new(&["REQUEST", "SESSION", "AGENT", "IN FLIGHT", "IDLE"]).indent(11);
    for s in stuck.iter().take(LISTED) {
        let agents = match &s.current_agent {
            Some(c) if c != &s.agent => format!("{} → {c}", s.agent),
            _ => s.agent.clone(),
        };
        let flight = match (&s.in_flight, s.in_flight_since) {
            (Some(w), Some(t)) => format!("{w} for {}", relative(t.age(now))),
            _ => "-".to_string(),
        };
        t.row(vec![
            id(&s.id),
            cell(s.session_id.to_string()),
            cell(agents),
            cell(flight),
            cell(relative(s.last_activity_at.age(now))),
        ]);
    }
    out.extend(t.lines());
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
    let mut t = Table::new(&[
        "REQUEST", "AGENT", "STATUS", "CURRENT", "STEPS", "ACTIVITY", "DETAIL",
    ]);
    for r in recent {
        let req = &r.request;
        let current = if req.status.is_terminal() {
            "-".to_string()
        } else {
            req.current_agent.clone().unwrap_or_else(|| "-".to_string())
        };
        t.row(vec![
            id(&req.id),
            cell(agent_chain(&req.agent, &r.delegates)),
            styled(status_style(req.status), req.status.as_str()),
            cell(current),
            cell(req.steps.to_string()),
            dim(ago(now, req.last_activity_at)),
            // A failure's error, right where the eye lands.
            match req.status {
                RequestStatus::Failed | RequestStatus::Cancelled => {
                    styled(RED, output::clip(req.error.as_deref().unwrap_or(""), 60))
                }
                _ => cell(""),
            },
        ]);
    }
    t.lines()
}
