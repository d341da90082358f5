//! The HTTP providers against a local server speaking each provider's wire format:
//! recorded streams, continued turns, errors, retries, a dropped connection, a slow
//! first byte, and cancellation.

use harness_config::{ModelConfig, ModelsFile, from_yaml};
use harness_core::*;
use harness_fake_provider::{FakeProvider, Reply, anthropic, openai, recorded};
use harness_providers::{
    AnthropicModel, DeltaSink, Model, ModelError, ModelReply, ModelRequest, OpenAiModel, ToolSpec,
};
use serde_json::json;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const KEY: &str = "sk-test-0123456789abcdef";

fn config(provider: &str, base_url: &str, extra: &str) -> ModelConfig {
    let retry = if extra.contains("retry:") {
        ""
    } else {
        "    retry: {initial_backoff: 10ms, max_backoff: 2s}\n"
    };
    let yaml = format!(
        "models:\n  m:\n    provider: {provider}\n    model: test-model\n    base_url: {base_url}\n    \
         api_key_env: TEST_KEY\n{retry}{extra}"
    );
    let mut file: ModelsFile = from_yaml(&yaml, Path::new("models.yaml")).unwrap();
    file.models.remove("m").unwrap()
}

fn openai_model(server: &FakeProvider, extra: &str) -> OpenAiModel {
    let c = config("openai", &server.openai_base_url(), extra);
    OpenAiModel::new("m", &c, Some(KEY.into())).unwrap()
}

fn anthropic_model(server: &FakeProvider, extra: &str) -> AnthropicModel {
    let c = config("anthropic", &server.base_url(), extra);
    AnthropicModel::new("m", &c, Some(KEY.into())).unwrap()
}

#[derive(Default)]
struct Watcher(Mutex<Vec<ModelDelta>>);

impl DeltaSink for Watcher {
    fn delta(&self, d: ModelDelta) {
        self.0.lock().unwrap().push(d);
    }
}

impl Watcher {
    fn seen(&self) -> Vec<ModelDelta> {
        self.0.lock().unwrap().clone()
    }
}

fn tools() -> Vec<ToolSpec> {
    vec![ToolSpec {
        name: "write_file".into(),
        description: "Write a file".into(),
        arguments: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
    }]
}

async fn ask(
    model: &dyn Model,
    messages: &[Message],
    watcher: Option<&Watcher>,
) -> Result<ModelReply, ModelError> {
    let id = RequestId::generate();
    let tools = tools();
    model
        .complete(ModelRequest {
            agent: "assistant",
            request_id: &id,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            traceparent: None,
            messages,
            tools: &tools,
            deltas: watcher.map(|w| w as &dyn DeltaSink),
            stop_waiting: None,
        })
        .await
}

fn start() -> Vec<Message> {
    vec![
        Message::system("You are terse."),
        Message::user("ship the notes"),
    ]
}

fn calls(turn: &ModelTurn) -> &[ToolCall] {
    match turn {
        ModelTurn::ToolCalls { calls, .. } => calls,
        other => panic!("expected tool calls, got {other:?}"),
    }
}

