//! What only the PostgreSQL backend does: migrations applied once by workers
//! starting together, views that never create a schema, leases that fence a
//! worker whose tree another claimed, a URL that never shows in errors, the
//! server's facts in the health check, and workers told at once of work another
//! process made claimable.

mod common;

use common::Backend;
use harness_core::*;
use harness_store::testing::TestSchema;
use harness_store::{
    Admission, NewRequest, PgConfig, StepCommit, Store, StoreConfig, StoreError, StoreOptions,
};

fn open(config: &PgConfig, create: bool) -> Result<Store, StoreError> {
    Store::open_config(
        &StoreConfig::Postgres(config.clone()),
        StoreOptions::default(),
        create,
    )
}

#[test]
fn workers_starting_together_migrate_once_and_views_never_create_the_schema() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    // The schema exists (empty): a view must not create the store in it.
    let e = open(&schema.config, false)
        .err()
        .expect("a view opened an empty schema");
    assert!(matches!(e, StoreError::NoStore { .. }), "{e}");
    assert!(e.to_string().contains(&schema.config.schema), "{e}");
    let opened: Vec<_> = (0..6)
        .map(|_| {
            let config = schema.config.clone();
            std::thread::spawn(move || open(&config, true).map(|_| ()))
        })
        .collect();
    for o in opened {
        o.join().unwrap().unwrap();
    }
    open(&schema.config, false).unwrap();
}

/// Pauses `request` (a running child under `ancestors`, parent first) on a new
/// approval of a call, raised at `at`; returns the approval.
async fn pause_on_approval(
    store: &Store,
    request: &NewRequest,
    ancestors: &[RequestId],
    at: Timestamp,
) -> Approval {
    let call = ToolCall {
        call_id: CallId::generate(),
        tool: "send".into(),
        arguments: serde_json::json!({}),
    };
    let approval = Approval::for_call(
        &call,
        &request.id,
        &request.session_id,
        &request.agent,
        0,
        at,
        Timestamp(600_000),
    );
    store
        .commit_step(
            StepCommit::new(&request.id, &request.session_id, at)
                .ancestors(ancestors)
                .raise(approval.clone()),
        )
        .await
        .unwrap();
    approval
}

/// An operator's approval of `a`, as is.
fn approved(a: &Approval) -> ResolveApproval {
    ResolveApproval {
        session_id: a.session_id.clone(),
        request_id: a.request_id.clone(),
        approval_id: a.id.clone(),
        decision: Decision::Approved,
        message: None,
        decided_by: Actor::new(ActorKind::Cli, "op"),
        edited_arguments: None,
    }
}

async fn admitted(store: &Store, session: &str) -> Request {
    let new = NewRequest {
        id: RequestId::generate(),
        session_id: SessionId::parse(session).unwrap(),
        agent: "a".into(),
        input: "go".into(),
        trace_id: "t".into(),
        traceparent: None,
        priority: 0,
    };
    let adm = Admission {
        queue_capacity: 10,
        reject_if_session_busy: false,
    };
    store.admit(new, adm, Timestamp(1)).await.unwrap()
}

