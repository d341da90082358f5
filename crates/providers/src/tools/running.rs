//! Records of running command calls, so that nothing a SIGKILLed worker started
//! is still running when the next worker re-runs its calls.
//!
//! The direct child of a command dies with the worker (`PR_SET_PDEATHSIG`), but
//! processes it spawned do not. So a command's `<store>/running/<call_id>`, naming
//! its process group, is written after the fork and before the exec (the child waits
//! for it, see [`super::gate`]: nothing of the command runs unrecorded), and removed
//! once the group is killed or has ended. [`reap_leftovers`], called by a new worker
//! before it re-queues anything, SIGKILLs the groups of records whose owner died.
//!
//! A record is plain `key=value` lines: `pgid`, `start` (the group leader's start
//! time, in clock ticks since boot, from `/proc/<pid>/stat`), `boot` (the kernel's
//! boot id), `owner` and `owner_start` (the worker process), `request` and `call`.
//! It is written to a temporary name and renamed, without fsync: it has to survive
//! the worker's death, not the machine's, and a reboot ends its processes anyway.
//!
//! A pid can be recycled, so a group is killed only if it is shown to be this
//! call's: its leader still runs with the recorded start time, or a process in it
//! started no earlier and carries `AGENT_HARNESS_CALL_ID=<call>` in its environment
//! (a recycled group would be a stranger's and cannot hold this call's id).
//! Linux only (`/proc`); elsewhere nothing is found and nothing is killed.

use harness_core::{CallId, RequestId};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long [`reap_leftovers`] waits for one SIGKILLed group to be gone.
pub const REAP_WAIT: Duration = Duration::from_secs(5);
const TMP_SUFFIX: &str = ".tmp";

/// Where the running calls of the store in `store_dir` are recorded.
pub fn running_dir(store_dir: &Path) -> PathBuf {
    store_dir.join("running")
}

/// The record of one running call; removed when dropped, if it is still this one's
/// (a worker that re-ran the call after this one lost it wrote its own).
pub(super) struct RunRecord {
    path: PathBuf,
    pgid: libc::pid_t,
}

impl RunRecord {
    /// Records that `call` of `request` runs as process group `pgid` (led by the
    /// process `pgid`, which may still wait to exec: its start time is the fork's).
    pub(super) fn write(
        dir: &Path,
        call: &CallId,
        request: &RequestId,
        pgid: libc::pid_t,
    ) -> io::Result<RunRecord> {
        fs::create_dir_all(dir)?;
        let me = Owner::current();
        let text = format!(
            "pgid={pgid}\nstart={}\nboot={}\nowner={}\nowner_start={}\nrequest={request}\ncall={call}\n",
            start_time(pgid).unwrap_or(0),
            boot_id(),
            me.pid,
            me.start,
        );
        let name = file_name(call.as_str());
        let path = dir.join(&name);
        let tmp = dir.join(tmp_name(&name, &me));
        fs::write(&tmp, text)?;
        fs::rename(&tmp, &path)?;
        Ok(RunRecord { path, pgid })
    }
}

/// A record's temporary file is named for its writer: another worker on this
/// workspace sweeping leftovers must tell a write in progress from one whose worker
/// died in it.
fn tmp_name(record: &str, writer: &Owner) -> String {
    format!("{record}.{}-{}{TMP_SUFFIX}", writer.pid, writer.start)
}

/// The worker writing a record's temporary file, from its name less [`TMP_SUFFIX`].
fn tmp_writer(stem: &str) -> Option<Owner> {
    let (_, owner) = stem.rsplit_once('.')?;
    let (pid, start) = owner.split_once('-')?;
    Some(Owner {
        pid: pid.parse().ok()?,
        start: start.parse().ok()?,
    })
}

