//! Maintenance beside a running worker: pruning a large store must not make the
//! worker's commits fail or wait long (it prunes in short transactions).

use harness_core::*;
use harness_store::synthetic::{SyntheticSpec, generate};
use harness_store::{Admission, NewRequest, StepCommit, Store, StoreOptions};
use std::time::{Duration, Instant};

/// A generous sanity bound: pruning in short transactions keeps each wait to a few
/// tens of milliseconds; one transaction for everything held the lock for seconds.
const MAX_COMMIT_LATENCY: Duration = Duration::from_millis(750);

fn step(r: &Request, idx: u32, at: Timestamp) -> StepCommit {
    let turn = ModelTurn::Text {
        text: format!("turn {idx}"),
    };
    StepCommit::new(&r.id, &r.session_id, at)
        .insert(Step {
            request_id: r.id.clone(),
            idx,
            agent: "bench".into(),
            status: StepStatus::Completed,
            started_at: at,
            finished_at: Some(at),
            body: StepBody::model_turn(turn.clone()),
        })
        .count_step()
        .event(EventBody::ModelTurn {
            step: idx,
            turn,
            info: None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_a_large_store_beside_a_committing_worker_fails_no_commit() {
    let dir = tempfile::tempdir().unwrap();
    let now = Timestamp(1_800_000_000_000);
    let spec = SyntheticSpec {
        requests: 6_000,
        events: 150_000,
        sessions: 1_000,
        queued: 0,
        running: 0,
        waiting_approval: 20,
        failed: 100,
        cancelled: 50,
        now,
        span: Duration::from_secs(30 * 24 * 3600),
        ..SyntheticSpec::default()
    };
    let generated = generate(dir.path(), &spec).unwrap();

    // The "worker": its own handle on the file (another process in production).
    let worker = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let req = worker
        .admit(
            NewRequest {
                id: RequestId::generate(),
                session_id: SessionId::parse("live").unwrap(),
                agent: "bench".into(),
                input: "keep committing".into(),
                trace_id: "t".into(),
                traceparent: None,
                priority: 0,
            },
            Admission {
                queue_capacity: 10,
                reject_if_session_busy: false,
            },
            now,
        )
        .await
        .unwrap();
    let claimed = worker.claim(&WorkerId::generate(), 1, now).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, req.id);

    let maintenance = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let would = maintenance.prune(now, true, false).await.unwrap();
    let pruning = tokio::spawn(async move {
        let started = Instant::now();
        let report = maintenance.prune(now, false, false).await.unwrap();
        (report, started.elapsed())
    });

    let mut latencies = Vec::new();
    let mut idx = 0;
    while !pruning.is_finished() {
        let started = Instant::now();
        worker
            .commit_step(step(&req, idx, now))
            .await
            .unwrap_or_else(|e| panic!("commit {idx} failed during pruning: {e}"));
        latencies.push(started.elapsed());
        idx += 1;
        // A busy worker: a step about every millisecond.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (report, took) = pruning.await.unwrap();
    latencies.sort();
    let max = *latencies.last().unwrap();
    let p99 = latencies[latencies.len() * 99 / 100];
    println!(
        "pruned {} requests, {} steps, {} events in {took:?} while committing {idx} steps \
         beside it: commit latency p99 {p99:?}, max {max:?}",
        report.requests, report.steps, report.events
    );
    let finished = generated.completed + generated.failed + generated.cancelled;
    let counts =
        |r: &harness_store::PruneReport| (r.requests, r.steps, r.events, r.approvals, r.artifacts);
    assert_eq!(
        counts(&would),
        counts(&report),
        "the dry run counted what was pruned"
    );
    assert_eq!(
        report.requests, finished,
        "every finished request is pruned"
    );
    assert!(report.events > 100_000, "{report:?}");
    // The prune left the lock free again and again: the worker kept committing
    // throughout, and no commit waited for a large share of the prune.
    assert!(idx >= 100, "only {idx} commits during a {took:?} prune");
    assert!(
        max < MAX_COMMIT_LATENCY && max * 5 < took,
        "a commit waited {max:?} behind a {took:?} prune (p99 {p99:?})"
    );
    // The worker's request and every step it committed are intact.
    assert_eq!(worker.steps(&req.id).await.unwrap().len(), idx as usize);
    let left = worker
        .list_requests(RequestFilter::default())
        .await
        .unwrap();
    assert!(
        left.iter().all(|r| !r.status.is_terminal()),
        "only active requests remain"
    );
}
