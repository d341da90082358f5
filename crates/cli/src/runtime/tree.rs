//! `runtime requests show ID`: a request as a tree of steps, with delegated child
//! requests indented under the step that delegated, and approvals and artifacts
//! in place.

use super::approvals::status_style as approval_style;
use super::source::Source;
use super::{ago, duration, request_id_in};
use crate::context::Ctx;
use crate::output::{self, BOLD, DIM, GREEN, RED, YELLOW, line, paint, status_style};
use anyhow::Result;
use harness_core::*;
pub use harness_engine::views::{RequestTree, StepNode};
use std::process::ExitCode;

/// Events printed at the end of `requests show`.
const LAST_EVENTS: usize = 5;

pub async fn show(ctx: &Ctx, id: &str) -> Result<ExitCode> {
    let src = ctx.source()?;
    let id = request_id_in(&src, id).await?;
    let tree = src.request_tree(&id).await?;
    if ctx.json {
        output::print_json(&tree)?;
        return Ok(ExitCode::SUCCESS);
    }
    render(&tree, src.now()?).into_iter().for_each(line);
    let Source::Local(h) = &src else {
        // The API has no route for a request's notes and last events (reading them
        // from the event stream means reading the whole log): say so rather than
        // leave them out silently.
        line(String::new());
        line(paint(
            DIM,
            "notes and last events are not shown with --server: see them with `runtime events --request ID`",
        ));
        return Ok(ExitCode::SUCCESS);
    };
    let notes = super::notes::of(h, &tree.ids()).await?;
    if !notes.is_empty() {
        line(String::new());
        line(paint(BOLD, "notes"));
        notes
            .iter()
            .for_each(|e| line(format!("  {}", super::notes::line_of(e))));
    }
    // Like `kubectl describe`: what happened last, where the eye ends.
    let events = h.store().recent_events(tree.ids(), LAST_EVENTS).await?;
    if !events.is_empty() {
        line(String::new());
        line(paint(BOLD, format!("last {} events", events.len())));
        events
            .iter()
            .for_each(|e| line(format!("  {}", output::event_line(e))));
    }
    Ok(ExitCode::SUCCESS)
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
    if let Some((id, w)) = t.first_wait() {
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
