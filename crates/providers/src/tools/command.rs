//! Command tools: an argv from `tools.yaml` with `{name}` placeholders filled from
//! the call's arguments (and `{workspace}` with the absolute workspace folder, to
//! reach scripts under `resources/`), run without a shell as its own process group.
//!
//! The process starts in the request's work folder ([`ToolContext::work_dir`],
//! `work/<session-id>/` by default, created if missing), so a relative path a model passes lands there and not in `config/` or
//! the store (this is not a sandbox: `..` and absolute paths reach whatever the
//! process may). Stdin is closed and the environment reduced: a few basics passed
//! through (`PATH`, `HOME`, locale…), the tool's `env` map (`${VAR}` expanded from
//! ours), `AGENT_HARNESS_WORKSPACE`, the `AGENT_HARNESS_*` call identifiers and
//! `TRACEPARENT` (W3C: the request's trace id, a new span id per call);
//! nothing else of ours (API keys, say) leaks to it. Stdout and stderr are read
//! concurrently and kept up to the tool's `max_output_bytes` together; past it
//! reading stops and the group gets SIGKILL. On timeout or cancellation the whole
//! group gets SIGTERM, then SIGKILL after [`GRACE`]; when the command exits, anything
//! it left running in its group is killed.
//!
//! The tool's other [`CommandLimits`] are rlimits set in the child before exec (and
//! inherited by what it starts): `cpu_secs` (`RLIMIT_CPU`: SIGXCPU at it, SIGKILL a
//! second later), `memory_mb` (`RLIMIT_AS`) and `max_open_files` (`RLIMIT_NOFILE`);
//! each is lowered to the worker's own hard limit if that is lower. A call that hits
//! one fails with a [`Failure`] naming it, when the way the command died shows it.
//!
//! If the worker itself dies (SIGKILL, OOM), the command gets SIGKILL from the
//! kernel (`PR_SET_PDEATHSIG`), and what it spawned in its group is recorded under
//! [`ToolContext::runs_dir`] for the next worker to kill before it re-runs anything
//! (see [`super::running`]). The record is in place before the command execs (see
//! [`super::gate`]); if it cannot be written, the command never runs. A process
//! that leaves the group (`setsid`) escapes both.

use super::gate::{GateError, spawn_admitted};
use super::running::RunRecord;
use crate::{ToolContext, ToolOutput};
use harness_config::{CommandLimits, ToolConfig, WORKSPACE_PLACEHOLDER};
use serde_json::Value;
use std::fmt;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Time between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);
/// After the command ends, how long to wait for a process outside its group that
/// still holds its output open.
const DRAIN: Duration = Duration::from_secs(2);
/// Environment variables passed through to every command.
/// The variables of ours a program started for a tool (or an MCP server) gets.
pub const PASSED_THROUGH: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];

