//! A command tool must not outlive a SIGKILLed worker: when `serve` restarts and
//! re-runs the interrupted idempotent call, nothing of the first execution (its
//! process or a grandchild it spawned) may still be running, so two executions of
//! one call id never overlap.

use harness_core::*;
use harness_engine::Harness;
use std::path::Path;
use std::time::{Duration, Instant};

mod worker;

use worker::{kill9, serve, terminate, wait_for_holder};

/// One execution: "start CALL PID", a grandchild that would outlive it, its pids
/// on record, four seconds of work, then "end CALL PID".
const SLOW_SH: &str = r#"#!/bin/sh
echo "start $AGENT_HARNESS_CALL_ID $$" >> effects.log
echo $$ >> children.pids
sleep 30 >/dev/null 2>&1 &
echo $! >> grandchildren.pids
sleep 4
echo "end $AGENT_HARNESS_CALL_ID $$" >> effects.log
echo done
"#;

fn workspace(root: &Path) {
    let w = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "config/workspace.yaml",
        "name: orphans\nwork_folder: workspace\n",
    );
    w(
        "config/models.yaml",
        "models:\n  m:\n    provider: scripted\n    script: resources/script.yaml\n",
    );
    w(
        "config/tools.yaml",
        "tools:\n  slow:\n    command: [\"sh\", \"{workspace}/resources/tools/slow.sh\"]\n    idempotent: true\n    timeout: 60s\n",
    );
    w("config/agents/a.yaml", "name: a\nmodel: m\ntools: [slow]\n");
    w(
        "resources/script.yaml",
        "agents:\n  a:\n    turns:\n      - tool_calls: [{tool: slow, arguments: {}}]\n      - text: done\n",
    );
    w("resources/tools/slow.sh", SLOW_SH);
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn pids(path: &Path) -> Vec<i32> {
    lines(path)
        .iter()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True if `pid` runs (a zombie only awaits its reaper: not running).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|s| !s.trim_start().starts_with('Z'))
    })
}

/// Kills what the test started (`serve` processes, the tool's processes) if an
/// assertion failed first.
struct Leftovers<'a>(&'a Path, Vec<u32>);

impl Drop for Leftovers<'_> {
    fn drop(&mut self) {
        for &pid in &self.1 {
            if running(pid as i32) {
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        for file in ["children.pids", "grandchildren.pids"] {
            for pid in pids(&self.0.join(file)) {
                if running(pid) {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }
}

/// Each start of a call id while an earlier execution of it had not ended yet (an
/// execution that never logs its end was killed).
fn overlaps(effects: &[String]) -> Vec<String> {
    let parsed: Vec<(&str, &str, &str)> = effects
        .iter()
        .map(|l| {
            let mut f = l.split(' ');
            (f.next().unwrap(), f.next().unwrap(), f.next().unwrap())
        })
        .collect();
    let end_of = |call: &str, pid: &str| {
        parsed
            .iter()
            .position(|&(kind, c, p)| kind == "end" && c == call && p == pid)
    };
    let mut found = Vec::new();
    for (i, &(kind, call, pid)) in parsed.iter().enumerate() {
        if kind != "start" {
            continue;
        }
        for &(_, _, earlier) in parsed[..i]
            .iter()
            .filter(|&&(k, c, _)| k == "start" && c == call)
        {
            if end_of(call, earlier).is_some_and(|end| end > i) {
                found.push(format!(
                    "call {call}: execution {pid} started while {earlier} was still running"
                ));
            }
        }
    }
    found
}

#[test]
fn a_killed_worker_s_command_is_gone_before_the_call_is_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    workspace(root);
    let work = root.join("work");
    let mut leftovers = Leftovers(&work, Vec::new());
    let h = Harness::open(root).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id = rt.block_on(h.request(None, "a", "go")).unwrap().id;

    let first = serve(root);
    leftovers.1.push(first.id());
    wait_until(
        "the first execution spawned its grandchild",
        Duration::from_secs(20),
        || pids(&work.join("grandchildren.pids")).len() == 1,
    );
    kill9(first);
    leftovers.1.clear();

    let second = serve(root);
    leftovers.1.push(second.id());
    wait_until("the call is re-run", Duration::from_secs(20), || {
        lines(&work.join("effects.log")).len() >= 2
    });
    let (child, grandchild) = (
        pids(&work.join("children.pids"))[0],
        pids(&work.join("grandchildren.pids"))[0],
    );
    assert!(
        !running(child) && !running(grandchild),
        "when the re-run started, the first execution still ran: command {child} running: {}, grandchild {grandchild} running: {}",
        running(child),
        running(grandchild)
    );

    wait_until("the request completes", Duration::from_secs(30), || {
        rt.block_on(h.get_request(&id)).unwrap().status == RequestStatus::Completed
    });
    wait_for_holder(&h, second.id());
    terminate(second);
    leftovers.1.clear();

    let effects = lines(&work.join("effects.log"));
    assert_eq!(overlaps(&effects), Vec::<String>::new(), "{effects:#?}");
    let starts = effects.iter().filter(|l| l.starts_with("start ")).count();
    let ends = effects.iter().filter(|l| l.starts_with("end ")).count();
    assert_eq!(
        (starts, ends),
        (2, 1),
        "one interrupted execution, one that finished: {effects:#?}"
    );
    for pid in pids(&work.join("grandchildren.pids")) {
        assert!(!running(pid), "grandchild {pid} outlived its call");
    }
    let records = std::fs::read_dir(root.join(".agent-harness/running"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(records, 0, "records of finished calls were left behind");
}

#[test]
fn overlapping_executions_are_detected() {
    let log = |text: &str| text.lines().map(str::to_string).collect::<Vec<_>>();
    let killed_then_rerun = log("start c1 10\nstart c1 20\nend c1 20");
    assert_eq!(overlaps(&killed_then_rerun), Vec::<String>::new());
    let sequential = log("start c1 10\nend c1 10\nstart c1 20\nend c1 20\nstart c2 30");
    assert_eq!(overlaps(&sequential), Vec::<String>::new());
    let overlapping = log("start c1 10\nstart c1 20\nend c1 10\nend c1 20");
    assert_eq!(
        overlaps(&overlapping),
        vec!["call c1: execution 20 started while 10 was still running"]
    );
}
