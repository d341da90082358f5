//! The event cursor under concurrency: many writers (admissions, claims, step
//! commits, cancels, on many sessions at once) and many readers following the log
//! by cursor. Every reader must see every committed event exactly once, in seq
//! order: never skip one (an event committed after the reader moved past its seq)
//! and never repeat one. On PostgreSQL an admission takes its transaction id
//! rounds trips before it appends its event, while other transactions commit, so
//! a reader trusting a plain sequence would skip.

mod common;

use common::Backend;
use harness_core::*;
use harness_store::{Admission, NewRequest, StepCommit, Store};
use proptest::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Clone, Debug)]
struct Workload {
    writers: usize,
    rounds: usize,
    readers: usize,
    /// Events a reader asks for at a time.
    batch: usize,
}

fn workload() -> impl Strategy<Value = Workload> {
    (2usize..8, 3usize..12, 1usize..4, 1usize..20).prop_map(|(writers, rounds, readers, batch)| {
        Workload {
            writers,
            rounds,
            readers,
            batch,
        }
    })
}

/// One writer: admits requests in its own session and runs each to its end, with
/// a cancel now and then; every operation appends events.
async fn write(store: Store, w: usize, rounds: usize) {
    let adm = Admission {
        queue_capacity: 100_000,
        reject_if_session_busy: false,
    };
    let worker = WorkerId::generate();
    for round in 0..rounds {
        let new = NewRequest {
            id: RequestId::generate(),
            session_id: SessionId::parse(&format!("w{w}")).unwrap(),
            agent: "a".into(),
            input: format!("round {round}"),
            trace_id: "t".into(),
            traceparent: None,
            priority: 0,
        };
        let now = Timestamp(1_000 + round as i64);
        let r = store.admit(new, adm, now).await.unwrap();
        if round % 4 == 3 {
            // Another writer's claim may have run it to its end already.
            let _ = store
                .cancel(&r.id, &Actor::new(ActorKind::Cli, "test"), None, now)
                .await;
            continue;
        }
        // Claims take any session's request: run whatever this claim got.
        for c in store.claim(&worker, 2, now).await.unwrap() {
            let step = StepCommit::new(&c.id, &c.session_id, now)
                .event(EventBody::RequestRepaired {
                    problem: "none".into(),
                    action: format!("step of {w}"),
                })
                .output("done")
                .event(EventBody::RequestCompleted {
                    output_bytes: 4,
                    steps: 1,
                });
            // Another writer's cancel may have settled it: that is a refusal, not a bug.
            let _ = store.commit_step(step).await;
        }
    }
}

/// Follows the log from 0 until it reaches `last`, the final log's last seq (set
/// once the writers are done and the log stands still; `i64::MAX` until then).
/// Not "until a read comes back empty": a transaction still open anywhere (a
/// NOTIFY's, sent after a writer's commit) holds back what a read may return, so
/// an empty read is not the end of the log.
async fn read(store: Store, batch: usize, last: Arc<AtomicI64>) -> Vec<i64> {
    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        if cursor >= last.load(Ordering::Acquire) {
            return seen;
        }
        let events = store
            .events_after(cursor, EventFilter::default(), batch)
            .await
            .unwrap();
        if events.is_empty() {
            tokio::task::yield_now().await;
            continue;
        }
        for e in events {
            seen.push(e.seq);
            cursor = e.seq;
        }
    }
}

/// The whole log once it stands still (two reads 50 ms apart agree).
async fn settled_log(store: &Store) -> Vec<i64> {
    let read = || async {
        store
            .events_after(0, EventFilter::default(), 0)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<i64>>()
    };
    let mut all = read().await;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let again = read().await;
        if again == all {
            return all;
        }
        all = again;
    }
}

async fn check(b: Backend, wl: Workload) -> Result<(), TestCaseError> {
    let Some(fresh) = b.fresh() else {
        return Ok(());
    };
    let last = Arc::new(AtomicI64::new(i64::MAX));
    let readers: Vec<_> = (0..wl.readers)
        .map(|_| tokio::spawn(read(b.reopen(&fresh), wl.batch, last.clone())))
        .collect();
    let writers: Vec<_> = (0..wl.writers)
        .map(|w| tokio::spawn(write(fresh.store.clone(), w, wl.rounds)))
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let all = settled_log(&fresh.store).await;
    last.store(all.last().copied().unwrap_or(0), Ordering::Release);
    prop_assert!(
        all.windows(2).all(|p| p[0] < p[1]),
        "the log is in seq order"
    );
    for (i, r) in readers.into_iter().enumerate() {
        let seen = r.await.unwrap();
        let dup = seen.windows(2).find(|p| p[0] >= p[1]);
        prop_assert!(dup.is_none(), "reader {i} went back or repeated: {dup:?}");
        let skipped: Vec<_> = all
            .iter()
            .filter(|s| seen.binary_search(s).is_err())
            .collect();
        prop_assert!(
            skipped.is_empty(),
            "reader {i} skipped {} of {} events, e.g. {:?}",
            skipped.len(),
            all.len(),
            &skipped[..skipped.len().min(5)]
        );
        prop_assert_eq!(seen.len(), all.len());
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]
    #[test]
    fn readers_never_skip_or_repeat_an_event(wl in workload()) {
        runtime().block_on(check(Backend::Sqlite, wl))?;
    }

    #[test]
    fn readers_never_skip_or_repeat_an_event_on_postgres(wl in workload()) {
        runtime().block_on(check(Backend::Postgres, wl))?;
    }
}
