//! `runtime overview`: the one screen an operator reads in five seconds.

use super::table::{Table, cell, dim, id, styled};
use super::{ago, health};
use crate::context::Ctx;
use crate::output::{self, BOLD, DIM, GREEN, RED, YELLOW, line, paint, status_style};
use anyhow::Result;
use harness_core::*;
use harness_engine::{Harness, LockHolder, StuckRequest};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct OverviewArgs {
    /// How many of the most recent requests to show.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub recent: usize,
}

#[derive(Serialize)]
pub struct Overview {
    pub workspace: WorkspaceInfo,
    pub now: Timestamp,
    pub worker: WorkerInfo,
    /// Every worker an operator needs to see (`Store::list_workers`): the live ones,
    /// those stopped or dead within the last hour, and a dead one that still holds
    /// running requests; newest first.
    pub workers: Vec<WorkerRow>,
    pub health: HealthSummary,
    pub queue: QueueInfo,
    pub approvals: ApprovalInfo,
    pub stuck: Vec<StuckInfo>,
    /// Concurrency limits (declared or held): who holds each, how many trees wait.
    pub limits: Vec<LimitInfo>,
    /// The live worker's provider rate limits (empty without a live worker).
    pub rate_limits: Vec<harness_engine::RateLimitStatus>,
    pub recent: Vec<RecentRequest>,
    pub last_activity: Option<Activity>,
}

#[derive(Serialize)]
pub struct WorkspaceInfo {
    pub name: String,
    pub root: PathBuf,
    pub store: PathBuf,
}

#[derive(Serialize)]
pub struct WorkerInfo {
    /// A live process holds the workspace's worker lock.
    pub alive: bool,
    pub worker_id: Option<String>,
    pub pid: Option<u32>,
    pub last_heartbeat_at: Option<Timestamp>,
    pub last_heartbeat_age_ms: Option<i64>,
    /// Several workers share the store (PostgreSQL); `alive` then means at least one
    /// is, and `worker_id` names the newest live one. On SQLite one worker at a time.
    pub shared: bool,
}

/// One worker of [`Overview::workers`].
#[derive(Serialize)]
pub struct WorkerRow {
    pub id: WorkerId,
    pub host: String,
    pub pid: u32,
    /// The version of the `agent-harness` binary it runs.
    pub version: String,
    /// `alive` (its lock is held), `stopped` (cleanly) or `dead` (without stopping).
    pub state: WorkerState,
    pub started_at: Timestamp,
    pub heartbeat_at: Timestamp,
    pub heartbeat_age_ms: i64,
    pub stopped_at: Option<Timestamp>,
    /// Root requests it runs now (on PostgreSQL: whose lease it holds).
    pub running: u64,
}

#[derive(Serialize)]
pub struct HealthSummary {
    pub status: HealthStatus,
    /// Every check that is not ok.
    pub problems: Vec<HealthCheck>,
}

#[derive(Serialize)]
pub struct QueueInfo {
    /// Admitted, not started yet (what capacity bounds).
    pub queued: u64,
    /// Runnable again after an approval or a recovery (not counted against capacity).
    pub resuming: u64,
    /// Root requests executing (a delegated child runs in its root's slot).
    pub running: u64,
    pub waiting_approval: u64,
    pub capacity: usize,
    pub slots: usize,
}

#[derive(Serialize)]
pub struct ApprovalInfo {
    pub pending: u64,
    pub oldest_created_at: Option<Timestamp>,
    pub oldest_age_ms: Option<i64>,
    /// The oldest pending approvals (at most [`LISTED`]), oldest first.
    pub oldest: Vec<Approval>,
}

/// Pending approvals and stuck requests listed by name (the rest are counted).
const LISTED: usize = 5;

#[derive(Serialize)]
pub struct StuckInfo {
    pub id: RequestId,
    pub session_id: SessionId,
    pub agent: String,
    pub current_agent: Option<String>,
    pub last_activity_at: Timestamp,
    pub idle_ms: i64,
    /// What is executing (`tool deploy (call_…)` or `model turn`), for the listed ones.
    pub in_flight: Option<String>,
    /// Since when it has been executing.
    pub in_flight_since: Option<Timestamp>,
}

