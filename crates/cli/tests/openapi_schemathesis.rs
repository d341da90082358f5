//! schemathesis (from PyPI; `scripts/schemathesis.sh` installs it, `scripts/test.sh`
//! passes its path in `AGENT_HARNESS_SCHEMATHESIS` and sets
//! `AGENT_HARNESS_REQUIRE_SCHEMATHESIS=1`) against the real `agent-harness serve`:
//! it reads `/openapi.json`, generates requests for every operation (valid and
//! invalid ones) and fails on any server error (5xx) or any answer that does not
//! match the document (status, content type, body schema). The workspace holds
//! records first (a finished request with its artifact and a decided approval, and
//! one paused on a pending approval), so the lists answer real records.
//!
//! The event stream is left out: it never ends, and its `data` is not JSON Schema's
//! to check.

mod worker;

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "schemathesis-operator-token";
/// Test cases per operation and phase: bounded, so the run stays well under two
/// minutes on a shared 2-core machine.
const MAX_EXAMPLES: &str = "15";

/// The schemathesis executable: `AGENT_HARNESS_SCHEMATHESIS`, else `schemathesis` on
/// the PATH, if it runs.
fn schemathesis() -> Option<String> {
    let candidate = std::env::var("AGENT_HARNESS_SCHEMATHESIS")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "schemathesis".into());
    let ok = Command::new(&candidate)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(candidate)
}

fn serve(root: &Path) -> (Child, String) {
    let (child, base, said) = worker::serve_listening(root, "127.0.0.1:0", &[("API_TOKEN", TOKEN)]);
    assert_eq!(said["open"], false);
    (child, base)
}

async fn get(client: &reqwest::Client, url: &str) -> Value {
    let res = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(res.status(), 200, "{url}");
    serde_json::from_str(&res.text().await.unwrap()).unwrap()
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_or_schema_violation() {
    let Some(st) = schemathesis() else {
        if std::env::var_os("AGENT_HARNESS_REQUIRE_SCHEMATHESIS").is_some() {
            panic!(
                "AGENT_HARNESS_REQUIRE_SCHEMATHESIS is set but schemathesis does not run: \
                 run scripts/schemathesis.sh and set AGENT_HARNESS_SCHEMATHESIS to the path it prints"
            );
        }
        eprintln!(
            "SKIPPED schemathesis_finds_no_server_error_or_schema_violation: schemathesis is \
             not installed (scripts/schemathesis.sh installs it; scripts/test.sh requires it)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    harness_config::init(root, false).unwrap();
    std::fs::write(
        root.join("config/server.yaml"),
        "tokens:\n  - name: fuzz\n    role: operator\n    env: API_TOKEN\n",
    )
    .unwrap();
    let (child, base) = serve(root);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();

    // Records of every kind: one request run to its end (approved), one paused.
    let (done, approval) =
        worker::admit_until_approval(&client, &base, TOKEN, "seed", "write the notes").await;
    let res = client
        .post(format!("{base}/v1/approvals/{approval}/resolve"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(json!({"decision": "approve", "message": "fine"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let until = Instant::now() + Duration::from_secs(30);
    while get(&client, &format!("{base}/v1/requests/{done}")).await["status"] != "completed" {
        assert!(Instant::now() < until, "{done} did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker::admit_until_approval(&client, &base, TOKEN, "seed", "and the changelog").await;

    let report = root.join("schemathesis");
    let out = tokio::process::Command::new(&st)
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "1",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--exclude-path",
            "/v1/events",
            "--header",
            &format!("Authorization: Bearer {TOKEN}"),
            "--report",
            "junit",
            "--report-dir",
        ])
        .arg(&report)
        .current_dir(root)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(110), out)
        .await
        .expect("schemathesis finished within 110 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut child = child;
    let status = child.wait().unwrap();
    assert!(
        out.status.success(),
        "schemathesis found problems ({}):\n{stdout}\n{stderr}\nserve log:\n{}",
        out.status,
        worker::serve_log(root)
    );
    assert!(status.success(), "serve exited {status:?}");
    // It really tested the operations (not an empty run).
    assert!(stdout.contains("passed"), "{stdout}");
}
