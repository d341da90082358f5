//! The official MCP inspector's CLI (`@modelcontextprotocol/inspector` from the npm
//! registry, pinned by `tests/mcp-npm/package-lock.json` and installed by
//! `scripts/mcp-servers.sh`) against `agent-harness mcp` on stdio and against `/mcp`
//! of a real `serve --listen` with a token header: the tools it lists, each tool
//! called, a pending approval resolved (and, over HTTP, refused to a viewer).

mod common;
mod worker;

use common::{BIN, Demo};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The inspector's entry point, or None (test skipped) when it is not installed and
/// `AGENT_HARNESS_REQUIRE_NPM_MCP` is unset; `scripts/test.sh` installs it and sets it.
fn inspector() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/mcp-npm");
    let entry =
        root.join("node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js");
    if entry.is_file() {
        return Some(entry.canonicalize().unwrap());
    }
    assert!(
        std::env::var_os("AGENT_HARNESS_REQUIRE_NPM_MCP").is_none(),
        "{} is missing: run scripts/mcp-servers.sh",
        entry.display()
    );
    eprintln!("skipped: the MCP inspector is not installed (scripts/mcp-servers.sh)");
    None
}

/// One run of `inspector --cli --format json ARGS`: its exit code (0, or 5 for a
/// tool that answered with an error) and the `result` it printed, or what it said.
struct Inspected {
    code: i32,
    out: Value,
}

fn inspect(entry: &Path, home: &Path, args: &[&str]) -> Inspected {
    let out = Command::new("node")
        .arg(entry)
        .args(["--cli", "--format", "json"])
        .args(args)
        // Its catalog and client settings go under HOME: a test folder.
        .env("HOME", home)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let result = serde_json::from_str::<Value>(&stdout)
        .ok()
        .and_then(|v| v.get("result").cloned());
    Inspected {
        code: out.status.code().unwrap_or(-1),
        out: result.unwrap_or_else(|| {
            Value::String(format!(
                "{:?}\nstdout: {stdout}\nstderr: {stderr}",
                out.status
            ))
        }),
    }
}

/// The names of `tools/list`'s answer, sorted.
fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {v}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

/// A `tools/call` answer: (is_error, its text parsed as JSON, or the text). The
/// inspector exits 5 for a tool error and 0 otherwise.
fn result(r: &Inspected) -> (bool, Value) {
    let v = &r.out;
    let text = v["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content in {v}"));
    let parsed = serde_json::from_str(text).unwrap_or(Value::String(text.to_string()));
    let is_error = v["isError"].as_bool().unwrap_or(false);
    assert_eq!(r.code, if is_error { 5 } else { 0 }, "{v}");
    (is_error, parsed)
}

const ALL_TOOLS: [&str; 5] = [
    "get_request",
    "health",
    "list_pending_approvals",
    "list_requests",
    "resolve_approval",
];

#[test]
fn the_inspector_lists_and_calls_the_tools_over_stdio() {
    let Some(entry) = inspector() else { return };
    let d = Demo::new();
    let p = d.paused();
    let home = tempfile::tempdir().unwrap();
    let root = d.root.to_str().unwrap();
    let now = format!("AGENT_HARNESS_NOW={}", common::T3);
    // The inspector's options, then `--` and the server's command line.
    let server = ["--", BIN, "mcp", "--workspace", root, "--as", "inspector"];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = ["-e", now.as_str()]
            .into_iter()
            .chain(extra.iter().copied())
            .chain(server)
            .collect();
        inspect(&entry, home.path(), &args)
    };

    let listed = run(&["--method", "tools/list"]);
    assert_eq!(listed.code, 0, "{}", listed.out);
    assert_eq!(names(&listed.out), ALL_TOOLS);

    let got = run(&[
        "--method",
        "tools/call",
        "--tool-name",
        "list_requests",
        "--tool-arg",
        "status=waiting_approval",
    ]);
    let (err, list) = result(&got);
    assert!(!err, "{list}");
    assert_eq!(list["requests"][0]["id"], p.request.as_str());

    let got = run(&[
        "--method",
        "tools/call",
        "--tool-name",
        "get_request",
        "--tool-arg",
        &format!("id={}", p.request),
    ]);
    let (err, tree) = result(&got);
    assert!(!err, "{tree}");
    assert_eq!(tree["stop"]["kind"], "approval");

    let got = run(&[
        "--method",
        "tools/call",
        "--tool-name",
        "list_pending_approvals",
    ]);
    let (err, pending) = result(&got);
    assert!(!err, "{pending}");
    assert_eq!(pending["approvals"][0]["id"], p.approval.as_str());

    let got = run(&["--method", "tools/call", "--tool-name", "health"]);
    let (err, health) = result(&got);
    assert!(!err, "{health}");
    assert!(
        health["checks"].as_array().is_some_and(|c| !c.is_empty()),
        "{health}"
    );

    let got = run(&[
        "--method",
        "tools/call",
        "--tool-name",
        "get_request",
        "--tool-arg",
        "id=req_01jzzzzzzzzzzzzzzzzzzzzzzz",
    ]);
    let (err, missing) = result(&got);
    assert!(err);
    assert!(
        missing.as_str().unwrap().starts_with("not_found:"),
        "{missing}"
    );

    let got = run(&[
        "--method",
        "tools/call",
        "--tool-name",
        "resolve_approval",
        "--tool-arg",
        &format!("approval_id={}", p.approval),
        "decision=approve",
        "message=checked in the inspector",
    ]);
    let (err, resolved) = result(&got);
    assert!(!err, "{resolved}");
    assert_eq!(resolved["approval"]["status"], "approved");
    assert_eq!(resolved["approval"]["decided_by"], "inspector");
    assert_eq!(resolved["approval"]["decided_by_kind"], "mcp");
}

