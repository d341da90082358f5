//! Bad input to the operator commands: each says what is wrong and with which id,
//! exits with the documented status (2 bad input / unknown id, 3 refused), and
//! changes nothing.

mod common;

use common::{BIN, Demo, T3};
use std::process::Command;

/// Exit status and stderr of a command that must fail.
fn fails(demo: &Demo, args: &[&str], code: i32) -> String {
    let r = demo.at(T3, args).expect(code);
    assert!(r.stdout.is_empty(), "printed on failure: {}", r.stdout);
    r.stderr
}

fn event_count(demo: &Demo) -> usize {
    demo.at(T3, &["runtime", "events", "--json"])
        .ok()
        .stdout
        .lines()
        .count()
}

#[test]
fn unknown_ids_are_named() {
    let demo = Demo::new();
    let p = demo.paused();
    let before = event_count(&demo);
    let req = "req_01unknownrequest0000000000";
    for args in [
        vec!["runtime", "requests", "show", req],
        vec!["runtime", "requests", "cancel", req],
        vec!["runtime", "requests", "retry", req],
        vec!["runtime", "requests", "resume", req],
        vec!["runtime", "events", "--request", req],
        vec![
            "runtime",
            "export",
            "request",
            "--session",
            "s1",
            "--request",
            req,
        ],
    ] {
        let err = fails(&demo, &args, 2);
        assert!(
            err.contains(&format!("request `{req}` not found")),
            "{args:?}: {err}"
        );
    }
    let apr = "apr_01unknownapproval000000000";
    let err = fails(&demo, &["runtime", "approvals", "show", apr], 2);
    assert!(
        err.contains(&format!("approval `{apr}` not found")),
        "{err}"
    );
    let err = fails(
        &demo,
        &[
            "runtime",
            "approvals",
            "approve",
            apr,
            "--session",
            "s1",
            "--request",
            &p.request,
        ],
        2,
    );
    assert!(
        err.contains(&format!("approval `{apr}` not found")),
        "{err}"
    );
    for args in [
        vec!["runtime", "sessions", "show", "nope"],
        vec!["runtime", "events", "--session", "nope"],
        vec!["runtime", "export", "session", "--session", "nope"],
    ] {
        let err = fails(&demo, &args, 2);
        assert!(err.contains("session `nope` not found"), "{args:?}: {err}");
    }
    assert_eq!(
        event_count(&demo),
        before,
        "a failed command changed the store"
    );
    assert!(
        !demo.root.join("exports").exists(),
        "a failed export left files"
    );
}

#[test]
fn malformed_ids_say_what_they_must_look_like() {
    let demo = Demo::new();
    let p = demo.paused();
    let err = fails(&demo, &["runtime", "requests", "show", "apr_123"], 2);
    assert!(
        err.contains("request id `apr_123` must start with `req_`"),
        "{err}"
    );
    let err = fails(&demo, &["runtime", "approvals", "show", &p.request], 2);
    assert!(err.contains("must start with `apr_`"), "{err}");
    let err = fails(&demo, &["runtime", "sessions", "show", "../etc"], 2);
    assert!(err.contains("session id `../etc`"), "{err}");
    let mut args = p.approve_args();
    args.extend(["--arguments", "{not json"]);
    let err = fails(&demo, &args, 2);
    assert!(err.contains("--arguments is not valid JSON"), "{err}");
    // The overview lists at most 100 recent requests, as the HTTP API does.
    let err = fails(&demo, &["runtime", "overview", "--recent", "101"], 2);
    assert!(err.contains("101 is over the largest, 100"), "{err}");
}

#[test]
fn a_missing_workspace_says_how_to_create_one() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere");
    let out = Command::new(BIN)
        .args(["runtime", "overview", "--workspace"])
        .arg(&missing)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no workspace at"), "{err}");
    assert!(err.contains("agent-harness init"), "{err}");
    assert_eq!(err.matches("no workspace at").count(), 1, "repeated: {err}");
    assert!(!missing.exists(), "a view created the workspace folder");
}

