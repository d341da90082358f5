//! `serve` with `telemetry.otlp_endpoint` exports its spans over OTLP/HTTP: a tiny
//! receiver in the test decodes the protobuf and checks the trace, the nesting, the
//! service name and the header read from the environment (never logged).

use harness_core::*;
use harness_engine::{Admit, Harness};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_agent-harness");
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// The caller's span, named by the traceparent the request is admitted with.
const CALLER: &str = "00f067aa0ba902b7";
const TOKEN: &str = "Bearer s3cret-otlp-token";

struct Post {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Post {
    fn header(&self, name: &str) -> Option<&str> {
        let h = self.headers.iter().find(|(k, _)| k == name);
        h.map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 server answering every request 200 and passing it on.
fn receiver() -> (String, mpsc::Receiver<Post>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || connection(stream, tx));
        }
    });
    (format!("http://{addr}"), rx)
}

fn connection(mut stream: TcpStream, tx: mpsc::Sender<Post>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or_default().to_string();
        let (mut headers, mut len) = (vec![], 0);
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let Some((k, v)) = h.trim_end().split_once(':') else {
                break;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "content-length" {
                len = v.parse().unwrap();
            }
            headers.push((k, v));
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        let _ = tx.send(Post {
            path,
            headers,
            body,
        });
    }
}

fn attr(s: &Span, key: &str) -> Option<String> {
    let kv = s.attributes.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        Value::StringValue(v) => Some(v.clone()),
        Value::IntValue(v) => Some(v.to_string()),
        Value::BoolValue(v) => Some(v.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn workspace(root: &Path, endpoint: &str) {
    harness_config::init(root, false).unwrap();
    let append = |rel: &str, more: &str| {
        let path = root.join(rel);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}{more}")).unwrap();
    };
    append(
        "config/workspace.yaml",
        &format!(
            "telemetry:\n  otlp_endpoint: {endpoint}\n  service_name: harness-test\n  \
             headers_env:\n    authorization: OTLP_TEST_TOKEN\n"
        ),
    );
    // A root that delegates to a child whose command tool reports its TRACEPARENT.
    append(
        "config/tools.yaml",
        "  trace_echo:\n    command: [sh, -c, 'printf \"%s\" \"$TRACEPARENT\" > traceparent.txt']\n    \
         arguments: { type: object }\n    approval: never\n",
    );
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
    append(
        "resources/scripts/demo.yaml",
        "  tracer:\n    turns:\n      - tool_calls: [{tool: delegate, arguments: {agent: echoer, input: echo}}]\n      \
         - text: traced\n  echoer:\n    turns:\n      - tool_calls: [{tool: trace_echo, arguments: {}}]\n      \
         - text: echoed\n",
    );
}

#[test]
fn serve_exports_the_requests_spans_over_otlp_http() {
    let (endpoint, posts) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    workspace(root, &endpoint);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = Harness::open(root).unwrap();
    let req = rt
        .block_on(h.admit(Admit {
            agent: "tracer".into(),
            input: "trace it".into(),
            traceparent: Some(format!("00-{TRACE}-{CALLER}-01")),
            ..Default::default()
        }))
        .unwrap()
        .request;

    let log = root.join("serve.log");
    let mut serve = Command::new(BIN)
        .arg("--workspace")
        .arg(root)
        .arg("serve")
        .env("OTLP_TEST_TOKEN", TOKEN)
        .env_remove(harness_otel_env())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rt.block_on(h.get_request(&req.id)).unwrap().status != RequestStatus::Completed {
        assert!(Instant::now() < deadline, "the request did not complete");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A graceful stop exports what the batch processor still holds.
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    assert!(serve.wait().unwrap().success());

    let posts: Vec<Post> = posts.try_iter().collect();
    assert!(!posts.is_empty(), "nothing was exported");
    let mut spans = vec![];
    for p in &posts {
        assert_eq!(p.path, "/v1/traces");
        assert_eq!(p.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(p.header("authorization"), Some(TOKEN));
        let export = ExportTraceServiceRequest::decode(p.body.as_slice()).unwrap();
        for rs in export.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .unwrap()
                .attributes
                .iter()
                .find(|kv| kv.key == "service.name");
            assert_eq!(
                service
                    .and_then(|kv| kv.value.clone())
                    .and_then(|v| v.value),
                Some(Value::StringValue("harness-test".into()))
            );
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
    }
    let trace = hex_bytes(TRACE);
    let ours: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace).collect();
    let named = |name: &'static str| ours.iter().copied().filter(move |s| s.name == name);
    let by_id = |id: &[u8]| ours.iter().copied().find(|s| s.span_id == id);

    // The root's request span: a child of the caller's span, which `serve` read from
    // the request's stored traceparent.
    let root_span = named("request")
        .find(|s| attr(s, "request_id").as_deref() == Some(req.id.as_str()))
        .expect("the root's request span");
    assert_eq!(root_span.parent_span_id, hex_bytes(CALLER));
    assert_eq!(attr(root_span, "outcome").as_deref(), Some("completed"));
    assert_eq!(attr(root_span, "agent").as_deref(), Some("tracer"));
    // The child's request span is inside the root's `delegate` call, inside a step.
    let child_span = named("request")
        .find(|s| attr(s, "agent").as_deref() == Some("echoer"))
        .expect("the child's request span");
    let delegate = by_id(&child_span.parent_span_id).expect("the delegate call");
    assert_eq!(delegate.name, "tool.call");
    assert_eq!(attr(delegate, "tool").as_deref(), Some("delegate"));
    let step = by_id(&delegate.parent_span_id).unwrap();
    assert_eq!(step.name, "step");
    assert_eq!(step.parent_span_id, root_span.span_id);
    assert_eq!(named("model.call").count(), 4, "two turns per agent");

    // The command tool's TRACEPARENT names its `tool.call` span.
    let echo = named("tool.call")
        .find(|s| attr(s, "tool").as_deref() == Some("trace_echo"))
        .unwrap();
    assert_eq!(attr(echo, "outcome").as_deref(), Some("ok"));
    let seen = find_file(&root.join("work"), "traceparent.txt").expect("traceparent.txt");
    let seen = std::fs::read_to_string(seen).unwrap();
    assert_eq!(
        seen,
        format!("00-{TRACE}-{}-01", hex(&echo.span_id)),
        "TRACEPARENT of the command"
    );

    // The header's value is a secret: not in the log.
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("s3cret-otlp-token"), "{log}");
}

/// The standard endpoint variable, so a developer's own setting cannot redirect the test.
fn harness_otel_env() -> &'static str {
    "OTEL_EXPORTER_OTLP_ENDPOINT"
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn find_file(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}
