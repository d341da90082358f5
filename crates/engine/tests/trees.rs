//! Request trees (delegation) under concurrency: approvers, expiries and cancels
//! racing pausing children on a multi-thread runtime. No tree may be stranded.

mod common;

use common::Backend;
use harness_core::*;
use harness_engine::{Harness, WorkerOptions};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const GATED_LEAF: &str =
    "      - tool_calls: [{tool: gated, arguments: {}}]\n      - text: leaf done\n";
/// `PIDFILE` becomes an absolute path in the workspace's `work/` folder.
const SLOW_LEAF: &str =
    "      - tool_calls: [{tool: slow, arguments: {pidfile: PIDFILE}}]\n      - text: leaf done\n";

/// `boss` → `mid` → `leaf`; the leaf calls a tool that needs approval.
fn tree_workspace(runtime: &str) -> tempfile::TempDir {
    tree_workspace_with(runtime, GATED_LEAF)
}

/// `boss` → `mid` → `leaf`, the leaf playing `leaf_turns`.
fn tree_workspace_with(runtime: &str, leaf_turns: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let pidfile = root.join("work/leaf.pid");
    let leaf_turns = leaf_turns.replace("PIDFILE", &pidfile.display().to_string());
    write(
        root,
        "config/workspace.yaml",
        &format!("name: trees\nwork_folder: workspace\nruntime:\n{runtime}"),
    );
    write(
        root,
        "config/models.yaml",
        "models:\n  m:\n    provider: scripted\n    script: script.yaml\n",
    );
    write(
        root,
        "config/tools.yaml",
        "tools:\n  gated:\n    builtin: list_files\n    approval: required\n  slow:\n    command: [\"sh\", \"-c\", \"echo $$ > \\\"$1\\\"; sleep 30\", \"sh\", \"{pidfile}\"]\n    arguments:\n      type: object\n      properties: {pidfile: {type: string}}\n    timeout: 60s\n",
    );
    write(
        root,
        "config/agents/boss.yaml",
        "name: boss\nmodel: m\ntools: [delegate]\ndelegates: [mid]\nmax_steps: 10\n",
    );
    write(
        root,
        "config/agents/mid.yaml",
        "name: mid\nmodel: m\ntools: [delegate]\ndelegates: [leaf]\nmax_steps: 10\n",
    );
    write(
        root,
        "config/agents/leaf.yaml",
        "name: leaf\nmodel: m\ntools: [gated, slow]\nmax_steps: 10\n",
    );
    write(
        root,
        "script.yaml",
        &format!(
            "agents:\n  boss:\n    turns:\n      - tool_calls: [{{tool: delegate, arguments: {{agent: mid, input: go}}}}]\n      - text: boss done\n  mid:\n    turns:\n      - tool_calls: [{{tool: delegate, arguments: {{agent: leaf, input: go}}}}]\n      - text: mid done\n  leaf:\n    turns:\n{leaf_turns}"
        ),
    );
    std::fs::create_dir_all(root.join("work")).unwrap();
    dir
}

fn fast() -> WorkerOptions {
    WorkerOptions {
        poll: Duration::from_millis(10),
        heartbeat: Duration::from_millis(15),
        // The safety net would hide a stranded tree: these tests check the
        // commits themselves keep trees consistent.
        repair: Duration::from_secs(3600),
        take_over: Duration::from_millis(20),
    }
}

