//! `/mcp` in process (tower's `oneshot` against the router), at the HTTP level:
//! rmcp's own refusals answered as the REST API's JSON error bodies (status and
//! message kept), successes and event streams untouched, and the cap on live
//! sessions (503 `unavailable` with `Retry-After`, existing sessions going on, a
//! closed one freeing its place). The MCP conversation itself is
//! `cli/tests/mcp_http.rs`.

use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode, header};
use harness_engine::Harness;
use harness_server::{Limits, Tokens, router_with};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::time::Duration;
use tower::ServiceExt;

struct Mcp {
    _dir: tempfile::TempDir,
    app: axum::Router,
    _stop: tokio::sync::watch::Sender<bool>,
}

/// An open (tokenless) server, as `serve` runs on loopback.
fn mcp(limits: Limits) -> Mcp {
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    let h = Harness::open(dir.path()).unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    Mcp {
        app: router_with(h, Tokens::open(), rx, limits),
        _dir: dir,
        _stop: stop,
    }
}

fn initialize() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"}}})
    .to_string()
}

/// A request to `/mcp` as an MCP client sends it (loopback `Host`, both media
/// types accepted, a JSON body), `extra` headers added or replacing those.
fn request(method: &str, body: Option<String>, extra: &[(&str, &str)]) -> HttpRequest<Body> {
    let mut headers = vec![
        ("host", "127.0.0.1"),
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
    ];
    for (k, v) in extra {
        headers.retain(|(h, _)| !h.eq_ignore_ascii_case(k));
        headers.push((k, v));
    }
    let mut b = HttpRequest::builder().method(method).uri("/mcp");
    for (k, v) in headers {
        b = b.header(k, v);
    }
    b.body(body.map(Body::from).unwrap_or_default()).unwrap()
}

impl Mcp {
    async fn send(&self, req: HttpRequest<Body>) -> axum::response::Response {
        self.app.clone().oneshot(req).await.unwrap()
    }

    /// Opens a session: its id.
    async fn open_session(&self) -> String {
        let res = self.send(request("POST", Some(initialize()), &[])).await;
        assert_eq!(res.status(), StatusCode::OK);
        let id = res.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        let res = self
            .send(request(
                "POST",
                Some(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string()),
                &[
                    ("mcp-session-id", &id),
                    ("mcp-protocol-version", "2025-06-18"),
                ],
            ))
            .await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        id
    }

    /// `tools/list` in session `id`: the names of the tools its event stream answers.
    async fn tool_names(&self, id: &str) -> Vec<String> {
        let res = self
            .send(request(
                "POST",
                Some(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string()),
                &[
                    ("mcp-session-id", id),
                    ("mcp-protocol-version", "2025-06-18"),
                ],
            ))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
        // The stream may stay open (keep-alives): read events until the answer.
        let mut body = res.into_body();
        let mut text = String::new();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
                .await
                .expect("the tools/list answer within 10 s")
                .expect("the stream ended before the answer")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
            let answer = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .find_map(|d| {
                    serde_json::from_str::<Value>(d.trim())
                        .ok()
                        .filter(|v| v["id"] == 2)
                });
            if let Some(v) = answer {
                return v["result"]["tools"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["name"].as_str().unwrap().to_string())
                    .collect();
            }
        }
    }
}

/// The answer's status and its body, which must be the API's JSON error body.
async fn error_body(res: axum::response::Response) -> (StatusCode, axum::http::HeaderMap, Value) {
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        media.starts_with("application/json"),
        "{status}: not JSON but {media:?}: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["code", "message"], "{body}");
    (status, headers, body)
}

