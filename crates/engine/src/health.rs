//! Named health checks, each ok / warn / fail with a detail an operator can act on.

use crate::{Harness, HarnessError};
use harness_core::{
    HealthCheck, HealthReport, HealthStatus, Timestamp, Worker, WorkerId, human_bytes, relative,
};
use std::time::Duration;

/// `serve` beats every 2 s: a heartbeat older than this, from a worker that holds the
/// workspace, means its writes are not getting through (or it is hung).
pub const HEARTBEAT_LATE: Duration = Duration::from_secs(6);
const DISK_WARN: u64 = 1 << 30;
const DISK_FAIL: u64 = 100 << 20;

impl Harness {
    /// Runs every health check against the durable records. The store's full
    /// integrity check is taken from the worker's last periodic run when fresh, and
    /// run live only on small stores, so this stays fast on large ones.
    pub async fn health(&self) -> Result<HealthReport, HarnessError> {
        self.health_with(false).await
    }

    /// Like [`Harness::health`], but always runs the full integrity check now.
    pub async fn health_deep(&self) -> Result<HealthReport, HarnessError> {
        self.health_with(true).await
    }

    async fn health_with(&self, deep: bool) -> Result<HealthReport, HarnessError> {
        let now = self.now();
        let limits = &self.inner.workspace.settings.runtime;
        let store = &self.inner.store;
        // "Near expiry": within a tenth of the TTL, at least a minute.
        let soon = (limits.approval_ttl / 10).max(Duration::from_secs(60));
        let stats = store.stats(now, now.plus(soon)).await?;
        let store_check = store.health_check(now, deep).await?;
        let mut checks = vec![check(
            "store",
            store_check.status,
            store_check.detail.clone(),
        )];
        checks.push(queue_check(&stats, limits));
        checks.push(self.worker_check(now, &stats).await?);
        checks.push(self.stranded_check(now).await?);
        checks.push(self.stuck_check(now, limits.stuck_after).await?);
        checks.push(approvals_check(&stats, now));
        checks.push(disk_check(&self.inner.workspace.store_dir()));
        checks.extend(self.limits_check(now).await?);
        checks.extend(self.rate_limits_check(now).await?);
        checks.extend(self.mcp_checks().await?);
        let mut report = HealthReport::new(now, checks);
        report.database = store_check.database;
        Ok(report)
    }

    /// Whether a worker runs is read from its lock (the kernel or the database
    /// server drops it when the process dies, even by SIGKILL), not from heartbeat
    /// age alone. SQLite: the one worker holding the workspace. PostgreSQL: every
    /// worker sharing the store ([`Harness::shared_workers_check`]).
    async fn worker_check(
        &self,
        now: Timestamp,
        stats: &harness_store::StoreStats,
    ) -> Result<HealthCheck, HarnessError> {
        if let Some(lease) = self.inner.store.worker_lease() {
            return self.shared_workers_check(now, stats, lease).await;
        }
        let last = self.inner.store.workers(1).await?.pop();
        let beat = |w: &Worker| relative(w.heartbeat_at.age(now));
        let waiting = stats.queued + stats.resuming;
        let start = "start one with `agent-harness serve` (it recovers what was left running)";
        Ok(match (self.worker_holder().await?, last) {
            (Some(holder), Some(w)) if w.id.as_str() == holder.worker_id => {
                if w.heartbeat_at.age(now) < HEARTBEAT_LATE {
                    check(
                        "worker",
                        HealthStatus::Ok,
                        format!(
                            "worker {} (pid {}) alive, last heartbeat {} ago",
                            w.id,
                            w.pid,
                            beat(&w)
                        ),
                    )
                } else {
                    check(
                        "worker",
                        HealthStatus::Warn,
                        format!(
                            "worker {} (pid {}) holds the workspace but its last heartbeat was {} ago: \
                             its writes are not reaching the store (another process holding the store's \
                             write lock? the disk full?), or it is overloaded or hung; its log says which",
                            w.id,
                            w.pid,
                            beat(&w)
                        ),
                    )
                }
            }
            (Some(holder), _) => check(
                "worker",
                HealthStatus::Ok,
                format!(
                    "worker {} (pid {}) holds the workspace",
                    holder.worker_id, holder.pid
                ),
            ),
            (None, Some(w)) if w.stopped_at.is_none() => check(
                "worker",
                if stats.running + waiting > 0 {
                    HealthStatus::Fail
                } else {
                    HealthStatus::Warn
                },
                format!(
                    "worker {} (pid {}) died without stopping (last heartbeat {} ago); {} running and {waiting} queued request(s) wait for a worker: {start}",
                    w.id,
                    w.pid,
                    beat(&w),
                    stats.running
                ),
            ),
            (None, _) if waiting > 0 => check(
                "worker",
                HealthStatus::Warn,
                format!("{waiting} request(s) queued but no worker is running: {start}"),
            ),
            (None, _) => check(
                "worker",
                HealthStatus::Ok,
                "no worker running; nothing is queued".to_string(),
            ),
        })
    }

