//! WorkspaceTools: argument checks, confined file built-ins, artifacts, and command
//! tools (no shell, exit status, timeout and cancellation of the whole group, env,
//! resource limits, on record before they run).

use harness_config::{ToolsFile, from_yaml};
use harness_core::{CallId, RequestId, SessionId};
use harness_providers::{ToolContext, ToolOutput, ToolRunner, WorkspaceTools};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const TOOLS: &str = r#"
tools:
  read_file: {builtin: read_file, arguments: {type: object, properties: {path: {type: string}}, required: [path]}}
  write_file: {builtin: write_file}
  list_files: {builtin: list_files}
  write_artifact: {builtin: write_artifact}
  delegate: {builtin: delegate}
  save_text:
    command: [sh, -c, 'printf %s "$1" > out.txt', sh, "{text}"]
    arguments:
      type: object
      properties: {text: {type: string}}
      required: [text]
      additionalProperties: false
  fail:
    command: [sh, -c, 'echo partial; echo oops >&2; exit 3']
  warn:
    command: [sh, -c, 'echo result; echo careful >&2']
  sleepy:
    command: [sleep, "30"]
    timeout: 1s
  grandchild:
    command: [sh, -c, 'sleep 30 & echo $! > grandchild.pid; wait']
    timeout: 1s
  ids:
    command: [sh, -c, 'printf "%s|%s|%s|%s|%s|%s" "$AGENT_HARNESS_CALL_ID" "$AGENT_HARNESS_REQUEST_ID" "$AGENT_HARNESS_SESSION_ID" "$GREETING" "$AGENT_HARNESS_WORKSPACE" "$TRACEPARENT"']
    env: {GREETING: "path=${PATH}"}
  missing:
    command: [definitely-not-a-program-4821, "{x}"]
  shell_var:
    command: [sh, -c, 'printf %s "${GREETING}"']
    env: {GREETING: hello}
  lingering:
    command: [sh, -c, 'echo $$ > lingering.pid; exec sleep 30']
    timeout: 60s
  where:
    command: [sh, -c, 'pwd; mkdir -p config; printf pwned > "$1"', sh, "{path}"]
    arguments: {type: object, properties: {path: {type: string}}}
  script:
    command: [sh, "{workspace}/resources/tools/hello.sh", "{name}"]
    arguments: {type: object, properties: {name: {type: string}}}
  burn:
    command: [sh, -c, 'while :; do :; done']
    limits: {cpu_secs: 1}
    timeout: 60s
  stubborn_burn:
    command: [sh, -c, 'trap "" XCPU; while :; do :; done']
    limits: {cpu_secs: 1}
    timeout: 60s
  shell_burn:
    command: [sh, -c, 'sh -c "while :; do :; done"; exit $?']
    limits: {cpu_secs: 1}
    timeout: 60s
  spew:
    command: [sh, -c, 'echo starting >&2; exec yes']
    limits: {max_output_bytes: 100000}
    timeout: 20s
  quiet:
    command: [sh, -c, 'printf 1234567890; printf abcde >&2']
    limits: {max_output_bytes: 15}
  burst:
    command: [printf, '12345678901234567890']
    limits: {max_output_bytes: 15}
  hog:
    command: [python3, -c, 'x = bytearray(1 << 30); print(len(x))']
    limits: {memory_mb: 64}
  light:
    command: [python3, -c, 'x = bytearray(1 << 20); print(len(x))']
    limits: {memory_mb: 64}
  fds:
    command: [bash, -c, 'for i in $(seq 64); do exec {fd}>/dev/null || exit 1; done; echo opened']
    limits: {max_open_files: 16}
  few_fds:
    command: [bash, -c, 'for i in $(seq 4); do exec {fd}>/dev/null || exit 1; done; echo opened']
    limits: {max_open_files: 16}
  limited_fail:
    command: [sh, -c, 'echo nope >&2; exit 4']
    limits: {cpu_secs: 5, max_open_files: 32}
  own_record:
    command: [sh, -c, 'grep -qx "pgid=$$" "$1/$AGENT_HARNESS_CALL_ID" && echo recorded', sh, "{runs}"]
    arguments: {type: object, properties: {runs: {type: string}}}
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    tools: WorkspaceTools,
    ctx: ToolContext,
    cancel: CancellationToken,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap().join("ws");
        std::fs::create_dir_all(&root).unwrap();
        let file: ToolsFile = from_yaml(TOOLS, Path::new("tools.yaml")).unwrap();
        let cancel = CancellationToken::new();
        let ctx = ToolContext {
            work_dir: root.join("work"),
            workspace_root: root,
            request_id: RequestId::generate(),
            session_id: SessionId::generate(),
            call_id: CallId::generate(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_string(),
            traceparent: None,
            runs_dir: dir.path().join("store/running"),
            cancel: cancel.clone(),
        };
        Self {
            _dir: dir,
            tools: WorkspaceTools::new(file.tools),
            ctx,
            cancel,
        }
    }

    async fn run(&self, tool: &str, args: Value) -> ToolOutput {
        self.tools.run(tool, &args, &self.ctx).await
    }

    fn root(&self) -> &Path {
        &self.ctx.workspace_root
    }

    fn work(&self) -> &Path {
        &self.ctx.work_dir
    }
}

