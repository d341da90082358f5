//! `single`: µs per durable step for one session of 1,000 steps, at
//! `synchronous = NORMAL` and `FULL`, beside a plain rusqlite program's step (one
//! transaction of four statements) run between the sessions on the same disk, the
//! same program with a fixed CPU task per step, the WAL frames (pages) each one
//! writes per commit, and the CPU a step costs (all threads) with its page faults,
//! context switches and the time runnable threads waited for a CPU.

use crate::util::{
    cpu_times, faults_and_switches, median, run_queue_wait, temp_dir, thousands, us, verdict,
};
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
        // The plain program runs, with and without the task, between the runtime's
        // sessions: each runtime session is compared with the plain runs beside it,
        // so the disk's drift over the minute (its fsync moves by tens of percent)
        // falls on both sides of a ratio.
        let mut plain = Plain::new(label)?;
        let task = Task::new();
        let hot = task.back_to_back();
        let (mut plain_runs, mut task_runs) = (Vec::new(), Vec::new());
        plain_runs.push(plain.run(None)?);
        task_runs.push(plain.run(Some(&task))?);
        let mut samples = Vec::with_capacity(RUNS);
        let mut steps = 0;
        let mut last = None;
        let mut runtime_cost = Cost::default();
        for _ in 0..RUNS {
            let cost = Cost::start();
            let (d, n, id) = one_session(&h, "bench").await?;
            runtime_cost = runtime_cost.add(cost.since());
            samples.push(d);
            steps = n;
            last = Some(id);
            plain_runs.push(plain.run(None)?);
            task_runs.push(plain.run(Some(&task))?);
        }
        let runtime_cost = runtime_cost.per_step(steps as u64 * RUNS as u64);
        worker.stop().await?;
        let recorded = match &last {
            Some(id) => recorded_commits(&h, id).await?,
            None => bail!("no bench session ran"),
        };
        let alone = store_alone(&h, recorded, &mut plain).await?;
        let (store_only, store_cost) = (alone.per_step, alone.cost);
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
        let plain_median = median(&plain_runs);
        let (ratio, ratio_min, ratio_max) = paired(&per_step, &plain_runs);
        println!(
            "steps/single-session {label}, a plain rusqlite program (4 statements per commit, same \
             disk, run between the sessions): {:.1} µs/step (min {:.1}); each session ÷ the plain \
             runs beside it: median {ratio:.2}× ({ratio_min:.2} – {ratio_max:.2}). WAL frames \
             (pages) per step: runtime {frames:.1} (over a {WARM_STEPS}-step session), plain {:.1}",
            us(plain_median),
            us(plain_runs.iter().min().copied().unwrap_or_default()),
            plain.frames
        );
        println!(
            "steps/single-session {label}, the store alone (the last session's commits made again \
             through `Store::commit_step`, no engine between them; after the sessions, each run \
             between two plain runs): {:.1} µs/step; each run ÷ the plain runs beside it: median \
             {:.2}× ({:.2} – {:.2}); the engine's own work per step (runtime − store alone): {:.1} µs",
            us(store_only),
            alone.ratio.0,
            alone.ratio.1,
            alone.ratio.2,
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
        println!(
            "steps/single-session {label}, per step: minor page faults runtime {:.2}, store alone \
             {:.2}; context switches (blocked + preempted) runtime {:.2} + {:.2}, store alone {:.2} \
             + {:.2}",
            runtime_cost.faults,
            store_cost.faults,
            runtime_cost.switches.0,
            runtime_cost.switches.1,
            store_cost.switches.0,
            store_cost.switches.1
        );
        // Each task run came right after a plain run.
        let task_ratios: Vec<f64> = (0..task_runs.len())
            .map(|i| us(task_runs[i]) / us(plain_runs[i]))
            .collect();
        let task_costs: Vec<f64> = (0..task_runs.len())
            .map(|i| us(task_runs[i]) - us(plain_runs[i]))
            .collect();
        let (task_ratio, task_min, task_max) = spread(task_ratios);
        let (task_cost, _, _) = spread(task_costs);
        println!(
            "steps/single-session {label}, the plain program with a fixed CPU task before each \
             commit (JSON round trips; {:.1} µs back to back, where nothing syncs), each run ÷ the \
             plain run before it: median {task_ratio:.2}× ({task_min:.2} – {task_max:.2}); the \
             task costs {task_cost:.1} µs per step here (median)",
            us(hot),
        );
    }
    Ok(())
}

