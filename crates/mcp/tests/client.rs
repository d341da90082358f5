//! The MCP client against the small rmcp server of `examples/test_server.rs`
//! (built by `cargo test` with the tests): listing, calls, tool errors, cancel as
//! `notifications/cancelled`, a server that dies and is restarted, one that
//! cannot start (its stderr in the status), timeouts, and secrets redacted.

use harness_core::Redactor;
use harness_mcp::{McpTools, ServerState};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn test_server() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let server = dir.join("examples/test_server");
    assert!(
        server.is_file(),
        "{} is built by `cargo test`",
        server.display()
    );
    server
}

/// A demo workspace whose mcp.yaml is `servers` (YAML under `servers:`).
fn workspace(dir: &Path, servers: &str) -> harness_config::Workspace {
    harness_config::init(dir, false).unwrap();
    let yaml = format!("servers:\n{servers}");
    std::fs::write(dir.join("config/mcp.yaml"), yaml).unwrap();
    harness_config::load(dir).unwrap()
}

fn stdio_server(name: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    command: {}\n{extra}",
        test_server().display()
    )
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn lists_tools_and_calls_them() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(
        dir.path(),
        &stdio_server(
            "t",
            "    tools:\n      count: { approval: required, idempotent: true }\n",
        ),
    );
    let mcp = McpTools::new(&ws, None, Redactor::default());
    mcp.start().await;
    let status = mcp.status();
    assert_eq!(status[0].state, ServerState::Up, "{status:?}");
    assert_eq!(status[0].tools, 6);

    let names: Vec<String> = mcp.tools_of("t").into_iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        ["t.echo", "t.add", "t.fail", "t.slow", "t.count", "t.crash"]
    );
    let echo = mcp.tool("t.echo").unwrap();
    assert_eq!(echo.config.description, "Returns its text");
    assert_eq!(echo.config.arguments["required"], json!(["text"]));
    let count = mcp.tool("t.count").unwrap().config;
    assert_eq!(count.approval, harness_config::ApprovalPolicy::Required);
    assert!(count.idempotent && !echo.config.idempotent);
    assert!(mcp.tool("t.nope").is_none() && mcp.owns("t.nope") && !mcp.owns("u.echo"));

    let none = CancellationToken::new();
    let out = mcp.call("t.echo", &json!({"text": "hi"}), &none).await;
    assert!(out.ok && out.content == "hi", "{out:?}");
    let out = mcp.call("t.add", &json!({"a": 2, "b": 40}), &none).await;
    assert_eq!((out.ok, out.content.as_str()), (true, "42"));
    let out = mcp.call("t.fail", &json!({}), &none).await;
    assert_eq!(
        (out.ok, out.content.as_str()),
        (false, "it failed on purpose")
    );
    let out = mcp.call("t.nope", &json!({}), &none).await;
    assert!(!out.ok && out.content.contains("no tool nope"), "{out:?}");
    let out = mcp.call("t.echo", &json!("text"), &none).await;
    assert!(
        !out.ok && out.content.contains("must be a JSON object"),
        "{out:?}"
    );
    let out = mcp.call("u.echo", &json!({}), &none).await;
    assert_eq!(out.content, "unknown MCP server `u`");
    mcp.shutdown().await;
    assert_eq!(mcp.status()[0].state, ServerState::Stopped);
    let out = mcp.call("t.echo", &json!({"text": "hi"}), &none).await;
    assert_eq!(out.content, "MCP server `t` is stopped");
}

#[tokio::test]
async fn a_cancelled_call_is_cancelled_at_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let ws = workspace(
        dir.path(),
        &stdio_server(
            "t",
            &format!("    env: {{ TEST_SERVER_LOG: {} }}\n", log.display()),
        ),
    );
    let mcp = McpTools::new(&ws, None, Redactor::default());
    mcp.start().await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
    });
    let out = mcp.call("t.slow", &json!({"ms": 30_000}), &cancel).await;
    assert_eq!(
        (out.ok, out.content.as_str()),
        (false, "call to `t.slow` cancelled")
    );
    wait_until("the server to see the cancel", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.starts_with("cancelled "))
    })
    .await;
    mcp.shutdown().await;
}

