//! The overview projection (`runtime overview`, and any other surface): serialisable
//! facts an operator reads in five seconds. Rendering is the caller's.

use crate::{Harness, HarnessError, LockHolder, StuckRequest};
use harness_core::*;
use serde::Serialize;
use std::path::PathBuf;

type Result<T> = std::result::Result<T, HarnessError>;

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub workspace: WorkspaceInfo,
    pub now: Timestamp,
    pub worker: WorkerInfo,
    pub health: HealthSummary,
    pub queue: QueueInfo,
    pub approvals: ApprovalInfo,
    pub stuck: Vec<StuckInfo>,
    pub recent: Vec<RecentRequest>,
    pub last_activity: Option<Activity>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceInfo {
    pub name: String,
    pub root: PathBuf,
    pub store: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerInfo {
    /// A live process holds the workspace's worker lock.
    pub alive: bool,
    pub worker_id: Option<String>,
    pub pid: Option<u32>,
    pub last_heartbeat_at: Option<Timestamp>,
    pub last_heartbeat_age_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HealthSummary {
    pub status: HealthStatus,
    /// Every check that is not ok.
    pub problems: Vec<HealthCheck>,
}

#[derive(Debug, Clone, Serialize)]
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

#[derive(Debug, Clone, Serialize)]
pub struct ApprovalInfo {
    pub pending: u64,
    pub oldest_created_at: Option<Timestamp>,
    pub oldest_age_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StuckInfo {
    pub id: RequestId,
    pub session_id: SessionId,
    pub agent: String,
    pub current_agent: Option<String>,
    pub last_activity_at: Timestamp,
    pub idle_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecentRequest {
    #[serde(flatten)]
    pub request: Request,
    /// Delegated child requests, oldest first.
    pub delegates: Vec<Delegate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Delegate {
    pub id: RequestId,
    pub agent: String,
    pub status: RequestStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    pub at: Timestamp,
    pub age_ms: i64,
    pub seq: i64,
    pub kind: EventKind,
    pub request_id: Option<RequestId>,
}

impl Harness {
    /// The overview projection: workspace, worker, health problems, queue,
    /// approvals, stuck requests, the `recent` newest root requests with their
    /// delegates, and the last event. Read-only.
    pub async fn overview(&self, recent: usize) -> Result<Overview> {
        gather(self, recent).await
    }

    /// The newest `n` root requests, each with the agents it delegated to.
    pub async fn recent_requests(&self, n: usize) -> Result<Vec<RecentRequest>> {
        recent_requests(self, n).await
    }

    /// Delegated children of `id`, oldest first.
    pub async fn delegates_of(&self, id: &RequestId) -> Result<Vec<Delegate>> {
        delegates_of(self, id).await
    }
}

async fn gather(h: &Harness, recent: usize) -> Result<Overview> {
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
        },
        stuck: stuck.into_iter().map(|s| stuck_info(s, now)).collect(),
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
    })
}

fn stuck_info(s: StuckRequest, now: Timestamp) -> StuckInfo {
    StuckInfo {
        idle_ms: age_ms(now, s.last_activity_at),
        id: s.id,
        session_id: s.session_id,
        agent: s.agent,
        current_agent: s.current_agent,
        last_activity_at: s.last_activity_at,
    }
}

/// The newest root requests, each with the agents it delegated to.
async fn recent_requests(h: &Harness, n: usize) -> Result<Vec<RecentRequest>> {
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
async fn delegates_of(h: &Harness, id: &RequestId) -> Result<Vec<Delegate>> {
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
