//! Running-call records and the reaper: what a dead worker left running is killed
//! (grandchildren included), a live worker's calls and strangers' processes are not.

use harness_providers::tools::{ReapOutcome, reap_leftovers};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The fields of `/proc/<pid>/stat` after the command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn start_time(pid: u32) -> u64 {
    stat_fields(pid).unwrap()[19].parse().unwrap()
}

fn running(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f[0] != "Z")
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

/// A process group like a command tool's: `sh` leading, a `sleep` grandchild whose
/// pid is returned, `AGENT_HARNESS_CALL_ID` in the environment.
fn group(call: &str, dir: &Path) -> (Child, u32) {
    let pid_file = dir.join(format!("{call}.grandchild"));
    let mut leader = Command::new("sh")
        .args(["-c", "sleep 30 & echo $! > \"$1\"; wait", "sh"])
        .arg(&pid_file)
        .env("AGENT_HARNESS_CALL_ID", call)
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    for _ in 0..500 {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return (leader, pid);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = leader.kill();
    let _ = leader.wait();
    panic!("the grandchild never started");
}

/// A pid and start time of a process that has ended: a dead owner.
fn dead_owner() -> (u32, u64) {
    let mut p = Command::new("sleep").arg("5").spawn().unwrap();
    let owner = (p.id(), start_time(p.id()));
    p.kill().unwrap();
    p.wait().unwrap();
    owner
}

fn record(dir: &Path, call: &str, pgid: u32, start: u64, owner: (u32, u64)) {
    std::fs::create_dir_all(dir).unwrap();
    let text = format!(
        "pgid={pgid}\nstart={start}\nboot={}\nowner={}\nowner_start={}\nrequest=req_test\ncall={call}\n",
        boot_id(),
        owner.0,
        owner.1
    );
    std::fs::write(dir.join(call), text).unwrap();
}

/// SIGKILLs a group the test made, whatever the test concluded.
struct KillGroup(u32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        unsafe { libc::kill(-(self.0 as i32), libc::SIGKILL) };
    }
}

#[tokio::test]
async fn a_dead_worker_s_group_is_killed_down_to_its_grandchildren() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("running");
    let (mut leader, grandchild) = group("call_orphan", tmp.path());
    let _cleanup = KillGroup(leader.id());
    record(
        &runs,
        "call_orphan",
        leader.id(),
        start_time(leader.id()),
        dead_owner(),
    );
    // As after the worker's death: the leader got its PDEATHSIG, the grandchild did not.
    leader.kill().unwrap();
    leader.wait().unwrap();
    assert!(running(grandchild));

    let reaped = reap_leftovers(&runs).await;
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert_eq!(reaped[0].call_id, "call_orphan");
    assert_eq!(reaped[0].request_id, "req_test");
    assert_eq!(reaped[0].outcome, ReapOutcome::Killed { processes: 1 });
    assert!(!running(grandchild), "the grandchild survived the reaper");
    assert!(!runs.join("call_orphan").exists(), "the record was kept");
    assert!(
        reaped[0].to_string().contains("killed 1 process(es)"),
        "{}",
        reaped[0]
    );
}

#[tokio::test]
async fn strangers_and_live_workers_calls_are_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("running");
    // A group whose id matches a record but whose processes are not the call's
    // (as if the pid had been recycled): another start time, another call id.
    let (stranger, stranger_child) = group("call_someone_else", tmp.path());
    let _c1 = KillGroup(stranger.id());
    let recorded_start = start_time(stranger.id()) + 1;
    record(
        &runs,
        "call_recycled",
        stranger.id(),
        recorded_start,
        dead_owner(),
    );
    // A call of a worker that still runs (this process).
    let (live, live_child) = group("call_live", tmp.path());
    let _c2 = KillGroup(live.id());
    let me = (std::process::id(), start_time(std::process::id()));
    record(&runs, "call_live", live.id(), start_time(live.id()), me);
    // A call whose processes all ended; and a record cut short.
    let (mut ended, _) = group("call_ended", tmp.path());
    let ended_pid = ended.id();
    record(
        &runs,
        "call_ended",
        ended_pid,
        start_time(ended_pid),
        dead_owner(),
    );
    unsafe { libc::kill(-(ended_pid as i32), libc::SIGKILL) };
    ended.wait().unwrap();
    // The group's other process dies on its own time (and its zombie is reaped by
    // init): the call has ended only once the group is empty.
    let t = std::time::Instant::now();
    while unsafe { libc::kill(-(ended_pid as i32), 0) } == 0 {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "the group outlived SIGKILL"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::fs::write(runs.join("call_torn"), "pgid=12").unwrap();

    let mut reaped = reap_leftovers(&runs).await;
    reaped.sort_by(|a, b| a.call_id.cmp(&b.call_id));
    let outcomes: Vec<(&str, &ReapOutcome)> = reaped
        .iter()
        .map(|r| (r.call_id.as_str(), &r.outcome))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("call_ended", &ReapOutcome::Gone),
            ("call_recycled", &ReapOutcome::Unverified { processes: 2 }),
            (
                "call_torn",
                &ReapOutcome::Unreadable("no `owner` line".to_string())
            ),
        ]
    );
    assert!(running(stranger.id()) && running(stranger_child));
    assert!(running(live.id()) && running(live_child));
    assert!(
        runs.join("call_live").exists(),
        "a live worker's record was removed"
    );
    let left: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec!["call_live"]);
}
