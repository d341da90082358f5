//! Benchmark support (feature `synthetic`): a bulk generator that fills a store with
//! rows shaped exactly like the engine's, and a storage report.
//!
//! The generator writes what real runs would have committed — requests, sessions,
//! journal steps (bodies serialized from [`harness_core::StepBody`]), approvals,
//! events with the engine's payloads, a (dead) worker — in one transaction with
//! prepared statements, deterministically from a seed. It is for benchmarks of
//! the views (`overview`, `requests tail`, ...) on a large store, never for real data.

use crate::{DB_FILE, Store, StoreError, StoreOptions};
use harness_core::*;
use rusqlite::{Connection, Statement, params};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// The SQLite library version linked into the store.
pub fn sqlite_version() -> &'static str {
    rusqlite::version()
}

/// What to generate. Counts are of root requests by final status; the completed
/// ones make up the rest of `requests`, and their tool turns are adjusted so the
/// events total exactly `events`.
#[derive(Clone, Debug)]
pub struct SyntheticSpec {
    pub requests: usize,
    pub events: usize,
    /// Requests are spread round-robin over this many sessions.
    pub sessions: usize,
    pub queued: usize,
    pub running: usize,
    /// Requests paused on a pending approval.
    pub waiting_approval: usize,
    pub failed: usize,
    pub cancelled: usize,
    /// Every `approval_every`-th completed request went through an approved approval (0: none).
    pub approval_every: usize,
    /// Agent of most requests (must exist in the workspace).
    pub agent: String,
    /// Agent of failed requests (`max_steps` exceeded after 5 steps).
    pub failing_agent: String,
    /// Tool the plain tool turns call (no approval).
    pub tool: String,
    /// Tool that requires approval.
    pub approval_tool: String,
    /// The newest activity happens just before this instant.
    pub now: Timestamp,
    /// How far back the oldest request was admitted.
    pub span: Duration,
    pub seed: u64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            requests: 100_000,
            events: 1_000_000,
            sessions: 20_000,
            queued: 200,
            running: 100,
            waiting_approval: 500,
            failed: 2_000,
            cancelled: 200,
            approval_every: 20,
            agent: "bench".into(),
            failing_agent: "writer".into(),
            tool: "list_files".into(),
            approval_tool: "approved_list".into(),
            now: Timestamp(0),
            span: Duration::from_secs(7 * 24 * 3600),
            seed: 42,
        }
    }
}

/// What was generated.
#[derive(Clone, Debug, Default)]
pub struct SyntheticReport {
    pub requests: u64,
    pub sessions: u64,
    pub steps: u64,
    pub events: u64,
    pub approvals: u64,
    pub pending_approvals: u64,
    pub queued: u64,
    pub running: u64,
    pub waiting_approval: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// A completed request that went through an approval (a good `requests show` target).
    pub sample_request: Option<RequestId>,
    pub sample_session: Option<SessionId>,
    /// A request paused on a pending approval.
    pub sample_waiting: Option<RequestId>,
    pub db_bytes: u64,
    pub elapsed: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Completed,
    /// Completed after one approved call.
    CompletedApproved,
    Failed,
    Cancelled,
    Running,
    Waiting,
    Queued,
}

#[derive(Clone, Copy, Debug)]
struct Plan {
    kind: Kind,
    /// Plain tool turns (model turn + tool call) before the end.
    turns: u32,
}

impl Plan {
    fn events(self) -> usize {
        let t = self.turns as usize;
        match self.kind {
            // queued, started, 3 per turn, final model turn, completed
            Kind::Completed => 4 + 3 * t,
            // + model turn (approval call), approval.requested, waiting, resolved,
            //   started again, tool.started, tool.completed
            Kind::CompletedApproved => 11 + 3 * t,
            // queued, started, 3 per turn, model turn, failed (max steps)
            Kind::Failed => 4 + 3 * t,
            // queued, started, 3 per turn, cancelled
            Kind::Cancelled => 3 + 3 * t,
            // queued, started, model turn, tool.started
            Kind::Running => 4,
            // queued, started, model turn, approval.requested, waiting
            Kind::Waiting => 5,
            Kind::Queued => 1,
        }
    }
}

