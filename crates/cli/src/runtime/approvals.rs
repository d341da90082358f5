//! `runtime approvals list|watch|show|approve|reject`.

use super::drive::{self, Continued};
use super::screen::{Quit, Screen};
use super::source::Source;
use super::table::{Table, cell, dim, id, styled};
use super::{ago, approval_id, operator, request_id, request_id_in, session_id};
use crate::context::Ctx;
use crate::output::{self, BOLD, DIM, GREEN, RED, YELLOW, line, paint};
use anyhow::Result;
use harness_core::*;
use serde::Serialize;
use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Subcommand, Debug)]
pub enum ApprovalsCommand {
    /// List approvals, newest first.
    #[command(
        after_help = "Example:\n  agent-harness runtime approvals list --workspace . --status pending"
    )]
    List(ListArgs),
    /// Watch approvals: redrawn in place on a terminal; plain lines as they change otherwise.
    #[command(
        after_help = "Example:\n  agent-harness runtime approvals watch --workspace . --status pending --once\n\n\
On a terminal the table is redrawn every --interval until Ctrl-C. When stdout is not a terminal, \
the current approvals are printed once as lines, then one line per new approval or change of status. \
--once prints one snapshot and exits."
    )]
    Watch(WatchArgs),
    /// One approval in full: tool, arguments, request, decision.
    #[command(after_help = "Example:\n  agent-harness runtime approvals show apr_01j…")]
    Show {
        /// The approval id (`apr_…`).
        id: String,
    },
    /// Approve a pending tool call; the run then continues (in the worker, or in this process).
    #[command(
        after_help = "Example:\n  agent-harness runtime approvals approve apr_01j… --message \"ok\"\n\n\
--session and --request are optional: when given, they must be the approval's own.\n\n\
With no `serve` worker holding the workspace, the run continues in this process and its events are \
printed until it finishes or pauses again. Resolving an approval that is not pending is refused \
(exit 3) with its current state and who decided it."
    )]
    Approve(ApproveArgs),
    /// Add a note to an approval without deciding it (shown by `show`, in events and exports).
    #[command(
        after_help = "Example:\n  agent-harness runtime approvals annotate apr_01j… -m \"waiting for the customer to confirm\""
    )]
    Annotate(super::notes::AnnotateArgs),
    /// Reject a pending tool call; the model receives the rejection and your message.
    #[command(
        after_help = "Example:\n  agent-harness runtime approvals reject apr_01j… --message \"wrong recipient\""
    )]
    Reject(ResolveArgs),
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only approvals in these states (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', value_name = "STATUS")]
    pub status: Vec<ApprovalStatus>,
    /// Only approvals of this session.
    #[arg(long, value_name = "SESSION")]
    pub session: Option<String>,
    /// Only approvals of this request.
    #[arg(long, value_name = "REQUEST")]
    pub request: Option<String>,
    /// At most this many (newest first).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub limit: usize,
}

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub list: ListArgs,
    /// Print one snapshot and exit.
    #[arg(long)]
    pub once: bool,
    /// How often to look for changes, e.g. 500ms, 2s.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
}

#[derive(clap::Args, Debug)]
pub struct ResolveArgs {
    /// The approval id (`apr_…`).
    pub id: String,
    /// The session the approval belongs to (optional; checked when given).
    #[arg(long, value_name = "SESSION")]
    pub session: Option<String>,
    /// The request the approval belongs to (optional; checked when given).
    #[arg(long, value_name = "REQUEST")]
    pub request: Option<String>,
    /// A message recorded with the decision (and given to the model on rejection).
    #[arg(long, short = 'm')]
    pub message: Option<String>,
    /// Who decides (default: $USER, else `operator`).
    #[arg(long = "as", value_name = "NAME")]
    pub decided_by: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub resolve: ResolveArgs,
    /// Run the tool with these arguments instead (a JSON object, checked against the tool's schema).
    #[arg(long, value_name = "JSON")]
    pub arguments: Option<String>,
}