#[derive(Serialize)]
pub struct LimitInfo {
    /// `resource:NAME` or `tool:NAME`.
    pub key: String,
    pub capacity: Option<u32>,
    pub held_by: Vec<Hold>,
    /// Request trees parked until this limit has room, oldest first.
    pub waiting: Vec<Wait>,
}

#[derive(Serialize)]
pub struct RecentRequest {
    #[serde(flatten)]
    pub request: Request,
    /// Delegated child requests, oldest first.
    pub delegates: Vec<Delegate>,
}

#[derive(Serialize)]
pub struct Delegate {
    pub id: RequestId,
    pub agent: String,
    pub status: RequestStatus,
}

#[derive(Serialize)]
pub struct Activity {
    pub at: Timestamp,
    pub age_ms: i64,
    pub seq: i64,
    pub kind: EventKind,
    pub request_id: Option<RequestId>,
}

pub async fn run(ctx: &Ctx, a: OverviewArgs) -> Result<ExitCode> {
    let h = ctx.inspect()?;
    let o = gather(&h, a.recent).await?;
    if ctx.json {
        output::print_json(&o)?;
    } else {
        for l in render(&o) {
            line(l);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn gather(h: &Harness, recent: usize) -> Result<Overview> {
    let now = h.now();
    let limits = &h.workspace().settings.runtime;
    let store = h.store();
    let stats = store.stats(now, now).await?;
    let report = h.health().await?;
    let stuck = store.stuck_requests(now.minus(limits.stuck_after)).await?;
    Ok(Overview {
        workspace: WorkspaceInfo {
            name: h.workspace().settings.name.clone(),
            root: h.workspace().root.clone(),
            store: store.location().into(),
        },
        now,
        worker: worker_info(h, now).await?,
        workers: store
            .list_workers(now)
            .await?
            .into_iter()
            .map(|s| WorkerRow {
                heartbeat_age_ms: age_ms(now, s.worker.heartbeat_at),
                id: s.worker.id,
                host: s.worker.host,
                pid: s.worker.pid,
                version: s.worker.version,
                state: s.state,
                started_at: s.worker.started_at,
                heartbeat_at: s.worker.heartbeat_at,
                stopped_at: s.worker.stopped_at,
                running: s.running,
            })
            .collect(),
        health: HealthSummary {
            status: report.status,
            problems: report
                .checks
                .into_iter()
                .filter(|c| c.status != HealthStatus::Ok)
                .collect(),
        },
        queue: QueueInfo {
            queued: stats.queued,
            resuming: stats.resuming,
            running: stats.running,
            waiting_approval: stats.waiting_approval,
            capacity: limits.queue_capacity,
            slots: limits.max_concurrent_requests,
        },
        approvals: ApprovalInfo {
            pending: stats.pending_approvals,
            oldest_created_at: stats.oldest_pending_approval,
            oldest_age_ms: stats.oldest_pending_approval.map(|t| age_ms(now, t)),
            oldest: oldest_pending(h).await?,
        },
        stuck: stuck_infos(h, stuck, now).await?,
        limits: limit_infos(h).await?,
        rate_limits: h.rate_limit_status().await?,
        recent: recent_requests(h, recent).await?,
        last_activity: last_activity(h, now).await?,
    })
}

fn age_ms(now: Timestamp, t: Timestamp) -> i64 {
    t.age(now).as_millis() as i64
}

async fn worker_info(h: &Harness, now: Timestamp) -> Result<WorkerInfo> {
    let holder: Option<LockHolder> = h.worker_holder().await?;
    let last = h.store().workers(1).await?.into_iter().next();
    Ok(WorkerInfo {
        alive: holder.is_some(),
        worker_id: holder
            .as_ref()
            .map(|w| w.worker_id.clone())
            .or_else(|| last.as_ref().map(|w| w.id.to_string())),
        pid: holder
            .as_ref()
            .map(|w| w.pid)
            .or(last.as_ref().map(|w| w.pid)),
        last_heartbeat_at: last.as_ref().map(|w| w.heartbeat_at),
        last_heartbeat_age_ms: last.as_ref().map(|w| age_ms(now, w.heartbeat_at)),
        shared: h.store().worker_lease().is_some(),
    })
}

/// Every declared limit, and any other key something holds or waits for.
async fn limit_infos(h: &Harness) -> Result<Vec<LimitInfo>> {
    let mut keys: Vec<String> = h
        .workspace()
        .declared_limits()
        .into_iter()
        .map(|l| l.key)
        .collect();
    let (holds, waits) = (h.holds().await?, h.waits().await?);
    keys.extend(holds.iter().map(|x| x.key.clone()));
    keys.extend(waits.iter().map(|w| w.key.clone()));
    keys.sort();
    keys.dedup();
    Ok(keys
        .into_iter()
        .map(|key| LimitInfo {
            capacity: h.limit_capacity(&key),
            held_by: holds.iter().filter(|x| x.key == key).cloned().collect(),
            waiting: waits.iter().filter(|w| w.key == key).cloned().collect(),
            key,
        })
        .collect())
}

/// The oldest pending approvals, oldest first.
async fn oldest_pending(h: &Harness) -> Result<Vec<Approval>> {
    // Listed newest first: the oldest are at the end of the full pending list.
    let mut pending = h
        .list_approvals(ApprovalFilter {
            statuses: vec![ApprovalStatus::Pending],
            ..Default::default()
        })
        .await?;
    pending.reverse();
    pending.truncate(LISTED);
    Ok(pending)
}

/// Stuck requests; the listed ones with the call in flight (from their tree).
async fn stuck_infos(
    h: &Harness,
    stuck: Vec<StuckRequest>,
    now: Timestamp,
) -> Result<Vec<StuckInfo>> {
    let mut out = Vec::with_capacity(stuck.len());
    for (i, s) in stuck.into_iter().enumerate() {
        let flight = if i < LISTED {
            let t = super::tree::load(h, s.id.clone(), 0).await?;
            Some(super::doctor::in_flight_of_tree(&t))
        } else {
            None
        };
        out.push(StuckInfo {
            idle_ms: age_ms(now, s.last_activity_at),
            id: s.id,
            session_id: s.session_id,
            agent: s.agent,
            current_agent: s.current_agent,
            last_activity_at: s.last_activity_at,
            in_flight_since: flight.as_ref().map(|f| f.1),
            in_flight: flight.map(|f| f.0),
        });
    }
    Ok(out)
}

/// The newest root requests, each with the agents it delegated to.
pub async fn recent_requests(h: &Harness, n: usize) -> Result<Vec<RecentRequest>> {
    let roots = h
        .list_requests(RequestFilter {
            roots_only: true,
            limit: n.max(1),
            ..Default::default()
        })
        .await?;
    let mut out = Vec::with_capacity(roots.len());
    for request in roots.into_iter().take(n) {
        let delegates = delegates_of(h, &request.id).await?;
        out.push(RecentRequest { request, delegates });
    }
    Ok(out)
}

/// Delegated children of `id`, oldest first.
pub async fn delegates_of(h: &Harness, id: &RequestId) -> Result<Vec<Delegate>> {
    let mut children = h
        .list_requests(RequestFilter {
            parent_id: Some(id.clone()),
            ..Default::default()
        })
        .await?;
    children.reverse();
    Ok(children
        .into_iter()
        .map(|c| Delegate {
            id: c.id,
            agent: c.agent,
            status: c.status,
        })
        .collect())
}

async fn last_activity(h: &Harness, now: Timestamp) -> Result<Option<Activity>> {
    let last = h.store().last_seq().await?;
    if last == 0 {
        return Ok(None);
    }
    let e = h
        .store()
        .events_after(last - 1, EventFilter::default(), 1)
        .await?;
    Ok(e.into_iter().next().map(|e| Activity {
        at: e.at,
        age_ms: age_ms(now, e.at),
        seq: e.seq,
        kind: e.kind,
        request_id: e.request_id,
    }))
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
