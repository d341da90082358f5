//! The incident playbook as commands: a scripted incident (a request paused on an
//! approval, one whose tool keeps failing, one queued with no worker, one cancelled)
//! and what `runtime doctor` and `runtime requests watch` say and exit with.

mod common;

use common::{Demo, T0, T3, redact};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The demo workspace plus an agent whose `deploy` tool always fails: its script
/// calls it twice and then has no turn left, so the request fails.
fn incident() -> Demo {
    let demo = Demo::new();
    add_agent(
        &demo.root,
        "deployer",
        r#"
  deploy:
    description: Deploy the build.
    command: ["sh", "-c", "echo 'connection refused: prod-db:5432' >&2; exit 1"]
    arguments: { type: object, properties: {}, additionalProperties: false }
    approval: never
    idempotent: true
"#,
        "      - tool_calls: [{ tool: deploy, arguments: {} }]\n      - tool_calls: [{ tool: deploy, arguments: {} }]\n",
    );
    demo.at(T0, &["validate"]).ok();
    demo
}

/// Adds to the demo workspace a tool (`tool_yaml`, entries under `tools:`) and an
/// agent `name` that may call it, whose scripted turns are `turns_yaml`.
fn add_agent(root: &std::path::Path, name: &str, tool_yaml: &str, turns_yaml: &str) {
    let tools = root.join("config/tools.yaml");
    let mut t = std::fs::read_to_string(&tools).unwrap();
    t.push_str(tool_yaml);
    std::fs::write(&tools, t).unwrap();
    let tool = tool_yaml.trim_start().split(':').next().unwrap();
    std::fs::write(
        root.join(format!("config/agents/{name}.yaml")),
        format!("name: {name}\ndescription: A test agent.\nmodel: scripted\nsystem_prompt: Work.\ntools: [{tool}]\n"),
    )
    .unwrap();
    let script = root.join("resources/scripts/demo.yaml");
    let mut s = std::fs::read_to_string(&script).unwrap();
    s.push_str(&format!("  {name}:\n    turns:\n{turns_yaml}"));
    std::fs::write(&script, s).unwrap();
}

fn admit(demo: &Demo, session: &str, agent: &str) -> String {
    let out = demo
        .at(
            T0,
            &[
                "request",
                "--json",
                "--agent",
                agent,
                "--session",
                session,
                "go",
            ],
        )
        .ok()
        .json();
    out["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{out}"))
        .to_string()
}

fn failed(demo: &Demo) -> String {
    demo.at(
        T0,
        &["run", "--agent", "deployer", "--session", "s2", "ship it"],
    )
    .expect(1);
    let out = demo
        .at(
            T0,
            &[
                "runtime", "requests", "list", "--agent", "deployer", "--json",
            ],
        )
        .ok()
        .json();
    let r = &out["requests"][0];
    assert_eq!(r["status"], "failed", "{out}");
    r["id"].as_str().unwrap().to_string()
}

