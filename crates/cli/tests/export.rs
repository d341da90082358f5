//! `runtime export` and `runtime verify-export` as whole processes against the
//! demo workspace: a request paused on approval is exported, verified, then
//! tampered with; bad input exits 2 and names the id.

use harness_core::*;
use harness_engine::{Harness, WorkerOptions, run_until_settled};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_agent-harness");
const SESSION: &str = "session-1";

/// The demo workspace with one request paused on its `send_mail` approval.
async fn waiting() -> (tempfile::TempDir, RequestId) {
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    let h = Harness::open(dir.path()).unwrap();
    let session = SessionId::parse(SESSION).unwrap();
    let req = h
        .request(Some(session), "assistant", "ship the release notes")
        .await
        .unwrap();
    let fast = WorkerOptions {
        poll: std::time::Duration::from_millis(20),
        ..Default::default()
    };
    let r = run_until_settled(&h, &req.id, fast).await.unwrap();
    assert_eq!(r.status, RequestStatus::WaitingApproval, "{r:?}");
    (dir, req.id)
}

fn cli(root: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--workspace")
        .arg(root)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out:?}"))
}

fn export_request(root: &Path, req: &RequestId, extra: &[&str]) -> Output {
    let mut args = vec![
        "runtime",
        "export",
        "request",
        "--session",
        SESSION,
        "--request",
        req.as_str(),
        "--artifact-contents",
        "--health",
    ];
    args.extend_from_slice(extra);
    cli(root, &args)
}

fn verify(root: &Path, pkg: &Path, json_out: bool) -> Output {
    let pkg = pkg.to_str().unwrap();
    let mut args = vec!["runtime", "verify-export", pkg];
    if json_out {
        args.push("--json");
    }
    cli(root, &args)
}

#[tokio::test]
async fn exported_request_verifies_and_tampering_is_reported_by_file() {
    let (dir, req) = waiting().await;
    let pkg = dir.path().join("evidence");
    let out = export_request(
        dir.path(),
        &req,
        &["--out", pkg.to_str().unwrap(), "--json"],
    );
    assert!(out.status.success(), "{out:?}");
    let summary = json(&out);
    assert_eq!(summary["path"], pkg.to_str().unwrap());
    assert_eq!(
        summary["requests"], 2,
        "the request and its delegated child"
    );
    assert!(summary["events"].as_u64().unwrap() > 0);
    assert!(pkg.join("manifest.json").is_file() && pkg.join("health.json").is_file());

    let out = verify(dir.path(), &pkg, true);
    assert!(out.status.success(), "{out:?}");
    let report = json(&out);
    assert_eq!(report["ok"], true);
    assert_eq!(report["checked"], summary["files"].as_u64().unwrap() - 1);

    let events = pkg.join("events.jsonl");
    let mut bytes = std::fs::read(&events).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&events, bytes).unwrap();
    let out = verify(dir.path(), &pkg, true);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report = json(&out);
    assert_eq!(report["ok"], false);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["file"], "events.jsonl");

    // The human report names the file too.
    let out = verify(dir.path(), &pkg, false);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("events.jsonl"), "{text}");
    assert!(text.contains("sha256 mismatch"), "{text}");
}

#[tokio::test]
async fn default_folder_and_tar_gz_session_export() {
    let (dir, req) = waiting().await;
    let out = export_request(dir.path(), &req, &["--json"]);
    assert!(out.status.success(), "{out:?}");
    let path = json(&out)["path"].as_str().unwrap().to_string();
    let exports = dir.path().canonicalize().unwrap().join("exports");
    assert!(Path::new(&path).starts_with(&exports), "{path}");
    assert!(verify(dir.path(), Path::new(&path), true).status.success());

    let archive = dir.path().join("session.tar.gz");
    let out = cli(
        dir.path(),
        &[
            "runtime",
            "export",
            "session",
            "--session",
            SESSION,
            "--out",
            archive.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(archive.to_str().unwrap()),
        "the path is printed: {text}"
    );
    let out = verify(dir.path(), &archive, true);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json(&out)["ok"], true);
}

#[tokio::test]
async fn bad_input_exits_2_names_the_id_and_writes_nothing() {
    let (dir, req) = waiting().await;
    let missing = RequestId::generate();
    let out = export_request(dir.path(), &missing, &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "request `{missing}` not found in session `session-1`"
        )),
        "{err}"
    );

    let out = cli(
        dir.path(),
        &["runtime", "export", "session", "--session", "nope"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("session `nope` not found"));

    let out = cli(
        dir.path(),
        &[
            "runtime",
            "export",
            "request",
            "--session",
            "other",
            "--request",
            req.as_str(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to session `session-1`"));
    assert!(!dir.path().join("exports").exists(), "nothing written");

    let out = verify(dir.path(), &dir.path().join("no-such-export"), false);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