#[tokio::test]
async fn openai_recorded_stream_with_parallel_calls_in_fragments() {
    let server = FakeProvider::spawn();
    // 7-byte chunks: events and UTF-8 sequences straddle chunk boundaries.
    server.push(Reply::raw_sse(
        recorded::OPENAI_PARALLEL_TOOL_CALLS.as_bytes(),
        7,
    ));
    let watcher = Watcher::default();
    let reply = ask(&openai_model(&server, ""), &start(), Some(&watcher))
        .await
        .unwrap();
    let calls = calls(&reply.turn);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].tool, "write_file");
    assert_eq!(
        calls[0].arguments,
        json!({"path": "notes.md", "content": "café — done\n"})
    );
    assert_eq!(
        (calls[1].tool.as_str(), &calls[1].arguments),
        ("list_files", &json!({}))
    );
    let info = &reply.info;
    assert_eq!(info.provider, "openai");
    assert_eq!(info.model, "gpt-4o-2024-08-06");
    assert_eq!(
        info.response_id.as_deref(),
        Some("chatcmpl-AJ9tWcPpFZ8mRr1x")
    );
    assert_eq!(info.stop_reason, Some(StopReason::ToolUse));
    assert_eq!(info.provider_stop_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        info.usage,
        Some(Usage {
            input_tokens: 212,
            output_tokens: 48,
            cache_read_tokens: 128,
            ..Default::default()
        })
    );
    assert_eq!(info.attempts, Some(1));
    // The runtime's own ids, mapped to the provider's.
    assert!(calls[0].call_id.as_str().starts_with("call_"));
    assert_ne!(calls[0].call_id.as_str(), "call_Wq8cXyB4xP1t");
    assert_eq!(
        info.provider_call_ids[&calls[0].call_id],
        "call_Wq8cXyB4xP1t"
    );
    assert_eq!(
        info.provider_call_ids[&calls[1].call_id],
        "call_kF3mZ09qRs2u"
    );
    let raw = reply.raw.expect("raw response kept");
    assert_eq!(raw.bytes, recorded::OPENAI_PARALLEL_TOOL_CALLS.as_bytes());
    assert_eq!(raw.media_type, "text/event-stream");
    // Watchers saw each call start with its name, and its arguments.
    let seen = watcher.seen();
    let names: Vec<_> = seen
        .iter()
        .filter_map(|d| match d {
            ModelDelta::ToolCall {
                name: Some(n),
                index,
                ..
            } => Some((*index, n.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(names, vec![(0, "write_file"), (1, "list_files")]);
    let args: String = seen
        .iter()
        .filter_map(|d| match d {
            ModelDelta::ToolCall {
                index: 0,
                arguments,
                ..
            } => Some(arguments.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        args,
        "{\"path\": \"notes.md\", \"content\": \"café — done\\n\"}"
    );

    let sent = &server.received()[0];
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let body = sent.json();
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "You are terse."})
    );
    assert_eq!(body["tools"][0]["function"]["name"], "write_file");
}

#[tokio::test]
async fn openai_text_answer_streams_pieces_and_continues_with_provider_ids() {
    let server = FakeProvider::spawn();
    server.push(
        openai::Turn::new("gpt-test")
            .call(0, "call_abc", "write_file", &["{\"path\":", "\"a\"}"])
            .finish("tool_calls")
            .usage(10, 5)
            .reply(),
    );
    server.push(
        openai::Turn::new("gpt-test")
            .reasoning("thinking…")
            .text("Do")
            .text("ne.")
            .finish("stop")
            .usage(30, 2)
            .reply(),
    );
    let model = openai_model(&server, "    max_tokens: 99\n    temperature: 0.5\n");
    let mut messages = start();
    let first = ask(&model, &messages, None).await.unwrap();
    let call = calls(&first.turn)[0].clone();
    messages.push(Message::assistant_turn(&first.turn, &first.info));
    messages.push(Message::tool_result(
        call.call_id.clone(),
        "no such folder",
        false,
    ));
    let watcher = Watcher::default();
    let second = ask(&model, &messages, Some(&watcher)).await.unwrap();
    assert_eq!(
        second.turn,
        ModelTurn::Text {
            text: "Done.".into()
        }
    );
    assert_eq!(second.info.stop_reason, Some(StopReason::EndTurn));
    assert_eq!(second.info.thinking[0].text, "thinking…");
    let text: String = watcher
        .seen()
        .iter()
        .filter_map(|d| match d {
            ModelDelta::Text { text } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Done.");

    let body = server.received()[1].json();
    assert_eq!(body["max_tokens"], 99);
    assert_eq!(body["temperature"], 0.5);
    let sent = &body["messages"];
    assert_eq!(sent[2]["role"], "assistant");
    assert_eq!(sent[2]["content"], serde_json::Value::Null);
    assert_eq!(
        sent[2]["tool_calls"][0]["id"], "call_abc",
        "the provider's own id"
    );
    assert_eq!(
        sent[2]["tool_calls"][0]["function"]["arguments"],
        "{\"path\":\"a\"}"
    );
    assert_eq!(
        sent[3],
        json!({"role": "tool", "tool_call_id": "call_abc", "content": "no such folder"})
    );
}

#[tokio::test]
async fn anthropic_recorded_stream_keeps_thinking_signatures_and_tool_use_ids() {
    let server = FakeProvider::spawn();
    server.push(Reply::raw_sse(
        recorded::ANTHROPIC_THINKING_TOOL_USE.as_bytes(),
        11,
    ));
    let model = anthropic_model(&server, "    max_tokens: 8000\n    thinking_budget: 2048\n");
    let watcher = Watcher::default();
    let reply = ask(&model, &start(), Some(&watcher)).await.unwrap();
    let ModelTurn::ToolCalls { text, calls } = &reply.turn else {
        panic!("{:?}", reply.turn)
    };
    assert_eq!(text, "I'll write the notes and mail them.");
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0].arguments,
        json!({"path": "notes.md", "content": "faster recovery"})
    );
    assert_eq!(calls[1].arguments, json!({"to": "ops@example.com"}));
    let info = &reply.info;
    assert_eq!(info.provider, "anthropic");
    assert_eq!(info.model, "claude-sonnet-4-20250514");
    assert_eq!(info.stop_reason, Some(StopReason::ToolUse));
    assert_eq!(
        info.usage,
        Some(Usage {
            input_tokens: 472 + 2048,
            output_tokens: 157,
            cache_read_tokens: 2048,
            ..Default::default()
        })
    );
    assert_eq!(info.thinking.len(), 1);
    assert_eq!(
        info.thinking[0].text,
        "The user wants the notes mailed. I should write them first, then send."
    );
    assert!(
        info.thinking[0]
            .signature
            .as_deref()
            .unwrap()
            .starts_with("EqQBCgIYAhIM")
    );
    assert_eq!(
        info.provider_call_ids[&calls[0].call_id],
        "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    );
    assert!(
        watcher
            .seen()
            .iter()
            .any(|d| matches!(d, ModelDelta::Thinking { .. }))
    );

    let sent = &server.received()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    let body = sent.json();
    assert_eq!(body["system"], "You are terse.");
    assert_eq!(body["max_tokens"], 8000);
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "ship the notes"}]}])
    );

    // The continued turn sends the signed thinking first, the provider's ids, and
    // every tool result in one user message.
    server.push(
        anthropic::Turn::new("claude-test", 900)
            .text(&["Sent."])
            .stop("end_turn", 3)
            .reply(),
    );
    let mut messages = start();
    messages.push(Message::assistant_turn(&reply.turn, &reply.info));
    messages.push(Message::tool_result(
        calls[0].call_id.clone(),
        "wrote 15 bytes",
        true,
    ));
    messages.push(Message::tool_result(calls[1].call_id.clone(), "", false));
    let done = ask(&model, &messages, None).await.unwrap();
    assert_eq!(
        done.turn,
        ModelTurn::Text {
            text: "Sent.".into()
        }
    );
    let body = server.received()[1].json();
    let sent = body["messages"].as_array().unwrap();
    assert_eq!(sent.len(), 3, "{sent:#?}");
    let assistant = &sent[1]["content"];
    assert_eq!(assistant[0]["type"], "thinking");
    assert_eq!(
        assistant[0]["signature"],
        info.thinking[0].signature.clone().unwrap()
    );
    assert_eq!(assistant[0]["thinking"], info.thinking[0].text);
    assert_eq!(
        assistant[1],
        json!({"type": "text", "text": "I'll write the notes and mail them."})
    );
    assert_eq!(assistant[2]["id"], "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(assistant[3]["input"], json!({"to": "ops@example.com"}));
    assert_eq!(
        sent[2]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
             "content": "wrote 15 bytes"},
            {"type": "tool_result", "tool_use_id": "toolu_01VMmv6S3pnnhPuwYf3ovDAi",
             "content": "(no output)", "is_error": true},
        ])
    );
}

