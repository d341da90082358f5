//! Moving a SQLite store into PostgreSQL (`Store::copy_into`): every record reads
//! back the same through the PostgreSQL store, a subscriber's cursor stays valid
//! (copied seqs kept, later events above them), and the copy refuses a target
//! that holds records or a store a worker holds.

mod common;

use common::{Backend, Fresh, admin_count, paused_request, schema_of};
use harness_core::*;
use harness_store::{Admission, NewRequest, StepCommit, Store, StoreError};

const ADM: Admission = Admission {
    queue_capacity: 100,
    reject_if_session_busy: false,
};

fn ask(session: &str, input: &str, priority: i32) -> NewRequest {
    NewRequest {
        id: RequestId::generate(),
        session_id: SessionId::parse(session).unwrap(),
        agent: "a".into(),
        input: input.into(),
        trace_id: "t".into(),
        traceparent: None,
        priority,
    }
}

fn done_step(r: &Request, idx: u32, at: i64) -> Step {
    common::text_step(&r.id, idx, at, &format!("answer {idx} of {}", r.input))
}

/// The caller's `traceparent` the completed request was admitted with.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A SQLite store with requests of every kind: completed (steps, two versions
/// of an artifact, a note, under an idempotency key, with a `traceparent`), retried (queued, linked to
/// the original), paused on a pending approval, a running root with a delegated
/// child, cancelled.
async fn filled() -> Fresh {
    let fresh = Backend::Sqlite.fresh().unwrap();
    let s = &fresh.store;
    let w = WorkerId::generate();

    paused_request(s, 2, Timestamp(5), 60_000).await;

    let traced = NewRequest {
        traceparent: Some(TRACEPARENT.into()),
        ..ask("s1", "summarise", 5)
    };
    s.admit_keyed(traced, Some("key-1".into()), ADM, Timestamp(10))
        .await
        .unwrap();
    let a = s.claim(&w, 1, Timestamp(11)).await.unwrap().remove(0);
    let v1 = s
        .put_artifact(
            &a.id,
            &a.session_id,
            "out.md",
            "text/markdown",
            b"first",
            Timestamp(12),
        )
        .await
        .unwrap();
    let v2 = s
        .put_artifact(
            &a.id,
            &a.session_id,
            "out.md",
            "text/markdown",
            b"second",
            Timestamp(12),
        )
        .await
        .unwrap();
    s.commit_step(
        StepCommit::new(&a.id, &a.session_id, Timestamp(12))
            .insert(done_step(&a, 0, 12))
            .insert(done_step(&a, 1, 12))
            .artifacts(vec![v1, v2])
            .count_step(),
    )
    .await
    .unwrap();
    s.commit_step(StepCommit::new(&a.id, &a.session_id, Timestamp(13)).output("done"))
        .await
        .unwrap();
    s.add_note(
        Note {
            request_id: a.id.clone(),
            approval_id: None,
            by: "ops".into(),
            text: "checked by hand".into(),
        },
        Timestamp(14),
    )
    .await
    .unwrap();
    s.admit(ask("s3", "delegate", -3), ADM, Timestamp(30))
        .await
        .unwrap();
    let c = s.claim(&w, 1, Timestamp(31)).await.unwrap().remove(0);
    assert_eq!(c.session_id.as_str(), "s3");
    s.commit_step(StepCommit::new(&c.id, &c.session_id, Timestamp(32)).child(ask("s3", "sub", 0)))
        .await
        .unwrap();

    s.admit_retry(
        &a.id,
        RequestId::generate(),
        "t2".into(),
        ADM,
        Timestamp(15),
    )
    .await
    .unwrap();

    let d = s
        .admit(ask("s4", "never", 0), ADM, Timestamp(40))
        .await
        .unwrap();
    s.cancel(
        &d.id,
        &Actor::new(ActorKind::Cli, "ops"),
        Some("not needed"),
        Timestamp(41),
    )
    .await
    .unwrap();
    fresh
}

async fn all_requests(s: &Store) -> Vec<Request> {
    s.list_requests(RequestFilter::default()).await.unwrap()
}

async fn all_events(s: &Store) -> Vec<Event> {
    s.events_after(0, EventFilter::default(), 0).await.unwrap()
}

