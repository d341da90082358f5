//! `request`/`run --idempotency-key`: the real binary admits once per key and
//! session, answers the same request id again (saying so), and refuses other work
//! under a used key with the conflict exit status.

mod common;

use common::{Demo, Run, T0};

/// The request id `request` prints first.
fn first_word(r: &Run) -> String {
    r.stdout.split_whitespace().next().unwrap().to_string()
}

fn ids_in_session(demo: &Demo, session: &str) -> Vec<String> {
    let list = demo
        .at(
            T0,
            &[
                "runtime",
                "requests",
                "list",
                "--session",
                session,
                "--json",
            ],
        )
        .ok()
        .json();
    list["requests"]
        .as_array()
        .unwrap_or_else(|| panic!("no requests array: {list}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn request_with_a_key_admits_once_and_refuses_other_work_under_it() {
    let demo = Demo::new();
    let ask = [
        "request",
        "--agent",
        "assistant",
        "--session",
        "s1",
        "--idempotency-key",
        "ticket-42",
        "ship the notes",
    ];
    let first = demo.at(T0, &ask).ok();
    let id = first_word(&first);
    assert!(id.starts_with("req_"), "{}", first.stdout);
    assert!(
        !first.stdout.contains("admitted before"),
        "{}",
        first.stdout
    );

    let again = demo.at(T0, &ask).ok();
    assert!(again.stdout.starts_with(&id), "{}", again.stdout);
    assert!(
        again
            .stdout
            .contains("admitted before under this idempotency key"),
        "{}",
        again.stdout
    );
    let mut json_ask = ask.to_vec();
    json_ask.push("--json");
    let j = demo.at(T0, &json_ask).ok().json();
    assert_eq!(j["id"], id.as_str(), "{j}");
    assert_eq!(j["admitted_before"], true, "{j}");
    assert_eq!(j["status"], "queued", "{j}");
    assert_eq!(ids_in_session(&demo, "s1"), vec![id.clone()]);

    // Other work under the used key: refused (3), naming the key and the request.
    let mut other = ask.to_vec();
    *other.last_mut().unwrap() = "something else";
    let r = demo.at(T0, &other).expect(3);
    assert!(r.stderr.contains("ticket-42"), "{}", r.stderr);
    assert!(r.stderr.contains(&id), "{}", r.stderr);
    assert_eq!(ids_in_session(&demo, "s1"), vec![id.clone()]);

    // A key without a session cannot be honoured: bad input (2).
    let r = demo
        .at(
            T0,
            &[
                "request",
                "--agent",
                "assistant",
                "--idempotency-key",
                "k",
                "x",
            ],
        )
        .expect(2);
    assert!(r.stderr.contains("session"), "{}", r.stderr);

    // A new key is new work.
    let mut new_key = ask.to_vec();
    new_key[6] = "ticket-43";
    let r = demo.at(T0, &new_key).ok();
    assert!(!r.stdout.starts_with(&id), "{}", r.stdout);
    assert_eq!(ids_in_session(&demo, "s1").len(), 2);
}

#[test]
fn run_with_a_used_key_continues_or_reports_the_same_request() {
    let demo = Demo::new();
    let ask = [
        "request",
        "--agent",
        "assistant",
        "--session",
        "s1",
        "--idempotency-key",
        "k1",
        "ship the notes",
    ];
    let id = first_word(&demo.at(T0, &ask).ok());
    // `run` under the same key runs the queued request (no worker): it pauses.
    let mut run = ask.to_vec();
    run[0] = "run";
    let r = demo.at(T0, &run).ok();
    assert!(r.stdout.contains(&format!("request {id}")), "{}", r.stdout);
    assert!(r.stdout.contains("admitted before"), "{}", r.stdout);
    assert!(r.stdout.contains("paused for approval"), "{}", r.stdout);
    // Again: it is already settled, so it is reported, not run again.
    let r = demo.at(T0, &run).ok();
    assert!(
        r.stdout.contains("already waiting_approval"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("paused for approval"), "{}", r.stdout);
    assert_eq!(ids_in_session(&demo, "s1"), vec![id]);
}