/// A worker whose tree another worker claimed since (it was paused past its lease,
/// say) can commit nothing of that tree; the new holder can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_lost_its_lease_commits_nothing() {
    let Some(fresh) = Backend::Postgres.fresh() else {
        return;
    };
    let first = fresh.store.clone();
    let second = Backend::Postgres.reopen(&fresh);
    let r = admitted(&first, "s1").await;
    let a = first
        .claim(&WorkerId::generate(), 1, Timestamp(2))
        .await
        .unwrap();
    assert_eq!(a.len(), 1);
    // The other worker finds it abandoned and takes it over.
    second
        .recover(&WorkerId::generate(), Timestamp(3), 5)
        .await
        .unwrap();
    let b = second
        .claim(&WorkerId::generate(), 1, Timestamp(4))
        .await
        .unwrap();
    assert_eq!(b[0].id, r.id);
    let step = |at| {
        StepCommit::new(&r.id, &r.session_id, Timestamp(at)).event(EventBody::RequestRepaired {
            problem: "p".into(),
            action: "a".into(),
        })
    };
    let e = first.commit_step(step(5)).await.unwrap_err();
    assert!(matches!(e, StoreError::LeaseLost { .. }), "{e:?}");
    assert!(e.to_string().contains(r.id.as_str()), "{e}");
    // A delegated child's commit is fenced by its root's lease too.
    let child = NewRequest {
        id: RequestId::generate(),
        session_id: r.session_id.clone(),
        agent: "c".into(),
        input: "sub".into(),
        trace_id: "t".into(),
        traceparent: None,
        priority: 0,
    };
    second
        .commit_step(step(6).child(child.clone()))
        .await
        .unwrap();
    let child_step = StepCommit::new(&child.id, &r.session_id, Timestamp(7))
        .ancestors(std::slice::from_ref(&r.id))
        .output("done");
    let e = first.commit_step(child_step.clone()).await.unwrap_err();
    assert!(matches!(e, StoreError::LeaseLost { .. }), "{e:?}");
    second.commit_step(child_step).await.unwrap();
    second.commit_step(step(8).output("ok")).await.unwrap();
    assert_eq!(
        second.get_request(&r.id).await.unwrap().status,
        RequestStatus::Completed
    );
    // The fenced commit wrote nothing: of the three steps carrying a repair event
    // only the new holder's two are there. (An event shows once every older
    // transaction of the cluster has ended, and the fenced one was older than both:
    // once they show, it would too.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let repaired = loop {
        let n = first
            .events_after(
                0,
                EventFilter {
                    request_id: Some(r.id.clone()),
                    ..Default::default()
                },
                0,
            )
            .await
            .unwrap()
            .iter()
            .filter(|e| e.kind == EventKind::RequestRepaired)
            .count();
        if n >= 2 || std::time::Instant::now() >= deadline {
            break n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(repaired, 2, "only the holder's commits wrote events");
}

/// The heartbeat renews only the leases this process still holds (by the lease
/// length configured), and names the roots it lost: the one another worker took
/// over after it expired. The loser's commits stay refused after the heartbeat
/// noticed (its token is not forgotten, which would make them unconditional).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_renews_held_leases_and_names_the_lost_ones() {
    let Some(fresh) = Backend::Postgres.fresh() else {
        return;
    };
    let first = fresh.store.clone();
    let second = Backend::Postgres.reopen(&fresh);
    let me = WorkerId::generate();
    let lost = admitted(&first, "s2").await;
    assert_eq!(first.claim(&me, 1, Timestamp(2)).await.unwrap().len(), 1);
    assert_eq!(
        first.heartbeat(&me, Timestamp(1_000)).await.unwrap(),
        vec![]
    );
    // Another worker takes it over (as after this one paused past its lease).
    second
        .recover(&WorkerId::generate(), Timestamp(3), 5)
        .await
        .unwrap();
    let other = second
        .claim(&WorkerId::generate(), 1, Timestamp(4))
        .await
        .unwrap();
    assert_eq!(other.len(), 1);
    let taken = &other[0].id;
    assert_eq!(taken, &lost.id);
    // This worker claims another meanwhile: that lease it holds.
    let kept = admitted(&first, "s1").await;
    let mine = first.claim(&me, 1, Timestamp(5)).await.unwrap();
    assert_eq!(mine[0].id, kept.id);
    assert_eq!(
        first.heartbeat(&me, Timestamp(2_000)).await.unwrap(),
        vec![taken.clone()]
    );
    let step = |id: &RequestId, session: &SessionId, at| {
        StepCommit::new(id, session, Timestamp(at)).event(EventBody::RequestRepaired {
            problem: "p".into(),
            action: "a".into(),
        })
    };
    let t = other[0].session_id.clone();
    let e = first.commit_step(step(taken, &t, 5)).await.unwrap_err();
    assert!(matches!(e, StoreError::LeaseLost { .. }), "{e:?}");
    second.commit_step(step(taken, &t, 6)).await.unwrap();
    // Still reported while this process keeps the stale token (its run may not
    // have stopped yet), and still fenced.
    assert_eq!(
        first.heartbeat(&me, Timestamp(3_000)).await.unwrap(),
        vec![taken.clone()]
    );
    let e = first.commit_step(step(taken, &t, 7)).await.unwrap_err();
    assert!(matches!(e, StoreError::LeaseLost { .. }), "{e:?}");
    // The lease it holds still commits.
    first
        .commit_step(step(&kept.id, &kept.session_id, 8).output("ok"))
        .await
        .unwrap();
}

