//! `runtime requests show ID`: a request as a tree of steps, with delegated child
//! requests indented under the step that delegated, and approvals and artifacts
//! in place.

use super::approvals::status_style as approval_style;
use super::{ago, duration, millis_between, request_id};
use crate::context::Ctx;
use crate::output::{self, BOLD, DIM, GREEN, RED, YELLOW, line, paint, status_style};
use anyhow::Result;
use harness_core::*;
use harness_engine::Harness;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

/// Delegation deeper than this is cut (a guard against cycles in damaged records).
const MAX_DEPTH: usize = 16;
/// Events printed at the end of `requests show`.
const LAST_EVENTS: usize = 5;

#[derive(Serialize)]
pub struct RequestTree {
    pub request: Request,
    pub duration_ms: Option<i64>,
    pub steps: Vec<StepNode>,
    /// Every approval raised by this request.
    pub approvals: Vec<Approval>,
    /// Every artifact of this request (those a step produced also appear under it).
    pub artifacts: Vec<Artifact>,
    /// Tokens of this request's own model turns (a delegated child's are in its tree).
    pub usage: UsageTotals,
    /// The requests admitted by `requests retry` of this one, oldest first (its
    /// own `retry_of` says what it retries).
    pub retries: Vec<Retry>,
    /// A queued root: what it waits for (a limit and who holds it, its session's
    /// earlier request, or a worker slot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waits_for: Option<super::waiting::WaitsFor>,
}

#[derive(Serialize)]
pub struct Retry {
    pub id: RequestId,
    pub status: RequestStatus,
    pub created_at: Timestamp,
}

#[derive(Serialize)]
pub struct StepNode {
    #[serde(flatten)]
    pub step: Step,
    /// How long the step took, not counting a wait for its approval.
    pub duration_ms: Option<i64>,
    /// How long its approval took to be decided (a call that needed one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_wait_ms: Option<i64>,
    pub approval: Option<Approval>,
    pub artifacts: Vec<Artifact>,
    /// For a `delegate` call: the child request's own tree.
    pub child: Option<Box<RequestTree>>,
}

pub async fn show(ctx: &Ctx, id: &str) -> Result<ExitCode> {
    let h = ctx.inspect()?;
    let id = request_id(&h, id).await?;
    let tree = load(&h, id, 0).await?;
    if ctx.json {
        output::print_json(&tree)?;
    } else {
        render(&tree, h.now()).into_iter().for_each(line);
        let notes = super::notes::of(&h, &super::doctor::tree_ids(&tree)).await?;
        if !notes.is_empty() {
            line(String::new());
            line(paint(BOLD, "notes"));
            notes
                .iter()
                .for_each(|e| line(format!("  {}", super::notes::line_of(e))));
        }
        // Like `kubectl describe`: what happened last, where the eye ends.
        let events = h
            .store()
            .recent_events(super::doctor::tree_ids(&tree), LAST_EVENTS)
            .await?;
        if !events.is_empty() {
            line(String::new());
            line(paint(BOLD, format!("last {} events", events.len())));
            events
                .iter()
                .for_each(|e| line(format!("  {}", output::event_line(e))));
        }
    }
    Ok(ExitCode::SUCCESS)
}

type Loading<'a> = Pin<Box<dyn Future<Output = Result<RequestTree>> + Send + 'a>>;

pub fn load(h: &Harness, id: RequestId, depth: usize) -> Loading<'_> {
    Box::pin(async move {
        let request = h.get_request(&id).await?;
        let store = h.store();
        let steps = store.steps(&id).await?;
        let approvals = h
            .list_approvals(ApprovalFilter {
                request_id: Some(id.clone()),
                ..Default::default()
            })
            .await?;
        let artifacts = store.artifacts(&id).await?;
        let usage = store
            .request_usage(vec![id.clone()])
            .await?
            .remove(&id)
            .unwrap_or_default();
        let retries = if request.parent_id.is_none() {
            h.list_requests(RequestFilter {
                retry_of: Some(id.clone()),
                order: RequestOrder::Oldest,
                ..Default::default()
            })
            .await?
            .into_iter()
            .map(|r| Retry {
                id: r.id,
                status: r.status,
                created_at: r.created_at,
            })
            .collect()
        } else {
            Vec::new()
        };
        let waits_for = match request.status {
            RequestStatus::Queued if request.parent_id.is_none() => {
                let (waits, holds) = (h.waits().await?, h.holds().await?);
                super::waiting::of(h, &request, &waits, &holds).await?
            }
            RequestStatus::Running => {
                super::waiting::of_running(&request, &h.rate_limit_status().await?)
            }
            _ => None,
        };
        let made = made_by_steps(&steps, &artifacts);
        let mut nodes = Vec::with_capacity(steps.len());
        for (step, made) in steps.into_iter().zip(made) {
            nodes.push(node(h, step, &approvals, made, depth).await?);
        }
        Ok(RequestTree {
            duration_ms: millis_between(
                request.started_at.unwrap_or(request.created_at),
                request.finished_at,
            ),
            request,
            steps: nodes,
            approvals,
            artifacts,
            usage,
            retries,
            waits_for,
        })
    })
}

