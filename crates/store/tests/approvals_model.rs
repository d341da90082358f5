//! Model-based property test of the approval contract: whatever sequence of
//! resolutions, expiries and cancellations operators and the runtime attempt,
//! each approval is decided at most once, a refused action changes nothing, and
//! the request's state always follows its approval's. On every backend.

mod common;

use common::{Backend, paused_request};
use harness_core::*;
use proptest::prelude::*;
use serde_json::json;

const N: usize = 4;
const TTL: i64 = 1_000;

#[derive(Clone, Debug)]
enum Op {
    Resolve { i: usize, approve: bool, actor: u8 },
    Expire { after: i64 },
    Cancel { i: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..N, any::<bool>(), 0u8..3).prop_map(|(i, approve, actor)| Op::Resolve { i, approve, actor }),
        1 => (0i64..2 * TTL).prop_map(|after| Op::Expire { after }),
        1 => (0..N).prop_map(|i| Op::Cancel { i }),
    ]
}

/// What the model expects of approval `i` and its request.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Expect {
    approval: ApprovalStatus,
    request: RequestStatus,
}

async fn check(b: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let Some(fresh) = b.fresh() else {
        return Ok(());
    };
    let store = fresh.store.clone();
    let mut now = Timestamp(1_000_000);
    let mut pairs = Vec::new();
    for i in 0..N {
        pairs.push(paused_request(&store, i, now, TTL).await);
    }
    let mut model = [Expect {
        approval: ApprovalStatus::Pending,
        request: RequestStatus::WaitingApproval,
    }; N];
    for op in ops {
        match op {
            Op::Resolve { i, approve, actor } => {
                let (r, a) = &pairs[i];
                let decision = if approve {
                    Decision::Approved
                } else {
                    Decision::Rejected
                };
                let res = store
                    .resolve_approval(
                        ResolveApproval {
                            session_id: r.session_id.clone(),
                            request_id: r.id.clone(),
                            approval_id: a.id.clone(),
                            decision,
                            message: None,
                            decided_by: Actor::new(ActorKind::Cli, format!("op{actor}")),
                            edited_arguments: None,
                        },
                        now,
                    )
                    .await;
                let open = model[i].approval == ApprovalStatus::Pending && now < a.expires_at;
                prop_assert_eq!(res.is_ok(), open, "resolve {} at {:?}: {:?}", i, now, res);
                if open {
                    model[i] = Expect {
                        approval: decision.status(),
                        request: RequestStatus::Queued,
                    };
                }
            }
            Op::Expire { after } => {
                now = Timestamp(now.0 + after);
                let expired = store.expire_approvals(now, false).await.unwrap();
                for (i, (_, a)) in pairs.iter().enumerate() {
                    let due = model[i].approval == ApprovalStatus::Pending && a.expires_at <= now;
                    prop_assert_eq!(expired.iter().any(|e| e.id == a.id), due);
                    if due {
                        model[i] = Expect {
                            approval: ApprovalStatus::Expired,
                            request: RequestStatus::Queued,
                        };
                    }
                }
            }
            Op::Cancel { i } => {
                let res = store
                    .cancel(&pairs[i].0.id, &Actor::new(ActorKind::Cli, "op"), None, now)
                    .await;
                let open = !model[i].request.is_terminal();
                prop_assert_eq!(res.is_ok(), open);
                if open {
                    let approval = if model[i].approval == ApprovalStatus::Pending {
                        ApprovalStatus::Rejected
                    } else {
                        model[i].approval
                    };
                    model[i] = Expect {
                        approval,
                        request: RequestStatus::Cancelled,
                    };
                }
            }
        }
    }
    for (i, (r, a)) in pairs.iter().enumerate() {
        let got = Expect {
            approval: store.get_approval(&a.id).await.unwrap().status,
            request: store.get_request(&r.id).await.unwrap().status,
        };
        prop_assert_eq!(got, model[i], "approval {}", i);
    }
    let events = store
        .events_after(0, EventFilter::default(), 0)
        .await
        .unwrap();
    for (_, a) in &pairs {
        let decided = events
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::ApprovalResolved | EventKind::ApprovalExpired
                )
            })
            .filter(|e| e.payload["approval_id"] == json!(a.id))
            .count();
        prop_assert!(decided <= 1, "approval {} decided {} times", a.id, decided);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn approvals_are_decided_at_most_once_and_requests_follow(ops in proptest::collection::vec(op(), 1..25)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(Backend::Sqlite, ops))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn approvals_are_decided_at_most_once_and_requests_follow_on_postgres(ops in proptest::collection::vec(op(), 1..25)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(Backend::Postgres, ops))?;
    }
}
