//! `runtime doctor [REQUEST]`: the first steps of the incident playbook
//! (docs/incident-playbook.md) as one command. Without an id it lists the requests
//! that need a human now; with one it shows where that request's tree stopped, why,
//! its last events and artifacts, and the next action as a command to paste.
//!
//! The diagnosis is `harness_engine::views::doctor` (the MCP server's `get_request`
//! gives the same); this module lists, reports and renders it.

use super::overview::{Delegate, agent_chain};
use super::table::{Table, cell, dim, id, styled};
use super::tree::RequestTree;
use super::{ago, request_id};
use crate::context::Ctx;
use crate::output::{self, BOLD, DIM, GREEN, RED, YELLOW, line, paint, status_style};
use anyhow::Result;
use harness_core::*;
use harness_engine::Harness;
pub use harness_engine::views::doctor::{Diagnosis, Stop, diagnose};
use serde::Serialize;
use std::process::ExitCode;
use std::time::Duration;

pub const HELP: &str = "Examples:\n  agent-harness runtime doctor --workspace .\n  \
agent-harness runtime doctor req_01j… --workspace .\n\n\
Without a request: every request that needs a human now (waiting for approval, failed within \
--since, running but idle past runtime.stuck_after, or runnable with no worker to run it), the \
longest waiting first, each with the command to run next. With a request: its tree, where it \
stopped and why, its last events and artifacts, and the suggested next action.\n\n\
Exit status: 0 when nothing needs a human (or the request needs nothing), 1 when something does.\n\
The playbook these steps come from: docs/incident-playbook.md.";

/// Requests examined per status when listing (the newest first).
const SCAN: usize = 200;

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// Diagnose this request (`req_…`) and its delegated children; without it, list
    /// every request that needs a human now.
    pub request: Option<String>,
    /// List failed requests that finished within this long (without REQUEST).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub since: Duration,
    /// How many of the request's last events to show.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub events: usize,
}

// --- the command ---------------------------------------------------------------

#[derive(Serialize)]
struct Triage {
    now: Timestamp,
    worker_alive: bool,
    /// Requests needing a human, the longest waiting first.
    requests: Vec<Attention>,
}

#[derive(Serialize)]
struct Attention {
    request: Request,
    delegates: Vec<Delegate>,
    /// Since when it has been in this state.
    since: Timestamp,
    #[serde(flatten)]
    diagnosis: Diagnosis,
}

#[derive(Serialize)]
struct Report {
    now: Timestamp,
    worker_alive: bool,
    #[serde(flatten)]
    diagnosis: Diagnosis,
    tree: RequestTree,
    /// The tree's last events, oldest first.
    events: Vec<Event>,
}