/// The first request of the tree (itself, then its delegated children) that waits
/// for something, and what.
fn first_wait(t: &RequestTree) -> Option<(&RequestId, &super::waiting::WaitsFor)> {
    if let Some(w) = &t.waits_for {
        return Some((&t.request.id, w));
    }
    t.steps
        .iter()
        .filter_map(|s| s.child.as_deref())
        .find_map(first_wait)
}

/// The artifact each step stored, by position: versions of a name are numbered in
/// the order they were written, so the k-th call that stored `name` made its k-th
/// committed version. A model turn's is its raw response, by id.
fn made_by_steps(steps: &[Step], artifacts: &[Artifact]) -> Vec<Vec<Artifact>> {
    let mut seen: std::collections::HashMap<&str, usize> = Default::default();
    steps
        .iter()
        .map(|step| {
            if let StepBody::ModelTurn { info, .. } = &step.body {
                let raw = info.raw_artifact.as_ref();
                return artifacts
                    .iter()
                    .filter(|a| Some(&a.id) == raw)
                    .cloned()
                    .collect();
            }
            let StepBody::ToolCall {
                outcome:
                    Some(ToolOutcome {
                        artifact: Some(name),
                        ..
                    }),
                ..
            } = &step.body
            else {
                return Vec::new();
            };
            let k = seen.entry(name.as_str()).or_default();
            let mut versions: Vec<&Artifact> =
                artifacts.iter().filter(|a| &a.name == name).collect();
            versions.sort_by_key(|a| a.version);
            let made = versions.get(*k).map(|a| (*a).clone());
            *k += 1;
            made.into_iter().collect()
        })
        .collect()
}

async fn node(
    h: &Harness,
    step: Step,
    approvals: &[Approval],
    made: Vec<Artifact>,
    depth: usize,
) -> Result<StepNode> {
    let (approval, child_id) = match &step.body {
        StepBody::ToolCall {
            approval_id,
            child_request_id,
            ..
        } => (
            approval_id
                .as_ref()
                .and_then(|a| approvals.iter().find(|x| &x.id == a).cloned()),
            child_request_id.clone(),
        ),
        StepBody::ModelTurn { .. } => (None, None),
    };
    let child = match child_id {
        Some(c) if depth < MAX_DEPTH => Some(Box::new(load(h, c, depth + 1).await?)),
        _ => None,
    };
    // A call that waited for approval ran from the decision on.
    let decided = approval.as_ref().and_then(|a| a.decided_at);
    Ok(StepNode {
        duration_ms: millis_between(decided.unwrap_or(step.started_at), step.finished_at),
        approval_wait_ms: decided.map(|d| (d.0 - step.started_at.0).max(0)),
        step,
        approval,
        artifacts: made,
        child,
    })
}

