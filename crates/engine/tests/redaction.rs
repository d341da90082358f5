//! The worker stores no secret: the values of the workspace's secret variables (as
//! the harness's own environment holds them) and secret shapes are redacted from
//! steps, events and approvals, including what an operator writes when deciding.

use harness_core::*;
use harness_engine::{Harness, HarnessOptions, SecretEnv, WorkerOptions, run_until_settled};
use std::sync::Arc;

const SECRET: &str = "smtp-S3CRET-0042";

fn fast() -> WorkerOptions {
    WorkerOptions {
        poll: std::time::Duration::from_millis(20),
        ..Default::default()
    }
}

/// The demo whose `send_mail` declares `SMTP_TOKEN: ${SMTP_SECRET}` and prints the
/// secret's value. (The test process has no `SMTP_SECRET`, and the harness is given
/// its value through `HarnessOptions::secret_env`, so the script holds it literally.)
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    let tools = dir.path().join("config/tools.yaml");
    let text = std::fs::read_to_string(&tools).unwrap().replacen(
        "    timeout: 10s\n",
        "    timeout: 10s\n    env:\n      SMTP_TOKEN: \"${SMTP_SECRET}\"\n",
        1,
    );
    std::fs::write(&tools, text).unwrap();
    let script = dir.path().join("resources/tools/send_mail.sh");
    let mut text = std::fs::read_to_string(&script).unwrap();
    text.push_str(&format!("echo \"sent using {SECRET}\"\n"));
    std::fs::write(&script, text).unwrap();
    dir
}

#[tokio::test]
async fn secrets_from_the_harness_environment_and_operator_text_are_redacted() {
    let dir = workspace();
    let env: SecretEnv = Arc::new(|n: &str| (n == "SMTP_SECRET").then(|| SECRET.to_string()));
    let opts = HarnessOptions {
        secret_env: Some(env),
        ..Default::default()
    };
    let h = Harness::open_with(dir.path(), opts, true).unwrap();
    assert_eq!(h.redactor().value_count(), 1);
    let session = SessionId::parse("s1").unwrap();
    let req = h
        .request(Some(session.clone()), "assistant", "ship the release notes")
        .await
        .unwrap();
    let r = run_until_settled(&h, &req.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::WaitingApproval, "{r:?}");
    let a = h
        .list_approvals(ApprovalFilter::default())
        .await
        .unwrap()
        .remove(0);

    let edited = serde_json::json!({
        "to": "ops@example.com",
        "subject": "Release notes",
        "body": "see https://alice:hunter2@wiki.example.com/notes",
    });
    let decided = h
        .resolve_approval(ResolveApproval {
            session_id: session.clone(),
            request_id: req.id.clone(),
            approval_id: a.id.clone(),
            decision: Decision::Approved,
            message: Some(format!("ok, password: hunter2, key {SECRET}")),
            decided_by: Actor::new(ActorKind::Cli, "alice"),
            edited_arguments: Some(edited),
        })
        .await
        .unwrap();
    assert_eq!(
        decided.message.as_deref(),
        Some("ok, password: [REDACTED], key [REDACTED]")
    );
    assert_eq!(
        decided.edited_arguments.as_ref().unwrap()["body"],
        "see https://alice:[REDACTED]@wiki.example.com/notes"
    );
    let r = run_until_settled(&h, &req.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::Completed, "{r:?}");

    // The tool printed the value; the records hold none of it.
    let steps = h.store().steps(&req.id).await.unwrap();
    let mail = steps
        .iter()
        .find_map(|s| match &s.body {
            StepBody::ToolCall { call, outcome, .. } if call.tool == "send_mail" => outcome.clone(),
            _ => None,
        })
        .expect("send_mail completed");
    assert!(
        mail.content.contains("sent using [REDACTED]"),
        "{}",
        mail.content
    );
    let events = h
        .store()
        .events_after(0, EventFilter::default(), 0)
        .await
        .unwrap();
    let records = format!(
        "{steps:?}{events:?}{:?}",
        h.list_approvals(ApprovalFilter::default()).await.unwrap()
    );
    for leak in [SECRET, "hunter2"] {
        assert!(!records.contains(leak), "{leak} stored: {records}");
    }
    let resolved = events
        .iter()
        .find(|e| e.kind == EventKind::ApprovalResolved)
        .unwrap();
    assert_eq!(
        resolved.payload["message"],
        "ok, password: [REDACTED], key [REDACTED]"
    );
}

/// What no model or tool returned, the engine still redacts before committing: here a
/// model that cannot be built fails the request with an error quoting its script.
#[tokio::test]
async fn engine_made_errors_are_redacted_too() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("config/workspace.yaml", "name: broken\n");
    write(
        "config/models.yaml",
        "models:\n  m:\n    provider: scripted\n    script: script.yaml\n",
    );
    write("config/agents/a.yaml", "name: a\nmodel: m\n");
    write(
        "script.yaml",
        "agents:\n  a:\n    turns:\n      - text: hi\n        \"--api-key=S3CRET-model-77\": 1\n",
    );
    let h = Harness::open(root).unwrap();
    let req = h.request(None, "a", "go").await.unwrap();
    let r = run_until_settled(&h, &req.id, fast()).await.unwrap();
    assert_eq!(r.status, RequestStatus::Failed, "{r:?}");
    let error = r.error.unwrap();
    assert!(error.contains("--api-key=[REDACTED]"), "{error}");
    let events = h
        .store()
        .events_after(0, EventFilter::default(), 0)
        .await
        .unwrap();
    assert!(!format!("{events:?}").contains("S3CRET"), "{events:?}");
}
