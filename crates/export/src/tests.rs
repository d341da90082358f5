//! Export and verify against the demo workspace: a request paused on approval
//! (or approved and completed), exported, then tampered with.

use super::redact;
use super::*;
use harness_core::*;
use harness_engine::{WorkerOptions, run_until_settled};
use serde_json::Value;
use std::path::Path;

const SESSION: &str = "session-1";

fn demo() -> (tempfile::TempDir, Harness) {
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    let h = Harness::open(dir.path()).unwrap();
    (dir, h)
}

fn fast() -> WorkerOptions {
    WorkerOptions {
        poll: std::time::Duration::from_millis(20),
        ..Default::default()
    }
}

fn session() -> SessionId {
    SessionId::parse(SESSION).unwrap()
}

/// A request of `session-1` paused on its `send_mail` approval (after delegating).
async fn waiting(h: &Harness) -> Request {
    let req = h
        .request(Some(session()), "assistant", "ship the release notes")
        .await
        .unwrap();
    let r = run_until_settled(h, &req.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::WaitingApproval, "{r:?}");
    r
}

/// The same request approved by alice and run to completion (it then has an artifact).
async fn completed(h: &Harness) -> Request {
    let req = waiting(h).await;
    let a = h
        .list_approvals(ApprovalFilter::default())
        .await
        .unwrap()
        .remove(0);
    h.resolve_approval(ResolveApproval {
        session_id: session(),
        request_id: req.id.clone(),
        approval_id: a.id,
        decision: Decision::Approved,
        message: Some("ok".into()),
        decided_by: Actor::new(ActorKind::Cli, "alice"),
        edited_arguments: None,
    })
    .await
    .unwrap();
    let r = run_until_settled(h, &req.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::Completed, "{r:?}");
    r
}