#[tokio::test]
async fn redacted_thinking_and_a_turn_cut_at_max_tokens() {
    let server = FakeProvider::spawn();
    server.push(
        anthropic::Turn::new("claude-test", 10)
            .redacted_thinking("EmwKAhgBEgy3va3pzix")
            .text(&["The answer is"])
            .stop("max_tokens", 5)
            .reply(),
    );
    server.push(
        anthropic::Turn::new("claude-test", 10)
            .tool_use("toolu_1", "write_file", &["{\"path\": \"no"])
            .stop("max_tokens", 5)
            .reply(),
    );
    let model = anthropic_model(&server, "");
    let cut = ask(&model, &start(), None).await.unwrap();
    assert_eq!(
        cut.turn,
        ModelTurn::Text {
            text: "The answer is".into()
        }
    );
    assert_eq!(cut.info.stop_reason, Some(StopReason::MaxTokens));
    assert_eq!(
        cut.info.thinking[0].redacted.as_deref(),
        Some("EmwKAhgBEgy3va3pzix")
    );
    let err = ask(&model, &start(), None).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("raise `max_tokens`"), "{err}");
}

#[tokio::test]
async fn rate_limits_honour_retry_after_then_succeed() {
    let server = FakeProvider::spawn();
    server.push(
        Reply::error(429, openai::error_body("Rate limit reached", "requests"))
            .header("retry-after", "1"),
    );
    server.push(
        openai::Turn::new("gpt-test")
            .text("ok")
            .finish("stop")
            .reply(),
    );
    let started = Instant::now();
    let reply = ask(&openai_model(&server, ""), &start(), None)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(reply.info.attempts, Some(2));
    assert_eq!(server.received().len(), 2);
}