/// A tree that pauses through its delegated child ends its root's claim: the
/// heartbeat does not report the paused root lost. Reported, the worker stopped
/// whichever run of the root it had registered by then, and when the approval was
/// decided fast and the tree claimed again, that was the new run: the root stayed
/// `running` with no run (`engine/tests/trees.rs` found it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_paused_by_its_child_is_not_reported_lost() {
    let Some(fresh) = Backend::Postgres.fresh() else {
        return;
    };
    let store = fresh.store.clone();
    let me = WorkerId::generate();
    let root = admitted(&store, "s3").await;
    assert_eq!(store.claim(&me, 1, Timestamp(2)).await.unwrap().len(), 1);
    let mut child = common::new_request("s3", 0);
    child.agent = "c".into();
    let session = root.session_id.clone();
    store
        .commit_step(StepCommit::new(&root.id, &session, Timestamp(3)).child(child.clone()))
        .await
        .unwrap();
    let approval =
        pause_on_approval(&store, &child, std::slice::from_ref(&root.id), Timestamp(4)).await;
    assert_eq!(
        store.get_request(&root.id).await.unwrap().status,
        RequestStatus::WaitingApproval
    );
    assert_eq!(store.heartbeat(&me, Timestamp(5)).await.unwrap(), vec![]);
    // Decided; the tree is claimed again: the new claim's lease is held and renewed.
    store
        .resolve_approval(approved(&approval), Timestamp(5))
        .await
        .unwrap();
    assert_eq!(store.claim(&me, 1, Timestamp(6)).await.unwrap().len(), 1);
    assert_eq!(store.heartbeat(&me, Timestamp(7)).await.unwrap(), vec![]);
    store
        .commit_step(StepCommit::new(&root.id, &session, Timestamp(8)).output("ok"))
        .await
        .unwrap();
}

/// A burst of commits tells other processes in fewer NOTIFYs than commits (they
/// are paced, `pg/wakeups.rs`), and the burst is told. (Admissions would not do:
/// they queue on one lock, so they commit too far apart to share a NOTIFY.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_commits_is_told_in_fewer_notifications() {
    let Some(fresh) = Backend::Postgres.fresh() else {
        return;
    };
    let (client, mut conn) =
        tokio_postgres::connect(&common::url_of(&fresh), tokio_postgres::NoTls)
            .await
            .unwrap();
    let (told, mut heard) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = told.send(n.payload().to_string());
            }
        }
    });
    let schema = common::schema_of(&fresh);
    client
        .batch_execute(&format!("LISTEN ah_{schema}"))
        .await
        .unwrap();
    const COMMITS: usize = 200;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = fresh.store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..COMMITS / 8 {
                let w = Worker {
                    id: WorkerId::generate(),
                    pid: (t * 1_000 + i) as u32,
                    host: "test".into(),
                    started_at: Timestamp(1),
                    heartbeat_at: Timestamp(1),
                    stopped_at: None,
                    version: "test".into(),
                };
                store.register_worker(w, 0).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut payloads = Vec::new();
    while let Ok(p) = heard.try_recv() {
        payloads.push(p);
    }
    assert!(!payloads.is_empty(), "no commit was told");
    assert!(
        payloads.len() < COMMITS,
        "{} notifications for {COMMITS} commits",
        payloads.len()
    );
}