/// Resolves what is pending; with `race_expiry` (the approvals' TTL), leaves a
/// quarter until 5 ms before they expire, to race the worker's expiry timer.
async fn resolve_all_pending(h: &Harness, n: &mut u64, race_expiry: Option<Duration>) {
    let late_after = race_expiry.map(|ttl| ttl.saturating_sub(Duration::from_millis(5)));
    let race_expiry = race_expiry.is_some();
    let pending = h
        .list_approvals(ApprovalFilter {
            statuses: vec![ApprovalStatus::Pending],
            ..Default::default()
        })
        .await
        .unwrap();
    for a in pending {
        // Some are left to the expiry timer alone; a quarter race it.
        if race_expiry && a.id.as_str().ends_with(['0', '1']) {
            continue;
        }
        let late = race_expiry
            && a.id
                .as_str()
                .ends_with(['2', '3', '4', '5', '6', '7', '8', '9']);
        if late && late_after.is_some_and(|t| a.created_at.age(SystemClock.now()) < t) {
            continue;
        }
        *n += 1;
        // Racing, an approval's decision is its own (not the count of whichever
        // approver gets to it first): approvers racing each other for the same
        // approvals once left none rejected.
        let id = a.id.as_str().as_bytes();
        let reject = match race_expiry {
            true => id[id.len() - 2].is_multiple_of(3),
            false => (*n).is_multiple_of(3),
        };
        let decision = if reject {
            Decision::Rejected
        } else {
            Decision::Approved
        };
        let res = h
            .resolve_approval(ResolveApproval {
                session_id: a.session_id.clone(),
                request_id: a.request_id.clone(),
                approval_id: a.id.clone(),
                decision,
                message: None,
                decided_by: Actor::new(ActorKind::Cli, "racer"),
                edited_arguments: None,
            })
            .await;
        if !race_expiry {
            res.unwrap();
        }
    }
}

/// Every request is settled, and nothing waits on an approval that is not pending.
async fn assert_nothing_stranded(h: &Harness) {
    let all = h.list_requests(RequestFilter::default()).await.unwrap();
    let approvals = h.list_approvals(ApprovalFilter::default()).await.unwrap();
    let mut bad = Vec::new();
    for r in &all {
        if !r.status.is_terminal() {
            let pending = approvals
                .iter()
                .filter(|a| a.status == ApprovalStatus::Pending)
                .count();
            bad.push(format!(
                "{} ({}, parent {:?}) is {} [pending approvals overall: {pending}]",
                r.id, r.agent, r.parent_id, r.status
            ));
        }
    }
    if bad.is_empty() {
        return;
    }
    // What happened to the stranded trees, in commit order (the first few).
    let mut story = String::new();
    let stranded = all
        .iter()
        .filter(|r| r.parent_id.is_none() && !r.status.is_terminal());
    for root in stranded.take(3) {
        let filter = EventFilter {
            tree: Some(root.id.clone()),
            ..Default::default()
        };
        let events = h.store().events_after(0, filter, 0).await.unwrap();
        story.push_str(&format!("\ntree {}:\n", root.id));
        for e in events {
            let who = e.request_id.map(|r| r.to_string()).unwrap_or_default();
            let mut payload = e.payload.to_string();
            payload.truncate(160);
            story.push_str(&format!("  {} {who} {:?} {payload}\n", e.seq, e.kind));
        }
    }
    panic!(
        "{} of {} requests never settled:\n{}\n{story}",
        bad.len(),
        all.len(),
        bad.join("\n")
    );
}

async fn wait_settled(h: &Harness, roots: &[RequestId], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut open = 0;
        for id in roots {
            if !h.get_request(id).await.unwrap().status.is_terminal() {
                open += 1;
            }
        }
        if open == 0 || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// Eager approvers and a short approval TTL (so the worker's expiry races too)
// against trees whose leaves pause: every root settles.
on_both!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    approvers_and_expiries_racing_pausing_children_strand_no_tree,
    approvers_and_expiries_racing_pausing_children_strand_no_tree_on_postgres,
    approvers_and_expiries_racing_pausing_children_strand_no_tree_with
);

