//! `agent-harness serve --listen` as a real process: admit over HTTP, follow the
//! session's events over SSE, approve, see the request complete; then restart the
//! server and resume the stream with `Last-Event-ID`, with no gap or duplicate.
//! `/metrics` on the way counts the worker's steps and the API's admissions; at the
//! end the run's artifact and its evidence package come over HTTP (the package
//! verifies with `runtime verify-export`).

mod worker;

use futures_util::StreamExt;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;
use worker::BIN;

const TOKEN: &str = "s3cret-operator-token";

/// Starts `serve --listen 127.0.0.1:0 --json` and returns it with its base URL.
fn serve_api(root: &Path) -> (Child, String) {
    serve_api_env(root, &[])
}

/// [`serve_api`] with more environment variables.
fn serve_api_env(root: &Path, env: &[(&str, &str)]) -> (Child, String) {
    let env: Vec<(&str, &str)> = [("API_TOKEN", TOKEN)]
        .into_iter()
        .chain(env.iter().copied())
        .collect();
    let (child, base, said) = worker::serve_listening(root, "127.0.0.1:0", &env);
    assert_eq!(said["open"], false);
    (child, base)
}

fn stop(mut child: Child) {
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exited {status:?}");
}

/// `GET /metrics` as `series -> value` (comments skipped; every other line must be
/// `series value`).
async fn metrics(client: &reqwest::Client, base: &str) -> std::collections::HashMap<String, f64> {
    let res = client
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = res.text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l:?}"));
            (
                series.to_string(),
                v.parse().unwrap_or_else(|_| panic!("{l:?}")),
            )
        })
        .collect()
}

/// An SSE reader: (id, event, data) of each event.
struct Sse {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    text: String,
}

impl Sse {
    async fn open(client: &reqwest::Client, url: &str, last: Option<i64>) -> Sse {
        let mut b = client.get(url).bearer_auth(TOKEN);
        if let Some(l) = last {
            b = b.header("Last-Event-ID", l.to_string());
        }
        let res = b.send().await.unwrap();
        assert_eq!(res.status(), 200);
        Sse {
            body: res.bytes_stream().boxed(),
            text: String::new(),
        }
    }