#[test]
fn a_workspace_without_a_store_says_how_to_create_one() {
    let demo = Demo::new();
    for args in [
        vec!["runtime", "overview"],
        vec!["runtime", "health"],
        vec!["runtime", "requests", "tail", "--once"],
        vec!["runtime", "approvals", "watch", "--once"],
        vec![
            "runtime",
            "approvals",
            "approve",
            "apr_01x0000000000000000000000",
            "--session",
            "s1",
            "--request",
            "req_01x0000000000000000000000",
        ],
        vec!["runtime", "maintenance", "--dry-run"],
    ] {
        let err = fails(&demo, &args, 2);
        assert!(err.contains("no store at"), "{args:?}: {err}");
        assert!(err.contains("agent-harness run"), "{args:?}: {err}");
    }
    assert!(
        !demo.root.join(".agent-harness").exists(),
        "a failed command created the store"
    );
}

#[test]
fn resolving_twice_is_refused_with_state_and_decider() {
    let demo = Demo::new();
    let p = demo.approved();
    let before = event_count(&demo);
    let err = fails(&demo, &p.approve_args(), 3);
    assert!(
        err.contains(&format!("approval {} is already approved", p.approval)),
        "{err}"
    );
    assert!(err.contains("decided by alice"), "{err}");
    let mut reject: Vec<&str> = p.approve_args();
    reject[2] = "reject";
    let err = fails(&demo, &reject, 3);
    assert!(err.contains("already approved (decided by alice"), "{err}");
    assert_eq!(
        event_count(&demo),
        before,
        "a refused resolution changed the store"
    );
}

#[test]
fn resolving_with_the_wrong_request_or_session_is_bad_input() {
    let demo = Demo::new();
    let p = demo.paused();
    let before = event_count(&demo);
    let other = "req_01otherrequest000000000000";
    let approve = |session: &str, request: &str| -> Vec<String> {
        ["runtime", "approvals", "approve", &p.approval]
            .into_iter()
            .chain(["--session", session, "--request", request])
            .map(String::from)
            .collect()
    };
    let args = approve(&p.session, other);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = fails(&demo, &args, 2);
    assert!(
        err.contains(&format!(
            "approval {} belongs to request `{}`, not `{other}`",
            p.approval, p.request
        )),
        "{err}"
    );
    let args = approve("s2", &p.request);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = fails(&demo, &args, 2);
    assert!(
        err.contains(&format!(
            "approval {} belongs to session `{}`, not `s2`",
            p.approval, p.session
        )),
        "{err}"
    );
    let a = demo
        .at(T3, &["runtime", "approvals", "show", &p.approval, "--json"])
        .ok()
        .json();
    assert_eq!(a["status"], "pending");
    assert_eq!(
        event_count(&demo),
        before,
        "a refused approval changed the store"
    );
}

#[test]
fn an_empty_request_input_is_refused() {
    let demo = Demo::new();
    demo.paused();
    let before = event_count(&demo);
    for input in ["", " \n\t "] {
        for command in ["request", "run"] {
            let err = fails(&demo, &[command, "--agent", "assistant", input], 2);
            assert!(
                err.contains("the request input is empty: give the agent a task to work on"),
                "{command} {input:?}: {err}"
            );
        }
    }
    let requests = demo
        .at(T3, &["runtime", "requests", "list", "--json"])
        .ok()
        .json();
    assert_eq!(
        requests["requests"].as_array().unwrap().len(),
        1,
        "{requests}"
    );
    assert_eq!(event_count(&demo), before, "an empty input was admitted");
}

#[test]
fn finished_requests_cannot_be_cancelled_or_resumed() {
    let demo = Demo::new();
    let p = demo.approved();
    let err = fails(&demo, &["runtime", "requests", "cancel", &p.request], 3);
    assert!(err.contains("is completed; cannot cancel it"), "{err}");
    let err = fails(&demo, &["runtime", "requests", "resume", &p.request], 3);
    assert!(err.contains("is completed"), "{err}");
}

#[test]
fn a_request_paused_for_approval_resumes_only_through_it() {
    let demo = Demo::new();
    let p = demo.paused();
    let before = event_count(&demo);
    let err = fails(&demo, &["runtime", "requests", "resume", &p.request], 3);
    assert!(err.contains("is waiting for approval"), "{err}");
    // It names the command that resolves the pending approval.
    assert!(err.contains(&p.approval), "{err}");
    assert_eq!(event_count(&demo), before, "resume changed something");
}
