//! Agents on an HTTP model, through the real binary, against a local server speaking
//! the OpenAI wire format: tools, an approval and a final answer recorded with what
//! the model returned (and shown with its token usage); the key in the worker's
//! environment never reaches a record, a log line or an export; the answer streams
//! live on a terminal; and a `serve` killed mid-stream asks again after its restart,
//! never recording half a turn.

mod common;
mod worker;

use common::{BIN, Demo};
use harness_fake_provider::{FakeProvider, Reply, openai};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The key, in the environment of the processes that run agents only.
const KEY: &str = "sk-local-5f1e9a7c3b2d4e6f";

/// The demo workspace plus a model `local` on `server` (key in `LOCAL_LLM_KEY`) and
/// an agent `helper` that writes files and sends mail (approval required).
fn workspace(server: &FakeProvider) -> Demo {
    let d = Demo::new();
    let models = d.root.join("config/models.yaml");
    let text = std::fs::read_to_string(&models).unwrap().replace(
        "models:\n",
        &format!(
            "models:\n  local:\n    provider: openai\n    model: test-model\n    base_url: {}\n    \
             api_key_env: LOCAL_LLM_KEY\n    retry: {{initial_backoff: 5ms}}\n",
            server.openai_base_url()
        ),
    );
    std::fs::write(models, text).unwrap();
    std::fs::write(
        d.root.join("config/agents/helper.yaml"),
        "name: helper\nmodel: local\nsystem_prompt: Be brief.\ntools: [write_file, send_mail]\n",
    )
    .unwrap();
    d
}