    async fn next(&mut self) -> (i64, String, Value) {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
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
                    return (id, ev, data);
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.body.next())
                .await
                .expect("an event within 20 s")
                .expect("the stream goes on")
                .unwrap();
            self.text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Events until one of `kind` about `request` (inclusive).
    async fn until(&mut self, kind: &str, request: &str) -> Vec<(i64, String, Value)> {
        let mut seen = Vec::new();
        loop {
            let e = self.next().await;
            let done = e.1 == kind && e.2["request_id"] == request;
            seen.push(e);
            if done {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn serve_listen_admits_streams_approves_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    harness_config::init(root, false).unwrap();
    std::fs::write(
        root.join("config/server.yaml"),
        "tokens:\n  - name: ci-bot\n    role: operator\n    env: API_TOKEN\n",
    )
    .unwrap();
    let (child, base) = serve_api(root);
    // reqwest is built without a default TLS provider (only plain HTTP is used here).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();

    // No token: refused with the stable code.
    let res = client
        .get(format!("{base}/v1/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(body["code"], "unauthorized");

    let mut sse = Sse::open(&client, &format!("{base}/v1/events?session=e2e"), None).await;
    let res = client
        .post(format!("{base}/v1/sessions/e2e/requests"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(json!({"agent": "assistant", "input": "ship the release notes"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let req: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    let id = req["id"].as_str().unwrap().to_string();

    let mut seen = sse.until("approval.requested", &id).await;
    let approval = seen.last().unwrap().2["payload"]["approval_id"]
        .as_str()
        .map(str::to_string);
    let approval = match approval {
        Some(a) => a,
        None => {
            let res = client
                .get(format!("{base}/v1/approvals?status=pending&request={id}"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            let list: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
            list[0]["id"].as_str().unwrap().to_string()
        }
    };
    let res = client
        .post(format!("{base}/v1/approvals/{approval}/resolve"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(json!({"decision": "approve", "message": "ship it"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let a: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(a["decided_by"], "ci-bot");

    seen.extend(sse.until("request.completed", &id).await);
    let ids: Vec<i64> = seen.iter().map(|e| e.0).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // The worker and the API share one process: /metrics sees both.
    let res = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let m = metrics(&client, &base).await;
    assert_eq!(m["agent_harness_requests_admitted_total"], 1.0);
    assert_eq!(m["agent_harness_queue_depth"], 0.0);
    assert_eq!(m["agent_harness_approvals_pending"], 0.0);
    assert_eq!(m["agent_harness_sse_subscribers"], 1.0);
    assert_eq!(
        m["agent_harness_approval_wait_seconds_count{decision=\"approved\"}"],
        1.0
    );
    // The steps before the approval were observed before it was asked (the last
    // commit's observation may trail its event by a moment).
    for kind in ["model_turn", "tool_call"] {
        let count = m[&format!("agent_harness_step_latency_seconds_count{{kind=\"{kind}\"}}")];
        assert!(count >= 1.0, "{kind}: {count}");
    }
    drop(sse);
    stop(child);

    // A new server process: resuming after an event continues right after it.
    let (child, base) = serve_api(root);
    let mid = seen[seen.len() / 2].0;
    let mut sse = Sse::open(&client, &format!("{base}/v1/events?session=e2e"), Some(mid)).await;
    let rest: Vec<i64> = seen.iter().map(|e| e.0).filter(|s| *s > mid).collect();
    let mut again = Vec::new();
    while again.len() < rest.len() {
        again.push(sse.next().await.0);
    }
    assert_eq!(again, rest);
    let res = client
        .get(format!("{base}/v1/requests/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let r: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(r["status"], "completed");

    // The run's artifact over HTTP: listed, then its bytes with its type and hash.
    let res = client
        .get(format!("{base}/v1/requests/{id}/artifacts"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let list: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    let summary = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "summary.md")
        .unwrap_or_else(|| panic!("no summary.md: {list}"))
        .clone();
    let res = client
        .get(format!(
            "{base}/v1/artifacts/{}",
            summary["id"].as_str().unwrap()
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        summary["media_type"].as_str().unwrap()
    );
    assert_eq!(
        res.headers()["etag"].to_str().unwrap(),
        format!("\"{}\"", summary["sha256"].as_str().unwrap())
    );
    let bytes = res.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, summary["size"].as_u64().unwrap());

    // Its evidence package over HTTP verifies with the CLI.
    let res = client
        .get(format!(
            "{base}/v1/requests/{id}/export?artifact_contents=true"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/gzip");
    let package = root.join(format!("{id}.tar.gz"));
    std::fs::write(&package, res.bytes().await.unwrap()).unwrap();
    let out = Command::new(BIN)
        .args(["runtime", "verify-export", "--json"])
        .arg(&package)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");

    // It is finished: resuming it is a conflict.
    let res = client
        .post(format!("{base}/v1/requests/{id}/resume"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    drop(sse);
    stop(child);
}

/// The values of `field` in the spans (outermost first) of JSON log line `v`.
fn span_values<'a>(v: &'a Value, field: &str) -> Vec<&'a str> {
    v["spans"]
        .as_array()
        .map(|spans| spans.iter().filter_map(|s| s[field].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_traceparent_follows_the_request_into_children_tools_logs_and_the_trace_filter() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    harness_config::init(root, false).unwrap();
    std::fs::write(
        root.join("config/server.yaml"),
        "tokens:\n  - name: ci-bot\n    role: operator\n    env: API_TOKEN\n",
    )
    .unwrap();
    // A root that delegates to a child whose command tool reports its TRACEPARENT.
    let tools = root.join("config/tools.yaml");
    let mut text = std::fs::read_to_string(&tools).unwrap();
    text.push_str(
        "  trace_echo:\n    command: [sh, -c, 'printf \"%s\" \"$TRACEPARENT\" | tee traceparent.txt']\n    \
         arguments: { type: object }\n    approval: never\n",
    );
    std::fs::write(&tools, text).unwrap();
    std::fs::write(
        root.join("config/agents/tracer.yaml"),
        "name: tracer\nmodel: scripted\ntools: [delegate]\ndelegates: [echoer]\n",
    )
    .unwrap();
    std::fs::write(
        root.join("config/agents/echoer.yaml"),
        "name: echoer\nmodel: scripted\ntools: [trace_echo]\n",
    )
    .unwrap();
    let script = root.join("resources/scripts/demo.yaml");
    let mut text = std::fs::read_to_string(&script).unwrap();
    text.push_str(
        "  tracer:\n    turns:\n      - tool_calls: [{tool: delegate, arguments: {agent: echoer, input: echo}}]\n      \
         - text: traced\n  echoer:\n    turns:\n      - tool_calls: [{tool: trace_echo, arguments: {}}]\n      \
         - text: echoed\n",
    );
    std::fs::write(&script, text).unwrap();

    // stderr is a file: JSON lines without being asked.
    let (child, base) = serve_api_env(root, &[("RUST_LOG", "info")]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = client
        .post(format!("{base}/v1/sessions/traced/requests"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .body(json!({"agent": "tracer", "input": "trace this"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let req: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(req["trace_id"], trace, "{req}");
    let id = req["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let res = client
            .get(format!("{base}/v1/requests/{id}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let r: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
        if r["status"] == "completed" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline && r["status"] != "failed",
            "{r}\n{}",
            worker::serve_log(root)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(child);

    // The trace filter finds the root and (with --all) its child, which shares the trace.
    let out = Command::new(BIN)
        .args([
            "runtime",
            "requests",
            "list",
            "--all",
            "--trace",
            trace,
            "--json",
            "--workspace",
        ])
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = listed["requests"].as_array().expect("a list");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let kid = listed.iter().find(|r| r["id"] != id.as_str()).unwrap();
    assert_eq!(kid["parent_id"], id.as_str(), "{kid}");
    assert!(listed.iter().all(|r| r["trace_id"] == trace), "{listed:?}");
    let kid = kid["id"].as_str().unwrap();

    // The child's command tool saw TRACEPARENT: this trace, a span of its own.
    let seen = std::fs::read_to_string(root.join("work/traced/traceparent.txt")).unwrap();
    let parts: Vec<&str> = seen.split('-').collect();
    assert_eq!(parts.len(), 4, "{seen}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", trace, "01"),
        "{seen}"
    );
    assert!(
        parts[2].len() == 16 && parts[2] != "00f067aa0ba902b7",
        "{seen}"
    );

    // Every line of serve's log is JSON; the lines about the runs carry the
    // request, session and trace ids, the tool call's its call id too.
    let log = worker::serve_log(root);
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let about = |rid: &str, msg: &str| {
        lines.iter().any(|v| {
            v["fields"]["message"] == msg
                && v["span"]["request_id"] == rid
                && v["span"]["session_id"] == "traced"
                && v["span"]["trace_id"] == trace
        })
    };
    for rid in [id.as_str(), kid] {
        for msg in ["run started", "run ended"] {
            assert!(about(rid, msg), "no {msg:?} line for {rid}:\n{log}");
        }
    }
    let call = lines
        .iter()
        .find(|v| v["fields"]["message"] == "tool call ended")
        .unwrap_or_else(|| panic!("no tool call line:\n{log}"));
    assert!(call["span"]["call_id"].as_str().is_some(), "{call}");
    assert_eq!(
        span_values(call, "request_id"),
        vec![id.as_str(), kid],
        "{call}"
    );
    assert_eq!(span_values(call, "trace_id"), vec![trace, trace], "{call}");
}

#[test]
fn an_unknown_log_format_is_refused_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    // Every command reads it (`validate` ends at once where `serve` would run on).
    let out = Command::new(BIN)
        .args(["validate", "--workspace"])
        .arg(dir.path())
        .env("AGENT_HARNESS_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AGENT_HARNESS_LOG_FORMAT=\"xml\"") && err.contains("`json` or `text`"),
        "{err}"
    );
}