    /// Every worker of a shared (PostgreSQL) store: each live one with its
    /// heartbeat and running count; problems first. A worker silent past its lease
    /// while it holds running requests fails (they wait for a re-claim), one late
    /// by less warns; a dead one fails while it holds running requests, and warns
    /// while it is listed (an hour) otherwise; a stopped one is no problem.
    async fn shared_workers_check(
        &self,
        now: Timestamp,
        stats: &harness_store::StoreStats,
        lease: Duration,
    ) -> Result<HealthCheck, HarnessError> {
        use harness_core::WorkerState;
        let workers = self.inner.store.list_workers(now).await?;
        let live = workers
            .iter()
            .filter(|w| w.state == WorkerState::Alive)
            .count();
        let start = "start one with `agent-harness serve` (it recovers what was left running)";
        let retake = if live > 0 {
            "a live worker re-claims them within seconds".to_string()
        } else {
            format!("no worker is alive to re-claim them: {start}")
        };
        let mut status = HealthStatus::Ok;
        let mut problems = Vec::new();
        let mut alive = Vec::new();
        for s in &workers {
            let w = &s.worker;
            let who = format!("worker {} on host {} (pid {})", w.id, w.host, w.pid);
            let age = w.heartbeat_at.age(now);
            let beat = relative(age);
            let n = s.running;
            let (level, text) = match s.state {
                WorkerState::Stopped => continue,
                WorkerState::Alive if age > lease && n > 0 => (
                    HealthStatus::Fail,
                    format!(
                        "{who} last heartbeat {beat} ago, holds {n} running request(s); \
                         its lease ({}) lapsed: {}",
                        relative(lease),
                        if live > 1 {
                            "another live worker re-claims them within seconds".to_string()
                        } else {
                            format!("no other worker is alive to re-claim them: {start}")
                        }
                    ),
                ),
                WorkerState::Alive if age >= HEARTBEAT_LATE => (
                    HealthStatus::Warn,
                    format!(
                        "{who} is alive but its last heartbeat was {beat} ago ({n} running): \
                         its writes are not reaching the store, or it is overloaded or hung \
                         (SIGSTOPped?); its log says which"
                    ),
                ),
                WorkerState::Alive => {
                    alive.push(format!("{who}, last heartbeat {beat} ago, {n} running"));
                    continue;
                }
                WorkerState::Dead if n > 0 => (
                    HealthStatus::Fail,
                    format!(
                        "{who} died without stopping (last heartbeat {beat} ago) holding {n} \
                         running request(s); {retake}"
                    ),
                ),
                WorkerState::Dead => (
                    HealthStatus::Warn,
                    format!(
                        "{who} died without stopping (last heartbeat {beat} ago); \
                         it holds no running request; its log may say why"
                    ),
                ),
            };
            status = status.max(level);
            problems.push(text);
        }
        let waiting = stats.queued + stats.resuming;
        if live == 0 && waiting > 0 {
            status = status.max(HealthStatus::Warn);
            problems.push(format!(
                "{waiting} request(s) queued but no worker is running: {start}"
            ));
        }
        let mut parts = problems;
        match alive.len() {
            0 if live == 0 && parts.is_empty() => {
                parts.push("no worker running; nothing is queued".to_string())
            }
            0 => {}
            n => parts.push(format!("{n} worker(s) alive: {}", alive.join("; "))),
        }
        Ok(check("worker", status, parts.join("; ")))
    }