async fn all_approvals(s: &Store) -> Vec<Approval> {
    s.list_approvals(ApprovalFilter {
        limit: 1000,
        ..Default::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_store_reads_back_the_same_through_postgres() {
    let Some(target) = Backend::Postgres.fresh() else {
        return;
    };
    let source = filled().await;
    let (src, dst) = (&source.store, &target.store);

    let report = src.copy_into(dst, Timestamp(100)).await.unwrap();
    assert!(report.verified(), "{report:#?}");
    let rows = |t: &str| {
        report
            .check
            .tables
            .iter()
            .find(|c| c.table == t)
            .map(|c| c.target_rows)
            .unwrap()
    };
    assert_eq!(rows("requests"), 6);
    assert_eq!(rows("sessions"), 4);
    assert_eq!(rows("approvals"), 1);
    assert_eq!(rows("artifacts"), 2);
    assert_eq!(report.check.artifacts_checked, 2);
    assert_eq!(report.artifact_bytes, 11);
    assert!(report.artifacts_without_contents.is_empty());

    let requests = all_requests(src).await;
    assert_eq!(requests, all_requests(dst).await);
    let statuses: std::collections::BTreeSet<_> = requests.iter().map(|r| r.status).collect();
    for st in [
        RequestStatus::Completed,
        RequestStatus::Queued,
        RequestStatus::WaitingApproval,
        RequestStatus::Running,
        RequestStatus::Cancelled,
    ] {
        assert!(statuses.contains(&st), "the source holds a {st:?} request");
    }
    assert!(requests.iter().any(|r| r.retry_of.is_some()));
    let traced: Vec<_> = all_requests(dst)
        .await
        .into_iter()
        .filter_map(|r| r.traceparent)
        .collect();
    assert_eq!(traced, [TRACEPARENT], "the caller's traceparent came along");
    assert!(requests.iter().any(|r| r.parent_id.is_some()));
    for r in &requests {
        assert_eq!(
            src.get_request(&r.id).await.unwrap(),
            dst.get_request(&r.id).await.unwrap()
        );
        assert_eq!(
            src.steps(&r.id).await.unwrap(),
            dst.steps(&r.id).await.unwrap()
        );
        let arts = src.artifacts(&r.id).await.unwrap();
        assert_eq!(arts, dst.artifacts(&r.id).await.unwrap());
        for a in &arts {
            let bytes = src.read_artifact(a).await.unwrap();
            assert!(bytes.is_some());
            assert_eq!(bytes, dst.read_artifact(a).await.unwrap(), "{}", a.name);
        }
    }
    assert_eq!(all_approvals(src).await, all_approvals(dst).await);
    let events = all_events(src).await;
    assert!(events.iter().any(|e| e.kind == EventKind::NoteAdded));
    assert_eq!(events, all_events(dst).await, "every event, with its seq");

    // The idempotency key came along: the same key admits nothing new.
    let key = dst
        .admit_keyed(
            ask("s1", "summarise", 5),
            Some("key-1".into()),
            ADM,
            Timestamp(101),
        )
        .await
        .unwrap();
    assert!(key.existing, "the key's request was found on PostgreSQL");

    // A subscriber's cursor: new events on PostgreSQL come after every copied one.
    let last = events.last().unwrap().seq;
    assert_eq!(report.last_seq, last);
    let new = dst
        .admit(ask("s9", "after the move", 0), ADM, Timestamp(102))
        .await
        .unwrap();
    let mut later = Vec::new();
    for _ in 0..50 {
        later = dst
            .events_after(last, EventFilter::default(), 0)
            .await
            .unwrap();
        if !later.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(later.len(), 1, "{later:?}");
    assert_eq!(later[0].request_id.as_ref(), Some(&new.id));
    assert!(later[0].seq > last);
    // Admission order continues after the copied requests: the new one is newest.
    assert_eq!(all_requests(dst).await[0].id, new.id);

    // The source is left as it was, and free for a worker again.
    assert_eq!(all_requests(src).await, requests);
    src.lock_worker(&WorkerId::generate(), Timestamp(103))
        .await
        .unwrap();
    // And the target: a worker starts on it once the copy has ended.
    dst.lock_worker(&WorkerId::generate(), Timestamp(103))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_holding_records_is_refused() {
    let Some(target) = Backend::Postgres.fresh() else {
        return;
    };
    let source = filled().await;
    target
        .store
        .admit(ask("x", "already here", 0), ADM, Timestamp(1))
        .await
        .unwrap();
    let e = source
        .store
        .copy_into(&target.store, Timestamp(100))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Locked(_)), "{e:?}");
    assert!(e.to_string().contains("the target is not empty"), "{e}");
    assert_eq!(e.code(), ErrorCode::Conflict);
    assert_eq!(
        all_requests(&target.store).await.len(),
        1,
        "nothing was copied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_held_by_a_worker_is_refused() {
    let Some(target) = Backend::Postgres.fresh() else {
        return;
    };
    let source = filled().await;
    // A worker on the source.
    let held = source
        .store
        .lock_worker(&WorkerId::generate(), Timestamp(1))
        .await
        .unwrap();
    let e = source
        .store
        .copy_into(&target.store, Timestamp(100))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("a worker holds the SQLite store"),
        "{e}"
    );
    assert_eq!(e.code(), ErrorCode::Conflict);
    drop(held);
    // A worker on the target (another handle: another process, as far as it knows).
    let other = Backend::Postgres.reopen(&target);
    let held = other
        .lock_worker(&WorkerId::generate(), Timestamp(1))
        .await
        .unwrap();
    let e = source
        .store
        .copy_into(&target.store, Timestamp(100))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("a worker holds the PostgreSQL store"),
        "{e}"
    );
    assert!(
        all_requests(&target.store).await.is_empty(),
        "nothing was copied"
    );
    drop(held);
    // The server lets go of the lock once the worker's connection has closed.
    for _ in 0..100 {
        if target.store.worker_holder().await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let report = source
        .store
        .copy_into(&target.store, Timestamp(100))
        .await
        .unwrap();
    assert!(report.verified());
}

/// The check after a copy is no formality: a row changed on the target, or an
/// artifact's contents, is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_difference_after_the_copy_is_found() {
    let Some(target) = Backend::Postgres.fresh() else {
        return;
    };
    let source = filled().await;
    let report = source
        .store
        .copy_into(&target.store, Timestamp(100))
        .await
        .unwrap();
    assert!(report.verified());
    let schema = schema_of(&target);
    let changed = admin_count(
        &target,
        &format!(
            "WITH u AS (UPDATE {schema}.steps SET body = replace(body, 'answer', 'ANSWER') \
             WHERE idx = 1 RETURNING 1) SELECT count(*) FROM u"
        ),
    );
    assert_eq!(changed, 1);
    let check = source.store.compare_copy(&target.store).await.unwrap();
    assert!(!check.verified());
    let bad: Vec<_> = check.tables.iter().filter(|t| !t.matches()).collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].table, "steps");
    assert_eq!(bad[0].source_rows, bad[0].target_rows);

    admin_count(
        &target,
        &format!(
            "WITH u AS (UPDATE {schema}.artifact_blobs SET bytes = 'tampered'::bytea RETURNING 1) \
             SELECT count(*) FROM u"
        ),
    );
    let check = source.store.compare_copy(&target.store).await.unwrap();
    assert_eq!(check.artifact_mismatches.len(), 2, "{check:?}");
    assert!(
        check.artifact_mismatches[0].ends_with("out.md v1"),
        "{check:?}"
    );
}

