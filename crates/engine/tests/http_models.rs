//! Agents on an HTTP model (a local server speaking the OpenAI wire format) through
//! the library API: streamed turns become durable steps with what the model
//! returned, watchers see the pieces as they come, a cancel drops the call in
//! flight, a refusal fails the request, the context budget bounds what is sent.

use harness_core::*;
use harness_engine::{DeltaItem, Harness, WorkerOptions, run_until_settled};
use harness_fake_provider::{FakeProvider, Reply, openai};
use std::time::{Duration, Instant};

fn fast() -> WorkerOptions {
    WorkerOptions {
        poll: Duration::from_millis(20),
        ..Default::default()
    }
}

/// The demo workspace plus a model `local` on `server` and an agent `helper` using it.
fn workspace(server: &FakeProvider, agent_extra: &str) -> (tempfile::TempDir, Harness) {
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    let models = dir.path().join("config/models.yaml");
    let text = std::fs::read_to_string(&models).unwrap().replace(
        "models:\n",
        &format!(
            "models:\n  local:\n    provider: openai\n    model: test-model\n    base_url: {}\n    \
             retry: {{initial_backoff: 5ms}}\n",
            server.openai_base_url()
        ),
    );
    std::fs::write(models, text).unwrap();
    std::fs::write(
        dir.path().join("config/agents/helper.yaml"),
        format!(
            "name: helper\nmodel: local\nsystem_prompt: Be brief.\n\
             tools: [write_file, list_files]\n{agent_extra}"
        ),
    )
    .unwrap();
    let h = Harness::open(dir.path()).unwrap();
    (dir, h)
}

fn session() -> SessionId {
    SessionId::parse("s1").unwrap()
}

