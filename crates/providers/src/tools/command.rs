//! Command tools: an argv from `tools.yaml` with `{name}` placeholders filled from
//! the call's arguments (and `{workspace}` with the absolute workspace folder, to
//! reach scripts under `resources/`), run without a shell as its own process group.
//!
//! The process starts in the request's work folder ([`ToolContext::work_dir`],
//! `work/<session-id>/` by default, created if missing), so a relative path a model passes lands there and not in `config/` or
//! the store (this is not a sandbox: `..` and absolute paths reach whatever the
//! process may). Stdin is closed and the environment reduced: a few basics passed
//! through (`PATH`, `HOME`, locale…), the tool's `env` map (`${VAR}` expanded from
//! ours), `AGENT_HARNESS_WORKSPACE` and the `AGENT_HARNESS_*` call identifiers;
//! nothing else of ours (API keys, say) leaks to it. Stdout and stderr are read
//! concurrently and kept up to [`MAX_CAPTURE`] bytes each. On timeout or cancellation
//! the whole group gets SIGTERM, then SIGKILL after [`GRACE`]; when the command
//! exits, anything it left running in its group is killed.
//!
//! If the worker itself dies (SIGKILL, OOM), the command gets SIGKILL from the
//! kernel (`PR_SET_PDEATHSIG`), and what it spawned in its group is recorded under
//! [`ToolContext::runs_dir`] for the next worker to kill before it re-runs anything
//! (see [`super::running`]). A process that leaves the group (`setsid`) escapes both.

use super::running::RunRecord;
use crate::{ToolContext, ToolOutput};
use harness_config::{ToolConfig, WORKSPACE_PLACEHOLDER};
use serde_json::Value;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Bytes of stdout (and of stderr) kept per call.
pub const MAX_CAPTURE: usize = 4 * 1024 * 1024;
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

/// Runs command tool `config` (its argv is `argv`) with `args`.
pub(super) async fn run_command(
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
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return spawn_error(program, ctx, e),
    };
    let mut group = ProcessGroup::of(&child);
    if let Some(pgid) = group.pgid {
        match RunRecord::write(&ctx.runs_dir, &ctx.call_id, &ctx.request_id, pgid) {
            Ok(record) => group.record = Some(record),
            // Unrecorded, a crash could leave it running beside its re-run: stop it.
            Err(e) => {
                drop(group);
                return ToolOutput::error(format!(
                    "cannot record the running call in {}: {e}; the command was stopped",
                    ctx.runs_dir.display()
                ));
            }
        }
    }
    let finished = supervise(child, group, config.timeout, ctx.cancel.clone()).await;
    finished.into_output(config.timeout)
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
    Exited(ExitStatus),
    TimedOut,
    Cancelled,
    WaitFailed(std::io::Error),
}

/// A finished run: how it ended and what it printed.
struct Finished {
    ending: Ending,
    stdout: Capture,
    stderr: Capture,
    /// False if output was still open after the command ended.
    drained: bool,
}

async fn supervise(
    mut child: Child,
    group: ProcessGroup,
    limit: Duration,
    cancel: CancellationToken,
) -> Finished {
    let (stdout_pipe, stderr_pipe) = (child.stdout.take(), child.stderr.take());
    let (mut stdout, mut stderr) = (Capture::default(), Capture::default());
    let done = Notify::new();
    let running = async {
        let ending = wait(&mut child, &group, limit, cancel).await;
        done.notify_one();
        ending
    };
    let reading = drain(&mut stdout, &mut stderr, stdout_pipe, stderr_pipe, &done);
    let (ending, drained) = tokio::join!(running, reading);
    group.disarm();
    Finished {
        ending,
        stdout,
        stderr,
        drained,
    }
}

/// Waits for exit, timeout or cancellation; then no process of the group is left.
async fn wait(
    child: &mut Child,
    group: &ProcessGroup,
    limit: Duration,
    cancel: CancellationToken,
) -> Ending {
    let ending = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => Ending::Exited(status),
            Err(e) => Ending::WaitFailed(e),
        },
        () = tokio::time::sleep(limit) => Ending::TimedOut,
        () = cancel.cancelled() => Ending::Cancelled,
    };
    if !matches!(ending, Ending::Exited(_)) {
        group.signal(libc::SIGTERM);
        let _ = tokio::time::timeout(GRACE, child.wait()).await;
    }
    group.signal(libc::SIGKILL);
    let _ = tokio::time::timeout(GRACE, child.wait()).await;
    ending
}

/// Reads both pipes to their end, or until [`DRAIN`] after `done` is notified.
async fn drain(
    stdout: &mut Capture,
    stderr: &mut Capture,
    stdout_pipe: Option<impl AsyncRead + Unpin>,
    stderr_pipe: Option<impl AsyncRead + Unpin>,
    done: &Notify,
) -> bool {
    let reading = async {
        tokio::join!(stdout.fill(stdout_pipe), stderr.fill(stderr_pipe));
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

/// Output of one stream, bounded to [`MAX_CAPTURE`] bytes.
#[derive(Default)]
struct Capture {
    bytes: Vec<u8>,
    dropped: u64,
}

impl Capture {
    async fn fill(&mut self, pipe: Option<impl AsyncRead + Unpin>) {
        let Some(mut pipe) = pipe else { return };
        let mut chunk = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = pipe.read(&mut chunk).await {
            self.push(&chunk[..n]);
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let keep = MAX_CAPTURE
            .saturating_sub(self.bytes.len())
            .min(bytes.len());
        self.bytes.extend_from_slice(&bytes[..keep]);
        self.dropped += (bytes.len() - keep) as u64;
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.dropped == 0
    }

    fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.dropped > 0 {
            text.push_str(&format!(
                "\n[truncated: {} more bytes not kept]",
                self.dropped
            ));
        }
        text
    }
}

impl Finished {
    fn into_output(self, limit: Duration) -> ToolOutput {
        let headline = match &self.ending {
            Ending::Exited(status) if status.success() => {
                return ToolOutput::ok(self.success_text());
            }
            Ending::Exited(status) => describe_exit(*status),
            Ending::TimedOut => format!("timed out after {}", format_duration(limit)),
            Ending::Cancelled => "cancelled".to_string(),
            Ending::WaitFailed(e) => format!("waiting for the command failed: {e}"),
        };
        ToolOutput::error(self.failure_text(headline))
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
    fn capture_is_bounded() {
        let mut capture = Capture::default();
        capture.push(&vec![b'a'; MAX_CAPTURE - 1]);
        capture.push(b"bcd");
        assert_eq!(capture.bytes.len(), MAX_CAPTURE);
        assert_eq!(capture.dropped, 2);
        assert!(
            capture
                .text()
                .ends_with("[truncated: 2 more bytes not kept]")
        );
    }
}
