//! Starting a command only once it is on record.
//!
//! `spawn` returns only after the child has exec'd (or failed to), so a record
//! written after it returns leaves a window in which the command already runs, and
//! may already have forked processes that outlive the direct child's death signal,
//! with nothing on record: a worker SIGKILLed in that window leaves them running for
//! no later worker to find.
//!
//! The gate closes the window. Between fork and exec (the last `pre_exec` closure)
//! the child writes its pid to one pipe and blocks reading another. A helper thread
//! of the parent reads the pid, calls `admit` (which writes the record, renamed into
//! place), and only then writes the byte that lets the child exec. So no process of
//! the command runs before its record is in place under its final name. If `admit`
//! fails, the helper SIGKILLs the child, which never execs. If the worker dies
//! first, the child, still waiting, gets SIGKILL from `PR_SET_PDEATHSIG` (set by an
//! earlier closure, [`super::die_with_worker`]); failing that, it reads end of file
//! and exits without exec.
//!
//! The helper is a thread of its own because the spawning thread is blocked in
//! `spawn` until the exec, and the spawn cannot move off it: the death signal
//! follows the thread that forked (see [`super::die_with_worker`]). A scoped thread
//! per spawn, not the blocking pool: a full pool would leave the child, and the
//! runtime worker blocked in `spawn`, waiting for a thread.