#[tokio::test]
async fn a_retry_after_longer_than_max_backoff_ends_the_retries_with_it() {
    let server = FakeProvider::spawn();
    server.push(
        Reply::error(
            429,
            anthropic::error_body("Number of requests exceeded", "rate_limit_error"),
        )
        .header("retry-after", "120"),
    );
    let started = Instant::now();
    let err = ask(&anthropic_model(&server, ""), &start(), None)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
    let text = err.to_string();
    assert!(
        text.contains("HTTP 429: Number of requests exceeded (rate_limit_error)"),
        "{text}"
    );
    assert!(text.contains("retry after 120s"), "{text}");
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_up_to_max_retries() {
    let server = FakeProvider::spawn();
    server.push(Reply::error(
        500,
        openai::error_body("boom", "server_error"),
    ));
    server.push(Reply::error(503, json!({"error": "overloaded"})));
    server.push(
        openai::Turn::new("gpt-test")
            .text("ok")
            .finish("stop")
            .reply(),
    );
    let reply = ask(&openai_model(&server, ""), &start(), None)
        .await
        .unwrap();
    assert_eq!(reply.info.attempts, Some(3));

    for _ in 0..3 {
        server.push(Reply::error(
            529,
            anthropic::error_body("Overloaded", "overloaded_error"),
        ));
    }
    let model = anthropic_model(
        &server,
        "    retry: {max_retries: 2, initial_backoff: 1ms}\n",
    );
    let err = ask(&model, &start(), None).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("HTTP 529: Overloaded (overloaded_error)"),
        "{text}"
    );
    assert!(
        text.contains(
            "after 3 attempts); `retry` in config/models.yaml sets how many attempts a call gets"
        ),
        "{text}"
    );
    assert!(
        text.contains(&server.base_url()),
        "names the endpoint: {text}"
    );
}

