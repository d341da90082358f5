//! `runtime … --server URL --token T`: every supported command run twice, against
//! the workspace and through a real `agent-harness serve --listen`, prints the same
//! stdout and exits with the same code (errors too: unknown ids, wrong state, a
//! viewer token acting, no token, the server down). The demo flow is driven
//! remotely end to end: request → pending approval → approved through `--server` →
//! completed.

mod common;

use common::{BIN, Demo, Run, redact};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OPS: &str = "s3cret-ops-token";
const VIEW: &str = "s3cret-viewer-token";
/// Both sides render ages against one frozen clock (`AGENT_HARNESS_NOW`): an hour
/// from the test's start (in epoch milliseconds), so that approvals have not expired.
fn frozen_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (now.as_millis() + 3_600_000).to_string()
}

/// `serve --listen 127.0.0.1:0` with an operator token `ops` and a viewer token `view`.
fn serve_api(root: &Path) -> (Child, String) {
    serve_on(root, "127.0.0.1:0")
}

/// [`serve_api`] on `addr`.
fn serve_on(root: &Path, addr: &str) -> (Child, String) {
    std::fs::write(
        root.join("config/server.yaml"),
        "tokens:\n  - name: ops\n    role: operator\n    env: OPS_TOKEN\n  \
         - name: view\n    role: viewer\n    env: VIEW_TOKEN\n",
    )
    .unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("serve.log"))
        .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--json", "--listen", addr, "--workspace"])
        .arg(root)
        .env("OPS_TOKEN", OPS)
        .env("VIEW_TOKEN", VIEW)
        .env_remove("AGENT_HARNESS_NOW")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| {
                panic!(
                    "serve ended: {}",
                    std::fs::read_to_string(root.join("serve.log")).unwrap_or_default()
                )
            })
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        if let Some(url) = v["listening"].as_str() {
            break url.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}

struct Sides<'a> {
    demo: &'a Demo,
    base: String,
    /// A folder with no workspace: remote commands must not need one.
    elsewhere: tempfile::TempDir,
    now: String,
}

impl Sides<'_> {
    fn cmd(&self, now: Option<&str>) -> Command {
        let mut c = Command::new(BIN);
        c.env("NO_COLOR", "1")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("COLUMNS")
            .env_remove("AGENT_HARNESS_SERVER")
            .env_remove("AGENT_HARNESS_TOKEN")
            .env("USER", "alice");
        match now {
            Some(n) => c.env("AGENT_HARNESS_NOW", n),
            None => c.env_remove("AGENT_HARNESS_NOW"),
        };
        c
    }

    fn local_at(&self, now: Option<&str>, args: &[&str]) -> Run {
        let mut c = self.cmd(now);
        c.args(args).arg("--workspace").arg(&self.demo.root);
        run(c)
    }

    fn local(&self, args: &[&str]) -> Run {
        self.local_at(Some(&self.now), args)
    }

    /// Through the API with `token` (none: no token), from a folder with no workspace.
    fn remote_at(&self, now: Option<&str>, token: Option<&str>, args: &[&str]) -> Run {
        let mut c = self.cmd(now);
        c.current_dir(self.elsewhere.path())
            .args(args)
            .args(["--server", &self.base]);
        if let Some(t) = token {
            c.args(["--token", t]);
        }
        run(c)
    }

    fn remote(&self, args: &[&str]) -> Run {
        self.remote_at(Some(&self.now), Some(OPS), args)
    }

    /// Runs `args` on both sides; asserts the same exit code and stdout.
    fn same(&self, args: &[&str]) -> Run {
        let (l, r) = (self.local(args), self.remote(args));
        if l.code != r.code {
            eprintln!(
                "serve.log:\n{}",
                std::fs::read_to_string(self.demo.root.join("serve.log")).unwrap_or_default()
            );
        }
        assert_same(args, &l, &r, |s| s.to_string());
        r
    }
}

