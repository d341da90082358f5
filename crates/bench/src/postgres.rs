//! `postgres`: the PostgreSQL store beside the raw limit measured in the same run.
//!
//! - raw: a step as a client program would write it, one transaction of 4 statements
//!   (insert the step, update the request, append the event, touch the session), at
//!   1, 8 and 32 clients for a few seconds each: sent one statement at a time as
//!   pgbench does; pipelined (`BEGIN` and all 4 sent together, then `COMMIT`); and,
//!   at 1 client, as one statement (the 4 writes as data-modifying CTEs, its own
//!   transaction: one round trip, one `Sync`); and, at 8 and 32 clients, grouped:
//!   8 sessions' steps (each one statement) in one pipelined transaction.
//! - single: one session of 1,000 steps through the runtime (µs/step).
//! - aggregate: 1,000 sessions × 10 steps through one worker (steps/s).
//!
//! Needs `AGENT_HARNESS_TEST_DATABASE_URL` (a fresh schema per run, dropped after).
//! One worker process; several workers sharing the store are not measured here.

use crate::util::*;
use crate::workspace::{self, Spec};
use anyhow::{Context, Result, bail};
use harness_core::RequestStatus;
use harness_engine::WorkerOptions;
use harness_store::testing::TestSchema;
use std::time::{Duration, Instant};

const SINGLE_STEPS: u64 = 1000;
const SESSIONS: usize = 1000;
const STEPS: u64 = 10;
const RAW_SECS: u64 = 3;

type P<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

pub async fn run(only: Option<String>) -> Result<()> {
    let Some(schema) = TestSchema::new() else {
        bail!("set AGENT_HARNESS_TEST_DATABASE_URL to a PostgreSQL server to measure it");
    };
    if let Some(o) = only.as_deref()
        && !["raw", "single", "aggregate"].contains(&o)
    {
        bail!("--only takes raw, single or aggregate, not `{o}`");
    }
    let part = |p: &str| only.as_deref().is_none_or(|o| o == p);
    println!(
        "postgres: raw 4-statement step transactions at 1/8/32 clients ({RAW_SECS} s each), then \
         the runtime: one session of {} steps, and {} sessions × {STEPS} steps in one worker",
        thousands(SINGLE_STEPS),
        thousands(SESSIONS as u64)
    );
    let url = schema.config.url.clone();
    let both = only.is_none();
    let mut raw1 = 0f64;
    let mut raw1p = 0f64;
    let mut best = 0f64;
    if part("raw") {
        raw1 = raw(&url, &schema.config.schema, 1, Raw::OneByOne).await?;
        raw1p = raw(&url, &schema.config.schema, 1, Raw::Pipelined).await?;
        raw(&url, &schema.config.schema, 1, Raw::OneStatement).await?;
        for clients in [8, 32] {
            best = best.max(raw(&url, &schema.config.schema, clients, Raw::OneByOne).await?);
            raw(&url, &schema.config.schema, clients, Raw::Pipelined).await?;
            raw(&url, &schema.config.schema, clients, Raw::Grouped).await?;
        }
    }
    if part("single") {
        let single = single(&schema).await?;
        if both {
            let per_raw = 1e6 / raw1;
            println!(
                "postgres/single vs raw: {:.0} µs/step against {:.0} µs for the raw one-client step \
                 ({:.2}×; target ≤ 1.3×: {}); pipelined raw {:.0} µs",
                single,
                per_raw,
                single / per_raw,
                verdict(single / per_raw <= 1.3),
                1e6 / raw1p
            );
        }
    }
    if part("aggregate") {
        let agg = aggregate(&schema).await?;
        if both {
            println!(
                "postgres/aggregate vs raw: {} steps/s against {} raw at 8–32 clients ({:.0}%; target ≥ 70%: {})",
                thousands(agg as u64),
                thousands(best as u64),
                100.0 * agg / best,
                verdict(agg >= 0.7 * best)
            );
        }
    }
    Ok(())
}

/// How the raw step is sent.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Raw {
    /// `BEGIN`, each statement, `COMMIT`: a round trip each, as pgbench does.
    OneByOne,
    /// `BEGIN` and the 4 statements in one pipeline, then `COMMIT`.
    Pipelined,
    /// The 4 writes as one statement of data-modifying CTEs, in its own transaction.
    OneStatement,
    /// [`GROUP`] sessions' steps, each one statement as above, in one transaction:
    /// `BEGIN`, the statements and `COMMIT` in one pipeline (a group commit).
    Grouped,
}

/// Steps per transaction of [`Raw::Grouped`].
const GROUP: usize = 8;