pub fn render(t: &RequestTree, now: Timestamp) -> Vec<String> {
    let r = &t.request;
    let mut out = vec![header(t, "")];
    let mut meta = format!(
        "session {} · trace {} · created {}",
        r.session_id,
        r.trace_id,
        ago(now, r.created_at)
    );
    if r.priority != 0 {
        meta.push_str(&format!(" · priority {}", r.priority));
    }
    if let Some(f) = r.finished_at {
        meta.push_str(&format!(" · finished {}", ago(now, f)));
    }
    out.push(format!("  {}", paint(DIM, meta)));
    if let Some(original) = &r.retry_of {
        out.push(format!("  {} {original}", paint(BOLD, "retry of:")));
    }
    if !t.retries.is_empty() {
        let retries: Vec<String> = t
            .retries
            .iter()
            .map(|x| {
                format!(
                    "{} ({})",
                    x.id,
                    paint(status_style(x.status), x.status.as_str())
                )
            })
            .collect();
        out.push(format!(
            "  {} {}",
            paint(BOLD, "retried as:"),
            retries.join(", ")
        ));
    }
    if let Some((id, w)) = first_wait(t) {
        let whose = match id == &r.id {
            true => String::new(),
            false => format!("(in {id}) "),
        };
        out.push(format!(
            "  {} {whose}{}",
            paint(BOLD, "waits for:"),
            super::waiting::text(w, now)
        ));
    }
    out.push(format!(
        "  {} {}",
        paint(BOLD, "input:"),
        output::clip(&r.input, 100)
    ));
    steps(t, "  ", now, &mut out);
    if let Some(o) = &r.output {
        out.push(format!(
            "  {} {}",
            paint(GREEN.bold(), "output:"),
            output::clip(o, 200)
        ));
    }
    if let Some(e) = &r.error {
        out.push(format!("  {} {}", paint(RED.bold(), "error:"), e));
    }
    out
}

fn header(t: &RequestTree, indent: &str) -> String {
    let r = &t.request;
    let took = t
        .duration_ms
        .map(|ms| {
            format!(
                " · {}",
                duration(std::time::Duration::from_millis(ms as u64))
            )
        })
        .unwrap_or_default();
    format!(
        "{indent}{} {} {}{}",
        paint(BOLD, &r.id),
        r.agent,
        paint(status_style(r.status), r.status.as_str()),
        paint(
            DIM,
            format!(
                " · {} steps · attempt {}{took}{}",
                r.steps,
                r.attempt,
                tree_tokens(t)
            )
        )
    )
}

/// ` · tokens …` for a request that used any (its own, and with what it delegated
/// when that used some too); nothing otherwise.
fn tree_tokens(t: &RequestTree) -> String {
    let total = total_usage(t);
    if total.is_empty() {
        return String::new();
    }
    let own = output::tokens(&t.usage);
    if total == t.usage {
        format!(" · {own}")
    } else {
        format!(" · {} with delegated", output::tokens(&total))
    }
}

fn total_usage(t: &RequestTree) -> UsageTotals {
    let mut sum = t.usage;
    for child in t.steps.iter().filter_map(|n| n.child.as_deref()) {
        let c = total_usage(child);
        sum.input_tokens += c.input_tokens;
        sum.output_tokens += c.output_tokens;
        sum.turns += c.turns;
    }
    sum
}

fn steps(t: &RequestTree, indent: &str, now: Timestamp, out: &mut Vec<String>) {
    for n in &t.steps {
        out.push(step_line(n, t.request.status, indent));
        let deeper = format!("{indent}     ");
        if let Some(a) = &n.approval {
            out.push(format!("{deeper}{}", approval_line(a, now)));
        }
        for a in &n.artifacts {
            out.push(format!("{deeper}{}", artifact_line(a)));
        }
        if let Some(child) = &n.child {
            out.push(header(child, &deeper));
            steps(child, &format!("{deeper}  "), now, out);
            if let Some(e) = &child.request.error {
                out.push(format!("{deeper}  {} {e}", paint(RED, "error:")));
            }
        }
    }
    let placed: Vec<&ArtifactId> = t
        .steps
        .iter()
        .flat_map(|n| n.artifacts.iter().map(|a| &a.id))
        .collect();
    for a in t.artifacts.iter().filter(|a| !placed.contains(&&a.id)) {
        out.push(format!("{indent}{}", artifact_line(a)));
    }
}