#[test]
fn doctor_names_the_next_action_for_each_request() {
    let demo = incident();
    let paused = demo.paused();
    let failed = failed(&demo);
    let queued = admit(&demo, "s3", "assistant");
    let cancelled = admit(&demo, "s4", "assistant");
    demo.at(
        T0,
        &[
            "runtime",
            "requests",
            "cancel",
            &cancelled,
            "--reason",
            "duplicate",
        ],
    )
    .ok();

    // Without an id: the three that need a human, longest waiting first; exit 1.
    let triage = demo
        .at(T3, &["runtime", "doctor", "--json"])
        .expect(1)
        .json();
    let listed: Vec<(&str, &str)> = triage["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["request"]["id"].as_str().unwrap(),
                r["next"]["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed.len(), 3, "{triage:#}");
    assert!(
        listed.contains(&(paused.request.as_str(), "approve")),
        "{listed:?}"
    );
    assert!(
        listed.contains(&(failed.as_str(), "code_fix")),
        "{listed:?}"
    );
    assert!(
        listed.contains(&(queued.as_str(), "start_worker")),
        "{listed:?}"
    );
    assert!(
        !listed.iter().any(|(id, _)| *id == cancelled),
        "cancelled is not listed"
    );

    let human = demo.at(T3, &["runtime", "doctor"]).expect(1);
    insta::assert_snapshot!("doctor_triage", redact(&human.stdout, &demo.root));

    // With an id: the failed request's cause names the tool, its count and its error.
    let one = demo
        .at(T3, &["runtime", "doctor", &failed, "--json"])
        .expect(1)
        .json();
    assert_eq!(one["stop"]["kind"], "failed");
    assert_eq!(one["stop"]["failing_tools"][0]["tool"], "deploy");
    assert_eq!(one["stop"]["failing_tools"][0]["count"], 2);
    let summary = one["next"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("code fix: the tool `deploy` failed 2 times with:")
            && summary.contains("connection refused: prod-db:5432"),
        "{summary}"
    );
    assert_eq!(
        one["next"]["commands"][0],
        format!("agent-harness runtime requests retry {failed}")
    );
    let human = demo.at(T3, &["runtime", "doctor", &failed]).expect(1);
    insta::assert_snapshot!("doctor_failed", redact(&human.stdout, &demo.root));

    // The paused one: the approval, its reason, and the commands to decide it.
    let human = demo
        .at(T3, &["runtime", "doctor", &paused.request])
        .expect(1);
    insta::assert_snapshot!("doctor_paused", redact(&human.stdout, &demo.root));
    let one = demo
        .at(T3, &["runtime", "doctor", &paused.request, "--json"])
        .expect(1)
        .json();
    assert_eq!(
        one["next"]["commands"][0],
        format!(
            "agent-harness runtime approvals approve {}",
            paused.approval
        )
    );

    // The cancelled one needs nothing: exit 0.
    let one = demo
        .at(T3, &["runtime", "doctor", &cancelled, "--json"])
        .ok()
        .json();
    assert_eq!(one["stop"]["kind"], "cancelled");

    // Approving with the approval id alone works, and then nothing of it is left.
    demo.at(T3, &["runtime", "approvals", "approve", &paused.approval])
        .ok();
    let triage = demo
        .at(T3, &["runtime", "doctor", "--json"])
        .expect(1)
        .json();
    assert_eq!(
        triage["requests"].as_array().unwrap().len(),
        2,
        "{triage:#}"
    );
}

#[test]
fn approving_with_a_request_that_is_not_the_approvals_own_is_refused() {
    let demo = Demo::new();
    let p = demo.paused();
    let other = admit(&demo, "s9", "assistant");
    let out = demo
        .at(
            T3,
            &[
                "runtime",
                "approvals",
                "approve",
                &p.approval,
                "--request",
                &other,
            ],
        )
        .expect(2);
    assert!(out.stderr.contains(&p.approval), "{}", out.stderr);
    // Nothing was decided.
    let a = demo
        .at(T3, &["runtime", "approvals", "show", &p.approval, "--json"])
        .ok()
        .json();
    assert_eq!(a["status"], "pending");
}

#[test]
fn watch_exits_with_the_outcome() {
    let demo = incident();
    let failed = failed(&demo);
    demo.at(T3, &["runtime", "requests", "watch", &failed])
        .expect(1);

    let cancelled = admit(&demo, "s4", "assistant");
    demo.at(T0, &["runtime", "requests", "cancel", &cancelled])
        .ok();
    demo.at(T3, &["runtime", "requests", "watch", &cancelled])
        .expect(5);

    // `requests resume` that ends in failure exits as `run` does.
    let queued = admit(&demo, "s5", "deployer");
    demo.at(T3, &["runtime", "requests", "resume", &queued])
        .expect(1);
    demo.at(T3, &["runtime", "requests", "watch", &queued])
        .expect(1);

    let p = demo.paused();
    let out = demo
        .at(T3, &["runtime", "requests", "watch", &p.request])
        .expect(4);
    assert!(
        out.stdout.contains(&format!(
            "agent-harness runtime approvals approve {}",
            p.approval
        )),
        "{}",
        out.stdout
    );
    demo.at(T3, &p.approve_args()).ok();
    let out = demo
        .at(T3, &["runtime", "requests", "watch", &p.request])
        .ok();
    assert!(out.stdout.contains("completed:"), "{}", out.stdout);
}

/// A watch started before the request runs follows it, children included, and
/// every event of the tree is printed exactly once.
#[test]
fn watch_follows_a_tree_as_it_runs() {
    let demo = Demo::new();
    let id = admit(&demo, "s1", "assistant");
    let mut watch = Command::new(common::BIN)
        .args(["runtime", "requests", "watch", &id, "--json", "--workspace"])
        .arg(&demo.root)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Give the watch its cursor before the run starts (it would also catch up if not).
    std::thread::sleep(Duration::from_millis(300));
    demo.run(&["runtime", "requests", "resume", &id]).ok();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = watch.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "watch did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(4), "paused for approval");
    let mut out = String::new();
    watch
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (last, events) = lines.split_last().unwrap();
    assert_eq!(
        last["status"], "waiting_approval",
        "the request itself comes last"
    );
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seqs, sorted, "in order, none twice");
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"delegate.started"), "{kinds:?}");
    let child_events = events
        .iter()
        .filter(|e| e["request_id"].as_str() != Some(id.as_str()))
        .count();
    assert!(
        child_events >= 3,
        "the delegated child's events are followed: {kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"request.waiting_approval"));
}

/// A call left awaiting approval by a request that was then cancelled never ran:
/// `requests show` says so, and ends with the request's last events.
#[test]
fn show_marks_calls_of_a_cancelled_request_as_not_run() {
    let demo = Demo::new();
    let p = demo.paused();
    demo.at(T3, &["runtime", "requests", "cancel", &p.request])
        .ok();
    let out = demo
        .at(T3, &["runtime", "requests", "show", &p.request])
        .ok();
    let mail = out
        .stdout
        .lines()
        .find(|l| l.contains("send_mail") && !l.contains("calls send_mail"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        mail.contains("not run") && mail.contains("not run: the request cancelled"),
        "{mail}"
    );
    assert!(!mail.contains("awaiting_approval"), "{mail}");
    let tail: Vec<&str> = out.stdout.lines().rev().take(6).collect();
    assert!(
        tail.iter().any(|l| l.contains("request.cancelled")),
        "{tail:?}"
    );
}

/// A note decides nothing: the approval stays pending; the note is in `show`, in
/// the event log and in the evidence package. Bad notes are refused, nothing written.
#[test]
fn notes_are_recorded_without_deciding() {
    let demo = Demo::new();
    let p = demo.paused();
    demo.at(
        T3,
        &[
            "runtime",
            "approvals",
            "annotate",
            &p.approval,
            "-m",
            "waiting for the customer",
        ],
    )
    .ok();
    demo.at(
        T3,
        &[
            "runtime",
            "requests",
            "annotate",
            &p.request,
            "-m",
            "ticket OPS-42",
            "--as",
            "bob",
        ],
    )
    .ok();

    let a = demo
        .at(T3, &["runtime", "approvals", "show", &p.approval])
        .ok();
    assert!(a.stdout.contains("alice on"), "{}", a.stdout);
    assert!(
        a.stdout.contains("waiting for the customer"),
        "{}",
        a.stdout
    );
    assert!(
        !a.stdout.contains("ticket OPS-42"),
        "only the approval's notes: {}",
        a.stdout
    );
    let json = demo
        .at(T3, &["runtime", "approvals", "show", &p.approval, "--json"])
        .ok()
        .json();
    assert_eq!(json["status"], "pending", "a note decides nothing");

    let show = demo
        .at(T3, &["runtime", "requests", "show", &p.request])
        .ok();
    assert!(
        show.stdout.contains("bob: ticket OPS-42"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("waiting for the customer"),
        "{}",
        show.stdout
    );

    let events = demo
        .at(
            T3,
            &["runtime", "events", "--request", &p.request, "--json"],
        )
        .ok();
    let notes: Vec<serde_json::Value> = events
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"] == "note.added")
        .collect();
    assert_eq!(notes.len(), 2);
    assert_eq!(notes[0]["payload"]["approval_id"], p.approval.as_str());
    assert_eq!(notes[1]["payload"]["by"], "bob");

    let out = demo.root.join("evidence");
    demo.at(
        T3,
        &[
            "runtime",
            "export",
            "request",
            "--session",
            &p.session,
            "--request",
            &p.request,
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .ok();
    let exported = common::files_text(&out, None);
    assert!(
        exported.contains("ticket OPS-42"),
        "the note is in the evidence package"
    );

    // Refused, nothing written: an empty note, an unknown id, an oversized note.
    demo.at(
        T3,
        &["runtime", "requests", "annotate", &p.request, "-m", "  "],
    )
    .expect(2);
    let unknown = demo
        .at(
            T3,
            &[
                "runtime",
                "requests",
                "annotate",
                "req_01jzzzzzzzzzzzzzzzzzzzzzzz",
                "-m",
                "x",
            ],
        )
        .expect(2);
    assert!(
        unknown.stderr.contains("req_01jzzzzzzzzzzzzzzzzzzzzzzz"),
        "{}",
        unknown.stderr
    );
    let big = "x".repeat(9000);
    demo.at(
        T3,
        &["runtime", "requests", "annotate", &p.request, "-m", &big],
    )
    .expect(2);
    let events = demo
        .at(
            T3,
            &["runtime", "events", "--request", &p.request, "--json"],
        )
        .ok();
    assert_eq!(events.stdout.matches("note.added").count(), 2);
}

/// A request whose tool hangs: past `stuck_after` the overview lists it with the
/// call in flight, and doctor says to investigate (follow its events, or cancel).
#[test]
fn a_hung_tool_call_is_named_by_overview_and_doctor() {
    let demo = incident();
    let root = &demo.root;
    add_agent(
        root,
        "hanger",
        r#"
  hang:
    description: Never returns in time.
    command: ["sleep", "60"]
    arguments: { type: object, properties: {}, additionalProperties: false }
    approval: never
    idempotent: true
    timeout: 120s
"#,
        "      - tool_calls: [{ tool: hang, arguments: {} }]\n",
    );
    let id = demo
        .run(&[
            "request",
            "--json",
            "--agent",
            "hanger",
            "--session",
            "h1",
            "go",
        ])
        .ok()
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut serve = Command::new(common::BIN)
        .args(["serve", "--workspace"])
        .arg(root)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let events = demo.run(&["runtime", "events", "--request", &id, "--json"]);
        if events.stdout.contains("tool.started") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the tool never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // An hour later by the operator's clock, nothing has moved.
    let later = (std::time::SystemTime::now() + Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let o = demo
        .at(&later, &["runtime", "overview", "--json"])
        .ok()
        .json();
    let stuck = &o["stuck"][0];
    assert_eq!(stuck["id"], id.as_str(), "{o:#}");
    assert!(
        stuck["in_flight"]
            .as_str()
            .unwrap()
            .starts_with("tool hang (call_"),
        "{stuck}"
    );
    let human = demo.at(&later, &["runtime", "overview"]).ok();
    assert!(
        human.stdout.contains("tool hang (call_"),
        "{}",
        human.stdout
    );
    let d = demo
        .at(&later, &["runtime", "doctor", &id, "--json"])
        .expect(1)
        .json();
    assert_eq!(d["stop"]["kind"], "in_flight");
    assert_eq!(d["stop"]["stuck"], true);
    assert_eq!(d["next"]["action"], "investigate");
    serve.kill().unwrap();
    serve.wait().unwrap();
}

/// `text` without its ANSI colour sequences (what the terminal shows).
fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters… final byte (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The new views at 80 and 200 columns, plain and in colour: tables fit (colour
/// codes take no columns), ids are never cut, `-o wide` shows everything.
#[test]
fn views_fit_80_and_200_columns() {
    let demo = incident();
    let p = demo.paused();
    failed(&demo);
    for (cols, colour) in [(80, false), (200, false), (80, true), (200, true)] {
        for view in [
            vec!["runtime", "doctor"],
            vec!["runtime", "overview"],
            vec!["runtime", "requests", "list"],
        ] {
            let raw = demo.at_style(T3, Some(cols), colour, &view).stdout;
            assert_eq!(raw.contains('\x1b'), colour, "{view:?}: {raw}");
            let out = visible(&raw);
            if colour {
                assert_eq!(
                    out,
                    visible(&demo.at_width(T3, Some(cols), &view).stdout),
                    "colour changes nothing but colour"
                );
            }
            for l in out.lines() {
                let w = l.chars().count();
                // Free lines (hints with a command to paste) are not table rows.
                if l.trim_start().starts_with("→") || l.contains("agent-harness ") {
                    continue;
                }
                assert!(w <= cols, "{view:?} at {cols}: {w} wide: {l}");
            }
            let name = view[1..].join("_");
            let name = if colour {
                format!("{name}_{cols}_colour")
            } else {
                format!("{name}_{cols}")
            };
            // Escapes shown as `␛`, so a colour snapshot reads as text.
            insta::assert_snapshot!(name, redact(&raw.replace('\x1b', "␛"), &demo.root));
        }
    }
    // One request's screens (not tables: long lines are the terminal's to wrap),
    // plain and in colour.
    for colour in [false, true] {
        for (name, view) in [
            (
                "requests_show",
                vec!["runtime", "requests", "show", &p.request],
            ),
            ("doctor_request", vec!["runtime", "doctor", &p.request]),
        ] {
            let raw = demo.at_style(T3, Some(80), colour, &view).stdout;
            assert_eq!(raw.contains('\x1b'), colour, "{view:?}: {raw}");
            let name = if colour {
                format!("{name}_colour")
            } else {
                name.to_string()
            };
            insta::assert_snapshot!(name, redact(&raw.replace('\x1b', "␛"), &demo.root));
        }
    }
    let wide = demo
        .at_width(T3, Some(80), &["runtime", "doctor", "-o", "wide"])
        .stdout;
    assert!(!wide.contains('…'), "{wide}");
    assert!(wide.contains(&p.request));
}

/// The short ids a terminal view prints resolve back, like git's: any command
/// taking an id accepts a unique prefix; an ambiguous or too short one is refused.
#[test]
fn short_ids_resolve_like_gits() {
    let demo = Demo::new();
    let p = demo.paused();
    admit(&demo, "s2", "assistant");
    let list = demo
        .at_width(T3, Some(100), &["runtime", "approvals", "list"])
        .ok()
        .stdout;
    let short = list
        .split_whitespace()
        .find(|w| w.starts_with("apr_"))
        .unwrap()
        .to_string();
    assert!(
        short.len() < p.approval.len() && p.approval.starts_with(&short),
        "{list}"
    );
    let shown = demo
        .at(T3, &["runtime", "approvals", "show", &short, "--json"])
        .ok()
        .json();
    assert_eq!(shown["id"], p.approval.as_str());
    let short_req = &p.request[..18];
    let tree = demo
        .at(T3, &["runtime", "requests", "show", short_req, "--json"])
        .ok()
        .json();
    assert_eq!(tree["request"]["id"], p.request.as_str());

    // Both requests start with `req_0`…: ambiguous, refused, nothing done.
    let both = &p.request[..8];
    let out = demo
        .at(T3, &["runtime", "requests", "cancel", both])
        .expect(2);
    assert!(out.stderr.contains("ambiguous"), "{}", out.stderr);
    let out = demo
        .at(T3, &["runtime", "requests", "show", "req_01"])
        .expect(2);
    assert!(out.stderr.contains("too short"), "{}", out.stderr);
    let out = demo
        .at(T3, &["runtime", "requests", "show", "req_zzzzzzzz"])
        .expect(2);
    assert!(
        out.stderr.contains("request `req_zzzzzzzz` not found"),
        "{}",
        out.stderr
    );
    // With the short id, approving works as with the full one.
    demo.at(T3, &["runtime", "approvals", "approve", &short])
        .ok();
    let a = demo
        .at(T3, &["runtime", "approvals", "show", &p.approval, "--json"])
        .ok()
        .json();
    assert_eq!(a["status"], "approved");
}