impl Raw {
    fn label(self) -> &'static str {
        match self {
            Raw::OneByOne => "one by one",
            Raw::Pipelined => "pipelined",
            Raw::OneStatement => "one statement",
            Raw::Grouped => "grouped 8 per transaction",
        }
    }
}

/// Steps/s of the raw step transaction with `clients` connections.
pub(crate) async fn raw(url: &str, schema: &str, clients: usize, mode: Raw) -> Result<f64> {
    let setup = connect(url, schema).await?;
    setup
        .batch_execute(
            "DROP TABLE IF EXISTS raw_steps, raw_requests, raw_events, raw_sessions; \
             CREATE TABLE raw_requests (id text PRIMARY KEY, status text NOT NULL, steps bigint NOT NULL, last bigint NOT NULL); \
             CREATE TABLE raw_steps (request_id text NOT NULL, idx bigint NOT NULL, body text NOT NULL, PRIMARY KEY (request_id, idx)); \
             CREATE TABLE raw_events (seq bigserial PRIMARY KEY, request_id text NOT NULL, kind text NOT NULL, payload text NOT NULL, \
                 xid xid8 NOT NULL DEFAULT pg_current_xact_id()); \
             CREATE TABLE raw_sessions (id text PRIMARY KEY, last bigint NOT NULL);",
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(RAW_SECS);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = connect(url, schema).await?;
        let id = format!("req_{c}");
        let ids: Vec<String> = match mode {
            Raw::Grouped => (0..GROUP).map(|g| format!("{id}_{g}")).collect(),
            _ => vec![id.clone()],
        };
        for id in &ids {
            client
                .execute(
                    "INSERT INTO raw_requests VALUES ($1, 'running', 0, 0)",
                    &[id],
                )
                .await?;
            client
                .execute("INSERT INTO raw_sessions VALUES ($1, 0)", &[id])
                .await?;
        }
        tasks.push(tokio::spawn(async move {
            let step = client
                .prepare("INSERT INTO raw_steps VALUES ($1, $2, $3)")
                .await?;
            let req = client
                .prepare("UPDATE raw_requests SET steps = steps + 1, last = $2 WHERE id = $1 AND status = 'running'")
                .await?;
            let event = client
                .prepare("INSERT INTO raw_events (request_id, kind, payload) VALUES ($1, 'tool.completed', $2)")
                .await?;
            let ses = client
                .prepare("UPDATE raw_sessions SET last = $2 WHERE id = $1")
                .await?;
            let all = client
                .prepare(
                    "WITH s AS (INSERT INTO raw_steps VALUES ($1, $2, $3)), \
                     r AS (UPDATE raw_requests SET steps = steps + 1, last = $2 WHERE id = $1 AND status = 'running'), \
                     e AS (INSERT INTO raw_events (request_id, kind, payload) VALUES ($1, 'tool.completed', $3)) \
                     UPDATE raw_sessions SET last = $2 WHERE id = $1",
                )
                .await?;
            let body = "{\"kind\":\"tool_call\",\"call\":{\"tool\":\"list_files\"}}".to_string();
            let mut n: i64 = 0;
            let mut steps = 0u64;
            while Instant::now() < deadline {
                if mode == Raw::Grouped {
                    let params: Vec<[P; 3]> = ids.iter().map(|i| [i as P, &n, &body]).collect();
                    let (begin, each, commit) = tokio::join!(
                        client.batch_execute("BEGIN"),
                        futures_util::future::join_all(
                            params.iter().map(|p| client.execute(&all, p))
                        ),
                        client.batch_execute("COMMIT"),
                    );
                    begin?;
                    for e in each {
                        e?;
                    }
                    commit?;
                    n += 1;
                    steps += GROUP as u64;
                    continue;
                }
                steps += 1;
                if mode == Raw::OneStatement {
                    client.execute(&all, &[&id, &n, &body]).await?;
                    n += 1;
                    continue;
                }
                if mode == Raw::Pipelined {
                    let p1: [P; 3] = [&id, &n, &body];
                    let (p2, p3, p4): ([P; 2], [P; 2], [P; 2]) = ([&id, &n], [&id, &body], [&id, &n]);
                    let (a, b, c2, d, e) = tokio::join!(
                        client.batch_execute("BEGIN"),
                        client.execute(&step, &p1),
                        client.execute(&req, &p2),
                        client.execute(&event, &p3),
                        client.execute(&ses, &p4),
                    );
                    a?;
                    b?;
                    c2?;
                    d?;
                    e?;
                } else {
                    client.batch_execute("BEGIN").await?;
                    client.execute(&step, &[&id, &n, &body]).await?;
                    client.execute(&req, &[&id, &n]).await?;
                    client.execute(&event, &[&id, &body]).await?;
                    client.execute(&ses, &[&id, &n]).await?;
                }
                client.batch_execute("COMMIT").await?;
                n += 1;
            }
            anyhow::Ok(steps)
        }));
    }
    let start = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    let elapsed = start.elapsed().max(Duration::from_secs(RAW_SECS));
    let rate = total as f64 / elapsed.as_secs_f64();
    println!(
        "postgres/raw {} {clients} client{}: {} steps/s ({:.0} µs per step per client)",
        mode.label(),
        if clients == 1 { "" } else { "s" },
        thousands(rate as u64),
        1e6 * clients as f64 / rate
    );
    Ok(rate)
}