fn opts(request: Option<&RequestId>, out: Option<&Path>) -> ExportOptions {
    ExportOptions {
        session: session(),
        request: request.cloned(),
        artifact_contents: true,
        health: true,
        out: out.map(Path::to_path_buf),
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn problems(report: &VerifyReport) -> Vec<(&str, &str)> {
    let p = report.problems.iter();
    p.map(|p| (p.file.as_str(), p.problem.as_str())).collect()
}

fn listed(manifest: &Value) -> Vec<String> {
    let files = manifest["files"].as_array().unwrap();
    files
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn request_export_holds_the_evidence_and_verifies() {
    let (dir, h) = demo();
    let req = completed(&h).await;
    let out = dir.path().join("out/pkg");
    let summary = export(&h, &opts(Some(&req.id), Some(&out))).await.unwrap();
    assert_eq!(summary.path, out);
    assert_eq!(summary.requests, 2, "the request and its delegated child");

    let m = read_json(&out.join("manifest.json"));
    assert_eq!(m["format_version"], 1);
    assert_eq!(m["kind"], "request");
    assert_eq!(m["session_id"], SESSION);
    assert_eq!(m["workspace"], "demo");
    assert_eq!(
        m["exported_by"],
        format!("agent-harness {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(m["root_request_ids"], serde_json::json!([req.id]));
    assert_eq!(m["request_ids"][0], req.id.as_str());
    assert_eq!(m["trace_ids"][0], req.trace_id.as_str());
    assert_eq!(
        m["options"],
        serde_json::json!({"artifact_contents": true, "health": true})
    );
    let files = listed(&m);
    for f in [
        "approvals.json",
        "artifacts.json",
        "events.jsonl",
        "health.json",
        "requests.json",
        &format!("artifacts/{}/summary.md", req.id),
        "workspace/config/workspace.yaml",
        "workspace/config/models.yaml",
        "workspace/config/agents/assistant.yaml",
        "workspace/config/agents/researcher.yaml",
    ] {
        assert!(files.iter().any(|p| p == f), "{f} not in {files:?}");
    }
    assert_eq!(summary.files, files.len() + 1);
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(files, sorted, "manifest files are sorted");

    // The records: the tree, its journal, events in seq order, the decision.
    let requests = read_json(&out.join("requests.json"));
    let traces = m["trace_ids"].as_array().unwrap();
    for r in requests.as_array().unwrap() {
        assert!(traces.contains(&r["request"]["trace_id"]), "{r}");
    }
    let text = std::fs::read_to_string(out.join("requests.json")).unwrap();
    assert!(
        text.starts_with("[\n  {\n    \"request\": {\n      \"id\""),
        "declared field order kept"
    );
    let child = &requests[1]["request"];
    assert_eq!(child["parent_id"], req.id.as_str());
    assert!(!requests[0]["steps"].as_array().unwrap().is_empty());
    let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    let seqs: Vec<i64> = events
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs.len(), summary.events);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "ordered by seq");
    assert!(
        events.contains(child["id"].as_str().unwrap()),
        "child events included"
    );
    let approvals = read_json(&out.join("approvals.json"));
    assert_eq!(approvals[0]["decided_by"], "alice");
    assert_eq!(approvals[0]["message"], "ok");
    assert!(approvals[0]["decided_at"].is_i64());
    let artifacts = read_json(&out.join("artifacts.json"));
    assert_eq!(artifacts[0]["name"], "summary.md");
    assert_eq!(
        artifacts[0]["file"],
        format!("artifacts/{}/summary.md", req.id)
    );
    assert_eq!(artifacts[0]["contents_redacted"], false);
    assert!(read_json(&out.join("health.json"))["checks"].is_array());

    let report = verify_export(&out).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.checked, files.len());
    // Nothing else was left next to the package (the staging folder was renamed).
    let siblings: Vec<_> = std::fs::read_dir(dir.path().join("out")).unwrap().collect();
    assert_eq!(siblings.len(), 1);
}

#[tokio::test]
async fn verify_reports_modified_missing_and_extra_files() {
    let (dir, h) = demo();
    let req = waiting(&h).await;
    let out = dir.path().join("pkg");
    export(&h, &opts(Some(&req.id), Some(&out))).await.unwrap();

    // One byte of events.jsonl changed: exactly that file is reported.
    let events = out.join("events.jsonl");
    let original = std::fs::read(&events).unwrap();
    let mut tampered = original.clone();
    tampered[10] ^= 1;
    std::fs::write(&events, &tampered).unwrap();
    let report = verify_export(&out).unwrap();
    assert!(!report.ok);
    let p = problems(&report);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "events.jsonl");
    assert!(
        p[0].1.starts_with("sha256 mismatch (manifest "),
        "{}",
        p[0].1
    );
    std::fs::write(&events, &original).unwrap();
    assert!(verify_export(&out).unwrap().ok);

    std::fs::remove_file(out.join("approvals.json")).unwrap();
    let report = verify_export(&out).unwrap();
    assert_eq!(problems(&report), [("approvals.json", "missing")]);

    std::fs::write(out.join("workspace/notes.txt"), "added later").unwrap();
    let report = verify_export(&out).unwrap();
    assert_eq!(
        problems(&report),
        [
            ("approvals.json", "missing"),
            ("workspace/notes.txt", "not listed in manifest")
        ]
    );
}

#[tokio::test]
async fn a_missing_or_broken_manifest_is_a_problem() {
    let (dir, h) = demo();
    let req = waiting(&h).await;
    let out = dir.path().join("pkg");
    export(&h, &opts(Some(&req.id), Some(&out))).await.unwrap();
    let manifest = out.join("manifest.json");
    std::fs::write(&manifest, "{ not json").unwrap();
    let report = verify_export(&out).unwrap();
    assert!(!report.ok);
    assert_eq!(report.problems[0].file, "manifest.json");
    assert!(report.problems[0].problem.starts_with("unparsable"));
    std::fs::remove_file(&manifest).unwrap();
    let report = verify_export(&out).unwrap();
    assert_eq!(problems(&report), [("manifest.json", "missing")]);
    assert!(verify_export(&dir.path().join("nothing-here")).is_err());
}

#[tokio::test]
async fn tar_gz_round_trip_and_tamper_detection() {
    let (dir, h) = demo();
    let req = completed(&h).await;
    let out = dir.path().join("evidence.tar.gz");
    let summary = export(&h, &opts(Some(&req.id), Some(&out))).await.unwrap();
    assert!(out.is_file());
    assert_eq!(summary.bytes, std::fs::metadata(&out).unwrap().len());
    let report = verify_export(&out).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.checked, summary.files - 1);
    // Only the archive is left: no staging folder, no temporary archive.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Unpacked, it is the same package under one top-level folder.
    let unpacked = dir.path().join("unpacked");
    let file = std::fs::File::open(&out).unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(&unpacked)
        .unwrap();
    let top = unpacked.join("evidence");
    assert!(verify_export(&top).unwrap().ok);

    // Rebuilt with one byte of requests.json changed: reported by file.
    let requests = top.join("requests.json");
    let mut bytes = std::fs::read(&requests).unwrap();
    bytes[5] ^= 1;
    std::fs::write(&requests, bytes).unwrap();
    let tampered = dir.path().join("tampered.tar.gz");
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&tampered).unwrap(),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all("evidence", &top).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    let report = verify_export(&tampered).unwrap();
    let p = problems(&report);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "requests.json");
}

