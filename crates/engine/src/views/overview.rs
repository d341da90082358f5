//! The overview: the one screen an operator reads in five seconds (`runtime
//! overview`, `GET /v1/overview`, the console's front page).

use super::age_ms;
use crate::{Harness, HarnessError, RateLimitStatus};
use harness_core::*;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Pending approvals and stuck requests listed by name (the rest are counted).
pub const LISTED: usize = 5;

/// How many recent root requests an overview lists unless asked (CLI and API alike),
/// and the most it lists.
pub const DEFAULT_RECENT: usize = 8;
pub const MAX_RECENT: usize = 100;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    pub rate_limits: Vec<RateLimitStatus>,
    pub recent: Vec<RecentRequest>,
    pub last_activity: Option<Activity>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkspaceInfo {
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub root: PathBuf,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub store: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthSummary {
    pub status: HealthStatus,
    /// Every check that is not ok.
    pub problems: Vec<HealthCheck>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalInfo {
    pub pending: u64,
    pub oldest_created_at: Option<Timestamp>,
    pub oldest_age_ms: Option<i64>,
    /// The oldest pending approvals (at most [`LISTED`]), oldest first.
    pub oldest: Vec<Approval>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitInfo {
    /// `resource:NAME`, `tool:NAME` or `agent:NAME`.
    pub key: String,
    pub capacity: Option<u32>,
    pub held_by: Vec<Hold>,
    /// Request trees parked until this limit has room, oldest first.
    pub waiting: Vec<Wait>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecentRequest {
    #[serde(flatten)]
    pub request: Request,
    /// Delegated child requests, oldest first.
    pub delegates: Vec<Delegate>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delegate {
    pub id: RequestId,
    pub agent: String,
    pub status: RequestStatus,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Activity {
    pub at: Timestamp,
    pub age_ms: i64,
    pub seq: i64,
    pub kind: EventKind,
    pub request_id: Option<RequestId>,
}

impl Harness {
    /// The overview, with the `recent` newest root requests.
    pub async fn overview(&self, recent: usize) -> Result<Overview, HarnessError> {
        let h = self;
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
            recent: h.recent_requests(recent).await?,
            last_activity: last_activity(h, now).await?,
        })
    }

    /// The newest `n` root requests, each with the agents it delegated to.
    pub async fn recent_requests(&self, n: usize) -> Result<Vec<RecentRequest>, HarnessError> {
        let roots = self
            .list_requests(RequestFilter {
                roots_only: true,
                limit: n.max(1),
                ..Default::default()
            })
            .await?;
        let mut out = Vec::with_capacity(roots.len());
        for request in roots.into_iter().take(n) {
            let delegates = self.delegates_of(&request.id).await?;
            out.push(RecentRequest { request, delegates });
        }
        Ok(out)
    }

    /// Delegated children of `id`, oldest first.
    pub async fn delegates_of(&self, id: &RequestId) -> Result<Vec<Delegate>, HarnessError> {
        let mut children = self
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
}

async fn worker_info(h: &Harness, now: Timestamp) -> Result<WorkerInfo, HarnessError> {
    let holder = h.worker_holder().await?;
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
async fn limit_infos(h: &Harness) -> Result<Vec<LimitInfo>, HarnessError> {
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
async fn oldest_pending(h: &Harness) -> Result<Vec<Approval>, HarnessError> {
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
    stuck: Vec<crate::StuckRequest>,
    now: Timestamp,
) -> Result<Vec<StuckInfo>, HarnessError> {
    let mut out = Vec::with_capacity(stuck.len());
    for (i, s) in stuck.into_iter().enumerate() {
        let flight = if i < LISTED {
            Some(h.request_tree(&s.id).await?.in_flight())
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

async fn last_activity(h: &Harness, now: Timestamp) -> Result<Option<Activity>, HarnessError> {
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
