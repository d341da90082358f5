//! `agent-harness mcp` as an MCP client sees it (rmcp's client over stdio, the real
//! binary): the tools listed, a paused request found with its pending approval and
//! where it stopped, the approval resolved once (a second resolution is refused
//! with the conflict code), and `--read-only` offering no way to resolve.

mod common;

use common::{BIN, Demo};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

async fn connect(d: &Demo, extra: &[&str]) -> RunningService<RoleClient, ()> {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("mcp")
        .arg("--workspace")
        .arg(&d.root)
        .args(extra)
        .env("AGENT_HARNESS_NOW", common::T3);
    ().serve(TokioChildProcess::new(cmd).unwrap())
        .await
        .unwrap()
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

#[tokio::test]
async fn an_mcp_client_inspects_and_resolves_an_approval() {
    let d = Demo::new();
    let p = d.paused();
    let c = connect(&d, &["--as", "claude"]).await;
    let mut names: Vec<String> = c
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "get_request",
            "health",
            "list_pending_approvals",
            "list_requests",
            "resolve_approval"
        ]
    );

    let (err, list) = call(&c, "list_requests", json!({"status": "waiting_approval"})).await;
    assert!(!err, "{list}");
    assert_eq!(list["requests"][0]["id"], p.request.as_str());
    let (_, pending) = call(&c, "list_pending_approvals", json!({})).await;
    assert_eq!(pending["approvals"][0]["id"], p.approval.as_str());
    assert_eq!(pending["approvals"][0]["tool"], "send_mail");
    let short = &p.request[..20];
    let (err, ambiguous) = call(&c, "get_request", json!({"id": "req_01"})).await;
    assert!(err);
    assert!(
        ambiguous.as_str().unwrap().starts_with("invalid_input:"),
        "{ambiguous}"
    );
    let (err, got) = call(&c, "get_request", json!({"id": short})).await;
    assert!(!err, "{got}");
    assert_eq!(got["tree"]["request"]["id"], p.request.as_str());
    assert_eq!(got["stop"]["kind"], "approval");
    assert_eq!(got["next"]["action"], "approve");
    let (_, health) = call(&c, "health", json!({})).await;
    assert!(
        health["checks"].as_array().is_some_and(|c| !c.is_empty()),
        "{health}"
    );

    let (err, missing) = call(
        &c,
        "get_request",
        json!({"id": "req_01jzzzzzzzzzzzzzzzzzzzzzzz"}),
    )
    .await;
    assert!(err);
    assert!(
        missing.as_str().unwrap().starts_with("not_found:"),
        "{missing}"
    );

    let (err, resolved) = call(
        &c,
        "resolve_approval",
        json!({"approval_id": p.approval, "decision": "approve", "message": "fine by me"}),
    )
    .await;
    assert!(!err, "{resolved}");
    assert_eq!(resolved["approval"]["status"], "approved");
    assert_eq!(resolved["approval"]["decided_by"], "claude");
    assert_eq!(resolved["approval"]["decided_by_kind"], "mcp");
    assert!(
        resolved["next"].as_str().unwrap().contains("no worker"),
        "{resolved}"
    );
    let (err, again) = call(
        &c,
        "resolve_approval",
        json!({"approval_id": p.approval, "decision": "reject"}),
    )
    .await;
    assert!(err, "a second resolution was applied: {again}");
    assert!(again.as_str().unwrap().starts_with("conflict:"), "{again}");
    c.cancel().await.unwrap();

    let shown = d
        .at(common::T3, &["runtime", "approvals", "list", "--json"])
        .ok()
        .json();
    assert_eq!(shown["approvals"][0]["status"], "approved");
    assert_eq!(shown["approvals"][0]["message"], "fine by me");

    let ro = connect(&d, &["--read-only"]).await;
    let tools = ro.list_all_tools().await.unwrap();
    assert!(tools.iter().all(|t| t.name != "resolve_approval"));
    let (err, refused) = call(
        &ro,
        "resolve_approval",
        json!({"approval_id": p.approval, "decision": "approve"}),
    )
    .await;
    assert!(err, "{refused}");
    ro.cancel().await.unwrap();
}