fn assert_error(output: &ToolOutput, expected: &str) {
    assert!(!output.ok, "expected an error, got {output:?}");
    assert!(
        output.content.contains(expected),
        "{:?} lacks {expected:?}",
        output.content
    );
}

#[tokio::test]
async fn unknown_tools_bad_arguments_and_delegate_are_errors() {
    let f = Fixture::new();
    assert_eq!(
        f.run("nope", json!({})).await,
        ToolOutput::error("unknown tool `nope`")
    );
    assert_error(
        &f.run("read_file", json!({})).await,
        "missing required argument `path`",
    );
    assert_error(
        &f.run("read_file", json!({"path": 3})).await,
        "argument `path` must be a string",
    );
    assert_error(
        &f.run("save_text", json!({"text": "a", "x": 1})).await,
        "unknown argument `x`",
    );
    assert_error(
        &f.run("delegate", json!({})).await,
        "delegate is run by the engine",
    );
}

#[tokio::test]
async fn write_then_read_and_list() {
    let f = Fixture::new();
    let wrote = f
        .run(
            "write_file",
            json!({"path": "notes/a.txt", "content": "héllo"}),
        )
        .await;
    assert!(wrote.ok, "{wrote:?}");
    let read = f.run("read_file", json!({"path": "notes/a.txt"})).await;
    assert_eq!(read, ToolOutput::ok("héllo"));
    f.run("write_file", json!({"path": "b.txt", "content": ""}))
        .await;
    let listed = f.run("list_files", json!({})).await;
    assert_eq!(listed, ToolOutput::ok("b.txt\nnotes/\nnotes/a.txt"));
    let sub = f.run("list_files", json!({"path": "notes"})).await;
    assert_eq!(sub, ToolOutput::ok("notes/a.txt"));
}

#[tokio::test]
async fn large_files_are_refused() {
    let f = Fixture::new();
    std::fs::create_dir_all(&f.ctx.work_dir).unwrap();
    std::fs::write(f.ctx.work_dir.join("big"), vec![b'x'; 1024 * 1024 + 1]).unwrap();
    assert_error(
        &f.run("read_file", json!({"path": "big"})).await,
        "at most 1 MiB",
    );
}