/// Decides every request's shape so the events add up to `spec.events` exactly.
fn plans(spec: &SyntheticSpec) -> Result<Vec<Plan>, StoreError> {
    let special = spec.queued + spec.running + spec.waiting_approval + spec.failed + spec.cancelled;
    if special > spec.requests {
        return Err(StoreError::Io(
            "synthetic spec: more special requests than requests".into(),
        ));
    }
    let completed = spec.requests - special;
    let mut plans = Vec::with_capacity(spec.requests);
    for i in 0..completed {
        let kind = if spec.approval_every > 0 && i % spec.approval_every == spec.approval_every / 2
        {
            Kind::CompletedApproved
        } else {
            Kind::Completed
        };
        let turns = if kind == Kind::Completed { 2 } else { 1 };
        plans.push(Plan { kind, turns });
    }
    for _ in 0..spec.failed {
        plans.push(Plan {
            kind: Kind::Failed,
            turns: 2,
        });
    }
    for _ in 0..spec.cancelled {
        plans.push(Plan {
            kind: Kind::Cancelled,
            turns: 1,
        });
    }
    // The active requests are the newest, each alone in its session.
    for (kind, n) in [
        (Kind::Running, spec.running),
        (Kind::Waiting, spec.waiting_approval),
        (Kind::Queued, spec.queued),
    ] {
        for _ in 0..n {
            plans.push(Plan { kind, turns: 0 });
        }
    }
    // Interleave failures and cancellations among the completed requests.
    let done = &mut plans[..completed + spec.failed + spec.cancelled];
    let mut rng = Rng(spec.seed ^ 0x5eed);
    for i in (1..done.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        done.swap(i, j);
    }
    // One worker.started event besides the requests'.
    let total: usize = 1 + plans.iter().map(|p| p.events()).sum::<usize>();
    let mut diff = spec.events as i64 - total as i64;
    // Fix the remainder mod 3 (a plain completed request becomes an approved one: +1
    // with one turn fewer... 10 -> 11), then move whole tool turns (3 events each).
    let mut idx = 0;
    while diff.rem_euclid(3) != 0 {
        while idx < plans.len() && plans[idx].kind != Kind::Completed {
            idx += 1;
        }
        let p = plans
            .get_mut(idx)
            .ok_or_else(|| StoreError::Io("synthetic spec: cannot reach the event total".into()))?;
        // 4 + 3t -> 11 + 3(t-2): +1
        p.kind = Kind::CompletedApproved;
        p.turns = p.turns.saturating_sub(2);
        diff -= 1;
        idx += 1;
    }
    let mut turns = diff / 3;
    while turns != 0 {
        let before = turns;
        for p in plans.iter_mut().filter(|p| p.kind == Kind::Completed) {
            if turns > 0 {
                p.turns += 1;
                turns -= 1;
            } else if turns < 0 && p.turns > 0 {
                p.turns -= 1;
                turns += 1;
            }
            if turns == 0 {
                break;
            }
        }
        if turns == before {
            return Err(StoreError::Io(
                "synthetic spec: cannot reach the event total".into(),
            ));
        }
    }
    Ok(plans)
}

/// splitmix64: deterministic ids and variety without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A lowercase ULID for `ms` (so ids sort by time like generated ones).
    fn ulid(&mut self, ms: i64) -> String {
        const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
        let value: u128 = ((ms as u128 & 0xffff_ffff_ffff) << 80)
            | ((self.next() as u128) << 16)
            | (self.next() as u128 & 0xffff);
        let mut out = [0u8; 26];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 5 * (25 - i);
            *slot = ALPHABET[((value >> shift) & 0x1f) as usize];
        }
        String::from_utf8(out.to_vec()).expect("ascii")
    }
}

struct Stmts<'c> {
    session: Statement<'c>,
    request: Statement<'c>,
}

/// The per-request writer: keeps the current time and the event count. Steps and
/// events go through the store's own insert functions, as the engine's do.
struct Emit<'a, 'c> {
    conn: &'c Connection,
    st: &'a mut Stmts<'c>,
    rng: &'a mut Rng,
    events: u64,
    steps: u64,
}

impl Emit<'_, '_> {
    /// Appends an event about request `req`, with the same typed payload the engine writes.
    fn event(&mut self, at: i64, req: &str, ses: &str, body: EventBody) -> Result<(), StoreError> {
        let event = body.about(
            &RequestId::from_trusted(req.to_string()),
            &SessionId::from_trusted(ses.to_string()),
        );
        crate::events::append(self.conn, Timestamp(at), &[event])?;
        self.events += 1;
        Ok(())
    }

