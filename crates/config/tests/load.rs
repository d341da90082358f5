//! `init` then `load`, and every kind of configuration error with its exact
//! `file:line:column: message` text.

use harness_config::{
    ApprovalPolicy, Builtin, ConfigError, ConfigErrors, Durability, Provider, RuntimeLimits, init,
    load,
};
use std::fs;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

/// A fresh demo workspace.
fn demo() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), false).unwrap();
    dir
}

fn write(dir: &TempDir, rel: &str, text: &str) {
    let path = dir.path().join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// The demo with `rel` replaced by `text`: the errors, one per line.
fn errors_with(rel: &str, text: &str) -> String {
    let dir = demo();
    write(&dir, rel, text);
    load(dir.path()).unwrap_err().to_string()
}

const WRITER: &str = "config/agents/writer.yaml";

#[test]
fn the_demo_workspace_loads() {
    let dir = demo();
    let ws = load(dir.path()).unwrap();
    assert!(ws.root.is_absolute());
    assert_eq!(ws.root, dir.path().canonicalize().unwrap());
    assert_eq!(ws.settings.name, "demo");
    let r = &ws.settings.runtime;
    let d = RuntimeLimits::default();
    assert_eq!(
        (
            r.max_concurrent_requests,
            r.queue_capacity,
            r.approval_ttl,
            r.stuck_after
        ),
        (
            d.max_concurrent_requests,
            d.queue_capacity,
            d.approval_ttl,
            d.stuck_after
        )
    );
    assert_eq!(
        (r.retention, r.max_input_bytes, r.max_inline_output_bytes),
        (d.retention, d.max_input_bytes, d.max_inline_output_bytes)
    );
    assert_eq!(
        (
            r.max_delegation_depth,
            r.max_delegation_fanout,
            r.max_attempts,
            r.stop_timeout
        ),
        (4, 16, 3, Duration::from_secs(30))
    );
    assert_eq!(
        (
            d.max_delegation_depth,
            d.max_delegation_fanout,
            d.max_attempts,
            d.stop_timeout
        ),
        (4, 16, 3, Duration::from_secs(30)),
        "the template spells out the defaults"
    );
    assert_eq!(ws.models["scripted"].provider, Provider::Scripted);
    assert_eq!(
        ws.agents.keys().collect::<Vec<_>>(),
        ["assistant", "researcher"]
    );
    let assistant = &ws.agents["assistant"];
    assert_eq!(assistant.tools, ["send_mail", "write_artifact", "delegate"]);
    assert_eq!(assistant.delegates, ["researcher"]);
    assert_eq!(assistant.max_steps, 20);
    assert_eq!(ws.agents["researcher"].max_steps, 50);
    let send_mail = &ws.tools["send_mail"];
    assert_eq!(send_mail.approval, ApprovalPolicy::Required);
    assert!(!send_mail.idempotent);
    assert_eq!(send_mail.timeout, Duration::from_secs(10));
    assert!(ws.tools["word_count"].idempotent);
    assert_eq!(ws.skills.keys().collect::<Vec<_>>(), ["release-notes"]);
    assert_eq!(ws.stores.sqlite.synchronous, Durability::Normal);
    assert_eq!(ws.store_dir(), ws.root.join(".agent-harness"));
    assert!(ws.mcp.servers.is_empty());
}

#[test]
fn builtins_are_always_present() {
    let ws = load(demo().path()).unwrap();
    for b in Builtin::ALL {
        let tool = &ws.tools[b.name()];
        assert_eq!(tool.builtin, Some(*b));
        assert_eq!(tool.command, None);
        assert_eq!(tool.approval, ApprovalPolicy::Never);
        assert_eq!(tool.timeout, Duration::from_secs(60));
        assert_eq!(tool.arguments["type"], "object");
    }
    assert!(ws.tools["read_file"].idempotent && ws.tools["list_files"].idempotent);
    assert!(!ws.tools["write_file"].idempotent && !ws.tools["delegate"].idempotent);
}

#[test]
fn init_refuses_an_existing_config_unless_forced() {
    let dir = demo();
    let err = init(dir.path(), false).unwrap_err().to_string();
    assert!(err.contains("already holds a workspace config"), "{err}");
    let written = init(dir.path(), true).unwrap();
    assert!(written.contains(&dir.path().join("config/tools.yaml")));
    assert!(written.contains(&dir.path().join(".gitignore")));
    assert_eq!(written.len(), 12);
}

#[cfg(unix)]
#[test]
fn init_makes_scripts_executable_and_they_run() {
    use std::os::unix::fs::PermissionsExt;
    let dir = demo();
    let script = dir.path().join("resources/tools/send_mail.sh");
    assert_eq!(
        fs::metadata(&script).unwrap().permissions().mode() & 0o777,
        0o755
    );
    // As the runtime runs them: in `work/`, the script reached through `{workspace}`.
    let work = dir.path().join("work");
    fs::create_dir_all(&work).unwrap();
    let out = std::process::Command::new("sh")
        .arg(&script)
        .args(["ops@example.com", "Hi there"])
        .env("AGENT_HARNESS_CALL_ID", "call-1")
        .current_dir(&work)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "queued mail to ops@example.com\n"
    );
    let log = fs::read_to_string(dir.path().join("work/outbox.log")).unwrap();
    assert!(
        log.ends_with(" call=call-1 to=ops@example.com subject=Hi there\n"),
        "{log}"
    );
    let out = std::process::Command::new("sh")
        .arg(dir.path().join("resources/tools/word_count.sh"))
        .arg("one two  three")
        .current_dir(&work)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3\n");
}

#[test]
fn a_missing_workspace_suggests_init() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = load(&missing).unwrap_err().to_string();
    let shown = missing.display();
    assert_eq!(
        err,
        format!(
            "no workspace at `{shown}`: the folder does not exist (create one with `agent-harness init {shown}`)"
        )
    );
    let err = load(dir.path()).unwrap_err().to_string();
    let shown = dir.path().display();
    assert_eq!(
        err,
        format!(
            "no workspace at `{shown}`: `config/workspace.yaml` is missing (create one with `agent-harness init {shown}`)"
        )
    );
}

#[test]
fn unknown_tool_with_did_you_mean() {
    let text = "\
name: writer
model: scripted
description: >
  Writes mails.
max_steps: 5
tools:
  - read_file
  - sned_mail
  - frobnicate
";
    assert_eq!(
        errors_with(WRITER, text),
        "config/agents/writer.yaml:8:5: unknown tool `sned_mail` (did you mean `send_mail`?)\n\
         config/agents/writer.yaml:9:5: unknown tool `frobnicate`"
    );
    let flow = "name: writer\nmodel: scripted\ntools: [read_file, sned_mail]\n";
    assert_eq!(
        errors_with(WRITER, flow),
        "config/agents/writer.yaml:3:20: unknown tool `sned_mail` (did you mean `send_mail`?)"
    );
}

#[test]
fn unknown_model() {
    assert_eq!(
        errors_with(WRITER, "name: writer\nmodel: scriptd\n"),
        "config/agents/writer.yaml:2:8: unknown model `scriptd` (did you mean `scripted`?)"
    );
    assert_eq!(
        errors_with(WRITER, "name: writer\nmodel:   \"claude\"  # quoted\n"),
        "config/agents/writer.yaml:2:10: unknown model `claude`"
    );
}

