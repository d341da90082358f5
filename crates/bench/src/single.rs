//! `single`: µs per durable step for one session of 1,000 steps, at
//! `synchronous = NORMAL` and `FULL`, beside a plain rusqlite program's step (one
//! transaction of four statements) on the same disk in the same run, the WAL
//! frames (pages) each one writes per commit, and the CPU a step costs (all
//! threads) with the time runnable threads waited for a CPU.

use crate::util::{cpu_times, median, run_queue_wait, temp_dir, thousands, us, verdict};
use crate::workspace::{self, Spec};
use anyhow::{Result, bail};
use harness_core::{
    EventFilter, EventKind, NewEvent, RequestId, RequestStatus, Step, StepBody, StepStatus,
};
use harness_engine::{Harness, WorkerOptions};
use harness_store::{Durability, StepCommit, StepWrite};
use std::time::{Duration, Instant};

const STEPS: u64 = 1000;
const RUNS: usize = 5;

pub async fn run(only: Option<String>) -> Result<()> {
    println!(
        "single: one session of {} steps (one commit per step: a tool call's `started` row rides \
         with the commit before it), median of {RUNS} runs after a warm-up",
        thousands(STEPS),
    );
    for (label, durability, target) in [
        ("normal", Durability::Normal, 120.0),
        ("full", Durability::Full, 300.0),
    ] {
        if only.as_deref().is_some_and(|o| o != label) {
            continue;
        }
        let dir = temp_dir("single")?;
        workspace::write(
            dir.path(),
            &Spec {
                agents: vec![
                    workspace::steps_agent("warm", 100),
                    workspace::steps_agent("bench", STEPS),
                ],
                ..Spec::default()
            },
        )?;
        let h = crate::util::open(dir.path(), Some(durability))?;
        let worker = h.start_worker(WorkerOptions::default()).await?;
        let db = dir
            .path()
            .join(".agent-harness")
            .join(harness_store::DB_FILE);
        let frames = FrameCount::start(&db)?;
        one_session(&h, "warm").await?;
        let frames = frames.per_step(WARM_STEPS)?;
        let mut samples = Vec::with_capacity(RUNS);
        let mut steps = 0;
        let mut last = None;
        let cost = Cost::start();
        for _ in 0..RUNS {
            let (d, n, id) = one_session(&h, "bench").await?;
            samples.push(d);
            steps = n;
            last = Some(id);
        }
        let runtime_cost = cost.since().per_step(steps as u64 * RUNS as u64);
        worker.stop().await?;
        let recorded = match &last {
            Some(id) => recorded_commits(&h, id).await?,
            None => bail!("no bench session ran"),
        };
        let (store_only, store_cost) = store_alone(&h, recorded).await?;
        let per_step: Vec<Duration> = samples.iter().map(|d| *d / steps.max(1)).collect();
        let med = median(&per_step);
        let min = per_step.iter().min().copied().unwrap_or_default();
        let max = per_step.iter().max().copied().unwrap_or_default();
        println!(
            "steps/single-session {label}: {} steps, {:.1} µs/step (min {:.1}, max {:.1}; {:.0} ms per session) \
             — target ≤ {target:.0} µs: {}",
            thousands(steps as u64),
            us(med),
            us(min),
            us(max),
            med.as_secs_f64() * 1e3 * steps as f64,
            verdict(us(med) <= target)
        );
        let raw = raw_step(label)?;
        println!(
            "steps/single-session {label}, a plain rusqlite program (4 statements per commit, same \
             disk, same run): {:.1} µs/step (min {:.1}); the runtime costs {:.2}× that. WAL frames (pages) \
             per step: runtime {frames:.1} (over a {WARM_STEPS}-step session), plain {:.1}",
            us(raw.per_step),
            us(raw.min),
            us(med) / us(raw.per_step),
            raw.frames
        );
        println!(
            "steps/single-session {label}, the store alone (the last session's commits made again \
             through `Store::commit_step`, no engine between them): {:.1} µs/step, {:.2}× the plain \
             program; the engine's own work per step (runtime − store alone): {:.1} µs",
            us(store_only),
            us(store_only) / us(raw.per_step),
            us(med) - us(store_only)
        );
        println!(
            "steps/single-session {label}, per step: CPU (all threads, user + system) runtime \
             {:.1} + {:.1} µs, store alone {:.1} + {:.1} µs; runnable but waiting for a CPU \
             (wake-ups included) runtime {:.1} µs, store alone {:.1} µs",
            us(runtime_cost.user),
            us(runtime_cost.system),
            us(store_cost.user),
            us(store_cost.system),
            us(runtime_cost.waiting),
            us(store_cost.waiting)
        );
    }
    Ok(())
}

