//! MCP tools through the real binary, against the reference MCP server from npm
//! (`@modelcontextprotocol/server-everything`, installed by `scripts/mcp-servers.sh`,
//! which `scripts/test.sh` runs): over stdio and over streamable HTTP (with a
//! header from the environment), an approval required by a per-tool policy, and a
//! server that cannot start seen by `runtime health` with its stderr.

mod common;
mod worker;

use common::Demo;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The server's entry point, or None (test skipped) when it is not installed and
/// `AGENT_HARNESS_REQUIRE_NPM_MCP` is unset; `scripts/test.sh` installs it and sets it.
fn everything() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/mcp-npm");
    let entry = root.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if entry.is_file() {
        return Some(entry.canonicalize().unwrap());
    }
    assert!(
        std::env::var_os("AGENT_HARNESS_REQUIRE_NPM_MCP").is_none(),
        "{} is missing: run scripts/mcp-servers.sh",
        entry.display()
    );
    eprintln!("skipped: the npm MCP server is not installed (scripts/mcp-servers.sh)");
    None
}

/// An agent `mcp` with `tools`, playing `turns` (YAML list items, indented 6).
fn agent(demo: &Demo, tools: &str, turns: &str) {
    std::fs::write(
        demo.root.join("config/agents/mcp.yaml"),
        format!("name: mcp\nmodel: scripted\ntools: {tools}\n"),
    )
    .unwrap();
    let script = demo.root.join("resources/scripts/demo.yaml");
    let mut all = std::fs::read_to_string(&script).unwrap();
    all.push_str(&format!("  mcp:\n    turns:\n{turns}"));
    std::fs::write(script, all).unwrap();
}

fn mcp_yaml(demo: &Demo, text: &str) {
    std::fs::write(demo.root.join("config/mcp.yaml"), text).unwrap();
}