    fn step(&mut self, step: &Step) -> Result<(), StoreError> {
        crate::steps::insert_step(self.conn, step)?;
        self.steps += 1;
        Ok(())
    }

    fn call(&mut self, tool: &str, at: i64) -> ToolCall {
        ToolCall {
            call_id: CallId::from_trusted(format!("call_{}", self.rng.ulid(at))),
            tool: tool.to_string(),
            arguments: json!({"path": "reports"}),
        }
    }
}

/// Fills the store in `store_dir` (created and migrated if needed; it should be
/// empty) with synthetic records, in one transaction.
pub fn generate(store_dir: &Path, spec: &SyntheticSpec) -> Result<SyntheticReport, StoreError> {
    let started = Instant::now();
    drop(Store::open(store_dir, StoreOptions::default())?);
    let conn = Connection::open(store_dir.join(DB_FILE))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144; \
         PRAGMA temp_store = MEMORY;",
    )?;
    let plans = plans(spec)?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let mut report = fill(&conn, spec, &plans)?;
    conn.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);")?;
    drop(conn);
    report.db_bytes = file_bytes(store_dir);
    report.elapsed = started.elapsed();
    Ok(report)
}

fn fill(
    c: &Connection,
    spec: &SyntheticSpec,
    plans: &[Plan],
) -> Result<SyntheticReport, StoreError> {
    let mut rng = Rng(spec.seed);
    let mut report = SyntheticReport::default();
    let n = plans.len() as i64;
    let start = spec.now.0 - spec.span.as_millis() as i64;
    // Requests are admitted evenly over the span; each runs for about a second per step.
    let gap = (spec.span.as_millis() as i64 / n.max(1)).max(1);
    let worker = format!("wrk_{}", rng.ulid(start));
    let hb = spec.now.0 - 3_600_000;
    c.execute(
        "INSERT INTO workers (id, pid, host, started_at, heartbeat_at, stopped_at) \
         VALUES (?1, 4242, 'bench-host', ?2, ?3, NULL)",
        params![worker, start - 1000, hb],
    )?;
    let mut st = Stmts {
        session: c.prepare(
            "INSERT INTO sessions (id, created_at, last_activity_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (id) DO UPDATE SET last_activity_at = excluded.last_activity_at",
        )?,
        request: c.prepare(
            "INSERT INTO requests (id, session_id, agent, parent_id, status, attempt, current_agent, \
             input, output, error, trace_id, created_at, started_at, last_activity_at, finished_at, \
             steps, worker_id, queue_seq) \
             VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        )?,
    };
    crate::events::append(
        c,
        Timestamp(start - 1000),
        &[EventBody::WorkerStarted {
            worker_id: WorkerId::from_trusted(worker.clone()),
            pid: 4242,
            host: "bench-host".into(),
            recovered_requests: 0,
        }
        .runtime()],
    )?;
    let sessions: Vec<String> = (0..spec.sessions.max(1))
        .map(|i| format!("ses_{}", rng.ulid(start + i as i64)))
        .collect();
    let n_active = spec.running + spec.waiting_approval + spec.queued;
    let mut active_session = 0usize;
    let mut events = 1u64;
    let mut steps = 0u64;
    for (i, plan) in plans.iter().enumerate() {
        let created = start + i as i64 * gap;
        let active = i >= plans.len() - n_active;
        // Active requests get sessions of their own (the last ones round-robin would
        // give), so no session has two active requests.
        let session = if active {
            active_session += 1;
            &sessions[(sessions.len() - active_session) % sessions.len()]
        } else {
            &sessions[i % (sessions.len() - n_active.min(sessions.len() - 1))]
        };
        let agent = if plan.kind == Kind::Failed {
            &spec.failing_agent
        } else {
            &spec.agent
        };
        let rid = format!("req_{}", rng.ulid(created));
        let mut e = Emit {
            conn: c,
            st: &mut st,
            rng: &mut rng,
            events: 0,
            steps: 0,
        };
        let r = one_request(
            &mut e,
            spec,
            *plan,
            &rid,
            session,
            agent,
            &worker,
            created,
            i as i64 + 1,
        )?;
        events += e.events;
        steps += e.steps;
        st.session
            .execute(params![session, created, r.last_activity])?;
        report.approvals += r.approvals;
        match plan.kind {
            Kind::Completed => report.completed += 1,
            Kind::CompletedApproved => {
                report.completed += 1;
                if report.sample_request.is_none() && i > plans.len() / 2 {
                    report.sample_request = Some(RequestId::from_trusted(rid.clone()));
                    report.sample_session = Some(SessionId::from_trusted(session.clone()));
                }
            }
            Kind::Failed => report.failed += 1,
            Kind::Cancelled => report.cancelled += 1,
            Kind::Running => report.running += 1,
            Kind::Waiting => {
                report.waiting_approval += 1;
                report.pending_approvals += 1;
                if report.sample_waiting.is_none() {
                    report.sample_waiting = Some(RequestId::from_trusted(rid.clone()));
                }
            }
            Kind::Queued => report.queued += 1,
        }
    }
    report.requests = plans.len() as u64;
    report.sessions =
        c.query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get::<_, i64>(0))? as u64;
    report.events = events;
    report.steps = steps;
    Ok(report)
}