#[tokio::test]
async fn other_client_errors_are_refused_at_once_with_the_providers_message() {
    let server = FakeProvider::spawn();
    server.push(Reply::error(
        400,
        anthropic::error_body(
            "messages.0.content: Input should be a valid list",
            "invalid_request_error",
        ),
    ));
    let err = ask(&anthropic_model(&server, ""), &start(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModelError::Refused { status: 400, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(
        err.to_string()
            .contains("refused the request (HTTP 400): messages.0.content: Input should be a valid list (invalid_request_error)"),
        "{err}"
    );
    assert_eq!(server.received().len(), 1, "not retried");
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_re_asks_and_never_keeps_half_a_turn() {
    let server = FakeProvider::spawn();
    let full = openai::Turn::new("gpt-test")
        .text("first ")
        .text("try")
        .call(0, "call_1", "write_file", &["{\"path\":", "\"a\"}"])
        .finish("tool_calls");
    server.push(Reply::sse(full.events()).drop_after_parts(4));
    server.push(
        openai::Turn::new("gpt-test")
            .text("second try")
            .finish("stop")
            .reply(),
    );
    let watcher = Watcher::default();
    let reply = ask(&openai_model(&server, ""), &start(), Some(&watcher))
        .await
        .unwrap();
    assert_eq!(
        reply.turn,
        ModelTurn::Text {
            text: "second try".into()
        }
    );
    assert_eq!(reply.info.attempts, Some(2));
    let seen = watcher.seen();
    let restart = seen
        .iter()
        .position(|d| matches!(d, ModelDelta::Restart { .. }))
        .expect("watchers told the first attempt is void");
    assert!(
        seen[..restart]
            .iter()
            .any(|d| matches!(d, ModelDelta::Text { text } if text.starts_with("first")))
    );
    assert!(matches!(&seen[restart + 1], ModelDelta::Text { text } if text.starts_with("second")));
}

#[tokio::test]
async fn a_stream_that_ends_before_the_model_finished_is_retried() {
    let server = FakeProvider::spawn();
    // A complete HTTP response whose stream lacks its end (no message_stop).
    let mut events = anthropic::Turn::new("claude-test", 5)
        .text(&["par"])
        .events();
    events.truncate(3);
    server.push(Reply::sse(events));
    server.push(
        anthropic::error_event("Overloaded", "overloaded_error").pipe(|e| Reply::sse(vec![e])),
    );
    server.push(
        anthropic::Turn::new("claude-test", 5)
            .text(&["whole"])
            .stop("end_turn", 1)
            .reply(),
    );
    let reply = ask(&anthropic_model(&server, ""), &start(), None)
        .await
        .unwrap();
    assert_eq!(
        reply.turn,
        ModelTurn::Text {
            text: "whole".into()
        }
    );
    assert_eq!(reply.info.attempts, Some(3));
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

#[tokio::test]
async fn a_slow_first_byte_past_read_timeout_is_retried() {
    let server = FakeProvider::spawn();
    server.push(
        openai::Turn::new("gpt-test")
            .text("late")
            .finish("stop")
            .reply()
            .first_byte_after(Duration::from_millis(1500)),
    );
    server.push(
        openai::Turn::new("gpt-test")
            .text("on time")
            .finish("stop")
            .reply(),
    );
    let model = openai_model(&server, "    read_timeout: 300ms\n");
    let started = Instant::now();
    let reply = ask(&model, &start(), None).await.unwrap();
    assert_eq!(
        reply.turn,
        ModelTurn::Text {
            text: "on time".into()
        }
    );
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );

    server.push(
        openai::Turn::new("gpt-test")
            .text("late")
            .finish("stop")
            .reply()
            .first_byte_after(Duration::from_millis(1500)),
    );
    let model = openai_model(
        &server,
        "    read_timeout: 200ms\n    retry: {max_retries: 0}\n",
    );
    let err = ask(&model, &start(), None).await.unwrap_err();
    assert!(err.is_retryable());
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn a_slow_stream_is_read_as_it_comes() {
    let server = FakeProvider::spawn();
    let mut turn = openai::Turn::new("gpt-test");
    for i in 0..5 {
        turn = turn.text(&format!("{i} "));
    }
    server.push(
        turn.finish("stop")
            .reply()
            .paced(Duration::from_millis(120)),
    );
    let watcher = Watcher::default();
    let reply = ask(
        &openai_model(&server, "    read_timeout: 1s\n"),
        &start(),
        Some(&watcher),
    )
    .await
    .unwrap();
    assert_eq!(
        reply.turn,
        ModelTurn::Text {
            text: "0 1 2 3 4 ".into()
        }
    );
    // Pieces 120 ms apart are not held back until the end.
    let texts = watcher
        .seen()
        .iter()
        .filter(|d| matches!(d, ModelDelta::Text { .. }))
        .count();
    assert!(texts >= 4, "{:?}", watcher.seen());
}

#[tokio::test]
async fn dropping_the_call_closes_the_connection() {
    let server = FakeProvider::spawn();
    let mut turn = openai::Turn::new("gpt-test");
    for i in 0..100 {
        turn = turn.text(&format!("{i} "));
    }
    server.push(turn.finish("stop").reply().paced(Duration::from_millis(50)));
    let model = openai_model(&server, "");
    let watcher = Watcher::default();
    let messages = start();
    let call = ask(&model, &messages, Some(&watcher));
    // Cancel once the stream is flowing.
    let cancelled = tokio::time::timeout(Duration::from_millis(400), call).await;
    assert!(cancelled.is_err(), "the call was still streaming");
    assert!(!watcher.seen().is_empty());
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.abandoned() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.abandoned(), 1, "the server saw the client go");
    assert_eq!(server.finished(), 0);
    assert_eq!(server.open_connections(), 0);
}

#[tokio::test]
async fn a_missing_key_names_its_variable_and_a_bad_url_is_refused() {
    let c = config("openai", "http://127.0.0.1:9", "");
    let err = harness_providers::models::api_key("gpt", &c, |_| None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "model configuration: model `gpt`: the environment variable TEST_KEY (its `api_key_env`) \
         is not set; export it in the environment of the process that runs the agents"
    );
    assert_eq!(
        harness_providers::models::api_key("gpt", &c, |_| Some(format!(" {KEY}\n"))).unwrap(),
        Some(KEY.to_string())
    );
    // Nothing listens on port 9: a connection error, retried, then reported.
    let model = OpenAiModel::new(
        "gpt",
        &config(
            "openai",
            "http://127.0.0.1:9",
            "    retry: {max_retries: 1, initial_backoff: 1ms}\n",
        ),
        None,
    )
    .unwrap();
    let err = ask(&model, &start(), None).await.unwrap_err();
    assert!(err.is_retryable());
    assert!(err.to_string().contains("could not connect"), "{err}");
    assert!(err.to_string().contains("after 2 attempts"), "{err}");
    assert!(
        err.to_string()
            .ends_with("; check that the server at `base_url` is running and reachable"),
        "{err}"
    );
}

#[tokio::test]
async fn the_key_never_appears_in_an_error_even_when_the_provider_quotes_it() {
    let server = FakeProvider::spawn();
    let quoting = |status| {
        Reply::error(
            status,
            openai::error_body(
                &format!("Incorrect API key provided: {KEY}. Find yours at example.com"),
                "invalid_request_error",
            ),
        )
    };
    server.push(quoting(401));
    let err = ask(&openai_model(&server, ""), &start(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ModelError::Refused { status: 401, .. }));
    let text = format!("{err} {err:?}");
    assert!(!text.contains(KEY), "{text}");
    assert!(
        text.contains("Incorrect API key provided: [REDACTED]"),
        "{text}"
    );
    // It was sent, as the provider expects it.
    assert_eq!(
        server.received()[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );

    // A retryable one too (its message is logged before the retry).
    server.push(quoting(500));
    let err = ask(
        &openai_model(&server, "    retry: {max_retries: 0}\n"),
        &start(),
        None,
    )
    .await
    .unwrap_err();
    assert!(err.is_retryable());
    assert!(!format!("{err} {err:?}").contains(KEY), "{err}");
}

#[tokio::test]
async fn a_call_longer_than_request_timeout_is_cut_and_says_so() {
    let server = FakeProvider::spawn();
    let mut turn = openai::Turn::new("gpt-test");
    for i in 0..40 {
        turn = turn.text(&format!("{i} "));
    }
    // Never silent for long (read_timeout is not what ends it), but slow overall.
    server.push(turn.finish("stop").reply().paced(Duration::from_millis(50)));
    let model = openai_model(
        &server,
        "    read_timeout: 1s\n    request_timeout: 400ms\n    retry: {max_retries: 0}\n",
    );
    let started = Instant::now();
    let err = ask(&model, &start(), None).await.unwrap_err();
    let took = started.elapsed();
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        err.to_string()
            .contains("the call took longer than request_timeout"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_connection_that_cannot_be_made_in_connect_timeout_is_given_up() {
    use std::os::fd::AsRawFd;
    // A listener that accepts nothing with a backlog of 0: once one connection waits
    // in its queue, the kernel ignores further connection attempts, which hang.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    while let Ok(c) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        queued.push(c);
        assert!(queued.len() < 64, "the listen queue never filled");
    }
    let c = config(
        "openai",
        &format!("http://{addr}/v1"),
        "    connect_timeout: 300ms\n    retry: {max_retries: 0}\n",
    );
    let model = OpenAiModel::new("m", &c, None).unwrap();
    let started = Instant::now();
    let err = ask(&model, &start(), None).await.unwrap_err();
    let took = started.elapsed();
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        err.to_string()
            .contains("could not connect within connect_timeout"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn openai_finish_reasons_are_kept_and_normalised() {
    let server = FakeProvider::spawn();
    for (finish, stop) in [
        ("stop", StopReason::EndTurn),
        ("length", StopReason::MaxTokens),
        ("content_filter", StopReason::Refused),
        ("something_new", StopReason::Other),
    ] {
        server.push(
            openai::Turn::new("gpt-test")
                .text("partial answ")
                .finish(finish)
                .reply(),
        );
        let reply = ask(&openai_model(&server, ""), &start(), None)
            .await
            .unwrap();
        assert_eq!(reply.info.stop_reason, Some(stop), "{finish}");
        assert_eq!(reply.info.provider_stop_reason.as_deref(), Some(finish));
        assert_eq!(
            reply.turn,
            ModelTurn::Text {
                text: "partial answ".into()
            }
        );
    }
}

/// A call of `model` for a new request, with `stop` as its `stop_waiting`.
async fn ask_stoppable(
    model: &dyn Model,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<ModelReply, ModelError> {
    let id = RequestId::generate();
    let messages = start();
    model
        .complete(ModelRequest {
            agent: "assistant",
            request_id: &id,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            traceparent: None,
            messages: &messages,
            tools: &[],
            deltas: None,
            stop_waiting: Some(stop),
        })
        .await
}

#[tokio::test]
async fn a_retry_after_holds_every_model_on_the_same_rate_limit_key() {
    let server = FakeProvider::spawn();
    server.push(
        Reply::error(429, openai::error_body("Rate limit reached", "requests"))
            .header("retry-after", "1"),
    );
    for _ in 0..2 {
        server.push(
            openai::Turn::new("gpt-test")
                .text("ok")
                .finish("stop")
                .usage(30, 12)
                .reply(),
        );
    }
    let limits = harness_providers::RateLimits::new();
    let shared = "    rate_limit: {key: account}\n";
    let c = config("openai", &server.openai_base_url(), shared);
    let small = OpenAiModel::with_rate_limits("small", &c, Some(KEY.into()), &limits).unwrap();
    let big = OpenAiModel::with_rate_limits("big", &c, Some(KEY.into()), &limits).unwrap();
    let first = tokio::spawn(async move { ask(&small, &start(), None).await });
    while server.received().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Once the 429 is in, the other model's call waits for it too.
    let blocked = loop {
        if let Some(b) = limits.state()[0].blocked_until {
            break b;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let second = ask(&big, &start(), None).await.unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!(
        (first.info.attempts, second.info.attempts),
        (Some(2), Some(1))
    );
    let hits = server.received();
    assert_eq!(hits.len(), 3);
    for later in &hits[1..] {
        let gap = later.at - hits[0].at;
        assert!(
            gap >= Duration::from_millis(1000),
            "a call hit the provider {gap:?} after the 429"
        );
    }
    let state = &limits.state()[0];
    assert_eq!(state.key, "account");
    assert_eq!(state.calls_in_window, 3);
    assert_eq!(state.tokens_in_window, 84, "both turns' usage counts");
    assert!(state.blocked_until.is_none(), "{blocked} is past");
}

#[tokio::test]
async fn a_call_waiting_for_its_rate_limit_gives_up_when_told_to_stop() {
    let server = FakeProvider::spawn();
    server.push(
        Reply::error(429, openai::error_body("Rate limit reached", "requests"))
            .header("retry-after", "20"),
    );
    let limits = harness_providers::RateLimits::new();
    let c = config(
        "openai",
        &server.openai_base_url(),
        "    retry: {max_retries: 0, max_backoff: 60s}\n",
    );
    let model = OpenAiModel::with_rate_limits("m", &c, Some(KEY.into()), &limits).unwrap();
    let err = ask(&model, &start(), None).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(20)));
    // The next call waits for the provider's 20 s, until the caller stops it.
    let stop = tokio_util::sync::CancellationToken::new();
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stopper.cancel();
    });
    let started = Instant::now();
    let err = ask_stoppable(&model, &stop).await.unwrap_err();
    assert!(matches!(err, ModelError::Stopped(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        server.received().len(),
        1,
        "the stopped call never reached the provider"
    );
    assert!(limits.state()[0].waiting.is_empty());
}
