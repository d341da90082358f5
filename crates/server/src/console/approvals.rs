//! Approvals: the pending ones first, each with its request, agent, tool, reason,
//! arguments and age, and for operators the forms that decide it (approve, reject,
//! approve with edited arguments, a message); then the latest decided ones.

use super::page::{Cx, ago, pretty, relative_in, request_link, status};
use harness_core::*;
use maud::{Markup, html};

/// What the operator sent when the engine refused it: shown above the approval,
/// with the form holding what they typed.
pub struct Refusal {
    pub approval_id: String,
    pub message: String,
    pub typed_message: String,
    pub typed_arguments: Option<String>,
}

/// Why an approval is asked: its own reason, else the tool's policy.
pub fn reason(a: &Approval) -> Markup {
    html! {
        @match &a.reason {
            Some(_) if a.is_crash_rerun() => {
                span.st-fail { "crash re-run: may or may not have taken effect" }
                " " span.dim { (a.reason.as_deref().unwrap_or("")) }
            }
            Some(r) => { (r) }
            None => { "tool policy (approval: required)" }
        }
    }
}

pub fn render(
    cx: &Cx,
    pending: &[Approval],
    decided: &[Approval],
    refusal: Option<&Refusal>,
) -> Markup {
    html! {
        h1 { "Approvals" }
        @if let Some(r) = refusal {
            @if !pending.iter().any(|a| a.id.as_str() == r.approval_id) {
                // Decided (or unknown) since: say why here, the form is gone.
                p.banner.error #refusal { (r.approval_id) ": " (r.message) }
            }
        }
        h2 { "Pending (" (pending.len()) ")" }
        @if pending.is_empty() {
            p.dim #no-pending { "nothing waits for a decision" }
        }
        @for a in pending {
            (pending_card(cx, a, refusal.filter(|r| r.approval_id == a.id.as_str())))
        }
        h2 { "Decided" }
        @if decided.is_empty() {
            p.dim { "none yet" }
        } @else {
            table #decided {
                thead { tr { th { "approval" } th { "status" } th { "tool" } th { "agent" } th { "request" } th { "decision" } th { "message" } } }
                tbody {
                    @for a in decided {
                        tr #(a.id) {
                            td.id { (a.id) }
                            td { (status(a.status.as_str())) }
                            td { (a.tool) }
                            td { (a.agent) }
                            td { (request_link(&a.request_id)) }
                            td { (decision(cx, a)) }
                            td { (a.message.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

/// `by otto 3m ago (arguments edited)`, or `expired`.
pub fn decision(cx: &Cx, a: &Approval) -> Markup {
    html! {
        @if let Some(by) = &a.decided_by {
            "by " b.decided-by { (by) }
            @if let Some(at) = a.decided_at { " " (ago(cx.now, at)) }
        }
        @if a.edited_arguments.is_some() { " (arguments edited)" }
    }
}

fn pending_card(cx: &Cx, a: &Approval, refusal: Option<&Refusal>) -> Markup {
    html! {
        article.approval.pending #(a.id) data-approval=(a.id) {
            h3 { code { (a.tool) } " · " (a.agent) " " span.dim.id { (a.id) } }
            @if let Some(r) = refusal { p.banner.error #refusal { (r.message) } }
            dl.facts {
                dt { "request" } dd { (request_link(&a.request_id)) " " span.dim { "session " (a.session_id) } }
                dt { "reason" } dd.reason { (reason(a)) }
                dt { "asked" } dd { (ago(cx.now, a.created_at)) }
                dt { "expires" } dd {
                    @if a.expires_at <= cx.now { span.st-fail { "past expiry" } }
                    @else { "in " (relative_in(cx.now, a.expires_at)) }
                }
            }
            h3 { "Arguments" }
            pre.arguments { (pretty(&a.arguments)) }
            @if cx.can_act() { (forms(a, refusal)) }
        }
    }
}

/// The decision forms of a pending approval (operators only).
pub fn forms(a: &Approval, refusal: Option<&Refusal>) -> Markup {
    let typed = refusal.map(|r| r.typed_message.as_str()).unwrap_or("");
    let args = refusal
        .and_then(|r| r.typed_arguments.clone())
        .unwrap_or_else(|| pretty(&a.arguments));
    let editing = refusal.is_some_and(|r| r.typed_arguments.is_some());
    html! {
        form.decide method="post" action={ "/console/approvals/" (a.id) } {
            label {
                "Message (recorded with the decision; the model sees it on rejection)"
                textarea name="message" id={ "message-" (a.id) } rows="2" {
                    @if !editing { (typed) }
                }
            }
            button.approve type="submit" name="decision" value="approve" { "Approve" }
            button.reject type="submit" name="decision" value="reject" { "Reject" }
        }
        details id={ "edit-" (a.id) } open[editing] {
            summary { "Approve with edited arguments" }
            form.decide method="post" action={ "/console/approvals/" (a.id) } {
                input type="hidden" name="decision" value="edit";
                label {
                    "Arguments (a JSON object, checked against the tool's schema)"
                    textarea name="arguments" id={ "arguments-" (a.id) } rows="8" { (args) }
                }
                label {
                    "Message"
                    textarea name="message" id={ "edit-message-" (a.id) } rows="2" {
                        @if editing { (typed) }
                    }
                }
                button.approve type="submit" { "Approve with these arguments" }
            }
        }
    }
}
