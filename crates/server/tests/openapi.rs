//! `GET /openapi.json` and `GET /docs` (served without a token), and the document
//! against the router: every operation it lists is served, and needs the role its
//! description names (one role below is refused, that role is let through).

use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode, header};
use harness_engine::Harness;
use harness_server::{Role, Tokens, router};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

struct Api {
    _dir: tempfile::TempDir,
    app: axum::Router,
    _stop: tokio::sync::watch::Sender<bool>,
}

fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    let h = Harness::open(dir.path()).unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let tokens = Tokens::open()
        .with_token("vera", Role::Viewer, "tok-viewer")
        .with_token("otto", Role::Operator, "tok-operator")
        .with_token("ada", Role::Admin, "tok-admin");
    Api {
        _dir: dir,
        app: router(h, tokens, rx),
        _stop: stop,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Api {
    /// Sends `method uri`; a POST carries `{}` as JSON. Reads the body unless
    /// `stream` (an event stream never ends).
    async fn call(&self, method: &str, uri: &str, token: Option<&str>, stream: bool) -> Answer {
        let mut b = HttpRequest::builder().method(method).uri(uri);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = if method == "POST" {
            b.header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap()
        } else {
            b.body(Body::empty()).unwrap()
        };
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let text = if stream && status == StatusCode::OK {
            String::new()
        } else {
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Answer {
            status,
            headers,
            text,
        }
    }
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            out.push((m.to_uppercase(), path.clone(), op.clone()));
        }
    }
    out
}

/// `path` with each parameter replaced by a value its pattern accepts.
fn concrete(path: &str, op: &Value) -> String {
    let mut p = path.to_string();
    for prm in op["parameters"].as_array().into_iter().flatten() {
        if prm["in"] != "path" {
            continue;
        }
        let name = prm["name"].as_str().unwrap();
        let pattern = prm["schema"]["pattern"].as_str().unwrap_or("");
        let value = match pattern.strip_prefix('^').and_then(|p| p.split_once('_')) {
            Some((prefix, _)) if prefix.chars().all(|c| c.is_ascii_lowercase()) => {
                format!("{prefix}_01probe")
            }
            _ => "probe-session".to_string(),
        };
        p = p.replace(&format!("{{{name}}}"), &value);
    }
    p
}

#[tokio::test]
async fn the_document_is_served_without_a_token_and_is_the_generated_one() {
    let api = api();
    let a = api.call("GET", "/openapi.json", None, false).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers[header::CONTENT_TYPE], "application/json");
    let doc: Value = serde_json::from_str(&a.text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc, serde_json::to_value(harness_server::spec()).unwrap());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // The records' schemas follow their serde shape.
    let request = &doc["components"]["schemas"]["Request"];
    assert_eq!(doc["components"]["schemas"]["Timestamp"]["type"], "integer");
    assert_eq!(
        request["properties"]["created_at"]["$ref"],
        "#/components/schemas/Timestamp"
    );
    // `retry_of` and `traceparent` are left out when empty: not required.
    let required: Vec<&str> = request["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.contains(&"id") && !required.contains(&"retry_of"));
    assert!(!required.contains(&"traceparent"));
    assert!(
        request["properties"]["traceparent"].is_object(),
        "{request}"
    );
    assert_eq!(
        doc["components"]["schemas"]["RequestStatus"]["enum"],
        serde_json::to_value(
            harness_core::RequestStatus::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
        )
        .unwrap()
    );
    assert_eq!(
        doc["components"]["schemas"]["ErrorCode"]["enum"],
        serde_json::to_value(
            harness_core::ErrorCode::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
        )
        .unwrap()
    );
    let sse = &doc["paths"]["/v1/events"]["get"]["responses"]["200"]["content"];
    assert!(sse.get("text/event-stream").is_some(), "{sse}");
    let metrics = &doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"];
    assert!(
        metrics.get(harness_server::METRICS_CONTENT_TYPE).is_some(),
        "{metrics}"
    );
    let export = &doc["paths"]["/v1/requests/{id}/export"]["get"]["responses"]["200"]["content"];
    assert!(export.get("application/gzip").is_some(), "{export}");
}

