//! `init`, `validate`, `run`, `request`, `serve`: admitting and executing work.

use crate::context::Ctx;
use crate::output::{self, BOLD, DIM, GREEN, YELLOW, line, paint};
use anyhow::{Context, Result};
use harness_core::*;
use harness_engine::{Harness, WorkerOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Folder to create the workspace in (default: the current folder).
    pub dir: Option<PathBuf>,
    /// Overwrite an existing configuration.
    #[arg(long)]
    pub force: bool,
    /// What the agents run on: `demo` (the embedded scripted model, offline), `openai`
    /// (OPENAI_API_KEY), `anthropic` (ANTHROPIC_API_KEY) or `ollama` (a local
    /// OpenAI-compatible server, no key).
    #[arg(long, default_value = "demo", value_name = "NAME")]
    pub template: harness_config::Template,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The agent to run (a file in config/agents/).
    #[arg(long, short = 'a')]
    pub agent: String,
    /// The session (conversation) to run in; a new one if omitted.
    #[arg(long, short = 's')]
    pub session: Option<String>,
    /// The input text.
    pub input: String,
    /// Claim priority, -100 to 100 (default 0): higher is claimed first across
    /// sessions; a waiting request gains one level every 30 s, so low priority still runs.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i64,
    /// Admit at most once per session under this key (1-255 printable ASCII; needs
    /// --session): asking again with the same key, agent and input answers the
    /// request it admitted before; other work under a used key is refused (exit 3).
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Start a new, empty store if the workspace's is missing, empty or damaged (a
    /// damaged file is moved aside, never deleted). Refused if the store is intact.
    #[arg(long)]
    pub new_store: bool,
}

pub type RequestArgs = RunArgs;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Also serve the HTTP API on this address (e.g. 127.0.0.1:8080). Tokens come
    /// from config/server.yaml; without any, only a loopback address is allowed and
    /// the API is open.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Serve the HTTP API only, beside a worker running elsewhere (needs --listen).
    #[arg(long, requires = "listen")]
    pub no_worker: bool,
    /// Start a new, empty store if the workspace's is missing, empty or damaged (a
    /// damaged file is moved aside, never deleted). Refused if the store is intact.
    #[arg(long)]
    pub new_store: bool,
}