#[test]
fn unknown_key_in_an_agent_file() {
    assert_eq!(
        errors_with(
            WRITER,
            "name: writer\nmodel: scripted\n\ntoolz: [read_file]\n"
        ),
        "config/agents/writer.yaml:4:1: unknown field `toolz`, expected one of `name`, \
         `description`, `model`, `system_prompt`, `tools`, `skills`, `delegates`, `max_steps`, `context`, \
         `max_concurrent`, `uses` (did you mean `tools`?)"
    );
}

#[test]
fn malformed_yaml() {
    assert_eq!(
        errors_with(WRITER, "name: writer\nmodel: scripted\ntools: [read_file\n"),
        "config/agents/writer.yaml:3:8: unclosed bracket '['"
    );
    assert_eq!(
        errors_with(WRITER, "name: writer\nmodel: scripted\n  tools: x\n"),
        "config/agents/writer.yaml:3:8: mapping values are not allowed in this context"
    );
}

#[test]
fn a_duplicate_key_is_reported_where_it_is_written() {
    let text = "name: writer\nmodel: scripted\ntools: [read_file]\nmodel: other\n";
    assert_eq!(
        errors_with(WRITER, text),
        "config/agents/writer.yaml:4:1: duplicate key `model`: a key may appear only once in a mapping"
    );
    let nested = "\
models:
  scripted:
    provider: scripted
    script: resources/scripts/demo.yaml
    provider: openai
";
    assert_eq!(
        errors_with(MODELS, nested),
        "config/models.yaml:5:5: models.scripted: duplicate key `provider`: a key may appear only once in a mapping"
    );
}

#[test]
fn a_syntax_error_on_the_line_of_a_duplicate_key_is_still_reported() {
    let text = "name: writer\nmodel: scripted\nname: [writer\n";
    assert_eq!(
        errors_with(WRITER, text),
        "config/agents/writer.yaml:3:1: duplicate key `name`: a key may appear only once in a mapping\n\
         config/agents/writer.yaml:3:7: unclosed bracket '['"
    );
}