async fn connect(url: &str, schema: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to the bench database")?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!("SET search_path TO \"{schema}\""))
        .await?;
    Ok(client)
}

fn spec(schema: &TestSchema, max_concurrent: usize, agents: Vec<workspace::Agent>) -> Spec {
    Spec {
        max_concurrent_requests: max_concurrent,
        queue_capacity: 4 * SESSIONS,
        agents,
        postgres: Some(schema.config.schema.clone()),
        ..Spec::default()
    }
}

/// µs per step, median of 3 sessions after a warm-up.
async fn single(schema: &TestSchema) -> Result<f64> {
    let dir = temp_dir("postgres-single")?;
    workspace::write(
        dir.path(),
        &spec(
            schema,
            8,
            vec![
                workspace::steps_agent("warm", 100),
                workspace::steps_agent("bench", SINGLE_STEPS),
            ],
        ),
    )?;
    let h = open(dir.path(), None)?;
    let worker = h.start_worker(WorkerOptions::default()).await?;
    crate::single::one_session(&h, "warm").await?;
    let mut per_step = Vec::new();
    for _ in 0..3 {
        let (d, n, _) = crate::single::one_session(&h, "bench").await?;
        per_step.push(d / n.max(1));
    }
    worker.stop().await?;
    let med = median(&per_step);
    println!(
        "postgres/single: one session of {} steps, {:.0} µs/step (median of 3)",
        thousands(SINGLE_STEPS),
        us(med)
    );
    Ok(us(med))
}

/// Steps/s of 1,000 sessions × 10 steps through one worker.
async fn aggregate(schema: &TestSchema) -> Result<f64> {
    let dir = temp_dir("postgres-aggregate")?;
    workspace::write(
        dir.path(),
        &spec(
            schema,
            SESSIONS,
            vec![workspace::steps_agent("many", STEPS)],
        ),
    )?;
    let h = open(dir.path(), None)?;
    // Admissions queue on one lock (the queue's bound and each session's rules
    // must see every other admission): how many a second that lets through.
    let admitting = Instant::now();
    admit_many(&h, "many", SESSIONS).await?;
    let admitted = admitting.elapsed();
    println!(
        "postgres/admission: {} requests admitted at once (one task each) in {:.0} ms → {} admissions/s",
        thousands(SESSIONS as u64),
        ms(admitted),
        thousands((SESSIONS as f64 / admitted.as_secs_f64()) as u64)
    );
    let start = Instant::now();
    let worker = h.start_worker(WorkerOptions::default()).await?;
    wait_stats(
        &h,
        Duration::from_millis(10),
        Duration::from_secs(300),
        "every request to finish",
        |s| (s.completed + s.failed + s.cancelled) as usize >= SESSIONS,
    )
    .await?;
    let elapsed = start.elapsed();
    worker.stop().await?;
    if let Some(g) = h.store().group_commits() {
        println!(
            "postgres/group commit: {} steps in {} transactions ({:.1} per transaction), {} sent again alone",
            thousands(g.steps),
            thousands(g.transactions),
            g.steps as f64 / g.transactions.max(1) as f64,
            thousands(g.resent)
        );
    }
    let reqs = all_requests(&h).await?;
    let many: Vec<_> = reqs.iter().filter(|r| r.agent == "many").collect();
    let completed = many
        .iter()
        .filter(|r| r.status == RequestStatus::Completed)
        .count();
    if completed != SESSIONS {
        bail!("only {completed} of {SESSIONS} requests completed");
    }
    let steps: u64 = many.iter().map(|r| r.steps as u64).sum();
    let rate = steps as f64 / elapsed.as_secs_f64();
    println!(
        "postgres/aggregate: {} sessions × {STEPS} = {} steps in {:.0} ms → {} steps/s (one worker)",
        thousands(SESSIONS as u64),
        thousands(steps),
        ms(elapsed),
        thousands(rate as u64)
    );
    Ok(rate)
}