/// Our call ids are `call_` and a ULID; anything else is kept from naming another path.
fn file_name(call: &str) -> String {
    call.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Drop for RunRecord {
    fn drop(&mut self) {
        let ours = fs::read_to_string(&self.path)
            .ok()
            .and_then(|text| Record::parse(&text).ok())
            .is_none_or(|r| r.pgid == self.pgid);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A call a dead worker left recorded, and what [`reap_leftovers`] did about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaped {
    /// The call id (the record's file name if the record could not be read).
    pub call_id: String,
    /// Empty if the record could not be read.
    pub request_id: String,
    pub pgid: i32,
    pub outcome: ReapOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReapOutcome {
    /// The group was this call's; its `processes` were SIGKILLed and are gone.
    Killed { processes: usize },
    /// Nothing of the call was still running.
    Gone,
    /// SIGKILLed, but `processes` were still there after [`REAP_WAIT`] (stuck in the
    /// kernel, say); the record is kept so the next worker start tries again.
    Survived { processes: usize },
    /// `processes` run in a group with this id, but none could be shown to be the
    /// call's (its pid was recycled, or they cleared their environment): left alone.
    Unverified { processes: usize },
    /// The record could not be read or parsed; removed.
    Unreadable(String),
}

impl fmt::Display for Reaped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (call, request, pgid) = (&self.call_id, &self.request_id, self.pgid);
        match &self.outcome {
            ReapOutcome::Killed { processes } => write!(
                f,
                "call {call} of {request}: killed {processes} process(es) of group {pgid} left running by a worker that died or lost the call"
            ),
            ReapOutcome::Gone => write!(
                f,
                "call {call} of {request}: group {pgid} had already ended"
            ),
            ReapOutcome::Survived { processes } => write!(
                f,
                "call {call} of {request}: {processes} process(es) of group {pgid} survived SIGKILL for {}s; kill them by hand (kill -KILL -{pgid}) before the call is re-run",
                REAP_WAIT.as_secs()
            ),
            ReapOutcome::Unverified { processes } => write!(
                f,
                "call {call} of {request}: group {pgid} has {processes} process(es) that could not be shown to be this call's; left running"
            ),
            ReapOutcome::Unreadable(e) => write!(f, "record of call {call}: {e}; removed"),
        }
    }
}

/// SIGKILLs the process group of every call recorded in `dir` whose worker is dead
/// and that is still this call's, waits (up to [`REAP_WAIT`] each) until the group
/// is gone, and removes the records. Records of live workers are left alone.
/// Returns what it found, for the caller to log.
pub async fn reap_leftovers(dir: &Path) -> Vec<Reaped> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut reaped = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(TMP_SUFFIX) {
            // A record being written: left to its writer while that one lives. Its
            // worker's death cut the write short: its command never ran (it waits
            // for the record before exec, and died with the worker).
            if !tmp_writer(stem).is_some_and(|w| w.is_alive()) {
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        let record = match fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| Record::parse(&text))
        {
            Ok(record) => record,
            Err(e) => {
                let _ = fs::remove_file(&path);
                reaped.push(Reaped {
                    call_id: name,
                    request_id: String::new(),
                    pgid: 0,
                    outcome: ReapOutcome::Unreadable(e),
                });
                continue;
            }
        };
        if record.owner.is_alive() {
            continue;
        }
        let outcome = reap(&record).await;
        if !matches!(outcome, ReapOutcome::Survived { .. }) {
            let _ = fs::remove_file(&path);
        }
        reaped.push(Reaped {
            call_id: record.call,
            request_id: record.request,
            pgid: record.pgid,
            outcome,
        });
    }
    reaped
}

/// Kills what is left of `call`'s command, whoever recorded it, and waits (up to
/// [`REAP_WAIT`]) until its group is gone. For a worker about to run a call again
/// that another worker on this host started: that one died, or lost the call's
/// tree when its lease lapsed (it may be stopped, not dead, so [`reap_leftovers`]
/// would leave it). None when nothing of the call is recorded here.
pub async fn reap_call(dir: &Path, call: &CallId) -> Option<Reaped> {
    let path = dir.join(file_name(call.as_str()));
    let text = fs::read_to_string(&path).ok()?;
    let record = match Record::parse(&text) {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_file(&path);
            return Some(Reaped {
                call_id: call.to_string(),
                request_id: String::new(),
                pgid: 0,
                outcome: ReapOutcome::Unreadable(e),
            });
        }
    };
    let outcome = reap(&record).await;
    if !matches!(outcome, ReapOutcome::Survived { .. }) {
        let _ = fs::remove_file(&path);
    }
    Some(Reaped {
        call_id: record.call,
        request_id: record.request,
        pgid: record.pgid,
        outcome,
    })
}

async fn reap(record: &Record) -> ReapOutcome {
    if record.boot != boot_id() {
        return ReapOutcome::Gone;
    }
    let members = group_members(record.pgid);
    if members.is_empty() {
        return ReapOutcome::Gone;
    }
    if !members.iter().any(|p| record.owns(p)) {
        return ReapOutcome::Unverified {
            processes: members.len(),
        };
    }
    let deadline = Instant::now() + REAP_WAIT;
    loop {
        // SAFETY: kill(2) has no memory effects; pgid > 1 (checked when parsed).
        unsafe { libc::kill(-record.pgid, libc::SIGKILL) };
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Members remain, so the group id cannot have been recycled meanwhile.
        let left = group_members(record.pgid).len();
        if left == 0 {
            return ReapOutcome::Killed {
                processes: members.len(),
            };
        }
        if Instant::now() >= deadline {
            return ReapOutcome::Survived { processes: left };
        }
    }
}

/// A parsed record.
struct Record {
    pgid: libc::pid_t,
    start: u64,
    boot: String,
    owner: Owner,
    request: String,
    call: String,
}