async fn approvers_and_expiries_racing_pausing_children_strand_no_tree_with(b: Backend) {
    let roots_n: usize = std::env::var("TREE_RACE_ROOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        // Every commit costs a server round trip and flush on PostgreSQL.
        .unwrap_or(if b == Backend::Postgres { 100 } else { 200 });
    // Long enough that approvers reach some approvals before they expire: on
    // PostgreSQL an approval is first seen 60 – 80 ms after it was made (median,
    // measured on a slow day: the approvers are busy resolving the ones before it),
    // and at 40 ms nearly all expired there, so the race was not real.
    let ttl_ms: u64 = std::env::var("TREE_RACE_TTL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if b == Backend::Postgres { 150 } else { 40 });
    let ttl = Duration::from_millis(ttl_ms);
    let dir = tree_workspace(&format!(
        "  max_concurrent_requests: 16\n  queue_capacity: 5000\n  approval_ttl: {ttl_ms}ms\n"
    ));
    let (h, _keep) = open!(dir.path(), b);
    let mut roots = Vec::new();
    for i in 0..roots_n {
        let r = h.request(None, "boss", &format!("tree {i}")).await.unwrap();
        roots.push(r.id);
    }
    let worker = h.start_worker(fast()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut approvers = Vec::new();
    for k in 0..4u64 {
        let (h, stop) = (h.clone(), stop.clone());
        approvers.push(tokio::spawn(async move {
            let mut n = k;
            while !stop.load(Ordering::Relaxed) {
                resolve_all_pending(&h, &mut n, Some(ttl)).await;
                tokio::time::sleep(Duration::from_millis(k * 7)).await;
            }
        }));
    }
    wait_settled(&h, &roots, Duration::from_secs(90)).await;
    stop.store(true, Ordering::Relaxed);
    for a in approvers {
        a.await.unwrap();
    }
    worker.stop().await.unwrap();
    assert_nothing_stranded(&h).await;
    // The race was real: operators and the expiry timer both decided some.
    let approvals = h.list_approvals(ApprovalFilter::default()).await.unwrap();
    for status in [
        ApprovalStatus::Approved,
        ApprovalStatus::Rejected,
        ApprovalStatus::Expired,
    ] {
        assert!(
            approvals.iter().any(|a| a.status == status),
            "no approval ended {status}: the test did not race what it should ({})",
            [
                ApprovalStatus::Pending,
                ApprovalStatus::Approved,
                ApprovalStatus::Rejected,
                ApprovalStatus::Expired
            ]
            .iter()
            .map(|s| format!(
                "{s}: {}",
                approvals.iter().filter(|a| a.status == *s).count()
            ))
            .collect::<Vec<_>>()
            .join(", ")
        );
    }
}

/// The tree's requests by agent (one tree in the store).
async fn by_agent(h: &Harness, agent: &str) -> Request {
    let all = h.list_requests(RequestFilter::default()).await.unwrap();
    all.into_iter()
        .find(|r| r.agent == agent)
        .unwrap_or_else(|| panic!("no request of agent {agent}"))
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks the pid.
    unsafe { libc::kill(pid, 0) == 0 }
}

async fn wait_for_pid(dir: &Path, name: &str) -> i32 {
    let path = dir.join("work").join(name);
    wait_for("the command to start", async || path.exists()).await;
    let mut text = String::new();
    wait_for("the pid to be written", async || {
        text = std::fs::read_to_string(&path).unwrap_or_default();
        text.trim().parse::<i32>().is_ok()
    })
    .await;
    text.trim().parse().unwrap()
}

async fn events_of(h: &Harness, id: &RequestId) -> Vec<Event> {
    h.store()
        .events_after(
            0,
            EventFilter {
                request_id: Some(id.clone()),
                ..Default::default()
            },
            10_000,
        )
        .await
        .unwrap()
}

/// The tool result the parent's model saw for its delegate call.
async fn delegate_result(h: &Harness, parent: &RequestId) -> ToolOutcome {
    let steps = h.store().steps(parent).await.unwrap();
    steps
        .iter()
        .find_map(|s| match &s.body {
            StepBody::ToolCall {
                call,
                outcome: Some(o),
                ..
            } if call.tool == "delegate" => Some(o.clone()),
            _ => None,
        })
        .expect("the delegate call completed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_child_running_a_command_kills_it_and_the_parent_carries_on() {
    let dir = tree_workspace_with("", SLOW_LEAF);
    let h = Harness::open(dir.path()).unwrap();
    let root = h.request(None, "boss", "go").await.unwrap();
    let worker = h.start_worker(fast()).await.unwrap();
    let pid = wait_for_pid(dir.path(), "leaf.pid").await;
    let leaf = by_agent(&h, "leaf").await;
    let started = Instant::now();
    h.cancel(
        &leaf.id,
        &Actor::new(ActorKind::Cli, "alice"),
        Some("wrong input"),
    )
    .await
    .unwrap();
    wait_for("the command to die", async || !pid_alive(pid)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    wait_for("the root to settle", async || {
        h.get_request(&root.id).await.unwrap().status.is_terminal()
    })
    .await;
    worker.stop().await.unwrap();
    let (boss, mid, leaf) = (
        h.get_request(&root.id).await.unwrap(),
        by_agent(&h, "mid").await,
        by_agent(&h, "leaf").await,
    );
    assert_eq!(boss.status, RequestStatus::Completed, "{boss:?}");
    assert_eq!(mid.status, RequestStatus::Completed, "{mid:?}");
    assert_eq!(leaf.status, RequestStatus::Cancelled);
    assert_eq!(
        leaf.error.as_deref(),
        Some("cancelled by alice: wrong input")
    );
    let seen = delegate_result(&h, &mid.id).await;
    assert!(
        !seen.ok && seen.content.contains("cancelled by alice: wrong input"),
        "the parent's model sees the cancel: {seen:?}"
    );
    // The killed call is recorded as interrupted, not left `started`.
    let steps = h.store().steps(&leaf.id).await.unwrap();
    assert!(
        steps.iter().all(|s| s.status != StepStatus::Started),
        "{steps:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_paused_child_wakes_its_tree_and_explains_the_approval() {
    let dir = tree_workspace("");
    let h = Harness::open(dir.path()).unwrap();
    let root = h.request(None, "boss", "go").await.unwrap();
    let paused = harness_engine::run_until_settled(&h, &root.id, fast())
        .await
        .unwrap();
    assert_eq!(paused.status, RequestStatus::WaitingApproval);
    let leaf = by_agent(&h, "leaf").await;
    assert_eq!(
        paused.current_agent.as_deref(),
        Some("leaf"),
        "the root names the agent that waits"
    );
    h.cancel(&leaf.id, &Actor::new(ActorKind::Cli, "bob"), None)
        .await
        .unwrap();
    let approval = h
        .list_approvals(ApprovalFilter::default())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(approval.status, ApprovalStatus::Rejected);
    let resolved = events_of(&h, &leaf.id)
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::ApprovalResolved)
        .count();
    assert_eq!(resolved, 1, "the approval's change has its event");
    assert_eq!(
        h.get_request(&root.id).await.unwrap().status,
        RequestStatus::Queued,
        "the tree paused on the child is runnable again"
    );
    let done = harness_engine::run_until_settled(&h, &root.id, fast())
        .await
        .unwrap();
    assert_eq!(done.status, RequestStatus::Completed, "{done:?}");
    let mid = by_agent(&h, "mid").await;
    assert!(
        delegate_result(&h, &mid.id)
            .await
            .content
            .contains("cancelled by bob")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_queued_child_settles_its_tree() {
    let dir = tree_workspace("");
    let h = Harness::open(dir.path()).unwrap();
    let root = h.request(None, "boss", "go").await.unwrap();
    harness_engine::run_until_settled(&h, &root.id, fast())
        .await
        .unwrap();
    let mut n = 0;
    resolve_all_pending(&h, &mut n, None).await;
    let leaf = by_agent(&h, "leaf").await;
    assert_eq!(leaf.status, RequestStatus::Queued, "woken with its tree");
    h.cancel(&leaf.id, &Actor::new(ActorKind::Cli, "carol"), None)
        .await
        .unwrap();
    let done = harness_engine::run_until_settled(&h, &root.id, fast())
        .await
        .unwrap();
    assert_eq!(done.status, RequestStatus::Completed, "{done:?}");
    assert_eq!(by_agent(&h, "leaf").await.status, RequestStatus::Cancelled);
    let leaf_steps = h.store().steps(&leaf.id).await.unwrap();
    assert!(
        leaf_steps.iter().all(|s| s.status != StepStatus::Completed
            || !matches!(&s.body, StepBody::ToolCall { call, .. } if call.tool == "gated")),
        "the approved call never ran after the cancel: {leaf_steps:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_root_cancels_its_tree_and_kills_the_command() {
    let dir = tree_workspace_with("", SLOW_LEAF);
    let h = Harness::open(dir.path()).unwrap();
    let root = h.request(None, "boss", "go").await.unwrap();
    let worker = h.start_worker(fast()).await.unwrap();
    let pid = wait_for_pid(dir.path(), "leaf.pid").await;
    h.cancel(&root.id, &Actor::new(ActorKind::Cli, "dave"), None)
        .await
        .unwrap();
    wait_for("the command to die", async || !pid_alive(pid)).await;
    worker.stop().await.unwrap();
    for agent in ["boss", "mid", "leaf"] {
        let r = by_agent(&h, agent).await;
        assert_eq!(r.status, RequestStatus::Cancelled, "{r:?}");
    }
    let mid = by_agent(&h, "mid").await;
    let cancelled = events_of(&h, &mid.id)
        .await
        .into_iter()
        .find(|e| e.kind == EventKind::RequestCancelled)
        .expect("request.cancelled for the child");
    assert_eq!(cancelled.payload["with"], serde_json::json!(root.id));
}

#[tokio::test]
async fn delegation_depth_and_fanout_are_bounded_at_run_time() {
    // boss → mid → leaf is depth 2: with a limit of 1, mid may not delegate.
    let dir = tree_workspace("  max_delegation_depth: 1\n");
    let h = Harness::open(dir.path()).unwrap();
    let root = h.request(None, "boss", "go").await.unwrap();
    let done = harness_engine::run_until_settled(&h, &root.id, fast())
        .await
        .unwrap();
    assert_eq!(done.status, RequestStatus::Completed, "{done:?}");
    let mid = by_agent(&h, "mid").await;
    let seen = delegate_result(&h, &mid.id).await;
    assert!(
        !seen.ok && seen.content.contains("max_delegation_depth (1)"),
        "{seen:?}"
    );
    assert!(
        h.list_requests(RequestFilter::default())
            .await
            .unwrap()
            .iter()
            .all(|r| r.agent != "leaf")
    );

    // Fan-out 1: the boss's second delegation in one turn is refused.
    let dir = tree_workspace_with("  max_delegation_fanout: 1\n", "      - text: leaf done\n");
    let script = std::fs::read_to_string(dir.path().join("script.yaml")).unwrap();
    let twice = "{tool: delegate, arguments: {agent: mid, input: go}}";
    let script = script.replacen(&format!("[{twice}]"), &format!("[{twice}, {twice}]"), 1);
    write(dir.path(), "script.yaml", &script);
    let h = Harness::open(dir.path()).unwrap();
    let root = h.request(None, "boss", "go").await.unwrap();
    let done = harness_engine::run_until_settled(&h, &root.id, fast())
        .await
        .unwrap();
    assert_eq!(done.status, RequestStatus::Completed, "{done:?}");
    let results: Vec<ToolOutcome> = h
        .store()
        .steps(&root.id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|s| match s.body {
            StepBody::ToolCall {
                outcome: Some(o), ..
            } => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 2);
    assert!(results[0].ok, "{results:?}");
    assert!(
        results[1].content.contains("max_delegation_fanout"),
        "{results:?}"
    );
}

#[tokio::test]
async fn completion_events_count_real_steps_and_delegate_completed_precedes_the_next_call() {
    let dir = tree_workspace_with("", "      - text: leaf done\n");
    // The boss calls `gated`'s neighbour after delegating: give it a second call.
    write(
        dir.path(),
        "config/agents/boss.yaml",
        "name: boss\nmodel: m\ntools: [delegate, list_files]\ndelegates: [mid]\nmax_steps: 10\n",
    );
    let script = std::fs::read_to_string(dir.path().join("script.yaml")).unwrap();
    let script = script.replace(
        "      - tool_calls: [{tool: delegate, arguments: {agent: mid, input: go}}]\n      - text: boss done",
        "      - tool_calls: [{tool: delegate, arguments: {agent: mid, input: go}}, {tool: list_files, arguments: {}}]\n      - text: boss done",
    );
    write(dir.path(), "script.yaml", &script);
    let h = Harness::open(dir.path()).unwrap();
    let root = h.request(None, "boss", "go").await.unwrap();
    let done = harness_engine::run_until_settled(&h, &root.id, fast())
        .await
        .unwrap();
    assert_eq!(done.status, RequestStatus::Completed, "{done:?}");
    let events = events_of(&h, &root.id).await;
    let completed = events
        .iter()
        .find(|e| e.kind == EventKind::RequestCompleted)
        .unwrap();
    assert_eq!(completed.payload["steps"], serde_json::json!(done.steps));
    assert_eq!(done.steps, 4, "model, delegate, list_files, model");
    let pos = |kind: EventKind, tool: Option<&str>| {
        events
            .iter()
            .position(|e| {
                e.kind == kind && tool.is_none_or(|t| e.payload["tool"] == serde_json::json!(t))
            })
            .unwrap()
    };
    assert!(
        pos(EventKind::DelegateCompleted, None) < pos(EventKind::ToolStarted, Some("list_files")),
        "delegate.completed comes before the next call starts"
    );
}

/// The safety net: a request parked on an approval that is not pending (as the
/// bug this file's first test guards against left them) is reported failing by
/// health, then repaired by the worker with a visible event, and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_safety_net_repairs_a_stranded_request_visibly() {
    let dir = tree_workspace_with(
        "",
        "      - tool_calls: [{tool: gated, arguments: {}}]\n      - text: leaf done\n",
    );
    write(
        dir.path(),
        "config/agents/boss.yaml",
        "name: boss\nmodel: m\ntools: [gated]\nmax_steps: 10\n",
    );
    write(
        dir.path(),
        "script.yaml",
        "agents:\n  boss:\n    turns:\n      - tool_calls: [{tool: gated, arguments: {}}]\n      - text: boss done\n",
    );
    let clock = Arc::new(FixedClock::new(SystemClock.now()));
    let opts = harness_engine::HarnessOptions {
        clock: clock.clone(),
        ..Default::default()
    };
    let h = Harness::open_with(dir.path(), opts, true).unwrap();
    let root = h.request(None, "boss", "go").await.unwrap();
    // Strand it by hand: paused on an approval that was decided in the same commit.
    let r = h
        .store()
        .claim(&WorkerId::generate(), 1, h.now())
        .await
        .unwrap()
        .remove(0);
    let call = ToolCall {
        call_id: CallId::generate(),
        tool: "gated".into(),
        arguments: serde_json::json!({}),
    };
    let turn = ModelTurn::ToolCalls {
        text: String::new(),
        calls: vec![call.clone()],
    };
    let step = |idx, status, body| Step {
        request_id: r.id.clone(),
        idx,
        agent: "boss".into(),
        status,
        started_at: h.now(),
        finished_at: None,
        body,
    };
    let approval = Approval {
        id: ApprovalId::generate(),
        request_id: r.id.clone(),
        session_id: r.session_id.clone(),
        agent: "boss".into(),
        step_idx: 1,
        call_id: call.call_id.clone(),
        tool: "gated".into(),
        arguments: serde_json::json!({}),
        status: ApprovalStatus::Rejected,
        decided_by: Some("someone".into()),
        decided_by_kind: Some(ActorKind::Cli),
        message: None,
        edited_arguments: None,
        created_at: h.now(),
        decided_at: Some(h.now()),
        expires_at: h.now().plus(Duration::from_secs(3600)),
        reason: None,
    };
    let commit = harness_store::StepCommit::new(&r.id, &r.session_id, h.now())
        .insert(step(0, StepStatus::Completed, StepBody::model_turn(turn)))
        .insert(step(
            1,
            StepStatus::AwaitingApproval,
            StepBody::ToolCall {
                call,
                approval_id: Some(approval.id.clone()),
                outcome: None,
                child_request_id: None,
            },
        ))
        .raise(approval);
    h.store().commit_step(commit).await.unwrap();
    clock.advance(Duration::from_secs(10));

    let health = h.health().await.unwrap();
    let check = health
        .checks
        .iter()
        .find(|c| c.name == "stranded_requests")
        .unwrap();
    assert_eq!(check.status, HealthStatus::Fail, "{check:?}");
    assert!(check.detail.contains(root.id.as_str()), "{check:?}");

    let opts = WorkerOptions {
        repair: Duration::from_millis(20),
        ..fast()
    };
    let worker = h.start_worker(opts).await.unwrap();
    wait_for("the repair and the run", async || {
        h.get_request(&root.id).await.unwrap().status.is_terminal()
    })
    .await;
    worker.stop().await.unwrap();
    let done = h.get_request(&root.id).await.unwrap();
    assert_eq!(done.status, RequestStatus::Completed, "{done:?}");
    let repaired = events_of(&h, &root.id)
        .await
        .into_iter()
        .find(|e| e.kind == EventKind::RequestRepaired)
        .expect("a request.repaired event");
    assert_eq!(repaired.payload["action"], "requeued");
    let health = h.health().await.unwrap();
    assert!(
        health
            .checks
            .iter()
            .any(|c| c.name == "stranded_requests" && c.status == HealthStatus::Ok)
    );
}
