//! The five seed commands of the operator CLI, end to end against the demo
//! workspace, exactly as an operator types them: from inside the workspace
//! (`--workspace .`), with and without a `serve` worker running.

mod common;

use common::{BIN, Demo, Paused, Run, T0, T3};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `agent-harness ARGS` run from inside the workspace folder.
fn inside(root: &Path, args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(root)
        .env("NO_COLOR", "1")
        .env_remove("AGENT_HARNESS_NOW")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn overview(root: &Path) -> String {
    inside(root, &["runtime", "overview", "--workspace", "."])
        .ok()
        .stdout
}

fn seed_views_while_paused(root: &Path, p: &Paused) {
    let o = overview(root);
    assert!(
        o.contains("1 pending"),
        "overview misses the approval:\n{o}"
    );
    assert!(
        o.contains("assistant → researcher"),
        "overview misses the delegated agent:\n{o}"
    );
    assert!(
        o.contains(&p.request) && o.contains("waiting_approval"),
        "{o}"
    );

    let h = inside(root, &["runtime", "health", "--workspace", "."]);
    assert!(h.code == 0 || h.code == 6, "{}{}", h.stdout, h.stderr);
    for check in [
        "store",
        "queue",
        "worker",
        "stuck_requests",
        "approvals",
        "disk",
    ] {
        assert!(
            h.stdout.contains(check),
            "health misses {check}:\n{}",
            h.stdout
        );
    }

    let w = inside(
        root,
        &[
            "runtime",
            "approvals",
            "watch",
            "--workspace",
            ".",
            "--status",
            "pending",
            "--once",
        ],
    )
    .ok();
    assert!(
        w.stdout.contains(&p.approval) && w.stdout.contains("send_mail"),
        "{}",
        w.stdout
    );
    assert!(w.stdout.contains("pending"), "{}", w.stdout);
}

fn export_and_verify(root: &Path, p: &Paused) {
    let e = inside(
        root,
        &[
            "runtime",
            "export",
            "request",
            "--workspace",
            ".",
            "--session",
            &p.session,
            "--request",
            &p.request,
            "--artifact-contents",
            "--health",
            "--json",
        ],
    )
    .ok();
    let summary = e.json();
    let path = summary["path"].as_str().unwrap();
    assert!(Path::new(path).join("manifest.json").is_file(), "{path}");
    assert!(summary["requests"].as_u64() == Some(2), "{summary}");
    let v = inside(root, &["runtime", "verify-export", path]).ok();
    assert!(v.stdout.starts_with("ok "), "{}", v.stdout);
}

#[test]
fn seed_commands_in_process() {
    let demo = Demo::new();
    let p = demo.paused();
    seed_views_while_paused(&demo.root, &p);

    // Approve from the CLI: no worker runs, so the run continues in this process.
    let a = demo.at(T3, &p.approve_args()).ok();
    assert!(a.stdout.contains("approved"), "{}", a.stdout);
    assert!(
        a.stdout.contains("continuing in this process"),
        "{}",
        a.stdout
    );
    assert!(a.stdout.contains("request.completed"), "{}", a.stdout);

    let t = inside(
        &demo.root,
        &["runtime", "requests", "tail", "--workspace", ".", "--once"],
    )
    .ok();
    assert!(
        t.stdout.contains(&p.request) && t.stdout.contains("completed"),
        "{}",
        t.stdout
    );
    assert!(t.stdout.contains("Done: release notes"), "{}", t.stdout);

    let o = overview(&demo.root);
    assert!(o.contains("0 pending"), "{o}");
    export_and_verify(&demo.root, &p);
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process by its pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn serve(root: &Path) -> Serve {
    let child = Command::new(BIN)
        .args(["serve", "--workspace"])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s = Serve(child);
    wait_for(
        || {
            inside(root, &["runtime", "overview", "--workspace", "."])
                .stdout
                .contains("alive")
        },
        "the worker to start",
    );
    s
}

const WAIT: Duration = Duration::from_secs(30);

/// Waits for `ok`, up to [`WAIT`]: a bound on liveness, not a timing check (the
/// full suite runs many binaries at once on two CPUs, and a `serve` start once
/// took longer than 10 s there).
fn wait_for(mut ok: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting {} s for {what}",
            WAIT.as_secs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn seed_commands_with_a_worker_running() {
    let demo = Demo::new();
    let _serve = serve(&demo.root);
    let r = demo
        .run(&[
            "run",
            "--agent",
            "assistant",
            "--session",
            "s2",
            "ship the notes",
        ])
        .ok();
    assert!(r.stdout.contains("handed to worker"), "{}", r.stdout);
    let list = demo
        .run(&[
            "runtime",
            "approvals",
            "list",
            "--status",
            "pending",
            "--json",
        ])
        .ok()
        .json();
    let a = &list["approvals"][0];
    let p = Paused {
        request: a["request_id"].as_str().unwrap().into(),
        approval: a["id"].as_str().unwrap().into(),
        session: "s2".into(),
    };
    seed_views_while_paused(&demo.root, &p);
    assert!(overview(&demo.root).contains("alive"));

    let a = demo.run(&p.approve_args()).ok();
    assert!(a.stdout.contains("handed to worker"), "{}", a.stdout);
    wait_for(
        || {
            let t = inside(
                &demo.root,
                &["runtime", "requests", "tail", "--workspace", ".", "--once"],
            );
            t.stdout.contains("completed")
        },
        "the worker to complete the request",
    );
    export_and_verify(&demo.root, &p);
}

#[test]
fn health_exit_status_follows_the_worst_check() {
    let demo = Demo::new();
    // A queued request and no worker: the worker check warns.
    demo.run(&["request", "--agent", "assistant", "hello"]).ok();
    let h = demo.at(T0, &["runtime", "health"]).expect(6);
    assert!(h.stdout.contains("warn    worker"), "{}", h.stdout);
    // Queue at capacity: the queue check fails.
    let cfg = demo.root.join("config/workspace.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("queue_capacity: 1000", "queue_capacity: 1"),
    )
    .unwrap();
    let h = demo.at(T0, &["runtime", "health", "--json"]).expect(7);
    assert_eq!(h.json()["status"], "fail");
}
