//! Snapshots of the operator views' human output, with time frozen
//! (`AGENT_HARNESS_NOW`): the demo request runs at T0 and the operator looks at T3,
//! three minutes later. Ids, paths, pids and sizes are redacted.
//!
//! Update after an intended change with `INSTA_UPDATE=always cargo test -p harness-cli
//! --test operator_snapshots` and review the diff of `tests/snapshots/`.

mod common;

use common::{Demo, T3, redact};

fn view(demo: &Demo, args: &[&str]) -> String {
    let out = demo.at(T3, args).ok();
    redact(&out.stdout, &demo.root)
}

#[test]
fn views_of_a_request_paused_on_approval() {
    let demo = Demo::new();
    let p = demo.paused();
    insta::assert_snapshot!("overview_paused", view(&demo, &["runtime", "overview"]));
    insta::assert_snapshot!("health_paused", view(&demo, &["runtime", "health"]));
    insta::assert_snapshot!(
        "approvals_watch_once",
        view(
            &demo,
            &[
                "runtime",
                "approvals",
                "watch",
                "--status",
                "pending",
                "--once"
            ]
        )
    );
    insta::assert_snapshot!(
        "approvals_show_pending",
        view(&demo, &["runtime", "approvals", "show", &p.approval])
    );
    insta::assert_snapshot!(
        "requests_tail_paused",
        view(&demo, &["runtime", "requests", "tail", "--once"])
    );
    insta::assert_snapshot!(
        "requests_show_paused",
        view(&demo, &["runtime", "requests", "show", &p.request])
    );
}

#[test]
fn views_after_approving_from_the_cli() {
    let demo = Demo::new();
    let p = demo.paused();
    let approve = demo.at(T3, &p.approve_args()).ok();
    insta::assert_snapshot!("approve_in_process", redact(&approve.stdout, &demo.root));
    insta::assert_snapshot!("overview_completed", view(&demo, &["runtime", "overview"]));
    insta::assert_snapshot!(
        "requests_show_completed",
        view(&demo, &["runtime", "requests", "show", &p.request])
    );
    insta::assert_snapshot!(
        "requests_tail_completed",
        view(&demo, &["runtime", "requests", "tail", "--once"])
    );
    insta::assert_snapshot!(
        "requests_list_all",
        view(&demo, &["runtime", "requests", "list", "--all"])
    );
    insta::assert_snapshot!(
        "approvals_list_decided",
        view(&demo, &["runtime", "approvals", "list"])
    );
    insta::assert_snapshot!(
        "sessions_list",
        view(&demo, &["runtime", "sessions", "list"])
    );
    insta::assert_snapshot!(
        "sessions_show",
        view(&demo, &["runtime", "sessions", "show", &p.session])
    );
    insta::assert_snapshot!(
        "events_of_request",
        view(
            &demo,
            &["runtime", "events", "--request", &p.request, "--from", "15"]
        )
    );
}
