//! Request trees (delegation) under concurrency: approvers, expiries and cancels
//! racing pausing children on a multi-thread runtime. No tree may be stranded.

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

/// `boss` → `mid` → `leaf`; the leaf calls a tool that needs approval.
fn tree_workspace(runtime: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "config/workspace.yaml",
        &format!("name: trees\nruntime:\n{runtime}"),
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
        "agents:\n  boss:\n    turns:\n      - tool_calls: [{tool: delegate, arguments: {agent: mid, input: go}}]\n      - text: boss done\n  mid:\n    turns:\n      - tool_calls: [{tool: delegate, arguments: {agent: leaf, input: go}}]\n      - text: mid done\n  leaf:\n    turns:\n      - tool_calls: [{tool: gated, arguments: {}}]\n      - text: leaf done\n",
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
    }
}

async fn resolve_all_pending(h: &Harness, n: &mut u64) {
    let pending = h
        .list_approvals(ApprovalFilter {
            statuses: vec![ApprovalStatus::Pending],
            ..Default::default()
        })
        .await
        .unwrap();
    for a in pending {
        // A quarter are left until just before they expire, to race the
        // worker's expiry timer.
        let late =
            a.id.as_str()
                .ends_with(['0', '1', '2', '3', '4', '5', '6', '7']);
        if late && a.created_at.age(SystemClock.now()) < Duration::from_millis(35) {
            continue;
        }
        *n += 1;
        let decision = if (*n).is_multiple_of(3) {
            Decision::Rejected
        } else {
            Decision::Approved
        };
        let _ = h
            .resolve_approval(ResolveApproval {
                session_id: a.session_id.clone(),
                request_id: a.request_id.clone(),
                approval_id: a.id.clone(),
                decision,
                message: None,
                decided_by: "racer".into(),
                edited_arguments: None,
            })
            .await;
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
    assert!(
        bad.is_empty(),
        "{} of {} requests never settled:\n{}",
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

/// Eager approvers and a short approval TTL (so the worker's expiry races too)
/// against trees whose leaves pause: every root settles.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approvers_and_expiries_racing_pausing_children_strand_no_tree() {
    let roots_n: usize = std::env::var("TREE_RACE_ROOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tree_workspace(
        "  max_concurrent_requests: 16\n  queue_capacity: 5000\n  approval_ttl: 40ms\n",
    );
    let h = Harness::open(dir.path()).unwrap();
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
                resolve_all_pending(&h, &mut n).await;
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
            "no approval ended {status}: the test did not race what it should"
        );
    }
}