#[tokio::test]
async fn escaping_paths_are_refused() {
    let f = Fixture::new();
    let outside = f.root().join("secret.txt");
    std::fs::write(&outside, "secret").unwrap();
    std::fs::create_dir_all(&f.ctx.work_dir).unwrap();
    std::os::unix::fs::symlink(f.root(), f.ctx.work_dir.join("up")).unwrap();
    std::os::unix::fs::symlink(&outside, f.ctx.work_dir.join("leak.txt")).unwrap();

    std::os::unix::fs::symlink("/dev/zero", f.ctx.work_dir.join("zero")).unwrap();

    for path in [
        "../x",
        "/etc/passwd",
        "a/../../x",
        "up/secret.txt",
        "leak.txt",
        "zero",
    ] {
        let out = f.run("read_file", json!({"path": path})).await;
        assert_eq!(
            out,
            ToolOutput::error(format!("path `{path}` escapes the work folder"))
        );
    }
    for path in ["../x", "up/new.txt", "up/deep/new.txt", "leak.txt", "zero"] {
        let out = f
            .run("write_file", json!({"path": path, "content": "pwned"}))
            .await;
        assert_error(&out, "escapes the work folder");
    }
    assert!(!f.root().join("new.txt").exists() && !f.root().join("deep").exists());
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "secret");
    assert_error(
        &f.run("list_files", json!({"path": "up"})).await,
        "escapes the work folder",
    );
}

#[tokio::test]
async fn symlinks_inside_the_work_folder_are_followed() {
    let f = Fixture::new();
    f.run(
        "write_file",
        json!({"path": "notes/a.txt", "content": "hi"}),
    )
    .await;
    std::os::unix::fs::symlink("notes/a.txt", f.work().join("alias")).unwrap();
    assert_eq!(
        f.run("read_file", json!({"path": "alias"})).await,
        ToolOutput::ok("hi")
    );
}

/// Runs a tool on its own thread so that a call which blocks (as `read_file` on a
/// FIFO once did, holding a runtime thread forever) fails the test instead of
/// hanging it. `None` if it has not returned after 5 s.
fn run_unless_blocked(f: &Arc<Fixture>, tool: &'static str, args: Value) -> Option<ToolOutput> {
    let (tx, rx) = std::sync::mpsc::channel();
    let f = Arc::clone(f);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = tx.send(rt.block_on(f.run(tool, args)));
    });
    rx.recv_timeout(Duration::from_secs(5)).ok()
}

#[test]
fn fifos_sockets_and_folders_are_refused_without_blocking() {
    let f = Arc::new(Fixture::new());
    let work = f.work().to_path_buf();
    std::fs::create_dir_all(work.join("folder")).unwrap();
    let fifo = work.join("pipe");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    std::os::unix::fs::symlink("pipe", work.join("alias")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(work.join("sock")).unwrap();

    let cases = [
        (
            "read_file",
            json!({"path": "pipe"}),
            "`pipe` is a FIFO (named pipe); file tools read and write only regular files",
        ),
        (
            "read_file",
            json!({"path": "alias"}),
            "`alias` is a FIFO (named pipe)",
        ),
        (
            "write_file",
            json!({"path": "pipe", "content": "x"}),
            "`pipe` is a FIFO (named pipe)",
        ),
        ("read_file", json!({"path": "sock"}), "`sock` is a socket"),
        (
            "write_file",
            json!({"path": "sock", "content": "x"}),
            "`sock` is a socket",
        ),
        (
            "read_file",
            json!({"path": "folder"}),
            "`folder` is a directory (use list_files)",
        ),
    ];
    for (tool, args, expected) in cases {
        let shown = args.to_string();
        let Some(out) = run_unless_blocked(&f, tool, args) else {
            // Release the blocked open (O_RDWR on a FIFO never blocks) before failing.
            let _ = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&fifo);
            panic!("{tool} {shown} blocked");
        };
        assert_error(&out, expected);
    }
    // A FIFO opened for writing with a reader present is refused too, and left as is.
    let reader = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap()
    };
    let out = run_unless_blocked(&f, "write_file", json!({"path": "pipe", "content": "x"}));
    assert_error(&out.expect("write_file blocked"), "`pipe` is a FIFO");
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut &reader, &mut got);
    assert!(got.is_empty(), "wrote {got:?} into the FIFO");
}

