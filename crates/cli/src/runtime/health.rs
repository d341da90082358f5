//! `runtime health`: each named check with its status and detail.

use super::table::{Table, cell, styled};
use crate::context::Ctx;
use crate::output::{self, BOLD, health_style, line, paint};
use anyhow::Result;
use harness_core::{HealthCheck, HealthReport, HealthStatus};
use harness_engine::{HarnessError, StoreError};
use std::process::ExitCode;

pub const HELP: &str = "Example:\n  agent-harness runtime health --workspace . || echo unhealthy\n\n\
Checks: store (reachable, integrity: the worker's last periodic check on large stores; --deep runs it now), queue (depth vs capacity), worker (alive when work is queued; warns when its heartbeat, every 2 s, is over 6 s old: \
its writes are not reaching the store; on PostgreSQL every worker: fails for one dead, or silent past its lease, \
that holds running requests, warns for one that died without stopping within the hour), stranded_requests (active requests that nothing can wake; \
the worker repairs them within seconds), stuck_requests (running with no activity past runtime.stuck_after), approvals (near or past expiry), \
disk (free space in the store folder).\n\n\
Exit status: 0 when every check is ok, 6 when any warns (and none fails), 7 when any fails: \
distinct from 1 (the check itself could not run), 2 (bad input, such as a missing workspace) \
and the other codes every command shares.";

#[derive(clap::Args, Debug)]
pub struct HealthArgs {
    /// Run the store's full integrity check now (it reads the whole file) instead of
    /// using the worker's last periodic result.
    #[arg(long)]
    pub deep: bool,
}

pub async fn run(ctx: &Ctx, a: HealthArgs) -> Result<ExitCode> {
    // A store that cannot be opened or read because it is damaged, emptied or gone is
    // a failed `store` check, not an error of this command.
    let report = match &ctx.server {
        Some(_) if a.deep => return Err(crate::remote::not_remote("runtime health --deep")),
        // The server's report (its store checks are its own).
        Some(_) => ctx.source()?.health().await?,
        None => local_report(ctx, &a).await?,
    };
    if ctx.json {
        output::print_json(&report)?;
    } else {
        for l in lines(&report) {
            line(l);
        }
    }
    Ok(exit_code(report.status))
}

async fn local_report(ctx: &Ctx, a: &HealthArgs) -> Result<HealthReport> {
    Ok(match ctx.inspect() {
        Ok(h) => {
            let checked = if a.deep {
                h.health_deep().await
            } else {
                h.health().await
            };
            match checked {
                Ok(r) => r,
                Err(e) => match unusable_store(&e) {
                    Some(s) => {
                        store_failed(h.now(), format!("{} is damaged: {s}", h.store().location()))
                    }
                    None => return Err(e.into()),
                },
            }
        }
        Err(e) => match e.downcast_ref::<HarnessError>().and_then(unusable_store) {
            Some(s) => store_failed(crate::context::options()?.clock.now(), s.to_string()),
            None => return Err(e),
        },
    })
}

/// The store error behind `e`, if it says the store is damaged, missing or out of reach.
fn unusable_store(e: &HarnessError) -> Option<&StoreError> {
    match e {
        HarnessError::Store(s)
            if s.is_corrupt()
                || matches!(
                    s,
                    StoreError::Missing { .. } | StoreError::Unavailable { .. }
                ) =>
        {
            Some(s)
        }
        _ => None,
    }
}

/// A report of the one check that could run: the store's, failed.
fn store_failed(now: harness_core::Timestamp, detail: String) -> HealthReport {
    HealthReport::new(
        now,
        vec![HealthCheck {
            name: "store".into(),
            status: HealthStatus::Fail,
            detail,
        }],
    )
}

/// 0 ok, 6 warn, 7 fail (codes no other outcome uses).
pub fn exit_code(s: HealthStatus) -> ExitCode {
    ExitCode::from(match s {
        HealthStatus::Ok => 0,
        HealthStatus::Warn => crate::output::EXIT_HEALTH_WARN,
        HealthStatus::Fail => crate::output::EXIT_HEALTH_FAIL,
    })
}

pub fn lines(r: &HealthReport) -> Vec<String> {
    let mut t = Table::new(&["STATUS", "CHECK", "DETAIL"]);
    for c in &r.checks {
        t.row(vec![
            styled(health_style(c.status), c.status.as_str()),
            cell(&c.name),
            cell(&c.detail),
        ]);
    }
    let mut out = vec![format!(
        "{} {}",
        paint(BOLD, "health:"),
        paint(health_style(r.status).bold(), r.status.as_str())
    )];
    out.extend(t.lines());
    out
}

/// The overall status, then one line per check that is not ok, with its detail.
pub fn summary_from(status: HealthStatus, problems: &[HealthCheck]) -> Vec<String> {
    let mut out = vec![paint(health_style(status).bold(), status.as_str())];
    for c in problems.iter().filter(|c| c.status != HealthStatus::Ok) {
        out.push(format!(
            "{} {}: {}",
            paint(health_style(c.status), c.status.as_str()),
            paint(BOLD, &c.name),
            c.detail
        ));
    }
    out
}
