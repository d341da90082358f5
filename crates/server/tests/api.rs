//! The HTTP API in process (tower's `oneshot` against the router): every route ×
//! role, the error bodies and statuses, admission, approvals, the event stream and
//! `/metrics`.

use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode, header};
use harness_core::*;
use harness_engine::{Harness, WorkerOptions, run_until_settled};
use harness_server::{Role, Tokens, router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::time::Duration;
use tower::ServiceExt;

const VIEWER: &str = "tok-viewer";
const OPERATOR: &str = "tok-operator";
const ADMIN: &str = "tok-admin";

struct Api {
    _dir: tempfile::TempDir,
    h: Harness,
    app: axum::Router,
    _stop: tokio::sync::watch::Sender<bool>,
}

fn api_with(queue_capacity: Option<usize>, tokens: Tokens) -> Api {
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    if let Some(c) = queue_capacity {
        let p = dir.path().join("config/workspace.yaml");
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text.replace("queue_capacity: 1000", &format!("queue_capacity: {c}"));
        std::fs::write(&p, text).unwrap();
    }
    let h = Harness::open(dir.path()).unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let app = router(h.clone(), tokens, rx);
    Api {
        _dir: dir,
        h,
        app,
        _stop: stop,
    }
}

fn tokens() -> Tokens {
    Tokens::open()
        .with_token("vera", Role::Viewer, VIEWER)
        .with_token("otto", Role::Operator, OPERATOR)
        .with_token("ada", Role::Admin, ADMIN)
}

fn api() -> Api {
    api_with(None, tokens())
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Api {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let body = body.map(|b| b.to_string());
        self.raw(method, uri, token, body.map(String::into_bytes))
            .await
    }

    async fn raw(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut b = HttpRequest::builder().method(method).uri(uri);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(bytes) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(bytes))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Admits under an `Idempotency-Key` header.
    async fn admit_keyed(&self, session: &str, key: &str, input: &str) -> Answer {
        let req = HttpRequest::builder()
            .method("POST")
            .uri(format!("/v1/sessions/{session}/requests"))
            .header(header::AUTHORIZATION, format!("Bearer {OPERATOR}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", key)
            .body(Body::from(
                json!({"agent": "assistant", "input": input}).to_string(),
            ))
            .unwrap();
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap(),
        }
    }

    async fn admit(&self, session: &str, input: &str) -> Request {
        let a = self
            .call(
                "POST",
                &format!("/v1/sessions/{session}/requests"),
                Some(OPERATOR),
                Some(json!({"agent": "assistant", "input": input})),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        serde_json::from_value(a.body).unwrap()
    }
}

fn fast() -> WorkerOptions {
    WorkerOptions {
        poll: Duration::from_millis(20),
        ..Default::default()
    }
}

/// An error answer: its status, stable code, and a message holding `mentions`.
fn assert_error(a: &Answer, status: StatusCode, code: &str, mentions: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.body["code"], code, "{}", a.body);
    let msg = a.body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(mentions),
        "{msg:?} should mention {mentions:?}"
    );
}

/// A 401 names the scheme to authenticate with (RFC 6750), as every 401 must.
fn assert_challenge(a: &Answer, method: &str, uri: &str) {
    assert_eq!(
        a.headers
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap()),
        Some(r#"Bearer realm="agent-harness""#),
        "{method} {uri}"
    );
}

