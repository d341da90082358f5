//! Reads the records an export holds: the request tree, journals, events,
//! approvals and artifact rows.
//!
//! Reads go request by request on the store's read connections, so an export of
//! a request that is still running is a consistent-enough snapshot, not a
//! transactional one: events committed while exporting may or may not appear.

use crate::bad_input;
use harness_core::*;
use harness_engine::{Harness, StoreError};
use serde::Serialize;
use std::collections::HashSet;

/// One element of `requests.json`.
#[derive(Debug, Serialize)]
pub(crate) struct RequestEntry {
    pub request: Request,
    pub steps: Vec<Step>,
}

#[derive(Debug)]
pub(crate) struct Records {
    /// The request asked for, or the session's root requests, oldest first.
    pub roots: Vec<RequestId>,
    /// Roots and all their descendants, each parent before its children.
    pub requests: Vec<RequestEntry>,
    /// Ordered by `seq`.
    pub events: Vec<Event>,
    /// Oldest first.
    pub approvals: Vec<Approval>,
    pub artifacts: Vec<Artifact>,
}

pub(crate) async fn collect(
    h: &Harness,
    session: &SessionId,
    request: Option<&RequestId>,
) -> anyhow::Result<Records> {
    let roots = roots(h, session, request).await?;
    let root_ids = roots.iter().map(|r| r.id.clone()).collect();
    let tree = with_descendants(h, roots).await?;
    let mut records = Records {
        roots: root_ids,
        requests: Vec::with_capacity(tree.len()),
        events: Vec::new(),
        approvals: Vec::new(),
        artifacts: Vec::new(),
    };
    for request in tree {
        add_request(h, &mut records, request).await?;
    }
    records.events.sort_by_key(|e| e.seq);
    records.events.dedup_by_key(|e| e.seq);
    add_named_versions(&mut records);
    records
        .approvals
        .sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(records)
}

async fn add_request(h: &Harness, out: &mut Records, request: Request) -> anyhow::Result<()> {
    let store = h.store();
    let id = request.id.clone();
    let filter = EventFilter {
        request_id: Some(id.clone()),
        ..Default::default()
    };
    out.events.extend(store.events_after(0, filter, 0).await?);
    let approvals = ApprovalFilter {
        request_id: Some(id.clone()),
        ..Default::default()
    };
    out.approvals.extend(store.list_approvals(approvals).await?);
    out.artifacts.extend(store.artifacts(&id).await?);
    let steps = store.steps(&id).await?;
    out.requests.push(RequestEntry { request, steps });
    Ok(())
}

/// Every artifact version an `artifact.created` event names is exported: one whose
/// row is gone (a damaged store) is rebuilt from its event, so its contents are
/// still looked for and its absence is reported rather than silently skipped.
fn add_named_versions(records: &mut Records) {
    let known: HashSet<ArtifactId> = records.artifacts.iter().map(|a| a.id.clone()).collect();
    let named = records
        .events
        .iter()
        .filter(|e| e.kind == EventKind::ArtifactCreated)
        .filter_map(artifact_of_event)
        .filter(|a| !known.contains(&a.id))
        .collect::<Vec<_>>();
    records.artifacts.extend(named);
}

/// The artifact an `artifact.created` event describes (None if its payload is damaged).
fn artifact_of_event(e: &Event) -> Option<Artifact> {
    let p = &e.payload;
    let text = |k: &str| p.get(k)?.as_str().map(String::from);
    Some(Artifact {
        id: ArtifactId::parse(&text("artifact_id")?).ok()?,
        request_id: e.request_id.clone()?,
        session_id: e.session_id.clone()?,
        name: text("name")?,
        version: p.get("version").map_or(Some(1), |v| v.as_u64())? as u32,
        media_type: text("media_type").unwrap_or_default(),
        size: p.get("size")?.as_u64()?,
        sha256: text("sha256")?,
        created_at: e.at,
    })
}

/// The request asked for (checked to belong to `session`), or every root request
/// of the session, oldest first.
async fn roots(
    h: &Harness,
    session: &SessionId,
    request: Option<&RequestId>,
) -> anyhow::Result<Vec<Request>> {
    let store = h.store();
    let Some(id) = request else {
        match store.get_session(session).await {
            Err(StoreError::NotFound { .. }) => {
                return Err(bad_input(format!("session `{session}` not found")));
            }
            other => other?,
        };
        let filter = RequestFilter {
            session_id: Some(session.clone()),
            roots_only: true,
            ..Default::default()
        };
        return Ok(oldest_first(store.list_requests(filter).await?));
    };
    let req = match store.get_request(id).await {
        Err(StoreError::NotFound { .. }) => {
            return Err(bad_input(format!(
                "request `{id}` not found in session `{session}`"
            )));
        }
        other => other?,
    };
    if &req.session_id != session {
        return Err(bad_input(format!(
            "request `{id}` belongs to session `{}`, not `{session}`",
            req.session_id
        )));
    }
    Ok(vec![req])
}

/// `roots` followed by their descendants, depth first, each parent before its
/// children and siblings oldest first (the order `requests show` draws the tree).
async fn with_descendants(h: &Harness, roots: Vec<Request>) -> anyhow::Result<Vec<Request>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<Request> = roots.into_iter().rev().collect();
    while let Some(r) = stack.pop() {
        // Parent links cannot form a cycle in a sane store; a corrupt one must not hang us.
        if !seen.insert(r.id.clone()) {
            continue;
        }
        let filter = RequestFilter {
            parent_id: Some(r.id.clone()),
            ..Default::default()
        };
        let children = oldest_first(h.store().list_requests(filter).await?);
        stack.extend(children.into_iter().rev());
        out.push(r);
    }
    Ok(out)
}

fn oldest_first(mut requests: Vec<Request>) -> Vec<Request> {
    requests.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    requests
}
