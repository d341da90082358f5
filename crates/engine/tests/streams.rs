//! Event subscriptions sharing one reader of the store: many writers and many
//! subscribers at once (every filter, joining late, slow ones) on a multi-thread
//! runtime, on both backends. Each subscriber must see exactly the events its
//! filter names after its cursor, in seq order, each once; N subscribers must cost
//! one store read per wake-up, not N; a subscriber too far behind is detached and
//! still misses nothing.

mod common;

use common::Backend;
use futures_util::StreamExt;
use harness_core::*;
use harness_engine::Harness;
use harness_store::{Admission, NewRequest, StepCommit, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    dir
}

fn new_request(session: &str, input: String) -> NewRequest {
    NewRequest {
        id: RequestId::generate(),
        session_id: SessionId::parse(session).unwrap(),
        agent: "assistant".into(),
        input,
        trace_id: "t".into(),
        traceparent: None,
        priority: 0,
    }
}

/// One writer: admits roots in its own session and runs whatever its claims get:
/// each a delegation (the child's row with `delegate.started`, as the engine
/// commits it), a step of the child, then the root's completion.
async fn write(
    store: Store,
    w: usize,
    rounds: usize,
    roots: tokio::sync::mpsc::UnboundedSender<RequestId>,
) {
    let adm = Admission {
        queue_capacity: 100_000,
        reject_if_session_busy: false,
    };
    let worker = WorkerId::generate();
    for round in 0..rounds {
        let now = Timestamp(1_000 + round as i64);
        let r = store
            .admit(
                new_request(&format!("w{w}"), format!("round {round}")),
                adm,
                now,
            )
            .await
            .unwrap();
        let _ = roots.send(r.id.clone());
        for c in store.claim(&worker, 2, now).await.unwrap() {
            let child = new_request(c.session_id.as_str(), "help".into());
            let child_id = child.id.clone();
            let delegate = StepCommit::new(&c.id, &c.session_id, now)
                .child(child)
                .event(EventBody::DelegateStarted {
                    child_request_id: child_id.clone(),
                    agent: "assistant".into(),
                    call_id: CallId::generate(),
                });
            if store.commit_step(delegate).await.is_err() {
                continue;
            }
            let step = StepCommit::new(&child_id, &c.session_id, now)
                .ancestors(std::slice::from_ref(&c.id))
                .event(EventBody::RequestRepaired {
                    problem: "none".into(),
                    action: format!("child step of {w}"),
                });
            let _ = store.commit_step(step).await;
            let done = StepCommit::new(&c.id, &c.session_id, now)
                .output("done")
                .event(EventBody::RequestCompleted {
                    output_bytes: 4,
                    steps: 1,
                });
            let _ = store.commit_step(done).await;
        }
    }
}