struct Written {
    last_activity: i64,
    approvals: u64,
}

#[allow(clippy::too_many_arguments)]
fn one_request(
    e: &mut Emit<'_, '_>,
    spec: &SyntheticSpec,
    plan: Plan,
    rid: &str,
    ses: &str,
    agent: &str,
    worker: &str,
    created: i64,
    queue_seq: i64,
) -> Result<Written, StoreError> {
    const SEC: i64 = 1000;
    let id = RequestId::from_trusted(rid.to_string());
    let input = format!("Summarise the reports of batch {queue_seq} for the operators.");
    let trace = format!("{:016x}{:016x}", e.rng.next(), e.rng.next());
    e.event(
        created,
        rid,
        ses,
        EventBody::RequestQueued {
            retry_of: None,
            agent: agent.to_string(),
            input_bytes: input.len(),
            trace_id: trace.to_string(),
        },
    )?;
    let mut t = created;
    let mut approvals = 0;
    let attempt = 1;
    let mut counted = 0u32;
    let mut idx = 0u32;
    if plan.kind == Kind::Queued {
        e.st.request.execute(params![
            rid,
            ses,
            agent,
            "queued",
            0,
            Option::<String>::None,
            input,
            Option::<String>::None,
            Option::<String>::None,
            trace,
            created,
            Option::<i64>::None,
            created,
            Option::<i64>::None,
            0,
            Option::<String>::None,
            queue_seq,
        ])?;
        return Ok(Written {
            last_activity: created,
            approvals,
        });
    }
    t += 50;
    let started_at = t;
    e.event(
        t,
        rid,
        ses,
        EventBody::RequestStarted {
            attempt: 1,
            worker_id: WorkerId::from_trusted(worker.to_string()),
        },
    )?;
    let listing = "reports/2025-q3.md\nreports/2025-q4.md\n";
    // Plain tool turns: a model turn proposing one call, then the call (started, completed).
    for _ in 0..plan.turns {
        t += SEC;
        let call = e.call(&spec.tool, t);
        model_turn(e, &id, ses, agent, idx, t, tool_turn(&call))?;
        idx += 1;
        counted += 1;
        t += 20;
        e.event(
            t,
            rid,
            ses,
            EventBody::ToolStarted {
                call: call.clone(),
                note: None,
            },
        )?;
        let done = t + 5;
        let outcome = ToolOutcome {
            ok: true,
            content: listing.to_string(),
            artifact: None,
        };
        e.event(done, rid, ses, completed_event(&call, &outcome, false))?;
        e.step(&Step {
            request_id: id.clone(),
            idx,
            agent: agent.to_string(),
            status: StepStatus::Completed,
            started_at: Timestamp(t),
            finished_at: Some(Timestamp(done)),
            body: StepBody::ToolCall {
                call,
                approval_id: None,
                outcome: Some(outcome),
                child_request_id: None,
            },
        })?;
        idx += 1;
        counted += 1;
        t = done;
    }
    let (status, output, error, finished): (&str, Option<String>, Option<String>, Option<i64>) =
        match plan.kind {
            Kind::Completed | Kind::CompletedApproved => {
                if plan.kind == Kind::CompletedApproved {
                    // The call that needs an approval; an operator approves it ten minutes later.
                    t += SEC;
                    let call = e.call(&spec.approval_tool, t);
                    model_turn(e, &id, ses, agent, idx, t, tool_turn(&call))?;
                    idx += 1;
                    counted += 1;
                    let aid = format!("apr_{}", e.rng.ulid(t));
                    let asked = t + 1;
                    let decided = asked + 600 * SEC;
                    let mut approval = approval(&aid, &id, ses, agent, idx, &call, asked);
                    e.event(
                        asked,
                        rid,
                        ses,
                        EventBody::ApprovalRequested {
                            approval: Box::new(approval.clone()),
                        },
                    )?;
                    approval.status = ApprovalStatus::Approved;
                    approval.decided_by = Some("alice".into());
                    approval.decided_by_kind = Some(ActorKind::Token);
                    approval.message = Some("looks fine".into());
                    approval.decided_at = Some(Timestamp(decided));
                    crate::approvals::insert(e.conn, &approval)?;
                    approvals += 1;
                    e.event(
                        asked,
                        rid,
                        ses,
                        EventBody::RequestWaitingApproval {
                            approval_id: Some(approval.id.clone()),
                            via_child: None,
                        },
                    )?;
                    e.event(
                        decided,
                        rid,
                        ses,
                        EventBody::ApprovalResolved {
                            approval: Box::new(approval.clone()),
                        },
                    )?;
                    // Resumed after the approval: the same attempt.
                    t = decided + 30;
                    e.event(
                        t,
                        rid,
                        ses,
                        EventBody::RequestStarted {
                            attempt: 1,
                            worker_id: WorkerId::from_trusted(worker.to_string()),
                        },
                    )?;
                    e.event(
                        t + 1,
                        rid,
                        ses,
                        EventBody::ToolStarted {
                            call: call.clone(),
                            note: None,
                        },
                    )?;
                    let outcome = ToolOutcome {
                        ok: true,
                        content: listing.to_string(),
                        artifact: None,
                    };
                    let done = t + 6;
                    e.event(done, rid, ses, completed_event(&call, &outcome, false))?;
                    e.step(&Step {
                        request_id: id.clone(),
                        idx,
                        agent: agent.to_string(),
                        status: StepStatus::Completed,
                        started_at: Timestamp(asked),
                        finished_at: Some(Timestamp(done)),
                        body: StepBody::ToolCall {
                            call,
                            approval_id: Some(ApprovalId::from_trusted(aid)),
                            outcome: Some(outcome),
                            child_request_id: None,
                        },
                    })?;
                    idx += 1;
                    counted += 1;
                    t = done;
                }
                t += SEC;
                let text = format!(
                    "Done: {} reports summarised and filed for the operators.",
                    2
                );
                model_turn(
                    e,
                    &id,
                    ses,
                    agent,
                    idx,
                    t,
                    ModelTurn::Text { text: text.clone() },
                )?;
                counted += 1;
                e.event(
                    t,
                    rid,
                    ses,
                    EventBody::RequestCompleted {
                        output_bytes: text.len(),
                        steps: counted,
                    },
                )?;
                ("completed", Some(text), None, Some(t))
            }
            Kind::Failed => {
                t += SEC;
                let call = e.call(&spec.tool, t);
                model_turn(e, &id, ses, agent, idx, t, tool_turn(&call))?;
                counted += 1;
                let reason = format!(
                    "exceeded the agent's max_steps ({}) of agent `{agent}`",
                    idx + 1
                );
                t += 10;
                e.event(
                    t,
                    rid,
                    ses,
                    EventBody::RequestFailed {
                        error: reason.clone(),
                    },
                )?;
                ("failed", None, Some(reason), Some(t))
            }
            Kind::Cancelled => {
                t += 30 * SEC;
                e.event(
                    t,
                    rid,
                    ses,
                    EventBody::RequestCancelled {
                        by: Actor::new(ActorKind::Cli, "bob"),
                        reason: None,
                        with: None,
                    },
                )?;
                (
                    "cancelled",
                    None,
                    Some("cancelled by bob".to_string()),
                    Some(t),
                )
            }
            Kind::Running => {
                // In the middle of a tool call when its worker died.
                t += SEC;
                let call = e.call(&spec.tool, t);
                model_turn(e, &id, ses, agent, idx, t, tool_turn(&call))?;
                idx += 1;
                counted += 1;
                t += 20;
                e.event(
                    t,
                    rid,
                    ses,
                    EventBody::ToolStarted {
                        call: call.clone(),
                        note: None,
                    },
                )?;
                e.step(&Step {
                    request_id: id.clone(),
                    idx,
                    agent: agent.to_string(),
                    status: StepStatus::Started,
                    started_at: Timestamp(t),
                    finished_at: None,
                    body: StepBody::ToolCall {
                        call,
                        approval_id: None,
                        outcome: None,
                        child_request_id: None,
                    },
                })?;
                ("running", None, None, None)
            }
            Kind::Waiting => {
                t += SEC;
                let call = e.call(&spec.approval_tool, t);
                model_turn(e, &id, ses, agent, idx, t, tool_turn(&call))?;
                idx += 1;
                counted += 1;
                let aid = format!("apr_{}", e.rng.ulid(t));
                let asked = t + 1;
                let approval = approval(&aid, &id, ses, agent, idx, &call, asked);
                crate::approvals::insert(e.conn, &approval)?;
                approvals += 1;
                e.event(
                    asked,
                    rid,
                    ses,
                    EventBody::ApprovalRequested {
                        approval: Box::new(approval.clone()),
                    },
                )?;
                e.event(
                    asked,
                    rid,
                    ses,
                    EventBody::RequestWaitingApproval {
                        approval_id: Some(approval.id.clone()),
                        via_child: None,
                    },
                )?;
                e.step(&Step {
                    request_id: id.clone(),
                    idx,
                    agent: agent.to_string(),
                    status: StepStatus::AwaitingApproval,
                    started_at: Timestamp(asked),
                    finished_at: None,
                    body: StepBody::ToolCall {
                        call,
                        approval_id: Some(ApprovalId::from_trusted(aid)),
                        outcome: None,
                        child_request_id: None,
                    },
                })?;
                t = asked;
                ("waiting_approval", None, None, None)
            }
            Kind::Queued => unreachable!("handled above"),
        };
    e.st.request.execute(params![
        rid, ses, agent, status, attempt, agent, input, output, error, trace, created, started_at,
        t, finished, counted, worker, queue_seq,
    ])?;
    Ok(Written {
        last_activity: t,
        approvals,
    })
}