    /// Requests that cannot progress as they stand (the worker's safety net
    /// repairs them; until then each is a failing check).
    async fn stranded_check(&self, now: Timestamp) -> Result<HealthCheck, HarnessError> {
        let holder = self.worker_holder().await?;
        let live = harness_store::Liveness {
            owner: holder
                .as_ref()
                .map(|h| WorkerId::from_trusted(h.worker_id.clone())),
            running: None,
        };
        let stranded = self
            .inner
            .store
            .stranded(live, now.minus(crate::worker::REPAIR_QUIET))
            .await?;
        if stranded.is_empty() {
            return Ok(check(
                "stranded_requests",
                HealthStatus::Ok,
                "every active request can progress".to_string(),
            ));
        }
        let list: Vec<String> = stranded
            .iter()
            .take(5)
            .map(|s| format!("{} ({}): {}", s.id, s.agent, s.problem.describe()))
            .collect();
        let action = if holder.is_some() {
            "the worker repairs them within seconds; if they stay, see `agent-harness runtime requests show ID`"
        } else {
            "start `agent-harness serve` (it recovers and repairs them), or `agent-harness runtime requests resume ID`"
        };
        Ok(check(
            "stranded_requests",
            HealthStatus::Fail,
            format!(
                "{} request(s) cannot progress: {}{}; {action}",
                stranded.len(),
                list.join("; "),
                if stranded.len() > 5 { "; …" } else { "" }
            ),
        ))
    }

    async fn stuck_check(
        &self,
        now: Timestamp,
        after: Duration,
    ) -> Result<HealthCheck, HarnessError> {
        let stuck = self.inner.store.stuck_requests(now.minus(after)).await?;
        Ok(if stuck.is_empty() {
            check(
                "stuck_requests",
                HealthStatus::Ok,
                format!("no running request idle for more than {}", relative(after)),
            )
        } else {
            let list: Vec<String> = stuck
                .iter()
                .take(5)
                .map(|s| {
                    format!(
                        "{} ({} idle {})",
                        s.id,
                        s.current_agent.as_deref().unwrap_or(&s.agent),
                        relative(s.last_activity_at.age(now))
                    )
                })
                .collect();
            check(
                "stuck_requests",
                HealthStatus::Warn,
                format!(
                    "{} running request(s) idle for more than {}: {}",
                    stuck.len(),
                    relative(after),
                    list.join(", ")
                ),
            )
        })
    }
}

impl Harness {
    /// Concurrency limits (in workspaces that declare any): how many calls hold
    /// them and how many trees wait; a hold older than its call's timeout fails
    /// (its call should have ended, or been killed, by then).
    async fn limits_check(&self, now: Timestamp) -> Result<Option<HealthCheck>, HarnessError> {
        let ws = &self.inner.workspace;
        let declared = !ws.declared_limits().is_empty();
        let holds = self.inner.store.holds().await?;
        if !declared && holds.is_empty() {
            return Ok(None);
        }
        let waits = self.inner.store.waits().await?;
        let mut trees: Vec<&harness_core::RequestId> = waits.iter().map(|w| &w.root_id).collect();
        trees.dedup();
        let overdue: Vec<String> = holds
            .iter()
            .filter(|h| h.until < now)
            .map(|h| {
                format!(
                    "{} held by {} for {}, past its call's timeout",
                    harness_core::describe_key(&h.key),
                    harness_core::describe_holder(h),
                    harness_core::relative(h.acquired_at.age(now))
                )
            })
            .collect();
        let summary = format!(
            "{} held, {} request tree{} waiting",
            holds.len(),
            trees.len(),
            if trees.len() == 1 { "" } else { "s" }
        );
        Ok(Some(if overdue.is_empty() {
            check("limits", HealthStatus::Ok, summary)
        } else {
            check(
                "limits",
                HealthStatus::Fail,
                format!("{}; {summary}", overdue.join("; ")),
            )
        }))
    }
}

fn check(name: &str, status: HealthStatus, detail: String) -> HealthCheck {
    HealthCheck {
        name: name.to_string(),
        status,
        detail,
    }
}

fn queue_check(
    s: &harness_store::StoreStats,
    limits: &harness_config::RuntimeLimits,
) -> HealthCheck {
    let (queued, capacity) = (s.queued, limits.queue_capacity);
    let cap = capacity.max(1) as u64;
    let status = if queued >= cap {
        HealthStatus::Fail
    } else if queued * 10 >= cap * 8 {
        HealthStatus::Warn
    } else {
        HealthStatus::Ok
    };
    check(
        "queue",
        status,
        format!(
            "{queued}/{capacity} queued{}, {}/{} running",
            if s.resuming > 0 {
                format!(" (+{} resuming)", s.resuming)
            } else {
                String::new()
            },
            s.running,
            limits.max_concurrent_requests
        ),
    )
}

