//! Every operator command's `--help` carries an example.

mod common;

use common::BIN;
use std::process::Command;

#[test]
fn every_runtime_command_has_an_example() {
    let commands: &[&[&str]] = &[
        &["overview"],
        &["health"],
        &["approvals"],
        &["approvals", "list"],
        &["approvals", "watch"],
        &["approvals", "show"],
        &["approvals", "approve"],
        &["approvals", "reject"],
        &["requests"],
        &["requests", "list"],
        &["requests", "tail"],
        &["requests", "show"],
        &["requests", "watch"],
        &["requests", "annotate"],
        &["approvals", "annotate"],
        &["doctor"],
        &["artifacts"],
        &["artifacts", "list"],
        &["artifacts", "show"],
        &["artifacts", "cat"],
        &["requests", "cancel"],
        &["requests", "retry"],
        &["requests", "resume"],
        &["sessions"],
        &["sessions", "list"],
        &["sessions", "show"],
        &["events"],
        &["export"],
        &["export", "request"],
        &["export", "session"],
        &["verify-export"],
        &["maintenance"],
        &["migrate-store"],
    ];
    for c in commands {
        let out = Command::new(BIN)
            .arg("runtime")
            .args(*c)
            .arg("--help")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{c:?}: {out:?}");
        assert!(
            text.contains("Example") && text.contains("agent-harness runtime"),
            "{c:?} --help has no example:\n{text}"
        );
    }
    let health = Command::new(BIN)
        .args(["runtime", "health", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&health.stdout);
    assert!(
        text.contains(
            "0 when every check is ok, 6 when any warns (and none fails), 7 when any fails"
        ),
        "{text}"
    );
}
