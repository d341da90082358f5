//! The web console in a real headless Chromium: `agent-harness serve` on an
//! `init`-ed demo workspace with an operator and a viewer token; the demo request
//! pauses for approval; `scripts/browser/console.mjs` (playwright-core driving
//! Debian's `/usr/bin/chromium`) logs both in, checks the viewer sees no buttons,
//! approves by clicking with a message, and sees the request complete on the
//! viewer's page without a reload. Screenshots are kept in
//! `target/test-artifacts/console/`.
//!
//! Needs chromium and `scripts/browser/node_modules` (`scripts/browser.sh`, which
//! `scripts/test.sh` runs); without them the test says so and passes, unless
//! `AGENT_HARNESS_REQUIRE_BROWSER` is set (as `scripts/test.sh` sets it).

mod worker;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

const OPERATOR_TOKEN: &str = "op-token-for-the-browser";
const VIEWER_TOKEN: &str = "viewer-token-for-the-browser";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the driver and the browser are, or why the test cannot run.
fn browser_setup() -> Result<PathBuf, String> {
    let dir = repo().join("scripts/browser");
    if !Path::new("/usr/bin/chromium").is_file() {
        return Err("/usr/bin/chromium is missing".into());
    }
    if !dir.join("node_modules/playwright-core").is_dir() {
        return Err("scripts/browser/node_modules has no playwright-core".into());
    }
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(dir),
        _ => Err("node is missing".into()),
    }
}

fn serve(root: &Path) -> (Child, String) {
    let (child, base, said) = worker::serve_listening(
        root,
        "127.0.0.1:0",
        &[
            ("OPERATOR_TOKEN", OPERATOR_TOKEN),
            ("VIEWER_TOKEN", VIEWER_TOKEN),
        ],
    );
    assert_eq!(said["open"], false);
    (child, base)
}

async fn get(client: &reqwest::Client, url: &str) -> Value {
    let res = client
        .get(url)
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{url}: {}", res.status());
    serde_json::from_str(&res.text().await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_approves_in_chromium_and_the_viewer_sees_it_complete_live() {
    let driver = match browser_setup() {
        Ok(d) => d,
        Err(why) if std::env::var_os("AGENT_HARNESS_REQUIRE_BROWSER").is_none() => {
            eprintln!("SKIPPED console browser test: {why} (run scripts/browser.sh)");
            return;
        }
        Err(why) => panic!("AGENT_HARNESS_REQUIRE_BROWSER is set but {why}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    harness_config::init(root, false).unwrap();
    std::fs::write(
        root.join("config/server.yaml"),
        "tokens:\n  - name: olga\n    role: operator\n    env: OPERATOR_TOKEN\n  - name: vic\n    role: viewer\n    env: VIEWER_TOKEN\n",
    )
    .unwrap();
    let (child, base) = serve(root);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();

    let (id, approval) = worker::admit_until_approval(
        &client,
        &base,
        OPERATOR_TOKEN,
        "browser",
        "ship the release notes",
    )
    .await;

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts/console");
    // Only this run's screenshots (a failure-*.png is from a failing run).
    let _ = std::fs::remove_dir_all(&shots);
    let mut node = Command::new("node");
    node.arg(driver.join("console.mjs"))
        .current_dir(&driver)
        .env("BASE", &base)
        .env("OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("VIEWER_TOKEN", VIEWER_TOKEN)
        .env("OPERATOR_NAME", "olga")
        .env("REQUEST_ID", &id)
        .env("APPROVAL_ID", &approval)
        .env("SHOTS", &shots);
    let out = tokio::task::spawn_blocking(move || node.output().expect("run node"))
        .await
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the browser test failed (screenshots in {}):\n{said}\nserve log:\n{}",
        shots.display(),
        worker::serve_log(root)
    );
    assert!(said.contains("ok"), "{said}");

    // What the clicks did, as the API records it.
    let a = get(&client, &format!("{base}/v1/approvals?request={id}")).await;
    assert_eq!(a[0]["status"], "approved");
    assert_eq!(a[0]["decided_by"], "olga");
    assert_eq!(a[0]["message"], "checked the recipient: ship it");
    let r = get(&client, &format!("{base}/v1/requests/{id}")).await;
    assert_eq!(r["status"], "completed");
    for name in [
        "login.png",
        "viewer-approvals.png",
        "overview.png",
        "approvals.png",
        "request-completed.png",
        "viewer-request-live.png",
        "health.png",
    ] {
        let png = std::fs::read(shots.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    }
    worker::terminate(child);
}
