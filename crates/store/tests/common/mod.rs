//! The backends every contract test runs against: SQLite in a temp folder, and
//! PostgreSQL in a fresh schema of the test server (skipped, with one line, when
//! `AGENT_HARNESS_TEST_DATABASE_URL` is not set; see `harness_store::testing`).

#![allow(dead_code)]

use harness_core::*;
use harness_store::testing::TestSchema;
use harness_store::{Admission, NewRequest, StepCommit, Store, StoreConfig, StoreOptions};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A new, empty store, and what keeps it alive (its folder or its schema).
pub struct Fresh {
    pub store: Store,
    pub dir: Option<tempfile::TempDir>,
    _schema: Option<TestSchema>,
}

impl Backend {
    /// A new, empty store of this backend; `None` when PostgreSQL is not configured.
    pub fn fresh(self) -> Option<Fresh> {
        match self {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
                Some(Fresh {
                    store,
                    dir: Some(dir),
                    _schema: None,
                })
            }
            Backend::Postgres => {
                let schema = TestSchema::new()?;
                let config = StoreConfig::Postgres(schema.config.clone());
                let store = Store::open_config(&config, StoreOptions::default(), true).unwrap();
                Some(Fresh {
                    store,
                    dir: None,
                    _schema: Some(schema),
                })
            }
        }
    }

    /// Another handle on the same store (another process, as far as the store knows).
    pub fn reopen(self, fresh: &Fresh) -> Store {
        match (self, &fresh.dir, &fresh._schema) {
            (Backend::Sqlite, Some(dir), _) => {
                Store::open(dir.path(), StoreOptions::default()).unwrap()
            }
            (Backend::Postgres, _, Some(s)) => Store::open_config(
                &StoreConfig::Postgres(s.config.clone()),
                StoreOptions::default(),
                true,
            )
            .unwrap(),
            _ => unreachable!("a fresh store of this backend"),
        }
    }
}

/// The PostgreSQL schema of a fresh store.
pub fn schema_of(fresh: &Fresh) -> String {
    fresh
        ._schema
        .as_ref()
        .expect("a PostgreSQL store")
        .config
        .schema
        .clone()
}

/// A new request in `session` (agent `a`, input `x`, trace `t`).
pub fn new_request(session: &str, priority: i32) -> harness_store::NewRequest {
    harness_store::testing::new_request(session, priority)
}

/// The PostgreSQL URL of a fresh store (its schema is not the search path).
pub fn url_of(fresh: &Fresh) -> String {
    fresh
        ._schema
        .as_ref()
        .expect("a PostgreSQL store")
        .config
        .url
        .clone()
}

/// Runs a `count(*)` query on a connection of its own (outside the store).
pub fn admin_count(fresh: &Fresh, sql: &str) -> i64 {
    let url = url_of(fresh);
    let sql = sql.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            let task = tokio::spawn(conn);
            let n: i64 = client.query_one(&sql, &[]).await.unwrap().get(0);
            drop(client);
            let _ = task.await;
            n
        })
    })
    .join()
    .unwrap()
}

/// A request in session `s{i}`, claimed and paused on a new approval of a `send`
/// call that expires `ttl_ms` after `now`.
pub async fn paused_request(
    store: &Store,
    i: usize,
    now: Timestamp,
    ttl_ms: i64,
) -> (Request, Approval) {
    let adm = Admission {
        queue_capacity: 100,
        reject_if_session_busy: false,
    };
    let new = NewRequest {
        id: RequestId::generate(),
        session_id: SessionId::parse(&format!("s{i}")).unwrap(),
        agent: "a".into(),
        input: "x".into(),
        trace_id: "t".into(),
        traceparent: None,
        priority: 0,
    };
    store.admit(new, adm, now).await.unwrap();
    let r = store
        .claim(&WorkerId::generate(), 1, now)
        .await
        .unwrap()
        .remove(0);
    let call = ToolCall {
        call_id: CallId::generate(),
        tool: "send".into(),
        arguments: json!({}),
    };
    let a = Approval {
        id: ApprovalId::generate(),
        request_id: r.id.clone(),
        session_id: r.session_id.clone(),
        agent: "a".into(),
        step_idx: 0,
        call_id: call.call_id.clone(),
        tool: "send".into(),
        arguments: json!({}),
        status: ApprovalStatus::Pending,
        decided_by: None,
        decided_by_kind: None,
        message: None,
        edited_arguments: None,
        created_at: now,
        decided_at: None,
        expires_at: now.plus(std::time::Duration::from_millis(ttl_ms as u64)),
        reason: None,
    };
    let step = Step {
        request_id: r.id.clone(),
        idx: 0,
        agent: "a".into(),
        status: StepStatus::AwaitingApproval,
        started_at: now,
        finished_at: None,
        body: StepBody::ToolCall {
            call,
            approval_id: Some(a.id.clone()),
            outcome: None,
            child_request_id: None,
        },
    };
    let commit = StepCommit::new(&r.id, &r.session_id, now)
        .insert(step)
        .raise(a.clone());
    store.commit_step(commit).await.unwrap();
    (r, a)
}

/// Defines `$name` as two tests, one per backend, each running `$body(backend)`.
#[macro_export]
macro_rules! on_both {
    ($(#[$attr:meta])* $sqlite:ident, $postgres:ident, $body:path) => {
        $(#[$attr])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $body($crate::common::Backend::Sqlite).await
        }
        $(#[$attr])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            $body($crate::common::Backend::Postgres).await
        }
    };
}

/// A completed model turn answering `text`, step `idx` of `request`, at `at`.
pub fn text_step(request: &RequestId, idx: u32, at: i64, text: &str) -> Step {
    Step {
        request_id: request.clone(),
        idx,
        agent: "a".into(),
        status: StepStatus::Completed,
        started_at: Timestamp(at),
        finished_at: Some(Timestamp(at)),
        body: StepBody::ModelTurn {
            turn: ModelTurn::Text {
                text: text.to_string(),
            },
            info: Default::default(),
        },
    }
}