pub async fn run(ctx: &Ctx, a: DoctorArgs) -> Result<ExitCode> {
    let h = ctx.inspect()?;
    let worker_alive = h.worker_holder().await?.is_some();
    let code = |needs: bool| {
        if needs {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    };
    match a.request {
        Some(id) => {
            let r = report(&h, request_id(&h, &id).await?, worker_alive, a.events).await?;
            let needs = r.diagnosis.needs_human;
            if ctx.json {
                output::print_json(&r)?;
            } else {
                render_report(&r).into_iter().for_each(line);
            }
            Ok(code(needs))
        }
        None => {
            let t = triage(&h, worker_alive, a.since).await?;
            let needs = !t.requests.is_empty();
            if ctx.json {
                output::print_json(&t)?;
            } else {
                render_triage(&t).into_iter().for_each(line);
            }
            Ok(code(needs))
        }
    }
}

fn stuck_after(h: &Harness) -> Duration {
    h.workspace().settings.runtime.stuck_after
}

async fn report(h: &Harness, id: RequestId, worker_alive: bool, events: usize) -> Result<Report> {
    let now = h.now();
    let tree = h.request_tree(&id).await?;
    let diagnosis = diagnose(&tree, worker_alive, now, stuck_after(h));
    let events = h.store().recent_events(tree.ids(), events).await?;
    Ok(Report {
        now,
        worker_alive,
        diagnosis,
        tree,
        events,
    })
}

async fn triage(h: &Harness, worker_alive: bool, since: Duration) -> Result<Triage> {
    let now = h.now();
    let mut statuses = vec![RequestStatus::WaitingApproval, RequestStatus::Failed];
    // Work a live worker is doing is its business unless stuck; without one,
    // everything runnable waits for a human to start something.
    statuses.push(RequestStatus::Running);
    if !worker_alive {
        statuses.push(RequestStatus::Queued);
    }
    let roots = h
        .list_requests(RequestFilter {
            statuses,
            roots_only: true,
            limit: SCAN,
            ..Default::default()
        })
        .await?;
    let cutoff = now.minus(since);
    let mut out = Vec::new();
    for r in roots {
        if r.status == RequestStatus::Failed && r.finished_at.is_some_and(|f| f < cutoff) {
            continue;
        }
        let tree = h.request_tree(&r.id).await?;
        let diagnosis = diagnose(&tree, worker_alive, now, stuck_after(h));
        if !diagnosis.needs_human {
            continue;
        }
        let since = match &diagnosis.stop {
            Stop::Approval { approval, .. } => approval.created_at,
            Stop::InFlight { .. } | Stop::Queued { .. } => r.last_activity_at,
            _ => r.finished_at.unwrap_or(r.last_activity_at),
        };
        out.push(Attention {
            delegates: h.delegates_of(&r.id).await?,
            request: r,
            since,
            diagnosis,
        });
    }
    out.sort_by_key(|a| a.since);
    Ok(Triage {
        now,
        worker_alive,
        requests: out,
    })
}

// --- rendering -----------------------------------------------------------------

fn render_triage(t: &Triage) -> Vec<String> {
    let mut out = vec![worker_line(t.worker_alive)];
    if t.requests.is_empty() {
        out.push(paint(GREEN, "nothing needs a human now"));
        return out;
    }
    out.push(paint(
        BOLD,
        format!(
            "{} request(s) need a human, longest waiting first",
            t.requests.len()
        ),
    ));
    let mut table = Table::new(&["REQUEST", "SESSION", "AGENT", "STATE", "FOR", "WHY"]);
    for a in &t.requests {
        let r = &a.request;
        table.row(vec![
            id(&r.id),
            cell(r.session_id.to_string()),
            cell(agent_chain(&r.agent, &a.delegates)),
            styled(status_style(r.status), r.status.as_str()),
            dim(harness_core::relative(a.since.age(t.now))),
            cell(why(&a.diagnosis.stop)),
        ]);
        if let Some(c) = a.diagnosis.next.commands.first() {
            table.note(paint(DIM, format!("  → {c}")));
        }
    }
    out.extend(table.lines());
    out.push(paint(
        DIM,
        "details and the next action: agent-harness runtime doctor <request>",
    ));
    out
}

fn worker_line(alive: bool) -> String {
    if alive {
        format!("{} {}", paint(BOLD, "worker"), paint(GREEN, "alive"))
    } else {
        format!(
            "{} {} {}",
            paint(BOLD, "worker"),
            paint(YELLOW, "not running"),
            paint(DIM, "(queued work waits: agent-harness serve)")
        )
    }
}

/// One short phrase: why the request is on the list.
fn why(s: &Stop) -> String {
    match s {
        Stop::Approval {
            approval,
            crash_rerun: true,
            ..
        } => format!("crash re-run of `{}` needs approval", approval.tool),
        Stop::Approval { approval, .. } => format!("`{}` needs approval", approval.tool),
        Stop::Failed {
            failing_tools,
            error,
            ..
        } => match failing_tools.first() {
            Some(f) => format!("failed; tool `{}` failed {}×", f.tool, f.count),
            None => format!("failed: {}", output::clip(error, 60)),
        },
        Stop::InFlight {
            what,
            orphaned: true,
            ..
        } => format!("{what} in flight, no worker"),
        Stop::InFlight { what, .. } => format!("stuck in {what}"),
        Stop::Queued { .. } => "queued, no worker".to_string(),
        Stop::Cancelled { .. } => "cancelled".to_string(),
        Stop::Completed => "completed".to_string(),
    }
}

fn render_report(r: &Report) -> Vec<String> {
    let now = r.now;
    let req = &r.tree.request;
    let mut out = vec![
        format!(
            "{} {} {}",
            paint(BOLD, &req.id),
            req.agent,
            paint(status_style(req.status), req.status.as_str())
        ),
        format!(
            "  {}",
            paint(
                DIM,
                format!(
                    "session {} · trace {} · attempt {} · last activity {}",
                    req.session_id,
                    req.trace_id,
                    req.attempt,
                    ago(now, req.last_activity_at)
                )
            )
        ),
        String::new(),
        paint(BOLD, "tree"),
    ];
    tree_lines(&r.tree, "  ", &mut out);
    out.push(String::new());
    out.push(paint(BOLD, "stopped"));
    out.extend(
        stop_lines(&r.diagnosis.stop, now)
            .into_iter()
            .map(|l| format!("  {l}")),
    );
    out.push(String::new());
    out.push(paint(BOLD, format!("last {} events", r.events.len())));
    if r.events.is_empty() {
        out.push(format!("  {}", paint(DIM, "none")));
    }
    out.extend(
        r.events
            .iter()
            .map(|e| format!("  {}", output::event_line(e))),
    );
    let artifacts = all_artifacts(&r.tree);
    if !artifacts.is_empty() {
        out.push(String::new());
        out.push(paint(BOLD, "artifacts"));
        for a in artifacts {
            out.push(format!(
                "  {} v{} {} {}",
                a.name,
                a.version,
                paint(DIM, format!("{}, {} bytes", a.media_type, a.size)),
                paint(DIM, format!("({})", a.request_id))
            ));
        }
    }
    out.push(String::new());
    let next = &r.diagnosis.next;
    let style = if r.diagnosis.needs_human {
        YELLOW
    } else {
        GREEN
    };
    out.push(format!("{} {}", paint(style.bold(), "next:"), next.summary));
    out.extend(next.commands.iter().map(|c| format!("  {c}")));
    out
}

/// One line per request of the tree: agent, status, steps, indented by depth.
pub(crate) fn tree_lines(t: &RequestTree, indent: &str, out: &mut Vec<String>) {
    let r = &t.request;
    let current = match (&r.current_agent, r.status.is_terminal()) {
        (Some(c), false) if c != &r.agent => format!(" (now in {c})"),
        _ => String::new(),
    };
    out.push(format!(
        "{indent}{} {} {}{}",
        paint(BOLD, &r.agent),
        paint(status_style(r.status), r.status.as_str()),
        paint(DIM, format!("{} · {} steps", r.id, r.steps)),
        current
    ));
    for c in t.children() {
        tree_lines(c, &format!("{indent}  └ "), out);
    }
}

fn all_artifacts(t: &RequestTree) -> Vec<&Artifact> {
    let mut out: Vec<&Artifact> = t.artifacts.iter().collect();
    for c in t.children() {
        out.extend(all_artifacts(c));
    }
    out
}

fn stop_lines(s: &Stop, now: Timestamp) -> Vec<String> {
    match s {
        Stop::Approval {
            request_id,
            agent,
            approval,
            crash_rerun,
        } => {
            let mut v = vec![format!(
                "{} on approval {} of `{}` by {agent} ({request_id}), asked {}",
                paint(YELLOW, "waiting"),
                approval.id,
                approval.tool,
                ago(now, approval.created_at)
            )];
            v.push(format!(
                "arguments: {}",
                output::clip(&approval.arguments.to_string(), 160)
            ));
            let reason = approval
                .reason
                .clone()
                .unwrap_or_else(|| format!("the tool `{}` requires approval", approval.tool));
            v.push(format!("reason: {reason}"));
            if *crash_rerun {
                v.push(paint(
                    RED,
                    "this call may or may not have taken effect: check before approving a re-run",
                ));
            }
            v.push(format!("expires {}", approval.expires_at));
            v
        }
        Stop::Failed {
            request_id,
            agent,
            error,
            failing_tools,
        } => {
            let mut v = vec![format!(
                "{} in {agent} ({request_id}): {error}",
                paint(RED, "failed")
            )];
            for f in failing_tools {
                v.push(format!(
                    "tool `{}` returned an error {} time(s), last: {}",
                    f.tool,
                    f.count,
                    output::clip(f.last_error.trim(), 120)
                ));
            }
            v
        }
        Stop::Cancelled { error, .. } => vec![format!(
            "{}{}",
            paint(RED, "cancelled"),
            error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )],
        Stop::InFlight {
            request_id,
            agent,
            what,
            since,
            stuck,
            orphaned,
        } => {
            let state = if *orphaned {
                paint(RED, "interrupted")
            } else if *stuck {
                paint(RED, "stuck")
            } else {
                paint(GREEN, "running")
            };
            let mut v = vec![format!(
                "{state}: {what} in {agent} ({request_id}) since {}",
                ago(now, *since)
            )];
            if *orphaned {
                v.push(
                    "no live worker holds the workspace: the run stopped with its worker"
                        .to_string(),
                );
            }
            v
        }
        Stop::Queued {
            since,
            no_worker,
            waits_for,
            ..
        } => vec![format!(
            "{} since {}{}",
            paint(YELLOW, "queued"),
            ago(now, *since),
            match (no_worker, waits_for) {
                (true, _) => ": no worker is running".to_string(),
                (false, Some(w)) => format!(", waiting for {w}"),
                (false, None) => ", waiting for a worker slot".to_string(),
            }
        )],
        Stop::Completed => vec![paint(GREEN, "completed")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::tree::StepNode;

    const T: Timestamp = Timestamp(1_000_000_000);
    const STUCK: Duration = Duration::from_secs(300);

    fn request(agent: &str, status: RequestStatus, parent: Option<&RequestId>) -> Request {
        Request {
            id: RequestId::generate(),
            session_id: SessionId::parse("s1").unwrap(),
            agent: agent.into(),
            parent_id: parent.cloned(),
            status,
            attempt: 1,
            current_agent: Some(agent.into()),
            input: "go".into(),
            output: None,
            error: None,
            trace_id: "t".into(),
            created_at: T,
            started_at: Some(T),
            last_activity_at: T,
            finished_at: None,
            steps: 0,
            worker_id: None,
            retry_of: None,
            priority: 0,
            traceparent: None,
        }
    }

    fn tree(request: Request, steps: Vec<StepNode>, approvals: Vec<Approval>) -> RequestTree {
        RequestTree {
            request,
            duration_ms: None,
            steps,
            approvals,
            artifacts: Vec::new(),
            usage: UsageTotals::default(),
            retries: Vec::new(),
            waits_for: None,
        }
    }

    fn call(
        r: &Request,
        idx: u32,
        tool: &str,
        status: StepStatus,
        outcome: Option<ToolOutcome>,
    ) -> StepNode {
        StepNode {
            step: Step {
                request_id: r.id.clone(),
                idx,
                agent: r.agent.clone(),
                status,
                started_at: T,
                finished_at: None,
                body: StepBody::ToolCall {
                    call: ToolCall {
                        call_id: CallId::generate(),
                        tool: tool.into(),
                        arguments: serde_json::json!({}),
                    },
                    approval_id: None,
                    outcome,
                    child_request_id: None,
                },
            },
            duration_ms: None,
            approval_wait_ms: None,
            approval: None,
            artifacts: Vec::new(),
            child: None,
        }
    }

    fn delegation(parent: &Request, idx: u32, child: RequestTree) -> StepNode {
        let mut n = call(parent, idx, "delegate", StepStatus::Started, None);
        n.child = Some(Box::new(child));
        n
    }

    fn failure(text: &str) -> Option<ToolOutcome> {
        Some(ToolOutcome {
            ok: false,
            content: text.into(),
            artifact: None,
        })
    }

    #[test]
    fn a_crash_rerun_in_a_child_is_what_the_tree_waits_for() {
        let root = request("assistant", RequestStatus::WaitingApproval, None);
        let child = request("researcher", RequestStatus::WaitingApproval, Some(&root.id));
        let step = call(&child, 0, "send_mail", StepStatus::AwaitingApproval, None);
        let StepBody::ToolCall { call: c, .. } = &step.step.body else {
            unreachable!()
        };
        let mut a = Approval::for_call(
            c,
            &child.id,
            &child.session_id,
            "researcher",
            0,
            T,
            T.plus(STUCK),
        );
        a.reason = Some(Approval::rerun_reason(&c.call_id));
        let t = tree(
            root.clone(),
            vec![delegation(
                &root,
                0,
                tree(child.clone(), vec![step], vec![a.clone()]),
            )],
            vec![],
        );
        let d = diagnose(&t, true, T, STUCK);
        let Stop::Approval {
            request_id,
            crash_rerun,
            ..
        } = &d.stop
        else {
            panic!("{:?}", d.stop)
        };
        assert_eq!(request_id, &child.id);
        assert!(crash_rerun);
        assert!(d.needs_human);
        assert_eq!(d.next.action, "approve");
        assert!(
            d.next.summary.contains("may or may not have taken effect"),
            "{}",
            d.next.summary
        );
        assert_eq!(
            d.next.commands[0],
            format!("agent-harness runtime approvals approve {}", a.id)
        );
    }

    #[test]
    fn a_failure_names_the_tool_that_failed_most_across_the_tree() {
        let mut root = request("assistant", RequestStatus::Failed, None);
        root.error = Some("delegate failed".into());
        let mut child = request("deployer", RequestStatus::Failed, Some(&root.id));
        child.error = Some("scripted model: no turn 4".into());
        let steps = vec![
            call(
                &child,
                0,
                "deploy",
                StepStatus::Completed,
                failure("refused"),
            ),
            call(&child, 1, "lint", StepStatus::Completed, failure("warning")),
            call(
                &child,
                2,
                "deploy",
                StepStatus::Completed,
                failure("timed out"),
            ),
        ];
        let t = tree(
            root.clone(),
            vec![delegation(&root, 0, tree(child.clone(), steps, vec![]))],
            vec![],
        );
        let d = diagnose(&t, true, T, STUCK);
        let Stop::Failed {
            request_id,
            error,
            failing_tools,
            ..
        } = &d.stop
        else {
            panic!()
        };
        assert_eq!(request_id, &child.id, "the deepest failure is the cause");
        assert_eq!(error, "scripted model: no turn 4");
        assert_eq!(
            (failing_tools[0].tool.as_str(), failing_tools[0].count),
            ("deploy", 2)
        );
        assert_eq!(failing_tools[0].last_error, "timed out");
        assert_eq!(d.next.action, "code_fix");
        assert_eq!(
            d.next.commands,
            vec![format!("agent-harness runtime requests retry {}", root.id)]
        );
    }

    #[test]
    fn a_failure_already_retried_points_at_its_retry() {
        let mut root = request("assistant", RequestStatus::Failed, None);
        root.error = Some("provider timed out".into());
        let mut t = tree(root.clone(), vec![], vec![]);
        assert!(diagnose(&t, true, T, STUCK).needs_human);
        let retry = RequestId::generate();
        t.retries.push(harness_engine::views::Retry {
            id: retry.clone(),
            status: RequestStatus::Running,
            created_at: T,
        });
        let d = diagnose(&t, true, T, STUCK);
        assert!(!d.needs_human, "the retry is where the work is now");
        assert_eq!(d.next.action, "none");
        assert!(
            d.next.summary.contains(retry.as_str()),
            "{}",
            d.next.summary
        );
        assert_eq!(
            d.next.commands,
            vec![format!("agent-harness runtime doctor {retry}")]
        );
    }

    #[test]
    fn running_work_needs_a_human_only_when_stuck_or_without_a_worker() {
        let root = request("assistant", RequestStatus::Running, None);
        let t = tree(
            root.clone(),
            vec![call(&root, 0, "deploy", StepStatus::Started, None)],
            vec![],
        );
        let fresh = diagnose(&t, true, T.plus(Duration::from_secs(10)), STUCK);
        assert!(!fresh.needs_human);
        let Stop::InFlight { what, .. } = &fresh.stop else {
            panic!()
        };
        assert!(what.starts_with("tool deploy (call_"), "{what}");

        let stuck = diagnose(&t, true, T.plus(STUCK), STUCK);
        assert!(stuck.needs_human);
        assert_eq!(stuck.next.action, "investigate");

        let orphaned = diagnose(&t, false, T, STUCK);
        assert!(orphaned.needs_human);
        assert_eq!(orphaned.next.action, "start_worker");
        assert_eq!(
            orphaned.next.commands,
            vec![
                "agent-harness serve".to_string(),
                format!("agent-harness runtime requests resume {}", root.id)
            ]
        );
    }

    #[test]
    fn queued_work_waits_for_a_worker_only_when_none_runs() {
        let root = request("assistant", RequestStatus::Queued, None);
        let t = tree(root, vec![], vec![]);
        assert!(!diagnose(&t, true, T, STUCK).needs_human);
        let d = diagnose(&t, false, T, STUCK);
        assert!(d.needs_human);
        assert_eq!(d.next.action, "start_worker");
    }

    #[test]
    fn settled_requests_need_nothing() {
        for status in [RequestStatus::Completed, RequestStatus::Cancelled] {
            let t = tree(request("assistant", status, None), vec![], vec![]);
            let d = diagnose(&t, false, T, STUCK);
            assert!(!d.needs_human, "{status}");
        }
    }
}
