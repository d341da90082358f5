//! A request as a tree of steps, with delegated child requests under the step that
//! delegated, and approvals and artifacts in place (`runtime requests show`, the
//! console's timeline, `GET /v1/requests/{id}/tree`).

use super::millis_between;
use super::waiting::{self, WaitsFor};
use crate::{Harness, HarnessError};
use harness_core::*;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

/// Delegation deeper than this is cut (a guard against cycles in damaged records).
pub const MAX_DEPTH: usize = 16;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestTree {
    pub request: Request,
    pub duration_ms: Option<i64>,
    pub steps: Vec<StepNode>,
    /// Every approval raised by this request.
    pub approvals: Vec<Approval>,
    /// Every artifact of this request (those a step produced also appear under it).
    pub artifacts: Vec<Artifact>,
    /// Tokens of this request's own model turns (a delegated child's are in its tree).
    pub usage: UsageTotals,
    /// The requests admitted by `requests retry` of this one, oldest first (its
    /// own `retry_of` says what it retries).
    pub retries: Vec<Retry>,
    /// A queued root: what it waits for (a limit and who holds it, its session's
    /// earlier request, or a worker slot); a running one: a rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waits_for: Option<WaitsFor>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Retry {
    pub id: RequestId,
    pub status: RequestStatus,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepNode {
    #[serde(flatten)]
    pub step: Step,
    /// How long the step took, not counting a wait for its approval.
    pub duration_ms: Option<i64>,
    /// How long its approval took to be decided (a call that needed one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_wait_ms: Option<i64>,
    pub approval: Option<Approval>,
    pub artifacts: Vec<Artifact>,
    /// For a `delegate` call: the child request's own tree.
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub child: Option<Box<RequestTree>>,
}

impl RequestTree {
    /// The delegated child requests directly under this one, in step order.
    pub fn children(&self) -> impl Iterator<Item = &RequestTree> {
        self.steps.iter().filter_map(|n| n.child.as_deref())
    }

    /// The deepest request of the tree matching `pred` (itself when none below does).
    pub fn deepest(&self, pred: fn(&RequestTree) -> bool) -> &RequestTree {
        self.children()
            .filter(|c| pred(c))
            .last()
            .map(|c| c.deepest(pred))
            .unwrap_or(self)
    }

    /// What executes in the tree: the deepest unfinished request's open tool call
    /// (`tool NAME (call_…)`), else its model turn; and since when.
    pub fn in_flight(&self) -> (String, Timestamp) {
        let t = self.deepest(|x| !x.request.status.is_terminal());
        t.in_flight_here()
    }

    /// The step executing in this request: its last tool call not yet finished,
    /// else the model.
    pub fn in_flight_here(&self) -> (String, Timestamp) {
        let open = self.steps.iter().rev().find(|n| {
            matches!(n.step.status, StepStatus::Started | StepStatus::Interrupted)
                && matches!(n.step.body, StepBody::ToolCall { .. })
        });
        match open.map(|n| &n.step) {
            Some(Step {
                body: StepBody::ToolCall { call, .. },
                started_at,
                ..
            }) => (
                format!("tool {} ({})", call.tool, call.call_id),
                *started_at,
            ),
            _ => ("model turn".to_string(), self.request.last_activity_at),
        }
    }

    /// The first request of the tree (itself, then its delegated children) that
    /// waits for something, and what.
    pub fn first_wait(&self) -> Option<(&RequestId, &WaitsFor)> {
        if let Some(w) = &self.waits_for {
            return Some((&self.request.id, w));
        }
        self.children().find_map(RequestTree::first_wait)
    }

    /// The ids of the request and every delegated request under it.
    pub fn ids(&self) -> Vec<RequestId> {
        let mut out = vec![self.request.id.clone()];
        for c in self.children() {
            out.extend(c.ids());
        }
        out
    }
}

type Loading<'a> = Pin<Box<dyn Future<Output = Result<RequestTree, HarnessError>> + Send + 'a>>;

impl Harness {
    /// Request `id` as a tree, its delegated children's trees under their steps
    /// (to [`MAX_DEPTH`]).
    pub async fn request_tree(&self, id: &RequestId) -> Result<RequestTree, HarnessError> {
        load(self, id.clone(), 0).await
    }
}

fn load(h: &Harness, id: RequestId, depth: usize) -> Loading<'_> {
    Box::pin(async move {
        let request = h.get_request(&id).await?;
        let store = h.store();
        let steps = store.steps(&id).await?;
        let approvals = h
            .list_approvals(ApprovalFilter {
                request_id: Some(id.clone()),
                ..Default::default()
            })
            .await?;
        let artifacts = store.artifacts(&id).await?;
        let usage = store
            .request_usage(vec![id.clone()])
            .await?
            .remove(&id)
            .unwrap_or_default();
        let retries = if request.parent_id.is_none() {
            h.list_requests(RequestFilter {
                retry_of: Some(id.clone()),
                order: RequestOrder::Oldest,
                ..Default::default()
            })
            .await?
            .into_iter()
            .map(|r| Retry {
                id: r.id,
                status: r.status,
                created_at: r.created_at,
            })
            .collect()
        } else {
            Vec::new()
        };
        let waits_for = match request.status {
            RequestStatus::Queued if request.parent_id.is_none() => {
                let (waits, holds) = (h.waits().await?, h.holds().await?);
                waiting::of(h, &request, &waits, &holds).await?
            }
            RequestStatus::Running => waiting::of_running(&request, &h.rate_limit_status().await?),
            _ => None,
        };
        let made = made_by_steps(&steps, &artifacts);
        let mut nodes = Vec::with_capacity(steps.len());
        for (step, made) in steps.into_iter().zip(made) {
            nodes.push(node(h, step, &approvals, made, depth).await?);
        }
        Ok(RequestTree {
            duration_ms: millis_between(
                request.started_at.unwrap_or(request.created_at),
                request.finished_at,
            ),
            request,
            steps: nodes,
            approvals,
            artifacts,
            usage,
            retries,
            waits_for,
        })
    })
}