pub async fn dispatch(ctx: &Ctx, c: ApprovalsCommand) -> Result<ExitCode> {
    match c {
        ApprovalsCommand::List(a) => list(ctx, a).await,
        ApprovalsCommand::Watch(a) => {
            ctx.local_only("runtime approvals watch")?;
            watch(ctx, a).await
        }
        ApprovalsCommand::Show { id } => {
            ctx.local_only("runtime approvals show")?;
            show(ctx, &id).await
        }
        ApprovalsCommand::Approve(a) => {
            let edited = a.arguments.as_deref().map(parse_arguments).transpose()?;
            resolve(ctx, a.resolve, Decision::Approved, edited).await
        }
        ApprovalsCommand::Reject(a) => resolve(ctx, a, Decision::Rejected, None).await,
        ApprovalsCommand::Annotate(a) => {
            ctx.local_only("runtime approvals annotate")?;
            super::notes::annotate(ctx, a, true).await
        }
    }
}

fn parse_arguments(s: &str) -> Result<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(s)
        .map_err(|e| output::bad_input(format!("--arguments is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(output::bad_input("--arguments must be a JSON object"));
    }
    Ok(v)
}

async fn filter(src: &Source, a: &ListArgs) -> Result<ApprovalFilter> {
    Ok(ApprovalFilter {
        statuses: a.status.clone(),
        session_id: a.session.as_deref().map(session_id).transpose()?,
        request_id: match a.request.as_deref() {
            Some(r) => Some(request_id_in(src, r).await?),
            None => None,
        },
        limit: a.limit,
    })
}

#[derive(Serialize)]
struct Listing {
    now: Timestamp,
    approvals: Vec<Approval>,
}

async fn snapshot(src: &Source, f: &ApprovalFilter) -> Result<Listing> {
    Ok(Listing {
        now: src.now()?,
        approvals: src.list_approvals(f.clone()).await?,
    })
}

async fn list(ctx: &Ctx, a: ListArgs) -> Result<ExitCode> {
    let src = ctx.source()?;
    let s = snapshot(&src, &filter(&src, &a).await?).await?;
    if ctx.json {
        output::print_json(&s)?;
    } else {
        for l in table(&s.approvals, s.now) {
            line(l);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn watch(ctx: &Ctx, a: WatchArgs) -> Result<ExitCode> {
    let src = ctx.source()?;
    let f = filter(&src, &a.list).await?;
    let mut screen = Screen::new();
    let mut quit = Quit::new()?;
    let mut seen: HashSet<(ApprovalId, ApprovalStatus)> = HashSet::new();
    let mut last_json = String::new();
    loop {
        let s = snapshot(&src, &f).await?;
        if ctx.json {
            let text = serde_json::to_string(&s.approvals)?;
            if text != last_json || a.once {
                println!("{}", serde_json::to_string(&s)?);
                last_json = text;
            }
        } else if a.once {
            table(&s.approvals, s.now).into_iter().for_each(line);
        } else if screen.is_tty() {
            screen.draw(&frame(&s, a.interval));
        } else {
            changed_lines(&s, &mut seen).into_iter().for_each(line);
        }
        if a.once || quit.pause(a.interval).await {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

fn frame(s: &Listing, every: Duration) -> Vec<String> {
    let mut out = vec![paint(
        DIM,
        format!(
            "approvals at {} · refreshed every {} · Ctrl-C to quit",
            s.now,
            humantime::format_duration(every)
        ),
    )];
    out.extend(table(&s.approvals, s.now));
    out
}

/// Plain-line watch: one line per approval not seen before in its current state.
fn changed_lines(s: &Listing, seen: &mut HashSet<(ApprovalId, ApprovalStatus)>) -> Vec<String> {
    let mut fresh: Vec<&Approval> = s
        .approvals
        .iter()
        .filter(|a| seen.insert((a.id.clone(), a.status)))
        .collect();
    fresh.reverse();
    fresh.into_iter().map(|a| one_line(a, s.now)).collect()
}

fn one_line(a: &Approval, now: Timestamp) -> String {
    format!(
        "{} {} {} {} request {} session {} {}",
        paint(DIM, a.created_at),
        a.id,
        paint(status_style(a.status), a.status.as_str()),
        paint(BOLD, &a.tool),
        a.request_id,
        a.session_id,
        decision_text(a, now)
    )
}

pub fn status_style(s: ApprovalStatus) -> anstyle::Style {
    match s {
        ApprovalStatus::Pending => YELLOW,
        ApprovalStatus::Approved => GREEN,
        ApprovalStatus::Rejected | ApprovalStatus::Expired => RED,
    }
}

/// `expires in 23h` for a pending approval, `by alice 3m ago` for a decided one.
fn decision_text(a: &Approval, now: Timestamp) -> String {
    match (a.status, &a.decided_by, a.decided_at) {
        (ApprovalStatus::Pending, _, _) if a.expires_at <= now => "past expiry".to_string(),
        (ApprovalStatus::Pending, _, _) => format!(
            "expires in {}",
            harness_core::relative(now.age(a.expires_at))
        ),
        (_, Some(by), Some(at)) => format!("by {by} {}", ago(now, at)),
        (_, Some(by), None) => format!("by {by}"),
        _ => String::new(),
    }
}

pub fn table(approvals: &[Approval], now: Timestamp) -> Vec<String> {
    if approvals.is_empty() {
        return vec![paint(DIM, "no approvals match")];
    }
    let mut t = Table::new(&[
        "APPROVAL", "STATUS", "TOOL", "AGENT", "REQUEST", "SESSION", "AGE", "DECISION",
    ]);
    for a in approvals {
        t.row(vec![
            id(&a.id),
            styled(status_style(a.status), a.status.as_str()),
            if a.is_crash_rerun() {
                styled(RED, format!("{} (crash re-run)", a.tool))
            } else {
                cell(&a.tool)
            },
            cell(&a.agent),
            id(&a.request_id),
            cell(a.session_id.to_string()),
            dim(ago(now, a.created_at)),
            cell(decision_text(a, now)),
        ]);
    }
    let mut out = t.lines();
    if let Some(p) = approvals
        .iter()
        .rev()
        .find(|a| a.status == ApprovalStatus::Pending)
    {
        out.push(paint(DIM, format!("  approve: {}", approve_command(p))));
    }
    out
}

pub use harness_engine::views::doctor::approve_command;

async fn show(ctx: &Ctx, id: &str) -> Result<ExitCode> {
    let h = ctx.inspect()?;
    let id = approval_id(&h, id).await?;
    let a = h.store().get_approval(&id).await?;
    if ctx.json {
        output::print_json(&a)?;
        return Ok(ExitCode::SUCCESS);
    }
    show_lines(&a, h.now()).into_iter().for_each(line);
    let notes: Vec<Event> = super::notes::of(&h, std::slice::from_ref(&a.request_id))
        .await?
        .into_iter()
        .filter(|e| e.payload["approval_id"].as_str() == Some(a.id.as_str()))
        .collect();
    if !notes.is_empty() {
        line(paint(BOLD, "notes"));
        notes
            .iter()
            .for_each(|e| line(format!("  {}", super::notes::line_of(e))));
    }
    Ok(ExitCode::SUCCESS)
}

fn field(name: &str, value: impl AsRef<str>) -> String {
    format!("{} {}", paint(BOLD, format!("{name:<10}")), value.as_ref())
}

fn show_lines(a: &Approval, now: Timestamp) -> Vec<String> {
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let mut out = vec![
        field("approval", a.id.to_string()),
        field("status", paint(status_style(a.status), a.status.as_str())),
        field(
            "tool",
            format!("{} (step #{}, {})", a.tool, a.step_idx, a.call_id),
        ),
        field("agent", &a.agent),
        field("request", a.request_id.to_string()),
        field("session", a.session_id.to_string()),
        field(
            "created",
            format!("{} ({})", a.created_at, ago(now, a.created_at)),
        ),
        field("expires", a.expires_at.to_string()),
    ];
    if let Some(by) = &a.decided_by {
        let at = a.decided_at.map(|t| format!(" at {t}")).unwrap_or_default();
        // How the decider was identified: a server token, the CLI, MCP, the runtime.
        let via = a
            .decided_by_kind
            .map(|k| format!(" ({})", k.as_str()))
            .unwrap_or_default();
        out.push(field("decided", format!("by {by}{via}{at}")));
    }
    if let Some(m) = &a.message {
        out.push(field("message", m));
    }
    if let Some(r) = &a.reason {
        out.push(field("reason", r));
    }
    if a.is_crash_rerun() && a.status == ApprovalStatus::Pending {
        out.push(paint(
            RED,
            "crash re-run: this call may or may not have taken effect; check before approving",
        ));
    }
    out.push(paint(BOLD, "arguments"));
    out.extend(pretty(&a.arguments).lines().map(|l| format!("  {l}")));
    if let Some(e) = &a.edited_arguments {
        out.push(field("edited", "(the tool runs with these)"));
        out.extend(pretty(e).lines().map(|l| format!("  {l}")));
    }
    if a.status == ApprovalStatus::Pending {
        out.push(String::new());
        out.push(format!("approve: {}", approve_command(a)));
    }
    out
}

#[derive(Serialize)]
struct Resolved {
    approval: Approval,
    #[serde(flatten)]
    continued: Continued,
}

async fn resolve(
    ctx: &Ctx,
    a: ResolveArgs,
    decision: Decision,
    edited: Option<serde_json::Value>,
) -> Result<ExitCode> {
    if ctx.server.is_some() {
        return resolve_remote(ctx, a, decision, edited).await;
    }
    let h = ctx.open_existing()?;
    let approval_id = approval_id(&h, &a.id).await?;
    let session = a.session.as_deref().map(session_id).transpose()?;
    let request = match a.request.as_deref() {
        Some(r) => Some(request_id(&h, r).await?),
        None => None,
    };
    // Given, they are checked by the store against the approval (a mismatch is
    // refused); not given, they are the approval's own.
    let (session_id, request_id) = match (session, request) {
        (Some(s), Some(r)) => (s, r),
        (s, r) => {
            let known = h.store().get_approval(&approval_id).await?;
            (s.unwrap_or(known.session_id), r.unwrap_or(known.request_id))
        }
    };
    let r = ResolveApproval {
        session_id,
        request_id,
        approval_id,
        decision,
        message: a.message,
        decided_by: Actor::new(ActorKind::Cli, operator(a.decided_by.as_deref())),
        edited_arguments: edited,
    };
    let from = h.store().last_seq().await?;
    let approval = h.resolve_approval(r).await?;
    if !ctx.json {
        line(decided_line(&approval));
    }
    let root = drive::root_of(&h, &approval.request_id).await?;
    let continued = drive::continue_run(&h, &root, from, ctx.json).await?;
    if ctx.json {
        output::print_json(&Resolved {
            approval,
            continued,
        })?;
    } else {
        drive::report(&continued);
    }
    Ok(ExitCode::SUCCESS)
}

/// "approved apr_… (tool) by NAME": what `approve`/`reject` print first.
fn decided_line(a: &Approval) -> String {
    format!(
        "{} {} ({}) by {}",
        paint(status_style(a.status).bold(), a.status.as_str()),
        a.id,
        a.tool,
        a.decided_by.as_deref().unwrap_or("")
    )
}

/// `approve`/`reject` through the API: the server records the token's name as who
/// decided (`--as` is refused), and its worker continues the run.
async fn resolve_remote(
    ctx: &Ctx,
    a: ResolveArgs,
    decision: Decision,
    edited: Option<serde_json::Value>,
) -> Result<ExitCode> {
    let src = ctx.source()?;
    super::no_as_remote(&src, a.decided_by.as_deref())?;
    if a.session.is_some() || a.request.is_some() {
        return Err(output::bad_input(
            "--session and --request are not checked through the API: with --server give the approval id alone",
        ));
    }
    let approval_id = super::approval_id_in(&src, &a.id).await?;
    let approval = src
        .resolve_remote(&approval_id, decision, a.message, edited)
        .await?;
    if !ctx.json {
        line(decided_line(&approval));
    }
    let root = src.root_of(&approval.request_id).await?;
    let continued = match src.worker().await? {
        Some(w) => Continued {
            handled_by: drive::HandledBy::Worker {
                worker_id: w.worker_id,
                pid: w.pid,
            },
            request: src.get_request(&root.id).await?,
        },
        None => {
            return Err(output::CliError {
                code: output::EXIT_REFUSED,
                message: format!(
                    "decided, but no worker holds the server's workspace to continue request {}: \
                     start `agent-harness serve` there",
                    root.id
                ),
            }
            .into());
        }
    };
    if ctx.json {
        output::print_json(&Resolved {
            approval,
            continued,
        })?;
    } else {
        drive::report(&continued);
    }
    Ok(ExitCode::SUCCESS)
}
