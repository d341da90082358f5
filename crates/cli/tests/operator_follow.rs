//! Watch and follow modes when stdout is not a terminal: they print plain lines as
//! things change, resume from a cursor without skipping, and stop on SIGTERM.

mod common;

use common::{BIN, Demo};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// A long-running command whose stdout lines arrive on a channel.
struct Watching {
    child: Child,
    lines: Receiver<String>,
}

impl Watching {
    fn start(demo: &Demo, args: &[&str]) -> Watching {
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--workspace")
            .arg(&demo.root)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                if tx.send(l.unwrap()).is_err() {
                    break;
                }
            }
        });
        Watching { child, lines }
    }

    /// Lines read until one contains `needle` (fails after 10 s).
    fn until(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let done = l.contains(needle);
                    seen.push(l);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("no line with `{needle}` in 10 s; got:\n{}", seen.join("\n")),
            }
        }
    }

    /// SIGTERM: a watch stops cleanly with status 0.
    fn stop(mut self) {
        // SAFETY: signalling our own child process by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("still running 10 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(0), "{status:?}");
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        // After a failed assertion: leave no process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn events_follow_prints_every_event_in_order() {
    let demo = Demo::new();
    demo.run(&["request", "--agent", "assistant", "--session", "f1", "hi"])
        .ok();
    let w = Watching::start(&demo, &["runtime", "events", "--follow", "--json"]);
    let mut lines = w.until("request.queued");
    demo.run(&["run", "--agent", "assistant", "--session", "f2", "ship"])
        .ok();
    lines.extend(w.until("request.waiting_approval"));
    w.stop();
    let seqs: Vec<i64> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let all = demo.run(&["runtime", "events", "--json"]).ok().stdout;
    let expected: Vec<i64> = all
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .take(seqs.len())
        .collect();
    assert_eq!(seqs, expected, "follow skipped or reordered events");
}

#[test]
fn approvals_watch_prints_new_approvals_as_lines() {
    let demo = Demo::new();
    demo.run(&["request", "--agent", "assistant", "hi"]).ok();
    let w = Watching::start(
        &demo,
        &[
            "runtime",
            "approvals",
            "watch",
            "--status",
            "pending",
            "--interval",
            "100ms",
        ],
    );
    demo.run(&["run", "--agent", "assistant", "--session", "w1", "ship"])
        .ok();
    let lines = w.until("session w1");
    let line = lines.last().unwrap();
    assert!(
        line.contains("pending") && line.contains("send_mail"),
        "{line}"
    );
    assert!(!line.contains('\x1b'), "escape codes on a pipe: {line:?}");
    w.stop();
}

#[test]
fn requests_tail_follow_continues_from_the_snapshot() {
    let demo = Demo::new();
    demo.run(&["request", "--agent", "assistant", "--session", "t1", "hi"])
        .ok();
    let w = Watching::start(&demo, &["runtime", "requests", "tail", "--follow"]);
    w.until("queued");
    demo.run(&["run", "--agent", "assistant", "--session", "t2", "ship"])
        .ok();
    let lines = w.until("request.waiting_approval");
    assert!(
        lines.iter().any(|l| l.contains("delegate.started")),
        "{lines:?}"
    );
    w.stop();
}