/// The artifact each step stored, by position: versions of a name are numbered in
/// the order they were written, so the k-th call that stored `name` made its k-th
/// committed version. A model turn's is its raw response, by id.
fn made_by_steps(steps: &[Step], artifacts: &[Artifact]) -> Vec<Vec<Artifact>> {
    let mut seen: std::collections::HashMap<&str, usize> = Default::default();
    steps
        .iter()
        .map(|step| {
            if let StepBody::ModelTurn { info, .. } = &step.body {
                let raw = info.raw_artifact.as_ref();
                return artifacts
                    .iter()
                    .filter(|a| Some(&a.id) == raw)
                    .cloned()
                    .collect();
            }
            let StepBody::ToolCall {
                outcome:
                    Some(ToolOutcome {
                        artifact: Some(name),
                        ..
                    }),
                ..
            } = &step.body
            else {
                return Vec::new();
            };
            let k = seen.entry(name.as_str()).or_default();
            let mut versions: Vec<&Artifact> =
                artifacts.iter().filter(|a| &a.name == name).collect();
            versions.sort_by_key(|a| a.version);
            let made = versions.get(*k).map(|a| (*a).clone());
            *k += 1;
            made.into_iter().collect()
        })
        .collect()
}

async fn node(
    h: &Harness,
    step: Step,
    approvals: &[Approval],
    made: Vec<Artifact>,
    depth: usize,
) -> Result<StepNode, HarnessError> {
    let (approval, child_id) = match &step.body {
        StepBody::ToolCall {
            approval_id,
            child_request_id,
            ..
        } => (
            approval_id
                .as_ref()
                .and_then(|a| approvals.iter().find(|x| &x.id == a).cloned()),
            child_request_id.clone(),
        ),
        StepBody::ModelTurn { .. } => (None, None),
    };
    let child = match child_id {
        Some(c) if depth < MAX_DEPTH => Some(Box::new(load(h, c, depth + 1).await?)),
        _ => None,
    };
    // A call that waited for approval ran from the decision on.
    let decided = approval.as_ref().and_then(|a| a.decided_at);
    Ok(StepNode {
        duration_ms: millis_between(decided.unwrap_or(step.started_at), step.finished_at),
        approval_wait_ms: decided.map(|d| (d.0 - step.started_at.0).max(0)),
        step,
        approval,
        artifacts: made,
        child,
    })
}