/// A fixed CPU task standing in for the engine's own work beside a step's commit:
/// a step-like JSON value (a conversation's last messages, a tool call and its
/// output) written out and parsed back [`Task::ROUNDS`] times. Like the engine's
/// work it allocates and walks a few KiB, and it touches no file, so the plain
/// program with it says what that much CPU costs between two commits at each
/// `synchronous` level, whatever the runtime does.
struct Task {
    value: serde_json::Value,
}

impl Task {
    const ROUNDS: usize = 4;

    fn new() -> Task {
        let message = |i: usize| {
            serde_json::json!({
                "role": if i.is_multiple_of(2) { "assistant" } else { "tool" },
                "content": format!("step {i}: {}", "listing the work folder ".repeat(3)),
                "tool_calls": [{"id": format!("call-{i}"), "name": "list_files",
                                "arguments": {"path": ".", "depth": 1}}],
            })
        };
        Task {
            value: serde_json::json!({
                "request_id": "req-01JBENCHTASK",
                "messages": (0..6).map(message).collect::<Vec<_>>(),
                "output": {"entries": ["config/", "data/", "notes.md"], "truncated": false},
            }),
        }
    }

    fn run(&self) -> usize {
        let mut n = 0;
        for _ in 0..Self::ROUNDS {
            let text = serde_json::to_string(&self.value).expect("a JSON value serialises");
            let back: serde_json::Value =
                serde_json::from_str(&text).expect("what was written parses");
            n += text.len() + back.as_object().map_or(0, |o| o.len());
        }
        std::hint::black_box(n)
    }

    /// One task's time run back to back (hot caches, nothing waiting on a disk):
    /// the median of five rounds of 1,000.
    fn back_to_back(&self) -> Duration {
        let mut samples: Vec<Duration> = (0..6)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..1000 {
                    self.run();
                }
                t.elapsed() / 1000
            })
            .collect();
        samples.remove(0);
        median(&samples)
    }
}

const WARM_STEPS: u64 = 100;

/// CPU used, time spent runnable but waiting for a CPU, page faults and context
/// switches, from a point on.
#[derive(Clone, Copy, Default)]
struct Cost {
    user: Duration,
    system: Duration,
    waiting: Duration,
    /// Minor page faults.
    faults: f64,
    /// Voluntary context switches (a thread blocked), then involuntary (preempted).
    switches: (f64, f64),
}

impl Cost {
    fn start() -> Cost {
        let (user, system) = cpu_times();
        let (faults, blocked, preempted) = faults_and_switches();
        Cost {
            user,
            system,
            waiting: run_queue_wait(),
            faults: faults as f64,
            switches: (blocked as f64, preempted as f64),
        }
    }

    /// The cost since [`Cost::start`].
    fn since(self) -> Cost {
        let now = Cost::start();
        Cost {
            user: now.user.saturating_sub(self.user),
            system: now.system.saturating_sub(self.system),
            waiting: now.waiting.saturating_sub(self.waiting),
            faults: now.faults - self.faults,
            switches: (
                now.switches.0 - self.switches.0,
                now.switches.1 - self.switches.1,
            ),
        }
    }

    fn add(self, other: Cost) -> Cost {
        Cost {
            user: self.user + other.user,
            system: self.system + other.system,
            waiting: self.waiting + other.waiting,
            faults: self.faults + other.faults,
            switches: (
                self.switches.0 + other.switches.0,
                self.switches.1 + other.switches.1,
            ),
        }
    }