fn approvals_check(s: &harness_store::StoreStats, now: Timestamp) -> HealthCheck {
    let oldest = s
        .oldest_pending_approval
        .map(|t| format!(", oldest {} old", relative(t.age(now))))
        .unwrap_or_default();
    if s.approvals_overdue > 0 {
        check(
            "approvals",
            HealthStatus::Warn,
            format!(
                "{} pending, {} past expiry (the worker expires them; is it running?){oldest}",
                s.pending_approvals, s.approvals_overdue
            ),
        )
    } else if s.approvals_expiring_soon > 0 {
        check(
            "approvals",
            HealthStatus::Warn,
            format!(
                "{} pending, {} expiring soon{oldest}",
                s.pending_approvals, s.approvals_expiring_soon
            ),
        )
    } else {
        check(
            "approvals",
            HealthStatus::Ok,
            format!("{} pending{oldest}", s.pending_approvals),
        )
    }
}

fn disk_check(dir: &std::path::Path) -> HealthCheck {
    match free_bytes(dir) {
        Some(free) if free < DISK_FAIL => check(
            "disk",
            HealthStatus::Fail,
            format!("{} free in {}", human_bytes(free), dir.display()),
        ),
        Some(free) if free < DISK_WARN => check(
            "disk",
            HealthStatus::Warn,
            format!("{} free in {}", human_bytes(free), dir.display()),
        ),
        Some(free) => check(
            "disk",
            HealthStatus::Ok,
            format!("{} free", human_bytes(free)),
        ),
        None => check(
            "disk",
            HealthStatus::Warn,
            format!("cannot read free space of {}", dir.display()),
        ),
    }
}

fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

impl Harness {
    /// One check per MCP server (`mcp.NAME`): this process's servers when it runs
    /// the worker, else the state the running worker last wrote (none when no
    /// worker runs: the servers run only with a worker).
    async fn mcp_checks(&self) -> Result<Vec<HealthCheck>, HarnessError> {
        if self.inner.mcp.is_empty() {
            return Ok(vec![]);
        }
        let statuses = if self.inner.worker.lock().expect("worker").is_some() {
            Some(self.inner.mcp.status())
        } else {
            match self.worker_holder().await? {
                Some(holder) => read_mcp_status(&self.inner.workspace, holder.pid),
                None => None,
            }
        };
        let Some(statuses) = statuses else {
            let names = self.inner.workspace.mcp.servers.keys();
            return Ok(names
                .map(|name| {
                    check(
                        &format!("mcp.{name}"),
                        HealthStatus::Ok,
                        "not started (MCP servers run with the worker)".to_string(),
                    )
                })
                .collect());
        };
        Ok(statuses.iter().map(mcp_check).collect())
    }
}

fn read_mcp_status(
    ws: &harness_config::Workspace,
    pid: u32,
) -> Option<Vec<harness_mcp::ServerStatus>> {
    let bytes = std::fs::read(crate::tools::mcp_status_file(ws)).ok()?;
    let body: harness_mcp::StatusFileBody = serde_json::from_slice(&bytes).ok()?;
    (body.pid == pid).then_some(body.servers)
}

fn mcp_check(s: &harness_mcp::ServerStatus) -> HealthCheck {
    use harness_mcp::ServerState;
    let name = format!("mcp.{}", s.name);
    match s.state {
        ServerState::Up => check(
            &name,
            HealthStatus::Ok,
            format!(
                "up, {} tool(s){}",
                s.tools,
                if s.restarts > 0 {
                    format!(", restarted {} time(s)", s.restarts)
                } else {
                    String::new()
                }
            ),
        ),
        ServerState::Starting => check(&name, HealthStatus::Warn, "starting".to_string()),
        ServerState::Stopped => check(&name, HealthStatus::Ok, "stopped".to_string()),
        ServerState::Down => {
            let mut detail = format!("down: {}", s.error.as_deref().unwrap_or("no reason known"));
            if let Some(secs) = s.retry_in_secs {
                detail.push_str(&format!("; restarting in {secs}s"));
            }
            if s.restarts > 0 {
                detail.push_str(&format!(" (restarted {} time(s) so far)", s.restarts));
            }
            if !s.stderr_tail.is_empty() {
                detail.push_str("; its stderr ended with:\n");
                detail.push_str(&s.stderr_tail.join("\n"));
            }
            check(&name, HealthStatus::Fail, detail)
        }
    }
}
