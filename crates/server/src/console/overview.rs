//! The overview: the same facts as `runtime overview`, from the same projection.

use super::page::{Cx, ago, clip, request_link, status};
use harness_core::*;
use harness_engine::views::{Overview, overview::LISTED};
use maud::{Markup, html};

pub fn render(cx: &Cx, o: &Overview) -> Markup {
    let now = o.now;
    html! {
        h1 { "Overview · " (o.workspace.name) }
        dl.facts #facts {
            dt { "workspace" } dd { (o.workspace.name) " " span.dim { (o.workspace.root.display()) } }
            dt { "store" } dd { code { (o.workspace.store.display()) } }
            @if o.worker.shared {
                dt { "workers" } dd #workers { (workers_text(&o.workers)) }
            } @else {
                dt { "worker" } dd #worker { (worker_text(o, now)) }
            }
            dt { "health" }
            dd #health {
                (status(o.health.status.as_str()))
                @for c in &o.health.problems {
                    br; (status(c.status.as_str())) " " b { (c.name) } ": " (c.detail)
                }
                " · " a href="/console/health" { "every check" }
            }
            dt { "queue" }
            dd #queue {
                (o.queue.queued) " queued / " (o.queue.capacity) " capacity"
                @if o.queue.resuming > 0 { " (+" (o.queue.resuming) " resuming)" }
                " · " (o.queue.running) "/" (o.queue.slots) " running · "
                (o.queue.waiting_approval) " waiting for approval"
            }
            dt { "approvals" }
            dd #approvals {
                @match o.approvals.oldest_created_at {
                    Some(t) if o.approvals.pending > 0 => {
                        a href="/console/approvals" { span.status.st-pending { (o.approvals.pending) " pending" } }
                        " · oldest " (ago(now, t))
                    }
                    _ => { "0 pending" }
                }
            }
            dt { "stuck" }
            dd #stuck {
                @if o.stuck.is_empty() { "none" } @else {
                    span.status.st-fail {
                        @if o.stuck.len() == 100 { "100+" } @else { (o.stuck.len()) }
                        " running request(s) idle"
                    }
                }
            }
            @if !o.limits.is_empty() {
                dt { "limits" }
                dd #limits {
                    @for l in &o.limits { (limit(l, now)) }
                }
            }
            @for r in o.rate_limits.iter().filter(|s| !s.waiting.is_empty() || s.blocked_until.is_some_and(|t| t > now)) {
                dt { "rates" }
                dd {
                    code { (r.key) } " " (r.calls_in_window) " calls in the last minute"
                    @if let Some(t) = r.blocked_until.filter(|t| *t > now) {
                        " · " span.st-warn { "held by the provider (Retry-After) for " (relative(now.age(t))) }
                    }
                    @if let Some(last) = r.waiting.iter().map(|w| w.until).max() {
                        " · " span.st-warn { (r.waiting.len()) " waiting, the last until " (last.to_rfc3339()) }
                    }
                }
            }
            dt { "activity" }
            dd #activity {
                @match &o.last_activity {
                    Some(a) => { "last " (ago(now, a.at)) " " span.dim { "(#" (a.seq) " " (a.kind.as_str()) ")" } }
                    None => { span.dim { "none yet" } }
                }
            }
        }
        @if !o.approvals.oldest.is_empty() {
            h2 { "Oldest pending approvals" }
            table #oldest-approvals {
                thead { tr { th { "approval" } th { "tool" } th { "agent" } th { "request" } th { "age" } th { "reason" } } }
                tbody {
                    @for p in &o.approvals.oldest {
                        tr {
                            td { a.id href={ "/console/approvals#" (p.id) } { (p.id) } }
                            td { (p.tool) } td { (p.agent) } td { (request_link(&p.request_id)) }
                            td { (relative(p.created_at.age(now))) }
                            td { (super::approvals::reason(p)) }
                        }
                    }
                }
            }
            @if o.approvals.pending as usize > o.approvals.oldest.len() {
                p.dim { "… " (o.approvals.pending as usize - o.approvals.oldest.len()) " more on " a href="/console/approvals" { "Approvals" } }
            }
            @if cx.can_act() { p.dim { "Decide them on " a href="/console/approvals" { "Approvals" } "." } }
        }
        @if !o.stuck.is_empty() {
            h2 { "Stuck requests" }
            table #stuck-requests {
                thead { tr { th { "request" } th { "session" } th { "agent" } th { "in flight" } th { "idle" } } }
                tbody {
                    @for s in o.stuck.iter().take(LISTED) {
                        tr {
                            td { (request_link(&s.id)) }
                            td { (s.session_id) }
                            td {
                                (s.agent)
                                @if let Some(c) = s.current_agent.as_ref().filter(|c| **c != s.agent) { " → " (c) }
                            }
                            td {
                                @match (&s.in_flight, s.in_flight_since) {
                                    (Some(w), Some(t)) => { (w) " for " (relative(t.age(now))) }
                                    _ => { "-" }
                                }
                            }
                            td { (relative(s.last_activity_at.age(now))) }
                        }
                    }
                }
            }
        }
        @if o.worker.shared && !o.workers.is_empty() {
            h2 { "Workers" }
            table #worker-rows {
                thead { tr { th { "worker" } th { "host" } th { "pid" } th { "version" } th { "heartbeat" } th { "running" } th { "state" } } }
                tbody {
                    @for w in &o.workers {
                        tr {
                            td.id { (w.id) } td { (w.host) } td { (w.pid) }
                            td { @if w.version.is_empty() { "-" } @else { (w.version) } }
                            td { (ago(now, w.heartbeat_at)) } td { (w.running) }
                            td { (status(w.state.as_str())) }
                        }
                    }
                }
            }
        }
        h2 { "Recent requests" }
        @if o.recent.is_empty() {
            p.dim { "no requests yet: agent-harness run --agent <name> \"…\"" }
        } @else {
            table #recent {
                thead { tr { th { "request" } th { "agent" } th { "status" } th { "current" } th { "steps" } th { "activity" } th { "detail" } } }
                tbody {
                    @for r in &o.recent {
                        @let req = &r.request;
                        tr data-request=(req.id) {
                            td { (request_link(&req.id)) }
                            td {
                                (req.agent)
                                @for d in &r.delegates { " → " (d.agent) }
                            }
                            td { (status(req.status.as_str())) }
                            td {
                                @if req.status.is_terminal() { "-" }
                                @else { (req.current_agent.as_deref().unwrap_or("-")) }
                            }
                            td { (req.steps) }
                            td { (ago(now, req.last_activity_at)) }
                            td {
                                @if matches!(req.status, RequestStatus::Failed | RequestStatus::Cancelled) {
                                    span.st-fail { (clip(req.error.as_deref().unwrap_or(""), 120)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn worker_text(o: &Overview, now: Timestamp) -> Markup {
    let w = &o.worker;
    html! {
        @if w.alive { span.status.st-alive { "alive" } } @else { span.status.st-warn { "not running" } }
        " · "
        @match w.last_heartbeat_at {
            Some(t) => { "last heartbeat " (ago(now, t)) }
            None => { "no worker has ever run" }
        }
        @if let (Some(id), Some(pid)) = (&w.worker_id, w.pid) {
            " " span.dim { "(" (id) ", pid " (pid) ")" }
        }
    }
}

fn workers_text(workers: &[harness_engine::views::WorkerRow]) -> Markup {
    let count = |s: WorkerState| workers.iter().filter(|w| w.state == s).count();
    let (alive, dead, stopped) = (
        count(WorkerState::Alive),
        count(WorkerState::Dead),
        count(WorkerState::Stopped),
    );
    html! {
        @if alive > 0 { span.status.st-alive { (alive) " alive" } } @else { span.status.st-warn { "none alive" } }
        @if dead > 0 { " · " span.status.st-dead { (dead) " dead" } }
        @if stopped > 0 { " · " (stopped) " stopped" }
    }
}

fn limit(l: &harness_engine::views::LimitInfo, now: Timestamp) -> Markup {
    let cap = l
        .capacity
        .map(|c| c.to_string())
        .unwrap_or_else(|| "?".into());
    let full = l.capacity.is_some_and(|c| l.held_by.len() as u32 >= c);
    html! {
        div.limit {
            (describe_key(&l.key)) " "
            span class=(if full { "st-warn" } else { "" }) { (l.held_by.len()) "/" (cap) " held" }
            @if !l.waiting.is_empty() { " · " span.st-warn { (l.waiting.len()) " waiting" } }
            @for x in &l.held_by {
                div.dim.inner { "held by " (describe_holder(x)) " for " (relative(x.acquired_at.age(now))) }
            }
            @for w in l.waiting.iter().take(LISTED) {
                div.dim.inner {
                    (request_link(&w.root_id)) " waits (" (describe_waiter(&w.tool)) " in " (w.request_id) ") since " (ago(now, w.since))
                }
            }
            @if l.waiting.len() > LISTED { div.dim.inner { "… " (l.waiting.len() - LISTED) " more" } }
        }
    }
}

pub(super) fn title(o: &Overview) -> String {
    match o.approvals.pending {
        0 => "Overview".to_string(),
        n => format!("({n}) Overview"),
    }
}