use std::io::{self, PipeReader, PipeWriter, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use tokio::process::{Child, Command};

/// Why [`spawn_admitted`] started nothing.
#[derive(Debug)]
pub(super) enum GateError {
    /// The command could not be started: no pipe or thread for the gate, fork or an
    /// earlier `pre_exec` step failed, or exec did (after admission: what `admit`
    /// returned was dropped).
    Spawn(io::Error),
    /// `admit` failed (or panicked): the child was killed before exec.
    Admit(io::Error),
}

/// Spawns `cmd`, letting its child exec only after `admit(pid)` succeeded; returns
/// the child and what `admit` returned. `cmd` must not be spawned again (its gate
/// names pipes that are closed when this returns).
pub(super) fn spawn_admitted<R: Send>(
    cmd: &mut Command,
    admit: impl FnOnce(libc::pid_t) -> io::Result<R> + Send,
) -> Result<(Child, R), GateError> {
    let (pid_read, pid_write) = io::pipe().map_err(GateError::Spawn)?;
    let (go_read, go_write) = io::pipe().map_err(GateError::Spawn)?;
    let fds = Fds {
        pid_read: pid_read.as_raw_fd(),
        pid_write: pid_write.as_raw_fd(),
        go_read: go_read.as_raw_fd(),
        go_write: go_write.as_raw_fd(),
    };
    std::thread::scope(|scope| {
        let admitting = std::thread::Builder::new()
            .name("command-gate".into())
            .spawn_scoped(scope, move || admit_child(pid_read, go_write, admit))
            .map_err(GateError::Spawn)?;
        // SAFETY: the closure runs between fork and exec and calls only close(2),
        // getpid(2), write(2) and read(2), which are async-signal-safe, on
        // descriptors that are open in the child (the pipes outlive this spawn); it
        // allocates nothing.
        unsafe {
            cmd.pre_exec(move || fds.wait_for_admission());
        }
        let spawned = cmd.spawn();
        // Now only the child (until its exec) holds these: if it never wrote its
        // pid, the helper reads end of file instead of waiting forever.
        drop(pid_write);
        drop(go_read);
        let admitted = admitting
            .join()
            .unwrap_or_else(|_| Some(Err(io::Error::other("the command's gate panicked"))));
        match (spawned, admitted) {
            // The child (killed before exec) is dropped: `kill_on_drop` or not, it
            // is reaped by tokio's orphan queue.
            (_, Some(Err(e))) => Err(GateError::Admit(e)),
            (Err(e), _) => Err(GateError::Spawn(e)),
            (Ok(child), Some(Ok(admitted))) => Ok((child, admitted)),
            // Cannot happen: the gate runs before exec, and writes the pid first.
            (Ok(_), None) => Err(GateError::Spawn(io::Error::other(
                "the command started without passing its gate",
            ))),
        }
    })
}

/// The parent's side: reads the child's pid, admits it and lets it exec, or kills
/// it. None if the child never wrote its pid (it failed before the gate).
fn admit_child<R>(
    mut pid_read: PipeReader,
    mut go_write: PipeWriter,
    admit: impl FnOnce(libc::pid_t) -> io::Result<R>,
) -> Option<io::Result<R>> {
    let mut pid = [0u8; size_of::<libc::pid_t>()];
    pid_read.read_exact(&mut pid).ok()?;
    let pid = libc::pid_t::from_ne_bytes(pid);
    // A panic, too, must not leave the child waiting: it is killed like a refusal.
    let admitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| admit(pid)))
        .unwrap_or_else(|_| Err(io::Error::other("recording the command panicked")));
    match &admitted {
        Ok(_) => {
            // Should the child have died meanwhile, this fails, and nothing runs.
            let _ = go_write.write_all(&[1]);
        }
        Err(_) => {
            // SAFETY: kill(2) has no memory effects. `pid` is our child, not reaped
            // yet (whether it waits in its gate or died: the caller holds its
            // `Child` until this returns), so the pid cannot name another process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    Some(admitted)
}

/// The gate's pipe ends, as numbered in the parent and (inherited) in the child.
#[derive(Clone, Copy)]
struct Fds {
    pid_read: RawFd,
    pid_write: RawFd,
    go_read: RawFd,
    go_write: RawFd,
}

impl Fds {
    /// The child's side, between fork and exec: writes our pid, then waits for the
    /// byte that admits us. Any error, or end of file (the parent is gone), and the
    /// child exits without exec.
    fn wait_for_admission(self) -> io::Result<()> {
        // SAFETY: plain system calls on descriptors the child inherited; `pid` and
        // `byte` are locals the calls write to or read from within their bounds.
        unsafe {
            libc::close(self.pid_read);
            // Our copy of the write end would keep end of file from ever coming.
            libc::close(self.go_write);
            let pid = libc::getpid().to_ne_bytes();
            loop {
                let n = libc::write(self.pid_write, pid.as_ptr().cast(), pid.len());
                if n == pid.len() as isize {
                    break;
                }
                // A pipe takes a write this small whole or not at all.
                if n >= 0 {
                    return Err(io::Error::from_raw_os_error(libc::EIO));
                }
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            libc::close(self.pid_write);
            let mut byte = 0u8;
            loop {
                match libc::read(self.go_read, (&raw mut byte).cast(), 1) {
                    1 => break,
                    0 => return Err(io::Error::from_raw_os_error(libc::ECANCELED)),
                    _ => {
                        let e = io::Error::last_os_error();
                        if e.kind() != io::ErrorKind::Interrupted {
                            return Err(e);
                        }
                    }
                }
            }
            libc::close(self.go_read);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::{Duration, Instant};

    /// `sh -c script` in `dir`, as a command tool runs: its own group, dying with
    /// its worker, killed when dropped.
    fn command(dir: &Path, script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script])
            .current_dir(dir)
            .process_group(0)
            .kill_on_drop(true);
        super::super::die_with_worker(&mut cmd);
        cmd
    }

    /// True while `pid` runs (a zombie only awaits its reaper: not running).
    fn running(pid: libc::pid_t) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|s| !s.trim_start().starts_with('Z'))
        })
    }

    #[tokio::test]
    async fn a_command_runs_only_after_it_is_admitted() {
        let dir = tempfile::tempdir().unwrap();
        let ran = dir.path().join("ran");
        let mut cmd = command(dir.path(), "test -e record && touch ran");
        let (mut child, ran_before) = spawn_admitted(&mut cmd, |pid| {
            // Time enough for a command let loose to have run.
            std::thread::sleep(Duration::from_millis(300));
            let ran_before = ran.exists();
            std::fs::write(dir.path().join("record"), pid.to_string())?;
            Ok(ran_before)
        })
        .unwrap();
        assert!(child.wait().await.unwrap().success(), "it saw no record");
        assert!(!ran_before, "the command ran before it was admitted");
        assert!(ran.exists());
    }

    #[tokio::test]
    async fn a_command_refused_admission_never_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = command(dir.path(), "touch ran");
        let mut gated = 0;
        let spawned = spawn_admitted(&mut cmd, |pid| -> io::Result<()> {
            gated = pid;
            std::thread::sleep(Duration::from_millis(300));
            Err(io::Error::other("disk full"))
        });
        match spawned {
            Err(GateError::Admit(e)) => assert_eq!(e.to_string(), "disk full"),
            other => panic!("{other:?}"),
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while running(gated) {
            assert!(
                Instant::now() < deadline,
                "refused command {gated} still runs"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!dir.path().join("ran").exists(), "the refused command ran");
    }

    #[tokio::test]
    async fn a_command_that_cannot_start_is_named_after_admission() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("definitely-not-a-program-4821");
        cmd.current_dir(dir.path()).kill_on_drop(true);
        let mut admitted = false;
        let spawned = spawn_admitted(&mut cmd, |_| {
            admitted = true;
            Ok(())
        });
        match spawned {
            Err(GateError::Spawn(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
        assert!(admitted, "exec is tried only after admission");
    }

    /// Children forked at the same time inherit each other's gate pipes until they
    /// exec: admitted or refused, none waits for another.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_spawns_admitted_or_refused_all_finish() {
        let dir = tempfile::tempdir().unwrap();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let dir = dir.path().to_path_buf();
            tasks.push(tokio::spawn(async move {
                let mut cmd = command(&dir, &format!("touch ran{i}"));
                let spawned = spawn_admitted(&mut cmd, |_| {
                    if i % 2 == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::other("refused"))
                    }
                });
                match spawned {
                    Ok((mut child, ())) => assert!(child.wait().await.unwrap().success()),
                    Err(GateError::Admit(_)) => assert!(i % 2 == 1),
                    Err(e) => panic!("{e:?}"),
                }
            }));
        }
        let all = futures_util::future::join_all(tasks);
        for done in tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("spawns blocked each other")
        {
            done.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        for i in 0..40 {
            let ran = dir.path().join(format!("ran{i}")).exists();
            assert_eq!(ran, i % 2 == 0, "command {i}");
        }
    }

    const WORKER_DIR: &str = "HARNESS_GATE_TEST_WORKER_DIR";

    /// A worker SIGKILLed while it records its command (after the fork, before the
    /// record is in place): nothing of the command ever runs.
    #[test]
    fn a_worker_killed_before_admitting_leaves_nothing_running() {
        if let Some(dir) = std::env::var_os(WORKER_DIR) {
            return be_the_worker(Path::new(&dir));
        }
        let dir = tempfile::tempdir().unwrap();
        let mut worker = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tools::gate::tests::a_worker_killed_before_admitting_leaves_nothing_running",
                "--test-threads=1",
            ])
            .env(WORKER_DIR, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let admitting = dir.path().join("admitting");
        let deadline = Instant::now() + Duration::from_secs(30);
        let gated: libc::pid_t = loop {
            if let Some(pid) = std::fs::read_to_string(&admitting)
                .ok()
                .and_then(|s| s.parse().ok())
            {
                break pid;
            }
            assert!(Instant::now() < deadline, "the worker never spawned");
            std::thread::sleep(Duration::from_millis(10));
        };
        worker.kill().unwrap();
        worker.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while running(gated) {
            if Instant::now() >= deadline {
                // SAFETY: kill(2) has no memory effects.
                unsafe { libc::kill(-gated, libc::SIGKILL) };
                panic!("command {gated} outlived its worker");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !dir.path().join("ran").exists(),
            "the command ran, unrecorded, after its worker died"
        );
    }

    /// Spawns a command that would leave a grandchild, and records it forever.
    fn be_the_worker(dir: &Path) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut cmd = command(dir, "sleep 30 & touch ran");
            let _ = spawn_admitted(&mut cmd, |pid| {
                let tmp = dir.join("admitting.tmp");
                std::fs::write(&tmp, pid.to_string())?;
                std::fs::rename(&tmp, dir.join("admitting"))?;
                std::thread::sleep(Duration::from_secs(60));
                Ok(())
            });
        });
    }
}