pub fn init(ctx: &Ctx, a: InitArgs) -> Result<ExitCode> {
    let dir = a
        .dir
        .or_else(|| ctx.workspace.clone())
        .unwrap_or_else(|| PathBuf::from("."));
    let t = a.template;
    let files = harness_config::init_template(&dir, t, a.force).map_err(|e| match e {
        harness_config::InitError::AlreadyExists(p) => output::bad_input(format!(
            "{} already holds a workspace configuration; pass --force to overwrite it",
            p.display()
        )),
        other => anyhow::Error::new(other),
    })?;
    if ctx.json {
        output::print_json(&serde_json::json!({
            "workspace": dir,
            "template": t.name(),
            "model": t.model(),
            "api_key_env": t.key_env(),
            "files": files,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    line(format!(
        "{} {} workspace in {}",
        paint(GREEN, "created"),
        t.name(),
        dir.display()
    ));
    for f in &files {
        line(format!("  {}", f.strip_prefix(&dir).unwrap_or(f).display()));
    }
    let run = format!(
        "agent-harness run --workspace {} --agent assistant \"ship the release notes\"",
        dir.display()
    );
    match (t, t.key_env()) {
        (_, Some(var)) => line(format!(
            "\nthe agents use model `{}` (config/models.yaml); its key is read from {var}:\n  \
             export {var}=…\n  {run}",
            t.model()
        )),
        (harness_config::Template::Ollama, None) => line(format!(
            "\nthe agents use model `{}` on http://localhost:11434/v1 (config/models.yaml):\n  \
             ollama pull llama3.2\n  {run}",
            t.model()
        )),
        _ => line(format!("\nnext: {run}")),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn validate(ctx: &Ctx) -> Result<ExitCode> {
    let root = ctx.root()?;
    let ws = harness_config::load(&root).map_err(harness_engine::HarnessError::from)?;
    if ctx.json {
        output::print_json(&serde_json::json!({
            "ok": true,
            "workspace": ws.root,
            "name": ws.settings.name,
            "agents": ws.agents.keys().collect::<Vec<_>>(),
            "models": ws.models.keys().collect::<Vec<_>>(),
            "tools": ws.tools.keys().collect::<Vec<_>>(),
            "skills": ws.skills.keys().collect::<Vec<_>>(),
        }))?;
    } else {
        line(format!(
            "{} workspace `{}`: {} agents, {} models, {} tools, {} skills",
            paint(GREEN, "ok"),
            ws.settings.name,
            ws.agents.len(),
            ws.models.len(),
            ws.tools.len(),
            ws.skills.len()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn session_arg(s: &Option<String>) -> Result<Option<SessionId>> {
    s.as_deref()
        .map(SessionId::parse)
        .transpose()
        .map_err(|e| output::bad_input(e.to_string()))
}

/// Admits `a`'s request, under its idempotency key if it has one.
async fn admit(h: &Harness, a: &RunArgs) -> Result<harness_engine::Admitted> {
    Ok(h.admit(harness_engine::Admit {
        session: session_arg(&a.session)?,
        agent: a.agent.clone(),
        input: a.input.clone(),
        idempotency_key: a.idempotency_key.clone(),
        priority: a.priority,
        // Run from a command tool (or any traced caller), the request joins its trace.
        traceparent: std::env::var("TRACEPARENT").ok(),
    })
    .await?)
}

/// `request --json` with `--idempotency-key`: the request and whether the key
/// admitted it before.
#[derive(serde::Serialize)]
struct Keyed<'a> {
    #[serde(flatten)]
    request: &'a Request,
    admitted_before: bool,
}

/// Said after the request id when an idempotency key admitted it before.
const ADMITTED_BEFORE: &str = " · admitted before under this idempotency key";

pub async fn request(ctx: &Ctx, a: RequestArgs) -> Result<ExitCode> {
    let h = ctx.open_or_replace(a.new_store)?;
    let admitted = admit(&h, &a).await?;
    let req = &admitted.request;
    if ctx.json {
        match a.idempotency_key {
            Some(_) => output::print_json(&Keyed {
                request: req,
                admitted_before: admitted.existing,
            })?,
            None => output::print_json(req)?,
        }
    } else {
        line(format!(
            "{} {}",
            req.id,
            paint(
                DIM,
                format!(
                    "(session {}{})",
                    req.session_id,
                    if admitted.existing {
                        ADMITTED_BEFORE
                    } else {
                        ""
                    }
                )
            )
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run(ctx: &Ctx, a: RunArgs) -> Result<ExitCode> {
    let h = ctx.open_or_replace(a.new_store)?;
    let from = h.store().last_seq().await?;
    let admitted = admit(&h, &a).await?;
    let req = admitted.request;
    let holder = h.worker_holder().await?;
    // A key's request admitted before may have settled already: report it.
    let done = admitted.existing
        && (req.status.is_terminal() || req.status == RequestStatus::WaitingApproval);
    if !ctx.json {
        let how = match &holder {
            _ if done => format!("already {}", req.status),
            Some(w) => format!("handed to worker {} (pid {})", w.worker_id, w.pid),
            None => "running in this process".to_string(),
        };
        line(format!(
            "{} {} {}",
            paint(BOLD, "request"),
            req.id,
            paint(
                DIM,
                format!(
                    "session {}{} · {how}",
                    req.session_id,
                    if admitted.existing {
                        ADMITTED_BEFORE
                    } else {
                        ""
                    }
                )
            )
        ));
    }
    if done {
        return report_settled(&h, &req, ctx.json).await;
    }
    let json = ctx.json;
    let seen = std::cell::Cell::new(from);
    let print = |e: &Event| {
        seen.set(e.seq);
        print_event(e, json)
    };
    let settled = match holder {
        Some(_) => follow(&h, &req, from, print).await?,
        None => {
            let live = crate::live::Live::on_terminal(&h, &req.session_id, json);
            match crate::runtime::drive::run_in_process(&h, &req, from, live, print).await? {
                Ok(settled) => settled,
                // Another worker took the workspace first: it runs the request; follow it.
                Err(harness_engine::HarnessError::Locked(_)) => {
                    follow(&h, &req, seen.get(), print).await?
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    report_settled(&h, &settled, ctx.json).await
}

/// Passes the session's events from `from` to `on_event` until `req` settles;
/// returns it settled.
pub async fn follow(
    h: &Harness,
    req: &Request,
    from: i64,
    mut on_event: impl FnMut(&Event),
) -> Result<Request> {
    let mut events = h.subscribe(
        from,
        EventFilter {
            session_id: Some(req.session_id.clone()),
            ..Default::default()
        },
    );
    loop {
        let e = events.next().await?;
        on_event(&e);
        let settles = matches!(
            e.kind,
            EventKind::RequestCompleted
                | EventKind::RequestFailed
                | EventKind::RequestCancelled
                | EventKind::RequestWaitingApproval
        );
        if settles && e.request_id.as_ref() == Some(&req.id) {
            return Ok(h.get_request(&req.id).await?);
        }
    }
}

/// One event: a JSON line, or a human line.
fn print_event(e: &Event, json: bool) {
    if json {
        line(serde_json::to_string(e).unwrap_or_default());
    } else {
        line(format!("  {}", output::event_line(e)));
    }
}

async fn report_settled(h: &Harness, r: &Request, json: bool) -> Result<ExitCode> {
    let code = output::outcome_exit(r.status, 0);
    if json {
        return Ok(code);
    }
    match r.status {
        RequestStatus::Completed => {
            line(format!(
                "\n{} {}",
                paint(GREEN.bold(), "completed:"),
                r.output.as_deref().unwrap_or("")
            ));
            Ok(code)
        }
        RequestStatus::WaitingApproval => {
            let pending = h
                .list_approvals(ApprovalFilter {
                    statuses: vec![ApprovalStatus::Pending],
                    session_id: Some(r.session_id.clone()),
                    ..Default::default()
                })
                .await?;
            line(format!(
                "\n{} request {} is paused for approval",
                paint(YELLOW.bold(), "waiting:"),
                r.id
            ));
            for a in pending {
                line(format!(
                    "  {} {} {}",
                    a.id,
                    paint(BOLD, &a.tool),
                    output::clip(&a.arguments.to_string(), 100)
                ));
                line(format!(
                    "  approve: agent-harness runtime approvals approve {}",
                    a.id
                ));
                line(format!(
                    "  reject:  agent-harness runtime approvals reject {} --message \"why\"",
                    a.id
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        RequestStatus::Queued | RequestStatus::Running => {
            crate::runtime::drive::interrupted(r);
            Ok(code)
        }
        status => {
            line(format!(
                "\n{} {}",
                paint(output::status_style(status).bold(), format!("{status}:")),
                r.error.as_deref().unwrap_or("")
            ));
            Ok(code)
        }
    }
}

/// `serve`: hold the workspace, recover, execute until SIGTERM / Ctrl-C.
pub async fn serve(ctx: &Ctx, a: ServeArgs) -> Result<ExitCode> {
    // Installed before the workspace is taken, so a SIGTERM never finds it missing.
    let mut signals = Signals::install()?;
    let h = if a.no_worker {
        ctx.open_existing()?
    } else {
        ctx.open_or_replace(a.new_store)?
    };
    // The listener is bound before the worker starts: a taken port fails at once.
    let api = match a.listen {
        Some(addr) => Some(Api::bind(&h, addr, ctx.json).await?),
        None => None,
    };
    let worker = if a.no_worker {
        None
    } else {
        if h.worker_holder().await?.is_none() {
            verify_store(&h).await?;
        }
        let worker = h.start_worker(WorkerOptions::default()).await?;
        let msg = format!(
            "worker {} serving {} (pid {}); recovered {} request(s)",
            worker.id,
            h.workspace().root.display(),
            std::process::id(),
            worker.recovered.len()
        );
        if ctx.json {
            println!(
                "{}",
                serde_json::json!({"worker_id": worker.id, "pid": std::process::id(), "recovered": worker.recovered})
            );
        } else {
            line(msg);
        }
        Some(worker)
    };
    let api = api.map(Api::start);
    let fault = async {
        match &worker {
            Some(_) => h.worker_fault().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = signals.next() => {}
        why = fault => {
            if let Some(api) = api { api.stop().await; }
            if let Some(worker) = worker { worker.stop().await?; }
            anyhow::bail!(why);
        }
    }
    // Stop taking calls first (open event streams end), then the worker.
    if let Some(api) = api {
        api.stop().await;
    }
    let Some(worker) = worker else {
        return Ok(ExitCode::SUCCESS);
    };
    let deadline = h.workspace().settings.runtime.stop_timeout;
    if !ctx.json {
        line(format!(
            "stopping: finishing steps in flight (at most {}; signal again to cancel them now)",
            harness_core::relative(deadline)
        ));
    }
    let stop = worker.stop();
    tokio::pin!(stop);
    tokio::select! {
        done = &mut stop => done?,
        () = signals.next() => {
            if !ctx.json {
                line("cancelling steps in flight: their calls are recorded as interrupted");
            }
            h.abort();
            stop.await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The HTTP API of `serve --listen`.
struct Api {
    listener: tokio::net::TcpListener,
    router: harness_server::axum::Router,
    stop: tokio::sync::watch::Sender<bool>,
}

struct RunningApi {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Api {
    async fn bind(h: &Harness, addr: std::net::SocketAddr, json: bool) -> Result<Api> {
        let tokens = harness_server::Tokens::load(&h.workspace().root, |v| std::env::var(v).ok())?;
        if tokens.is_open() && !addr.ip().is_loopback() {
            return Err(output::bad_input(format!(
                "refusing to serve the API on {addr} without tokens: anyone who can reach it could \
                 admit work and resolve approvals. Add tokens to {} or listen on a loopback \
                 address (127.0.0.1)",
                harness_server::SERVER_FILE
            )));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr()?;
        let (stop, rx) = tokio::sync::watch::channel(false);
        let open = tokens.is_open();
        let router = harness_server::router(h.clone(), tokens, rx);
        if json {
            println!(
                "{}",
                serde_json::json!({"listening": format!("http://{bound}"), "open": open})
            );
        } else if open {
            line(format!(
                "API on http://{bound} (console: http://{bound}/console) — {} no tokens in {}, so every caller may do anything (loopback only)",
                paint(YELLOW, "open:"),
                harness_server::SERVER_FILE
            ));
        } else {
            line(format!(
                "API on http://{bound} (console: http://{bound}/console)"
            ));
        }
        Ok(Api {
            listener,
            router,
            stop,
        })
    }

    fn start(self) -> RunningApi {
        let mut rx = self.stop.subscribe();
        let task = tokio::spawn(async move {
            harness_server::axum::serve(self.listener, self.router)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|v| *v).await;
                })
                .await
        });
        RunningApi {
            stop: self.stop,
            task,
        }
    }
}

impl RunningApi {
    async fn stop(self) {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(Err(e)) => tracing::warn!("the API server failed: {e}"),
            Err(e) => tracing::warn!("the API server task failed: {e}"),
            Ok(Ok(())) => {}
        }
    }
}

/// SIGTERM and SIGINT (Ctrl-C), as one stream of stop requests.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot install a SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("cannot install a SIGINT handler")?,
        })
    }

    /// The next SIGTERM or SIGINT.
    pub async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// A worker runs for a long time on whatever it starts on: before serving, the whole
/// store file is checked (opening only looked at its header and size), and a damaged
/// one is refused with what to do. (Skipped when another worker holds the workspace:
/// taking it is refused anyway.)
async fn verify_store(h: &Harness) -> Result<()> {
    Ok(h.store().verify(h.now()).await?)
}