#[test]
fn the_url_and_its_password_never_show_in_errors() {
    let password = "s3cret-Pa55word";
    for url in [
        // Nothing listens there.
        format!("postgres://harness:{password}@127.0.0.1:1/harness"),
        // Not a URL the driver accepts.
        format!("postgres://harness:{password}@127.0.0.1:notaport/harness"),
    ] {
        let config = PgConfig {
            url: url.clone(),
            pool_size: 1,
            schema: "agent_harness".into(),
            lease: std::time::Duration::from_secs(15),
        };
        assert!(!format!("{config:?}").contains(password));
        let e = open(&config, true)
            .err()
            .expect("opened a store that is not there");
        let text = format!("{e} {e:?}");
        assert!(!text.contains(password), "{text}");
        assert!(!text.contains(&url), "{text}");
    }
    if let Some(schema) = TestSchema::new() {
        // A wrong password for a real server (trust authentication may accept it: then
        // there is no error to look at).
        let mut config = schema.config.clone();
        config.url = config
            .url
            .replacen("://", &format!("://nobody:{password}@"), 1)
            .replacen("@postgres@", "@", 1);
        if let Err(e) = open(&config, true) {
            let text = format!("{e} {e:?}");
            assert!(!text.contains(password), "{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_the_server() {
    let Some(fresh) = Backend::Postgres.fresh() else {
        return;
    };
    let check = fresh.store.health_check(Timestamp(10), true).await.unwrap();
    assert_eq!(check.status, HealthStatus::Ok, "{}", check.detail);
    let db = check.database.expect("database facts");
    assert!(db.reachable);
    assert!(db.server_version.as_deref().is_some_and(|v| !v.is_empty()));
    assert!(db.round_trip_ms.is_some_and(|ms| ms >= 0.0));
    assert_eq!(db.pool_size, 4);
    assert!(db.bytes.is_some_and(|b| b > 0));
    assert!(check.detail.contains("reachable"), "{}", check.detail);
    assert!(!check.detail.contains("postgres@"), "{}", check.detail);
    // Unreachable: a failing check, not an error.
    let gone = PgConfig {
        url: "postgres://postgres@127.0.0.1:1/postgres".into(),
        pool_size: 1,
        schema: "x".into(),
        lease: std::time::Duration::from_secs(15),
    };
    assert!(open(&gone, true).is_err());
}

/// A caller that gives up on a commit halfway (its future dropped: a timeout, an
/// aborted task) must not hand its open transaction to the next caller of the
/// pooled connection: that would commit half of its step with someone else's, or
/// leave a session idle in a transaction, holding locks and every reader's cursor
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_abandoned_halfway_leaves_no_transaction_open() {
    let Some(fresh) = Backend::Postgres.fresh() else {
        return;
    };
    let store = fresh.store.clone();
    let worker = WorkerId::generate();
    let mut abandoned = 0;
    for i in 0..60u64 {
        let r = admitted(&store, &format!("s{i}")).await;
        store.claim(&worker, 1, Timestamp(2)).await.unwrap();
        let step = StepCommit::new(&r.id, &r.session_id, Timestamp(3))
            .event(EventBody::RequestRepaired {
                problem: "p".into(),
                action: "a".into(),
            })
            .output("ok");
        let cut = std::time::Duration::from_micros(50 + (i * 37) % 900);
        if tokio::time::timeout(cut, store.commit_step(step))
            .await
            .is_err()
        {
            abandoned += 1;
        }
    }
    assert!(
        abandoned > 0,
        "no commit was cut short: the test tested nothing"
    );
    let app = common::schema_of(&fresh);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let open_tx = common::admin_count(
            &fresh,
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}' \
                 AND state LIKE 'idle in transaction%'"
            ),
        );
        if open_tx == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{open_tx} pooled sessions left idle in a transaction"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // And every request is whole: finished with its event, or untouched and running.
    // A committed event shows once every older transaction of the cluster has ended
    // (the cursor's watermark; other tests' transactions may hold it back): wait
    // for it, a few seconds at most.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    for r in store.list_requests(RequestFilter::default()).await.unwrap() {
        let repaired = loop {
            let events = store
                .events_after(
                    0,
                    EventFilter {
                        request_id: Some(r.id.clone()),
                        ..Default::default()
                    },
                    0,
                )
                .await
                .unwrap();
            let repaired = events.iter().any(|e| e.kind == EventKind::RequestRepaired);
            if repaired
                || r.status != RequestStatus::Completed
                || std::time::Instant::now() >= deadline
            {
                break repaired;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!(
            r.status == RequestStatus::Completed,
            repaired,
            "{} is {} but its step's event {}",
            r.id,
            r.status,
            if repaired { "is there" } else { "is not" }
        );
    }
}

/// A worker waits on `work_freed` beside its poll: it returns when another store
/// handle (another process) commits something that may give a worker work, such as
/// an admission, and not for the handle's own commits (they wake its worker in
/// process) nor for commits that free nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_handles_admission_wakes_a_worker_waiting_for_work() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let mine = open(&schema.config, true).unwrap();
    let other = open(&schema.config, true).unwrap();
    let mut wake = mine.wakeups().await;
    // Until the listener is up, nothing is notified.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while wake.check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "no listener after 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (tx, mut woken) = tokio::sync::mpsc::unbounded_channel();
    let waiter = tokio::spawn(async move {
        loop {
            wake.work_freed().await;
            if tx.send(std::time::Instant::now()).is_err() {
                return;
            }
        }
    });
    let quiet = |woken: &mut tokio::sync::mpsc::UnboundedReceiver<std::time::Instant>| {
        assert!(
            woken.try_recv().is_err(),
            "woken without work freed elsewhere"
        )
    };
    // Its own admission, and another handle's commit that frees no work (a note).
    let own = admitted(&mine, "s-own").await;
    other
        .add_note(
            harness_core::Note {
                request_id: own.id.clone(),
                approval_id: None,
                by: "test".into(),
                text: "looked at it".into(),
            },
            Timestamp(2),
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    quiet(&mut woken);

    let committed = std::time::Instant::now();
    admitted(&other, "s-other").await;
    let at = tokio::time::timeout(std::time::Duration::from_secs(2), woken.recv())
        .await
        .expect("not woken within 2 s of another handle's admission")
        .unwrap();
    eprintln!("woken {:?} after the commit", at.duration_since(committed));
    waiter.abort();
}

/// Many sessions committing at once, their steps grouped into shared transactions:
/// every step is kept once, each request's events come in its commit order, and no
/// two events share a seq. One request's lease is taken over midway: from then on
/// it commits nothing, and the others, grouped with it, lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_committing_at_once_keep_every_step_and_a_fenced_one_costs_nothing() {
    let Some(fresh) = Backend::Postgres.fresh() else {
        return;
    };
    const SESSIONS: usize = 48;
    const STEPS: usize = 6;
    const TAKEN: usize = 7;
    let store = fresh.store.clone();
    for i in 0..SESSIONS {
        let adm = Admission {
            queue_capacity: SESSIONS,
            reject_if_session_busy: false,
        };
        let new = common::new_request(&format!("s{i}"), 0);
        store.admit(new, adm, Timestamp(1)).await.unwrap();
    }
    let reqs = store
        .claim(&WorkerId::generate(), SESSIONS, Timestamp(2))
        .await
        .unwrap();
    assert_eq!(reqs.len(), SESSIONS);
    let (raw, conn) = tokio_postgres::connect(&common::url_of(&fresh), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let raw = std::sync::Arc::new(raw);
    let schema = common::schema_of(&fresh);
    let mut tasks = Vec::new();
    for (i, r) in reqs.iter().cloned().enumerate() {
        let (store, raw, schema) = (store.clone(), raw.clone(), schema.clone());
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for k in 0..STEPS {
                if i == TAKEN && k == 3 {
                    raw.execute(
                        &format!(
                            "UPDATE \"{schema}\".requests SET lease_token = 'taken' WHERE id = $1"
                        ),
                        &[&r.id.as_str()],
                    )
                    .await
                    .unwrap();
                }
                let step = StepCommit::new(&r.id, &r.session_id, Timestamp(10 + k as i64))
                    .count_step()
                    .event(EventBody::RequestRepaired {
                        problem: format!("step {k}"),
                        action: "a".into(),
                    });
                outcomes.push(store.commit_step(step).await);
            }
            outcomes
        }));
    }
    let mut kept = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        for (k, outcome) in t.await.unwrap().into_iter().enumerate() {
            match outcome {
                Ok(seqs) => {
                    assert!(!(i == TAKEN && k >= 3), "a fenced commit was kept");
                    assert_eq!(seqs.len(), 1);
                    kept += 1;
                }
                Err(StoreError::LeaseLost { .. }) if i == TAKEN && k >= 3 => {}
                Err(e) => panic!("request {i} step {k}: {e}"),
            }
        }
    }
    assert_eq!(kept, SESSIONS * STEPS - (STEPS - 3));
    for (i, r) in reqs.iter().enumerate() {
        let want = if i == TAKEN { 3 } else { STEPS as u32 };
        assert_eq!(
            store.get_request(&r.id).await.unwrap().steps,
            want,
            "request {i}"
        );
    }
    let stats = store
        .group_commits()
        .expect("PostgreSQL counts its group commits");
    assert!(stats.steps >= kept as u64, "{stats:?}");

    // Every event, once, each request's in its commit order (a reader sees an
    // event once every older transaction of the cluster has ended: wait for them).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let events = loop {
        let all: Vec<Event> = store
            .events_after(0, EventFilter::default(), 0)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == EventKind::RequestRepaired)
            .collect();
        if all.len() >= kept || std::time::Instant::now() >= deadline {
            break all;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(events.len(), kept);
    let seqs: std::collections::HashSet<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs.len(), kept, "two events share a seq");
    for r in &reqs {
        let steps: Vec<String> = events
            .iter()
            .filter(|e| e.request_id.as_ref() == Some(&r.id))
            .map(|e| e.payload["problem"].as_str().unwrap_or("").to_string())
            .collect();
        let want: Vec<String> = (0..steps.len()).map(|k| format!("step {k}")).collect();
        assert_eq!(steps, want, "{}", r.id);
    }
}

