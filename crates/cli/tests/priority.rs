//! `request --priority`: kept on the request, shown by `requests show` and
//! `requests list --json`; out of range is refused with what is allowed.

mod common;

use common::{Demo, T0};

#[test]
fn priority_is_kept_shown_and_bounded() {
    let demo = Demo::new();
    let r = demo
        .at(
            T0,
            &[
                "request",
                "--agent",
                "assistant",
                "--priority",
                "-7",
                "low task",
                "--json",
            ],
        )
        .ok()
        .json();
    assert_eq!(r["priority"], -7);
    let id = r["id"].as_str().unwrap().to_string();
    let list = demo
        .at(T0, &["runtime", "requests", "list", "--json"])
        .ok()
        .json();
    assert_eq!(list["requests"][0]["id"], id.as_str());
    assert_eq!(list["requests"][0]["priority"], -7);
    let show = demo.at(T0, &["runtime", "requests", "show", &id]).ok();
    assert!(show.stdout.contains("priority -7"), "{}", show.stdout);

    let bad = demo
        .at(
            T0,
            &[
                "request",
                "--agent",
                "assistant",
                "--priority",
                "101",
                "task",
            ],
        )
        .expect(2);
    assert!(
        bad.stderr.contains("priority 101 is out of range") && bad.stderr.contains("-100 to 100"),
        "{}",
        bad.stderr
    );
    let list = demo
        .at(T0, &["runtime", "requests", "list", "--json"])
        .ok()
        .json();
    assert_eq!(
        list["requests"].as_array().unwrap().len(),
        1,
        "the refused one was admitted"
    );
}
