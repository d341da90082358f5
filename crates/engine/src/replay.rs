//! Replay: run a finished request again, offline, against the workspace as it is
//! now, with a model that answers from the recorded turns and tools that answer
//! from the recorded results, and report the first place the run differs from the
//! recording. An incident becomes a regression case: change the workspace or the
//! runtime, replay, and see whether the same answers still lead to the same run.
//!
//! The replay runs in a fresh, temporary SQLite store with its own worker; nothing
//! is written to the workspace's store, no model is called, no tool runs. Recorded
//! approval decisions are applied again (same decision, message, edited arguments).
//! Compared, request by request in delegation order: each step's kind, a call's
//! tool, arguments, status and outcome (`ok` and content), whether it waited for an
//! approval; then the request's status, output and error. The workspace's MCP
//! servers are started, as by any worker, to list their tools (schemas and
//! policies), and are never called. Not replayed: artifact contents a tool wrote
//! (only its reply text is) and expired approvals.

use crate::{Harness, HarnessError, HarnessOptions, WorkerOptions, run_until_settled};
use harness_core::*;
use harness_providers::{
    BoxFuture, Model, ModelError, ModelReply, ModelRequest, ToolContext, ToolOutput, ToolRunner,
};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A finished request tree as recorded: what replay answers from and compares to.
#[derive(Clone, Debug)]
pub struct Recording {
    /// The root first, then its delegated children depth first in the order their
    /// `delegate` calls were made (the order a replay creates them in).
    requests: Vec<(Request, Vec<Step>)>,
    approvals: Vec<Approval>,
}

impl Recording {
    /// A recording of the tree rooted at `root`, from its requests with their
    /// journals (any order) and its approvals. Refused unless the root is a
    /// finished root request.
    pub fn new(
        root: &RequestId,
        requests: Vec<(Request, Vec<Step>)>,
        approvals: Vec<Approval>,
    ) -> Result<Recording, HarnessError> {
        let mut by_id: HashMap<RequestId, (Request, Vec<Step>)> = requests
            .into_iter()
            .map(|(r, s)| (r.id.clone(), (r, s)))
            .collect();
        let Some((r, _)) = by_id.get(root) else {
            return Err(HarnessError::InvalidInput(format!(
                "the recording has no request {root}"
            )));
        };
        if r.parent_id.is_some() {
            return Err(HarnessError::InvalidInput(format!(
                "request {root} was delegated by {}; replay the request that delegated it",
                r.parent_id.as_ref().map(|p| p.as_str()).unwrap_or_default()
            )));
        }
        if !r.status.is_terminal() {
            return Err(HarnessError::InvalidInput(format!(
                "request {root} is {}: only a finished request is replayed",
                r.status
            )));
        }
        let mut ordered = Vec::new();
        let mut next = vec![root.clone()];
        while let Some(id) = next.pop() {
            let Some((req, mut steps)) = by_id.remove(&id) else {
                continue;
            };
            steps.sort_by_key(|s| s.idx);
            let children: Vec<RequestId> = steps
                .iter()
                .filter_map(|s| match &s.body {
                    StepBody::ToolCall {
                        child_request_id: Some(c),
                        ..
                    } => Some(c.clone()),
                    _ => None,
                })
                .collect();
            // Depth first, in call order: push reversed onto the stack.
            next.extend(children.into_iter().rev());
            ordered.push((req, steps));
        }
        Ok(Recording {
            requests: ordered,
            approvals,
        })
    }

    /// The recording of `root`'s tree in `h`'s store.
    pub async fn of_request(h: &Harness, root: &RequestId) -> Result<Recording, HarnessError> {
        let mut requests = Vec::new();
        let mut approvals = Vec::new();
        let mut next = vec![root.clone()];
        while let Some(id) = next.pop() {
            let req = h.get_request(&id).await?;
            let steps = h.store().steps(&id).await?;
            for s in &steps {
                if let StepBody::ToolCall {
                    child_request_id: Some(c),
                    ..
                } = &s.body
                {
                    next.push(c.clone());
                }
            }
            approvals.extend(
                h.list_approvals(ApprovalFilter {
                    request_id: Some(id.clone()),
                    ..Default::default()
                })
                .await?,
            );
            requests.push((req, steps));
        }
        Recording::new(root, requests, approvals)
    }

