//! Where a `runtime` command reads and acts: the workspace's store through the
//! library ([`Harness`]), or a server's HTTP API (`--server`). Both answer with the
//! same projection types, which the same render functions print.

use crate::remote::Client;
use anyhow::Result;
use harness_core::*;
use harness_engine::Harness;
use harness_engine::views::{Overview, RequestTree};
use serde_json::json;

/// The API's largest page of a list.
const MAX_PAGE: usize = 1000;

pub enum Source {
    Local(Harness),
    Remote(Client),
}

/// The worker holding the workspace, if one does.
pub struct Holder {
    pub worker_id: String,
    pub pid: u32,
}

impl Source {
    /// "Now" for rendering ages: the harness clock, or this machine's (frozen by
    /// `AGENT_HARNESS_NOW` like the harness clock).
    pub fn now(&self) -> Result<Timestamp> {
        Ok(match self {
            Source::Local(h) => h.now(),
            Source::Remote(_) => crate::context::options()?.clock.now(),
        })
    }

    pub async fn overview(&self, recent: usize) -> Result<Overview> {
        Ok(match self {
            Source::Local(h) => h.overview(recent).await?,
            Source::Remote(c) => {
                c.get("/v1/overview", &[("recent", recent.to_string())])
                    .await?
            }
        })
    }

    pub async fn health(&self) -> Result<HealthReport> {
        Ok(match self {
            Source::Local(h) => h.health().await?,
            Source::Remote(c) => c.get("/v1/health", &[]).await?,
        })
    }

    pub async fn list_requests(&self, f: RequestFilter) -> Result<Vec<Request>> {
        Ok(match self {
            Source::Local(h) => h.list_requests(f).await?,
            Source::Remote(c) => {
                let mut q = vec![
                    ("roots_only", f.roots_only.to_string()),
                    ("order", f.order.as_str().to_string()),
                    // 0 (no limit) asks for the API's largest page.
                    (
                        "limit",
                        if f.limit == 0 { MAX_PAGE } else { f.limit }.to_string(),
                    ),
                ];
                if !f.statuses.is_empty() {
                    let s: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
                    q.push(("status", s.join(",")));
                }
                if let Some(s) = &f.session_id {
                    q.push(("session", s.to_string()));
                }
                if let Some(a) = &f.agent {
                    q.push(("agent", a.clone()));
                }
                if let Some(p) = &f.parent_id {
                    q.push(("parent", p.to_string()));
                }
                if let Some(t) = f.since {
                    q.push(("since", t.0.to_string()));
                }
                if let Some(t) = &f.trace_id {
                    q.push(("trace_id", t.clone()));
                }
                if let Some(t) = &f.text {
                    q.push(("text", t.clone()));
                }
                if let Some(r) = &f.retry_of {
                    q.push(("retry_of", r.to_string()));
                }
                c.get("/v1/requests", &q).await?
            }
        })
    }

    pub async fn get_request(&self, id: &RequestId) -> Result<Request> {
        Ok(match self {
            Source::Local(h) => h.get_request(id).await?,
            Source::Remote(c) => c.get(&format!("/v1/requests/{id}"), &[]).await?,
        })
    }

    pub async fn request_tree(&self, id: &RequestId) -> Result<RequestTree> {
        Ok(match self {
            Source::Local(h) => h.request_tree(id).await?,
            Source::Remote(c) => c.get(&format!("/v1/requests/{id}/tree"), &[]).await?,
        })
    }

    /// The root of a delegation chain.
    pub async fn root_of(&self, id: &RequestId) -> Result<Request> {
        match self {
            Source::Local(h) => Ok(h.root_of(id).await?),
            Source::Remote(_) => {
                let mut r = self.get_request(id).await?;
                // Bounded like the views' delegation depth: a guard against damaged records.
                for _ in 0..64 {
                    match r.parent_id.clone() {
                        Some(p) => r = self.get_request(&p).await?,
                        None => break,
                    }
                }
                Ok(r)
            }
        }
    }