/// `agent-harness ARGS --workspace ROOT`; `key`: with the key in the environment.
fn cli(d: &Demo, key: bool, args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    c.args(args).arg("--workspace").arg(&d.root);
    c.env("NO_COLOR", "1").env("USER", "alice");
    c.env_remove("AGENT_HARNESS_NOW")
        .env_remove("LOCAL_LLM_KEY");
    if key {
        c.env("LOCAL_LLM_KEY", KEY);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(d: &Demo, key: bool, args: &[&str]) -> String {
    let (code, stdout, stderr) = cli(d, key, args);
    assert_eq!(
        code, 0,
        "{args:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        !stdout.contains(KEY) && !stderr.contains(KEY),
        "{args:?} shows the key"
    );
    stdout
}

fn json(d: &Demo, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    serde_json::from_str(&ok(d, false, &args)).unwrap()
}

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                pending.push(e.path());
            } else {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}

fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn an_agent_on_a_local_server_calls_tools_waits_for_approval_and_answers() {
    let server = FakeProvider::spawn();
    // A server error quoting the key: retried, and logged without it.
    server.push(Reply::error(
        500,
        openai::error_body(&format!("upstream rejected key {KEY}"), "server_error"),
    ));
    server.push(
        openai::Turn::new("test-model-v1")
            .text("Writing the notes, then mailing them.")
            .call(
                0,
                "call_w1",
                "write_file",
                &["{\"path\": \"notes.md\", ", "\"content\": \"v1 ships\"}"],
            )
            .call(
                1,
                "call_m1",
                "send_mail",
                &["{\"to\": \"ops@example.com\", \"subject\": \"notes\"}"],
            )
            .finish("tool_calls")
            .usage(1200, 30)
            .reply(),
    );
    server.push(
        openai::Turn::new("test-model-v1")
            .text("Done: notes written and mailed.")
            .finish("stop")
            .usage(1350, 9)
            .reply(),
    );
    let d = workspace(&server);

    let (code, stdout, stderr) = cli(
        &d,
        true,
        &[
            "run",
            "--agent",
            "helper",
            "--session",
            "s1",
            "ship the notes",
        ],
    );
    assert_eq!(code, 0, "--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stdout.contains("paused for approval"), "{stdout}");
    assert!(
        stdout.contains("calls write_file, send_mail · tokens 1,200 in / 30 out"),
        "{stdout}"
    );
    assert!(
        !stdout.contains('▸'),
        "no live pieces when stdout is not a terminal"
    );
    assert!(stderr.contains("retrying"), "the retry is logged: {stderr}");
    assert!(
        stderr.contains("upstream rejected key [REDACTED]"),
        "{stderr}"
    );
    assert!(!stdout.contains(KEY) && !stderr.contains(KEY));
    assert_eq!(
        std::fs::read_to_string(d.root.join("work/s1/notes.md")).unwrap(),
        "v1 ships",
        "the call that needs no approval ran"
    );
    assert!(
        !d.root.join("work/s1/outbox.log").exists(),
        "no mail before approval"
    );

    let approvals = json(&d, &["runtime", "approvals", "list"]);
    let a = &approvals["approvals"][0];
    assert_eq!(a["tool"], "send_mail");
    let (apr, req) = (a["id"].as_str().unwrap(), a["request_id"].as_str().unwrap());
    let out = ok(
        &d,
        true,
        &[
            "runtime",
            "approvals",
            "approve",
            apr,
            "--session",
            "s1",
            "--request",
            req,
        ],
    );
    assert!(out.contains("Done: notes written and mailed."), "{out}");
    let outbox = std::fs::read_to_string(d.root.join("work/s1/outbox.log")).unwrap();
    assert_eq!(outbox.lines().count(), 1, "{outbox}");

    // What the provider was sent: the key, and the last call the whole exchange
    // with its own call ids.
    let received = server.received();
    assert_eq!(received.len(), 3, "one retry, then two turns");
    for r in &received {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
    }
    let sent = received[2].json();
    let messages = sent["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "tool"]);
    assert_eq!(messages[2]["tool_calls"][1]["id"], "call_m1");
    assert_eq!(messages[3]["tool_call_id"], "call_w1");
    assert_eq!(messages[4]["tool_call_id"], "call_m1");
    assert!(
        messages[4]["content"]
            .as_str()
            .unwrap()
            .contains("queued mail to ops@example.com"),
        "{sent:#}"
    );
    assert_eq!(sent["stream"], true);

    // The records: two model turns with what the model returned, two calls, the
    // approval, the answer.
    let tree = json(&d, &["runtime", "requests", "show", req]);
    assert_eq!(tree["request"]["status"], "completed");
    assert_eq!(tree["request"]["output"], "Done: notes written and mailed.");
    let steps = tree["steps"].as_array().unwrap();
    let kinds: Vec<String> = steps
        .iter()
        .map(|s| match s["body"]["kind"].as_str().unwrap() {
            "model_turn" => "model".to_string(),
            _ => s["body"]["call"]["tool"].as_str().unwrap().to_string(),
        })
        .collect();
    assert_eq!(kinds, ["model", "write_file", "send_mail", "model"]);
    let info = &steps[0]["body"]["info"];
    assert_eq!(info["provider"], "openai");
    assert_eq!(info["model"], "test-model-v1");
    assert_eq!(info["stop_reason"], "tool_use");
    assert_eq!(info["provider_stop_reason"], "tool_calls");
    assert_eq!(info["attempts"], 2);
    assert_eq!(info["usage"]["input_tokens"], 1200);
    let ids: Vec<&str> = info["provider_call_ids"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"call_w1") && ids.contains(&"call_m1"));
    assert_eq!(steps[2]["approval"]["status"], "approved");
    assert_eq!(
        tree["usage"],
        serde_json::json!({"input_tokens": 2550, "output_tokens": 39, "turns": 2})
    );
    // The raw response of each turn is an artifact of its step.
    for i in [0, 3] {
        let raw = &steps[i]["artifacts"][0];
        assert_eq!(raw["id"], steps[i]["body"]["info"]["raw_artifact"]);
        assert_eq!(raw["media_type"], "text/event-stream");
    }

    // The operator views show what the request and the session cost.
    let show = ok(&d, false, &["runtime", "requests", "show", req]);
    assert!(show.contains("tokens 2,550 in / 39 out"), "{show}");
    assert!(
        show.contains("calls write_file, send_mail · tokens 1,200 in / 30 out"),
        "{show}"
    );
    let session = ok(&d, false, &["runtime", "sessions", "show", "s1"]);
    assert!(session.contains("tokens 2,550 in / 39 out"), "{session}");
    assert!(session.contains("TOKENS IN/OUT"), "{session}");
    assert!(session.contains("2,550/39"), "{session}");
    let session = json(&d, &["runtime", "sessions", "show", "s1"]);
    assert_eq!(session["usage"]["input_tokens"], 2550);
    assert_eq!(session["request_usage"][req]["output_tokens"], 39);

    // The key is nowhere: the store's files (the raw responses included), the
    // events, an export.
    let stored = files_under(&d.root.join(".agent-harness"));
    assert!(
        stored
            .iter()
            .any(|(p, b)| p.to_string_lossy().ends_with("model-turn-0.sse")
                && holds(b, "chatcmpl-fake0001")),
        "the raw stream is kept"
    );
    for (path, bytes) in &stored {
        assert!(!holds(bytes, KEY), "{} holds the key", path.display());
    }
    let events = ok(&d, false, &["runtime", "events", "--json"]);
    assert!(!events.contains(KEY));
    let pkg = d.root.join("evidence");
    ok(
        &d,
        false,
        &[
            "runtime",
            "export",
            "request",
            "--session",
            "s1",
            "--request",
            req,
            "--artifact-contents",
            "--out",
            pkg.to_str().unwrap(),
        ],
    );
    let exported = files_under(&pkg);
    assert!(exported.len() > 2, "{exported:?}");
    for (path, bytes) in &exported {
        assert!(!holds(bytes, KEY), "{} holds the key", path.display());
    }
}

#[test]
fn a_refused_call_fails_the_run_with_the_providers_message_and_what_to_do() {
    let server = FakeProvider::spawn();
    server.push(Reply::error(
        404,
        openai::error_body(
            "The model `test-model` does not exist or you do not have access to it.",
            "invalid_request_error",
        ),
    ));
    let d = workspace(&server);
    let (code, stdout, stderr) = cli(&d, true, &["run", "--agent", "helper", "hello"]);
    assert_eq!(code, 1, "--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(
        stdout.contains(
            "model `local` at http://127.0.0.1:",
        ) && stdout.contains(
            "refused the request (HTTP 404): The model `test-model` does not exist or you do not \
             have access to it. (invalid_request_error)"
        ),
        "{stdout}"
    );
    assert_eq!(server.received().len(), 1, "not retried");

    // Without the key in the environment, the run says which variable to set.
    let (code, stdout, stderr) = cli(&d, false, &["run", "--agent", "helper", "hello"]);
    assert_ne!(code, 0);
    assert!(
        format!("{stdout}{stderr}")
            .contains("the environment variable LOCAL_LLM_KEY (its `api_key_env`) is not set"),
        "--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert_eq!(server.received().len(), 1, "nothing sent without a key");
}

/// `agent-harness run` with its stdout on a pseudo-terminal: what it printed, each
/// piece with the time it was read.
fn run_on_a_terminal(d: &Demo, args: &[&str]) -> Vec<(Instant, String)> {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut c = Command::new(BIN);
    c.args(args).arg("--workspace").arg(&d.root);
    c.env("NO_COLOR", "1").env("LOCAL_LLM_KEY", KEY);
    c.stdin(Stdio::null())
        .stdout(Stdio::from(slave))
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    // The child holds the only copy of the terminal's slave side now: reading ends
    // (EIO) once it exits.
    drop(c);
    let mut master = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).replace('\r', ""),
            )),
        }
    }
    assert!(child.wait().unwrap().success(), "{out:?}");
    out
}