const WARM_STEPS: u64 = 100;

/// CPU used and time spent runnable but waiting for a CPU, from a point on.
#[derive(Clone, Copy, Default)]
struct Cost {
    user: Duration,
    system: Duration,
    waiting: Duration,
}

impl Cost {
    fn start() -> Cost {
        let (user, system) = cpu_times();
        Cost {
            user,
            system,
            waiting: run_queue_wait(),
        }
    }

    /// The cost since [`Cost::start`].
    fn since(self) -> Cost {
        let now = Cost::start();
        Cost {
            user: now.user.saturating_sub(self.user),
            system: now.system.saturating_sub(self.system),
            waiting: now.waiting.saturating_sub(self.waiting),
        }
    }

    fn add(self, other: Cost) -> Cost {
        Cost {
            user: self.user + other.user,
            system: self.system + other.system,
            waiting: self.waiting + other.waiting,
        }
    }

    fn per_step(self, steps: u64) -> Cost {
        let n = steps.max(1) as u32;
        Cost {
            user: self.user / n,
            system: self.system / n,
            waiting: self.waiting / n,
        }
    }
}

/// WAL frames written from a point on, read with a second connection: a `RESTART`
/// checkpoint makes the next commit write from the WAL's start (the file keeps its
/// size: `TRUNCATE` would make the next commits grow it, which costs more than
/// overwriting), and a later `PASSIVE` one says how many frames it holds (the store
/// checkpoints by itself only past 16 MiB, far above a short session's).
struct FrameCount {
    c: rusqlite::Connection,
}

impl FrameCount {
    fn start(db: &std::path::Path) -> Result<FrameCount> {
        let c = rusqlite::Connection::open(db)?;
        c.busy_timeout(Duration::from_secs(5))?;
        let (busy, _, _) = checkpoint(&c, "RESTART")?;
        if busy != 0 {
            bail!(
                "could not restart the WAL of {} to count frames (readers held it)",
                db.display()
            );
        }
        Ok(FrameCount { c })
    }

    /// Frames per step over `steps` steps since [`FrameCount::start`] (a step is
    /// one commit; the session's admission and claim add two).
    fn per_step(self, steps: u64) -> Result<f64> {
        let (_, frames, _) = checkpoint(&self.c, "PASSIVE")?;
        Ok(frames as f64 / steps as f64)
    }
}

fn checkpoint(c: &rusqlite::Connection, mode: &str) -> Result<(i64, i64, i64)> {
    Ok(
        c.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?,
    )
}

struct RawStep {
    per_step: Duration,
    min: Duration,
    frames: f64,
}