    fn per_step(self, steps: u64) -> Cost {
        let n = steps.max(1) as u32;
        Cost {
            user: self.user / n,
            system: self.system / n,
            waiting: self.waiting / n,
            faults: self.faults / n as f64,
            switches: (self.switches.0 / n as f64, self.switches.1 / n as f64),
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

/// Each of `runs` ÷ the mean of the two `plains` beside it (run i ran between plain
/// runs i and i + 1): the median and the range.
fn paired(runs: &[Duration], plains: &[Duration]) -> (f64, f64, f64) {
    let ratios = (0..runs.len())
        .map(|i| us(runs[i]) / ((us(plains[i]) + us(plains[i + 1])) / 2.0))
        .collect();
    spread(ratios)
}

/// The median and the range of `values` (none: zeros).
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

/// A plain rusqlite program's step, as the issue describes it: one transaction of
/// four prepared statements (update the request row, insert the step with a
/// 120-byte JSON body, insert the event, update the session), WAL at the same
/// `synchronous` with SQLite's default checkpoints; its frames per commit counted
/// over 100 steps without checkpoints.
struct Plain {
    c: rusqlite::Connection,
    body: String,
    idx: i64,
    frames: f64,
    _dir: tempfile::TempDir,
}

impl Plain {
    fn new(sync: &str) -> Result<Plain> {
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
        let mut plain = Plain {
            c,
            body: format!("{{\"text\": \"{}\"}}", "x".repeat(106)),
            idx: 0,
            frames: 0.0,
            _dir: dir,
        };
        for _ in 0..100 {
            plain.step(None)?;
        }
        checkpoint(&plain.c, "RESTART")?;
        for _ in 0..WARM_STEPS {
            plain.step(None)?;
        }
        plain.frames = checkpoint(&plain.c, "PASSIVE")?.1 as f64 / WARM_STEPS as f64;
        plain.c.execute_batch("PRAGMA wal_autocheckpoint = 1000")?;
        Ok(plain)
    }

    /// One step; with `task`, the task runs before the transaction.
    fn step(&mut self, task: Option<&Task>) -> Result<()> {
        self.idx += 1;
        let idx = self.idx;
        if let Some(task) = task {
            task.run();
        }
        let tx = self.c.transaction()?;
        tx.prepare_cached("UPDATE requests SET steps = steps + 1, at = ?1 WHERE id = 'r'")?
            .execute([idx])?;
        tx.prepare_cached("INSERT INTO steps VALUES ('r', ?1, ?2, ?1)")?
            .execute(rusqlite::params![idx, self.body])?;
        tx.prepare_cached(
            "INSERT INTO events (request_id, kind, payload, at) VALUES ('r', 'step', ?2, ?1)",
        )?
        .execute(rusqlite::params![idx, self.body])?;
        tx.prepare_cached("UPDATE sessions SET at = ?1 WHERE id = 's'")?
            .execute([idx])?;
        tx.commit()?;
        Ok(())
    }

    /// One run of 1,000 steps from a restarted WAL: µs per step.
    fn run(&mut self, task: Option<&Task>) -> Result<Duration> {
        checkpoint(&self.c, "RESTART")?;
        let t = Instant::now();
        for _ in 0..STEPS {
            self.step(task)?;
        }
        Ok(t.elapsed() / STEPS as u32)
    }
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

/// What [`store_alone`] measured.
struct StoreAlone {
    /// Median µs per step.
    per_step: Duration,
    /// Median, least and greatest of each run ÷ the plain runs beside it.
    ratio: (f64, f64, f64),
    /// The measured runs' cost per step.
    cost: Cost,
}

/// The store alone: `recorded`'s commits, made again for a new running request of
/// their own through `Store::commit_step` on a runtime worker thread, as a run
/// makes them, with no engine between them (its model turn, tool call, redaction
/// and bookkeeping). A warm-up, then [`RUNS`] runs, with a run of `plain` after
/// the warm-up and after each, so that each is compared with the plain runs beside
/// it.
async fn store_alone(
    h: &Harness,
    recorded: Vec<Recorded>,
    plain: &mut Plain,
) -> Result<StoreAlone> {
    let recorded = std::sync::Arc::new(recorded);
    let (mut samples, mut plains) = (Vec::with_capacity(RUNS), Vec::with_capacity(RUNS + 1));
    let mut cost = Cost::default();
    let mut measured = 0u64;
    for run in 0..=RUNS {
        let (h, recorded) = (h.clone(), recorded.clone());
        let (d, c, n) = tokio::spawn(async move { replay(&h, &recorded, run).await }).await??;
        if run > 0 {
            samples.push(d);
            cost = cost.add(c);
            measured += n;
        }
        plains.push(plain.run(None)?);
    }
    Ok(StoreAlone {
        per_step: median(&samples),
        ratio: paired(&samples, &plains),
        cost: cost.per_step(measured),
    })
}

/// One replay of `recorded` for a new request (`replay-{run}`): µs per commit, its
/// cost, and how many commits it made.
async fn replay(h: &Harness, recorded: &[Recorded], run: usize) -> Result<(Duration, Cost, u64)> {
    let store = h.store();
    let req = harness_store::testing::running_request(store, &format!("replay-{run}")).await;
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
    let n = commits.len() as u64;
    let (t, at) = (Instant::now(), Cost::start());
    for c in commits {
        store.commit_step(c).await?;
    }
    Ok((t.elapsed() / n.max(1) as u32, at.since(), n))
}
