//! `agent-harness`: the thin binary. Parses arguments, opens the workspace,
//! calls the library API and renders what it returns. No state lives here.

// glibc's malloc was 12 % of a loaded server's CPU (`http-load` profile);
// mimalloc took http-load from 2,216 to 2,686 admissions/s in one A/B pair.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod context;
mod core_cmds;
mod live;
mod output;
mod remote;
mod runtime;
mod telemetry;

use clap::{Parser, Subcommand};
use context::Ctx;
use std::process::ExitCode;

/// A durable runtime for LLM agents: run agents from a workspace of YAML files,
/// with approvals, recovery, a bounded queue and operator views.
#[derive(Parser, Debug)]
#[command(name = "agent-harness", version, propagate_version = true, after_help = EXIT_CODES)]
struct Cli {
    /// The workspace folder (default: the current folder or the nearest parent
    /// holding `config/workspace.yaml`).
    #[arg(long, short = 'w', global = true, value_name = "PATH")]
    workspace: Option<std::path::PathBuf>,
    /// Machine-readable output (documented in docs/cli-json.md).
    #[arg(long, global = true)]
    json: bool,
    /// `wide`: tables show every column in full instead of fitting the terminal.
    #[arg(long, short = 'o', global = true, value_name = "FORMAT", value_parser = ["wide"])]
    output: Option<String>,
    /// `runtime` commands read and act through this server's HTTP API
    /// (`agent-harness serve --listen`) instead of the workspace's store.
    #[arg(long, global = true, value_name = "URL", env = remote::SERVER_ENV)]
    server: Option<String>,
    /// The API token sent with --server (never printed).
    #[arg(long, global = true, value_name = "TOKEN", env = remote::TOKEN_ENV, hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 success; 1 runtime error; 2 bad input or unknown id; \
3 refused (not in the right state, queue full, workspace held by another worker); \
a request that was run or followed (`run`, `requests resume`, `requests watch`): 1 failed, \
5 cancelled, 4 paused for approval (`watch` only); 130 interrupted (Ctrl-C). \
The full table: docs/incident-playbook.md.";

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a working demo workspace (offline), or the same on a real model.
    #[command(
        after_help = "Examples:\n  agent-harness init my-agents && cd my-agents && agent-harness run --agent assistant \"ship the notes\"\n  agent-harness init --template openai my-agents && export OPENAI_API_KEY=sk-…"
    )]
    Init(core_cmds::InitArgs),
    /// Check every configuration file; errors name file, line, column and field.
    #[command(after_help = "Example:\n  agent-harness validate --workspace .")]
    Validate,
    /// Admit a request and follow it until it finishes or waits for approval.
    #[command(
        after_help = "Example:\n  agent-harness run --workspace . --agent assistant --session support-42 \"ship the notes\"\n\n\
When a `serve` worker holds the workspace, the request is handed to it; otherwise it runs in this process."
    )]
    Run(core_cmds::RunArgs),
    /// Admit a request only: print its id and exit (for scripts, or to feed a running worker).
    #[command(
        after_help = "Example:\n  agent-harness request --workspace . --agent assistant \"ship the notes\""
    )]
    Request(core_cmds::RequestArgs),
    /// Run the long-lived worker: recover, then execute requests until SIGTERM / Ctrl-C.
    #[command(after_help = "Example:\n  agent-harness serve --workspace .\n\n\