    pub fn root(&self) -> &Request {
        &self.requests[0].0
    }
}

/// Where a replay first differed from its recording.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Divergence {
    /// The recorded request it concerns (a child of the replayed root, or the root).
    pub request_id: RequestId,
    pub agent: String,
    /// The step of that request's journal, when it is about one.
    pub step_idx: Option<u32>,
    /// What the recording holds there, and what the replay did.
    pub recorded: String,
    pub replayed: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    pub request_id: RequestId,
    pub agent: String,
    /// The recorded outcome, and the replay's.
    pub recorded_status: RequestStatus,
    pub replayed_status: RequestStatus,
    /// Requests of the tree and steps compared up to the divergence (or all).
    pub requests_compared: usize,
    pub steps_compared: usize,
    pub identical: bool,
    pub divergence: Option<Divergence>,
}

/// Replays `rec` against the workspace at `workspace_root` (its agents, tools and
/// policies as they are now). The replay's records are discarded.
pub async fn replay(workspace_root: &Path, rec: &Recording) -> Result<ReplayReport, HarnessError> {
    let dir = std::env::temp_dir().join(format!(
        "agent-harness-replay-{}-{}",
        std::process::id(),
        RequestId::generate()
    ));
    let out = replay_in(workspace_root, rec, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    out
}

async fn replay_in(
    workspace_root: &Path,
    rec: &Recording,
    dir: &Path,
) -> Result<ReplayReport, HarnessError> {
    let state = Arc::new(Mutex::new(State::new(rec)));
    let opts = HarnessOptions {
        replay: Some(ReplayParts {
            store_dir: dir.to_path_buf(),
            model: Arc::new(ReplayModel {
                state: state.clone(),
            }),
            tools: Arc::new(ReplayTools {
                state: state.clone(),
            }),
        }),
        ..Default::default()
    };
    let h = Harness::open_with(workspace_root, opts, true)?;
    let root = rec.root();
    let new = h
        .request(Some(root.session_id.clone()), &root.agent, &root.input)
        .await?;
    lock(&state).map(new.id.clone(), 0);
    let replayed = loop {
        let r = run_until_settled(&h, &new.id, WorkerOptions::default()).await?;
        if r.status != RequestStatus::WaitingApproval {
            break r;
        }
        if !decide_as_recorded(&h, rec, &state, &new.id).await? {
            break h
                .cancel(
                    &new.id,
                    &Actor::new(ActorKind::Runtime, "replay"),
                    Some("replay stopped: no recorded decision"),
                )
                .await?;
        }
    };
    let live = lock(&state).divergence.clone();
    let mut report = compare(&h, rec, &state, &replayed).await?;
    if live.is_some() {
        report.divergence = live;
        report.identical = false;
    }
    drop(h);
    Ok(report)
}

/// Decides the tree's pending approvals as the recording did. False when one has no
/// recorded decision to apply (a divergence is noted).
async fn decide_as_recorded(
    h: &Harness,
    rec: &Recording,
    state: &Arc<Mutex<State>>,
    root: &RequestId,
) -> Result<bool, HarnessError> {
    let pending = h
        .list_approvals(ApprovalFilter {
            statuses: vec![ApprovalStatus::Pending],
            ..Default::default()
        })
        .await?;
    if pending.is_empty() {
        return Ok(true);
    }
    for a in pending {
        let recorded_req = lock(state).recorded_of(&a.request_id);
        let decided = rec
            .approvals
            .iter()
            .rev()
            .find(|r| r.call_id == a.call_id && r.decided_at.is_some());
        let (d, decision) = match decided.map(|r| (r, r.status)) {
            Some((d, ApprovalStatus::Approved)) => (d, Decision::Approved),
            Some((d, ApprovalStatus::Rejected)) => (d, Decision::Rejected),
            other => {
                let (request_id, agent) = recorded_req
                    .map(|i| {
                        (
                            rec.requests[i].0.id.clone(),
                            rec.requests[i].0.agent.clone(),
                        )
                    })
                    .unwrap_or_else(|| (root.clone(), a.agent.clone()));
                lock(state).diverge(Divergence {
                    request_id,
                    agent,
                    step_idx: Some(a.step_idx),
                    recorded: match other {
                        Some((_, s)) => format!(
                            "the approval of `{}` {s}: a decision replay cannot repeat",
                            a.tool
                        ),
                        None => format!("`{}` ran without an approval", a.tool),
                    },
                    replayed: format!(
                        "`{}` waits for an approval ({})",
                        a.tool,
                        a.reason.as_deref().unwrap_or("policy")
                    ),
                });
                return Ok(false);
            }
        };
        h.resolve_approval(ResolveApproval {
            session_id: a.session_id.clone(),
            request_id: a.request_id.clone(),
            approval_id: a.id.clone(),
            decision,
            message: d.message.clone(),
            // The recorded decider, named as recorded (the runtime when nothing was).
            decided_by: Actor::new(
                d.decided_by_kind.unwrap_or(ActorKind::Runtime),
                d.decided_by.clone().unwrap_or_else(|| "replay".into()),
            ),
            edited_arguments: d.edited_arguments.clone(),
        })
        .await?;
    }
    Ok(true)
}

/// Compares the replayed tree with the recording, request by request in delegation
/// order, step by step.
async fn compare(
    h: &Harness,
    rec: &Recording,
    state: &Arc<Mutex<State>>,
    replayed_root: &Request,
) -> Result<ReplayReport, HarnessError> {
    let root = rec.root();
    let mut report = ReplayReport {
        request_id: root.id.clone(),
        agent: root.agent.clone(),
        recorded_status: root.status,
        replayed_status: replayed_root.status,
        requests_compared: 0,
        steps_compared: 0,
        identical: true,
        divergence: None,
    };
    let replayed_of: HashMap<usize, RequestId> = lock(state)
        .by_new
        .iter()
        .map(|(new, (i, _))| (*i, new.clone()))
        .collect();
    for (i, (req, steps)) in rec.requests.iter().enumerate() {
        let at = |step_idx: Option<u32>, recorded: String, replayed: String| Divergence {
            request_id: req.id.clone(),
            agent: req.agent.clone(),
            step_idx,
            recorded,
            replayed,
        };
        let Some(new_id) = replayed_of.get(&i) else {
            report.divergence = Some(at(
                None,
                format!("agent {} ran ({} steps)", req.agent, steps.len()),
                "the replay never delegated to it".into(),
            ));
            break;
        };
        report.requests_compared += 1;
        let new = h.get_request(new_id).await?;
        let new_steps = h.store().steps(new_id).await?;
        let mut found = None;
        for k in 0..steps.len().max(new_steps.len()) {
            let (a, b) = (steps.get(k), new_steps.get(k));
            let idx = Some(k as u32);
            let differs = match (a, b) {
                (Some(a), Some(b)) => step_difference(a, b).map(|(x, y)| at(idx, x, y)),
                (Some(a), None) => Some(at(idx, describe(a), "no such step: the run ended".into())),
                (None, Some(b)) => Some(at(idx, "no such step: the run ended".into(), describe(b))),
                (None, None) => None,
            };
            if differs.is_some() {
                found = differs;
                break;
            }
            report.steps_compared += 1;
        }
        if found.is_none()
            && (req.status, &req.output, &req.error) != (new.status, &new.output, &new.error)
        {
            found = Some(at(None, outcome_of(req), outcome_of(&new)));
        }
        if found.is_some() {
            report.divergence = found;
            break;
        }
    }
    report.identical = report.divergence.is_none();
    Ok(report)
}

fn outcome_of(r: &Request) -> String {
    match (&r.output, &r.error) {
        (_, Some(e)) => format!("{}: {e}", r.status),
        (Some(o), _) => format!("{}: {}", r.status, clip(o)),
        _ => r.status.to_string(),
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 200;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A step in one line, as the report shows it.
fn describe(s: &Step) -> String {
    match &s.body {
        StepBody::ModelTurn { turn, .. } => match turn {
            ModelTurn::ToolCalls { calls, .. } => format!(
                "model turn calling {}",
                calls
                    .iter()
                    .map(|c| c.tool.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ModelTurn::Text { text } => format!("model turn answering: {}", clip(text)),
        },
        StepBody::ToolCall {
            call,
            outcome,
            approval_id,
            ..
        } => format!(
            "{} {} {}{}{}",
            s.status,
            call.tool,
            call.arguments,
            if approval_id.is_some() {
                " (after an approval)"
            } else {
                ""
            },
            match outcome {
                Some(o) => format!(
                    " → {} {}",
                    if o.ok { "ok" } else { "error" },
                    clip(&o.content)
                ),
                None => String::new(),
            }
        ),
    }
}

/// What differs between a recorded step and a replayed one, if anything.
fn step_difference(a: &Step, b: &Step) -> Option<(String, String)> {
    let same = match (&a.body, &b.body) {
        (StepBody::ModelTurn { turn: x, .. }, StepBody::ModelTurn { turn: y, .. }) => x == y,
        (
            StepBody::ToolCall {
                call: c1,
                outcome: o1,
                approval_id: a1,
                ..
            },
            StepBody::ToolCall {
                call: c2,
                outcome: o2,
                approval_id: a2,
                ..
            },
        ) => {
            c1.tool == c2.tool
                && c1.arguments == c2.arguments
                && a.status == b.status
                && a1.is_some() == a2.is_some()
                && o1.as_ref().map(|o| (o.ok, &o.content))
                    == o2.as_ref().map(|o| (o.ok, &o.content))
        }
        _ => false,
    };
    (!same).then(|| (describe(a), describe(b)))
}

/// The options a replay opens its harness with (see [`HarnessOptions::replay`]).
#[derive(Clone)]
pub struct ReplayParts {
    /// The temporary store's folder.
    pub store_dir: PathBuf,
    /// Answers every model turn.
    pub model: Arc<dyn Model>,
    /// Answers every tool call.
    pub tools: Arc<dyn ToolRunner>,
}

struct State {
    /// Recorded requests not yet matched, by agent, in delegation order.
    unmatched: HashMap<String, VecDeque<usize>>,
    /// Replayed request → (recorded request index, model turns answered).
    by_new: HashMap<RequestId, (usize, usize)>,
    /// Each recorded request's model turns, in order.
    turns: Vec<Vec<(u32, ModelTurn, TurnInfo)>>,
    /// Recorded tool results by call id: (request index, step, call, outcome).
    calls: HashMap<CallId, (usize, u32, ToolCall, Option<ToolOutcome>)>,
    agents: Vec<(RequestId, String)>,
    divergence: Option<Divergence>,
}

fn lock(s: &Arc<Mutex<State>>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    fn new(rec: &Recording) -> State {
        let mut unmatched: HashMap<String, VecDeque<usize>> = HashMap::new();
        let mut turns = Vec::new();
        let mut calls = HashMap::new();
        for (i, (req, steps)) in rec.requests.iter().enumerate() {
            if i > 0 {
                unmatched.entry(req.agent.clone()).or_default().push_back(i);
            }
            let mut own = Vec::new();
            for s in steps {
                match &s.body {
                    StepBody::ModelTurn { turn, info } => {
                        let mut info = info.clone();
                        info.raw_artifact = None;
                        own.push((s.idx, turn.clone(), info));
                    }
                    StepBody::ToolCall { call, outcome, .. } => {
                        calls.insert(
                            call.call_id.clone(),
                            (i, s.idx, call.clone(), outcome.clone()),
                        );
                    }
                }
            }
            turns.push(own);
        }
        // What an approval edited is what ran: compare with that.
        for a in &rec.approvals {
            if let (Some(edited), Some(c)) = (&a.edited_arguments, calls.get_mut(&a.call_id)) {
                c.2.arguments = edited.clone();
            }
        }
        State {
            unmatched,
            by_new: HashMap::new(),
            turns,
            calls,
            agents: rec
                .requests
                .iter()
                .map(|(r, _)| (r.id.clone(), r.agent.clone()))
                .collect(),
            divergence: None,
        }
    }

    fn map(&mut self, new: RequestId, recorded: usize) {
        self.by_new.insert(new, (recorded, 0));
    }

    fn recorded_of(&self, new: &RequestId) -> Option<usize> {
        self.by_new.get(new).map(|(i, _)| *i)
    }

    fn diverge(&mut self, d: Divergence) {
        if self.divergence.is_none() {
            self.divergence = Some(d);
        }
    }

    /// The recorded turn answering the replayed request's next model call.
    fn next_turn(&mut self, new: &RequestId, agent: &str) -> Result<ModelReply, String> {
        let i = match self.by_new.get(new) {
            Some((i, _)) => *i,
            None => {
                let Some(i) = self.unmatched.get_mut(agent).and_then(|q| q.pop_front()) else {
                    let root = self.agents[0].clone();
                    self.diverge(Divergence {
                        request_id: root.0,
                        agent: root.1,
                        step_idx: None,
                        recorded: format!("no further request of agent {agent}"),
                        replayed: format!("delegated to agent {agent} ({new})"),
                    });
                    return Err(format!(
                        "replay: the recording has no further request of agent {agent}"
                    ));
                };
                self.map(new.clone(), i);
                i
            }
        };
        let (_, answered) = self.by_new.get_mut(new).expect("mapped");
        let k = *answered;
        *answered += 1;
        match self.turns[i].get(k) {
            Some((_, turn, info)) => Ok(ModelReply {
                turn: turn.clone(),
                info: info.clone(),
                raw: None,
            }),
            None => {
                let (request_id, agent) = self.agents[i].clone();
                let n = self.turns[i].len();
                self.diverge(Divergence {
                    request_id,
                    agent,
                    step_idx: None,
                    recorded: format!("{n} model turn{}", if n == 1 { "" } else { "s" }),
                    replayed: format!("asked the model for turn {}", k + 1),
                });
                Err(format!(
                    "replay: the recording has no model turn {} for this request",
                    k + 1
                ))
            }
        }
    }

    /// The recorded result of the call the replay makes.
    fn result_of(
        &mut self,
        tool: &str,
        arguments: &serde_json::Value,
        call: &CallId,
    ) -> ToolOutput {
        let failed = |content: String| ToolOutput {
            ok: false,
            content,
            artifacts: vec![],
        };
        let Some((i, idx, recorded, outcome)) = self.calls.get(call).cloned() else {
            let root = self.agents[0].clone();
            self.diverge(Divergence {
                request_id: root.0,
                agent: root.1,
                step_idx: None,
                recorded: format!("no call {call}"),
                replayed: format!("ran {tool} {arguments}"),
            });
            return failed(format!("replay: the recording has no call {call}"));
        };
        if recorded.tool != tool || &recorded.arguments != arguments {
            let (request_id, agent) = self.agents[i].clone();
            self.diverge(Divergence {
                request_id,
                agent,
                step_idx: Some(idx),
                recorded: format!("ran {} {}", recorded.tool, recorded.arguments),
                replayed: format!("ran {tool} {arguments}"),
            });
        }
        match outcome {
            Some(o) => ToolOutput {
                ok: o.ok,
                content: o.content,
                artifacts: vec![],
            },
            None => failed(format!(
                "replay: call {call} has no recorded result (it never finished)"
            )),
        }
    }
}

struct ReplayModel {
    state: Arc<Mutex<State>>,
}

impl Model for ReplayModel {
    fn complete<'a>(
        &'a self,
        req: ModelRequest<'a>,
    ) -> BoxFuture<'a, Result<ModelReply, ModelError>> {
        let reply = lock(&self.state)
            .next_turn(req.request_id, req.agent)
            .map_err(ModelError::Call);
        Box::pin(async move { reply })
    }
}

struct ReplayTools {
    state: Arc<Mutex<State>>,
}

impl ToolRunner for ReplayTools {
    fn run<'a>(
        &'a self,
        tool: &'a str,
        arguments: &'a serde_json::Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, ToolOutput> {
        let out = lock(&self.state).result_of(tool, arguments, &ctx.call_id);
        Box::pin(async move { out })
    }
}
