//! Helpers for the operator CLI tests: a demo workspace made with the real binary,
//! commands run as whole processes, and redaction of what varies between runs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_agent-harness");
/// The frozen instant the demo request runs at (rendered as `17:00:00.000`).
pub const T0: &str = "2026-01-05T17:00:00Z";
/// Three minutes later: when the operator looks and decides.
pub const T3: &str = "2026-01-05T17:03:00Z";

/// The text of every file under `dir` (only those named `name`, when given),
/// concatenated; a missing folder is empty.
pub fn files_text(dir: &Path, name: Option<&str>) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.push_str(&files_text(&p, name));
        } else if name.is_none_or(|n| p.file_name().is_some_and(|f| f == n))
            && let Ok(s) = std::fs::read_to_string(&p)
        {
            out.push_str(&s);
        }
    }
    out
}

/// A demo workspace (`agent-harness init`) in a temporary folder.
pub struct Demo {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
}

/// What a command printed, and its exit status.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Fails the test (showing both streams) unless the exit status is `code`.
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit status {} (wanted {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    pub fn ok(self) -> Self {
        self.expect(0)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

impl Demo {
    pub fn new() -> Demo {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("demo");
        let out = Command::new(BIN).arg("init").arg(&root).output().unwrap();
        assert!(out.status.success(), "init failed: {out:?}");
        Demo { _tmp: tmp, root }
    }

    /// Runs `agent-harness ARGS --workspace ROOT` with colour off and the clock at `now`.
    pub fn at(&self, now: &str, args: &[&str]) -> Run {
        self.at_width(now, None, args)
    }

    /// Like [`Demo::at`], with tables fitting `columns` (`COLUMNS`), or unlimited.
    pub fn at_width(&self, now: &str, columns: Option<usize>, args: &[&str]) -> Run {
        self.at_style(now, columns, false, args)
    }

    /// Like [`Demo::at_width`], in colour when `colour` (as on a terminal:
    /// `CLICOLOR_FORCE`), else plain (`NO_COLOR`).
    pub fn at_style(&self, now: &str, columns: Option<usize>, colour: bool, args: &[&str]) -> Run {
        let mut c = Command::new(BIN);
        c.args(args).arg("--workspace").arg(&self.root);
        if colour {
            c.env_remove("NO_COLOR").env("CLICOLOR_FORCE", "1");
        } else {
            c.env("NO_COLOR", "1").env_remove("CLICOLOR_FORCE");
        }
        c.env("AGENT_HARNESS_NOW", now);
        c.env("USER", "alice");
        match columns {
            Some(n) => c.env("COLUMNS", n.to_string()),
            None => c.env_remove("COLUMNS"),
        };
        Run::from(c.output().unwrap())
    }

    /// Like [`Demo::at`], with the real clock.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut c = Command::new(BIN);
        c.args(args).arg("--workspace").arg(&self.root);
        c.env("NO_COLOR", "1")
            .env_remove("AGENT_HARNESS_NOW")
            .env_remove("COLUMNS");
        c.env("USER", "alice");
        Run::from(c.output().unwrap())
    }

    /// Runs the demo request in session `s1` at T0: it pauses on `send_mail`'s approval.
    pub fn paused(&self) -> Paused {
        let out = self
            .at(
                T0,
                &[
                    "run",
                    "--agent",
                    "assistant",
                    "--session",
                    "s1",
                    "ship the notes",
                ],
            )
            .ok();
        assert!(out.stdout.contains("paused for approval"), "{}", out.stdout);
        let approvals = self
            .at(T0, &["runtime", "approvals", "list", "--json"])
            .ok()
            .json();
        let a = &approvals["approvals"][0];
        Paused {
            request: a["request_id"].as_str().unwrap().to_string(),
            approval: a["id"].as_str().unwrap().to_string(),
            session: a["session_id"].as_str().unwrap().to_string(),
        }
    }

    /// Approves the demo's pending approval at T3 (the run completes in-process).
    pub fn approved(&self) -> Paused {
        let p = self.paused();
        self.at(T3, &p.approve_args()).ok();
        p
    }
}

/// Ids of the demo request paused on its approval.
pub struct Paused {
    pub request: String,
    pub approval: String,
    pub session: String,
}

impl Paused {
    pub fn approve_args(&self) -> Vec<&str> {
        vec![
            "runtime",
            "approvals",
            "approve",
            &self.approval,
            "--session",
            &self.session,
            "--request",
            &self.request,
            "--message",
            "looks right",
        ]
    }
}

/// Replaces what differs between runs: generated ids, the workspace path, pids,
/// trace ids and byte sizes of files and disks.
pub fn redact(text: &str, root: &Path) -> String {
    let text = text.replace(&root.display().to_string(), "[WS]");
    let text = without_integrity_age(&text);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    'scan: while !rest.is_empty() {
        for prefix in ["req_", "apr_", "call_", "art_", "wrk_", "ses_"] {
            if let Some(after) = rest.strip_prefix(prefix) {
                let n = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .count();
                // Full ids, and the short ids views print on a terminal.
                if n >= 14 {
                    // Same width as the id, so that table columns stay aligned.
                    out.push_str(prefix);
                    out.push_str("ID");
                    out.push_str(&".".repeat(n - 2));
                    rest = &after[n..];
                    continue 'scan;
                }
            }
        }
        let c = rest.chars().next().unwrap();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    redact_words(&out)
}

/// Whether the integrity result was recorded by the worker (and how long ago) or
/// checked live depends on timing: `integrity ok (checked 3m ago)` → `integrity ok`.
fn without_integrity_age(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("integrity ok (checked ") {
        let end = rest[at..]
            .find(')')
            .map(|e| at + e + 1)
            .unwrap_or(rest.len());
        out.push_str(&rest[..at]);
        out.push_str("integrity ok");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Word-level redactions: `pid 123`, 32-hex trace ids, `1.5 GiB`-style sizes.
fn redact_words(text: &str) -> String {
    text.lines()
        .map(|l| {
            let words: Vec<&str> = l.split(' ').collect();
            let mut out: Vec<String> = Vec::with_capacity(words.len());
            for (i, w) in words.iter().enumerate() {
                let prev = if i > 0 { words[i - 1] } else { "" };
                let next = words.get(i + 1).copied().unwrap_or("");
                let unit = ["B", "KiB", "MiB", "GiB", "TiB"].contains(&next);
                let number =
                    |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.');
                // `pid 123`, `pid 123)`, `pid 123)␛[0m`: the number, then what follows.
                let (digits, tail) =
                    w.split_at(w.find(|c: char| !c.is_ascii_digit()).unwrap_or(w.len()));
                out.push(if prev == "pid" && number(digits) {
                    format!("[PID]{tail}")
                } else if unit && number(w) {
                    "[N]".to_string()
                } else if w.len() == 32 && w.chars().all(|c| c.is_ascii_hexdigit()) {
                    "[TRACE]".to_string()
                } else {
                    w.to_string()
                });
            }
            out.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn redaction_covers_what_varies() {
    let root = Path::new("/tmp/x/demo");
    let got = redact(
        "req_01m89vw0nwa6s1e5w5zwezq286 at /tmp/x/demo (wrk_01m89vw0nw0ccm2zek16f77d5s, pid 24943) \
         trace 75f3c1abd31a41eaa0de1be7d7c8d595 · 108.0 KiB on disk, 74.7 GiB free",
        root,
    );
    assert_eq!(
        got,
        "req_ID........................ at [WS] (wrk_ID........................, pid [PID]) \
         trace [TRACE] · [N] KiB on disk, [N] GiB free"
    );
}