On start it checks the whole store file and refuses a damaged one, then resumes requests a crashed \
worker left running. SIGTERM or Ctrl-C stops gracefully: the step in flight finishes, the rest \
stays resumable.\n\n\
A store whose file is damaged, emptied or gone (its sidecar file store.json says it existed) is \
refused, by this and every command; after restoring it from a backup fails, --new-store starts a \
new, empty one (a damaged file is moved aside to harness.db.replaced-<time>, never deleted).")]
    Serve(core_cmds::ServeArgs),
    /// Operator views and actions over the durable records.
    #[command(
        subcommand,
        after_help = "Examples:\n  agent-harness runtime overview --workspace .\n  \
agent-harness runtime approvals watch --workspace . --status pending --once\n  \
agent-harness runtime requests tail --workspace . --follow\n\n\
When something goes wrong: `agent-harness runtime doctor`, then the steps of \
docs/incident-playbook.md (every step is a command)."
    )]
    Runtime(runtime::RuntimeCommand),
    /// Serve runtime inspection and control as MCP tools over stdio (for MCP clients).
    #[command(
        after_help = "Example (an MCP client's server entry):\n  {\"command\": \"agent-harness\", \"args\": [\"mcp\", \"--workspace\", \"/srv/agents\"]}\n\n\
Tools: list_requests, get_request, list_pending_approvals, health, resolve_approval \
(not with --read-only; recorded as decided by `mcp:$USER`, or --as NAME)."
    )]
    Mcp(runtime::mcp_server::McpArgs),
}

fn main() -> ExitCode {
    // Like other Unix tools: `agent-harness … | head` ends quietly when the reader
    // goes away, instead of panicking on a broken pipe (Rust ignores SIGPIPE).
    // SAFETY: called first thing, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_)) {
        // A server must outlive its clients: an HTTP client that goes away mid-answer
        // (an event stream closed by `runtime events --follow --limit N --server …`)
        // makes hyper's vectored socket write raise SIGPIPE, which by default kills
        // the whole process. Ignored, the write fails with EPIPE and only that
        // connection ends.
        // SAFETY: before any thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let serve = matches!(cli.command, Command::Serve(_));
    // `serve` exports its traces when the workspace names an OTLP endpoint.
    let (telemetry, tracer) = match serve {
        true => {
            let root = Ctx {
                workspace: cli.workspace.clone(),
                json: cli.json,
                server: None,
            }
            .root();
            let _in_runtime = rt.enter();
            match root.map(|root| telemetry::start(&root)) {
                Ok(Ok(Some((t, tracer)))) => (Some(t), Some(tracer)),
                Ok(Ok(None)) | Err(_) => (None, None),
                Ok(Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(output::EXIT_BAD_INPUT);
                }
            }
        }
        false => (None, None),
    };
    if let Err(e) = output::init_logging(serve, tracer) {
        eprintln!("error: {e}");
        return ExitCode::from(output::EXIT_BAD_INPUT);
    }
    runtime::set_table_width(match cli.output.as_deref() {
        Some("wide") => None,
        _ => output::terminal_width(),
    });
    let json = cli.json;
    let mut server = cli
        .server
        .filter(|s| !s.is_empty())
        .map(|url| remote::Server {
            url,
            token: cli.token,
        });
    if !matches!(cli.command, Command::Runtime(_)) {
        // The environment's server is for `runtime` commands; an explicit --server
        // on another command is a mistake worth saying.
        let from_env = std::env::var(remote::SERVER_ENV).ok();
        if server
            .as_ref()
            .is_some_and(|s| Some(&s.url) != from_env.as_ref())
        {
            let e = output::bad_input("--server applies to `runtime` commands only");
            return output::report_error(&e, json);
        }
        server = None;
    }
    let ctx = Ctx {
        workspace: cli.workspace,
        json,
        server,
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Init(a) => core_cmds::init(&ctx, a),
            Command::Validate => core_cmds::validate(&ctx),
            Command::Run(a) => core_cmds::run(&ctx, a).await,
            Command::Request(a) => core_cmds::request(&ctx, a).await,
            Command::Serve(a) => core_cmds::serve(&ctx, a).await,
            Command::Runtime(c) => runtime::dispatch(&ctx, c).await,
            Command::Mcp(a) => runtime::mcp_server::run(&ctx, a).await,
        }
    });
    // Stopped (gracefully, or with an error): export the spans still buffered.
    if let Some(t) = telemetry {
        t.shutdown();
    }
    match result {
        Ok(code) => code,
        Err(e) => output::report_error(&e, json),
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// clap's own checks of every command (duplicate names, e.g. an argument
    /// called `version` beside the global `--version`), which otherwise fire
    /// only when that command is run.
    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }
}