#[tokio::test]
async fn session_export_holds_every_root_request() {
    let (dir, h) = demo();
    let first = waiting(&h).await;
    // Queued behind the first (the session's strategy is `enqueue`).
    let second = h
        .request(Some(session()), "assistant", "and again")
        .await
        .unwrap();
    let mut o = opts(None, None);
    o.artifact_contents = false;
    o.health = false;
    let summary = export(&h, &o).await.unwrap();
    assert_eq!(summary.requests, 3);
    // The default: a new folder under the workspace's exports/.
    let name = summary
        .path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with("session-1-session-"), "{name}");
    assert_eq!(
        summary.path.parent().unwrap(),
        dir.path().canonicalize().unwrap().join("exports")
    );
    let m = read_json(&summary.path.join("manifest.json"));
    assert_eq!(m["kind"], "session");
    assert_eq!(
        m["root_request_ids"],
        serde_json::json!([first.id, second.id])
    );
    assert_eq!(m["request_ids"].as_array().unwrap().len(), 3);
    let files = listed(&m);
    assert!(
        !files
            .iter()
            .any(|f| f == "health.json" || f.starts_with("artifacts/"))
    );
    assert!(verify_export(&summary.path).unwrap().ok);

    // A second export in the same second gets its own folder.
    let again = export(&h, &o).await.unwrap();
    assert_ne!(again.path, summary.path);
}