fn run(mut c: Command) -> Run {
    let o = c.output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn assert_same(args: &[&str], l: &Run, r: &Run, mask: impl Fn(&str) -> String) {
    assert_eq!(
        l.code, r.code,
        "{args:?}: exit codes differ\n--- local stderr\n{}\n--- remote stderr\n{}",
        l.stderr, r.stderr
    );
    assert_eq!(
        mask(&l.stdout),
        mask(&r.stdout),
        "{args:?}: stdout differs\n--- remote stderr\n{}",
        r.stderr
    );
}

/// What differs between two looks at a live workspace a moment apart: ages and
/// durations (`3s ago`, `heartbeat_age_ms`), and the instant `now`.
fn mask_live(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut digits = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !digits {
                out.push('#');
            }
            digits = true;
        } else {
            digits = false;
            out.push(c);
        }
    }
    out
}

/// Polls until the request has `status` (as `requests list --json` says).
fn wait_status(s: &Sides, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = s.local(&["runtime", "requests", "show", id, "--json"]).ok();
        if r.json()["request"]["status"] == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "request {id} never became {status}: {}\n{}",
            r.stdout,
            std::fs::read_to_string(s.demo.root.join("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Admits the demo request in `session` (the worker runs it) and waits for its approval.
fn paused(s: &Sides, session: &str) -> (String, String) {
    let r = s
        .local_at(
            None,
            &[
                "request",
                "--agent",
                "assistant",
                "--session",
                session,
                "ship the notes",
            ],
        )
        .ok();
    let id = r.stdout.split_whitespace().next().unwrap().to_string();
    assert!(id.starts_with("req_"), "{}", r.stdout);
    wait_status(s, &id, "waiting_approval");
    let a = s
        .local(&[
            "runtime",
            "approvals",
            "list",
            "--request",
            &id,
            "--status",
            "pending",
            "--json",
        ])
        .ok()
        .json();
    let approval = a["approvals"][0]["id"].as_str().unwrap().to_string();
    (id, approval)
}

#[test]
fn remote_commands_print_and_exit_as_local_ones() {
    let demo = Demo::new();
    let (mut child, base) = serve_api(&demo.root);
    let s = Sides {
        demo: &demo,
        base,
        elsewhere: tempfile::tempdir().unwrap(),
        now: frozen_now(),
    };

    // The demo flow, remotely: request → pending approval → approved through
    // --server (recorded as the token's name) → the server's worker completes it.
    let (a, apr_a) = paused(&s, "s1");
    let approved = s
        .remote_at(
            None,
            Some(OPS),
            &[
                "runtime",
                "approvals",
                "approve",
                &apr_a,
                "--message",
                "looks right",
            ],
        )
        .ok();
    let first = approved.stdout.lines().next().unwrap();
    assert_eq!(first, format!("approved {apr_a} (send_mail) by ops"));
    assert!(
        approved.stdout.contains("handed to worker wrk_"),
        "{}",
        approved.stdout
    );
    wait_status(&s, &a, "completed");

    // The same approval decided locally says the same (token name given as --as).
    let (b, apr_b) = paused(&s, "s2");
    let local = s
        .local_at(
            None,
            &[
                "runtime",
                "approvals",
                "approve",
                &apr_b,
                "--as",
                "ops",
                "-m",
                "looks right",
            ],
        )
        .ok();
    assert_eq!(
        redact(&local.stdout, &demo.root),
        redact(&approved.stdout, &demo.root)
    );
    wait_status(&s, &b, "completed");

    // Views: the same stdout, tables and JSON.
    for args in [
        vec!["runtime", "requests", "list"],
        vec!["runtime", "requests", "list", "--json"],
        vec![
            "runtime",
            "requests",
            "list",
            "--status",
            "completed",
            "--session",
            "s1",
        ],
        vec!["runtime", "approvals", "list"],
        vec!["runtime", "approvals", "list", "--json", "--request", &a],
        vec!["runtime", "sessions", "list"],
        vec!["runtime", "sessions", "list", "--json"],
        vec!["runtime", "requests", "show", &a, "--json"],
        vec!["runtime", "artifacts", "list", &a],
        vec!["runtime", "artifacts", "list", &a, "--tree", "--json"],
        vec!["runtime", "artifacts", "show", &a, "summary.md"],
        vec!["runtime", "artifacts", "cat", &a, "summary.md"],
        vec!["runtime", "events", "--request", &a],
        vec!["runtime", "events", "--session", "s2", "--json"],
        vec!["runtime", "events", "--from", "3", "--limit", "4"],
        // --follow stops after --limit events: the same events as the log.
        vec!["runtime", "events", "--follow", "--limit", "6", "--json"],
        vec![
            "runtime",
            "events",
            "--follow",
            "--limit",
            "3",
            "--request",
            &b,
        ],
    ] {
        s.same(&args);
        // A client that went away mid-stream (--follow --limit) never takes the server down.
        assert!(
            child.try_wait().unwrap().is_none(),
            "{args:?}: serve exited"
        );
    }
    let cat = s.remote(&["runtime", "artifacts", "cat", &a, "summary.md"]);
    assert!(!cat.stdout.is_empty());
    // A session with no requests is not found on both sides.
    let (l, r) = (
        s.local(&["runtime", "events", "--session", "nope"]),
        s.remote(&["runtime", "events", "--session", "nope"]),
    );
    assert_eq!((l.code, r.code), (2, 2), "{}\n{}", l.stderr, r.stderr);
    // `show` as a tree: the same tree; the notes and last events (which the API
    // has no route for) are said to be missing, not left out silently.
    let (l, r) = (
        s.local(&["runtime", "requests", "show", &a]).ok(),
        s.remote(&["runtime", "requests", "show", &a]).ok(),
    );
    let (tree, note) = r.stdout.trim_end().rsplit_once("\n\n").unwrap();
    assert!(note.contains("not shown with --server"), "{}", r.stdout);
    assert!(
        l.stdout.starts_with(tree),
        "{}\n---\n{}",
        l.stdout,
        r.stdout
    );
    assert!(l.stdout.contains("last 5 events"), "{}", l.stdout);

    // Export: the package the API sends, written to --out (a .tar.gz), reported as
    // a local export reports it; it verifies.
    let dir = tempfile::tempdir().unwrap();
    let (lp, rp) = (dir.path().join("l.tar.gz"), dir.path().join("r.tar.gz"));
    let export = |out: &Path| {
        vec![
            "runtime".to_string(),
            "export".into(),
            "request".into(),
            "--session".into(),
            "s1".into(),
            "--request".into(),
            a.clone(),
            "--artifact-contents".into(),
            "--out".into(),
            out.display().to_string(),
        ]
    };
    let le: Vec<String> = export(&lp);
    let re: Vec<String> = export(&rp);
    let le: Vec<&str> = le.iter().map(String::as_str).collect();
    let re: Vec<&str> = re.iter().map(String::as_str).collect();
    let l = s.local(&[&le[..], &["--json"]].concat()).ok().json();
    let r = s.remote(&[&re[..], &["--json"]].concat()).ok().json();
    for k in ["files", "requests", "events"] {
        assert_eq!(l[k], r[k], "{k}: {l} {r}");
    }
    assert_eq!(r["path"], rp.display().to_string());
    assert_eq!(r["bytes"], std::fs::metadata(&rp).unwrap().len());
    s.local(&["runtime", "verify-export", &rp.display().to_string()])
        .ok();
    // Refused alike: the file exists, another session, an unknown request.
    let (l, r) = (s.local(&le), s.remote(&re));
    assert_eq!((l.code, r.code), (2, 2), "{}\n{}", l.stderr, r.stderr);
    let fresh = dir.path().join("r2.tar.gz").display().to_string();
    let mut other: Vec<&str> = re
        .iter()
        .map(|x| if *x == "s1" { "s2" } else { x })
        .collect();
    *other.last_mut().unwrap() = &fresh;
    let r = s.remote(&other);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("belongs to session `s1`, not `s2`"),
        "{}",
        r.stderr
    );
    let dirout = dir.path().join("folder").display().to_string();
    let r = s.remote(&[&re[..re.len() - 1], &[dirout.as_str()]].concat());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(".tar.gz"), "{}", r.stderr);

    // Live views (the worker's heartbeat moves between the two looks): the real
    // clock on both sides, digits masked.
    for args in [
        vec!["runtime", "overview"],
        vec!["runtime", "overview", "--json"],
        vec!["runtime", "health"],
        vec!["runtime", "health", "--json"],
    ] {
        let l = s.local_at(None, &args);
        let r = s.remote_at(None, Some(OPS), &args);
        assert_same(&args, &l, &r, mask_live);
    }

    // Actions: retry, cancel; their human output is the same but for the ids.
    let rl = s.local_at(None, &["runtime", "requests", "retry", &a]).ok();
    let rr = s
        .remote_at(None, Some(OPS), &["runtime", "requests", "retry", &a])
        .ok();
    assert_eq!(
        redact(&rl.stdout, &demo.root),
        redact(&rr.stdout, &demo.root)
    );
    assert!(
        rr.stdout
            .contains(&format!("(retry of {a} · session s1 · agent assistant)"))
    );
    // One request at a time runs in a session: the second retry waits for the first.
    let retried: Vec<String> = [&rl, &rr]
        .iter()
        .map(|o| o.stdout.split_whitespace().next().unwrap().to_string())
        .collect();
    wait_status(&s, &retried[0], "waiting_approval");
    let cl = s
        .local_at(
            None,
            &[
                "runtime",
                "requests",
                "cancel",
                &retried[0],
                "--as",
                "ops",
                "--reason",
                "test",
            ],
        )
        .ok();
    wait_status(&s, &retried[1], "waiting_approval");
    let cr = s
        .remote_at(
            None,
            Some(OPS),
            &[
                "runtime",
                "requests",
                "cancel",
                &retried[1],
                "--reason",
                "test",
            ],
        )
        .ok();
    assert_eq!(
        redact(&cl.stdout, &demo.root),
        redact(&cr.stdout, &demo.root)
    );
    assert!(
        cr.stdout.contains("(was waiting_approval)"),
        "{}",
        cr.stdout
    );

    // Errors: the same exit codes.
    let unknown = "req_00000000000000000000000000";
    for (args, code) in [
        // Unknown request: 2.
        (vec!["runtime", "requests", "show", unknown], 2),
        (vec!["runtime", "requests", "cancel", unknown], 2),
        // Approving twice (not pending any more): 3.
        (vec!["runtime", "approvals", "approve", &apr_a], 3),
        (
            vec!["runtime", "approvals", "reject", &apr_b, "-m", "late"],
            3,
        ),
        // Cancelling a cancelled request, resuming a finished one: 3.
        (vec!["runtime", "requests", "cancel", &retried[1]], 3),
        (vec!["runtime", "requests", "resume", &a], 3),
        // Bad input is refused before anything is sent: 2.
        (
            vec!["runtime", "requests", "list", "--since", "yesterday"],
            2,
        ),
    ] {
        let l = s.local(&args);
        let r = s.remote(&args);
        assert_same(&args, &l, &r, |s| s.to_string());
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
    }
    let r = s.remote(&["runtime", "approvals", "approve", &apr_a, "--json"]);
    assert_eq!(r.code, 3);
    let e: Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(e["error"]["code"], "conflict");

    // A viewer token reads, but acting is forbidden (403 → exit 3, code `forbidden`).
    let v = s.remote_at(
        Some(&s.now),
        Some(VIEW),
        &["runtime", "requests", "list", "--json"],
    );
    assert_eq!(v.code, 0, "{}", v.stderr);
    let (pending, apr_c) = paused(&s, "s3");
    let v = s.remote_at(
        Some(&s.now),
        Some(VIEW),
        &["runtime", "approvals", "approve", &apr_c, "--json"],
    );
    assert_eq!(v.code, 3, "{}", v.stderr);
    let e: Value = serde_json::from_str(v.stderr.trim()).unwrap();
    assert_eq!(e["error"]["code"], "forbidden");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("role viewer")
    );
    assert!(!v.stderr.contains(VIEW), "{}", v.stderr);
    s.local(&["runtime", "requests", "show", &pending, "--json"])
        .ok();

    // No token: 401 (exit 3), saying how to give one; a wrong token: the same code,
    // and the token is never echoed.
    let n = s.remote_at(Some(&s.now), None, &["runtime", "requests", "list"]);
    assert_eq!(n.code, 3, "{}", n.stderr);
    assert!(n.stderr.contains("--token"), "{}", n.stderr);
    let w = s.remote_at(
        Some(&s.now),
        Some("not-a-token-xyz"),
        &["runtime", "overview", "--json"],
    );
    assert_eq!(w.code, 3, "{}", w.stderr);
    let e: Value = serde_json::from_str(w.stderr.trim()).unwrap();
    assert_eq!(e["error"]["code"], "unauthorized");
    assert!(!w.stderr.contains("not-a-token-xyz"));

    // The token from the environment works like --token.
    let mut c = s.cmd(Some(&s.now));
    c.current_dir(s.elsewhere.path())
        .args(["runtime", "sessions", "list", "--json"])
        .env("AGENT_HARNESS_SERVER", &s.base)
        .env("AGENT_HARNESS_TOKEN", OPS);
    let e = run(c);
    assert_eq!(e.code, 0, "{}", e.stderr);
    assert_eq!(
        e.stdout,
        s.local(&["runtime", "sessions", "list", "--json"]).stdout
    );

    // Commands that need the store directly refuse --server as invalid use (2).
    for args in [
        vec!["runtime", "doctor"],
        vec!["runtime", "maintenance"],
        vec!["runtime", "requests", "tail"],
        vec!["runtime", "health", "--deep"],
    ] {
        let r = s.remote(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("does not work with --server"),
            "{}",
            r.stderr
        );
    }

    // The server down: a clear message, exit 1 (unavailable), token not shown.
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut child = child;
    assert!(child.wait().unwrap().success());
    let d = s.remote(&["runtime", "overview"]);
    assert_eq!(d.code, 1, "{}", d.stderr);
    assert!(
        d.stderr.contains("cannot reach the server at"),
        "{}",
        d.stderr
    );
    assert!(!d.stderr.contains(OPS));
    let d = s.remote(&["runtime", "requests", "list", "--json"]);
    assert_eq!(d.code, 1);
    let e: Value = serde_json::from_str(d.stderr.trim()).unwrap();
    assert_eq!(e["error"]["code"], "unavailable");
}