/// A column the copy does not know (a store written by a newer version, or a
/// migration that forgot the copy) would lose its values while the comparison,
/// reading only the known columns, still passed: the copy is refused instead,
/// naming each such column, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_the_copy_does_not_know_is_refused() {
    let Some(target) = Backend::Postgres.fresh() else {
        return;
    };
    let source = filled().await;
    let db = source
        .dir
        .as_ref()
        .unwrap()
        .path()
        .join(harness_store::DB_FILE);
    rusqlite::Connection::open(db)
        .unwrap()
        .execute_batch("ALTER TABLE requests ADD COLUMN later_note TEXT")
        .unwrap();
    let (pg, conn) = tokio_postgres::connect(&common::url_of(&target), tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    pg.batch_execute(&format!(
        "ALTER TABLE {}.approvals ADD COLUMN later_flag bigint",
        schema_of(&target)
    ))
    .await
    .unwrap();
    drop(pg);
    let _ = conn.await;
    let e = source
        .store
        .copy_into(&target.store, Timestamp(100))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("requests.later_note (SQLite)")
            && msg.contains("approvals.later_flag (PostgreSQL)"),
        "{msg}"
    );
    assert!(
        all_requests(&target.store).await.is_empty(),
        "nothing was copied"
    );
}

/// Copied seqs above what the server's transaction ids would give new events (a
/// large SQLite store on a young server): the copy uses up transaction ids until
/// new events sort after every copied one, so a subscriber's cursor misses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_events_follow_copied_seqs_above_the_servers_transaction_ids() {
    let Some(target) = Backend::Postgres.fresh() else {
        return;
    };
    let xid = admin_count(&target, "SELECT pg_current_xact_id()::text::bigint");
    let source = Backend::Sqlite.fresh().unwrap();
    // The next event's seq: 500 transactions past the server's current id.
    let db = source
        .dir
        .as_ref()
        .unwrap()
        .path()
        .join(harness_store::DB_FILE);
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute(
        "INSERT OR REPLACE INTO sqlite_sequence (name, seq) VALUES ('events', ?1)",
        [(xid + 500) << 16],
    )
    .unwrap();
    drop(c);
    let r = source
        .store
        .admit(ask("s1", "old", 0), ADM, Timestamp(1))
        .await
        .unwrap();
    let copied = all_events(&source.store).await;
    assert_eq!(copied.len(), 1);
    assert!(copied[0].seq > (xid + 500) << 16);

    let report = source
        .store
        .copy_into(&target.store, Timestamp(2))
        .await
        .unwrap();
    assert!(report.verified());
    assert_eq!(
        all_events(&target.store).await,
        copied,
        "readers see it at once"
    );
    let new = target
        .store
        .admit(ask("s2", "new", 0), ADM, Timestamp(3))
        .await
        .unwrap();
    let mut later = Vec::new();
    for _ in 0..50 {
        later = target
            .store
            .events_after(copied[0].seq, EventFilter::default(), 0)
            .await
            .unwrap();
        if !later.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(later.len(), 1, "the new event is after the copied cursor");
    assert_eq!(later[0].request_id.as_ref(), Some(&new.id));
    assert_ne!(later[0].request_id.as_ref(), Some(&r.id));
}