#[tokio::test]
async fn unknown_ids_are_named_and_nothing_is_written() {
    let (dir, h) = demo();
    let req = waiting(&h).await;
    let out = dir.path().join("never");
    let missing = RequestId::parse("req_nope").unwrap();
    let err = export(&h, &opts(Some(&missing), Some(&out)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "request `req_nope` not found in session `session-1`"
    );

    let mut o = opts(None, Some(&out));
    o.session = SessionId::parse("nope").unwrap();
    let err = export(&h, &o).await.unwrap_err();
    assert_eq!(err.to_string(), "session `nope` not found");

    o.request = Some(req.id.clone());
    let err = export(&h, &o).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "request `{}` belongs to session `session-1`, not `nope`",
            req.id
        )
    );
    assert!(!out.exists());
    assert!(!dir.path().join("exports").exists());

    // An existing destination is refused, untouched.
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let err = export(&h, &opts(Some(&req.id), Some(&out)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

/// A workspace whose configuration and records carry secrets.
fn secret_workspace(dir: &Path) {
    let edit = |rel: &str, from: &str, to: &str| {
        let path = dir.join(rel);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{rel} lacks {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    };
    edit(
        "config/models.yaml",
        "models:\n",
        "models:\n  gpt:\n    provider: openai\n    model: gpt-4o\n    api_key_env: EXPORT_TEST_KEY\n",
    );
    edit(
        "config/tools.yaml",
        "    timeout: 10s\n",
        "    timeout: 10s\n    env:\n      SMTP_PASSWORD: hunter2-literal\n      LOG: \"info\"\n",
    );
    edit(
        "config/mcp.yaml",
        "servers: {}",
        "servers:\n  gh:\n    command: gh-mcp\n    env: { GITHUB_TOKEN: ghp_literal, MODE: ro }",
    );
    edit(
        "resources/scripts/demo.yaml",
        "body: \"See attached notes.\"",
        "body: \"See attached notes. Key: sk-live-0123456789\"",
    );
}

#[tokio::test]
async fn secrets_are_redacted_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    secret_workspace(dir.path());
    // The worker does not have the key (records written as an older version or a
    // worker without the variable would have kept it); the exporting process does.
    let h = Harness::open(dir.path()).unwrap();
    assert_eq!(h.redactor().value_count(), 2, "only the literal secrets");
    let req = waiting(&h).await;
    let stored = h.list_approvals(ApprovalFilter::default()).await.unwrap();
    assert!(
        stored[0]
            .arguments
            .to_string()
            .contains("sk-live-0123456789")
    );
    let env: harness_engine::SecretEnv = std::sync::Arc::new(|name: &str| {
        (name == "EXPORT_TEST_KEY").then(|| "sk-live-0123456789".to_string())
    });
    let opened = harness_engine::HarnessOptions {
        secret_env: Some(env),
        ..Default::default()
    };
    let exporter = Harness::open_with(dir.path(), opened, false).unwrap();
    let out = dir.path().join("pkg");
    export(&exporter, &opts(Some(&req.id), Some(&out)))
        .await
        .unwrap();

    let mut all = String::new();
    for f in listed(&read_json(&out.join("manifest.json"))) {
        all.push_str(&std::fs::read_to_string(out.join(&f)).unwrap());
    }
    for secret in ["sk-live-0123456789", "hunter2-literal", "ghp_literal"] {
        assert!(!all.contains(secret), "{secret} leaked");
    }
    let approvals = std::fs::read_to_string(out.join("approvals.json")).unwrap();
    assert!(approvals.contains("See attached notes. Key: [REDACTED]"));
    let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    assert!(
        events.contains("[REDACTED]"),
        "the model turn's call is redacted"
    );
    let models = std::fs::read_to_string(out.join("workspace/config/models.yaml")).unwrap();
    assert!(
        models.contains("api_key_env: EXPORT_TEST_KEY"),
        "variable names stay"
    );
    let tools = std::fs::read_to_string(out.join("workspace/config/tools.yaml")).unwrap();
    assert!(tools.contains("SMTP_PASSWORD: \"[REDACTED]\"\n      LOG: \"info\""));
    let mcp = std::fs::read_to_string(out.join("workspace/config/mcp.yaml")).unwrap();
    assert!(
        mcp.contains("env: { GITHUB_TOKEN: \"[REDACTED]\", MODE: ro }"),
        "{mcp}"
    );
    assert!(verify_export(&out).unwrap().ok);
}

#[test]
fn yaml_redaction_keeps_layout_and_variable_names() {
    let input = "\
name: demo
api_key: sk-123 # prod
apiKey: \"abc\"
\"auth_token\": 'x'
api_key_env: OPENAI_API_KEY
Authorization: Bearer xyz
max_steps: 20
max_tokens: 256
GITHUB_TOKEN: \"${GH_TOKEN}\"
env: { DB_PASSWORD: \"${DB_PW}\", SMTP_PASSWORD: x }
# password: commented-out
headers: { Authorization: Bearer q, Accept: json }
secrets:
  one: a
  list:
    - b
ssh_secret: |
  line1
  line2
after: kept
  - token: item\r
";
    let expected = "\
name: demo
api_key: \"[REDACTED]\"
apiKey: \"[REDACTED]\"
\"auth_token\": \"[REDACTED]\"
api_key_env: OPENAI_API_KEY
Authorization: \"[REDACTED]\"
max_steps: 20
max_tokens: 256
GITHUB_TOKEN: \"${GH_TOKEN}\"
env: { DB_PASSWORD: \"${DB_PW}\", SMTP_PASSWORD: \"[REDACTED]\" }
# password: \"[REDACTED]\"
headers: { Authorization: \"[REDACTED]\", Accept: json }
secrets:
  one: \"[REDACTED]\"
  list:
    - \"[REDACTED]\"
ssh_secret: |
  \"[REDACTED]\"
  \"[REDACTED]\"
after: kept
  - token: \"[REDACTED]\"\r
";
    assert_eq!(redact::yaml(input), expected);
}

#[test]
fn json_keeps_its_field_order_unless_something_was_redacted() {
    #[derive(serde::Serialize)]
    struct Rec {
        z: &'static str,
        a: &'static str,
    }
    let r = harness_core::Redactor::new(["sk-abcdef"]);
    let clean = Rec { z: "1", a: "2" };
    assert_eq!(
        redact::to_json(&r, &clean, false).unwrap(),
        r#"{"z":"1","a":"2"}"#
    );
    let dirty = Rec {
        z: "x sk-abcdef y",
        a: "2",
    };
    assert_eq!(
        redact::to_json(&r, &dirty, false).unwrap(),
        r#"{"a":"2","z":"x [REDACTED] y"}"#
    );
}