/// A plain rusqlite program's step, as the issue describes it: one transaction of
/// four prepared statements (update the request row, insert the step with a
/// 120-byte JSON body, insert the event, update the session), WAL at `sync` with
/// SQLite's default checkpoints, 1,000 steps per run, median of the runs after a
/// warm-up; its frames per commit counted over 100 steps without checkpoints.
fn raw_step(sync: &str) -> Result<RawStep> {
    let dir = temp_dir("single-raw")?;
    let c = rusqlite::Connection::open(dir.path().join("raw.db"))?;
    c.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA wal_autocheckpoint = 0;
         CREATE TABLE requests (id TEXT PRIMARY KEY, status TEXT, steps INTEGER, at INTEGER);
         CREATE TABLE sessions (id TEXT PRIMARY KEY, at INTEGER);
         CREATE TABLE steps (request_id TEXT, idx INTEGER, body TEXT, at INTEGER,
                             PRIMARY KEY (request_id, idx));
         CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT,
                              kind TEXT, payload TEXT, at INTEGER);
         INSERT INTO requests VALUES ('r', 'running', 0, 0);
         INSERT INTO sessions VALUES ('s', 0);"
    ))?;
    let body = format!("{{\"text\": \"{}\"}}", "x".repeat(106));
    let mut idx = 0i64;
    let mut step = |c: &mut rusqlite::Connection| -> Result<()> {
        idx += 1;
        let tx = c.transaction()?;
        tx.prepare_cached("UPDATE requests SET steps = steps + 1, at = ?1 WHERE id = 'r'")?
            .execute([idx])?;
        tx.prepare_cached("INSERT INTO steps VALUES ('r', ?1, ?2, ?1)")?
            .execute(rusqlite::params![idx, body])?;
        tx.prepare_cached(
            "INSERT INTO events (request_id, kind, payload, at) VALUES ('r', 'step', ?2, ?1)",
        )?
        .execute(rusqlite::params![idx, body])?;
        tx.prepare_cached("UPDATE sessions SET at = ?1 WHERE id = 's'")?
            .execute([idx])?;
        tx.commit()?;
        Ok(())
    };
    let mut c = c;
    for _ in 0..100 {
        step(&mut c)?;
    }
    checkpoint(&c, "RESTART")?;
    for _ in 0..WARM_STEPS {
        step(&mut c)?;
    }
    let frames = checkpoint(&c, "PASSIVE")?.1 as f64 / WARM_STEPS as f64;
    c.execute_batch("PRAGMA wal_autocheckpoint = 1000")?;
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        checkpoint(&c, "RESTART")?;
        let t = Instant::now();
        for _ in 0..STEPS {
            step(&mut c)?;
        }
        samples.push(t.elapsed() / STEPS as u32);
    }
    Ok(RawStep {
        per_step: median(&samples),
        min: samples.iter().min().copied().unwrap_or_default(),
        frames,
    })
}

