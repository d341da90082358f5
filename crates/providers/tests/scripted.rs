//! Scripted model: turn selection, repeats, errors, latency, and `build_model`.

use harness_core::{Message, ModelTurn, RequestId};
use harness_providers::{Model, ModelError, ModelRequest, ScriptedModel};
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
agents:
  assistant:
    turns:
      - tool_calls:
          - tool: send_mail
            arguments: { to: "ops@example.com" }
      - text: "done"
  bench:
    latency_ms: 0
    turns:
      - tool_calls: [{tool: word_count, arguments: {text: "a b"}}]
        repeat: 3
      - text: "counted"
  slow:
    latency_ms: 50
    turns:
      - text: "late"
      - text: "quick"
        latency_ms: 0
"#;

fn model() -> ScriptedModel {
    ScriptedModel::from_yaml_str(SCRIPT, "resources/scripts/demo.yaml").unwrap()
}

async fn play(
    model: &ScriptedModel,
    agent: &str,
    messages: &[Message],
) -> Result<ModelTurn, ModelError> {
    let request_id = RequestId::generate();
    let req = ModelRequest {
        agent,
        request_id: &request_id,
        trace_id: None,
        traceparent: None,
        messages,
        tools: &[],
        deltas: None,
        stop_waiting: None,
    };
    model.complete(req).await.map(|r| r.turn)
}

/// Appends the turn and a tool result per call, as the engine would.
fn record(messages: &mut Vec<Message>, turn: &ModelTurn) {
    messages.push(Message::assistant(turn));
    if let ModelTurn::ToolCalls { calls, .. } = turn {
        for call in calls {
            messages.push(Message::tool(call.call_id.clone(), "ok"));
        }
    }
}

#[tokio::test]
async fn plays_turns_in_order_and_restarts_after_a_user_message() {
    let model = model();
    let mut messages = vec![Message::system("be brief"), Message::user("hi")];
    let first = play(&model, "assistant", &messages).await.unwrap();
    let ModelTurn::ToolCalls { calls, .. } = &first else {
        panic!("expected tool calls, got {first:?}");
    };
    assert_eq!(calls[0].tool, "send_mail");
    assert_eq!(calls[0].arguments["to"], "ops@example.com");
    record(&mut messages, &first);
    let second = play(&model, "assistant", &messages).await.unwrap();
    assert_eq!(
        second,
        ModelTurn::Text {
            text: "done".into()
        }
    );
    record(&mut messages, &second);

    let err = play(&model, "assistant", &messages).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "model call failed: scripted model: agent `assistant` has no turn 3 in resources/scripts/demo.yaml (it has 2)"
    );

    messages.push(Message::user("again"));
    let again = play(&model, "assistant", &messages).await.unwrap();
    assert!(matches!(again, ModelTurn::ToolCalls { .. }));
}

#[tokio::test]
async fn each_play_gets_a_fresh_call_id() {
    let model = model();
    let messages = vec![Message::user("hi")];
    let ids: Vec<_> = [
        play(&model, "assistant", &messages).await.unwrap(),
        play(&model, "assistant", &messages).await.unwrap(),
    ]
    .into_iter()
    .map(|turn| match turn {
        ModelTurn::ToolCalls { calls, .. } => calls[0].call_id.clone(),
        other => panic!("unexpected {other:?}"),
    })
    .collect();
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn repeated_turns_expand_logically() {
    let model = model();
    let mut messages = vec![Message::user("count")];
    for _ in 0..3 {
        let turn = play(&model, "bench", &messages).await.unwrap();
        assert!(
            matches!(&turn, ModelTurn::ToolCalls { calls, .. } if calls[0].tool == "word_count")
        );
        record(&mut messages, &turn);
    }
    let last = play(&model, "bench", &messages).await.unwrap();
    assert_eq!(
        last,
        ModelTurn::Text {
            text: "counted".into()
        }
    );
    record(&mut messages, &last);
    let err = play(&model, "bench", &messages)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("has no turn 5") && err.ends_with("(it has 4)"),
        "{err}"
    );
}

#[tokio::test]
async fn large_repeats_are_not_materialized() {
    let yaml = "agents:\n  a:\n    turns:\n      - text: x\n        repeat: 1000000000000\n";
    let model = ScriptedModel::from_yaml_str(yaml, "big.yaml").unwrap();
    let turn = play(&model, "a", &[Message::user("go")]).await.unwrap();
    assert_eq!(turn, ModelTurn::Text { text: "x".into() });
}

#[tokio::test]
async fn missing_agent_is_named() {
    let err = play(&model(), "nobody", &[Message::user("hi")])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "model call failed: scripted model: agent `nobody` is not in resources/scripts/demo.yaml (it has: assistant, bench, slow)"
    );
}

#[tokio::test]
async fn latency_is_honoured_per_agent_and_per_turn() {
    let model = model();
    let mut messages = vec![Message::user("hi")];
    let start = Instant::now();
    let turn = play(&model, "slow", &messages).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(50));
    record(&mut messages, &turn);
    let start = Instant::now();
    play(&model, "slow", &messages).await.unwrap();
    assert!(start.elapsed() < Duration::from_millis(50));
}

#[test]
fn bad_scripts_are_refused() {
    let unknown = "agents:\n  a:\n    turns:\n      - text: x\n        colour: red\n";
    let err = ScriptedModel::from_yaml_str(unknown, "s.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("s.yaml") && err.contains("colour"), "{err}");
    let empty_turn = "agents:\n  a:\n    turns:\n      - latency_ms: 3\n";
    let err = ScriptedModel::from_yaml_str(empty_turn, "s.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("agent `a`: turn 1: needs `text` or `tool_calls`"),
        "{err}"
    );
    let zero = "agents:\n  a:\n    turns:\n      - text: x\n        repeat: 0\n";
    assert!(ScriptedModel::from_yaml_str(zero, "s.yaml").is_err());
}

#[test]
fn from_file_reads_and_names_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.yaml");
    std::fs::write(&path, SCRIPT).unwrap();
    assert!(ScriptedModel::from_file(&path).is_ok());
    let err = ScriptedModel::from_file(&dir.path().join("nope.yaml")).unwrap_err();
    assert!(matches!(err, ModelError::Config(m) if m.contains("nope.yaml")));
}