impl Record {
    fn parse(text: &str) -> Result<Record, String> {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .ok_or_else(|| format!("no `{key}` line"))
        };
        let number = |key: &str| {
            field(key)?
                .parse::<u64>()
                .map_err(|e| format!("bad `{key}`: {e}"))
        };
        let pgid = libc::pid_t::try_from(number("pgid")?)
            .ok()
            .filter(|&p| p > 1)
            .ok_or("`pgid` out of range")?;
        let owner_pid =
            libc::pid_t::try_from(number("owner")?).map_err(|_| "`owner` out of range")?;
        Ok(Record {
            pgid,
            start: number("start")?,
            boot: field("boot")?.to_string(),
            owner: Owner {
                pid: owner_pid,
                start: number("owner_start")?,
            },
            request: field("request")?.to_string(),
            call: field("call")?.to_string(),
        })
    }

    /// Whether process `p` (a member of the recorded group id) is this call's.
    fn owns(&self, p: &Proc) -> bool {
        if p.pid == self.pgid && p.start == self.start {
            return true;
        }
        p.start >= self.start && carries_call_id(p.pid, &self.call)
    }
}

/// A process identified across pid reuse.
#[derive(Clone, Copy)]
struct Owner {
    pid: libc::pid_t,
    start: u64,
}

impl Owner {
    fn current() -> Owner {
        static ME: OnceLock<(libc::pid_t, u64)> = OnceLock::new();
        let &(pid, start) = ME.get_or_init(|| {
            let pid = std::process::id() as libc::pid_t;
            (pid, start_time(pid).unwrap_or(0))
        });
        Owner { pid, start }
    }

    fn is_alive(&self) -> bool {
        proc_stat(self.pid).is_some_and(|p| p.start == self.start && !p.zombie)
    }
}

/// One line of `/proc/<pid>/stat`, the fields we use.
struct Proc {
    pid: libc::pid_t,
    pgrp: libc::pid_t,
    start: u64,
    zombie: bool,
}

fn proc_stat(pid: libc::pid_t) -> Option<Proc> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp …`: comm may hold spaces and parentheses.
    let fields: Vec<&str> = text
        .get(text.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    Some(Proc {
        pid,
        zombie: *fields.first()? == "Z",
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

fn start_time(pid: libc::pid_t) -> Option<u64> {
    proc_stat(pid).map(|p| p.start)
}

/// The running (not zombie) processes whose process group is `pgid`.
fn group_members(pgid: libc::pid_t) -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter_map(proc_stat)
        .filter(|p| p.pgrp == pgid && !p.zombie)
        .collect()
}

fn carries_call_id(pid: libc::pid_t, call: &str) -> bool {
    let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let marker = format!("AGENT_HARNESS_CALL_ID={call}");
    environ
        .split(|&b| b == 0)
        .any(|var| var == marker.as_bytes())
}

fn boot_id() -> &'static str {
    static BOOT: OnceLock<String> = OnceLock::new();
    BOOT.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let me = std::process::id() as libc::pid_t;
        let p = proc_stat(me).expect("our own /proc entry");
        assert_eq!(p.pid, me);
        assert!(!p.zombie && p.start > 0);
        // SAFETY: getpgrp has no preconditions.
        assert_eq!(p.pgrp, unsafe { libc::getpgrp() });
    }

    /// Several workers share a workspace's `running` folder: one sweeping leftovers
    /// must not delete a record another is writing (its call would fail unrun).
    #[tokio::test]
    async fn a_record_being_written_by_a_live_worker_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let me = Owner::current();
        let live = dir.path().join(tmp_name("call_a", &me));
        let gone = Owner {
            pid: me.pid,
            start: me.start + 1,
        };
        let dead = dir.path().join(tmp_name("call_b", &gone));
        let unnamed = dir.path().join(format!("call_c{TMP_SUFFIX}"));
        for p in [&live, &dead, &unnamed] {
            fs::write(p, "pgid=").unwrap();
        }
        let reaped = reap_leftovers(dir.path()).await;
        assert!(reaped.is_empty(), "{reaped:?}");
        assert!(live.exists(), "a live worker's write was removed");
        assert!(!dead.exists() && !unnamed.exists(), "leftovers kept");
        // A write still goes through (the sweep left no stray file in its way).
        let record = RunRecord::write(
            dir.path(),
            &CallId::generate(),
            &RequestId::generate(),
            me.pid,
        )
        .unwrap();
        assert!(record.path.exists());
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_named() {
        let text = "pgid=42\nstart=7\nboot=b\nowner=9\nowner_start=3\nrequest=req_1\ncall=call_1\n";
        let r = Record::parse(text).unwrap();
        assert_eq!((r.pgid, r.start, r.owner.pid, r.owner.start), (42, 7, 9, 3));
        assert_eq!(
            (r.boot.as_str(), r.request.as_str(), r.call.as_str()),
            ("b", "req_1", "call_1")
        );
        assert_eq!(
            Record::parse(&text.replace("pgid=42", "pgid=1"))
                .err()
                .unwrap(),
            "`pgid` out of range"
        );
        assert_eq!(
            Record::parse(&text.replace("start=7\n", "")).err().unwrap(),
            "no `start` line"
        );
        assert_eq!(file_name("call_01abc"), "call_01abc");
        assert_eq!(file_name("call_../../x"), "call_______x");
    }
}
