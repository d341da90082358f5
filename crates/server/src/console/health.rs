//! Health: every check, failing ones first, with its detail.

use super::page::{Cx, ago, status};
use harness_core::*;
use maud::{Markup, html};

pub fn render(cx: &Cx, r: &HealthReport) -> Markup {
    let mut checks: Vec<&HealthCheck> = r.checks.iter().collect();
    // Failing first, then warnings; each group in the engine's order.
    checks.sort_by_key(|c| std::cmp::Reverse(c.status));
    html! {
        h1 { "Health: " span #overall { (status(r.status.as_str())) } }
        p.dim { "checked " (ago(cx.now, r.at)) }
        table #checks {
            thead { tr { th { "status" } th { "check" } th { "detail" } } }
            tbody {
                @for c in checks {
                    tr data-check=(c.name) {
                        td { (status(c.status.as_str())) }
                        td { b { (c.name) } }
                        td { (c.detail) }
                    }
                }
            }
        }
        @if let Some(d) = &r.database {
            h2 { "Database" }
            dl.facts #database {
                dt { "backend" } dd { (d.backend) }
                dt { "location" } dd { code { (d.location) } }
                dt { "reachable" } dd { @if d.reachable { span.st-ok { "yes" } } @else { span.st-fail { "no" } } }
                @if let Some(v) = &d.server_version { dt { "server" } dd { (v) } }
                @if let Some(ms) = d.round_trip_ms { dt { "round trip" } dd { (format!("{ms:.1}")) " ms" } }
                dt { "pool" } dd { (d.pool_in_use) "/" (d.pool_size) " in use, " (d.pool_waiting) " waiting" }
                @if let Some(b) = d.bytes { dt { "size" } dd { (human_bytes(b)) } }
            }
        }
    }
}