/// Admits one request and waits for it to complete; returns the time from its
/// admission to its finish, as the records say (milliseconds), and its steps.
///
/// Polls every 50 ms: a poll is a read on the store the run writes to (on
/// PostgreSQL a round trip on the same pool and server) and its threads' wake-ups,
/// all on the two CPUs the run has; the figure comes from the records, so a later
/// look costs it nothing. (Polling every 5 ms, the runtime's threads waited for a
/// CPU 14 – 28 µs per step, against 10 – 16 µs at 50 ms.)
pub(crate) async fn one_session(h: &Harness, agent: &str) -> Result<(Duration, u32, RequestId)> {
    let start = Instant::now();
    let req = h.request(None, agent, "go").await?;
    loop {
        let r = h.get_request(&req.id).await?;
        if r.status.is_terminal() {
            if r.status != RequestStatus::Completed {
                bail!("bench request {} ended {}: {:?}", r.id, r.status, r.error);
            }
            let finished = r.finished_at.unwrap_or(r.last_activity_at);
            let ms = (finished.millis() - r.created_at.millis()).max(1) as u64;
            return Ok((Duration::from_millis(ms), r.steps, r.id));
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("bench request {} did not finish in 120 s", r.id);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One of the runtime's step commits as a session recorded it: its step rows and
/// its events, replayed by [`store_alone`] onto another request.
struct Recorded {
    agent: String,
    steps: Vec<StepWrite>,
    events: Vec<(EventKind, serde_json::Value)>,
}

/// The commits of request `id`'s tool-calling steps as the runtime made them: a
/// model turn with its call's `started` row (events `model.turn`, `tool.started`),
/// then the call completed (`tool.completed`). The final answer is left out.
async fn recorded_commits(h: &Harness, id: &RequestId) -> Result<Vec<Recorded>> {
    let store = h.store();
    let steps = store.steps(id).await?;
    let filter = EventFilter {
        request_id: Some(id.clone()),
        ..EventFilter::default()
    };
    let events = store.events_after(0, filter, 0).await?;
    let of = |kind: EventKind| {
        events
            .iter()
            .filter(move |e| e.kind == kind)
            .map(|e| (e.kind, e.payload.clone()))
    };
    let (mut turns, mut started, mut completed) = (
        of(EventKind::ModelTurn),
        of(EventKind::ToolStarted),
        of(EventKind::ToolCompleted),
    );
    let mut out = Vec::new();
    for pair in steps.windows(2) {
        let (model, call) = (&pair[0], &pair[1]);
        let (
            StepBody::ModelTurn { .. },
            StepBody::ToolCall {
                call: c,
                approval_id,
                child_request_id,
                ..
            },
        ) = (&model.body, &call.body)
        else {
            continue;
        };
        let mut starting = call.clone();
        starting.status = StepStatus::Started;
        starting.finished_at = None;
        starting.body = StepBody::ToolCall {
            call: c.clone(),
            approval_id: approval_id.clone(),
            outcome: None,
            child_request_id: child_request_id.clone(),
        };
        let (Some(turn), Some(start), Some(done)) =
            (turns.next(), started.next(), completed.next())
        else {
            bail!("request {id}: fewer events than tool-calling steps");
        };
        out.push(Recorded {
            agent: model.agent.clone(),
            steps: vec![
                StepWrite::Insert(model.clone()),
                StepWrite::Insert(starting),
            ],
            events: vec![turn, start],
        });
        out.push(Recorded {
            agent: call.agent.clone(),
            steps: vec![StepWrite::Update(call.clone())],
            events: vec![done],
        });
    }
    if out.is_empty() {
        bail!("request {id} recorded no tool-calling step");
    }
    Ok(out)
}

/// µs per step of the store alone: `recorded`'s commits, made again for a new
/// running request of their own through `Store::commit_step` on a runtime worker
/// thread, as a run makes them, with no engine between them (its model turn, tool
/// call, redaction and bookkeeping). Median of [`RUNS`] runs after a warm-up, and
/// the measured runs' [`Cost`] per step.
async fn store_alone(h: &Harness, recorded: Vec<Recorded>) -> Result<(Duration, Cost)> {
    let h = h.clone();
    tokio::spawn(async move {
        let store = h.store();
        let mut samples = Vec::with_capacity(RUNS);
        let mut cost = Cost::default();
        let mut measured = 0u64;
        for run in 0..=RUNS {
            let req =
                harness_store::testing::running_request(store, &format!("replay-{run}")).await;
            let commits: Vec<StepCommit> = recorded
                .iter()
                .map(|r| {
                    let mut c = StepCommit::new(&req.id, &req.session_id, h.now())
                        .agent(&r.agent)
                        .count_step();
                    for w in &r.steps {
                        c = match w {
                            StepWrite::Insert(s) => c.insert(Step {
                                request_id: req.id.clone(),
                                ..s.clone()
                            }),
                            StepWrite::Update(s) => c.update(Step {
                                request_id: req.id.clone(),
                                ..s.clone()
                            }),
                        };
                    }
                    c.events = r
                        .events
                        .iter()
                        .map(|(kind, payload)| NewEvent {
                            kind: *kind,
                            request_id: Some(req.id.clone()),
                            session_id: Some(req.session_id.clone()),
                            payload: payload.clone(),
                        })
                        .collect();
                    c
                })
                .collect();
            let n = commits.len() as u32;
            let (t, at) = (Instant::now(), Cost::start());
            for c in commits {
                store.commit_step(c).await?;
            }
            if run > 0 {
                samples.push(t.elapsed() / n);
                cost = cost.add(at.since());
                measured += n as u64;
            }
        }
        Ok((median(&samples), cost.per_step(measured)))
    })
    .await?
}