#[test]
fn a_bad_duration_points_at_its_value() {
    let text = "\
tools:
  send_mail:
    command: [\"true\"]
    timeout:   \"soon\"  # not a duration
";
    assert_eq!(
        errors_with(TOOLS, text),
        "config/tools.yaml:4:16: tools.send_mail.timeout: invalid duration `soon`: expected number at 0 (e.g. 30s, 10m, 24h, 30d)"
    );
}

#[test]
fn an_error_in_a_nested_list_points_at_the_element() {
    let flow = "name: writer\nmodel: scripted\ntools: [read_file, {name: x}]\n";
    assert_eq!(
        errors_with(WRITER, flow),
        "config/agents/writer.yaml:3:20: tools[1]: expected a string"
    );
    let block = "\
tools:
  lister:
    command:
      - ls
      - [-l]
";
    assert_eq!(
        errors_with(TOOLS, block),
        "config/tools.yaml:5:9: tools.lister.command[1]: expected a string"
    );
    let multi_line = "\
tools:
  greet:
    command:
      - printf
      - |
        hello
        {nmae}
    arguments:
      type: object
      properties: { name: { type: string } }
  send_mail:
    command: [\"true\"]
";
    assert_eq!(
        errors_with(TOOLS, multi_line),
        "config/tools.yaml:7:9: unknown placeholder `{nmae}` in the command of `greet` (did you mean `name`?)"
    );
}

#[test]
fn agent_name_must_match_the_file() {
    assert_eq!(
        errors_with(WRITER, "name: author\nmodel: scripted\n"),
        "config/agents/writer.yaml:1:7: agent name `author` does not match its file name (expected `writer`)"
    );
}

#[test]
fn delegation_must_be_consistent() {
    let no_delegates = "name: writer\nmodel: scripted\ntools: [read_file, delegate]\n";
    assert_eq!(
        errors_with(WRITER, no_delegates),
        "config/agents/writer.yaml:3:20: `delegate` is in `tools` but `delegates` is empty; \
         list the agents it may delegate to"
    );
    let no_tool = "name: writer\nmodel: scripted\ndelegates: [researcher]\n";
    assert_eq!(
        errors_with(WRITER, no_tool),
        "config/agents/writer.yaml:3:1: `delegates` is set but the `delegate` tool is not in `tools`"
    );
    let unknown = "name: writer\nmodel: scripted\ntools: [delegate]\ndelegates:\n  - researcher\n  - reseacher\n";
    assert_eq!(
        errors_with(WRITER, unknown),
        "config/agents/writer.yaml:6:5: unknown delegate agent `reseacher` (did you mean `researcher`?)"
    );
}

fn agent(dir: &TempDir, name: &str, delegates: &str) {
    let text =
        format!("name: {name}\nmodel: scripted\ntools: [delegate]\ndelegates: {delegates}\n");
    write(dir, &format!("config/agents/{name}.yaml"), &text);
}

#[test]
fn an_agent_delegating_to_itself_is_a_cycle() {
    let dir = demo();
    agent(&dir, "writer", "[researcher, writer]");
    assert_eq!(
        load(dir.path()).unwrap_err().to_string(),
        "config/agents/writer.yaml:4:25: delegation cycle: writer → writer; a request could \
         delegate forever (remove one of these delegates)"
    );
}

#[test]
fn delegation_cycles_are_named_where_they_close() {
    let dir = demo();
    agent(&dir, "a", "[b]");
    agent(&dir, "b", "\n  - researcher\n  - a");
    let err = load(dir.path()).unwrap_err().to_string();
    assert_eq!(
        err,
        "config/agents/b.yaml:6:5: delegation cycle: a → b → a; a request could delegate \
         forever (remove one of these delegates)"
    );
    // The demo's assistant joins a longer cycle, closed by the last agent the walk meets.
    let dir = demo();
    agent(&dir, "c", "[researcher]");
    write(
        &dir,
        "config/agents/researcher.yaml",
        "name: researcher\nmodel: scripted\ntools: [delegate]\ndelegates: [assistant]\n",
    );
    let assistant = fs::read_to_string(dir.path().join("config/agents/assistant.yaml")).unwrap();
    write(
        &dir,
        "config/agents/assistant.yaml",
        &assistant.replace("delegates: [researcher]", "delegates: [c]"),
    );
    assert_eq!(
        load(dir.path()).unwrap_err().to_string(),
        "config/agents/researcher.yaml:4:13: delegation cycle: assistant → c → researcher → \
         assistant; a request could delegate forever (remove one of these delegates)"
    );
}

#[test]
fn max_steps_must_be_positive() {
    assert_eq!(
        errors_with(WRITER, "name: writer\nmodel: scripted\nmax_steps: 0\n"),
        "config/agents/writer.yaml:3:12: `max_steps` must be at least 1"
    );
}

#[test]
fn runtime_limits_must_be_positive() {
    let text = "name: demo\nruntime:\n  max_concurrent_requests: 0\n  approval_ttl: 0s\n";
    assert_eq!(
        errors_with("config/workspace.yaml", text),
        "config/workspace.yaml:3:28: `runtime.max_concurrent_requests` must be greater than 0\n\
         config/workspace.yaml:4:17: `runtime.approval_ttl` must be greater than 0"
    );
    let text = "name: demo\nruntime:\n  session_strategy: enqueue\n  retention: forever\n";
    assert_eq!(
        errors_with("config/workspace.yaml", text),
        "config/workspace.yaml:4:14: runtime.retention: invalid duration `forever`: \
         expected number at 0 (e.g. 30s, 10m, 24h, 30d)"
    );
}

#[test]
fn delegation_and_recovery_limits() {
    let text = "\
name: demo
runtime:
  max_delegation_depth: 0
  max_delegation_fanout: 0
  max_attempts: 0
  stop_timeout: 0s
";
    assert_eq!(
        errors_with("config/workspace.yaml", text),
        "config/workspace.yaml:3:25: `runtime.max_delegation_depth` must be greater than 0 \
         (a root request is depth 0; to forbid delegation, remove the `delegate` tool from the agents)\n\
         config/workspace.yaml:4:26: `runtime.max_delegation_fanout` must be greater than 0 \
         (a root request is depth 0; to forbid delegation, remove the `delegate` tool from the agents)\n\
         config/workspace.yaml:5:17: `runtime.max_attempts` must be greater than 0 \
         (it counts the first start: 1 never retries after a crash)"
    );
    let dir = demo();
    let text = "name: demo\nruntime:\n  max_delegation_depth: 1\n  max_delegation_fanout: 2\n  \
                max_attempts: 1\n  stop_timeout: 0s\n";
    write(&dir, "config/workspace.yaml", text);
    let r = load(dir.path()).unwrap().settings.runtime;
    assert_eq!(
        (
            r.max_delegation_depth,
            r.max_delegation_fanout,
            r.max_attempts,
            r.stop_timeout
        ),
        (1, 2, 1, Duration::ZERO)
    );
    assert_eq!(
        errors_with(
            "config/workspace.yaml",
            "name: demo\nruntime:\n  stop_timeout: 2 minutes later\n"
        ),
        "config/workspace.yaml:3:17: runtime.stop_timeout: invalid duration `2 minutes later`: \
         expected number at 10 (e.g. 30s, 10m, 24h, 30d)"
    );
}

const MODELS: &str = "config/models.yaml";

#[test]
fn model_requirements() {
    let text = "\
models:
  scripted:
    provider: scripted
    script: resources/scripts/demo.yaml
  bare:
    provider: scripted
  lost:
    provider: scripted
    script: resources/scripts/lost.yaml
  gpt:
    provider: openai
    model: gpt-4o
  claude:
    provider: anthropic
    api_key_env: ANTHROPIC_API_KEY
";
    assert_eq!(
        errors_with(MODELS, text),
        "config/models.yaml:5:3: scripted model `bare` needs `script` (the script file, relative to the workspace root)\n\
         config/models.yaml:9:13: script file `resources/scripts/lost.yaml` not found\n\
         config/models.yaml:10:3: openai model `gpt` needs `api_key_env` (the name of the environment variable holding the API key)\n\
         config/models.yaml:13:3: anthropic model `claude` needs `model` (the provider's model name)"
    );
}

#[test]
fn http_model_settings() {
    let text = "\
models:
  scripted:
    provider: scripted
    script: resources/scripts/demo.yaml
  local:
    provider: openai
    model: llama3.2
    base_url: http://localhost:11434/v1
  claude:
    provider: anthropic
    model: claude-sonnet-4
    api_key_env: ANTHROPIC_API_KEY
    max_tokens: 2000
    thinking_budget: 4000
  gpt:
    provider: openai
    model: gpt-4o
    api_key_env: OPENAI_API_KEY
    base_url: localhost:8080
  slow:
    provider: openai
    model: gpt-4o
    api_key_env: OPENAI_API_KEY
    read_timeout: 0s
    retry: {max_retries: 5, max_backof: 1s}
";
    assert_eq!(
        errors_with(MODELS, text),
        "config/models.yaml:25:29: models.slow.retry: unknown field `max_backof`, expected one of \
         `max_retries`, `initial_backoff`, `max_backoff` (did you mean `max_backoff`?)"
    );
    assert_eq!(
        errors_with(MODELS, &text.replace(", max_backof: 1s", "")),
        "config/models.yaml:14:22: `thinking_budget` must be at least 1024 and less than `max_tokens` (2000)\n\
         config/models.yaml:19:15: `base_url` must start with http:// or https:// (got `localhost:8080`)\n\
         config/models.yaml:24:19: `read_timeout` must be greater than 0"
    );
    let fixed = text
        .replace(", max_backof: 1s", "")
        .replace("max_tokens: 2000", "max_tokens: 8000")
        .replace("localhost:8080", "http://localhost:8080/v1")
        .replace("read_timeout: 0s", "read_timeout: 30s");
    let dir = demo();
    write(&dir, MODELS, &fixed);
    let ws = load(dir.path()).unwrap();
    let local = &ws.models["local"];
    assert_eq!(local.api_key_env, None, "a local server needs no key");
    assert_eq!(local.connect_timeout, std::time::Duration::from_secs(10));
    assert_eq!(local.retry.max_retries, 3);
    assert!(local.keep_raw_responses);
    assert_eq!(ws.models["slow"].retry.max_retries, 5);
}

#[test]
fn rate_limits_are_positive_for_http_models_and_shared_keys_agree() {
    let text = "\
models:
  scripted:
    provider: scripted
    script: resources/scripts/demo.yaml
    rate_limit: {requests_per_minute: 10}
  fast:
    provider: openai
    model: gpt-4o-mini
    base_url: http://localhost:8080/v1
    rate_limit: {key: account, requests_per_minute: 0}
  big:
    provider: openai
    model: gpt-4o
    base_url: http://localhost:8080/v1
    rate_limit:
      key: account
      requests_per_minute: 60
      tokens_per_minute: 0
  other:
    provider: openai
    model: gpt-4o
    base_url: http://localhost:8080/v1
    rate_limit: {key: account, requests_per_minute: 60, tokens_per_mnute: 1000}
";
    assert_eq!(
        errors_with(MODELS, text),
        "config/models.yaml:23:57: models.other.rate_limit: unknown field `tokens_per_mnute`, \
         expected one of `key`, `requests_per_minute`, `tokens_per_minute` (did you mean `tokens_per_minute`?)"
    );
    assert_eq!(
        errors_with(MODELS, &text.replace(", tokens_per_mnute: 1000", "")),
        "config/models.yaml:5:5: `rate_limit` is only for HTTP providers (`openai`, `anthropic`)\n\
         config/models.yaml:10:53: `rate_limit.requests_per_minute` must be at least 1 (leave it out for no limit)\n\
         config/models.yaml:18:26: `rate_limit.tokens_per_minute` must be at least 1 (leave it out for no limit)"
    );
    // Each model's budget is sound alone, but two models on one key disagree.
    let shared = text
        .replace("    rate_limit: {requests_per_minute: 10}\n", "")
        .replace("requests_per_minute: 0}", "requests_per_minute: 60}")
        .replace("tokens_per_minute: 0", "tokens_per_minute: 100000")
        .replace(", tokens_per_mnute: 1000", "");
    assert_eq!(
        errors_with(MODELS, &shared),
        "config/models.yaml:9:5: model `fast` shares rate limit `account` with model `big` but not its \
         budget (requests_per_minute 60, tokens_per_minute unset here, requests_per_minute 60, \
         tokens_per_minute 100000 there); set the same numbers on both\n\
         config/models.yaml:22:5: model `other` shares rate limit `account` with model `big` but not its \
         budget (requests_per_minute 60, tokens_per_minute unset here, requests_per_minute 60, \
         tokens_per_minute 100000 there); set the same numbers on both"
    );
    let fixed = shared.replace(
        "requests_per_minute: 60}",
        "requests_per_minute: 60, tokens_per_minute: 100000}",
    );
    let dir = demo();
    write(&dir, MODELS, &fixed);
    let ws = load(dir.path()).unwrap();
    let big = &ws.models["big"];
    assert_eq!(big.rate_limit_key("big"), "account");
    let r = big.rate_limit.as_ref().unwrap();
    assert_eq!(
        (r.requests_per_minute, r.tokens_per_minute),
        (Some(60), Some(100_000))
    );
    assert_eq!(ws.models["scripted"].rate_limit_key("scripted"), "scripted");
}

#[test]
fn the_context_budget_is_one_of_tokens_or_bytes() {
    assert_eq!(
        errors_with(
            WRITER,
            "name: writer\nmodel: scripted\ncontext:\n  max_tokens: 1000\n  max_bytes: 4000\n"
        ),
        "config/agents/writer.yaml:3:1: set one of `context.max_tokens` and `context.max_bytes`, not both"
    );
    let dir = demo();
    write(
        &dir,
        WRITER,
        "name: writer\nmodel: scripted\ncontext: {max_tokens: 1000}\n",
    );
    let ws = load(dir.path()).unwrap();
    assert_eq!(ws.agents["writer"].context.limit_bytes(), 4000);
    assert_eq!(
        ws.agents["assistant"].context.limit_bytes(),
        400_000,
        "the default"
    );
}

#[test]
fn unknown_provider_suggests() {
    assert_eq!(
        errors_with(MODELS, "models:\n  scripted:\n    provider: scriptd\n"),
        "config/models.yaml:3:15: models.scripted.provider: unknown variant `scriptd`, \
         expected one of `scripted`, `openai`, `anthropic` (did you mean `scripted`?)"
    );
}

const TOOLS: &str = "config/tools.yaml";

#[test]
fn tool_definitions_are_checked() {
    let text = r#"tools:
  both:
    builtin: read_file
    command: ["true"]
  neither:
    description: nothing to run
  empty:
    command: []
  mail:
    command: ["sh", "mail.sh", "{to}", "--subject={subjet}", "${HOME}"]
    arguments:
      type: object
      properties:
        to: { type: string }
        subject: { type: string }
  stringly:
    command: ["echo", "{x}"]
    arguments:
      type: string
  read_file:
    command: ["cat"]
  write_file:
    builtin: read_file
  bad name:
    builtin: read_file
  slow:
    builtin: list_files
    timeout: 0s
    arguments: { type: object }
  send_mail:
    command: ["true"]
"#;
    assert_eq!(
        errors_with(TOOLS, text),
        "config/tools.yaml:2:3: tool `both` sets both `builtin` and `command`; set exactly one\n\
         config/tools.yaml:5:3: tool `neither` needs `command` (a program to run) or `builtin` (an alias of a built-in tool)\n\
         config/tools.yaml:8:5: tool `empty` has an empty `command`; give the program and its arguments, e.g. [\"sh\", \"resources/tools/x.sh\"]\n\
         config/tools.yaml:10:51: unknown placeholder `{subjet}` in the command of `mail` (did you mean `subject`?)\n\
         config/tools.yaml:17:23: unknown placeholder `{x}` in the command of `stringly`; declare `x` under `arguments.properties`\n\
         config/tools.yaml:19:13: the `arguments` schema of `stringly` must have `type: object` (found `string`)\n\
         config/tools.yaml:20:3: `read_file` is a built-in tool; give the command tool another name\n\
         config/tools.yaml:23:14: `write_file` is a built-in tool; its `builtin` must be `write_file` or omitted\n\
         config/tools.yaml:24:3: tool name `bad name` must be 1-64 letters, digits, `_` or `-`\n\
         config/tools.yaml:28:14: the `timeout` of `slow` must be greater than 0\n\
         config/tools.yaml:29:5: `arguments` cannot be set on `slow`: it is the built-in tool `list_files`"
    );
}

#[test]
fn placeholders_inside_a_shell_script_are_refused() {
    let text = r#"tools:
  save:
    command: ["sh", "-c", "echo {text} > out"]
    arguments:
      type: object
      properties: { text: { type: string } }
  send_mail:
    command: ["true"]
"#;
    assert_eq!(
        errors_with(TOOLS, text),
        "config/tools.yaml:3:33: `{text}` is inside the shell script of tool `save` (`sh -c`): \
         an argument like `x; rm -rf ~` would run as shell commands. Pass values as arguments \
         after the code instead: write \"$1\" in the code and append \"sh\", \"{text}\" to the \
         command, e.g. [\"sh\", \"-c\", \"echo \\\"$1\\\" > out\", \"sh\", \"{text}\"]. Or set \
         `allow_shell_placeholders: true` on the tool to accept that risk."
    );
}

#[test]
fn every_way_of_running_inline_code_is_checked() {
    let text = r#"tools:
  combined:
    command: [/bin/bash, -ec, 'grep -- "{pattern}" {file}']
    arguments: { type: object, properties: { pattern: {}, file: {} } }
  via_env:
    command: [env, LANG=C, sh, -c, "wc -w <<< {text}"]
    arguments: { type: object, properties: { text: {} } }
  block:
    command:
      - zsh
      - -c
      - |
        cd work
        cat {file}
    arguments: { type: object, properties: { file: {} } }
  python:
    command: [python3, -c, "print('{text}')"]
    arguments: { type: object, properties: { text: {} } }
  node:
    command: [node, -e, "console.log({n} * 2)"]
    arguments: { type: object, properties: { n: {} } }
  perl:
    command: [perl, -ne, "print if /{re}/", "{file}"]
    arguments: { type: object, properties: { re: {}, file: {} } }
  send_mail:
    command: ["true"]
"#;
    let err = errors_with(TOOLS, text);
    let heads: Vec<&str> = err
        .lines()
        .map(|l| l.split(": an argument").next().unwrap())
        .collect();
    assert_eq!(
        heads,
        [
            "config/tools.yaml:3:41: `{pattern}`, `{file}` are inside the shell script of tool `combined` (`bash -ec`)",
            "config/tools.yaml:6:47: `{text}` is inside the shell script of tool `via_env` (`sh -c`)",
            "config/tools.yaml:14:13: `{file}` is inside the shell script of tool `block` (`zsh -c`)",
            "config/tools.yaml:17:36: `{text}` is inside the inline code of tool `python` (`python3 -c`)",
            "config/tools.yaml:20:38: `{n}` is inside the inline code of tool `node` (`node -e`)",
            "config/tools.yaml:23:37: `{re}` is inside the inline code of tool `perl` (`perl -ne`)",
        ],
        "{err}"
    );
    assert!(err.contains(
        "write \"$1\", \"$2\" in the code and append \"sh\", \"{pattern}\", \"{file}\" to the command"
    ));
    assert!(err.contains(
        "write sys.argv[1] in the code and append \"{text}\" to the command, \
         e.g. [\"python3\", \"-c\", \"import sys; print(sys.argv[1])\", \"{text}\"]"
    ));
    assert!(err.contains("write process.argv[1] in the code"));
    assert!(err.contains("write $ARGV[0] in the code"));
}

#[test]
fn the_safe_forms_and_the_opt_in_are_accepted() {
    let dir = demo();
    let text = r#"tools:
  save:
    command: ["sh", "-c", 'printf "%s" "$1" > "$2"', "sh", "{text}", "{file}"]
    arguments: { type: object, properties: { text: {}, file: {} } }
  grep:
    command: ["grep", "-n", "--", "{pattern}", "{file}"]
    arguments: { type: object, properties: { pattern: {}, file: {} } }
  script:
    command: ["sh", "resources/tools/x.sh", "{text}"]
    arguments: { type: object, properties: { text: {} } }
  braces:
    command: ["sh", "-c", 'echo "${HOME}"']
  risky:
    command: ["sh", "-c", "echo {text}"]
    arguments: { type: object, properties: { text: {} } }
    allow_shell_placeholders: true
  send_mail:
    command: ["true"]
"#;
    write(&dir, TOOLS, text);
    let ws = load(dir.path()).unwrap();
    assert!(ws.tools["risky"].allow_shell_placeholders);
    assert!(!ws.tools["save"].allow_shell_placeholders);
    assert_eq!(
        errors_with(
            TOOLS,
            "tools:\n  read_file:\n    allow_shell_placeholders: true\n  send_mail:\n    command: [\"true\"]\n"
        ),
        "config/tools.yaml:3:5: `allow_shell_placeholders` cannot be set on `read_file`: it is the built-in tool `read_file`"
    );
}

#[test]
fn the_workspace_placeholder_is_built_in_and_reserved() {
    let dir = demo();
    let demo_tools = fs::read_to_string(dir.path().join(TOOLS)).unwrap();
    let run = "  run:\n    command: [\"sh\", \"{workspace}/resources/tools/x.sh\"]\n";
    write(&dir, TOOLS, &format!("{demo_tools}\n{run}"));
    let ws = load(dir.path()).unwrap();
    assert_eq!(
        ws.tools["run"].command.as_deref(),
        Some(
            &[
                "sh".to_string(),
                "{workspace}/resources/tools/x.sh".to_string()
            ][..]
        )
    );
    let text = "tools:\n  run:\n    command: [\"ls\", \"{workspace}\"]\n    arguments:\n      type: object\n      properties:\n        workspace: { type: string }\n";
    // (The demo agents' tools are gone from this file: those errors follow.)
    assert_eq!(
        errors_with(TOOLS, text).lines().next().unwrap(),
        "config/tools.yaml:7:9: argument `workspace` of `run` clashes with the built-in `{workspace}` placeholder (the workspace folder); rename the argument"
    );
}

#[test]
fn builtins_can_be_overridden_and_aliased() {
    let dir = demo();
    let text = "\
tools:
  read_file:
    approval: required
    description: Read a note.
  write_file:
    builtin: write_file
    idempotent: true
    timeout: 5s
  mail_draft:
    builtin: write_file
    approval: required
  send_mail:
    command: [\"true\"]
";
    write(&dir, TOOLS, text);
    let ws = load(dir.path()).unwrap();
    let read = &ws.tools["read_file"];
    assert_eq!(read.approval, ApprovalPolicy::Required);
    assert!(read.idempotent, "an override keeps what it does not set");
    assert_eq!(read.description, "Read a note.");
    let write_file = &ws.tools["write_file"];
    assert!(write_file.idempotent);
    assert_eq!(write_file.timeout, Duration::from_secs(5));
    let draft = &ws.tools["mail_draft"];
    assert_eq!(draft.builtin, Some(Builtin::WriteFile));
    assert_eq!(draft.approval, ApprovalPolicy::Required);
    assert_eq!(draft.arguments, ws.tools["write_file"].arguments);
    assert!(!ws.tools.contains_key("word_count"));
}

#[test]
fn agents_may_use_aliases_and_lose_removed_tools() {
    let dir = demo();
    write(
        &dir,
        TOOLS,
        "tools:\n  mail_draft: { builtin: write_file }\n",
    );
    write(
        &dir,
        WRITER,
        "name: writer\nmodel: scripted\ntools: [mail_draft]\n",
    );
    let err = load(dir.path()).unwrap_err().to_string();
    // The demo's assistant uses `send_mail`, which this tools.yaml no longer defines.
    assert_eq!(
        err,
        "config/agents/assistant.yaml:10:9: unknown tool `send_mail`"
    );
}

#[test]
fn stores_yaml_is_checked() {
    assert_eq!(
        errors_with("config/stores.yaml", "mysql:\n  url: x\n"),
        "config/stores.yaml:1:1: unknown field `mysql`, expected one of `backend`, `sqlite`, `postgres`"
    );
    assert_eq!(
        errors_with("config/stores.yaml", "sqlite:\n  synchronous: extra\n"),
        "config/stores.yaml:2:16: sqlite.synchronous: unknown variant `extra`, expected `normal` or `full`"
    );
    assert_eq!(
        errors_with("config/stores.yaml", "backend: postgres\n"),
        "config/stores.yaml:1:10: `backend: postgres` needs a `postgres:` section with `url_env` \
         (the environment variable holding the database URL)"
    );
    let err = errors_with(
        "config/stores.yaml",
        "backend: postgres\npostgres:\n  url_env: postgres://u:hunter2@db/x\n  pool_size: 0\n  schema: Bad-Name\n  lease_secs: 2\n",
    );
    assert!(
        err.contains(
            "config/stores.yaml:3:12: `postgres.url_env` must name an environment variable"
        ),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "the URL is echoed: {err}");
    assert!(
        err.contains(
            "config/stores.yaml:4:14: `postgres.pool_size` must be between 1 and 1000, not 0"
        ),
        "{err}"
    );
    assert!(
        err.contains("config/stores.yaml:5:11: `postgres.schema` must be a plain lower-case name"),
        "{err}"
    );
    assert!(
        err.contains("config/stores.yaml:6:15: `postgres.lease_secs` must be between 5 and 3600"),
        "{err}"
    );
    let dir = demo();
    write(
        &dir,
        "config/stores.yaml",
        "backend: postgres\npostgres:\n  url_env: HARNESS_DB_URL\n",
    );
    let ws = load(dir.path()).unwrap();
    let pg = ws.stores.postgres.as_ref().unwrap();
    assert_eq!(ws.stores.backend, harness_config::StoreBackend::Postgres);
    assert_eq!(
        (pg.pool_size, pg.schema.as_str(), pg.lease_secs),
        (16, "agent_harness", 15)
    );
    assert!(ws.secret_env_names().contains("HARNESS_DB_URL"));
}

#[test]
fn secrets_the_workspace_references() {
    let dir = demo();
    let ws = load(dir.path()).unwrap();
    assert!(ws.secret_env_names().is_empty(), "the demo uses none");
    assert!(ws.literal_secrets().is_empty());

    let models = fs::read_to_string(dir.path().join("config/models.yaml")).unwrap();
    write(
        &dir,
        "config/models.yaml",
        &models.replace(
            "models:\n",
            "models:\n  gpt:\n    provider: openai\n    model: gpt-4o\n    api_key_env: OPENAI_API_KEY\n",
        ),
    );
    let tools = fs::read_to_string(dir.path().join("config/tools.yaml")).unwrap();
    write(
        &dir,
        "config/tools.yaml",
        &tools.replace(
            "    timeout: 10s\n",
            "    timeout: 10s\n    env:\n      DATABASE_URL: \"${DB_URL}\"\n      AUTH: \"Bearer ${SMTP_TOKEN}\"\n      \
             SMTP_PASSWORD: hunter2-literal\n      LOG: info\n",
        ),
    );
    write(
        &dir,
        "config/mcp.yaml",
        "servers:\n  gh:\n    command: gh-mcp\n    env: { GITHUB_TOKEN: \"${GH_TOKEN}\", API_KEY: k-literal-1, MODE: ro }\n  \
         remote:\n    url: https://mcp.example.com/mcp\n    headers: { Authorization: \"Bearer ${MCP_TOKEN}\", X-Api-Key: h-literal-2 }\n",
    );
    let ws = load(dir.path()).unwrap();
    let names: Vec<String> = ws.secret_env_names().into_iter().collect();
    assert_eq!(
        names,
        [
            "DB_URL",
            "GH_TOKEN",
            "MCP_TOKEN",
            "OPENAI_API_KEY",
            "SMTP_TOKEN"
        ],
        "api_key_env and every ${{VAR}} of tool and MCP env and headers, whatever the key"
    );
    let mut literals = ws.literal_secrets();
    literals.sort();
    assert_eq!(
        literals,
        ["h-literal-2", "hunter2-literal", "k-literal-1"],
        "literal values under secret keys; `LOG: info` and `MODE: ro` are not secrets"
    );
}

#[test]
fn mcp_servers_need_a_command_or_a_url() {
    let check = |text: &str| errors_with("config/mcp.yaml", text);
    assert_eq!(
        check("servers:\n  files:\n    command: \"\"\n"),
        "config/mcp.yaml:3:5: MCP server `files` has an empty `command`"
    );
    assert_eq!(
        check("servers:\n  files:\n    args: [x]\n"),
        "config/mcp.yaml:2:3: MCP server `files` needs `command` (a stdio server) or `url` (a streamable HTTP server)"
    );
    assert_eq!(
        check("servers:\n  files:\n    command: x\n    url: http://h/mcp\n"),
        "config/mcp.yaml:4:5: MCP server `files` sets both `command` and `url`; set one (stdio or HTTP)"
    );
    assert_eq!(
        check("servers:\n  web:\n    url: ftp://h/mcp\n"),
        "config/mcp.yaml:3:5: MCP server `web`: `url` must start with http:// or https://, not `ftp://h/mcp`"
    );
    assert_eq!(
        check("servers:\n  web:\n    url: http://h/mcp\n    args: [x]\n"),
        "config/mcp.yaml:4:5: MCP server `web`: `args` is for stdio servers (`command`), not `url`"
    );
    assert_eq!(
        check("servers:\n  a.b:\n    command: x\n    timeout: 0s\n"),
        "config/mcp.yaml:2:3: MCP server name `a.b` must be letters, digits, `_` or `-` (its tools are named `a.b.TOOL`)\n\
         config/mcp.yaml:4:5: `timeout` must be greater than 0"
    );
    assert_eq!(
        check("servers:\n  files:\n    command: x\n    tools:\n      write: { approval: maybe }\n"),
        "config/mcp.yaml:5:26: servers.files.tools.write.approval: unknown variant `maybe`, expected `required` or `never`"
    );
}

#[test]
fn mcp_policies_are_per_server_and_per_tool() {
    let dir = demo();
    write(
        &dir,
        "config/mcp.yaml",
        "servers:\n  files:\n    command: npx\n    args: [-y, server]\n    idempotent: true\n    timeout: 5s\n    \
         tools:\n      write_file: { approval: required, idempotent: false }\n",
    );
    let ws = load(dir.path()).unwrap();
    let files = &ws.mcp.servers["files"];
    assert_eq!(files.command.as_deref(), Some("npx"));
    assert_eq!(files.args, ["-y", "server"]);
    assert_eq!(files.timeout, std::time::Duration::from_secs(5));
    assert_eq!(files.policy("read_file"), (ApprovalPolicy::Never, true));
    assert_eq!(
        files.policy("write_file"),
        (ApprovalPolicy::Required, false)
    );
}

#[test]
fn agents_list_mcp_tools_of_known_servers() {
    let dir = demo();
    write(
        &dir,
        "config/mcp.yaml",
        "servers:\n  files:\n    command: npx\n",
    );
    write(
        &dir,
        WRITER,
        "name: writer\nmodel: scripted\ntools: [files.read_file, files.*]\n",
    );
    let ws = load(dir.path()).unwrap();
    assert_eq!(ws.agents["writer"].tools, ["files.read_file", "files.*"]);
    write(
        &dir,
        WRITER,
        "name: writer\nmodel: scripted\ntools: [file.read_file]\n",
    );
    assert_eq!(
        load(dir.path()).unwrap_err().to_string(),
        "config/agents/writer.yaml:3:9: unknown MCP server `file` in tool `file.read_file` (did you mean `files`?) \
         (servers are defined in config/mcp.yaml)"
    );
}

#[test]
fn missing_files_are_reported_together() {
    let dir = demo();
    fs::remove_file(dir.path().join(MODELS)).unwrap();
    fs::remove_dir_all(dir.path().join("config/agents")).unwrap();
    fs::remove_file(dir.path().join(TOOLS)).unwrap();
    fs::remove_file(dir.path().join("config/mcp.yaml")).unwrap();
    fs::remove_file(dir.path().join("config/stores.yaml")).unwrap();
    let ConfigErrors(errors) = load(dir.path()).unwrap_err();
    assert_eq!(
        errors,
        [
            ConfigError::file(MODELS, "file is missing (it is required)"),
            ConfigError::file(
                "config/agents",
                "no agents: add at least one `config/agents/NAME.yaml`"
            ),
        ]
    );
}

#[test]
fn optional_files_may_be_missing_or_only_comments() {
    let dir = demo();
    fs::remove_file(dir.path().join("config/stores.yaml")).unwrap();
    write(&dir, "config/mcp.yaml", "# nothing yet\n");
    fs::remove_dir_all(dir.path().join("resources/skills")).unwrap();
    let assistant = dir.path().join("config/agents/assistant.yaml");
    let text = fs::read_to_string(&assistant).unwrap();
    fs::write(&assistant, text.replace("skills: [release-notes]\n", "")).unwrap();
    let ws = load(dir.path()).unwrap();
    assert_eq!(ws.stores.sqlite.path, Path::new(".agent-harness"));
    assert!(ws.skills.is_empty());
}

#[test]
fn a_key_left_empty_reads_as_its_default() {
    let dir = demo();
    write(
        &dir,
        "config/workspace.yaml",
        "name: demo\nruntime:\n  # max_concurrent_requests: 2\n",
    );
    write(&dir, "config/mcp.yaml", "servers:\n");
    write(&dir, "config/stores.yaml", "sqlite:\n");
    write(
        &dir,
        WRITER,
        "name: writer\nmodel: scripted\ndescription:\ntools:\ndelegates:\n",
    );
    let ws = load(dir.path()).unwrap();
    assert_eq!(
        ws.settings.runtime.max_concurrent_requests,
        RuntimeLimits::default().max_concurrent_requests
    );
    assert!(ws.mcp.servers.is_empty());
    assert_eq!(ws.stores.sqlite.synchronous, Durability::Normal);
    let writer = &ws.agents["writer"];
    assert!(writer.tools.is_empty() && writer.delegates.is_empty());
    assert_eq!(writer.description, "");
}

#[test]
fn every_error_in_every_file_is_collected() {
    let dir = demo();
    write(
        &dir,
        WRITER,
        "name: writer\nmodel: nope\ntools: [sned_mail]\n",
    );
    write(&dir, "config/agents/other.yml", "name: other\n");
    write(
        &dir,
        "config/workspace.yaml",
        "name: demo\nruntime:\n  queue_capacity: 0\n",
    );
    let err = load(dir.path()).unwrap_err().to_string();
    assert_eq!(
        err,
        "config/workspace.yaml:3:19: `runtime.queue_capacity` must be greater than 0\n\
         config/agents/other.yml: agent files must end in `.yaml`; rename this file\n\
         config/agents/writer.yaml:2:8: unknown model `nope`\n\
         config/agents/writer.yaml:3:9: unknown tool `sned_mail` (did you mean `send_mail`?)"
    );
}

#[test]
fn a_broken_file_does_not_cascade() {
    let dir = demo();
    write(&dir, MODELS, "models: [\n");
    write(&dir, TOOLS, "tools:\n  x: 3\n");
    let ConfigErrors(errors) = load(dir.path()).unwrap_err();
    let files: Vec<_> = errors
        .iter()
        .map(|e| e.file.display().to_string())
        .collect();
    assert_eq!(files, [MODELS, TOOLS], "{errors:?}");
}

#[test]
fn errors_display_without_unknown_parts() {
    let e = ConfigError::file("config/models.yaml", "boom");
    assert_eq!(e.to_string(), "config/models.yaml: boom");
    let e = ConfigError::at("config/agents/writer.yaml", Some((7, 3)), "bad");
    assert_eq!(e.to_string(), "config/agents/writer.yaml:7:3: bad");
    let both = ConfigErrors(vec![e.clone(), e]);
    assert_eq!(both.to_string().lines().count(), 2);
}

#[test]
fn every_init_template_loads_with_its_agents_on_its_model() {
    for t in harness_config::Template::ALL {
        let dir = tempfile::tempdir().unwrap();
        harness_config::init_template(dir.path(), t, false).unwrap();
        let ws = load(dir.path()).unwrap_or_else(|e| panic!("{}: {e}", t.name()));
        for agent in ws.agents.values() {
            assert_eq!(agent.model, t.model(), "{}: {}", t.name(), agent.name);
        }
        let names: Vec<String> = ws.secret_env_names().into_iter().collect();
        assert_eq!(
            names,
            t.key_env()
                .map(String::from)
                .into_iter()
                .collect::<Vec<_>>(),
            "{}: the key's variable is a secret the worker redacts",
            t.name()
        );
    }
    assert_eq!(
        "gpt".parse::<harness_config::Template>().unwrap_err(),
        "unknown template `gpt`; one of: demo, openai, anthropic, ollama"
    );
}

#[test]
fn a_command_tool_schema_must_be_valid_json_schema() {
    let dir = demo();
    let tools = fs::read_to_string(dir.path().join(TOOLS)).unwrap();
    write(
        &dir,
        TOOLS,
        &format!(
            "{tools}  bad:\n    command: [echo, \"{{n}}\"]\n    arguments:\n      type: object\n      properties: {{ n: {{ type: integer, minimum: nope }} }}\n"
        ),
    );
    let e = load(dir.path()).unwrap_err().to_string();
    let line = fs::read_to_string(dir.path().join(TOOLS))
        .unwrap()
        .lines()
        .position(|l| l.starts_with("  bad:"))
        .unwrap()
        + 3;
    assert!(
        e.starts_with(&format!(
            "config/tools.yaml:{line}:5: the `arguments` schema of `bad`: invalid JSON Schema: "
        )),
        "{e}"
    );
}

#[test]
fn skills_are_read_with_their_front_matter() {
    let dir = demo();
    let ws = load(dir.path()).unwrap();
    let skill = &ws.skills["release-notes"];
    assert_eq!(
        skill.description,
        "Collect release notes and summarise them for operators."
    );
    assert_eq!(ws.agents["assistant"].skills, ["release-notes"]);
    const SKILL: &str = "resources/skills/release-notes/SKILL.md";
    assert_eq!(
        errors_with(SKILL, "# no front matter\n"),
        format!(
            "{SKILL}:1:1: a skill starts with front matter between `---` lines, with `name` and `description`"
        )
    );
    assert_eq!(
        errors_with(SKILL, "---\nname: notes\ndescription: \"\"\n---\nbody\n"),
        format!(
            "{SKILL}:2:7: skill name `notes` does not match its folder (expected `release-notes`)\n\
             {SKILL}:3:14: `description` must not be empty: it is what agents are told about the skill"
        )
    );
    assert_eq!(
        errors_with(SKILL, "---\nname: release-notes\n---\n"),
        format!("{SKILL}:2:1: missing field `description`")
    );
    assert_eq!(
        errors_with(
            WRITER,
            "name: writer\nmodel: scripted\nskills: [release-note]\n"
        ),
        "config/agents/writer.yaml:3:10: unknown skill `release-note` (did you mean `release-notes`?) \
         (skills are `resources/skills/NAME/SKILL.md`)"
    );
}

#[test]
fn limits_name_declared_resources_with_room() {
    let dir = demo();
    let ws_text = fs::read_to_string(dir.path().join("config/workspace.yaml")).unwrap();
    let tools_text = fs::read_to_string(dir.path().join("config/tools.yaml")).unwrap();
    let (ws_lines, tool_lines) = (ws_text.lines().count(), tools_text.lines().count());
    let with_tool = |tool: &str| format!("{tools_text}{tool}");
    write(
        &dir,
        "config/workspace.yaml",
        &format!("{ws_text}resources:\n  prod-db: 1\n  gpu: 0\n"),
    );
    write(
        &dir,
        "config/tools.yaml",
        &with_tool(
            "  deploy:\n    command: [\"true\"]\n    uses: [prod-db, prod_db]\n    max_concurrent: 0\n",
        ),
    );
    let err = load(dir.path()).unwrap_err().to_string();
    for want in [
        format!(
            "config/workspace.yaml:{}:8: resource `gpu` must allow at least 1 holder (its capacity is 0)",
            ws_lines + 3
        ),
        format!(
            "config/tools.yaml:{}:21: tool `deploy` uses resource `prod_db`, which `resources:` in \
             config/workspace.yaml does not declare (declared: gpu, prod-db)",
            tool_lines + 3
        ),
        format!(
            "config/tools.yaml:{}:21: the `max_concurrent` of `deploy` must be greater than 0 (remove it for no limit)",
            tool_lines + 4
        ),
    ] {
        assert!(err.contains(&want), "{want}\nnot in:\n{err}");
    }
    write(
        &dir,
        "config/workspace.yaml",
        &format!("{ws_text}resources:\n  prod-db: 1\n"),
    );
    write(
        &dir,
        "config/tools.yaml",
        &with_tool(
            "  deploy:\n    command: [\"true\"]\n    uses: [prod-db]\n    max_concurrent: 2\n",
        ),
    );
    let ws = load(dir.path()).unwrap();
    let limits = ws.tools["deploy"].concurrency_limits("deploy", &ws.settings.resources);
    assert_eq!(
        limits,
        vec![
            harness_core::Limit::resource("prod-db", 1),
            harness_core::Limit::tool("deploy", 2)
        ]
    );
}

#[test]
fn an_agent_s_limits_are_checked_and_listed() {
    let dir = demo();
    let ws_text = fs::read_to_string(dir.path().join("config/workspace.yaml")).unwrap();
    write(
        &dir,
        "config/workspace.yaml",
        &format!("{ws_text}resources:\n  gpu: 2\n"),
    );
    write(
        &dir,
        "config/agents/writer.yaml",
        "name: writer\nmodel: scripted\nmax_concurrent: 0\nuses: [gpus]\n",
    );
    let err = load(dir.path()).unwrap_err().to_string();
    for want in [
        "config/agents/writer.yaml:3:17: `max_concurrent` must be at least 1 (remove it for no limit)",
        "config/agents/writer.yaml:4:8: agent `writer` uses resource `gpus`, which `resources:` in \
         config/workspace.yaml does not declare (did you mean `gpu`?)",
    ] {
        assert!(err.contains(want), "{want}\nnot in:\n{err}");
    }
    write(
        &dir,
        "config/agents/writer.yaml",
        "name: writer\nmodel: scripted\nmax_concurrent: 3\nuses: [gpu]\n",
    );
    let ws = load(dir.path()).unwrap();
    assert_eq!(
        ws.agents["writer"].concurrency_limits(&ws.settings.resources),
        vec![
            harness_core::Limit::agent("writer", 3),
            harness_core::Limit::resource("gpu", 2)
        ]
    );
}

#[test]
fn command_limits_come_from_the_tool_then_the_workspace() {
    let dir = demo();
    let template = load(dir.path()).unwrap();
    let written = template.settings.runtime.command_limits;
    assert_eq!(
        (written.max_output_bytes, written.cpu_secs),
        (Some(10 * 1024 * 1024), None),
        "the template spells out the default output limit and leaves the others unset"
    );
    assert_eq!(template.tools["word_count"].limits, written);
    let workspace =
        "name: demo\nruntime:\n  command_limits:\n    cpu_secs: 30\n    memory_mb: 512\n";
    write(&dir, "config/workspace.yaml", workspace);
    let tools = r#"tools:
  own:
    command: ["true"]
    limits: { cpu_secs: 2, max_output_bytes: 1048576, max_open_files: 16 }
  inherits:
    command: ["true"]
  send_mail:
    command: ["true"]
"#;
    write(&dir, TOOLS, tools);
    let ws = load(dir.path()).unwrap();
    let own = ws.tools["own"].limits;
    assert_eq!(
        (
            own.cpu_secs,
            own.memory_mb,
            own.max_output_bytes,
            own.max_open_files
        ),
        (Some(2), Some(512), Some(1_048_576), Some(16))
    );
    let inherits = ws.tools["inherits"].limits;
    assert_eq!(
        (
            inherits.cpu_secs,
            inherits.memory_mb,
            inherits.max_output_bytes
        ),
        (Some(30), Some(512), None)
    );
    assert_eq!(inherits.output_limit(), 10 * 1024 * 1024);
    assert_eq!(ws.tools["own"].limits.output_limit(), 1_048_576);
    // Built-in tools run no process: no limits are given to them.
    assert_eq!(ws.tools["read_file"].limits.cpu_secs, None);
}

#[test]
fn bad_command_limits_are_refused_at_their_key() {
    let tools = r#"tools:
  burn:
    command: ["true"]
    limits:
      cpu_secs: 0
      memory_mb: 4
      max_output_bytes: 99999999999
      max_open_files: 2
  read_file:
    limits: { cpu_secs: 1 }
  send_mail:
    command: ["true"]
"#;
    assert_eq!(
        errors_with(TOOLS, tools),
        "config/tools.yaml:5:17: `limits.cpu_secs` of `burn` must be between 1 and 604800 (at most a week), not 0\n\
         config/tools.yaml:6:18: `limits.memory_mb` of `burn` must be between 16 and 1048576 (below 16 MiB of address space no program starts; at most 1 TiB), not 4\n\
         config/tools.yaml:7:25: `limits.max_output_bytes` of `burn` must be between 1 and 1073741824 (the output is kept in memory: at most 1 GiB), not 99999999999\n\
         config/tools.yaml:8:23: `limits.max_open_files` of `burn` must be between 8 and 1048576 (stdin, stdout and stderr take 3), not 2\n\
         config/tools.yaml:10:5: `limits` cannot be set on `read_file`: it is the built-in tool `read_file`"
    );
    let negative = "tools:\n  burn:\n    command: [\"true\"]\n    limits: { cpu_secs: -1 }\n";
    assert_eq!(
        errors_with(TOOLS, negative),
        "config/tools.yaml:4:25: tools.burn.limits.cpu_secs: expected a whole number, 0 or more"
    );
    let unknown = "tools:\n  burn:\n    command: [\"true\"]\n    limits: { cpu_seconds: 1 }\n";
    assert_eq!(
        errors_with(TOOLS, unknown),
        "config/tools.yaml:4:15: tools.burn.limits: unknown field `cpu_seconds`, expected one of \
         `cpu_secs`, `memory_mb`, `max_output_bytes`, `max_open_files` (did you mean `cpu_secs`?)"
    );

    let workspace = "name: demo\nruntime:\n  command_limits:\n    max_open_files: 0\n";
    assert_eq!(
        errors_with("config/workspace.yaml", workspace),
        "config/workspace.yaml:4:21: `runtime.command_limits.max_open_files` must be between 8 and 1048576 (stdin, stdout and stderr take 3), not 0"
    );
}

#[test]
fn telemetry_is_off_by_default_and_checked_where_written() {
    let dir = demo();
    let ws = load(dir.path()).unwrap();
    assert_eq!(ws.settings.telemetry.otlp_endpoint, None);
    assert_eq!(ws.settings.telemetry.service_name(), "agent-harness");

    let ws_text = fs::read_to_string(dir.path().join("config/workspace.yaml")).unwrap();
    let n = ws_text.lines().count();
    let good = "telemetry:\n  otlp_endpoint: https://collector.example:4318\n  protocol: http/protobuf\n  \
                service_name: harness-prod\n  headers_env:\n    authorization: OTLP_TOKEN\n";
    write(&dir, "config/workspace.yaml", &format!("{ws_text}{good}"));
    let ws = load(dir.path()).unwrap();
    let t = &ws.settings.telemetry;
    assert_eq!(
        t.otlp_endpoint.as_deref(),
        Some("https://collector.example:4318")
    );
    assert_eq!(t.service_name(), "harness-prod");
    assert_eq!(t.headers_env["authorization"], "OTLP_TOKEN");
    // The header's variable is a secret: its value is redacted wherever it appears.
    assert!(ws.secret_env_names().contains("OTLP_TOKEN"));

    let bad = "telemetry:\n  otlp_endpoint: https://user:pw@collector:4318\n  service_name: \" \"\n  \
               headers_env:\n    \"bad header\": OTLP_TOKEN\n    x-api-key: Bearer abc\n";
    write(&dir, "config/workspace.yaml", &format!("{ws_text}{bad}"));
    let err = load(dir.path()).unwrap_err().to_string();
    for want in [
        format!(
            "config/workspace.yaml:{}:18: `telemetry.otlp_endpoint` must not carry credentials",
            n + 2
        ),
        format!(
            "config/workspace.yaml:{}:17: `telemetry.service_name` must not be empty",
            n + 3
        ),
        format!(
            "config/workspace.yaml:{}:5: `telemetry.headers_env`: `bad header` is not an HTTP header name",
            n + 5
        ),
        format!(
            "config/workspace.yaml:{}:16: `telemetry.headers_env.x-api-key` names the environment variable",
            n + 6
        ),
    ] {
        assert!(err.contains(&want), "{want}\nnot in:\n{err}");
    }
    for (endpoint, why) in [
        ("localhost:4318", "must start with http:// or https://"),
        (
            "grpc://collector:4317",
            "must start with http:// or https://",
        ),
        ("http:///v1/traces", "has no host"),
    ] {
        write(
            &dir,
            "config/workspace.yaml",
            &format!("{ws_text}telemetry:\n  otlp_endpoint: {endpoint}\n"),
        );
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(why), "{endpoint}: {err}");
    }
    write(
        &dir,
        "config/workspace.yaml",
        &format!("{ws_text}telemetry:\n  protocol: grpc\n"),
    );
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains(&format!("config/workspace.yaml:{}:", n + 2)),
        "{err}"
    );
    assert!(err.contains("http/protobuf"), "{err}");
}
