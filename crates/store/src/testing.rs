//! Support for tests that run against every backend (this crate's contract suite,
//! the engine's end-to-end tests).
//!
//! PostgreSQL tests find the server through `AGENT_HARNESS_TEST_DATABASE_URL`
//! (e.g. `postgres://postgres@127.0.0.1:5432/postgres`) and get a fresh schema
//! each, dropped when done. Without the variable they are skipped with one
//! visible `skipped: …` line per test binary; with `AGENT_HARNESS_REQUIRE_POSTGRES=1`
//! a skip is a failure.

use crate::{PgConfig, StoreError};
use std::io::Write;
use std::sync::Once;

/// The variable naming the test server.
pub const TEST_DATABASE_URL: &str = "AGENT_HARNESS_TEST_DATABASE_URL";
/// Set to `1` to make a missing test server a failure.
pub const REQUIRE_POSTGRES: &str = "AGENT_HARNESS_REQUIRE_POSTGRES";

/// A new request in `session` (agent `a`, input `x`, trace `t`): what the store's
/// tests admit when only the request's place matters.
pub fn new_request(session: &str, priority: i32) -> crate::NewRequest {
    use harness_core::{RequestId, SessionId};
    crate::NewRequest {
        id: RequestId::generate(),
        session_id: SessionId::parse(session).expect("a valid session id"),
        agent: "a".into(),
        input: "x".into(),
        trace_id: "t".into(),
        traceparent: None,
        priority,
    }
}

/// A running request in `session`: [`new_request`] admitted (at 1) and claimed
/// (at 2) by a new worker, for tests that commit its steps.
pub async fn running_request(store: &crate::Store, session: &str) -> harness_core::Request {
    use harness_core::{Timestamp, WorkerId};
    let adm = crate::Admission {
        queue_capacity: 10,
        reject_if_session_busy: false,
    };
    store
        .admit(new_request(session, 0), adm, Timestamp(1))
        .await
        .expect("admitted");
    let mut claimed = store
        .claim(&WorkerId::generate(), 1, Timestamp(2))
        .await
        .expect("claimed");
    assert_eq!(claimed.len(), 1, "the request admitted is claimed");
    claimed.remove(0)
}

/// A schema of the test server, dropped (with everything in it) on drop.
pub struct TestSchema {
    pub config: PgConfig,
}

impl TestSchema {
    /// A new, empty schema on the test server; `None` (after saying so once) when
    /// no server is configured.
    ///
    /// # Panics
    /// When `AGENT_HARNESS_REQUIRE_POSTGRES=1` and no server is configured, or when
    /// the configured server cannot be reached.
    pub fn new() -> Option<TestSchema> {
        let Some(url) = std::env::var(TEST_DATABASE_URL)
            .ok()
            .filter(|u| !u.is_empty())
        else {
            if std::env::var(REQUIRE_POSTGRES).as_deref() == Ok("1") {
                panic!(
                    "{REQUIRE_POSTGRES}=1 but {TEST_DATABASE_URL} is not set: no PostgreSQL to test against"
                );
            }
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                let test = std::env::args().next().unwrap_or_default();
                let name = std::path::Path::new(&test)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or(test);
                // Straight to stderr: the test harness would capture `eprintln!`.
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: the PostgreSQL tests of {name} ({TEST_DATABASE_URL} is not set)"
                );
            });
            return None;
        };
        let schema = format!(
            "ah_test_{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        );
        admin(&url, &format!("CREATE SCHEMA {schema}")).unwrap_or_else(|e| {
            panic!("cannot create a test schema on {TEST_DATABASE_URL}'s server: {e}")
        });
        // The schema's name as the connections' application name: a test can find
        // its own sessions in `pg_stat_activity`.
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}application_name={schema}");
        Some(TestSchema {
            config: PgConfig {
                url,
                pool_size: 4,
                schema,
                lease: std::time::Duration::from_secs(15),
            },
        })
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let _ = admin(
            &self.config.url,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.config.schema),
        );
    }
}

/// Runs one statement on a connection of its own (from any thread, in or out of a
/// runtime).
fn admin(url: &str, sql: &str) -> Result<(), StoreError> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io(e.to_string()))?;
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            let task = tokio::spawn(conn);
            let out = client.batch_execute(&sql).await;
            drop(client);
            let _ = task.await;
            Ok(out?)
        })
    })
    .join()
    .map_err(|_| StoreError::Io("the test schema thread panicked".into()))?
}

/// Round trips `store`'s transactions (every write, and the few reads that need
/// one) have made with the server so far: each statement or pipeline sent and
/// answered (a `BEGIN`, `COMMIT` or NOTIFY riding with it adds none), and each
/// `COMMIT` or `ROLLBACK` sent alone. A statement's first preparation on a pooled
/// connection is not counted, nor are reads outside a transaction, the listener or
/// the liveness lock. `None` on SQLite, which has no round trips. For tests that pin
/// what a write costs.
pub fn transaction_round_trips(store: &crate::Store) -> Option<u64> {
    match &store.backend {
        crate::Backend::Postgres(pg) => Some(pg.transaction_round_trips()),
        crate::Backend::Sqlite(_) => None,
    }
}