#[tokio::test]
async fn docs_render_every_operation_with_its_role_parameters_responses_and_linked_schemas() {
    let api = api();
    let doc: Value = serde_json::to_value(harness_server::spec()).unwrap();
    let a = api.call("GET", "/docs", None, false).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(
        a.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    let page = a.text;
    assert!(page.starts_with("<!doctype html>"));
    assert!(!page.contains("<script"), "no script");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing from elsewhere"
    );
    for (m, p, op) in operations(&doc) {
        let heading = format!("<h2><code>{m} {p}</code></h2>");
        let at = page
            .find(&heading)
            .unwrap_or_else(|| panic!("{heading} missing"));
        let section = &page[at..at + page[at..].find("</section>").unwrap()];
        let desc = op["description"].as_str().unwrap();
        let role = desc
            .strip_prefix("Role: ")
            .map(|r| r.split('.').next().unwrap())
            .unwrap_or("none (no token)");
        assert!(
            section.contains(&format!("Role: <b>{role}</b>")),
            "{m} {p}: {section}"
        );
        for prm in op["parameters"].as_array().into_iter().flatten() {
            let name = prm["name"].as_str().unwrap();
            assert!(
                section.contains(&format!("<code>{name}</code>")),
                "{m} {p} {name}"
            );
        }
        if op.get("requestBody").is_some() {
            assert!(section.contains("<h3>Request body"), "{m} {p}");
        }
        for status in op["responses"].as_object().unwrap().keys() {
            assert!(
                section.contains(&format!("<tr><td>{status}</td>")),
                "{m} {p} {status}"
            );
        }
    }
    // Every schema has its section, and every link to one lands.
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(page.contains(&format!("id=\"schema-{name}\"")), "{name}");
    }
    for link in page.split("href=\"#").skip(1) {
        let target = link.split('"').next().unwrap();
        assert!(
            page.contains(&format!("id=\"{target}\"")),
            "dead link #{target}"
        );
    }
    assert!(page.contains("<a href=\"#schema-Request\">Request</a>"));
}