    pub async fn list_approvals(&self, f: ApprovalFilter) -> Result<Vec<Approval>> {
        Ok(match self {
            Source::Local(h) => h.list_approvals(f).await?,
            Source::Remote(c) => {
                let mut q = vec![("limit", f.limit.to_string())];
                if !f.statuses.is_empty() {
                    let s: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
                    q.push(("status", s.join(",")));
                }
                if let Some(s) = &f.session_id {
                    q.push(("session", s.to_string()));
                }
                if let Some(r) = &f.request_id {
                    q.push(("request", r.to_string()));
                }
                c.get("/v1/approvals", &q).await?
            }
        })
    }

    pub async fn list_sessions(&self, limit: usize) -> Result<Vec<Session>> {
        Ok(match self {
            Source::Local(h) => h.list_sessions(limit).await?,
            Source::Remote(c) => {
                c.get("/v1/sessions", &[("limit", limit.to_string())])
                    .await?
            }
        })
    }

    /// The worker holding the workspace (remotely: as the server's overview says).
    pub async fn worker(&self) -> Result<Option<Holder>> {
        Ok(match self {
            Source::Local(h) => h.worker_holder().await?.map(|w| Holder {
                worker_id: w.worker_id,
                pid: w.pid,
            }),
            Source::Remote(_) => {
                let w = self.overview(0).await?.worker;
                match (w.alive, w.worker_id, w.pid) {
                    (true, Some(worker_id), Some(pid)) => Some(Holder { worker_id, pid }),
                    _ => None,
                }
            }
        })
    }

    /// Cancels a request; remotely the server records the token's name as `by`.
    pub async fn cancel(
        &self,
        id: &RequestId,
        by: &Actor,
        reason: Option<&str>,
    ) -> Result<Request> {
        Ok(match self {
            Source::Local(h) => h.cancel(id, by, reason).await?,
            Source::Remote(c) => {
                c.post(
                    &format!("/v1/requests/{id}/cancel"),
                    json!({"reason": reason}),
                )
                .await?
            }
        })
    }

    pub async fn retry(&self, id: &RequestId) -> Result<Request> {
        Ok(match self {
            Source::Local(h) => h.retry(id).await?,
            Source::Remote(c) => {
                c.post(&format!("/v1/requests/{id}/retry"), json!({}))
                    .await?
            }
        })
    }

    /// Resolves an approval through the API (`POST /v1/approvals/{id}/resolve`): the
    /// server checks it against its own records and records the token's name as who
    /// decided. Local resolution goes through [`Harness::resolve_approval`] instead.
    pub async fn resolve_remote(
        &self,
        id: &ApprovalId,
        decision: Decision,
        message: Option<String>,
        arguments: Option<serde_json::Value>,
    ) -> Result<Approval> {
        let c = match self {
            Source::Remote(c) => c,
            Source::Local(_) => anyhow::bail!("resolve_remote needs --server"),
        };
        let decision = match decision {
            Decision::Approved => "approve",
            Decision::Rejected => "reject",
        };
        let mut body = json!({"decision": decision});
        if let Some(m) = message {
            body["message"] = json!(m);
        }
        if let Some(a) = arguments {
            body["arguments"] = a;
        }
        c.post(&format!("/v1/approvals/{id}/resolve"), body).await
    }

    /// Every version of every artifact of a request.
    pub async fn artifacts(&self, id: &RequestId) -> Result<Vec<Artifact>> {
        Ok(match self {
            Source::Local(h) => h.store().artifacts(id).await?,
            Source::Remote(c) => c.get(&format!("/v1/requests/{id}/artifacts"), &[]).await?,
        })
    }

    /// An artifact version's contents (`None`: recorded, but gone from the store).
    pub async fn read_artifact(&self, a: &Artifact) -> Result<Option<Vec<u8>>> {
        match self {
            Source::Local(h) => Ok(h.store().read_artifact(a).await?),
            Source::Remote(c) => {
                match c
                    .send(
                        reqwest::Method::GET,
                        &format!("/v1/artifacts/{}", a.id),
                        &[],
                        None,
                    )
                    .await
                {
                    Ok(res) => Ok(Some(c.body(res).await?)),
                    Err(e)
                        if e.downcast_ref::<crate::remote::RemoteError>()
                            .is_some_and(|r| r.code == ErrorCode::NotFound) =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }
}