fn step_line(n: &StepNode, request: RequestStatus, indent: &str) -> String {
    let s = &n.step;
    // A call left started or awaiting approval by a request that then finished
    // (cancelled, failed) never ran: say so rather than `running`.
    let never_ran = request.is_terminal()
        && matches!(s.status, StepStatus::Started | StepStatus::AwaitingApproval)
        && matches!(&s.body, StepBody::ToolCall { outcome: None, .. });
    let (name, summary) = match &s.body {
        StepBody::ModelTurn { turn, info } => ("model".to_string(), turn_summary(turn, info)),
        StepBody::ToolCall {
            call,
            outcome,
            child_request_id,
            ..
        } => (
            call.tool.clone(),
            call_summary(s.status, outcome.as_ref(), child_request_id.as_ref()),
        ),
    };
    let (status, style, summary) = if never_ran {
        ("not run", DIM, format!("not run: the request {request}"))
    } else {
        (s.status.as_str(), step_style(s.status), summary)
    };
    let took = n
        .duration_ms
        .filter(|_| !never_ran)
        .map(|ms| duration(std::time::Duration::from_millis(ms as u64)))
        .unwrap_or_else(|| "-".to_string());
    let waited = n
        .approval_wait_ms
        .map(|ms| {
            paint(
                DIM,
                format!(
                    " · waited {} for approval",
                    duration(std::time::Duration::from_millis(ms as u64))
                ),
            )
        })
        .unwrap_or_default();
    format!(
        "{indent}{} {} {} {}  {summary}{waited}",
        paint(DIM, format!("#{:<3}", s.idx)),
        paint(BOLD, format!("{name:<14}")),
        paint(style, format!("{status:<17}")),
        paint(DIM, format!("{took:>7}")),
    )
}

fn step_style(s: StepStatus) -> anstyle::Style {
    match s {
        StepStatus::Completed => anstyle::Style::new(),
        StepStatus::AwaitingApproval => YELLOW,
        StepStatus::Started => crate::output::CYAN,
        StepStatus::Interrupted => RED,
    }
}

fn turn_summary(turn: &ModelTurn, info: &TurnInfo) -> String {
    let said = match turn {
        ModelTurn::Text { text } => format!("answer: {}", output::clip(text, 80)),
        ModelTurn::ToolCalls { calls, .. } => {
            let names: Vec<&str> = calls.iter().map(|c| c.tool.as_str()).collect();
            format!("calls {}", names.join(", "))
        }
    };
    let mut how = Vec::new();
    if let Some(u) = &info.usage {
        how.push(output::turn_tokens(u));
    }
    if info.stop_reason == Some(StopReason::MaxTokens) {
        how.push("cut at max_tokens".to_string());
    }
    if let Some(n) = info.attempts.filter(|n| *n > 1) {
        how.push(format!("{n} attempts"));
    }
    if how.is_empty() {
        return said;
    }
    format!("{said} {}", paint(DIM, format!("· {}", how.join(" · "))))
}

fn call_summary(
    status: StepStatus,
    outcome: Option<&ToolOutcome>,
    child: Option<&RequestId>,
) -> String {
    let delegated = child.map(|c| format!("→ {c} ")).unwrap_or_default();
    match (status, outcome) {
        (_, Some(o)) => format!(
            "{delegated}{}: {}",
            if o.ok { "ok" } else { "error" },
            output::clip(&o.content, 70)
        ),
        (StepStatus::AwaitingApproval, None) => "waiting for approval".to_string(),
        (StepStatus::Interrupted, None) => "interrupted before completing".to_string(),
        _ => format!("{delegated}running"),
    }
}

fn approval_line(a: &Approval, now: Timestamp) -> String {
    let who = match (&a.decided_by, a.decided_at) {
        (Some(by), Some(at)) => format!(" by {by} {}", ago(now, at)),
        _ => String::new(),
    };
    let msg = a
        .message
        .as_deref()
        .map(|m| format!(" “{}”", output::clip(m, 60)))
        .unwrap_or_default();
    let edited = if a.edited_arguments.is_some() {
        " (arguments edited)"
    } else {
        ""
    };
    format!(
        "approval {} {}{who}{msg}{edited}",
        a.id,
        paint(approval_style(a.status), a.status.as_str())
    )
}

fn artifact_line(a: &Artifact) -> String {
    // The version only when there are several: most names are written once.
    let name = match a.version {
        1 => a.name.clone(),
        v => format!("{} v{v}", a.name),
    };
    format!(
        "artifact {} {}",
        paint(BOLD, name),
        paint(
            DIM,
            format!(
                "({}, {} bytes, sha256 {})",
                a.media_type,
                a.size,
                &a.sha256[..a.sha256.len().min(12)]
            )
        )
    )
}
