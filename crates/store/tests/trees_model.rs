//! Property test of request trees through the store's API: whatever sequence of
//! claims, delegations, pauses, resolutions, expiries, cancels (of roots and of
//! children), completions and crash recoveries happens, the store's behaviour
//! keeps these invariants after every operation:
//!
//! 1. nothing waits for approval unless an approval in its tree is pending;
//! 2. a tree pauses as one: a waiting child's parent waits too;
//! 3. an active child's parent is active (no orphans);
//! 4. a settled request never changes again, and an approval is decided once;
//! 5. every request whose status changed got an event about it in the same operation.

mod common;

use common::Backend;
use harness_core::*;
use harness_store::{Admission, NewRequest, StepCommit, Store};
use proptest::prelude::*;
use serde_json::json;
use std::collections::HashMap;

const TREES: usize = 3;
const DEPTH: usize = 3;
const TTL: i64 = 1_000;

#[derive(Clone, Debug)]
enum Op {
    Claim,
    Delegate {
        t: usize,
    },
    Pause {
        t: usize,
    },
    Resolve {
        t: usize,
        approve: bool,
    },
    Expire {
        after: i64,
        fail: bool,
    },
    Cancel {
        t: usize,
        level: usize,
    },
    Finish {
        t: usize,
    },
    ResumePath {
        t: usize,
    },
    Recover,
    /// A run panicked at some level: its whole tree fails.
    FailTree {
        t: usize,
        level: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Claim),
        3 => (0..TREES).prop_map(|t| Op::Delegate { t }),
        3 => (0..TREES).prop_map(|t| Op::Pause { t }),
        3 => (0..TREES, any::<bool>()).prop_map(|(t, approve)| Op::Resolve { t, approve }),
        1 => (0i64..2 * TTL, any::<bool>()).prop_map(|(after, fail)| Op::Expire { after, fail }),
        2 => (0..TREES, 0..DEPTH).prop_map(|(t, level)| Op::Cancel { t, level }),
        2 => (0..TREES).prop_map(|t| Op::Finish { t }),
        2 => (0..TREES).prop_map(|t| Op::ResumePath { t }),
        1 => Just(Op::Recover),
        1 => (0..TREES, 0..DEPTH).prop_map(|(t, level)| Op::FailTree { t, level }),
    ]
}

struct World {
    store: Store,
    now: Timestamp,
    worker: WorkerId,
    /// Each tree's requests, root first, in delegation order.
    trees: Vec<Vec<RequestId>>,
}

impl World {
    async fn get(&self, id: &RequestId) -> Request {
        self.store.get_request(id).await.unwrap()
    }

    /// The tree's deepest request that is not settled, with the path above it,
    /// when the whole path is running (what a live run could commit on).
    async fn running_path(&self, t: usize) -> Option<Vec<Request>> {
        let mut path = Vec::new();
        for id in &self.trees[t] {
            let r = self.get(id).await;
            if r.status.is_terminal() {
                break;
            }
            path.push(r);
        }
        let all_running =
            !path.is_empty() && path.iter().all(|r| r.status == RequestStatus::Running);
        all_running.then_some(path)
    }

    fn commit_on(&self, path: &[Request]) -> StepCommit {
        let leaf = path.last().unwrap();
        let ancestors: Vec<RequestId> = path[..path.len() - 1]
            .iter()
            .rev()
            .map(|r| r.id.clone())
            .collect();
        StepCommit::new(&leaf.id, &leaf.session_id, self.now)
            .agent(&leaf.agent)
            .ancestors(&ancestors)
    }