#[test]
fn an_agent_calls_the_npm_server_over_stdio() {
    let Some(entry) = everything() else { return };
    let demo = Demo::new();
    mcp_yaml(
        &demo,
        &format!(
            "servers:\n  everything:\n    command: node\n    args: [\"{}\", stdio]\n",
            entry.display()
        ),
    );
    agent(
        &demo,
        "[everything.*]",
        "      - tool_calls: [{tool: everything.echo, arguments: {message: hello mcp}}]\n      \
         - tool_calls: [{tool: everything.get-sum, arguments: {a: 2, b: 40}}]\n      \
         - tool_calls: [{tool: everything.get-tiny-image, arguments: {}}]\n      - text: done\n",
    );
    demo.run(&["validate"]).ok();
    let r = demo.run(&["run", "--agent", "mcp", "call it"]).ok();
    assert!(r.stdout.contains("Echo: hello mcp"), "{}", r.stdout);
    assert!(r.stdout.contains("42"), "{}", r.stdout);
    assert!(r.stdout.contains("done"), "{}", r.stdout);

    // It replays from its recording: the server is started to list its tools (their
    // schemas and policies), and the calls are answered from the recorded results.
    let listed = demo
        .run(&["runtime", "requests", "list", "--json"])
        .ok()
        .json();
    let id = listed["requests"][0]["id"].as_str().unwrap().to_string();
    // The image came back as an artifact of the request, not as base64 for the model.
    let arts = demo
        .run(&["runtime", "artifacts", "list", &id, "--json"])
        .ok()
        .json();
    let png = arts["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "get-tiny-image-image-1.png")
        .unwrap_or_else(|| panic!("no image artifact: {arts:#}"));
    assert_eq!(png["media_type"], "image/png");
    let bytes = std::process::Command::new(env!("CARGO_BIN_EXE_agent-harness"))
        .args([
            "runtime",
            "artifacts",
            "cat",
            &id,
            "get-tiny-image-image-1.png",
            "--workspace",
        ])
        .arg(&demo.root)
        .output()
        .unwrap()
        .stdout;
    assert!(
        bytes.starts_with(b"\x89PNG"),
        "{:?}",
        &bytes[..bytes.len().min(8)]
    );
    let replayed = demo
        .run(&["runtime", "replay", "request", &id, "--json"])
        .ok()
        .json();
    assert_eq!(replayed["identical"], true, "{replayed:#}");
    assert_eq!(replayed["steps_compared"], 7, "{replayed:#}");
}

#[test]
fn a_per_tool_policy_asks_for_approval() {
    let Some(entry) = everything() else { return };
    let demo = Demo::new();
    mcp_yaml(
        &demo,
        &format!(
            "servers:\n  everything:\n    command: node\n    args: [\"{}\"]\n    tools:\n      get-sum: {{ approval: required }}\n",
            entry.display()
        ),
    );
    agent(
        &demo,
        "[everything.echo, everything.get-sum]",
        "      - tool_calls: [{tool: everything.get-sum, arguments: {a: 1, b: 2}}]\n      - text: summed\n",
    );
    let r = demo.run(&["run", "--agent", "mcp", "add"]).ok();
    assert!(r.stdout.contains("paused for approval"), "{}", r.stdout);
    let list = demo.run(&["runtime", "approvals", "list", "--json"]).ok();
    let a = &list.json()["approvals"][0];
    assert_eq!(a["tool"], "everything.get-sum");
    let (apr, req) = (a["id"].as_str().unwrap(), a["request_id"].as_str().unwrap());
    let ses = a["session_id"].as_str().unwrap();
    let r = demo
        .run(&[
            "runtime",
            "approvals",
            "approve",
            apr,
            "--session",
            ses,
            "--request",
            req,
        ])
        .ok();
    assert!(r.stdout.contains("summed"), "{}", r.stdout);
}

/// A free TCP port on localhost.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_agent_calls_the_npm_server_over_streamable_http() {
    let Some(entry) = everything() else { return };
    let port = free_port();
    let mut server = std::process::Command::new("node")
        .arg(&entry)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the HTTP MCP server never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let demo = Demo::new();
    mcp_yaml(
        &demo,
        &format!(
            "servers:\n  web:\n    url: http://127.0.0.1:{port}/mcp\n    headers:\n      X-Api-Key: \"${{MCP_TEST_TOKEN}}\"\n"
        ),
    );
    agent(
        &demo,
        "[web.get-sum]",
        "      - tool_calls: [{tool: web.get-sum, arguments: {a: 20, b: 22}}]\n      - text: done\n",
    );
    let out = std::process::Command::new(common::BIN)
        .args(["run", "--agent", "mcp", "sum", "--workspace"])
        .arg(&demo.root)
        .env("NO_COLOR", "1")
        .env("MCP_TEST_TOKEN", "tok-9f8e7d")
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("42") && stdout.contains("done"), "{stdout}");
}

#[test]
fn a_server_that_cannot_start_fails_health_with_its_stderr() {
    let Some(entry) = everything() else { return };
    let demo = Demo::new();
    mcp_yaml(
        &demo,
        &format!(
            "servers:\n  everything:\n    command: node\n    args: [\"{}\"]\n  broken:\n    command: node\n    \
             args: [-e, \"console.error('cannot reach the database'); process.exit(2)\"]\n",
            entry.display()
        ),
    );
    agent(
        &demo,
        "[everything.echo, broken.anything]",
        "      - tool_calls: [{tool: everything.echo, arguments: {message: still works}}]\n      - text: done\n",
    );
    let serve = worker::serve(&demo.root);
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        let r = demo.run(&["runtime", "health", "--json"]);
        let text = r.stdout.clone();
        if text.contains("cannot reach the database") && text.contains("up, ") {
            break r.json();
        }
        assert!(
            Instant::now() < deadline,
            "health never showed the servers:\n{text}\n{}",
            worker::serve_log(&demo.root)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let checks = health["checks"].as_array().unwrap();
    let find = |name: &str| checks.iter().find(|c| c["name"] == name).unwrap().clone();
    let broken = find("mcp.broken");
    assert_eq!(broken["status"], "fail");
    let detail = broken["detail"].as_str().unwrap();
    assert!(detail.starts_with("down: "), "{detail}");
    assert!(detail.contains("cannot reach the database"), "{detail}");
    assert_eq!(find("mcp.everything")["status"], "ok");
    // The worker still runs requests; the healthy server's tools work.
    let r = demo.run(&["run", "--agent", "mcp", "echo"]).ok();
    assert!(r.stdout.contains("Echo: still works"), "{}", r.stdout);
    worker::terminate(serve);
}