fn stop(mut child: Child) {
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exited {status:?}");
}

const OPERATOR: &str = "op-token-for-the-inspector";
const VIEWER: &str = "viewer-token-for-the-inspector";

#[tokio::test]
async fn the_inspector_lists_and_calls_the_tools_over_http_with_a_token_header() {
    let Some(entry) = inspector() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    harness_config::init(root, false).unwrap();
    std::fs::write(
        root.join("config/server.yaml"),
        "tokens:\n  - name: ops\n    role: operator\n    env: OP_TOKEN\n  - name: dash\n    role: viewer\n    env: VIEW_TOKEN\n",
    )
    .unwrap();
    let (child, base, _) = worker::serve_listening(
        root,
        "127.0.0.1:0",
        &[("OP_TOKEN", OPERATOR), ("VIEW_TOKEN", VIEWER)],
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let (id, approval) =
        worker::admit_until_approval(&http, &base, OPERATOR, "insp", "ship the release notes")
            .await;

    let home = tempfile::tempdir().unwrap();
    let url = format!("{base}/mcp");
    let as_token = |token: &str, extra: &[&str]| {
        let header = format!("Authorization: Bearer {token}");
        let mut args: Vec<&str> = vec![&url, "--transport", "http", "--header", &header];
        args.extend_from_slice(extra);
        inspect(&entry, home.path(), &args)
    };

    let listed = as_token(VIEWER, &["--method", "tools/list"]);
    assert_eq!(listed.code, 0, "{}", listed.out);
    assert_eq!(names(&listed.out), ALL_TOOLS[..4]);
    let got = as_token(
        VIEWER,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "get_request",
            "--tool-arg",
            &format!("id={id}"),
        ],
    );
    let (err, tree) = result(&got);
    assert!(!err, "{tree}");
    assert_eq!(tree["stop"]["kind"], "approval");
    // Not listed for a viewer, so the inspector will not call it (the server's own
    // refusal of a viewer's call is checked in mcp_http.rs with rmcp's client).
    let got = as_token(
        VIEWER,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "resolve_approval",
            "--tool-arg",
            &format!("approval_id={approval}"),
            "decision=approve",
        ],
    );
    assert_ne!(got.code, 0);
    assert!(
        got.out
            .as_str()
            .is_some_and(|e| e.contains("tool_not_found")),
        "{}",
        got.out
    );

    let listed = as_token(OPERATOR, &["--method", "tools/list"]);
    assert_eq!(names(&listed.out), ALL_TOOLS);
    let got = as_token(
        OPERATOR,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "resolve_approval",
            "--tool-arg",
            &format!("approval_id={approval}"),
            "decision=approve",
        ],
    );
    let (err, resolved) = result(&got);
    assert!(!err, "{resolved}");
    assert_eq!(resolved["approval"]["decided_by"], "ops");
    assert_eq!(resolved["approval"]["decided_by_kind"], "token");

    // The worker finishes the request.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let res = http
            .get(format!("{base}/v1/requests/{id}"))
            .bearer_auth(VIEWER)
            .send()
            .await
            .unwrap();
        let r: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
        if r["status"] == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "never completed: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(child);
}
