//! The store under faults, end to end through the binary: maintenance beside a
//! running worker.

mod common;
mod worker;

use common::{BIN, Demo};
use harness_engine::Harness;
use std::process::Command;
use worker::{serve, terminate, wait_for_holder};

fn maintenance(demo: &Demo, extra: &[&str]) -> common::Run {
    let mut args = vec!["runtime", "maintenance", "--older-than", "0s", "--json"];
    args.extend_from_slice(extra);
    demo.run(&args)
}

#[test]
fn vacuum_is_refused_while_a_worker_serves_and_pruning_is_not() {
    let demo = Demo::new();
    demo.approved();
    let h = Harness::inspect(&demo.root).unwrap();
    let child = serve(&demo.root);
    wait_for_holder(&h, child.id());

    let refused = maintenance(&demo, &["--vacuum"]).expect(3);
    assert!(
        refused.stderr.contains("--vacuum") && refused.stderr.contains("stop it first"),
        "{}",
        refused.stderr
    );
    let pruned = maintenance(&demo, &[]).ok().json();
    assert!(pruned["requests"].as_u64().unwrap() > 0, "{pruned}");
    assert_eq!(pruned["vacuum"], false);
    terminate(child);

    // With no worker running, --vacuum compacts.
    let vacuumed = maintenance(&demo, &["--vacuum"]).ok().json();
    assert_eq!(vacuumed["vacuum"], true);
    let health = Command::new(BIN)
        .args(["runtime", "health", "--workspace"])
        .arg(&demo.root)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&health.stdout).contains("integrity ok"),
        "{health:?}"
    );
}

/// Runs `serve` and expects it to exit on its own within a few seconds.
fn serve_refused(root: &std::path::Path, extra: &[&str]) -> (i32, String) {
    use std::time::{Duration, Instant};
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(extra)
        .arg("--workspace")
        .arg(root)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve kept running on the store");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code().unwrap_or(-1), stderr)
}

fn db(demo: &Demo) -> std::path::PathBuf {
    demo.root.join(".agent-harness").join(harness_store_db())
}

fn harness_store_db() -> &'static str {
    "harness.db"
}

/// A demo store with records, every process done with it, and its WAL folded into
/// the database file (so that damage to the file hits live pages).
fn used_demo() -> Demo {
    use std::time::{Duration, Instant};
    let demo = Demo::new();
    demo.approved();
    // The CLI exits without closing its connections; the last connection to close
    // checkpoints the WAL and deletes it.
    drop(Harness::inspect(&demo.root).unwrap());
    let wal = demo.root.join(".agent-harness/harness.db-wal");
    let deadline = Instant::now() + Duration::from_secs(10);
    while wal.exists() {
        assert!(Instant::now() < deadline, "the WAL was never folded in");
        std::thread::sleep(Duration::from_millis(10));
    }
    demo
}

fn expect_named_failure(demo: &Demo, what: &str) {
    let path = db(demo).display().to_string();
    let health = demo.run(&["runtime", "health"]).expect(7);
    assert!(
        health.stdout.contains("fail") && health.stdout.contains(&path),
        "{what}: runtime health:\n{}{}",
        health.stdout,
        health.stderr
    );
    let json = demo.run(&["runtime", "health", "--json"]).expect(7).json();
    assert_eq!(json["status"], "fail", "{what}: {json}");
    let (code, stderr) = serve_refused(&demo.root, &[]);
    assert_ne!(code, 0, "{what}: serve started");
    assert!(
        stderr.contains(&path) && stderr.contains("damaged") && stderr.contains("backup"),
        "{what}: serve said:\n{stderr}"
    );
}

#[test]
fn a_store_truncated_to_half_fails_health_and_serve_refuses_it() {
    let demo = used_demo();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(db(&demo))
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len / 2).unwrap();
    drop(f);
    expect_named_failure(&demo, "truncated");
}

#[test]
fn a_store_with_garbage_inside_fails_health_and_serve_refuses_it() {
    use std::io::{Seek, SeekFrom, Write};
    let demo = used_demo();
    // Recorded before the damage: the last check said ok.
    demo.run(&["runtime", "health", "--deep"]).ok();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(db(&demo))
        .unwrap();
    let len = f.metadata().unwrap().len();
    let garbage = 80 * 1024;
    assert!(len > garbage + 8192, "the demo store is {len} bytes");
    f.seek(SeekFrom::Start(len / 2 - garbage / 2)).unwrap();
    let bytes: Vec<u8> = (0..garbage as u32).map(|i| (i * 31 + 7) as u8).collect();
    f.write_all(&bytes).unwrap();
    drop(f);
    expect_named_failure(&demo, "garbage mid-file");
}

#[test]
fn an_emptied_store_is_refused_until_a_new_one_is_asked_for() {
    let demo = used_demo();
    std::fs::write(db(&demo), b"").unwrap();
    let (code, stderr) = serve_refused(&demo.root, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("is empty") && stderr.contains("--new-store"),
        "{stderr}"
    );
    let run = demo
        .run(&["run", "--agent", "assistant", "hello"])
        .expect(3);
    assert!(run.stderr.contains("--new-store"), "{}", run.stderr);
    let view = demo.run(&["runtime", "requests", "list"]).expect(3);
    assert!(view.stderr.contains("is empty"), "{}", view.stderr);
    assert_eq!(
        std::fs::metadata(db(&demo)).unwrap().len(),
        0,
        "nothing was written"
    );

    // With the flag: a new, empty store, and the worker starts on it.
    let h_before = std::process::Command::new(BIN)
        .args(["serve", "--new-store", "--workspace"])
        .arg(&demo.root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let h = loop {
        // Until serve has replaced it, the store is still refused.
        if let Ok(h) = Harness::inspect(&demo.root) {
            break h;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve --new-store made no store"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    wait_for_holder(&h, h_before.id());
    terminate(h_before);
    demo.run(&["runtime", "health"]).ok();
    let listed = demo
        .run(&["runtime", "requests", "list", "--json"])
        .ok()
        .json();
    assert_eq!(listed["requests"].as_array().unwrap().len(), 0, "{listed}");
    // And an intact store is never replaced.
    let (code, stderr) = serve_refused(&demo.root, &["--new-store"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("intact"), "{stderr}");
}