    async fn apply(&mut self, op: &Op) {
        let now = self.now;
        match op {
            Op::Claim => {
                let _ = self.store.claim(&self.worker, 10, now).await;
            }
            Op::Delegate { t } => {
                let Some(path) = self.running_path(*t).await else {
                    return;
                };
                if path.len() >= DEPTH || path.len() < self.trees[*t].len() {
                    return;
                }
                let parent = path.last().unwrap();
                let child = NewRequest {
                    id: RequestId::generate(),
                    session_id: parent.session_id.clone(),
                    agent: format!("level{}", path.len()),
                    input: "go".into(),
                    trace_id: "t".into(),
                    traceparent: None,
                    priority: 0,
                };
                let id = child.id.clone();
                let c = self.commit_on(&path).child(child);
                if self.store.commit_step(c).await.is_ok() {
                    self.trees[*t].push(id);
                }
            }
            Op::Pause { t } => {
                let Some(path) = self.running_path(*t).await else {
                    return;
                };
                let leaf = path.last().unwrap();
                let call = ToolCall {
                    call_id: CallId::generate(),
                    tool: "send".into(),
                    arguments: json!({}),
                };
                let approval = Approval {
                    id: ApprovalId::generate(),
                    request_id: leaf.id.clone(),
                    session_id: leaf.session_id.clone(),
                    agent: leaf.agent.clone(),
                    step_idx: 0,
                    call_id: call.call_id.clone(),
                    tool: call.tool.clone(),
                    arguments: json!({}),
                    status: ApprovalStatus::Pending,
                    decided_by: None,
                    decided_by_kind: None,
                    message: None,
                    edited_arguments: None,
                    created_at: now,
                    decided_at: None,
                    expires_at: Timestamp(now.0 + TTL),
                    reason: None,
                };
                let c = self
                    .commit_on(&path)
                    .event(EventBody::RequestWaitingApproval {
                        approval_id: Some(approval.id.clone()),
                        via_child: None,
                    })
                    .raise(approval);
                let _ = self.store.commit_step(c).await;
            }
            Op::Resolve { t, approve } => {
                for id in &self.trees[*t] {
                    let pending = self
                        .store
                        .list_approvals(ApprovalFilter {
                            statuses: vec![ApprovalStatus::Pending],
                            request_id: Some(id.clone()),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                    for a in pending {
                        let _ = self
                            .store
                            .resolve_approval(
                                ResolveApproval {
                                    session_id: a.session_id.clone(),
                                    request_id: a.request_id.clone(),
                                    approval_id: a.id.clone(),
                                    decision: if *approve {
                                        Decision::Approved
                                    } else {
                                        Decision::Rejected
                                    },
                                    message: None,
                                    decided_by: Actor::new(ActorKind::Cli, "op"),
                                    edited_arguments: None,
                                },
                                now,
                            )
                            .await;
                    }
                }
            }
            Op::Expire { after, fail } => {
                self.now = Timestamp(now.0 + after);
                let _ = self.store.expire_approvals(self.now, *fail).await;
            }
            Op::Cancel { t, level } => {
                if let Some(id) = self.trees[*t].get(*level) {
                    let _ = self
                        .store
                        .cancel(id, &Actor::new(ActorKind::Cli, "op"), None, now)
                        .await;
                }
            }
            Op::Finish { t } => {
                let Some(path) = self.running_path(*t).await else {
                    return;
                };
                // As the engine commits a final answer: the status with its event.
                let c = self
                    .commit_on(&path)
                    .output("done")
                    .event(EventBody::RequestCompleted {
                        output_bytes: 4,
                        steps: 1,
                    });
                let _ = self.store.commit_step(c).await;
            }
            Op::ResumePath { t } => {
                let root = self.get(&self.trees[*t][0]).await;
                if root.status != RequestStatus::Running {
                    return;
                }
                for id in &self.trees[*t][1..] {
                    let _ = self.store.resume_child(id, now).await;
                }
            }
            Op::Recover => {
                let _ = self.store.recover(&WorkerId::generate(), now, 100).await;
            }
            Op::FailTree { t, level } => {
                if let Some(id) = self.trees[*t].get(*level) {
                    let _ = self.store.fail_tree(id, "panicked", now).await;
                }
            }
        }
        self.now = Timestamp(self.now.0 + 1);
    }
}

type Snapshot = HashMap<RequestId, RequestStatus>;

async fn snapshot(w: &World) -> (Snapshot, HashMap<ApprovalId, ApprovalStatus>) {
    let requests = w
        .store
        .list_requests(RequestFilter::default())
        .await
        .unwrap();
    let approvals = w
        .store
        .list_approvals(ApprovalFilter::default())
        .await
        .unwrap();
    (
        requests.into_iter().map(|r| (r.id, r.status)).collect(),
        approvals.into_iter().map(|a| (a.id, a.status)).collect(),
    )
}

async fn check_invariants(
    w: &World,
    op: &Op,
    before: &(Snapshot, HashMap<ApprovalId, ApprovalStatus>),
    seq_before: i64,
) -> Result<(), TestCaseError> {
    let after = snapshot(w).await;
    let requests = w
        .store
        .list_requests(RequestFilter::default())
        .await
        .unwrap();
    let by_id: HashMap<&RequestId, &Request> = requests.iter().map(|r| (&r.id, r)).collect();
    let pending: Vec<Approval> = w
        .store
        .list_approvals(ApprovalFilter {
            statuses: vec![ApprovalStatus::Pending],
            ..Default::default()
        })
        .await
        .unwrap();
    let subtree_has_pending = |root: &RequestId| {
        let mut stack = vec![root.clone()];
        while let Some(id) = stack.pop() {
            if pending.iter().any(|a| a.request_id == id) {
                return true;
            }
            stack.extend(
                requests
                    .iter()
                    .filter(|r| r.parent_id.as_ref() == Some(&id))
                    .map(|r| r.id.clone()),
            );
        }
        false
    };
    for r in &requests {
        if r.status == RequestStatus::WaitingApproval {
            prop_assert!(
                subtree_has_pending(&r.id),
                "after {op:?}: {} waits on nothing",
                r.id
            );
        }
        if let Some(parent) = r.parent_id.as_ref().and_then(|p| by_id.get(p)) {
            if r.status == RequestStatus::WaitingApproval {
                prop_assert_eq!(
                    parent.status,
                    RequestStatus::WaitingApproval,
                    "after {:?}: child {} waits but its parent does not",
                    op,
                    r.id
                );
            }
            if !r.status.is_terminal() {
                prop_assert!(
                    !parent.status.is_terminal(),
                    "after {op:?}: {} is {} under a {} parent",
                    r.id,
                    r.status,
                    parent.status
                );
            }
        }
    }
    // On PostgreSQL an event shows once every older transaction of the server has
    // finished (the cursor's watermark): other tests' transactions can hold a
    // committed one back for a moment, so wait for each changed request's event.
    let changed: Vec<&RequestId> = after
        .0
        .iter()
        .filter(|(id, s)| before.0.get(*id).is_some_and(|old| old != *s))
        .map(|(id, _)| id)
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let events = loop {
        let events = w
            .store
            .events_after(seq_before, EventFilter::default(), 0)
            .await
            .unwrap();
        let seen = |id: &RequestId| events.iter().any(|e| e.request_id.as_ref() == Some(id));
        if changed.iter().all(|id| seen(id)) || std::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    for (id, status) in &after.0 {
        let Some(old) = before.0.get(id) else {
            continue;
        };
        if old.is_terminal() {
            prop_assert_eq!(old, status, "after {:?}: settled {} changed", op, id);
        }
        if old != status {
            prop_assert!(
                events.iter().any(|e| e.request_id.as_ref() == Some(id)),
                "after {op:?}: {id} went {old} -> {status} with no event"
            );
        }
    }
    for (id, status) in &after.1 {
        if let Some(old) = before.1.get(id)
            && *old != ApprovalStatus::Pending
        {
            prop_assert_eq!(
                old,
                status,
                "after {:?}: decided approval {} changed",
                op,
                id
            );
        }
    }
    Ok(())
}

async fn check(b: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let Some(fresh) = b.fresh() else {
        return Ok(());
    };
    let store = fresh.store.clone();
    let adm = Admission {
        queue_capacity: 100,
        reject_if_session_busy: false,
    };
    let mut trees = Vec::new();
    for t in 0..TREES {
        let new = NewRequest {
            id: RequestId::generate(),
            session_id: SessionId::parse(&format!("s{t}")).unwrap(),
            agent: "root".into(),
            input: "x".into(),
            trace_id: "t".into(),
            traceparent: None,
            priority: 0,
        };
        trees.push(vec![new.id.clone()]);
        store.admit(new, adm, Timestamp(1)).await.unwrap();
    }
    let mut w = World {
        store,
        now: Timestamp(10),
        worker: WorkerId::generate(),
        trees,
    };
    for op in &ops {
        let before = snapshot(&w).await;
        let seq = w.store.last_seq().await.unwrap();
        w.apply(op).await;
        check_invariants(&w, op, &before, seq).await?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn trees_keep_their_invariants_under_any_operations(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(Backend::Sqlite, ops))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn trees_keep_their_invariants_under_any_operations_on_postgres(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(Backend::Postgres, ops))?;
    }
}
