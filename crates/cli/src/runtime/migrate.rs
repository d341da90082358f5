//! `runtime migrate-store --to postgres`: copy the workspace's SQLite store into
//! PostgreSQL, check the copy, and say how to switch.

use crate::context::Ctx;
use crate::output::{self, BOLD, DIM, GREEN, RED, line, paint};
use anyhow::Result;
use harness_store::{CopyReport, PgConfig, Store, StoreConfig, StoreOptions};
use serde::Serialize;
use std::process::ExitCode;

pub const HELP: &str = "Examples:\n  \
AH_DATABASE_URL=postgres://USER:PASSWORD@HOST:5432/DB agent-harness runtime migrate-store --to postgres --workspace .\n  \
agent-harness runtime migrate-store --to postgres --url-env AH_DATABASE_URL --schema agent_harness --json\n\n\
Copies every record of the workspace's SQLite store (sessions, requests, steps, approvals, \
events with their seqs, artifacts and their contents) into an empty PostgreSQL schema, then \
reads both back and compares each table's rows (count and SHA-256) and every artifact's \
contents. The database is the `postgres:` section of config/stores.yaml (its URL read from \
the variable `url_env` names; the URL is never printed), or --url-env and --schema.\n\n\
Refused (exit 3) while a worker (`serve`) holds either store, or when the schema already \
holds records. Exit 1 when the copy does not match. The SQLite store is left as it was; \
after a verified copy, set `backend: postgres` in config/stores.yaml.";

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Target {
    Postgres,
}

#[derive(clap::Args, Debug)]
pub struct MigrateStoreArgs {
    /// Where the records go.
    #[arg(long, value_enum)]
    pub to: Target,
    /// The environment variable holding the PostgreSQL URL (default: stores.yaml's
    /// `postgres.url_env`).
    #[arg(long, value_name = "VAR")]
    pub url_env: Option<String>,
    /// The schema to fill (default: stores.yaml's `postgres.schema`, else `agent_harness`).
    #[arg(long, value_name = "NAME")]
    pub schema: Option<String>,
}

#[derive(Serialize)]
struct Report<'a> {
    source: String,
    target: String,
    verified: bool,
    #[serde(flatten)]
    copy: &'a CopyReport,
    next: String,
}

pub async fn run(ctx: &Ctx, a: MigrateStoreArgs) -> Result<ExitCode> {
    let Target::Postgres = a.to;
    let ws = harness_config::load(&ctx.root()?)?;
    let file = harness_config::STORES_FILE;
    let pg = ws.stores.postgres.as_ref();
    let url_env = match (&a.url_env, pg) {
        (Some(v), _) => v.clone(),
        (None, Some(p)) => p.url_env.clone(),
        (None, None) => {
            return Err(output::bad_input(format!(
                "{file} has no `postgres:` section: give the variable holding the database URL \
                 with --url-env VAR (and the schema with --schema NAME)"
            )));
        }
    };
    let url = std::env::var(&url_env)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            output::bad_input(format!(
                "the environment variable {url_env} is not set: set it to the database URL \
                 (postgres://USER:PASSWORD@HOST:PORT/DB)"
            ))
        })?;
    let schema = a
        .schema
        .clone()
        .or_else(|| pg.map(|p| p.schema.clone()))
        .unwrap_or_else(|| "agent_harness".into());
    let config = PgConfig {
        url,
        pool_size: pg.map_or(4, |p| p.pool_size.clamp(1, 4)),
        schema: schema.clone(),
        lease: std::time::Duration::from_secs(pg.map_or(15, |p| p.lease_secs)),
    };

    let source = Store::open_existing(&ws.store_dir(), StoreOptions::default())?;
    let target = Store::open_config(
        &StoreConfig::Postgres(config),
        StoreOptions::default(),
        true,
    )?;
    let now = crate::context::options()?.clock.now();
    let copy = source.copy_into(&target, now).await?;
    let verified = copy.verified();
    let sqlite_path = ws.stores.sqlite.path.display().to_string();
    let next = if verified {
        format!(
            "set `backend: postgres` in {file} (postgres: url_env: {url_env}, schema: {schema}) \
             and start the workers; the SQLite store in {sqlite_path} is left as it was"
        )
    } else {
        format!(
            "the copy does not match: keep `backend: sqlite`; drop the schema {schema} and run \
             migrate-store again"
        )
    };
    let r = Report {
        source: source.location(),
        target: target.location(),
        verified,
        copy: &copy,
        next,
    };
    if ctx.json {
        output::print_json(&r)?;
    } else {
        lines(&r).into_iter().for_each(line);
    }
    Ok(if verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn lines(r: &Report<'_>) -> Vec<String> {
    let ok = |m: bool| {
        if m {
            paint(GREEN, "ok")
        } else {
            paint(RED.bold(), "MISMATCH")
        }
    };
    let c = &r.copy.check;
    let mut out = vec![
        format!(
            "{} {} → {}",
            paint(BOLD, "migrate-store:"),
            r.source,
            r.target
        ),
        format!(
            "  {:<12} {:>10} {:>10}  {}",
            "table", "source", "target", "rows and SHA-256"
        ),
    ];
    for t in &c.tables {
        out.push(format!(
            "  {:<12} {:>10} {:>10}  {}",
            t.table,
            t.source_rows,
            t.target_rows,
            ok(t.matches())
        ));
    }
    out.push(format!(
        "  artifact contents: {} compared, {} bytes copied  {}",
        c.artifacts_checked,
        r.copy.artifact_bytes,
        ok(c.artifact_mismatches.is_empty())
    ));
    for m in &c.artifact_mismatches {
        out.push(format!("  {} {m}", paint(RED, "differs:")));
    }
    for m in &r.copy.artifacts_without_contents {
        out.push(format!(
            "  {} {m} (its contents were already gone from the SQLite store)",
            paint(DIM, "no contents:")
        ));
    }
    out.push(format!(
        "  events keep their seqs (up to {}): a subscriber's cursor stays valid",
        r.copy.last_seq
    ));
    out.push(if r.verified {
        format!(
            "{} every table and every artifact's contents match",
            paint(GREEN.bold(), "verified:")
        )
    } else {
        format!(
            "{} the copy does not match the SQLite store",
            paint(RED.bold(), "not verified:")
        )
    });
    out.push(format!("{} {}", paint(BOLD, "next:"), r.next));
    out
}