/// A reader cannot see an event while an older transaction is open (the cursor's
/// watermark), and no wake-up tells it when that one ends: the feed's read says
/// the event is held back (the feed then looks again soon), and returns it once
/// the older transaction has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_read_says_when_committed_events_are_held_back() {
    let Some(fresh) = Backend::Postgres.fresh() else {
        return;
    };
    let store = fresh.store.clone();
    let first = admitted(&store, "s1").await;
    // Other tests' transactions on the server can hold events back too: wait for a
    // read that sees the admission with nothing held back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let pos = loop {
        let read = store.feed_events_after(0, 100).await.unwrap();
        if !read.held_back
            && read
                .events
                .iter()
                .any(|e| e.request_id == Some(first.id.clone()))
        {
            break read.events.last().unwrap().seq;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the admission's event never showed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let (raw, conn) = tokio_postgres::connect(&common::url_of(&fresh), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // An open transaction with an id, older than the admission below.
    raw.batch_execute("BEGIN; SELECT pg_current_xact_id()")
        .await
        .unwrap();
    let second = admitted(&store, "s2").await;
    let read = store.feed_events_after(pos, 100).await.unwrap();
    assert!(
        read.events.is_empty(),
        "an event passed the watermark: {:?}",
        read.events
    );
    assert!(
        read.held_back,
        "the committed admission was not reported held back"
    );
    raw.batch_execute("COMMIT").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let read = store.feed_events_after(pos, 100).await.unwrap();
        if read
            .events
            .iter()
            .any(|e| e.request_id == Some(second.id.clone()))
        {
            break;
        }
        assert!(
            read.held_back,
            "the admission's event is neither readable nor held back"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the admission's event never showed after the older transaction ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// What the hot writes cost in round trips, so that a change which adds one (or a
/// statement per candidate) shows: an admission three (the lock and its checks, the
/// writes, `COMMIT`); a claim three (the candidates, the updates, the events with
/// `COMMIT`) whether one session or forty wait; a root's step one; a resolve in a
/// tree three deep three (the root's lock with the conditional update, the tree
/// woken, the events with `COMMIT`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_writes_cost_a_fixed_number_of_round_trips() {
    let Some(fresh) = Backend::Postgres.fresh() else {
        return;
    };
    let store = fresh.store.clone();
    let trips = || harness_store::testing::transaction_round_trips(&store).expect("PostgreSQL");
    let me = WorkerId::generate();

    let before = trips();
    let first = admitted(&store, "solo").await;
    assert_eq!(trips() - before, 3, "an admission");

    let before = trips();
    let claimed = store.claim(&me, 1, Timestamp(2)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, first.id);
    let alone = trips() - before;
    assert_eq!(alone, 3, "a claim");

    let room = Admission {
        queue_capacity: 100,
        reject_if_session_busy: false,
    };
    for i in 0..40 {
        let new = common::new_request(&format!("s{i}"), 0);
        store.admit(new, room, Timestamp(1)).await.unwrap();
    }
    let before = trips();
    assert_eq!(store.claim(&me, 1, Timestamp(3)).await.unwrap().len(), 1);
    assert_eq!(
        trips() - before,
        alone,
        "a claim among forty waiting sessions costs what a claim of the only one does"
    );

    let session = first.session_id.clone();
    let before = trips();
    store
        .commit_step(StepCommit::new(&first.id, &session, Timestamp(4)).count_step())
        .await
        .unwrap();
    assert_eq!(trips() - before, 1, "a root's step");

    // A tree two levels deep pauses on the grandchild's approval; the resolve wakes
    // the three of them.
    let mut child = common::new_request("solo", 0);
    child.agent = "c".into();
    store
        .commit_step(StepCommit::new(&first.id, &session, Timestamp(4)).child(child.clone()))
        .await
        .unwrap();
    let mut grandchild = common::new_request("solo", 0);
    grandchild.agent = "g".into();
    store
        .commit_step(
            StepCommit::new(&child.id, &session, Timestamp(5))
                .ancestors(std::slice::from_ref(&first.id))
                .child(grandchild.clone()),
        )
        .await
        .unwrap();
    let approval = pause_on_approval(
        &store,
        &grandchild,
        &[child.id.clone(), first.id.clone()],
        Timestamp(6),
    )
    .await;
    let before = trips();
    store
        .resolve_approval(approved(&approval), Timestamp(7))
        .await
        .unwrap();
    assert_eq!(trips() - before, 3, "a resolve");
    for id in [&first.id, &child.id, &grandchild.id] {
        assert_eq!(
            store.get_request(id).await.unwrap().status,
            RequestStatus::Queued,
            "the resolve woke {id}"
        );
    }
}