#[tokio::test]
async fn write_artifact_returns_the_artifact() {
    let f = Fixture::new();
    let out = f
        .run(
            "write_artifact",
            json!({"name": "report.md", "content": "# Hi"}),
        )
        .await;
    assert!(out.ok);
    assert_eq!(out.content, "stored artifact report.md (4 bytes)");
    assert_eq!(out.artifacts.len(), 1);
    assert_eq!(out.artifacts[0].name, "report.md");
    assert_eq!(out.artifacts[0].media_type, "text/markdown");
    assert_eq!(out.artifacts[0].bytes, b"# Hi");
    let typed = f
        .run(
            "write_artifact",
            json!({"name": "d", "content": "{}", "media_type": "application/json"}),
        )
        .await;
    assert_eq!(typed.artifacts[0].media_type, "application/json");
}

#[tokio::test]
async fn command_arguments_are_not_interpreted_by_a_shell() {
    let f = Fixture::new();
    let text = "two words; rm -rf x $(touch pwned) `touch pwned2` 'q' \"dq\" {text} \\n";
    let out = f.run("save_text", json!({"text": text})).await;
    assert!(out.ok, "{out:?}");
    assert_eq!(
        std::fs::read(f.work().join("out.txt")).unwrap(),
        text.as_bytes()
    );
    assert!(!f.work().join("pwned").exists() && !f.work().join("pwned2").exists());
}

#[tokio::test]
async fn commands_run_in_the_work_folder() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.root().join("config")).unwrap();
    std::fs::write(f.root().join("config/x"), "config").unwrap();
    assert!(!f.work().exists(), "the fixture starts without work/");
    let out = f.run("where", json!({"path": "config/x"})).await;
    assert_eq!(out, ToolOutput::ok(format!("{}\n", f.work().display())));
    assert_eq!(
        std::fs::read_to_string(f.work().join("config/x")).unwrap(),
        "pwned"
    );
    assert_eq!(
        std::fs::read_to_string(f.root().join("config/x")).unwrap(),
        "config",
        "a relative path reached the workspace's config/"
    );
}

#[tokio::test]
async fn the_workspace_placeholder_reaches_workspace_scripts() {
    let f = Fixture::new();
    let script = f.root().join("resources/tools/hello.sh");
    std::fs::create_dir_all(script.parent().unwrap()).unwrap();
    std::fs::write(&script, "printf 'hello %s from %s' \"$1\" \"$(pwd)\"").unwrap();
    let out = f.run("script", json!({"name": "{workspace}"})).await;
    let expected = format!("hello {{workspace}} from {}", f.work().display());
    assert_eq!(out, ToolOutput::ok(expected));
}

#[tokio::test]
async fn a_shell_variable_is_not_a_placeholder() {
    // `${GREETING}` is the script's variable: an extra argument of that name must
    // not be substituted into the script.
    let f = Fixture::new();
    let hostile = r#"{HOME}"; touch pwned; echo ""#;
    let out = f.run("shell_var", json!({"GREETING": hostile})).await;
    assert_eq!(out, ToolOutput::ok("hello"));
    assert!(!f.root().join("pwned").exists() && !f.work().join("pwned").exists());
}

#[tokio::test]
async fn exit_status_and_stderr_are_reported() {
    let f = Fixture::new();
    let out = f.run("fail", json!({})).await;
    assert_eq!(
        out,
        ToolOutput::error("exit status 3\nstderr:\noops\nstdout:\npartial\n")
    );
    let warned = f.run("warn", json!({})).await;
    assert_eq!(warned, ToolOutput::ok("result\nstderr:\ncareful\n"));
}

#[tokio::test]
async fn a_command_starts_with_its_record_in_place() {
    let f = Fixture::new();
    let runs = f.ctx.runs_dir.to_str().unwrap();
    for _ in 0..5 {
        let out = f.run("own_record", json!({"runs": runs})).await;
        assert_eq!(out, ToolOutput::ok("recorded\n"));
    }
    let left = std::fs::read_dir(&f.ctx.runs_dir).unwrap().count();
    assert_eq!(left, 0, "records of finished calls were left behind");
}