#[tokio::test]
async fn every_route_checks_the_token_and_the_role() {
    let api = api();
    let req = api.admit("s-1", "ship the notes").await;
    let routes: Vec<(&str, String, Role, Option<Value>)> = vec![
        ("GET", "/v1/health".into(), Role::Viewer, None),
        ("GET", "/v1/overview".into(), Role::Viewer, None),
        ("GET", "/v1/sessions".into(), Role::Viewer, None),
        ("GET", "/v1/requests".into(), Role::Viewer, None),
        (
            "GET",
            format!("/v1/requests/{}", req.id),
            Role::Viewer,
            None,
        ),
        (
            "GET",
            format!("/v1/requests/{}/tree", req.id),
            Role::Viewer,
            None,
        ),
        ("GET", "/v1/approvals".into(), Role::Viewer, None),
        ("GET", "/metrics".into(), Role::Viewer, None),
        (
            "POST",
            "/v1/sessions/s-2/requests".into(),
            Role::Operator,
            Some(json!({"agent": "assistant", "input": "x"})),
        ),
        (
            "POST",
            "/v1/approvals/apr_01jz0000000000000000000000/resolve".into(),
            Role::Operator,
            Some(json!({"decision": "approve"})),
        ),
        (
            "POST",
            "/v1/requests/req_01jz0000000000000000000000/cancel".into(),
            Role::Operator,
            None,
        ),
        (
            "POST",
            "/v1/requests/req_01jz0000000000000000000000/retry".into(),
            Role::Operator,
            None,
        ),
    ];
    let more: Vec<(&str, String, Role, Option<Value>)> = vec![
        (
            "GET",
            format!("/v1/requests/{}/artifacts", req.id),
            Role::Viewer,
            None,
        ),
        (
            "GET",
            "/v1/artifacts/art_01jz0000000000000000000000".into(),
            Role::Viewer,
            None,
        ),
        (
            "GET",
            format!("/v1/requests/{}/export", req.id),
            Role::Operator,
            None,
        ),
        (
            "POST",
            format!("/v1/requests/{}/resume", req.id),
            Role::Operator,
            None,
        ),
        // MCP: every role may connect; which tools it may call is MCP's business
        // (`cli/tests/mcp_http.rs`).
        (
            "POST",
            "/mcp".into(),
            Role::Viewer,
            Some(
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "test", "version": "0"}}}),
            ),
        ),
    ];
    for (method, uri, needs, body) in routes.into_iter().chain(more) {
        let a = api.call(method, &uri, None, body.clone()).await;
        assert_error(&a, StatusCode::UNAUTHORIZED, "unauthorized", "Bearer");
        assert_challenge(&a, method, &uri);
        let a = api.call(method, &uri, Some("nope"), body.clone()).await;
        assert_error(
            &a,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "not one this server knows",
        );
        assert_challenge(&a, method, &uri);
        for (token, role) in [
            (VIEWER, Role::Viewer),
            (OPERATOR, Role::Operator),
            (ADMIN, Role::Admin),
        ] {
            let a = api.call(method, &uri, Some(token), body.clone()).await;
            if role < needs {
                assert_error(&a, StatusCode::FORBIDDEN, "forbidden", needs.as_str());
            } else {
                assert!(
                    a.status != StatusCode::UNAUTHORIZED && a.status != StatusCode::FORBIDDEN,
                    "{method} {uri} as {role:?}: {} {}",
                    a.status,
                    a.body
                );
            }
        }
    }
    // The event stream is a viewer's too (its body never ends: only the status is read).
    let res = api
        .app
        .clone()
        .oneshot(HttpRequest::get("/v1/events").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = api
        .app
        .clone()
        .oneshot(
            HttpRequest::get("/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {VIEWER}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
}

#[tokio::test]
async fn without_tokens_the_api_is_open() {
    let api = api_with(None, Tokens::open());
    let a = api.call("GET", "/v1/requests", None, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = api
        .call(
            "POST",
            "/v1/sessions/s-1/requests",
            None,
            Some(json!({"agent": "assistant", "input": "hi"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
}

/// A known route called with a method it does not take answers 405 with `Allow`,
/// an unknown route 404, both with the API's JSON error body.
#[tokio::test]
async fn a_wrong_method_or_an_unknown_route_answers_a_json_error() {
    let api = api_with(None, Tokens::open());
    let a = api.call("DELETE", "/v1/requests", None, None).await;
    assert_error(
        &a,
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_input",
        "/v1/requests does not take DELETE",
    );
    let allow = a
        .headers
        .get(header::ALLOW)
        .map(|v| v.to_str().unwrap().to_string());
    assert!(
        allow.as_deref().is_some_and(|v| v.contains("GET")),
        "{allow:?}"
    );
    let a = api.call("GET", "/v1/approvals/x/resolve", None, None).await;
    assert_error(
        &a,
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_input",
        "does not take GET",
    );
    let a = api.call("GET", "/v1/nothing-here", None, None).await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found", "no such route");
}

#[tokio::test]
async fn admission_and_reads_answer_records_and_clear_errors() {
    let api = api();
    let req = api.admit("support-42", "ship the notes").await;
    assert_eq!(req.status, RequestStatus::Queued);
    assert_eq!(req.session_id.as_str(), "support-42");

    let a = api
        .call(
            "GET",
            &format!("/v1/requests/{}", req.id),
            Some(VIEWER),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["id"], req.id.as_str());

    // Filters narrow the list.
    let a = api
        .call(
            "GET",
            "/v1/requests?status=queued&agent=assistant&session=support-42",
            Some(VIEWER),
            None,
        )
        .await;
    assert_eq!(a.body.as_array().unwrap().len(), 1, "{}", a.body);
    let a = api
        .call("GET", "/v1/requests?status=completed", Some(VIEWER), None)
        .await;
    assert_eq!(a.body.as_array().unwrap().len(), 0, "{}", a.body);
    let a = api
        .call(
            "GET",
            &format!("/v1/requests?trace_id={}", req.trace_id),
            Some(VIEWER),
            None,
        )
        .await;
    assert_eq!(a.body.as_array().unwrap().len(), 1, "{}", a.body);
    let a = api
        .call(
            "GET",
            "/v1/requests?since=2999-01-01T00:00:00Z",
            Some(VIEWER),
            None,
        )
        .await;
    assert_eq!(a.body.as_array().unwrap().len(), 0, "{}", a.body);
    let a = api.call("GET", "/v1/sessions", Some(VIEWER), None).await;
    assert_eq!(a.body[0]["id"], "support-42", "{}", a.body);

    // Errors: stable code, a message that names what is wrong.
    let unknown = "req_01jz0000000000000000000000";
    let a = api
        .call(
            "GET",
            &format!("/v1/requests/{unknown}"),
            Some(VIEWER),
            None,
        )
        .await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found", unknown);
    let a = api
        .call("GET", "/v1/requests/not-an-id", Some(VIEWER), None)
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_input", "not-an-id");
    let a = api
        .call("GET", "/v1/requests?status=sleeping", Some(VIEWER), None)
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_input", "sleeping");
    let a = api
        .call("GET", "/v1/requests?since=yesterday", Some(VIEWER), None)
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_input", "yesterday");
    let a = api
        .call("GET", "/v1/requests?colour=red", Some(VIEWER), None)
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_input", "colour");
    let a = api
        .call(
            "POST",
            "/v1/sessions/s-1/requests",
            Some(OPERATOR),
            Some(json!({"agent": "nobody", "input": "x"})),
        )
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_input", "nobody");
    let a = api
        .call(
            "POST",
            "/v1/sessions/bad session/requests"
                .replace(' ', "%20")
                .as_str(),
            Some(OPERATOR),
            Some(json!({"agent": "assistant", "input": "x"})),
        )
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_input", "bad session");
    let a = api
        .raw(
            "POST",
            "/v1/sessions/s-1/requests",
            Some(OPERATOR),
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_eq!(a.body["code"], "invalid_input", "{}", a.body);
    assert!(a.status.is_client_error());
    // Over the body limit: 413, and nothing admitted.
    let big = json!({"agent": "assistant", "input": "x".repeat(2 * 1024 * 1024)});
    let a = api
        .call(
            "POST",
            "/v1/sessions/s-big/requests",
            Some(OPERATOR),
            Some(big),
        )
        .await;
    assert_error(&a, StatusCode::PAYLOAD_TOO_LARGE, "invalid_input", "");
    let a = api
        .call("GET", "/v1/requests?session=s-big", Some(VIEWER), None)
        .await;
    assert_eq!(a.body.as_array().unwrap().len(), 0);
    let a = api
        .call("GET", "/v1/nothing-here", Some(VIEWER), None)
        .await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found", "route");

    // Cancel: the request, then a second cancel is a conflict.
    let a = api
        .call(
            "POST",
            &format!("/v1/requests/{}/cancel", req.id),
            Some(OPERATOR),
            Some(json!({"reason": "not needed"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["status"], "cancelled");
    let a = api
        .call(
            "POST",
            &format!("/v1/requests/{}/cancel", req.id),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_error(&a, StatusCode::CONFLICT, "conflict", "cancelled");

    // Retry: a new request linked to the cancelled one, listed by `retry_of`.
    let a = api
        .call(
            "POST",
            &format!("/v1/requests/{}/retry", req.id),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["retry_of"], req.id.as_str());
    // A retry is a new request: a new (random) trace.
    let retry_trace = a.body["trace_id"].as_str().unwrap();
    assert!(
        retry_trace.len() == 32 && retry_trace != req.trace_id,
        "{retry_trace}"
    );
    let retry = a.body["id"].as_str().unwrap().to_string();
    let a = api
        .call(
            "GET",
            &format!("/v1/requests?retry_of={}", req.id),
            Some(VIEWER),
            None,
        )
        .await;
    let ids: Vec<&str> = a
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![retry.as_str()]);
    // The retry is queued, not finished: retrying it is a conflict.
    let a = api
        .call(
            "POST",
            &format!("/v1/requests/{retry}/retry"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_error(&a, StatusCode::CONFLICT, "conflict", "queued");
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let api = api_with(Some(1), tokens());
    api.admit("s-1", "first").await;
    let a = api
        .call(
            "POST",
            "/v1/sessions/s-2/requests",
            Some(OPERATOR),
            Some(json!({"agent": "assistant", "input": "second"})),
        )
        .await;
    assert_error(
        &a,
        StatusCode::TOO_MANY_REQUESTS,
        "queue_full",
        "queue full",
    );
    let after: u64 = a.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(after >= 1);
}

#[tokio::test]
async fn an_operator_resolves_an_approval_and_is_recorded_as_who_decided() {
    let api = api();
    let req = api.admit("s-1", "ship the release notes").await;
    let r = run_until_settled(&api.h, &req.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::WaitingApproval);

    let a = api
        .call("GET", "/v1/approvals?status=pending", Some(VIEWER), None)
        .await;
    let pending = a.body.as_array().unwrap();
    assert_eq!(pending.len(), 1, "{}", a.body);
    let id = pending[0]["id"].as_str().unwrap().to_string();
    let uri = format!("/v1/approvals/{id}/resolve");

    let a = api
        .call(
            "POST",
            &uri,
            Some(OPERATOR),
            Some(json!({"decision": "reject", "arguments": {}})),
        )
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_input", "arguments");
    let a = api
        .call(
            "POST",
            &uri,
            Some(OPERATOR),
            Some(json!({"decision": "maybe"})),
        )
        .await;
    assert_eq!(a.body["code"], "invalid_input", "{}", a.body);
    // Edited arguments are checked against the tool's schema.
    let a = api
        .call(
            "POST",
            &uri,
            Some(OPERATOR),
            Some(json!({"decision": "approve", "arguments": {"to": 5}})),
        )
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_input", "send_mail");

    let a = api
        .call(
            "POST",
            &uri,
            Some(OPERATOR),
            Some(json!({"decision": "approve", "message": "go"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["status"], "approved");
    assert_eq!(a.body["decided_by"], "otto");
    // Typed: the name is a token's, not free text a caller could forge.
    assert_eq!(a.body["decided_by_kind"], "token");

    let a = api
        .call(
            "POST",
            &uri,
            Some(ADMIN),
            Some(json!({"decision": "reject"})),
        )
        .await;
    assert_error(&a, StatusCode::CONFLICT, "conflict", "otto");
    let unknown = "apr_01jz0000000000000000000000";
    let a = api
        .call(
            "POST",
            &format!("/v1/approvals/{unknown}/resolve"),
            Some(OPERATOR),
            Some(json!({"decision": "approve"})),
        )
        .await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found", unknown);

    let r = run_until_settled(&api.h, &req.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::Completed);
}

/// Reads SSE frames until `n` events arrived; returns their (id, event, data).
async fn sse_events(
    api: &Api,
    uri: &str,
    last_event_id: Option<i64>,
    n: usize,
) -> Vec<(i64, String, Value)> {
    let mut b = HttpRequest::get(uri).header(header::AUTHORIZATION, format!("Bearer {VIEWER}"));
    if let Some(l) = last_event_id {
        b = b.header("last-event-id", l.to_string());
    }
    let res = api
        .app
        .clone()
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let mut text = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let (mut id, mut ev, mut data) = (None, String::new(), Value::Null);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.parse().unwrap());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    ev = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).unwrap();
                }
            }
            if let Some(id) = id {
                out.push((id, ev, data));
            }
        }
    }
    out.truncate(n);
    out
}

#[tokio::test]
async fn events_stream_with_seq_ids_and_resume_after_last_event_id() {
    let api = api();
    let req = api.admit("s-1", "ship the release notes").await;
    run_until_settled(&api.h, &req.id, fast()).await.unwrap();
    let all = api
        .h
        .store()
        .events_after(0, EventFilter::default(), 10_000)
        .await
        .unwrap();
    assert!(all.len() >= 4, "{}", all.len());

    let got = sse_events(&api, "/v1/events?from=0", None, all.len()).await;
    let ids: Vec<i64> = got.iter().map(|g| g.0).collect();
    let want: Vec<i64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(ids, want);
    assert_eq!(got[0].1, all[0].kind.as_str());
    assert_eq!(got[0].2["seq"], all[0].seq);

    // Resuming: Last-Event-ID wins over ?from, and continues right after it.
    let mid = all[1].seq;
    let got = sse_events(&api, "/v1/events?from=0", Some(mid), all.len() - 2).await;
    let ids: Vec<i64> = got.iter().map(|g| g.0).collect();
    assert_eq!(ids, want[2..].to_vec());

    // A new commit reaches a follower already at the end.
    let follow = {
        let last = *want.last().unwrap();
        let api_app = api.app.clone();
        let h = api.h.clone();
        tokio::spawn(async move {
            let api = Api {
                _dir: tempfile::tempdir().unwrap(),
                h,
                app: api_app,
                _stop: tokio::sync::watch::channel(false).0,
            };
            sse_events(
                &api,
                &format!("/v1/events?session=s-2&from={last}"),
                None,
                1,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r2 = api.admit("s-2", "again").await;
    let got = follow.await.unwrap();
    assert_eq!(got[0].1, "request.queued");
    assert_eq!(got[0].2["request_id"], r2.id.as_str());

    let a = api
        .call("GET", "/v1/events?from=-1", Some(VIEWER), None)
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_input", "from");
}

/// `?tree=` follows a root and what it delegated, `?request=` one request's own,
/// `?session=` a session's; a reconnect with `Last-Event-ID` to a server started
/// since continues right after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_a_tree_a_request_or_a_session_and_resume_across_a_restart() {
    let api = api();
    let one = decided_demo(&api, "s-1", "approve").await;
    let two = decided_demo(&api, "s-2", "approve").await;
    let all = api
        .h
        .store()
        .events_after(0, EventFilter::default(), 0)
        .await
        .unwrap();
    let tree: Vec<RequestId> = api.h.store().subtree_ids(&one.id).await.unwrap();
    assert_eq!(tree.len(), 2, "the demo delegates once: {tree:?}");
    let seqs = |keep: &dyn Fn(&Event) -> bool| -> Vec<i64> {
        all.iter().filter(|e| keep(e)).map(|e| e.seq).collect()
    };
    let of_tree = seqs(&|e| e.request_id.as_ref().is_some_and(|r| tree.contains(r)));
    let of_root = seqs(&|e| e.request_id.as_ref() == Some(&one.id));
    let of_s2 = seqs(&|e| e.session_id.as_ref().is_some_and(|s| s.as_str() == "s-2"));
    assert!(of_tree.len() > of_root.len());
    assert!(!of_s2.is_empty());
    for (uri, want) in [
        (format!("/v1/events?tree={}", one.id), &of_tree),
        (format!("/v1/events?request={}", one.id), &of_root),
        ("/v1/events?session=s-2".to_string(), &of_s2),
        (format!("/v1/events?tree={}&session=s-2", two.id), &of_s2),
    ] {
        // Everything is committed: an extra event would show among the first ones.
        let got = sse_events(&api, &uri, None, want.len()).await;
        let ids: Vec<i64> = got.iter().map(|g| g.0).collect();
        assert_eq!(&ids, want, "{uri}");
    }
    let a = api
        .call(
            "GET",
            "/v1/events?tree=req_01jz0000000000000000000000",
            Some(VIEWER),
            None,
        )
        .await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found", "req_01jz");

    // A follower of the tree at its end gets a later commit of the tree only.
    let last = *all.last().map(|e| &e.seq).unwrap();
    let note = {
        let h = api.h.clone();
        let root = one.id.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            h.add_note(Note {
                request_id: root,
                approval_id: None,
                by: "tester".into(),
                text: "after the fact".into(),
            })
            .await
            .unwrap();
        }
    };
    let uri = format!("/v1/events?tree={}&from={last}", one.id);
    let (got, ()) = tokio::join!(sse_events(&api, &uri, None, 1), note);
    assert_eq!(got[0].1, "note.added");
    assert_eq!(got[0].2["request_id"], one.id.as_str());

    // Restart: a new harness and router over the same workspace.
    let Api {
        _dir: dir,
        h,
        app,
        _stop,
    } = api;
    drop((h, app, _stop));
    let h = Harness::open(dir.path()).unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let api = Api {
        app: router(h.clone(), tokens(), rx),
        h,
        _dir: dir,
        _stop: stop,
    };
    let mid = of_tree[of_tree.len() / 2];
    let rest: Vec<i64> = of_tree
        .iter()
        .copied()
        .filter(|s| *s > mid)
        .chain([got[0].0])
        .collect();
    let got = sse_events(
        &api,
        &format!("/v1/events?tree={}", one.id),
        Some(mid),
        rest.len(),
    )
    .await;
    let ids: Vec<i64> = got.iter().map(|g| g.0).collect();
    assert_eq!(ids, rest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_admits_once_per_session() {
    let api = api();
    let first = api.admit_keyed("s-1", "order-17", "ship the notes").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = api.admit_keyed("s-1", "order-17", "ship the notes").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body["id"], first.body["id"]);

    let other = api.admit_keyed("s-1", "order-17", "ship other notes").await;
    assert_error(&other, StatusCode::CONFLICT, "conflict", "order-17");
    let id = first.body["id"].as_str().unwrap();
    assert!(other.body["message"].as_str().unwrap().contains(id));

    let elsewhere = api.admit_keyed("s-2", "order-17", "ship the notes").await;
    assert_eq!(elsewhere.status, StatusCode::CREATED);
    assert_ne!(elsewhere.body["id"], first.body["id"]);

    let empty = api.admit_keyed("s-1", "", "ship the notes").await;
    assert_error(
        &empty,
        StatusCode::BAD_REQUEST,
        "invalid_input",
        "idempotency key",
    );
    let long = api
        .admit_keyed("s-1", &"k".repeat(256), "ship the notes")
        .await;
    assert_error(&long, StatusCode::BAD_REQUEST, "invalid_input", "1 to 255");

    // Concurrent retries of one admission: one request, every answer names it.
    let mut tasks = Vec::new();
    let api = std::sync::Arc::new(api);
    for _ in 0..16 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            api.admit_keyed("s-3", "pay-9", "pay invoice 9").await
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for t in tasks {
        let a = t.await.unwrap();
        assert!(
            matches!(a.status, StatusCode::OK | StatusCode::CREATED),
            "{}",
            a.body
        );
        created += usize::from(a.status == StatusCode::CREATED);
        ids.insert(a.body["id"].as_str().unwrap().to_string());
    }
    assert_eq!((ids.len(), created), (1, 1));
    let listed = api
        .call("GET", "/v1/requests?session=s-3", Some(VIEWER), None)
        .await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1, "{}", listed.body);
}

/// `/metrics` as `(name{labels}, value)`, failing on any line that is neither a
/// comment nor `name{labels} value`.
async fn scrape(api: &Api) -> std::collections::BTreeMap<String, f64> {
    let res = api
        .app
        .clone()
        .oneshot(
            HttpRequest::get("/metrics")
                .header(header::AUTHORIZATION, format!("Bearer {VIEWER}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers()[header::CONTENT_TYPE].to_str().unwrap();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        assert!(is_series(series), "not `name{{labels}}`: {line:?}");
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?} is not a number"));
        assert!(
            out.insert(series.to_string(), v).is_none(),
            "twice: {series}"
        );
    }
    out
}

/// A series name with optional `{k="v",…}` labels (values without commas inside).
fn is_series(s: &str) -> bool {
    let ident = |x: &str| {
        !x.is_empty()
            && !x.starts_with(|c: char| c.is_ascii_digit())
            && x.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let Some((name, rest)) = s.split_once('{') else {
        return ident(s);
    };
    let Some(labels) = rest.strip_suffix('}') else {
        return false;
    };
    ident(name)
        && labels.split(',').all(|kv| {
            kv.split_once('=').is_some_and(|(k, v)| {
                ident(k) && v.len() >= 2 && v.starts_with('"') && v.ends_with('"')
            })
        })
}

/// A histogram's buckets (by `le`, ascending, +Inf last), its count and sum.
fn histogram(
    m: &std::collections::BTreeMap<String, f64>,
    name: &str,
    label: &str,
) -> (Vec<(f64, f64)>, f64, f64) {
    let prefix = format!("{name}_bucket{{{label},le=\"");
    let mut buckets: Vec<(f64, f64)> = m
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            Some((le, *v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let count = m[&format!("{name}_count{{{label}}}")];
    let sum = m[&format!("{name}_sum{{{label}}}")];
    (buckets, count, sum)
}

#[tokio::test]
async fn metrics_expose_the_queue_admissions_steps_approvals_and_streams() {
    let api = api();
    let res = api
        .app
        .clone()
        .oneshot(HttpRequest::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // A request a dead worker left running: the next worker's recovery re-queues it.
    let req = api.admit("s-1", "ship the release notes").await;
    let claimed = api
        .h
        .store()
        .claim(&WorkerId::generate(), 1, api.h.now())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let r = run_until_settled(&api.h, &req.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::WaitingApproval);
    let a = api
        .call("GET", "/v1/approvals?status=pending", Some(VIEWER), None)
        .await;
    let id = a.body[0]["id"].as_str().unwrap().to_string();
    let m = scrape(&api).await;
    assert_eq!(m["agent_harness_approvals_pending"], 1.0);
    assert_eq!(m["agent_harness_requests_waiting_approval"], 1.0);
    assert!(m["agent_harness_approval_oldest_pending_age_seconds"] >= 0.0);
    let a = api
        .call(
            "POST",
            &format!("/v1/approvals/{id}/resolve"),
            Some(OPERATOR),
            Some(json!({"decision": "approve"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let r = run_until_settled(&api.h, &req.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::Completed);

    // Another run whose approval is rejected: the call never runs.
    let r = decided_demo(&api, "s-4", "reject").await;
    assert!(r.status.is_terminal(), "{r:?}");
    let rejected = api
        .h
        .list_approvals(ApprovalFilter {
            request_id: Some(r.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap()[0]
        .id
        .to_string();

    // One refused admission, and one admitted request left on the queue.
    let a = api
        .call(
            "POST",
            "/v1/sessions/s-2/requests",
            Some(OPERATOR),
            Some(json!({"agent": "nobody", "input": "x"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    api.admit("s-3", "later").await;

    let m = scrape(&api).await;
    let stats = api.h.store().stats(api.h.now(), api.h.now()).await.unwrap();
    assert_eq!(stats.queued, 1);
    assert_eq!(m["agent_harness_queue_depth"], stats.queued as f64);
    assert_eq!(m["agent_harness_queue_capacity"], 1000.0);
    assert_eq!(m["agent_harness_requests_running"], 0.0);
    assert_eq!(m["agent_harness_approvals_pending"], 0.0);
    assert_eq!(m["agent_harness_approval_oldest_pending_age_seconds"], 0.0);
    assert_eq!(m["agent_harness_requests_admitted_total"], 3.0);
    assert_eq!(
        m["agent_harness_admissions_rejected_total{code=\"invalid_input\"}"],
        1.0
    );
    assert_eq!(
        m["agent_harness_admissions_rejected_total{code=\"queue_full\"}"],
        0.0
    );
    assert_eq!(m["agent_harness_recoveries_total"], 1.0);
    // Each tree was claimed twice: to run, and again after its approval was decided.
    assert_eq!(m["agent_harness_claimed_total"], 4.0);
    assert!(m["agent_harness_claims_total"] >= 4.0);

    // Every step of both trees (roots and the children they delegated to) was
    // observed once, model turns and tool calls apart; the rejected call, which
    // never ran, was not.
    let all = api
        .h
        .list_requests(RequestFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(all.len() > 3, "the demo delegates");
    let mut steps = vec![];
    for r in all.iter().filter(|r| r.status.is_terminal()) {
        steps.extend(api.h.store().steps(&r.id).await.unwrap());
    }
    let turns = steps
        .iter()
        .filter(|s| matches!(s.body, StepBody::ModelTurn { .. }))
        .count();
    let rejected_calls = steps
        .iter()
        .filter(|s| matches!(&s.body, StepBody::ToolCall { approval_id: Some(a), .. } if a.as_str() == rejected))
        .count();
    assert_eq!(rejected_calls, 1);
    for (label, want) in [
        ("kind=\"model_turn\"", turns),
        ("kind=\"tool_call\"", steps.len() - turns - rejected_calls),
    ] {
        let (buckets, count, sum) = histogram(&m, "agent_harness_step_latency_seconds", label);
        assert!(want > 0);
        assert_eq!(count, want as f64, "{label}");
        assert!(sum >= 0.0);
        assert!(buckets.len() > 2);
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
        assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count));
    }
    let (buckets, count, _) = histogram(
        &m,
        "agent_harness_approval_wait_seconds",
        "decision=\"approved\"",
    );
    assert_eq!(count, 1.0);
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    let (_, count, _) = histogram(
        &m,
        "agent_harness_approval_wait_seconds",
        "decision=\"rejected\"",
    );
    assert_eq!(count, 1.0);
    // The scripted model reports no usage: no token is counted (and none invented).
    assert!(
        m.iter()
            .filter(|(k, _)| k.starts_with("agent_harness_model_tokens_total"))
            .all(|(_, v)| *v == 0.0),
        "{m:?}"
    );

    // An open event stream counts while it is open.
    assert_eq!(m["agent_harness_sse_subscribers"], 0.0);
    let res = api
        .app
        .clone()
        .oneshot(
            HttpRequest::get("/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {VIEWER}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(scrape(&api).await["agent_harness_sse_subscribers"], 1.0);
    drop(res);
    assert_eq!(scrape(&api).await["agent_harness_sse_subscribers"], 0.0);
}

/// A GET with extra headers; the answer's status, headers and raw body.
async fn get_raw(
    api: &Api,
    uri: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut b = HttpRequest::get(uri).header(header::AUTHORIZATION, format!("Bearer {token}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let res = api
        .app
        .clone()
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, headers, bytes)
}

/// The demo's request run to completion: it wrote the artifact `summary.md`.
async fn completed_demo(api: &Api) -> Request {
    let r = decided_demo(api, "s-ev", "approve").await;
    assert_eq!(r.status, RequestStatus::Completed);
    r
}

/// The demo's request in `session`, run until it pauses, its approval resolved with
/// `decision`, then run until it settles.
async fn decided_demo(api: &Api, session: &str, decision: &str) -> Request {
    let req = api.admit(session, "ship the release notes").await;
    let r = run_until_settled(&api.h, &req.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::WaitingApproval);
    let a = api
        .call("GET", "/v1/approvals?status=pending", Some(VIEWER), None)
        .await;
    let id = a.body[0]["id"].as_str().unwrap().to_string();
    let a = api
        .call(
            "POST",
            &format!("/v1/approvals/{id}/resolve"),
            Some(OPERATOR),
            Some(json!({ "decision": decision })),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    run_until_settled(&api.h, &req.id, fast()).await.unwrap()
}

#[tokio::test]
async fn artifacts_list_and_download_with_type_length_name_etag_and_304() {
    let api = api();
    let req = completed_demo(&api).await;

    let a = api
        .call(
            "GET",
            &format!("/v1/requests/{}/artifacts", req.id),
            Some(VIEWER),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let listed: Vec<Artifact> = serde_json::from_value(a.body.clone()).unwrap();
    assert_eq!(listed, api.h.store().artifacts(&req.id).await.unwrap());
    let summary = listed
        .iter()
        .find(|x| x.name == "summary.md")
        .unwrap_or_else(|| panic!("no summary.md in {}", a.body));
    let stored = api.h.store().read_artifact(summary).await.unwrap().unwrap();
    assert!(!stored.is_empty());

    let uri = format!("/v1/artifacts/{}", summary.id);
    let (status, headers, body) = get_raw(&api, &uri, VIEWER, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, stored);
    assert_eq!(headers[header::CONTENT_TYPE], summary.media_type.as_str());
    assert_eq!(
        headers[header::CONTENT_LENGTH],
        stored.len().to_string().as_str()
    );
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"summary.md\"; filename*=UTF-8''summary.md"
    );
    let etag = format!("\"{}\"", summary.sha256);
    assert_eq!(headers[header::ETAG], etag.as_str());
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");

    // The same version again: 304, no body; another tag: the bytes.
    let (status, headers, body) =
        get_raw(&api, &uri, VIEWER, &[("if-none-match", etag.as_str())]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(headers[header::ETAG], etag.as_str());
    assert!(body.is_empty());
    let (status, _, body) = get_raw(&api, &uri, VIEWER, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, stored);

    // Unknown ids: 404 with the stable body; a malformed one: 400.
    let unknown = "art_01jz0000000000000000000000";
    let a = api
        .call(
            "GET",
            &format!("/v1/artifacts/{unknown}"),
            Some(VIEWER),
            None,
        )
        .await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found", unknown);
    let a = api
        .call("GET", "/v1/artifacts/..%2Fetc%2Fpasswd", Some(VIEWER), None)
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_input", "passwd");
    let unknown = "req_01jz0000000000000000000000";
    let a = api
        .call(
            "GET",
            &format!("/v1/requests/{unknown}/artifacts"),
            Some(VIEWER),
            None,
        )
        .await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found", unknown);
}

#[test]
fn attachment_names_are_quoted_safely() {
    let v = harness_server::attachment("a \"b\"\\c;é.txt");
    assert_eq!(
        v.to_str().unwrap(),
        "attachment; filename=\"a _b__c;_.txt\"; filename*=UTF-8''a%20%22b%22%5Cc%3B%C3%A9.txt"
    );
}

#[tokio::test]
async fn export_answers_the_evidence_package_that_verifies() {
    let api = api();
    let req = completed_demo(&api).await;
    let uri = format!(
        "/v1/requests/{}/export?artifact_contents=true&health=true",
        req.id
    );
    let (status, headers, body) = get_raw(&api, &uri, OPERATOR, &[]).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers[header::CONTENT_TYPE], "application/gzip");
    assert_eq!(
        headers[header::CONTENT_LENGTH],
        body.len().to_string().as_str()
    );
    let name = format!("{}.tar.gz", req.id);
    assert!(
        headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with(&format!("attachment; filename=\"{name}\"")),
        "{:?}",
        headers[header::CONTENT_DISPOSITION]
    );
    assert_eq!(&body[..2], &[0x1f, 0x8b], "a gzip stream");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(&name);
    std::fs::write(&path, &body).unwrap();
    let report = harness_export::verify_export(&path).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    // manifest, requests, events, approvals, artifacts.json, health, the artifact's
    // contents and the workspace files: all listed and rehashed.
    assert!(report.checked >= 7, "{report:?}");

    // Without the options the package is smaller (no artifact contents or health).
    let (status, _, plain) = get_raw(
        &api,
        &format!("/v1/requests/{}/export", req.id),
        OPERATOR,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let path = dir.path().join("plain.tar.gz");
    std::fs::write(&path, &plain).unwrap();
    let plain_report = harness_export::verify_export(&path).unwrap();
    assert!(plain_report.ok, "{:?}", plain_report.problems);
    assert!(
        plain_report.checked < report.checked,
        "{plain_report:?} vs {report:?}"
    );

    // Over the server's limit: 413 naming the size and the CLI command instead.
    let (stop, rx) = tokio::sync::watch::channel(false);
    let small = Api {
        _dir: tempfile::tempdir().unwrap(),
        h: api.h.clone(),
        app: harness_server::router_with(
            api.h.clone(),
            tokens(),
            rx,
            harness_server::Limits {
                max_export_bytes: 1000,
                ..Default::default()
            },
        ),
        _stop: stop,
    };
    let a = small.call("GET", &uri, Some(OPERATOR), None).await;
    assert_error(
        &a,
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_input",
        "over the API's limit of 1000 bytes",
    );
    let message = a.body["message"].as_str().unwrap();
    assert!(message.contains("runtime export request"), "{message}");
    assert!(message.contains("without artifact_contents"), "{message}");

    let unknown = "req_01jz0000000000000000000000";
    let a = api
        .call(
            "GET",
            &format!("/v1/requests/{unknown}/export"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found", unknown);
    let a = api
        .call(
            "GET",
            &format!("/v1/requests/{}/export?contents=1", req.id),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_input", "contents");
}

/// Waits until `id` has `status` (a worker runs it meanwhile).
async fn wait_for(api: &Api, id: &RequestId, status: RequestStatus) -> Request {
    for _ in 0..500 {
        let r = api.h.get_request(id).await.unwrap();
        if r.status == status {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{id} never became {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_hands_a_request_to_the_worker_and_refuses_the_wrong_states() {
    let api = api();
    let req = api.admit("s-res", "ship the release notes").await;
    let uri = format!("/v1/requests/{}/resume", req.id);

    // No worker holds the workspace (`serve --no-worker`): nothing continues it.
    let a = api.call("POST", &uri, Some(OPERATOR), None).await;
    assert_error(&a, StatusCode::CONFLICT, "conflict", "no worker");

    let worker = api.h.start_worker(fast()).await.unwrap();
    let a = api.call("POST", &uri, Some(OPERATOR), None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(a.body["handled_by"]["by"], "worker", "{}", a.body);
    assert_eq!(a.body["handled_by"]["worker_id"], worker.id.as_str());
    assert_eq!(a.body["request"]["id"], req.id.as_str());

    // The worker ran it up to its approval: resuming it now names the approval.
    wait_for(&api, &req.id, RequestStatus::WaitingApproval).await;
    let pending = api
        .h
        .list_approvals(ApprovalFilter {
            statuses: vec![ApprovalStatus::Pending],
            ..Default::default()
        })
        .await
        .unwrap();
    let a = api.call("POST", &uri, Some(OPERATOR), None).await;
    assert_error(&a, StatusCode::CONFLICT, "conflict", pending[0].id.as_str());

    // Cancelled: finished, so resuming is a conflict naming its status.
    api.call(
        "POST",
        &format!("/v1/requests/{}/cancel", req.id),
        Some(OPERATOR),
        None,
    )
    .await;
    let a = api.call("POST", &uri, Some(OPERATOR), None).await;
    assert_error(&a, StatusCode::CONFLICT, "conflict", "cancelled");

    let unknown = "req_01jz0000000000000000000000";
    let a = api
        .call(
            "POST",
            &format!("/v1/requests/{unknown}/resume"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found", unknown);
    worker.stop().await.unwrap();
}

/// Admits with a `traceparent` header (and the operator token).
async fn admit_traced(api: &Api, session: &str, traceparent: &str) -> Answer {
    let req = HttpRequest::builder()
        .method("POST")
        .uri(format!("/v1/sessions/{session}/requests"))
        .header(header::AUTHORIZATION, format!("Bearer {OPERATOR}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("traceparent", traceparent)
        .body(Body::from(
            json!({"agent": "assistant", "input": "hello"}).to_string(),
        ))
        .unwrap();
    let res = api.app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap(),
    }
}

#[tokio::test]
async fn a_traceparent_on_admission_becomes_the_request_trace_id() {
    let api = api();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let header = format!("00-{trace}-00f067aa0ba902b7-01");
    let a = admit_traced(&api, "s-t", &header).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["trace_id"], trace, "{}", a.body);
    // The header is kept: the caller's span is the parent of the request's spans.
    assert_eq!(a.body["traceparent"], header.as_str(), "{}", a.body);
    let listed = api
        .call(
            "GET",
            &format!("/v1/requests?trace_id={trace}"),
            Some(VIEWER),
            None,
        )
        .await;
    let ids: Vec<&Value> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(ids, vec![&a.body["id"]], "{}", listed.body);

    // Invalid ones (all-zero trace id, uppercase) are ignored: a new random trace,
    // as trace-context says a receiver does; never the rejected id.
    let zeros = format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32));
    let upper = format!("00-{}-00f067aa0ba902b7-01", trace.to_uppercase());
    let mut seen = std::collections::BTreeSet::new();
    for bad in [zeros, upper] {
        let a = admit_traced(&api, "s-u", &bad).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let id = a.body["trace_id"].as_str().unwrap().to_string();
        assert!(a.body.get("traceparent").is_none(), "{}", a.body);
        assert!(
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                && !bad.contains(&id)
                && id != trace.to_uppercase(),
            "{id} for {bad}"
        );
        seen.insert(id);
    }
    // Without a header: random, so two admissions never share one.
    let (x, y) = (api.admit("s-v", "one").await, api.admit("s-w", "two").await);
    seen.insert(x.trace_id.clone());
    seen.insert(y.trace_id.clone());
    assert_eq!(seen.len(), 4, "{seen:?}");
}

#[tokio::test]
async fn overview_and_request_tree_answer_the_engine_projections() {
    let api = api();
    let req = completed_demo(&api).await;

    let o = api
        .call("GET", "/v1/overview?recent=3", Some(VIEWER), None)
        .await;
    assert_eq!(o.status, StatusCode::OK, "{}", o.body);
    let o: harness_engine::views::Overview = serde_json::from_value(o.body).unwrap();
    assert_eq!(o.recent.len(), 1);
    assert_eq!(o.recent[0].request.id, req.id);
    assert_eq!(o.recent[0].request.status, RequestStatus::Completed);
    assert_eq!(o.approvals.pending, 0);
    assert_eq!(o.queue.running, 0);
    let bad = api
        .call("GET", "/v1/overview?recent=101", Some(VIEWER), None)
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_input", "recent 101");

    let t = api
        .call(
            "GET",
            &format!("/v1/requests/{}/tree", req.id),
            Some(VIEWER),
            None,
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    let served: harness_engine::views::RequestTree =
        serde_json::from_value(t.body.clone()).unwrap();
    let direct = api.h.request_tree(&req.id).await.unwrap();
    assert_eq!(t.body, serde_json::to_value(&direct).unwrap());
    // The approval sits under the call that needed it, decided by the operator token.
    let gated = served
        .steps
        .iter()
        .find(|n| n.approval.is_some())
        .expect("the demo's gated call");
    assert_eq!(
        gated.approval.as_ref().unwrap().status,
        ApprovalStatus::Approved
    );
    let missing = api
        .call(
            "GET",
            "/v1/requests/req_01jz0000000000000000000000/tree",
            Some(VIEWER),
            None,
        )
        .await;
    assert_error(
        &missing,
        StatusCode::NOT_FOUND,
        "not_found",
        "req_01jz0000000000000000000000",
    );
}