fn tool_turn(call: &ToolCall) -> ModelTurn {
    ModelTurn::ToolCalls {
        text: String::new(),
        calls: vec![call.clone()],
    }
}

/// A model turn step and its event, as the engine commits them.
fn model_turn(
    e: &mut Emit<'_, '_>,
    id: &RequestId,
    ses: &str,
    agent: &str,
    idx: u32,
    at: i64,
    turn: ModelTurn,
) -> Result<(), StoreError> {
    let body = EventBody::ModelTurn {
        step: idx,
        turn: turn.clone(),
        info: None,
    };
    e.event(at, id.as_str(), ses, body)?;
    e.step(&Step {
        request_id: id.clone(),
        idx,
        agent: agent.to_string(),
        status: StepStatus::Completed,
        started_at: Timestamp(at - 400),
        finished_at: Some(Timestamp(at)),
        body: StepBody::model_turn(turn),
    })
}

fn completed_event(call: &ToolCall, o: &ToolOutcome, rejected: bool) -> EventBody {
    EventBody::ToolCompleted {
        tool: call.tool.clone(),
        call_id: call.call_id.clone(),
        ok: o.ok,
        rejected,
        output_bytes: o.content.len(),
        preview: preview(&o.content, 200),
        artifact: o.artifact.clone(),
    }
}