#[tokio::test]
async fn a_streamed_turn_runs_its_calls_and_records_what_the_model_returned() {
    let server = FakeProvider::spawn();
    let first = openai::Turn::new("test-model-v1")
        .text("Writing ")
        .text("it.")
        .call(
            0,
            "call_a",
            "write_file",
            &["{\"path\": \"n.md\", ", "\"content\": \"hi\"}"],
        )
        .call(1, "call_b", "list_files", &["{}"])
        .finish("tool_calls")
        .usage(100, 20);
    let raw_first: String = first.events().concat() + "data: [DONE]\n\n";
    server.push(Reply::raw_sse(raw_first.as_bytes(), 64));
    server.push(
        openai::Turn::new("test-model-v1")
            .text("Done.")
            .finish("stop")
            .usage(150, 3)
            .reply(),
    );
    let (dir, h) = workspace(&server, "");
    let mut deltas = h.subscribe_deltas(EventFilter {
        session_id: Some(session()),
        ..Default::default()
    });
    let req = h
        .request(Some(session()), "helper", "write a note")
        .await
        .unwrap();
    let r = run_until_settled(&h, &req.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::Completed, "{r:?}");
    assert_eq!(r.output.as_deref(), Some("Done."));
    assert_eq!(
        std::fs::read_to_string(
            dir.path()
                .join("work")
                .join(session().as_str())
                .join("n.md")
        )
        .unwrap(),
        "hi"
    );

    let steps = h.store().steps(&req.id).await.unwrap();
    assert_eq!(steps.len(), 4, "{steps:#?}");
    let StepBody::ModelTurn { turn, info } = &steps[0].body else {
        panic!("{:?}", steps[0].body)
    };
    let ModelTurn::ToolCalls { text, calls } = turn else {
        panic!("{turn:?}")
    };
    assert_eq!(text, "Writing it.");
    assert_eq!(calls.len(), 2);
    assert_eq!(info.provider, "openai");
    assert_eq!(info.model, "test-model-v1");
    assert_eq!(info.stop_reason, Some(StopReason::ToolUse));
    assert_eq!(info.usage.unwrap().input_tokens, 100);
    assert_eq!(info.provider_call_ids[&calls[0].call_id], "call_a");
    // The raw response is an artifact the turn refers to, byte for byte.
    let artifacts = h.store().artifacts(&req.id).await.unwrap();
    let raw = artifacts
        .iter()
        .find(|a| Some(&a.id) == info.raw_artifact.as_ref())
        .expect("the raw response is kept");
    assert_eq!(raw.name, "model-turn-0.sse");
    assert_eq!(raw.media_type, "text/event-stream");
    assert_eq!(
        String::from_utf8(h.store().read_artifact(raw).await.unwrap().unwrap()).unwrap(),
        raw_first
    );
    for (i, tool) in [(1, "write_file"), (2, "list_files")] {
        assert!(
            matches!(&steps[i].body, StepBody::ToolCall { call, outcome: Some(o), .. } if call.tool == tool && o.ok),
            "{:?}",
            steps[i]
        );
    }
    assert!(
        matches!(&steps[3].body, StepBody::ModelTurn { info, .. } if info.usage.unwrap().output_tokens == 3)
    );

    // The second call carried the provider's own ids for the calls and their results.
    let sent = server.received()[1].json();
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages[0]["content"], "Be brief.");
    assert_eq!(messages[2]["tool_calls"][0]["id"], "call_a");
    assert_eq!(messages[3]["tool_call_id"], "call_a");
    assert_eq!(messages[4]["tool_call_id"], "call_b");
    assert_eq!(sent["tools"].as_array().unwrap().len(), 2);

    // The model.turn event says what it cost and why it stopped.
    let events = h
        .store()
        .events_after(0, EventFilter::default(), 100)
        .await
        .unwrap();
    let turn_event = events
        .iter()
        .find(|e| e.kind == EventKind::ModelTurn)
        .unwrap();
    assert_eq!(turn_event.payload["usage"]["input_tokens"], 100);
    // The metrics count both turns' tokens under the model's configured name.
    let tokens = h.metrics().tokens();
    assert_eq!(tokens.keys().collect::<Vec<_>>(), ["local"]);
    assert_eq!(
        tokens["local"],
        harness_engine::TokenCount {
            input: 250,
            output: 23
        }
    );
    assert_eq!(turn_event.payload["stop_reason"], "tool_use");
    assert_eq!(turn_event.payload["raw_artifact"], raw.id.as_str());

    // Watchers saw both turns as they streamed, each piece tagged with its step.
    let mut seen = Vec::new();
    while let Some(DeltaItem::Delta(d)) = deltas.try_next() {
        assert_eq!(d.request_id, req.id);
        seen.push((d.step, d.delta.clone()));
    }
    let text_of = |step: u32| -> String {
        seen.iter()
            .filter(|(s, _)| *s == step)
            .filter_map(|(_, d)| match d {
                ModelDelta::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(text_of(0), "Writing it.");
    assert_eq!(text_of(3), "Done.");
    assert!(seen.iter().any(|(s, d)| *s == 0
        && matches!(d, ModelDelta::ToolCall { name: Some(n), .. } if n == "list_files")));
    let last_of_first = seen.iter().rposition(|(s, _)| *s == 0).unwrap();
    assert!(seen[last_of_first..].iter().skip(1).all(|(s, _)| *s == 3));
}

#[tokio::test]
async fn cancelling_mid_stream_drops_the_call_and_records_nothing() {
    let server = FakeProvider::spawn();
    let mut turn = openai::Turn::new("m");
    for i in 0..200 {
        turn = turn.text(&format!("{i} "));
    }
    server.push(turn.finish("stop").reply().paced(Duration::from_millis(25)));
    let (_dir, h) = workspace(&server, "");
    let mut deltas = h.subscribe_deltas(EventFilter::default());
    let req = h.request(Some(session()), "helper", "count").await.unwrap();
    let (h2, id) = (h.clone(), req.id.clone());
    let run = tokio::spawn(async move { run_until_settled(&h2, &id, fast()).await });
    // Once the stream is flowing, cancel the request.
    let first = tokio::time::timeout(Duration::from_secs(5), deltas.next())
        .await
        .expect("a delta")
        .unwrap();
    assert!(matches!(first, DeltaItem::Delta(_)));
    h.cancel(
        &req.id,
        &Actor::new(ActorKind::Cli, "alice"),
        Some("enough"),
    )
    .await
    .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the run ends promptly")
        .unwrap()
        .unwrap();
    assert_eq!(r.status, RequestStatus::Cancelled);
    assert!(
        h.store().steps(&req.id).await.unwrap().is_empty(),
        "no half turn"
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.abandoned() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.abandoned(), 1, "the HTTP call was aborted");
    assert_eq!(server.finished(), 0);
}

#[tokio::test]
async fn a_refused_call_fails_the_request_with_the_providers_message() {
    let server = FakeProvider::spawn();
    server.push(Reply::error(
        404,
        openai::error_body(
            "The model `test-model` does not exist",
            "invalid_request_error",
        ),
    ));
    let (_dir, h) = workspace(&server, "");
    let req = h.request(Some(session()), "helper", "hi").await.unwrap();
    let r = run_until_settled(&h, &req.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::Failed);
    let error = r.error.unwrap();
    assert!(error.contains("model `local`"), "{error}");
    assert!(error.contains("HTTP 404"), "{error}");
    assert!(
        error.contains("The model `test-model` does not exist"),
        "{error}"
    );
    assert_eq!(server.received().len(), 1, "a 404 is not retried");
}

#[tokio::test]
async fn the_context_budget_bounds_what_the_model_is_sent() {
    let server = FakeProvider::spawn();
    let long = "x".repeat(3000);
    server.push(openai::Turn::new("m").text(&long).finish("stop").reply());
    server.push(openai::Turn::new("m").text("short").finish("stop").reply());
    let (_dir, h) = workspace(&server, "context: {max_bytes: 2000}\n");
    for input in ["first question", "second question"] {
        let req = h.request(Some(session()), "helper", input).await.unwrap();
        let r = run_until_settled(&h, &req.id, fast()).await.unwrap();
        assert_eq!(r.status, RequestStatus::Completed);
    }
    let sent = server.received()[1].json();
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    let input = messages[1]["content"].as_str().unwrap();
    assert!(
        input.starts_with("[agent-harness: 2 earlier messages"),
        "{input}"
    );
    assert!(input.ends_with("second question"), "{input}");
    assert!(
        !sent.to_string().contains(&long),
        "the old answer was left out"
    );
}

/// The rate limit of model `local` now.
fn local_limit(h: &Harness) -> harness_engine::LimiterState {
    h.rate_limits()
        .into_iter()
        .find(|l| l.key == "local")
        .expect("the HTTP model's rate limit is listed")
}

/// Polls `f` every 5 ms until it gives something (at most 10 s).
async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_status(h: &Harness, id: &RequestId, status: RequestStatus) -> Request {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = h.get_request(id).await.unwrap();
        if r.status == status {
            return r;
        }
        assert!(Instant::now() < deadline, "{r:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn rate_limited(retry_after: &str) -> Reply {
    Reply::error(429, openai::error_body("Rate limit reached", "requests"))
        .header("retry-after", retry_after)
}

#[tokio::test]
async fn a_retry_after_holds_the_other_requests_calls_until_then() {
    let server = FakeProvider::spawn();
    server.push(rate_limited("1"));
    for _ in 0..2 {
        server.push(
            openai::Turn::new("test-model")
                .text("Done.")
                .finish("stop")
                .usage(10, 2)
                .reply(),
        );
    }
    let (_dir, h) = workspace(&server, "");
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    h.on_rate_limit_wait(move |e| seen.lock().unwrap().push(e.clone()));
    let worker = h.start_worker(fast()).await.unwrap();
    let first = h
        .request(Some(SessionId::parse("s1").unwrap()), "helper", "one")
        .await
        .unwrap();
    let blocked = eventually("the 429", || local_limit(&h).blocked_until).await;
    // A request admitted now: its call waits for the block instead of finding out.
    let second = h
        .request(Some(SessionId::parse("s2").unwrap()), "helper", "two")
        .await
        .unwrap();
    let waiting = eventually("the second call to wait", || {
        local_limit(&h)
            .waiting
            .into_iter()
            .find(|w| w.request_id.as_ref() == Some(&second.id))
    })
    .await;
    // Behind the call that got the 429 (itself held until then), or first in line.
    assert!(
        matches!(
            waiting.reason,
            harness_engine::WaitReason::Queue | harness_engine::WaitReason::RetryAfter
        ),
        "{waiting:?}"
    );
    assert_eq!(waiting.until, blocked);
    assert_eq!(waiting.model, "local");
    for id in [&first.id, &second.id] {
        let r = wait_status(&h, id, RequestStatus::Completed).await;
        assert_eq!(r.output.as_deref(), Some("Done."));
    }
    worker.stop().await.unwrap();

    let hits = server.received();
    assert_eq!(hits.len(), 3, "the 429, then one call per request");
    for later in &hits[1..] {
        let gap = later.at - hits[0].at;
        assert!(
            gap >= Duration::from_secs(1),
            "a call reached the provider {gap:?} after its Retry-After: 1"
        );
    }
    let state = local_limit(&h);
    assert_eq!((state.calls_in_window, state.tokens_in_window), (3, 24));
    assert!(state.waiting.is_empty());
    let events = events.lock().unwrap();
    let of_second: Vec<_> = events
        .iter()
        .filter(|e| e.request_id.as_ref() == Some(&second.id))
        .map(|e| &e.change)
        .collect();
    assert!(
        matches!(
            of_second[..],
            [
                harness_engine::WaitChange::Waiting { until, .. },
                harness_engine::WaitChange::Done { started: true, waited }
            ] if *until == blocked && *waited > Duration::from_millis(500)
        ),
        "{of_second:#?}"
    );
}

#[tokio::test]
async fn a_graceful_stop_parks_requests_still_waiting_to_call_their_model() {
    let server = FakeProvider::spawn();
    server.push(rate_limited("30"));
    let (_dir, h) = workspace(&server, "");
    let worker = h.start_worker(fast()).await.unwrap();
    let first = h
        .request(Some(SessionId::parse("s1").unwrap()), "helper", "one")
        .await
        .unwrap();
    eventually("the 429", || local_limit(&h).blocked_until).await;
    let second = h
        .request(Some(SessionId::parse("s2").unwrap()), "helper", "two")
        .await
        .unwrap();
    let waiting = eventually("both calls to wait", || {
        let waiting = local_limit(&h).waiting;
        (waiting.len() == 2).then_some(waiting)
    })
    .await;
    assert_eq!(
        waiting
            .iter()
            .map(|w| w.request_id.clone())
            .collect::<Vec<_>>(),
        [Some(first.id.clone()), Some(second.id.clone())],
        "the call that got the 429 waits first in line"
    );
    // Both wait 30 s for the provider's Retry-After: neither is a call in flight, so
    // the stop does not wait for them (stop_timeout is 30 s).
    let started = Instant::now();
    worker.stop().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for id in [&first.id, &second.id] {
        let r = h.get_request(id).await.unwrap();
        assert_eq!(r.status, RequestStatus::Queued, "{r:?}");
        assert!(h.store().steps(id).await.unwrap().is_empty());
    }
    assert_eq!(server.received().len(), 1);
    assert!(local_limit(&h).waiting.is_empty());
}

#[tokio::test]
async fn every_model_call_sends_the_requests_trace_in_a_traceparent_header() {
    let server = FakeProvider::spawn();
    // A failed attempt and its retry: both belong to the trace, each its own span.
    server.push(Reply::error(
        500,
        openai::error_body("try again", "server_error"),
    ));
    server.push(
        openai::Turn::new("test-model")
            .text("done")
            .finish("stop")
            .reply(),
    );
    let (_dir, h) = workspace(&server, "");
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let admitted = h
        .admit(harness_engine::Admit {
            session: Some(session()),
            agent: "helper".into(),
            input: "hi".into(),
            traceparent: Some(format!("00-{trace}-b7ad6b7169203331-01")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(admitted.request.trace_id, trace);
    let r = run_until_settled(&h, &admitted.request.id, fast())
        .await
        .unwrap();
    assert_eq!(r.status, RequestStatus::Completed, "{:?}", r.error);
    let hits = server.received();
    assert_eq!(hits.len(), 2, "the 500, then the retry");
    let mut spans = std::collections::BTreeSet::new();
    for hit in &hits {
        let header = hit.header("traceparent").expect("a traceparent header");
        let parts: Vec<&str> = header.split('-').collect();
        assert_eq!(parts.len(), 4, "{header}");
        assert_eq!(
            (parts[0], parts[1], parts[3]),
            ("00", trace, "01"),
            "{header}"
        );
        assert_eq!(parts[2].len(), 16, "{header}");
        assert_ne!(parts[2], "b7ad6b7169203331", "a span of its own: {header}");
        spans.insert(parts[2].to_string());
    }
    assert_eq!(spans.len(), 2, "one span per attempt: {spans:?}");

    // Without a traceparent the request gets a random trace id, which its call carries.
    server.push(
        openai::Turn::new("test-model")
            .text("done")
            .finish("stop")
            .reply(),
    );
    let req = h.request(Some(session()), "helper", "again").await.unwrap();
    assert!(
        req.trace_id.len() == 32 && req.trace_id != trace,
        "{}",
        req.trace_id
    );
    run_until_settled(&h, &req.id, fast()).await.unwrap();
    let hits = server.received();
    let header = hits.last().unwrap().header("traceparent").unwrap();
    assert_eq!(
        header.split('-').nth(1),
        Some(req.trace_id.as_str()),
        "{header}"
    );
}