#[tokio::test]
async fn a_command_that_cannot_be_recorded_never_runs() {
    let mut f = Fixture::new();
    let not_a_folder = f.root().join("not-a-folder");
    std::fs::write(&not_a_folder, "").unwrap();
    f.ctx.runs_dir = not_a_folder.join("running");
    let out = f.run("save_text", json!({"text": "ran"})).await;
    assert_error(&out, "cannot record the running call in");
    assert_error(&out, "the command was not started");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!f.work().join("out.txt").exists(), "the command ran");
}

#[tokio::test]
async fn missing_programs_are_named() {
    let f = Fixture::new();
    let out = f.run("missing", json!({"x": 1})).await;
    assert_error(&out, "cannot run `definitely-not-a-program-4821`");
}

#[tokio::test]
async fn timeout_kills_the_command() {
    let f = Fixture::new();
    let start = Instant::now();
    let out = f.run("sleepy", json!({})).await;
    assert_eq!(out, ToolOutput::error("timed out after 1s"));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn timeout_kills_grandchildren_too() {
    let f = Fixture::new();
    let start = Instant::now();
    let out = f.run("grandchild", json!({})).await;
    assert_error(&out, "timed out after 1s");
    assert!(!out.content.contains("incomplete"), "{out:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let pid: i32 = std::fs::read_to_string(f.work().join("grandchild.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(wait_gone(pid).await, "grandchild {pid} survived");
}

/// True once `pid` no longer runs (gone or a zombie awaiting its reaper).
async fn wait_gone(pid: i32) -> bool {
    for _ in 0..50 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|s| s.trim_start().starts_with('Z')) =>
            {
                return true;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    false
}

#[test]
fn a_command_dies_with_its_worker() {
    // PR_SET_PDEATHSIG fires when the thread that spawned the command ends. Here
    // that thread ends without dropping the call, as when a SIGKILL ends the whole
    // worker: no destructor runs, only the kernel's signal can stop the command.
    let f = Arc::new(Fixture::new());
    let pid_file = f.work().join("lingering.pid");
    let f2 = Arc::clone(&f);
    let pid_file2 = pid_file.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut call = Box::pin(f2.run("lingering", json!({})));
        rt.block_on(async {
            tokio::select! {
                out = &mut call => panic!("the command ended: {out:?}"),
                () = async {
                    while !std::fs::read_to_string(&pid_file2).is_ok_and(|s| s.ends_with('\n')) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                } => {}
            }
        });
        std::mem::forget(call);
        std::mem::forget(rt);
    })
    .join()
    .unwrap();
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(wait_gone(pid));
    if !gone {
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    assert!(gone, "command {pid} outlived the thread that spawned it");
}

#[tokio::test]
async fn cancel_terminates_the_command() {
    let f = Fixture::new();
    let cancel = f.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let start = Instant::now();
    let out = f.run("grandchild", json!({})).await;
    assert_eq!(out, ToolOutput::error("cancelled"));
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn call_identifiers_and_env_reach_the_command() {
    let f = Fixture::new();
    let out = f.run("ids", json!({})).await;
    let expected = format!(
        "{}|{}|{}|path={}|{}|",
        f.ctx.call_id,
        f.ctx.request_id,
        f.ctx.session_id,
        std::env::var("PATH").unwrap_or_default(),
        f.root().display()
    );
    assert!(out.ok, "{out:?}");
    let (ids, traceparent) = out.content.split_at(expected.len());
    assert_eq!(ids, expected);
    // W3C: version 00, the request's trace id, a span id of this call, sampled.
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", f.ctx.trace_id.as_str(), "01")
    );
    assert!(
        parts[2].len() == 16 && parts[2] != "0000000000000000",
        "{traceparent}"
    );
}

/// Runs `tool`, checks it ended within `within`, and returns its output.
async fn run_within(f: &Fixture, tool: &str, within: Duration) -> ToolOutput {
    let start = Instant::now();
    let out = f.run(tool, json!({})).await;
    assert!(
        start.elapsed() < within,
        "{tool} took {:?}: {out:?}",
        start.elapsed()
    );
    out
}

/// The CPU tests burn a core each: one at a time, so that on a busy machine a
/// second of CPU is not many seconds of wall time.
static BURNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Well under the tools' 60 s timeout: the CPU limit ended the call, not the timeout.
const BURN_WITHIN: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_cpu_limit_stops_a_busy_loop() {
    let _one_at_a_time = BURNING.lock().await;
    let f = Fixture::new();
    let out = run_within(&f, "burn", BURN_WITHIN).await;
    assert_eq!(
        out,
        ToolOutput::error("`burn` exceeded its CPU limit (cpu_secs: 1)")
    );
}

#[tokio::test]
async fn a_command_that_ignores_sigxcpu_is_killed_at_the_hard_cpu_limit() {
    let _one_at_a_time = BURNING.lock().await;
    let f = Fixture::new();
    let out = run_within(&f, "stubborn_burn", BURN_WITHIN).await;
    assert_eq!(
        out,
        ToolOutput::error("`stubborn_burn` exceeded its CPU limit (cpu_secs: 1)")
    );
}

#[tokio::test]
async fn a_cpu_limit_hit_by_a_child_of_a_shell_is_named() {
    let _one_at_a_time = BURNING.lock().await;
    let f = Fixture::new();
    let out = run_within(&f, "shell_burn", BURN_WITHIN).await;
    assert_error(&out, "`shell_burn` exceeded its CPU limit (cpu_secs: 1)");
}

#[tokio::test]
async fn too_much_output_kills_the_command_and_keeps_the_limit() {
    let f = Fixture::new();
    let out = run_within(&f, "spew", Duration::from_secs(5)).await;
    assert!(!out.ok, "{out:?}");
    let (headline, rest) = out.content.split_once('\n').unwrap();
    assert_eq!(
        headline,
        "`spew` wrote more than max_output_bytes (100000); killed"
    );
    let stdout = rest.strip_prefix("stderr:\nstarting\nstdout:\n").unwrap();
    assert_eq!(stdout.len(), 100_000 - "starting\n".len());
    assert!(stdout.bytes().all(|b| b == b'y' || b == b'\n'));
}

#[tokio::test]
async fn output_up_to_the_limit_is_fine_and_the_streams_share_it() {
    let f = Fixture::new();
    // 10 bytes of stdout and 5 of stderr: exactly max_output_bytes.
    let out = f.run("quiet", json!({})).await;
    assert_eq!(out, ToolOutput::ok("1234567890\nstderr:\nabcde"));
    // One byte more is refused even when the command exits at once, successfully.
    for _ in 0..20 {
        let out = f.run("burst", json!({})).await;
        assert_eq!(
            out,
            ToolOutput::error(
                "`burst` wrote more than max_output_bytes (15); killed\nstdout:\n123456789012345"
            )
        );
    }
}

#[tokio::test]
async fn a_memory_limit_fails_a_large_allocation() {
    let f = Fixture::new();
    let out = run_within(&f, "hog", Duration::from_secs(10)).await;
    assert_error(
        &out,
        "`hog` ran out of memory under memory_mb: 64\nstderr:\n",
    );
    assert_error(&out, "MemoryError");
    // A program that stays under the limit runs.
    let light = run_within(&f, "light", Duration::from_secs(10)).await;
    assert_eq!(light, ToolOutput::ok("1048576\n"));
}

#[tokio::test]
async fn an_open_files_limit_is_named() {
    let f = Fixture::new();
    let out = run_within(&f, "fds", Duration::from_secs(5)).await;
    assert_error(
        &out,
        "`fds` could not open more files (max_open_files: 16)\nstderr:\n",
    );
    assert_error(&out, "Too many open files");
    let few = run_within(&f, "few_fds", Duration::from_secs(5)).await;
    assert_eq!(few, ToolOutput::ok("opened\n"));
}

#[tokio::test]
async fn another_failure_under_limits_names_them() {
    let f = Fixture::new();
    let out = f.run("limited_fail", json!({})).await;
    assert_eq!(
        out,
        ToolOutput::error(
            "exit status 4 (it ran under cpu_secs: 5, max_open_files: 32)\nstderr:\nnope\n"
        )
    );
}