/// A pending approval of `call`, asked at `asked` (expires a day later).
fn approval(
    aid: &str,
    id: &RequestId,
    ses: &str,
    agent: &str,
    idx: u32,
    call: &ToolCall,
    asked: i64,
) -> Approval {
    let session = SessionId::from_trusted(ses.to_string());
    let (at, expires) = (Timestamp(asked), Timestamp(asked + 24 * 3600 * 1000));
    let mut a = Approval::for_call(call, id, &session, agent, idx, at, expires);
    a.id = ApprovalId::from_trusted(aid.to_string());
    a
}

fn file_bytes(store_dir: &Path) -> u64 {
    [DB_FILE.to_string(), format!("{DB_FILE}-wal")]
        .iter()
        .filter_map(|f| std::fs::metadata(store_dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Space used by one table or index (SQLite `dbstat`).
#[derive(Clone, Debug, Default)]
pub struct ObjectSize {
    pub name: String,
    pub pages: u64,
    /// Bytes of the pages it occupies.
    pub bytes: u64,
    /// Bytes of row (or key) content in them.
    pub payload: u64,
}

/// How much a store occupies, after a checkpoint (and optionally VACUUM).
#[derive(Clone, Debug, Default)]
pub struct StorageReport {
    /// Database plus WAL file sizes before anything was done.
    pub files_before: u64,
    /// Database plus WAL file sizes at the end.
    pub files_after: u64,
    pub page_size: u64,
    pub page_count: u64,
    pub freelist_count: u64,
    /// Per table and index, largest first.
    pub objects: Vec<ObjectSize>,
    pub rows_steps: u64,
    pub rows_events: u64,
}

impl StorageReport {
    /// `page_count * page_size`: the database's size.
    pub fn db_bytes(&self) -> u64 {
        self.page_count * self.page_size
    }

    /// Sum over the objects whose name satisfies `pick`.
    pub fn bytes_of(&self, pick: impl Fn(&str) -> bool) -> (u64, u64) {
        self.objects
            .iter()
            .filter(|o| pick(&o.name))
            .fold((0, 0), |(b, p), o| (b + o.bytes, p + o.payload))
    }
}

/// Measures the store in `store_dir`. No other process may be writing. With
/// `compact`, checkpoints the WAL into the database and VACUUMs first, so the
/// figures are the records' size, not free pages.
pub fn storage_report(store_dir: &Path, compact: bool) -> Result<StorageReport, StoreError> {
    let files_before = file_bytes(store_dir);
    let c = Connection::open(store_dir.join(DB_FILE))?;
    c.busy_timeout(Duration::from_secs(10))?;
    if compact {
        c.execute_batch(
            "PRAGMA wal_checkpoint(TRUNCATE); VACUUM; PRAGMA wal_checkpoint(TRUNCATE);",
        )?;
    }
    let one = |sql: &str| -> Result<u64, StoreError> {
        Ok(c.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
    };
    let mut report = StorageReport {
        files_before,
        page_size: one("PRAGMA page_size")?,
        page_count: one("PRAGMA page_count")?,
        freelist_count: one("PRAGMA freelist_count")?,
        rows_steps: one("SELECT COUNT(*) FROM steps")?,
        rows_events: one("SELECT COUNT(*) FROM events")?,
        ..Default::default()
    };
    let mut stmt = c.prepare(
        "SELECT name, COUNT(*), SUM(pgsize), SUM(payload) FROM dbstat GROUP BY name \
         ORDER BY SUM(pgsize) DESC",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ObjectSize {
            name: r.get(0)?,
            pages: r.get::<_, i64>(1)? as u64,
            bytes: r.get::<_, i64>(2)? as u64,
            payload: r.get::<_, i64>(3)? as u64,
        })
    })?;
    report.objects = rows.collect::<Result<_, _>>()?;
    drop(stmt);
    drop(c);
    report.files_after = file_bytes(store_dir);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated records read back as the engine's would: every event payload is
    /// a typed one, approvals are rows the store can read, counts add up.
    #[tokio::test]
    async fn a_small_store_reads_back_consistently() {
        let dir = tempfile::tempdir().unwrap();
        let spec = SyntheticSpec {
            requests: 200,
            events: 2_000,
            sessions: 30,
            queued: 5,
            running: 3,
            waiting_approval: 7,
            failed: 4,
            cancelled: 2,
            approval_every: 5,
            now: Timestamp(10_000_000_000),
            ..SyntheticSpec::default()
        };
        let report = generate(dir.path(), &spec).unwrap();
        assert_eq!((report.requests, report.events), (200, 2_000));
        let store = crate::Store::open(dir.path(), Default::default()).unwrap();
        let events = store
            .events_after(0, EventFilter::default(), 0)
            .await
            .unwrap();
        assert_eq!(events.len(), 2_000);
        let approvals = store
            .list_approvals(ApprovalFilter::default())
            .await
            .unwrap();
        assert_eq!(approvals.len() as u64, report.approvals);
        let pending = approvals
            .iter()
            .filter(|a| a.status == ApprovalStatus::Pending)
            .count();
        assert_eq!(pending, 7);
        let requested = events
            .iter()
            .filter(|e| e.kind == EventKind::ApprovalRequested)
            .count();
        assert_eq!(requested, approvals.len());
    }
}
