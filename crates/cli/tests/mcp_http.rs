//! MCP over streamable HTTP at `/mcp` of a real `serve --listen`, as rmcp's client
//! sees it: no token is 401 with a bearer challenge; a viewer is offered the reading
//! tools only and refused `resolve_approval` (`forbidden`, nothing decided); an
//! operator lists, inspects and resolves a pending approval, recorded as its token
//! (as the REST API records it), and the worker then completes the request.

mod worker;

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use std::process::Child;
use std::time::{Duration, Instant};

const OPERATOR: &str = "op-token-for-mcp";
const VIEWER: &str = "viewer-token-for-mcp";

fn stop(mut child: Child) {
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exited {status:?}");
}

async fn connect(base: &str, token: &str) -> RunningService<RoleClient, ()> {
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp"))
        .auth_header(token.to_string());
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
    ().serve(transport).await.expect("MCP handshake")
}

async fn tool_names(c: &RunningService<RoleClient, ()>) -> Vec<String> {
    let mut names: Vec<String> = c
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

/// Calls `name`; returns (is_error, the JSON or text it answered).
async fn call(c: &RunningService<RoleClient, ()>, name: &str, args: Value) -> (bool, Value) {
    let Value::Object(args) = args else {
        unreachable!("arguments are objects")
    };
    let r = c
        .call_tool(CallToolRequestParams::new(name.to_string()).with_arguments(args))
        .await
        .unwrap();
    let text = r.content[0].as_text().unwrap().text.clone();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (r.is_error.unwrap_or(false), value)
}

/// Polls `get_request` until `check` holds of its answer (at most 30 s).
async fn wait_for(
    c: &RunningService<RoleClient, ()>,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (err, got) = call(c, "get_request", json!({ "id": id })).await;
        assert!(!err, "{got}");
        if check(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "never {what}: {got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn mcp_over_http_follows_the_token_roles_and_resolves_as_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    harness_config::init(root, false).unwrap();
    std::fs::write(
        root.join("config/server.yaml"),
        "tokens:\n  - name: ops-bot\n    role: operator\n    env: OP_TOKEN\n  - name: dash\n    role: viewer\n    env: VIEW_TOKEN\n",
    )
    .unwrap();
    let (child, base, said) = worker::serve_listening(
        root,
        "127.0.0.1:0",
        &[("OP_TOKEN", OPERATOR), ("VIEW_TOKEN", VIEWER)],
    );
    assert_eq!(said["open"], false);
    // reqwest is built without a default TLS provider (only plain HTTP is used here).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();

    // No token, or an unknown one: 401 with the API's error body, before MCP starts.
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"}}});
    for token in [None, Some("not-a-token")] {
        let mut req = http
            .post(format!("{base}/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(initialize.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401, "{token:?}");
        assert_eq!(
            res.headers()["www-authenticate"],
            r#"Bearer realm="agent-harness""#,
            "{token:?}"
        );
        let body: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
        assert_eq!(body["code"], "unauthorized");
    }
    // The REST API challenges the same way.
    let res = http.get(format!("{base}/v1/health")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        r#"Bearer realm="agent-harness""#
    );

    // A paused request, admitted over REST.
    let res = http
        .post(format!("{base}/v1/sessions/mcp/requests"))
        .bearer_auth(OPERATOR)
        .header("content-type", "application/json")
        .body(json!({"agent": "assistant", "input": "ship the release notes"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let req: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    let id = req["id"].as_str().unwrap().to_string();

    let viewer = connect(&base, VIEWER).await;
    assert_eq!(
        tool_names(&viewer).await,
        [
            "get_request",
            "health",
            "list_pending_approvals",
            "list_requests"
        ]
    );
    let got = wait_for(&viewer, &id, "paused", |v| v["stop"]["kind"] == "approval").await;
    assert_eq!(got["tree"]["request"]["id"], id.as_str());
    assert_eq!(got["next"]["action"], "approve");
    let (err, pending) = call(&viewer, "list_pending_approvals", json!({})).await;
    assert!(!err, "{pending}");
    let approval = pending["approvals"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(pending["approvals"][0]["tool"], "send_mail");
    let (err, list) = call(&viewer, "list_requests", json!({"session": "mcp"})).await;
    assert!(!err, "{list}");
    assert_eq!(list["requests"][0]["id"], id.as_str());
    let (err, health) = call(&viewer, "health", json!({})).await;
    assert!(!err, "{health}");
    assert!(
        health["checks"].as_array().is_some_and(|c| !c.is_empty()),
        "{health}"
    );
    let (err, bad) = call(&viewer, "list_requests", json!({"status": "sleeping"})).await;
    assert!(err);
    assert!(bad.as_str().unwrap().starts_with("invalid_input:"), "{bad}");

    // The viewer may not decide: refused, and nothing decided.
    let (err, refused) = call(
        &viewer,
        "resolve_approval",
        json!({"approval_id": approval, "decision": "approve"}),
    )
    .await;
    assert!(err, "a viewer resolved: {refused}");
    let refused = refused.as_str().unwrap();
    assert!(
        refused.starts_with("forbidden:") && refused.contains("viewer"),
        "{refused}"
    );
    let (_, still) = call(&viewer, "list_pending_approvals", json!({})).await;
    assert_eq!(still["approvals"][0]["id"], approval.as_str());

    // The operator resolves; the decision is the token's, and the worker finishes.
    let operator = connect(&base, OPERATOR).await;
    assert_eq!(
        tool_names(&operator).await,
        [
            "get_request",
            "health",
            "list_pending_approvals",
            "list_requests",
            "resolve_approval"
        ]
    );
    let (err, resolved) = call(
        &operator,
        "resolve_approval",
        json!({"approval_id": approval, "decision": "approve", "message": "from MCP"}),
    )
    .await;
    assert!(!err, "{resolved}");
    assert_eq!(resolved["approval"]["status"], "approved");
    assert_eq!(resolved["approval"]["decided_by"], "ops-bot");
    assert_eq!(resolved["approval"]["decided_by_kind"], "token");
    assert_eq!(resolved["next"], "the worker continues the request");
    let done = wait_for(&operator, &id, "completed", |v| {
        v["tree"]["request"]["status"] == "completed"
    })
    .await;
    assert_eq!(done["stop"]["kind"], "completed");
    assert_eq!(done["needs_human"], false);
    let (err, again) = call(
        &operator,
        "resolve_approval",
        json!({"approval_id": approval, "decision": "reject"}),
    )
    .await;
    assert!(err, "a second resolution was applied: {again}");
    assert!(again.as_str().unwrap().starts_with("conflict:"), "{again}");

    // The REST API shows the same decision.
    let res = http
        .get(format!("{base}/v1/approvals?request={id}"))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap();
    let list: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(list[0]["decided_by"], "ops-bot");
    assert_eq!(list[0]["message"], "from MCP");

    viewer.cancel().await.unwrap();
    // A session still open when the server stops does not hold the stop up.
    stop(child);
    drop(operator);
}

#[tokio::test]
async fn an_open_loopback_server_takes_any_caller_as_anonymous_but_no_other_host_or_origin() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    harness_config::init(root, false).unwrap();
    let (child, base, said) = worker::serve_listening(root, "127.0.0.1:0", &[]);
    assert_eq!(said["open"], true);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"}}});
    let post = |header: Option<(&'static str, &'static str)>, body: String| {
        let mut req = http
            .post(format!("{base}/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some((k, v)) = header {
            req = req.header(k, v);
        }
        req.send()
    };
    // A page of another site, or a name that resolves to loopback (DNS rebinding):
    // refused with the API's error body.
    for (h, says) in [
        (("origin", "http://evil.example"), "Origin"),
        (("host", "evil.example"), "Host"),
    ] {
        let res = post(Some(h), initialize.to_string()).await.unwrap();
        assert_eq!(res.status(), 403, "{h:?}");
        let body: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
        assert_eq!(body["code"], "forbidden", "{h:?}");
        assert!(body["message"].as_str().unwrap().contains(says), "{body}");
    }
    // Bodies are bounded like the REST API's.
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(1024 * 1024 + 1)
    );
    let res = post(None, big).await.unwrap();
    assert_eq!(res.status(), 413);
    let body: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(body["code"], "invalid_input");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Payload Too Large"),
        "{body}"
    );

    let res = http
        .post(format!("{base}/v1/sessions/open/requests"))
        .header("content-type", "application/json")
        .body(json!({"agent": "assistant", "input": "ship the release notes"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let req: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    let id = req["id"].as_str().unwrap().to_string();
    let transport = StreamableHttpClientTransport::with_client(
        reqwest::Client::new(),
        StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp")),
    );
    let c = ().serve(transport).await.expect("MCP handshake");
    assert_eq!(tool_names(&c).await.len(), 5);
    let paused = wait_for(&c, &id, "paused", |v| v["stop"]["kind"] == "approval").await;
    let approval = paused["stop"]["approval"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (err, resolved) = call(
        &c,
        "resolve_approval",
        json!({"approval_id": approval, "decision": "approve"}),
    )
    .await;
    assert!(!err, "{resolved}");
    assert_eq!(resolved["approval"]["decided_by"], "anonymous");
    assert_eq!(resolved["approval"]["decided_by_kind"], "open");
    wait_for(&c, &id, "completed", |v| {
        v["tree"]["request"]["status"] == "completed"
    })
    .await;

    // A session's event stream (GET) never ends by itself: stopping the server ends it.
    let res = post(None, initialize.to_string()).await.unwrap();
    assert_eq!(res.status(), 200);
    let session = res.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    drop(res);
    let res = http
        .post(format!("{base}/mcp"))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let stream = http
        .get(format!("{base}/mcp"))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    stop_within(child, Duration::from_secs(20));
    // The stream ended with the server.
    let rest = tokio::time::timeout(Duration::from_secs(5), stream.bytes()).await;
    assert!(rest.is_ok(), "the event stream outlived the server");
    drop(c);
}

/// SIGTERM, and `serve` must have exited successfully within `limit`.
fn stop_within(mut child: Child, limit: Duration) {
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve did not stop within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "serve exited {status:?}");
}