#[test]
fn run_shows_the_answer_as_it_streams_on_a_terminal() {
    let server = FakeProvider::spawn();
    let mut turn = openai::Turn::new("test-model");
    for piece in ["alpha ", "beta ", "gamma ", "delta ", "epsilon"] {
        turn = turn.text(piece);
    }
    server.push(
        turn.finish("stop")
            .usage(40, 5)
            .reply()
            .paced(Duration::from_millis(150)),
    );
    let d = workspace(&server);
    let out = run_on_a_terminal(&d, &["run", "--agent", "helper", "greet"]);
    let all: String = out.iter().map(|(_, s)| s.as_str()).collect();
    let lines: Vec<&str> = all.lines().collect();
    let live = lines
        .iter()
        .position(|l| l.contains("▸ helper: alpha beta gamma delta epsilon"))
        .unwrap_or_else(|| panic!("no live line in:\n{all}"));
    let turn = lines
        .iter()
        .position(|l| l.contains("model.turn"))
        .unwrap_or_else(|| panic!("no model.turn line in:\n{all}"));
    assert!(
        live < turn,
        "the pieces come before the turn's event:\n{all}"
    );
    // Live: the first piece was on screen while the model was still streaming.
    let seen = |text: &str| {
        let mut acc = String::new();
        out.iter()
            .find(|(_, s)| {
                acc.push_str(s);
                acc.contains(text)
            })
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("`{text}` never shown:\n{all}"))
    };
    let (first, recorded) = (seen("alpha"), seen("model.turn"));
    assert!(
        recorded.duration_since(first) >= Duration::from_millis(400),
        "alpha shown only {:?} before the turn was recorded:\n{all}",
        recorded.duration_since(first)
    );
}