#[tokio::test]
async fn rmcp_refusals_are_the_apis_json_error_bodies() {
    let m = mcp(Limits::default());
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(harness_server::MAX_BODY_BYTES + 1)
    );
    let ping = json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}).to_string();
    let cases: Vec<(&str, HttpRequest<Body>, StatusCode, &str, &str)> = vec![
        (
            "another site's page",
            request(
                "POST",
                Some(initialize()),
                &[("origin", "http://evil.example")],
            ),
            StatusCode::FORBIDDEN,
            "forbidden",
            "Origin header is not allowed",
        ),
        (
            "a name that is not loopback (DNS rebinding)",
            request("POST", Some(initialize()), &[("host", "evil.example")]),
            StatusCode::FORBIDDEN,
            "forbidden",
            "Host header is not allowed",
        ),
        (
            "a body over the limit",
            request("POST", Some(big), &[]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_input",
            "Payload Too Large",
        ),
        (
            "no event stream accepted",
            request(
                "POST",
                Some(initialize()),
                &[("accept", "application/json")],
            ),
            StatusCode::NOT_ACCEPTABLE,
            "invalid_input",
            "text/event-stream",
        ),
        (
            "a body that is not JSON by its type",
            request(
                "POST",
                Some(initialize()),
                &[("content-type", "text/plain")],
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_input",
            "Content-Type must be application/json",
        ),
        (
            "a body that is not JSON-RPC",
            request("POST", Some("{not json".into()), &[]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_input",
            "deserialize",
        ),
        (
            "a request outside a session",
            request("POST", Some(ping.clone()), &[]),
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "Session ID is required",
        ),
        (
            "an unknown session",
            request(
                "POST",
                Some(ping),
                &[
                    ("mcp-session-id", "no-such-session"),
                    ("mcp-protocol-version", "2025-06-18"),
                ],
            ),
            StatusCode::NOT_FOUND,
            "not_found",
            "Session not found",
        ),
        (
            "the event stream of an unknown session",
            request(
                "GET",
                None,
                &[
                    ("accept", "text/event-stream"),
                    ("mcp-session-id", "no-such-session"),
                ],
            ),
            StatusCode::NOT_FOUND,
            "not_found",
            "Session not found",
        ),
        (
            "a method MCP does not use",
            request("PUT", Some(initialize()), &[]),
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_input",
            "Method Not Allowed",
        ),
    ];
    for (what, req, status, code, says) in cases {
        let (got, headers, body) = error_body(m.send(req).await).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["code"], code, "{what}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(says),
            "{what}: {message:?} should say {says:?}"
        );
        if status == StatusCode::METHOD_NOT_ALLOWED {
            // rmcp's other headers are kept.
            assert_eq!(headers[header::ALLOW], "GET, POST, DELETE", "{what}");
        }
    }

    // A success is left as rmcp answers it: the initialize answer as an event stream.
    let res = m.send(request("POST", Some(initialize()), &[])).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    assert!(res.headers().contains_key("mcp-session-id"));
}

#[tokio::test]
async fn sessions_past_the_cap_are_refused_until_one_closes() {
    let m = mcp(Limits {
        max_mcp_sessions: 3,
        ..Limits::default()
    });
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(m.open_session().await);
    }

    // The fourth: 503 with the API's body, and when to come back.
    let (status, headers, body) =
        error_body(m.send(request("POST", Some(initialize()), &[])).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "unavailable");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("(3)"), "{message}");
    assert_eq!(headers[header::RETRY_AFTER], "30");
    assert!(!headers.contains_key("mcp-session-id"));

    // The sessions that hold the places go on.
    for id in &sessions {
        assert!(
            m.tool_names(id)
                .await
                .contains(&"resolve_approval".to_string()),
            "{id}"
        );
    }

    // Closing one frees its place; it is then gone, and the cap holds again.
    let res = m
        .send(request(
            "DELETE",
            None,
            &[
                ("mcp-session-id", &sessions[0]),
                ("mcp-protocol-version", "2025-06-18"),
            ],
        ))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let fourth = m.open_session().await;
    assert_eq!(m.tool_names(&fourth).await.len(), 5);
    let (status, _, body) = error_body(
        m.send(request(
            "POST",
            Some(json!({"jsonrpc": "2.0", "id": 4, "method": "ping"}).to_string()),
            &[
                ("mcp-session-id", &sessions[0]),
                ("mcp-protocol-version", "2025-06-18"),
            ],
        ))
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _, body) =
        error_body(m.send(request("POST", Some(initialize()), &[])).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}

/// Many clients racing for the last places: exactly the cap's worth open, every
/// other one is the same 503 (the check before rmcp sees the request, or the
/// session manager's when two pass that check together), never another error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_racing_for_the_last_places_get_the_cap_and_503s() {
    let m = std::sync::Arc::new(mcp(Limits {
        max_mcp_sessions: 2,
        ..Limits::default()
    }));
    let racers: Vec<_> = (0..24)
        .map(|_| {
            let m = m.clone();
            tokio::spawn(async move {
                let res = m.send(request("POST", Some(initialize()), &[])).await;
                match res.status() {
                    StatusCode::OK => {
                        assert!(res.headers().contains_key("mcp-session-id"));
                        None
                    }
                    _ => Some(error_body(res).await),
                }
            })
        })
        .collect();
    let mut opened = 0;
    for r in racers {
        match r.await.unwrap() {
            None => opened += 1,
            Some((status, headers, body)) => {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
                assert_eq!(body["code"], "unavailable", "{body}");
                assert_eq!(headers[header::RETRY_AFTER], "30");
            }
        }
    }
    assert_eq!(opened, 2, "sessions opened past a cap of 2");
}
