//! Artifacts are immutable: a request that writes `report.txt` twice keeps both
//! versions, every view shows both, the export carries both, and `verify-export`
//! checks each against the sha256 its `artifact.created` event recorded.

mod common;

use common::Demo;
use serde_json::Value;
use std::path::{Path, PathBuf};

const TURNS: &str = r#"  writer:
    turns:
      - tool_calls:
          - tool: write_artifact
            arguments: { name: "report.txt", content: "first draft\n" }
      - tool_calls:
          - tool: write_artifact
            arguments: { name: "report.txt", content: "final\n" }
      - text: "Report written twice."
"#;

/// The demo with agent `writer`, run once in session `s1`; returns its request id.
fn written_twice() -> (Demo, String) {
    let d = Demo::new();
    let script = d.root.join("resources/scripts/demo.yaml");
    let mut s = std::fs::read_to_string(&script).unwrap();
    s.push_str(TURNS);
    std::fs::write(&script, s).unwrap();
    std::fs::write(
        d.root.join("config/agents/writer.yaml"),
        "name: writer\nmodel: scripted\ntools: [write_artifact]\n",
    )
    .unwrap();
    let out = d
        .run(&["run", "--agent", "writer", "--session", "s1", "write"])
        .ok();
    assert!(out.stdout.contains("completed"), "{}", out.stdout);
    let list = d
        .run(&["runtime", "requests", "list", "--json"])
        .ok()
        .json();
    let id = list["requests"][0]["id"].as_str().unwrap().to_string();
    (d, id)
}

fn export(d: &Demo, id: &str, out: &Path) -> Value {
    let out = out.to_str().unwrap();
    let args = [
        "runtime",
        "export",
        "request",
        "--session",
        "s1",
        "--request",
        id,
        "--artifact-contents",
        "--out",
        out,
        "--json",
    ];
    d.run(&args).ok().json()
}

fn verify(d: &Demo, pkg: &Path) -> (i32, Value) {
    let r = d.run(&["runtime", "verify-export", pkg.to_str().unwrap(), "--json"]);
    let code = r.code;
    (code, r.json())
}

fn read_json(path: PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// (file, problem) pairs of a verification report.
fn problems(report: &Value) -> Vec<(String, String)> {
    let list = report["problems"].as_array().unwrap();
    list.iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_string();
            (s("file"), s("problem"))
        })
        .collect()
}

#[test]
fn both_versions_are_kept_shown_exported_and_verified() {
    let (d, id) = written_twice();

    // The views: two rows, each with its own id and version.
    let tree = d
        .run(&["runtime", "requests", "show", &id, "--json"])
        .ok()
        .json();
    let arts = tree["artifacts"].as_array().unwrap();
    let versions: Vec<(&str, i64)> = arts
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["version"].as_i64().unwrap()))
        .collect();
    assert_eq!(versions, [("report.txt", 1), ("report.txt", 2)]);
    assert_ne!(arts[0]["id"], arts[1]["id"]);
    // Each writing step shows the version it wrote.
    let made: Vec<Vec<i64>> = tree["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["body"]["kind"] == "tool_call")
        .map(|s| {
            let a = s["artifacts"].as_array().unwrap();
            a.iter().map(|a| a["version"].as_i64().unwrap()).collect()
        })
        .collect();
    assert_eq!(made, [vec![1], vec![2]]);
    let text = d.run(&["runtime", "requests", "show", &id]).ok().stdout;
    assert!(text.contains("report.txt v2"), "{text}");

    let events = d.run(&["runtime", "events", "--json"]).ok().stdout;
    let created: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "artifact.created")
        .map(|e| e["payload"].clone())
        .collect();
    assert_eq!(created.len(), 2);
    for (event, row) in created.iter().zip(arts) {
        assert_eq!(event["artifact_id"], row["id"]);
        assert_eq!(event["version"], row["version"]);
        assert_eq!(event["sha256"], row["sha256"]);
    }

    // The export carries both versions, each with its own bytes; it verifies.
    let pkg = d.root.join("evidence");
    export(&d, &id, &pkg);
    let entries = read_json(pkg.join("artifacts.json"));
    let files: Vec<String> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        files,
        [
            format!("artifacts/{id}/report.txt"),
            format!("artifact-versions/{id}/2/report.txt")
        ]
    );
    assert_eq!(
        std::fs::read_to_string(pkg.join(&files[0])).unwrap(),
        "first draft\n"
    );
    assert_eq!(
        std::fs::read_to_string(pkg.join(&files[1])).unwrap(),
        "final\n"
    );
    let (code, report) = verify(&d, &pkg);
    assert_eq!(
        (code, report["ok"].clone()),
        (0, Value::Bool(true)),
        "{report}"
    );

    // The first version altered in the package: verification fails naming it.
    std::fs::write(pkg.join(&files[0]), "tampered\n").unwrap();
    let (code, report) = verify(&d, &pkg);
    assert_eq!(code, 1, "{report}");
    let found = problems(&report);
    assert!(
        found
            .iter()
            .any(|(f, p)| f == &files[0] && p.contains("version 1") && p.contains("sha256")),
        "{found:?}"
    );
    assert!(
        found.iter().all(|(f, _)| f == &files[0]),
        "only the first version is wrong: {found:?}"
    );
}

#[test]
fn a_version_dropped_from_the_package_or_altered_in_the_store_fails_verification() {
    let (d, id) = written_twice();

    // Removed from the package together with its manifest entry: only the events
    // still name it.
    let pkg = d.root.join("evidence");
    export(&d, &id, &pkg);
    let first = format!("artifacts/{id}/report.txt");
    std::fs::remove_file(pkg.join(&first)).unwrap();
    let mut manifest = read_json(pkg.join("manifest.json"));
    manifest["files"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["path"] != first.as_str());
    std::fs::write(
        pkg.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    let (code, report) = verify(&d, &pkg);
    assert_eq!(code, 1, "{report}");
    let found = problems(&report);
    assert!(
        found
            .iter()
            .any(|(f, p)| f == &first && p.contains("missing") && p.contains("version 1")),
        "{found:?}"
    );

    // The stored first version altered on disk before an export: the package says
    // so and does not verify.
    let stored = d
        .root
        .join(".agent-harness/artifacts")
        .join(&id)
        .join("report.txt");
    std::fs::write(&stored, "rewritten\n").unwrap();
    let pkg = d.root.join("evidence-2");
    export(&d, &id, &pkg);
    let entries = read_json(pkg.join("artifacts.json"));
    assert_eq!(entries[0]["contents_altered"], true, "{entries}");
    assert_eq!(entries[1]["contents_altered"], false, "{entries}");
    let (code, report) = verify(&d, &pkg);
    assert_eq!(code, 1, "{report}");
    let found = problems(&report);
    assert!(
        found
            .iter()
            .any(|(f, p)| f == &first && p.contains("version 1")),
        "{found:?}"
    );
}