/// Runs command tool `name` (`config`, its argv is `argv`) with `args`.
pub(super) async fn run_command(
    name: &str,
    config: &ToolConfig,
    argv: &[String],
    args: &Value,
    ctx: &ToolContext,
) -> ToolOutput {
    if ctx.cancel.is_cancelled() {
        return ToolOutput::error("cancelled");
    }
    let Some(workspace) = ctx.workspace_root.to_str() else {
        return ToolOutput::error(format!(
            "the workspace folder {} is not valid UTF-8, so command arguments cannot hold it; move the workspace",
            ctx.workspace_root.display()
        ));
    };
    let argv: Vec<String> = argv
        .iter()
        .map(|a| substitute(a, args, &config.arguments, workspace))
        .collect();
    let Some((program, rest)) = argv.split_first() else {
        return ToolOutput::error("tool command is empty");
    };
    if let Err(e) = std::fs::create_dir_all(&ctx.work_dir) {
        let work = ctx.work_dir.display();
        return ToolOutput::error(format!("cannot create work folder {work}: {e}"));
    }
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .current_dir(&ctx.work_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    set_env(&mut cmd, config, ctx);
    die_with_worker(&mut cmd);
    set_rlimits(&mut cmd, &config.limits);
    // Its group is on record before any of it runs (a group leader's pid is its
    // pgid): unrecorded, a crash could leave it running beside its re-run.
    let (runs_dir, call, request) = (&ctx.runs_dir, &ctx.call_id, &ctx.request_id);
    let spawned = spawn_admitted(&mut cmd, |pgid| {
        RunRecord::write(runs_dir, call, request, pgid)
    });
    let (child, record) = match spawned {
        Ok(spawned) => spawned,
        Err(GateError::Spawn(e)) => return spawn_error(program, ctx, e),
        Err(GateError::Admit(e)) => {
            return ToolOutput::error(format!(
                "cannot record the running call in {}: {e}; the command was not started",
                runs_dir.display()
            ));
        }
    };
    let mut group = ProcessGroup::of(&child);
    group.record = Some(record);
    let finished = supervise(child, group, config, ctx.cancel.clone()).await;
    finished.into_output(name, config)
}

/// The command gets SIGKILL when this process dies (Linux).
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked exits, not only the
/// process. Here that thread is a tokio runtime worker: the engine runs every tool
/// in a `tokio::spawn`ed task, runtime workers live as long as the runtime, and
/// nothing calls `block_in_place` (which would hand the thread to the blocking
/// pool, whose idle threads exit after 10 s). So the signal comes only when the
/// process (or its runtime) goes away.
#[cfg(target_os = "linux")]
pub fn die_with_worker(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and calls only prctl(2) and
    // getppid(2), which are async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // We died between fork and prctl: the signal will never come.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn die_with_worker(_cmd: &mut Command) {}

/// The rlimits of `limits` in the child: `(resource, soft, hard)`.
fn rlimits(limits: &CommandLimits) -> Vec<(RlimitResource, libc::rlim_t, libc::rlim_t)> {
    let mut out = Vec::new();
    let mut push = |resource, soft: u64, hard: u64| {
        let value = |v: u64| libc::rlim_t::try_from(v).unwrap_or(libc::RLIM_INFINITY);
        out.push((resource, value(soft), value(hard)));
    };
    if let Some(secs) = limits.cpu_secs {
        // SIGXCPU at the soft limit (a clear cause of death), SIGKILL a second later.
        push(libc::RLIMIT_CPU, secs, secs.saturating_add(1));
    }
    if let Some(mb) = limits.memory_mb {
        let bytes = mb.saturating_mul(1024 * 1024);
        push(libc::RLIMIT_AS, bytes, bytes);
    }
    if let Some(files) = limits.max_open_files {
        push(libc::RLIMIT_NOFILE, files, files);
    }
    out
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type RlimitResource = libc::c_int;

/// Sets the command's rlimits between fork and exec, each at most the hard limit
/// the worker has (an unprivileged process cannot raise it).
fn set_rlimits(cmd: &mut Command, limits: &CommandLimits) {
    let wanted = rlimits(limits);
    if wanted.is_empty() {
        return;
    }
    // SAFETY: the closure runs between fork and exec and calls only getrlimit(2) and
    // setrlimit(2), which are plain system calls; it reads `wanted` (allocated before
    // the fork) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for &(resource, soft, hard) in &wanted {
                let mut current = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(resource, &mut current) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let limit = libc::rlimit {
                    rlim_cur: soft.min(current.rlim_max),
                    rlim_max: hard.min(current.rlim_max),
                };
                if libc::setrlimit(resource, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

fn spawn_error(program: &str, ctx: &ToolContext, e: std::io::Error) -> ToolOutput {
    if !ctx.work_dir.is_dir() {
        let work = ctx.work_dir.display();
        return ToolOutput::error(format!(
            "cannot run `{program}`: work folder {work} is missing"
        ));
    }
    ToolOutput::error(format!("cannot run `{program}`: {e}"))
}

fn set_env(cmd: &mut Command, config: &ToolConfig, ctx: &ToolContext) {
    cmd.env_clear();
    for key in PASSED_THROUGH {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    for (key, value) in &config.env {
        cmd.env(key, expand_env(value));
    }
    cmd.env("AGENT_HARNESS_CALL_ID", ctx.call_id.as_str())
        .env("AGENT_HARNESS_REQUEST_ID", ctx.request_id.as_str())
        .env("AGENT_HARNESS_SESSION_ID", ctx.session_id.as_str())
        .env("AGENT_HARNESS_WORKSPACE", &ctx.workspace_root);
    if !ctx.trace_id.is_empty() {
        cmd.env(
            "TRACEPARENT",
            ctx.traceparent
                .clone()
                .unwrap_or_else(|| crate::trace::traceparent(&ctx.trace_id)),
        );
    }
}

/// Replaces `{workspace}` with `workspace` and `{name}` with argument `name`:
/// strings verbatim, other values as compact JSON, a declared but absent argument as
/// nothing. Values are not scanned again. Anything else stays as written, `${NAME}`
/// included: it is the program's (a shell variable), never an argument, as `validate`
/// reads it (a model passing an extra argument `NAME` must not reach inside a script).
fn substitute(template: &str, args: &Value, schema: &Value, workspace: &str) -> String {
    expand(template, "{", NOT_AFTER_DOLLAR, |name| {
        match args.get(name) {
            _ if name == WORKSPACE_PLACEHOLDER => Some(workspace.to_string()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
            None => schema
                .get("properties")
                .and_then(|p| p.get(name))
                .map(|_| String::new()),
        }
    })
}

/// Replaces `${VAR}` with our environment's `VAR` (empty if unset).
pub fn expand_env(value: &str) -> String {
    expand(value, "${", ANYWHERE, |name| {
        Some(std::env::var(name).unwrap_or_default())
    })
}

const NOT_AFTER_DOLLAR: bool = true;
const ANYWHERE: bool = false;

/// Replaces `OPEN name }` where `name` is an identifier and `lookup` knows it
/// (unless `not_after_dollar` and a `$` is written just before).
fn expand(
    template: &str,
    open: &str,
    not_after_dollar: bool,
    lookup: impl Fn(&str) -> Option<String>,
) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find(open) {
        let after_dollar = not_after_dollar && rest[..start].ends_with('$');
        out.push_str(&rest[..start]);
        let after = &rest[start + open.len()..];
        let value = after
            .find('}')
            .filter(|_| !after_dollar)
            .map(|end| &after[..end])
            .filter(|name| is_identifier(name))
            .and_then(|name| lookup(name).map(|v| (v, name.len() + 1)));
        match value {
            Some((value, consumed)) => {
                out.push_str(&value);
                rest = &after[consumed..];
            }
            None => {
                out.push_str(open);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// How the command's run ended.
enum Ending {
    /// With the CPU time it had used when it died, when that was measured.
    Exited(ExitStatus, Option<Duration>),
    TimedOut,
    Cancelled,
    /// Its output passed `max_output_bytes`: the group was killed.
    OutputLimit,
    WaitFailed(std::io::Error),
}

/// A finished run: how it ended and what it printed.
struct Finished {
    ending: Ending,
    stdout: Capture,
    stderr: Capture,
    /// False if output was still open after the command ended.
    drained: bool,
    /// Its output passed `max_output_bytes` (perhaps just before it exited).
    overflowed: bool,
}

async fn supervise(
    mut child: Child,
    group: ProcessGroup,
    config: &ToolConfig,
    cancel: CancellationToken,
) -> Finished {
    let (stdout_pipe, stderr_pipe) = (child.stdout.take(), child.stderr.take());
    let budget = OutputBudget::new(config.limits.output_limit());
    let (mut stdout, mut stderr) = (Capture::default(), Capture::default());
    let done = Notify::new();
    let watch_cpu = config.limits.cpu_secs.is_some();
    let running = async {
        let ending = wait(
            &mut child,
            &group,
            config.timeout,
            watch_cpu,
            &budget,
            cancel,
        )
        .await;
        done.notify_one();
        ending
    };
    let pipes = (stdout_pipe, stderr_pipe);
    let reading = drain(&mut stdout, &mut stderr, pipes, &budget, &done);
    let (ending, drained) = tokio::join!(running, reading);
    group.disarm();
    Finished {
        ending,
        stdout,
        stderr,
        drained,
        overflowed: budget.exceeded.is_cancelled(),
    }
}

/// Waits for exit, timeout, too much output or cancellation; then no process of the
/// group is left. With `watch_cpu`, the CPU time the command used is read when it ends.
async fn wait(
    child: &mut Child,
    group: &ProcessGroup,
    limit: Duration,
    watch_cpu: bool,
    budget: &OutputBudget,
    cancel: CancellationToken,
) -> Ending {
    let ending = tokio::select! {
        ended = exited(child, watch_cpu) => match ended {
            Ok((status, cpu)) => Ending::Exited(status, cpu),
            Err(e) => Ending::WaitFailed(e),
        },
        () = tokio::time::sleep(limit) => Ending::TimedOut,
        () = budget.exceeded.cancelled() => Ending::OutputLimit,
        () = cancel.cancelled() => Ending::Cancelled,
    };
    match ending {
        Ending::Exited(..) => {}
        // It is still writing: nothing reads its output any more.
        Ending::OutputLimit => group.signal(libc::SIGKILL),
        _ => {
            group.signal(libc::SIGTERM);
            let _ = tokio::time::timeout(GRACE, child.wait()).await;
        }
    }
    group.signal(libc::SIGKILL);
    let _ = tokio::time::timeout(GRACE, child.wait()).await;
    ending
}

/// The command's exit status, and with `watch_cpu` the CPU time it had used: read
/// from `/proc` while it is a zombie (waited for with `WNOWAIT`, on a blocking
/// thread), before tokio reaps it.
async fn exited(
    child: &mut Child,
    watch_cpu: bool,
) -> std::io::Result<(ExitStatus, Option<Duration>)> {
    let mut cpu = None;
    if watch_cpu && let Some(pid) = child.id() {
        cpu = tokio::task::spawn_blocking(move || cpu_time_at_exit(pid))
            .await
            .ok()
            .flatten();
    }
    Ok((child.wait().await?, cpu))
}

/// Blocks until child `pid` has ended (without reaping it), then reads the CPU
/// time (user and system, all its threads) it used.
#[cfg(target_os = "linux")]
fn cpu_time_at_exit(pid: u32) -> Option<Duration> {
    loop {
        // SAFETY: waitid(2) writes only into `info`, a zeroed siginfo_t we own.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOWAIT;
        // SAFETY: as above; WNOWAIT leaves the child for tokio to reap.
        let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
        if rc == 0 {
            break;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return None;
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) `(…)`: state is the
    // 3rd field of the line, utime the 14th and stime the 15th.
    let rest: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let ticks = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf(3) only reads a configuration value.
    let per_sec = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?;
    (per_sec > 0).then(|| Duration::from_millis(ticks * 1000 / per_sec))
}

#[cfg(not(target_os = "linux"))]
fn cpu_time_at_exit(_pid: u32) -> Option<Duration> {
    None
}

/// Reads both pipes to their end (or until `budget` is exceeded), or until [`DRAIN`]
/// after `done` is notified.
async fn drain<O: AsyncRead + Unpin, E: AsyncRead + Unpin>(
    stdout: &mut Capture,
    stderr: &mut Capture,
    (stdout_pipe, stderr_pipe): (Option<O>, Option<E>),
    budget: &OutputBudget,
    done: &Notify,
) -> bool {
    let reading = async {
        tokio::join!(
            stdout.fill(stdout_pipe, budget),
            stderr.fill(stderr_pipe, budget)
        );
    };
    let deadline = async {
        done.notified().await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        () = reading => true,
        () = deadline => false,
    }
}

/// The bytes stdout and stderr may still bring together (`max_output_bytes`);
/// `exceeded` is cancelled once they bring more.
struct OutputBudget {
    left: AtomicU64,
    exceeded: CancellationToken,
}

impl OutputBudget {
    fn new(limit: u64) -> Self {
        Self {
            left: AtomicU64::new(limit),
            exceeded: CancellationToken::new(),
        }
    }

    /// How many of `n` more bytes fit; if not all, the budget is exceeded.
    fn take(&self, n: usize) -> usize {
        let n = n as u64;
        let before = self
            .left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left.saturating_sub(n))
            })
            .unwrap_or(0);
        if n > before {
            self.exceeded.cancel();
        }
        n.min(before) as usize
    }
}

/// Output of one stream, up to what the [`OutputBudget`] of both allows.
#[derive(Default)]
struct Capture {
    bytes: Vec<u8>,
}

impl Capture {
    /// Reads `pipe` to its end, or until `budget` is exceeded (by either stream).
    async fn fill(&mut self, pipe: Option<impl AsyncRead + Unpin>, budget: &OutputBudget) {
        let Some(mut pipe) = pipe else { return };
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = tokio::select! {
                read = pipe.read(&mut chunk) => match read {
                    Ok(n @ 1..) => n,
                    _ => return,
                },
                () = budget.exceeded.cancelled() => return,
            };
            if !self.push(&chunk[..n], budget) {
                return;
            }
        }
    }

    /// Keeps what fits of `bytes`; false if not all did.
    fn push(&mut self, bytes: &[u8], budget: &OutputBudget) -> bool {
        let keep = budget.take(bytes.len());
        self.bytes.extend_from_slice(&bytes[..keep]);
        keep == bytes.len()
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Why a call failed: the headline of its error.
enum Failure<'a> {
    /// Exited non-zero or died of a signal, for no reason we can name; with the
    /// rlimits it ran under.
    Exit(ExitStatus, &'a CommandLimits),
    TimedOut(Duration),
    Cancelled,
    WaitFailed(&'a std::io::Error),
    Cpu {
        tool: &'a str,
        cpu_secs: u64,
    },
    Output {
        tool: &'a str,
        max_output_bytes: u64,
    },
    OpenFiles {
        tool: &'a str,
        max_open_files: u64,
    },
    Memory {
        tool: &'a str,
        memory_mb: u64,
    },
}

impl fmt::Display for Failure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Exit(status, limits) => {
                write!(f, "{}", describe_exit(*status))?;
                let under: Vec<String> = [
                    ("cpu_secs", limits.cpu_secs),
                    ("memory_mb", limits.memory_mb),
                    ("max_open_files", limits.max_open_files),
                ]
                .iter()
                .filter_map(|(key, value)| value.map(|v| format!("{key}: {v}")))
                .collect();
                if !under.is_empty() {
                    write!(f, " (it ran under {})", under.join(", "))?;
                }
                Ok(())
            }
            Failure::TimedOut(limit) => write!(f, "timed out after {}", format_duration(*limit)),
            Failure::Cancelled => f.write_str("cancelled"),
            Failure::WaitFailed(e) => write!(f, "waiting for the command failed: {e}"),
            Failure::Cpu { tool, cpu_secs } => {
                write!(f, "`{tool}` exceeded its CPU limit (cpu_secs: {cpu_secs})")
            }
            Failure::Output {
                tool,
                max_output_bytes,
            } => write!(
                f,
                "`{tool}` wrote more than max_output_bytes ({max_output_bytes}); killed"
            ),
            Failure::OpenFiles {
                tool,
                max_open_files,
            } => write!(
                f,
                "`{tool}` could not open more files (max_open_files: {max_open_files})"
            ),
            Failure::Memory { tool, memory_mb } => {
                write!(f, "`{tool}` ran out of memory under memory_mb: {memory_mb}")
            }
        }
    }
}

/// What a program prints when an allocation fails.
const OUT_OF_MEMORY: &[&str] = &[
    "MemoryError",
    "Cannot allocate memory",
    "out of memory",
    "std::bad_alloc",
    "memory allocation of",
];
/// What a program prints when open(2) fails with EMFILE.
const TOO_MANY_FILES: &[&str] = &["Too many open files"];

impl Finished {
    fn into_output(self, tool: &str, config: &ToolConfig) -> ToolOutput {
        let headline = match &self.ending {
            Ending::Cancelled => Failure::Cancelled,
            // Even if it exited before the waiter saw the overflow.
            _ if self.overflowed => Failure::Output {
                tool,
                max_output_bytes: config.limits.output_limit(),
            },
            Ending::Exited(status, _) if status.success() => {
                return ToolOutput::ok(self.success_text());
            }
            Ending::Exited(status, cpu) => self.classify(tool, &config.limits, *status, *cpu),
            Ending::TimedOut => Failure::TimedOut(config.timeout),
            Ending::OutputLimit => Failure::Output {
                tool,
                max_output_bytes: config.limits.output_limit(),
            },
            Ending::WaitFailed(e) => Failure::WaitFailed(e),
        };
        ToolOutput::error(self.failure_text(headline.to_string()))
    }

    /// Which limit (if any) a command that failed on its own hit: CPU by how it
    /// died and the CPU time it used, memory and open files by what it printed.
    fn classify<'a>(
        &self,
        tool: &'a str,
        limits: &'a CommandLimits,
        status: ExitStatus,
        cpu: Option<Duration>,
    ) -> Failure<'a> {
        use std::os::unix::process::ExitStatusExt;
        if let Some(cpu_secs) = limits.cpu_secs {
            let used_up = cpu.is_some_and(|cpu| cpu.as_secs() >= cpu_secs);
            let hit = match (status.signal(), status.code()) {
                (Some(libc::SIGXCPU), _) => true,
                // A shell reports a child that died of SIGXCPU as 128 + SIGXCPU.
                (_, Some(code)) if code == 128 + libc::SIGXCPU => true,
                (Some(libc::SIGKILL), _) => used_up,
                _ => false,
            };
            if hit {
                return Failure::Cpu { tool, cpu_secs };
            }
        }
        let stderr = self.stderr.text();
        let says = |phrases: &[&str]| phrases.iter().any(|p| stderr.contains(p));
        if let Some(memory_mb) = limits.memory_mb
            && says(OUT_OF_MEMORY)
        {
            return Failure::Memory { tool, memory_mb };
        }
        if let Some(max_open_files) = limits.max_open_files
            && says(TOO_MANY_FILES)
        {
            return Failure::OpenFiles {
                tool,
                max_open_files,
            };
        }
        Failure::Exit(status, limits)
    }

    /// Stdout, then stderr under a header if there is any.
    fn success_text(&self) -> String {
        let mut text = self.stdout.text();
        if !self.stderr.is_empty() {
            push_section(&mut text, "stderr:", &self.stderr.text());
        }
        self.note_undrained(&mut text);
        text
    }

    /// The headline, then stderr and stdout under headers.
    fn failure_text(&self, headline: String) -> String {
        let mut text = headline;
        if !self.stderr.is_empty() {
            push_section(&mut text, "stderr:", &self.stderr.text());
        }
        if !self.stdout.is_empty() {
            push_section(&mut text, "stdout:", &self.stdout.text());
        }
        self.note_undrained(&mut text);
        text
    }

    fn note_undrained(&self, text: &mut String) {
        if !self.drained {
            push_section(
                text,
                "(output may be incomplete: a process outside the command's group kept it open)",
                "",
            );
        }
    }
}

fn push_section(text: &mut String, header: &str, body: &str) {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(header);
    if !body.is_empty() {
        text.push('\n');
        text.push_str(body);
    }
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => format!("ended with {status}"),
    }
}

/// `10s`, `1500ms`.
fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The command's process group; SIGKILLed on drop unless disarmed (so an abandoned
/// call leaves nothing running). Its record is removed after that, with it.
struct ProcessGroup {
    /// Never 0 or 1: `kill(-1)` would signal every process we may signal.
    pgid: Option<libc::pid_t>,
    armed: bool,
    /// Dropped (the file removed) only after the group is killed or has ended.
    record: Option<RunRecord>,
}

impl ProcessGroup {
    fn of(child: &Child) -> Self {
        let pgid = child
            .id()
            .and_then(|id| libc::pid_t::try_from(id).ok())
            .filter(|&id| id > 1);
        Self {
            pgid,
            armed: true,
            record: None,
        }
    }

    fn signal(&self, signal: libc::c_int) {
        if let Some(pgid) = self.pgid {
            // SAFETY: kill(2) has no memory effects; `-pgid` names only our child's group.
            unsafe {
                libc::kill(-pgid, signal);
            }
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.armed {
            self.signal(libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_are_replaced_inside_elements() {
        let schema = json!({"properties": {"text": {}, "n": {}, "opt": {}}});
        let args = json!({"text": "a b; $(x)", "n": 3, "obj": {"k": [1]}});
        let sub = |template: &str| substitute(template, &args, &schema, "/ws");
        assert_eq!(sub("--text={text}"), "--text=a b; $(x)");
        assert_eq!(sub("{n}/{n}"), "3/3");
        assert_eq!(sub("{obj}"), r#"{"k":[1]}"#);
        assert_eq!(sub("x{opt}y"), "xy");
        assert_eq!(
            sub("{print $1} {undeclared} {"),
            "{print $1} {undeclared} {"
        );
        assert_eq!(sub("{workspace}/resources/t.sh"), "/ws/resources/t.sh");
        // An argument's value is not expanded again.
        let sneaky = json!({"text": "{workspace}"});
        assert_eq!(substitute("{text}", &sneaky, &schema, "/ws"), "{workspace}");
    }

    #[test]
    fn env_values_expand_variables() {
        let path = std::env::var("PATH").unwrap_or_default();
        assert_eq!(expand_env("p=${PATH}!"), format!("p={path}!"));
        assert_eq!(expand_env("${AGENT_HARNESS_SURELY_UNSET_VAR}x"), "x");
        assert_eq!(expand_env("${bad name} ${"), "${bad name} ${");
    }

    #[test]
    fn both_streams_share_the_output_budget() {
        let budget = OutputBudget::new(10);
        let (mut out, mut err) = (Capture::default(), Capture::default());
        assert!(out.push(b"123456", &budget));
        assert!(!budget.exceeded.is_cancelled());
        assert!(err.push(b"7890", &budget));
        assert!(
            !budget.exceeded.is_cancelled(),
            "exactly the limit is allowed"
        );
        assert!(!out.push(b"x", &budget));
        assert!(budget.exceeded.is_cancelled());
        assert_eq!((out.text(), err.text()), ("123456".into(), "7890".into()));
    }
}
