//! Secrets never reach the records. A command tool receives a secret through its
//! `env:` (`${LEAKY_SECRET}`) and echoes it, its argv carries `--api-key=…` and
//! `--token …`, and the model passes it a `postgres://u:pw@h/db` URL. The worker
//! (`run`) has the secret in its environment; every reader afterwards (events,
//! `requests show`, an export) runs *without* it, so only the worker's own
//! redaction can be what keeps it out — of those outputs and of the raw store files.

mod common;

use common::{BIN, Demo};
use std::path::Path;
use std::process::Command;

/// The value of `LEAKY_SECRET` in the worker's environment.
const ENV_SECRET: &str = "S3CRET-env-7f3a9c21";
/// Written literally in the tool's argv: `--api-key=S3CRET-argv-4b8e`.
const ARGV_SECRET: &str = "S3CRET-argv-4b8e";
/// Written in the argv as `--token S3CRET-tok-91d2`.
const TOKEN_SECRET: &str = "S3CRET-tok-91d2";
/// The password of the URL the model passes (`postgres://u:pw@h/db`).
const URL_PASSWORD: &str = "u:pw@h";

const LEAKS: &[&str] = &[
    ENV_SECRET,
    ARGV_SECRET,
    TOKEN_SECRET,
    URL_PASSWORD,
    "S3CRET",
];

const TOOL: &str = r#"
  leaky:
    description: Connects to a database and prints what it was given.
    command: ["sh", "{workspace}/resources/tools/leaky.sh", "--api-key=S3CRET-argv-4b8e", "--token", "S3CRET-tok-91d2", "{dsn}"]
    env:
      LEAKY_TOKEN: "${LEAKY_SECRET}"
    arguments:
      type: object
      properties:
        dsn: { type: string }
        max_tokens: { type: integer }
      required: [dsn]
"#;

const SCRIPT: &str = r#"#!/bin/sh
# Proves the tool itself got the real value.
printf '%s' "$LEAKY_TOKEN" > seen-token.txt
echo "argv: $*"
echo "connecting with $LEAKY_TOKEN"
echo '{"max_tokens": 256, "tokens_used": 12}'
"#;

const AGENT: &str = "name: leaker\nmodel: scripted\ntools: [leaky, write_artifact]\n";

const TURNS: &str = r#"  leaker:
    turns:
      - tool_calls:
          - tool: leaky
            arguments: { dsn: "postgres://u:pw@h/db", max_tokens: 256 }
      - tool_calls:
          - tool: write_artifact
            arguments: { name: "conn.txt", content: "dsn postgres://u:pw@h/db\n" }
      - text: "Connected to postgres://u:pw@h/db."
"#;

fn leaky_workspace() -> Demo {
    let d = Demo::new();
    let root = &d.root;
    let append = |rel: &str, text: &str| {
        let path = root.join(rel);
        let mut s = std::fs::read_to_string(&path).unwrap();
        s.push_str(text);
        std::fs::write(path, s).unwrap();
    };
    append("config/tools.yaml", TOOL);
    append("resources/scripts/demo.yaml", TURNS);
    std::fs::write(root.join("resources/tools/leaky.sh"), SCRIPT).unwrap();
    std::fs::write(root.join("config/agents/leaker.yaml"), AGENT).unwrap();
    d
}

/// Runs the binary in the workspace; `secret` puts `LEAKY_SECRET` in its environment.
fn cli(d: &Demo, secret: bool, args: &[&str]) -> (String, String) {
    let mut c = Command::new(BIN);
    c.args(args).arg("--workspace").arg(&d.root);
    c.env("NO_COLOR", "1").env_remove("LEAKY_SECRET");
    if secret {
        c.env("LEAKY_SECRET", ENV_SECRET);
    }
    let out = c.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{args:?} failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    (stdout, stderr)
}

fn assert_clean(what: &str, text: &str) {
    for leak in LEAKS {
        assert!(!text.contains(leak), "{what} holds `{leak}`:\n{text}");
    }
}

/// Every regular file under `dir`, as (path, bytes).
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                pending.push(e.path());
            } else {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn the_worker_redacts_secrets_before_anything_is_stored() {
    let d = leaky_workspace();
    let (stdout, stderr) = cli(
        &d,
        true,
        &["run", "--agent", "leaker", "--session", "s1", "connect"],
    );
    assert!(stdout.contains("completed"), "{stdout}");
    assert_clean("run's output", &format!("{stdout}{stderr}"));
    // The tool got the real secret: redaction is of the records, not of the tool's input.
    let seen = std::fs::read_to_string(d.root.join("work/s1/seen-token.txt")).unwrap();
    assert_eq!(seen, ENV_SECRET);

    // The raw store (database, WAL if any, artifact files), read while no process runs.
    let store = d.root.join(".agent-harness");
    let stored = files_under(&store);
    assert!(
        stored.iter().any(|(p, _)| p.ends_with("harness.db")),
        "{stored:?}"
    );
    for (path, bytes) in &stored {
        for leak in LEAKS {
            assert!(!contains(bytes, leak), "{} holds `{leak}`", path.display());
        }
    }

    // Readers without the secret in their environment.
    let (events, _) = cli(&d, false, &["runtime", "events", "--json"]);
    assert_clean("runtime events --json", &events);
    assert!(events.contains("[REDACTED]"), "{events}");
    let started = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["kind"] == "tool.started" && e["payload"]["tool"] == "leaky")
        .expect("tool.started of leaky");
    assert_eq!(
        started["payload"]["arguments"],
        serde_json::json!({"dsn": "postgres://u:[REDACTED]@h/db", "max_tokens": 256}),
        "the URL password is redacted, a token count is not"
    );

    let list = cli(&d, false, &["runtime", "requests", "list", "--json"]).0;
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let id = list["requests"][0]["id"].as_str().unwrap().to_string();
    let (show, _) = cli(&d, false, &["runtime", "requests", "show", &id, "--json"]);
    assert_clean("requests show --json", &show);
    let tree: serde_json::Value = serde_json::from_str(&show).unwrap();
    let output = tree["steps"][1]["body"]["outcome"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no tool output in {tree:#}"));
    assert!(
        output.contains(r#"{"max_tokens": 256, "tokens_used": 12}"#),
        "harmless fields survive: {output}"
    );
    assert!(
        output.contains("--api-key=[REDACTED] --token [REDACTED]"),
        "{output}"
    );
    assert!(output.contains("connecting with [REDACTED]"), "{output}");
    assert_eq!(
        tree["request"]["output"],
        "Connected to postgres://u:[REDACTED]@h/db."
    );

    let pkg = d.root.join("evidence");
    cli(
        &d,
        false,
        &[
            "runtime",
            "export",
            "request",
            "--session",
            "s1",
            "--request",
            &id,
            "--artifact-contents",
            "--out",
            pkg.to_str().unwrap(),
        ],
    );
    let exported = files_under(&pkg);
    assert!(
        exported
            .iter()
            .any(|(p, _)| p.to_string_lossy().ends_with("conn.txt")),
        "the artifact is exported"
    );
    for (path, bytes) in &exported {
        assert_clean(&path.display().to_string(), &String::from_utf8_lossy(bytes));
    }
    let verified = cli(
        &d,
        false,
        &["runtime", "verify-export", pkg.to_str().unwrap(), "--json"],
    )
    .0;
    assert!(verified.contains("\"ok\": true"), "{verified}");
}