fn terminate(mut child: Child) {
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

/// `events --follow --server` outlives a server restart: the stream is reopened
/// from the last event printed (`Last-Event-ID`), with no gap and no duplicate.
#[test]
fn remote_follow_resumes_across_a_server_restart() {
    let demo = Demo::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (child, base) = serve_on(&demo.root, &addr);
    let s = Sides {
        demo: &demo,
        base,
        elsewhere: tempfile::tempdir().unwrap(),
        now: frozen_now(),
    };
    let (id, approval) = paused(&s, "s1");
    let before = s.local(&["runtime", "events", "--json"]).ok().stdout;
    let n = before.lines().count();
    // Follow everything so far and the first event after the restart.
    let want = (n + 1).to_string();
    let mut c = s.cmd(None);
    c.current_dir(s.elsewhere.path())
        .args(["runtime", "events", "--follow", "--json", "--limit", &want])
        .args(["--server", &s.base, "--token", OPS])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let follower = c.spawn().unwrap();
    // It has printed what there was once the server sees it subscribed: wait a moment.
    std::thread::sleep(Duration::from_millis(500));
    terminate(child);
    std::thread::sleep(Duration::from_millis(1500));
    let (child, _) = serve_on(&demo.root, &addr);
    s.local_at(
        None,
        &["runtime", "approvals", "approve", &approval, "-m", "ok"],
    )
    .ok();
    wait_status(&s, &id, "completed");
    let out = follower.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("reconnecting after #"), "{stderr}");
    let followed = String::from_utf8_lossy(&out.stdout).into_owned();
    let log = s
        .local(&["runtime", "events", "--json", "--limit", &want])
        .ok()
        .stdout;
    assert_eq!(followed, log);
    assert!(followed.starts_with(&before));
    terminate(child);
}
