//! A request's timeline: its steps as a tree, delegated children nested under the
//! step that delegated, tool calls with their arguments and results (cut), approvals
//! with their decision, who and message (and the decision forms while pending), and
//! artifacts linked to `GET /v1/artifacts/{id}`. Operators get the request's actions:
//! cancel while a root request is unfinished, retry once it has finished.

use super::page::{Cx, ago, clip, duration, pretty, request_link, status, thousands};
use harness_core::*;
use harness_engine::views::{RequestTree, StepNode};
use maud::{Markup, html};

/// How much of a tool result or model answer the timeline shows.
const RESULT_CHARS: usize = 2000;
/// How much of a call's arguments the timeline shows.
const ARGUMENT_CHARS: usize = 4000;

pub fn render(cx: &Cx, t: &RequestTree, refusal: Option<&str>) -> Markup {
    let r = &t.request;
    html! {
        h1 { "Request " span.id { (r.id) } }
        @if let Some(m) = refusal { p.banner.error #refusal { (m) } }
        (header(t, true))
        @if cx.can_act() && r.parent_id.is_none() { (actions(r)) }
        dl.facts #meta {
            dt { "session" } dd { (r.session_id) }
            dt { "trace" } dd { code { (r.trace_id) } }
            @if let Some(tp) = &r.traceparent { dt { "traceparent" } dd { code { (tp) } } }
            dt { "created" } dd { (ago(cx.now, r.created_at)) }
            @if let Some(f) = r.finished_at { dt { "finished" } dd { (ago(cx.now, f)) } }
            @if r.priority != 0 { dt { "priority" } dd { (r.priority) } }
            @if let Some(p) = &r.parent_id { dt { "delegated by" } dd { (request_link(p)) } }
            @if let Some(o) = &r.retry_of { dt { "retry of" } dd { (request_link(o)) } }
            @if !t.retries.is_empty() {
                dt { "retried as" }
                dd { @for x in &t.retries { (request_link(&x.id)) " (" (status(x.status.as_str())) ") " } }
            }
            @if let Some((id, w)) = t.first_wait() {
                dt { "waits for" }
                dd #waits-for {
                    @if id != &r.id { "(in " (request_link(id)) ") " }
                    (w.text(cx.now))
                }
            }
            dt { "input" } dd { pre.input { (clip(&r.input, RESULT_CHARS)) } }
        }
        h2 { "Timeline" }
        (steps(cx, t))
        @if let Some(o) = &r.output {
            h2 { "Output" }
            pre #output { (clip(o, RESULT_CHARS * 4)) }
        }
        @if let Some(e) = &r.error {
            h2 { "Error" }
            p.banner.error #error { (e) }
        }
    }
}

/// Cancel (with a reason) while the request is unfinished; retry once it is finished.
/// Delegated children have neither: they follow their root.
fn actions(r: &Request) -> Markup {
    html! {
        @if r.status.is_terminal() {
            form.actions method="post" action={ "/console/requests/" (r.id) "/retry" } {
                button #retry type="submit" { "Retry as a new request" }
            }
        } @else {
            form.actions method="post" action={ "/console/requests/" (r.id) "/cancel" } {
                label {
                    "Reason (recorded with the cancellation)"
                    input #cancel-reason type="text" name="reason" size="40" maxlength="500";
                }
                " "
                button.reject #cancel type="submit" { "Cancel request" }
            }
        }
    }
}

/// `assistant completed · 7 steps · attempt 1 · 1.2s · tokens …`; the page's own
/// request's status is `#status`.
fn header(t: &RequestTree, page: bool) -> Markup {
    let r = &t.request;
    let total = total_usage(t);
    html! {
        p.request-head data-request=(r.id) {
            b { (r.agent) } " " span id=[page.then_some("status")] { (status(r.status.as_str())) }
            span.dim {
                " · " (r.steps) " steps · attempt " (r.attempt)
                @if let Some(ms) = t.duration_ms { " · " (duration(ms)) }
                @if !total.is_empty() {
                    " · tokens " (thousands(total.input_tokens)) " in / " (thousands(total.output_tokens)) " out"
                    @if total != t.usage { " with delegated" }
                }
            }
        }
    }
}

fn total_usage(t: &RequestTree) -> UsageTotals {
    let mut sum = t.usage;
    for child in t.children() {
        let c = total_usage(child);
        sum.input_tokens += c.input_tokens;
        sum.output_tokens += c.output_tokens;
        sum.turns += c.turns;
    }
    sum
}

fn steps(cx: &Cx, t: &RequestTree) -> Markup {
    let placed: Vec<&ArtifactId> = t
        .steps
        .iter()
        .flat_map(|n| n.artifacts.iter().map(|a| &a.id))
        .collect();
    html! {
        @if t.steps.is_empty() { p.dim { "no steps yet" } }
        ol.steps {
            @for n in &t.steps { li.step data-step=(n.step.idx) { (step(cx, n, t.request.status)) } }
        }
        @for a in t.artifacts.iter().filter(|a| !placed.contains(&&a.id)) {
            div.inner { (artifact(a)) }
        }
    }
}