/// Takes events (slowly if `slow`: it pauses long enough to fall out of the shared
/// reader's window) until told the writers are done, then what is left.
async fn follow(
    h: Harness,
    from: i64,
    filter: EventFilter,
    slow: bool,
    done: Arc<AtomicBool>,
) -> (i64, EventFilter, Vec<Event>) {
    let mut sub = h.subscribe(from, filter.clone());
    let mut seen = Vec::new();
    while !done.load(Ordering::Acquire) {
        // Through the `Stream` implementation, dropped at each timeout.
        match tokio::time::timeout(Duration::from_millis(50), sub.next()).await {
            Ok(Ok(e)) => seen.push(e),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => continue,
        }
        if slow && seen.len() % 40 == 1 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    while let Some(e) = sub.try_next().await.unwrap() {
        seen.push(e);
    }
    (from, filter, seen)
}

async fn many_writers_and_subscribers(b: Backend) {
    let dir = workspace();
    let (h, _keep) = open!(dir.path(), b);
    let done = Arc::new(AtomicBool::new(false));
    let (roots_tx, mut roots) = tokio::sync::mpsc::unbounded_channel();
    let mut subs = Vec::new();
    let spawn = |from: i64, filter: EventFilter, slow: bool| {
        tokio::spawn(follow(h.clone(), from, filter, slow, done.clone()))
    };
    let session = |s: &str| EventFilter {
        session_id: Some(SessionId::parse(s).unwrap()),
        ..Default::default()
    };
    for i in 0..12 {
        subs.push(spawn(0, EventFilter::default(), i % 4 == 3));
        subs.push(spawn(0, session(&format!("w{}", i % 6)), i % 4 == 1));
    }
    let writers: Vec<_> = (0..6)
        .map(|w| tokio::spawn(write(h.store().clone(), w, 25, roots_tx.clone())))
        .collect();
    drop(roots_tx);
    // Late joiners: trees of roots as they are admitted (from 0 and from now),
    // and more of every kind with cursors in the past and at the head.
    let mut n = 0;
    let mut first = None;
    while let Some(root) = roots.recv().await {
        first.get_or_insert(root.clone());
        n += 1;
        if n % 7 == 0 {
            let head = h.store().last_seq().await.unwrap();
            let tree = EventFilter {
                tree: Some(root.clone()),
                ..Default::default()
            };
            subs.push(spawn(0, tree.clone(), n % 2 == 0));
            subs.push(spawn(head, tree, false));
            subs.push(spawn(head / 2, EventFilter::default(), false));
            subs.push(spawn(head, session("w2"), n % 3 == 0));
            subs.push(spawn(
                head / 3,
                EventFilter {
                    request_id: Some(root),
                    ..Default::default()
                },
                false,
            ));
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    // A last commit, once every writer's finished: when a read sees it, it sees
    // everything before it (on PostgreSQL a read may lag behind while another
    // transaction of the server is open), and so will the subscribers' last reads.
    let last = note(&h, first.as_ref().unwrap(), 0).await;
    let all = loop {
        let all = h
            .store()
            .events_after(0, EventFilter::default(), 0)
            .await
            .unwrap();
        if all.last().is_some_and(|e| e.seq == last.seq) {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    done.store(true, Ordering::Release);
    assert!(all.len() > 500, "{} events", all.len());
    assert!(all.windows(2).all(|p| p[0].seq < p[1].seq));
    let mut delegated_trees = 0;
    for s in subs {
        let (from, filter, seen) = s.await.unwrap();
        let tree = match &filter.tree {
            Some(root) => h.store().subtree_ids(root).await.unwrap(),
            None => vec![],
        };
        // A root still queued at the end has no child.
        if tree.len() == 2 {
            delegated_trees += 1;
        }
        let want: Vec<i64> = all
            .iter()
            .filter(|e| e.seq > from)
            .filter(|e| filter.request_id.is_none() || e.request_id == filter.request_id)
            .filter(|e| filter.session_id.is_none() || e.session_id == filter.session_id)
            .filter(|e| {
                filter.tree.is_none() || e.request_id.as_ref().is_some_and(|r| tree.contains(r))
            })
            .map(|e| e.seq)
            .collect();
        let got: Vec<i64> = seen.iter().map(|e| e.seq).collect();
        assert!(
            !want.is_empty() || from > 0,
            "{filter:?} from {from}: nothing to see"
        );
        assert_eq!(got, want, "{filter:?} from {from}");
    }
    assert!(delegated_trees > 0, "some followed tree has a child");
    let reads = h.event_reads();
    eprintln!("{b:?}: {} events, {reads:?}", all.len());
}

on_both!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    many_writers_and_subscribers_each_see_exactly_their_events,
    many_writers_and_subscribers_each_see_exactly_their_events_on_postgres,
    many_writers_and_subscribers
);

/// A note on `root`: one commit, one event.
async fn note(h: &Harness, root: &RequestId, i: usize) -> Event {
    h.add_note(Note {
        request_id: root.clone(),
        approval_id: None,
        by: "tester".into(),
        text: format!("note {i}"),
    })
    .await
    .unwrap()
}

/// Takes events until the one at `seq` (none after it).
async fn until(s: &mut harness_engine::EventStream, seq: i64) {
    loop {
        let e = s.next().await.unwrap();
        assert!(e.seq <= seq, "{} came before {seq}", e.seq);
        if e.seq == seq {
            return;
        }
    }
}

async fn one_read_per_wakeup(b: Backend) {
    let dir = workspace();
    let (h, _keep) = open!(dir.path(), b);
    let root = h
        .request(
            Some(SessionId::parse("s-1").unwrap()),
            "assistant",
            "ship the release notes",
        )
        .await
        .unwrap();
    let head = h.store().last_seq().await.unwrap();
    let mut subs: Vec<_> = (0..40)
        .map(|i| {
            let filter = if i % 2 == 0 {
                EventFilter::default()
            } else {
                EventFilter {
                    session_id: Some(root.session_id.clone()),
                    ..Default::default()
                }
            };
            h.subscribe(head, filter)
        })
        .collect();
    // Everyone takes the first commit (joining the shared reader). On PostgreSQL
    // `last_seq` may stop short of what just committed (another transaction of the
    // server still open), so events before it may come first.
    let first = note(&h, &root.id, 0).await;
    for s in &mut subs {
        until(s, first.seq).await;
    }
    let before = h.event_reads();
    let started = std::time::Instant::now();
    let commits = 30;
    for i in 1..=commits {
        let e = note(&h, &root.id, i).await;
        for s in &mut subs {
            assert_eq!(s.next().await.unwrap().seq, e.seq);
        }
    }
    let after = h.event_reads();
    let polls = started.elapsed().as_millis() as u64 / 100 + 1;
    assert_eq!(after.own, before.own, "no subscriber read the store itself");
    // One read per wake-up whatever the number of subscribers: one per commit on
    // SQLite; on PostgreSQL a commit wakes twice (this process's own signal, then
    // its NOTIFY), and other tests' commits on the server notify too.
    let shared = after.shared - before.shared;
    let per_commit = if b == Backend::Sqlite { 1 } else { 3 };
    assert!(
        shared <= per_commit * commits as u64 + polls + 1,
        "{shared} shared reads for {commits} commits by 40 subscribers ({polls} polls)"
    );

    // A subscriber that stops taking events while more than the shared reader's
    // window goes by is detached, then reads the store: nothing lost.
    let mut slow = h.subscribe(first.seq, EventFilter::default());
    assert!(slow.next().await.unwrap().seq > first.seq);
    let mut fast = h.subscribe(h.store().last_seq().await.unwrap(), EventFilter::default());
    let e = note(&h, &root.id, 99).await;
    until(&mut fast, e.seq).await;
    let mut want = Vec::new();
    for i in 0..harness_engine::FEED_BATCHES + 10 {
        let e = note(&h, &root.id, 100 + i).await;
        // One batch per commit: the fast one sees each before the next.
        assert_eq!(fast.next().await.unwrap().seq, e.seq);
        want.push(e.seq);
    }
    let detached = h.event_reads().detached;
    let all: Vec<Event> = h
        .store()
        .events_after(slow.cursor(), EventFilter::default(), 0)
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < all.len() {
        got.push(slow.next().await.unwrap().seq);
    }
    assert_eq!(got, all.iter().map(|e| e.seq).collect::<Vec<_>>());
    assert!(got.ends_with(&want));
    assert_eq!(
        h.event_reads().detached,
        detached + 1,
        "the slow one was detached once"
    );
    // And it follows the shared reader again.
    let e = note(&h, &root.id, 999).await;
    assert_eq!(slow.next().await.unwrap().seq, e.seq);
    drop(subs);
}

on_both!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    subscribers_share_one_store_read_per_wakeup,
    subscribers_share_one_store_read_per_wakeup_on_postgres,
    one_read_per_wakeup
);

/// The feed hands a batch only to the subscribers it concerns: a session's
/// subscriber is not woken by another session's events, and however many go by
/// while its own session is quiet, it is not detached and reads nothing itself.
/// One that stopped taking its session's events is detached by the feed's sweep
/// (it holds nothing old) and still misses nothing.
async fn quiet_sessions_sleep(b: Backend) {
    let dir = workspace();
    let (h, _keep) = open!(dir.path(), b);
    let (busy, quiet) = (
        SessionId::parse("busy").unwrap(),
        SessionId::parse("quiet").unwrap(),
    );
    let busy_root = h.request(Some(busy), "assistant", "talk").await.unwrap();
    let quiet_root = h
        .request(Some(quiet.clone()), "assistant", "wait")
        .await
        .unwrap();
    let head = h.store().last_seq().await.unwrap();
    let mut sleeper = h.subscribe(
        head,
        EventFilter {
            session_id: Some(quiet.clone()),
            ..Default::default()
        },
    );
    let mut stalled = h.subscribe(
        head,
        EventFilter {
            session_id: Some(quiet.clone()),
            ..Default::default()
        },
    );
    let mut fast = h.subscribe(head, EventFilter::default());
    let e = note(&h, &quiet_root.id, 0).await;
    until(&mut fast, e.seq).await;
    assert_eq!(sleeper.next().await.unwrap().seq, e.seq);
    assert_eq!(stalled.next().await.unwrap().seq, e.seq);
    // Handed to the stalled one, which does not take it.
    let held = note(&h, &quiet_root.id, 1).await;
    assert_eq!(sleeper.next().await.unwrap().seq, held.seq);
    assert_eq!(fast.next().await.unwrap().seq, held.seq);

    let mut before = h.event_reads();
    let n = harness_engine::FEED_BATCHES as u64 * 2;
    for i in 0..n {
        let e = note(&h, &busy_root.id, i as usize).await;
        // One batch per commit: the fast one sees each before the next.
        assert_eq!(fast.next().await.unwrap().seq, e.seq);
        if i == 0 {
            // The feed hands batches in order: `held` went to all three by now.
            before = h.event_reads();
        }
    }
    let e = note(&h, &quiet_root.id, 2).await;
    assert_eq!(sleeper.next().await.unwrap().seq, e.seq);
    assert_eq!(fast.next().await.unwrap().seq, e.seq);
    let after = h.event_reads();
    assert_eq!(
        after.detached, before.detached,
        "the quiet one was not detached"
    );
    assert_eq!(after.own, before.own, "nobody read the store for itself");
    assert_eq!(
        after.handed - before.handed,
        n - 1 + 2,
        "each busy batch went to the unfiltered subscriber alone; the last to both \
         (not to the stalled one, detached by then)"
    );
    // The stalled one lost its old batch to the sweep, not an event.
    assert_eq!(stalled.next().await.unwrap().seq, held.seq);
    assert_eq!(stalled.next().await.unwrap().seq, e.seq);
    let last = h.event_reads();
    assert_eq!(
        last.detached,
        after.detached + 1,
        "the stalled one was detached"
    );
    assert!(last.own > after.own, "and read the store for itself");
}

on_both!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    a_quiet_sessions_subscriber_is_not_woken_or_detached_by_others_events,
    a_quiet_sessions_subscriber_is_not_woken_or_detached_by_others_events_on_postgres,
    quiet_sessions_sleep
);

/// The stream as a `futures::Stream`, following a tree from its root's admission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_subscription_is_a_stream_of_the_root_and_its_children() {
    let dir = workspace();
    let (h, _keep) = open!(dir.path(), Backend::Sqlite);
    let head = h.store().last_seq().await.unwrap();
    let root = h
        .request(
            Some(SessionId::parse("s-1").unwrap()),
            "assistant",
            "ship the release notes",
        )
        .await
        .unwrap();
    let other = h
        .request(Some(SessionId::parse("s-2").unwrap()), "assistant", "again")
        .await
        .unwrap();
    let stream = h.subscribe(
        head,
        EventFilter {
            tree: Some(root.id.clone()),
            ..Default::default()
        },
    );
    let settled =
        harness_engine::run_until_settled(&h, &root.id, harness_engine::WorkerOptions::default())
            .await
            .unwrap();
    assert_eq!(settled.status, RequestStatus::WaitingApproval);
    let tree = h.store().subtree_ids(&root.id).await.unwrap();
    assert_eq!(tree.len(), 2);
    let want: Vec<Event> = h
        .store()
        .events_after(head, EventFilter::default(), 0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.request_id.as_ref().is_some_and(|r| tree.contains(r)))
        .collect();
    assert!(want.iter().any(|e| e.request_id.as_ref() == Some(&tree[1])));
    assert!(
        !want
            .iter()
            .any(|e| e.request_id.as_ref() == Some(&other.id))
    );
    let got: Vec<Event> = stream.take(want.len()).map(|e| e.unwrap()).collect().await;
    assert_eq!(got, want);
}