#[tokio::test]
async fn every_documented_operation_is_served_and_needs_the_role_it_names() {
    let api = api();
    let doc: Value = serde_json::to_value(harness_server::spec()).unwrap();
    let below = |role: &str| match role {
        "viewer" => None,
        "operator" => Some("tok-viewer"),
        "admin" => Some("tok-operator"),
        r => panic!("unknown role {r}"),
    };
    let token_of = |role: &str| match role {
        "viewer" => "tok-viewer",
        "operator" => "tok-operator",
        _ => "tok-admin",
    };
    let ops = operations(&doc);
    assert!(ops.len() >= 17);
    for (m, p, op) in ops {
        let uri = concrete(&p, &op);
        let stream = p == "/v1/events";
        let desc = op["description"].as_str().unwrap();
        let Some(role) = desc
            .strip_prefix("Role: ")
            .map(|r| r.split('.').next().unwrap())
        else {
            let a = api.call(&m, &uri, None, stream).await;
            assert_eq!(a.status, StatusCode::OK, "{m} {uri} without a token");
            continue;
        };
        let refused = api.call(&m, &uri, below(role), stream).await;
        let expected = if below(role).is_some() {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(refused.status, expected, "{m} {uri}: {}", refused.text);
        if expected == StatusCode::UNAUTHORIZED {
            // The challenge the document describes is the one sent.
            assert_eq!(
                refused.headers[header::WWW_AUTHENTICATE],
                harness_server::WWW_AUTHENTICATE,
                "{m} {uri}"
            );
            assert!(
                op["responses"]["401"]["headers"]["WWW-Authenticate"]["description"]
                    .as_str()
                    .is_some_and(|d| d.contains(harness_server::WWW_AUTHENTICATE)),
                "{m} {p}"
            );
        }
        let a = api.call(&m, &uri, Some(token_of(role)), stream).await;
        assert!(
            ![
                StatusCode::UNAUTHORIZED,
                StatusCode::FORBIDDEN,
                StatusCode::METHOD_NOT_ALLOWED
            ]
            .contains(&a.status),
            "{m} {uri} as {role}: {} {}",
            a.status,
            a.text
        );
        assert!(!a.text.contains("no such route"), "{m} {uri} is not served");
        // The answer's status is one the document lists.
        let documented = op["responses"]
            .as_object()
            .unwrap()
            .contains_key(a.status.as_str());
        assert!(documented, "{m} {uri} answered {} {}", a.status, a.text);
    }
}

fn validator(doc: &Value, name: &str) -> jsonschema::Validator {
    let schema = serde_json::json!({
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    jsonschema::draft202012::new(&schema).unwrap()
}

/// Checks `body` against the document's schema `name` (OpenAPI 3.1 schemas are JSON
/// Schema 2020-12; the components ride along so `$ref`s resolve).
fn conforms(doc: &Value, name: &str, body: &Value) {
    let v = validator(doc, name);
    let errors: Vec<String> = v
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{name} does not match its schema:\n{}\n{body:#}",
        errors.join("\n")
    );
}

#[tokio::test]
async fn the_overview_and_a_request_tree_match_their_documented_schemas() {
    use harness_core::*;
    use harness_engine::{WorkerOptions, run_until_settled};
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    let h = Harness::open(dir.path()).unwrap();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let api = Api {
        _dir: dir,
        app: router(h.clone(), Tokens::open(), rx),
        _stop,
    };
    let doc: Value =
        serde_json::from_str(&api.call("GET", "/openapi.json", None, false).await.text).unwrap();
    let fast = || WorkerOptions {
        poll: std::time::Duration::from_millis(20),
        ..Default::default()
    };
    // The demo delegates to a researcher, then pauses on `send_mail`'s approval.
    let r = h
        .request(
            Some(SessionId::parse("s-schema").unwrap()),
            "assistant",
            "ship the notes",
        )
        .await
        .unwrap();
    let r = run_until_settled(&h, &r.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::WaitingApproval);
    let check = |uri: String, name: &'static str| {
        let api = &api;
        let doc = &doc;
        async move {
            let a = api.call("GET", &uri, None, false).await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.text);
            let body: Value = serde_json::from_str(&a.text).unwrap();
            conforms(doc, name, &body);
            body
        }
    };
    let o = check("/v1/overview?recent=5".into(), "Overview").await;
    assert_eq!(o["approvals"]["pending"], 1, "{o:#}");
    // The check can fail: a field of the wrong type does not pass.
    let mut wrong = o.clone();
    wrong["queue"]["running"] = Value::from("three");
    assert!(!validator(&doc, "Overview").is_valid(&wrong));
    let t = check(format!("/v1/requests/{}/tree", r.id), "RequestTree").await;
    assert!(
        t["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["child"].is_object()),
        "the tree holds a delegated child: {t:#}"
    );

    let a = h
        .list_approvals(ApprovalFilter {
            statuses: vec![ApprovalStatus::Pending],
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0);
    h.resolve_approval(ResolveApproval {
        session_id: a.session_id,
        request_id: a.request_id,
        approval_id: a.id,
        decision: Decision::Approved,
        message: Some("fine".into()),
        decided_by: Actor {
            kind: ActorKind::Cli,
            name: "test".into(),
        },
        edited_arguments: None,
    })
    .await
    .unwrap();
    let done = run_until_settled(&h, &r.id, fast()).await.unwrap();
    assert_eq!(done.status, RequestStatus::Completed);
    check("/v1/overview".into(), "Overview").await;
    let t = check(format!("/v1/requests/{}/tree", r.id), "RequestTree").await;
    assert!(!t["artifacts"].as_array().unwrap().is_empty(), "{t:#}");
}
