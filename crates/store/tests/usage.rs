//! Token usage per request and per session, summed from the model turns' step
//! bodies: tool calls, turns without usage and turns recorded before turns carried
//! it count nothing.

mod common;

use common::Backend;
use harness_core::*;
use harness_store::{Admission, NewRequest, StepCommit, Store};

fn turn_with(usage: Option<Usage>) -> StepBody {
    StepBody::ModelTurn {
        turn: ModelTurn::Text { text: "t".into() },
        info: TurnInfo {
            provider: "openai".into(),
            usage,
            ..Default::default()
        },
    }
}

async fn request(store: &Store, session: &str, parent: Option<&Request>) -> Request {
    let now = Timestamp(1_000);
    let new = NewRequest {
        id: RequestId::generate(),
        session_id: SessionId::parse(session).unwrap(),
        agent: "a".into(),
        input: "go".into(),
        trace_id: "t".into(),
        traceparent: None,
        priority: 0,
    };
    if let Some(p) = parent {
        let id = new.id.clone();
        store
            .commit_step(StepCommit::new(&p.id, &p.session_id, now).child(new))
            .await
            .unwrap();
        return store.get_request(&id).await.unwrap();
    }
    let adm = Admission {
        queue_capacity: 100,
        reject_if_session_busy: false,
    };
    let r = store.admit(new, adm, now).await.unwrap();
    let claimed = store.claim(&WorkerId::generate(), 1, now).await.unwrap();
    assert_eq!(claimed[0].id, r.id);
    claimed[0].clone()
}

async fn steps(store: &Store, r: &Request, bodies: Vec<StepBody>) {
    let mut c = StepCommit::new(&r.id, &r.session_id, Timestamp(2_000));
    for (idx, body) in bodies.into_iter().enumerate() {
        c = c.insert(Step {
            request_id: r.id.clone(),
            idx: idx as u32,
            agent: "a".into(),
            status: StepStatus::Completed,
            started_at: Timestamp(2_000),
            finished_at: Some(Timestamp(2_000)),
            body,
        });
    }
    store.commit_step(c).await.unwrap();
}

fn usage(input: u64, output: u64) -> Option<Usage> {
    Some(Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: 7,
        ..Default::default()
    })
}

#[tokio::test]
async fn usage_is_summed_per_request_and_per_session() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(fresh) = backend.fresh() else {
            continue;
        };
        sums(&fresh.store).await;
    }
}

async fn sums(store: &Store) {
    let store = store.clone();
    let root = request(&store, "s1", None).await;
    let child = request(&store, "s1", Some(&root)).await;
    let call = ToolCall {
        call_id: CallId::generate(),
        tool: "t".into(),
        arguments: serde_json::json!({"input_tokens": 999}),
    };
    steps(
        &store,
        &root,
        vec![
            turn_with(usage(100, 10)),
            StepBody::ToolCall {
                call,
                approval_id: None,
                outcome: None,
                child_request_id: None,
            },
            turn_with(None),
            StepBody::model_turn(ModelTurn::Text { text: "old".into() }),
            turn_with(usage(250, 5)),
        ],
    )
    .await;
    steps(&store, &child, vec![turn_with(usage(40, 4))]).await;
    let other = request(&store, "s2", None).await;
    steps(&store, &other, vec![turn_with(usage(1, 1))]).await;

    let by_request = store
        .request_usage(vec![
            root.id.clone(),
            child.id.clone(),
            RequestId::generate(),
        ])
        .await
        .unwrap();
    assert_eq!(
        by_request[&root.id],
        UsageTotals {
            input_tokens: 350,
            output_tokens: 15,
            turns: 2
        }
    );
    assert_eq!(by_request[&child.id].input_tokens, 40);
    assert_eq!(by_request.len(), 2, "a request without usage is left out");
    // Many ids at once (more than one statement's worth of parameters).
    let mut many: Vec<RequestId> = (0..1200).map(|_| RequestId::generate()).collect();
    many.push(child.id.clone());
    many.insert(0, root.id.clone());
    let by_request = store.request_usage(many).await.unwrap();
    assert_eq!(by_request.len(), 2);
    assert_eq!(by_request[&root.id].turns, 2);
    assert_eq!(
        store.session_usage(&root.session_id).await.unwrap(),
        UsageTotals {
            input_tokens: 390,
            output_tokens: 19,
            turns: 3
        }
    );
    let empty = store
        .session_usage(&SessionId::parse("nobody").unwrap())
        .await
        .unwrap();
    assert!(empty.is_empty());
}