#[tokio::test]
async fn a_call_past_its_timeout_fails_and_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let ws = workspace(
        dir.path(),
        &stdio_server(
            "t",
            &format!(
                "    timeout: 200ms\n    env: {{ TEST_SERVER_LOG: {} }}\n",
                log.display()
            ),
        ),
    );
    let mcp = McpTools::new(&ws, None, Redactor::default());
    mcp.start().await;
    let out = mcp
        .call("t.slow", &json!({"ms": 30_000}), &CancellationToken::new())
        .await;
    assert!(!out.ok && out.content.contains("timed out"), "{out:?}");
    wait_until("the server to see the cancel", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.starts_with("cancelled "))
    })
    .await;
    mcp.shutdown().await;
}

#[tokio::test]
async fn a_server_that_dies_fails_its_calls_and_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let status_file = dir.path().join("mcp-servers.json");
    let ws = workspace(dir.path(), &stdio_server("t", ""));
    let mcp = McpTools::new(&ws, Some(status_file.clone()), Redactor::default());
    mcp.start().await;
    let none = CancellationToken::new();
    let out = mcp.call("t.crash", &json!({}), &none).await;
    assert!(!out.ok, "{out:?}");
    wait_until("the server to be seen down", || {
        mcp.status()[0].state == ServerState::Down
    })
    .await;
    let down = mcp.status().remove(0);
    assert!(
        down.error.as_deref().unwrap().contains("closed"),
        "{down:?}"
    );
    assert!(
        down.stderr_tail
            .contains(&"crashing on request".to_string()),
        "{down:?}"
    );
    let out = mcp.call("t.echo", &json!({"text": "hi"}), &none).await;
    assert!(
        !out.ok
            && out
                .content
                .starts_with("MCP server `t` is not running: the connection closed"),
        "{out:?}"
    );
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&status_file).unwrap()).unwrap();
    assert_eq!(file["pid"], json!(std::process::id()));
    // Restarted after the first backoff (1 s); its tools are back.
    wait_until("the restart", || mcp.status()[0].state == ServerState::Up).await;
    assert_eq!(mcp.status()[0].restarts, 1);
    let out = mcp.call("t.echo", &json!({"text": "again"}), &none).await;
    assert_eq!((out.ok, out.content.as_str()), (true, "again"));
    mcp.shutdown().await;
}

#[tokio::test]
async fn a_server_that_cannot_start_is_a_state_with_its_stderr_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(
        dir.path(),
        &format!(
            "{}{}",
            stdio_server(
                "bad",
                "    env: { TEST_SERVER_FAIL_START: \"1\", TEST_SERVER_STDERR: \"token s3cr3t-value\" }\n"
            ),
            "  missing:\n    command: /nonexistent/mcp-server\n"
        ),
    );
    let redactor = Redactor::new(["s3cr3t-value".to_string()]);
    let mcp = McpTools::new(&ws, None, redactor);
    mcp.start().await;
    let status = mcp.status();
    let bad = &status[0];
    assert_eq!((bad.name.as_str(), bad.state), ("bad", ServerState::Down));
    assert!(
        bad.error.as_deref().unwrap().contains("handshake"),
        "{bad:?}"
    );
    assert!(
        bad.stderr_tail
            .iter()
            .any(|l| l.contains("boom: cannot open the database")),
        "{bad:?}"
    );
    assert!(!format!("{bad:?}").contains("s3cr3t-value"), "{bad:?}");
    assert!(bad.retry_in_secs.is_some());
    let missing = &status[1];
    assert_eq!(missing.state, ServerState::Down);
    assert!(
        missing
            .error
            .as_deref()
            .unwrap()
            .starts_with("cannot start `/nonexistent/mcp-server`"),
        "{missing:?}"
    );
    let out = mcp
        .call("bad.echo", &json!({}), &CancellationToken::new())
        .await;
    assert!(
        out.content.starts_with("MCP server `bad` is not running"),
        "{out:?}"
    );
    mcp.shutdown().await;
}