fn step(cx: &Cx, n: &StepNode, request: RequestStatus) -> Markup {
    let s = &n.step;
    // A call left started or awaiting approval by a request that then finished
    // never ran: say so rather than `running` (as `requests show` does).
    let never_ran = request.is_terminal()
        && matches!(s.status, StepStatus::Started | StepStatus::AwaitingApproval)
        && matches!(&s.body, StepBody::ToolCall { outcome: None, .. });
    let name = match &s.body {
        StepBody::ModelTurn { .. } => "model",
        StepBody::ToolCall { call, .. } => call.tool.as_str(),
    };
    html! {
        div.step-head {
            span.idx { "#" (s.idx) }
            span.name { (name) }
            @if never_ran { span.status.dim { "not run" } } @else { (status(s.status.as_str())) }
            span.dim {
                @match n.duration_ms.filter(|_| !never_ran) { Some(ms) => { (duration(ms)) } None => { "-" } }
                @if let Some(ms) = n.approval_wait_ms { " · waited " (duration(ms)) " for approval" }
            }
        }
        div.inner {
            @if never_ran {
                span.dim { "not run: the request " (request.as_str()) }
            } @else {
                @match &s.body {
                    StepBody::ModelTurn { turn, info } => { (model_turn(turn, info)) }
                    StepBody::ToolCall { call, outcome, child_request_id, .. } => {
                        (tool_call(call, s.status, outcome.as_ref(), child_request_id.as_ref()))
                    }
                }
            }
            @if let Some(a) = &n.approval { (approval(cx, a)) }
            @for a in &n.artifacts { (artifact(a)) }
            @if let Some(child) = &n.child {
                section.child data-request=(child.request.id) {
                    h3 { "delegated " (request_link(&child.request.id)) }
                    (header(child, false))
                    (steps(cx, child))
                    @if let Some(e) = &child.request.error { p.banner.error { (e) } }
                }
            }
        }
    }
}

fn model_turn(turn: &ModelTurn, info: &TurnInfo) -> Markup {
    html! {
        @match turn {
            ModelTurn::Text { text } => { "answer: " pre.answer { (clip(text, RESULT_CHARS)) } }
            ModelTurn::ToolCalls { calls, text } => {
                "calls "
                @for (i, c) in calls.iter().enumerate() { @if i > 0 { ", " } code { (c.tool) } }
                @if !text.is_empty() { pre.answer { (clip(text, RESULT_CHARS)) } }
            }
        }
        span.dim {
            @if let Some(u) = &info.usage { " · tokens " (thousands(u.input_tokens)) " in / " (thousands(u.output_tokens)) " out" }
            @if info.stop_reason == Some(StopReason::MaxTokens) { " · cut at max_tokens" }
            @if let Some(n) = info.attempts.filter(|n| *n > 1) { " · " (n) " attempts" }
        }
    }
}

fn tool_call(
    call: &ToolCall,
    s: StepStatus,
    outcome: Option<&ToolOutcome>,
    child: Option<&RequestId>,
) -> Markup {
    html! {
        details.arguments {
            summary { "arguments " span.dim.id { (call.call_id) } }
            pre { (clip(&pretty(&call.arguments), ARGUMENT_CHARS)) }
        }
        @if let Some(c) = child { div { "→ " (request_link(c)) } }
        @match (s, outcome) {
            (_, Some(o)) => {
                div.result {
                    @if o.ok { span.st-ok { "ok" } } @else { span.st-fail { "error" } }
                    pre { (clip(&o.content, RESULT_CHARS)) }
                }
            }
            (StepStatus::AwaitingApproval, None) => { div.st-warn { "waiting for approval" } }
            (StepStatus::Interrupted, None) => { div.st-fail { "interrupted before completing" } }
            _ => { div { "running" } }
        }
    }
}

fn approval(cx: &Cx, a: &Approval) -> Markup {
    html! {
        div.approval-line data-approval=(a.id) {
            "approval " span.id { (a.id) } " " (status(a.status.as_str())) " "
            (super::approvals::decision(cx, a))
            @if let Some(m) = &a.message { " “" (m) "”" }
            @if a.status == ApprovalStatus::Pending {
                div.dim { "reason: " (super::approvals::reason(a)) }
                @if cx.can_act() { (super::approvals::forms(a, None)) }
            }
            @if let Some(e) = &a.edited_arguments {
                details { summary { "edited arguments" } pre { (clip(&pretty(e), ARGUMENT_CHARS)) } }
            }
        }
    }
}

fn artifact(a: &Artifact) -> Markup {
    html! {
        div.artifact {
            "artifact "
            a href={ "/v1/artifacts/" (a.id) } {
                b { (a.name) } @if a.version > 1 { " v" (a.version) }
            }
            span.dim { " (" (a.media_type) ", " (a.size) " bytes, sha256 " (a.sha256.get(..12).unwrap_or(&a.sha256)) ")" }
        }
    }
}
