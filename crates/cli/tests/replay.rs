//! `runtime replay request|export` against the real binary: the finished demo
//! replays identically from the store and from its evidence package; after a
//! policy change it diverges where the policy now differs; a changed package is
//! refused.

mod common;

use common::Demo;
use std::path::Path;

/// Every `outbox.log` under `dir` (the demo's `send_mail` appends to one), concatenated.
fn mails(dir: &Path) -> String {
    common::files_text(dir, Some("outbox.log"))
}

#[test]
fn a_finished_request_replays_from_the_store_and_from_its_export() {
    let demo = Demo::new();
    let p = demo.approved();
    let before = mails(&demo.root.join("work"));
    assert_eq!(before.lines().count(), 1, "the demo sent one mail");

    let same = demo
        .run(&["runtime", "replay", "request", &p.request, "--json"])
        .ok()
        .json();
    assert_eq!(same["identical"], true, "{same:#}");
    assert_eq!(same["requests_compared"], 2);
    assert_eq!(same["replayed_status"], "completed");
    let shown = demo.run(&["runtime", "replay", "request", &p.request]).ok();
    assert!(
        shown
            .stdout
            .contains("identical: the run matches its recording"),
        "{}",
        shown.stdout
    );

    let package = demo.root.join("evidence");
    let package_arg = package.to_str().unwrap();
    demo.run(&[
        "runtime",
        "export",
        "request",
        "--session",
        &p.session,
        "--request",
        &p.request,
        "--out",
        package_arg,
    ])
    .ok();
    let from_export = demo
        .run(&["runtime", "replay", "export", package_arg, "--json"])
        .ok()
        .json();
    assert_eq!(from_export["identical"], true, "{from_export:#}");
    assert_eq!(from_export["steps_compared"], same["steps_compared"]);
    assert_eq!(
        mails(&demo.root.join("work")),
        before,
        "no tool ran during the replays"
    );

    // The researcher's file writes now need an operator: the replay stops there.
    let tools = demo.root.join("config/tools.yaml");
    let text = std::fs::read_to_string(&tools).unwrap();
    std::fs::write(
        &tools,
        text.replace(
            "tools:\n",
            "tools:\n  write_file:\n    approval: required\n",
        ),
    )
    .unwrap();
    let diverged = demo
        .run(&["runtime", "replay", "request", &p.request, "--json"])
        .expect(1)
        .json();
    assert_eq!(diverged["identical"], false);
    assert_eq!(
        diverged["divergence"]["agent"], "researcher",
        "{diverged:#}"
    );
    let shown = demo
        .run(&["runtime", "replay", "request", &p.request])
        .expect(1);
    assert!(
        shown.stdout.contains("diverged at step #"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("waits for an approval"),
        "{}",
        shown.stdout
    );

    // A package changed after export is not replayed.
    std::fs::write(package.join("approvals.json"), "[]").unwrap();
    let refused = demo
        .run(&["runtime", "replay", "export", package_arg])
        .expect(2);
    assert!(
        refused.stderr.contains("does not match its manifest"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("approvals.json"),
        "{}",
        refused.stderr
    );
}

#[test]
fn only_a_finished_request_is_replayed() {
    let demo = Demo::new();
    let p = demo.paused();
    let refused = demo
        .run(&["runtime", "replay", "request", &p.request])
        .expect(2);
    assert!(
        refused
            .stderr
            .contains("only a finished request is replayed"),
        "{}",
        refused.stderr
    );
}