#[test]
fn serve_killed_mid_stream_asks_again_and_records_one_whole_turn() {
    let server = FakeProvider::spawn();
    let mut slow = openai::Turn::new("test-model");
    for i in 0..200 {
        slow = slow.text(&format!("first-try-{i} "));
    }
    server.push(slow.finish("stop").reply().paced(Duration::from_millis(20)));
    server.push(
        openai::Turn::new("test-model")
            .text("the second try")
            .finish("stop")
            .usage(10, 3)
            .reply(),
    );
    let d = workspace(&server);
    let h = harness_engine::Harness::open(&d.root).unwrap();
    let serve = || {
        Command::new(BIN)
            .args(["serve", "--workspace"])
            .arg(&d.root)
            .env("LOCAL_LLM_KEY", KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let first = serve();
    worker::wait_for_holder(&h, first.id());
    let req = ok(&d, false, &["request", "--agent", "helper", "go"]);
    let req = req.split_whitespace().next().unwrap().to_string();
    // Kill it while the answer streams.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.received().is_empty() {
        assert!(Instant::now() < deadline, "the model was never called");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    worker::kill9(first);
    let tree = json(&d, &["runtime", "requests", "show", &req]);
    assert_eq!(tree["request"]["status"], "running");
    assert_eq!(
        tree["steps"],
        serde_json::json!([]),
        "no half turn recorded"
    );

    let second = serve();
    worker::wait_for_holder(&h, second.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    let tree = loop {
        let tree = json(&d, &["runtime", "requests", "show", &req]);
        if tree["request"]["status"] == "completed" {
            break tree;
        }
        assert!(Instant::now() < deadline, "never completed: {tree:#}");
        std::thread::sleep(Duration::from_millis(50));
    };
    worker::terminate(second);
    assert_eq!(tree["request"]["output"], "the second try");
    assert_eq!(tree["request"]["attempt"], 2);
    let steps = tree["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "one whole turn: {tree:#}");
    assert_eq!(steps[0]["body"]["turn"]["text"], "the second try");
    assert_eq!(server.received().len(), 2, "asked again after the restart");
    assert_eq!(
        server.abandoned(),
        1,
        "the first stream was cut by the kill"
    );
    let events = ok(
        &d,
        false,
        &["runtime", "events", "--request", &req, "--json"],
    );
    let turns = events
        .lines()
        .filter(|l| l.contains("\"kind\":\"model.turn\""))
        .count();
    assert_eq!(turns, 1, "{events}");
    assert!(!events.contains("first-try"), "{events}");
}

#[test]
fn init_templates_write_workspaces_that_run_on_their_provider() {
    use harness_fake_provider::anthropic;
    for (template, default_url, key_env) in [
        (
            "openai",
            "https://api.openai.com/v1",
            Some("OPENAI_API_KEY"),
        ),
        (
            "anthropic",
            "https://api.anthropic.com",
            Some("ANTHROPIC_API_KEY"),
        ),
        ("ollama", "http://localhost:11434/v1", None),
    ] {
        let server = FakeProvider::spawn();
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join(template);
        let out = Command::new(BIN)
            .args(["init", "--template", template])
            .arg(&root)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{template}: {out:?}");
        assert!(
            stdout.contains(&format!("created {template} workspace")),
            "{stdout}"
        );
        if let Some(var) = key_env {
            assert!(stdout.contains(&format!("export {var}=")), "{stdout}");
        }
        // Point the template's model at the local server, as a user points it at a proxy.
        let models = root.join("config/models.yaml");
        let text = std::fs::read_to_string(&models).unwrap();
        assert!(
            text.contains(&format!("base_url: {default_url}\n")),
            "{text}"
        );
        let url = match template {
            "anthropic" => server.base_url(),
            _ => server.openai_base_url(),
        };
        std::fs::write(&models, text.replace(default_url, &url)).unwrap();
        server.push(match template {
            "anthropic" => anthropic::Turn::new("claude-test", 25)
                .text(&["Notes ", "shipped."])
                .stop("end_turn", 4)
                .reply(),
            _ => openai::Turn::new("gpt-test")
                .text("Notes shipped.")
                .finish("stop")
                .usage(25, 4)
                .reply(),
        });
        let mut c = Command::new(BIN);
        c.args([
            "run",
            "--agent",
            "assistant",
            "ship the notes",
            "--workspace",
        ])
        .arg(&root)
        .env("NO_COLOR", "1")
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY");
        if let Some(var) = key_env {
            c.env(var, KEY);
        }
        let out = c.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{template}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("completed: Notes shipped."),
            "{template}: {stdout}"
        );
        let sent = &server.received()[0];
        match (template, key_env) {
            ("anthropic", _) => assert_eq!(sent.header("x-api-key"), Some(KEY)),
            (_, Some(_)) => assert_eq!(
                sent.header("authorization"),
                Some(format!("Bearer {KEY}").as_str())
            ),
            (_, None) => assert_eq!(sent.header("authorization"), None),
        }
        // The demo's agents, tools and system prompt, on the template's model.
        let body = sent.json();
        let tools: Vec<&str> = body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                t["name"]
                    .as_str()
                    .or(t["function"]["name"].as_str())
                    .unwrap()
            })
            .collect();
        assert_eq!(
            tools,
            ["send_mail", "write_artifact", "delegate", "load_skill"],
            "{template}: the agent's tools, then `load_skill` for its skill"
        );
    }
}

/// A provider's `Retry-After` holds every call of the model's rate limit; the views
/// (other processes) say which request waits for it and until when, from the
/// status the worker keeps beside the store, and health warns while it holds.
#[test]
fn a_call_held_by_a_rate_limit_shows_in_the_views() {
    let server = FakeProvider::spawn();
    server.push(
        Reply::error(429, openai::error_body("Rate limit reached", "requests"))
            .header("retry-after", "4"),
    );
    for _ in 0..2 {
        server.push(
            openai::Turn::new("test-model")
                .text("Done.")
                .finish("stop")
                .reply(),
        );
    }
    let d = Demo::new();
    let models = d.root.join("config/models.yaml");
    let text = std::fs::read_to_string(&models).unwrap().replace(
        "models:\n",
        &format!(
            "models:\n  open:\n    provider: openai\n    model: test-model\n    base_url: {}\n    \
             retry: {{initial_backoff: 5ms, max_backoff: 30s}}\n    rate_limit: {{requests_per_minute: 100}}\n",
            server.openai_base_url()
        ),
    );
    std::fs::write(models, text).unwrap();
    std::fs::write(
        d.root.join("config/agents/quick.yaml"),
        "name: quick\nmodel: open\n",
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = harness_engine::Harness::open(&d.root).unwrap();
    let worker = rt
        .block_on(h.start_worker(harness_engine::WorkerOptions::default()))
        .unwrap();
    let session = |s: &str| Some(harness_core::SessionId::parse(s).unwrap());
    let first = rt
        .block_on(h.request(session("s1"), "quick", "one"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.received().is_empty() {
        assert!(Instant::now() < deadline, "the provider was never called");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = rt
        .block_on(h.request(session("s2"), "quick", "two"))
        .unwrap();
    let shown = loop {
        let show = json(&d, &["runtime", "requests", "show", second.id.as_str()]);
        if show["waits_for"]["reason"] == "rate_limit" {
            break show;
        }
        assert!(
            Instant::now() < deadline,
            "requests show never said it waits: {show:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(shown["waits_for"]["rate_limit_key"], "open");
    assert_eq!(shown["waits_for"]["rate_limit"]["model"], "open");
    let text = ok(
        &d,
        false,
        &["runtime", "requests", "show", second.id.as_str()],
    );
    assert!(
        text.contains("waits for: the rate limit `open` of model `open`"),
        "{text}"
    );
    let overview = json(&d, &["runtime", "overview"]);
    assert!(
        overview["rate_limits"][0]["blocked_until"].is_i64(),
        "{:#}",
        overview["rate_limits"]
    );
    let (code, health, _) = cli(&d, false, &["runtime", "health", "--json"]);
    assert_eq!(
        code, 6,
        "health warns while a provider holds a key: {health}"
    );
    assert!(health.contains("asked to wait (Retry-After)"), "{health}");

    for id in [&first.id, &second.id] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while rt.block_on(h.get_request(id)).unwrap().status
            != harness_core::RequestStatus::Completed
        {
            assert!(Instant::now() < deadline, "{id} never completed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    rt.block_on(worker.stop()).unwrap();
}
