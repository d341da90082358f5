//! Versioned migrations (`migrations/postgres/`), applied by refinery at open.
//!
//! Several workers may start at once: the schema is created and migrated under a
//! transaction-independent advisory lock keyed by the schema name, so one applies
//! the migrations and the others find them applied.

use super::connect_problem;
use crate::StoreError;

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// Connects once (on a thread of its own: opening a store is synchronous), takes
/// the migration lock, creates the schema if needed and applies what is pending.
pub(super) fn run(
    driver: &tokio_postgres::Config,
    schema: &str,
    location: &str,
    create: bool,
) -> Result<(), StoreError> {
    let driver = driver.clone();
    let schema = schema.to_string();
    let location = location.to_string();
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Io(format!("cannot start a runtime: {e}")))?;
            rt.block_on(migrate(&driver, &schema, &location, create))
        })
        .join()
        .map_err(|_| StoreError::Io("the migration thread panicked".into()))?
    })
}

async fn migrate(
    driver: &tokio_postgres::Config,
    schema: &str,
    location: &str,
    create: bool,
) -> Result<(), StoreError> {
    let (mut client, conn) =
        driver
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| StoreError::Unavailable {
                location: location.to_string(),
                problem: connect_problem(&e),
            })?;
    let task = tokio::spawn(conn);
    let out = async {
        let exists = client
            .query_opt(
                "SELECT 1 FROM information_schema.tables \
                 WHERE table_schema = $1 AND table_name = 'refinery_schema_history'",
                &[&schema],
            )
            .await?
            .is_some();
        if !exists && !create {
            return Err(StoreError::NoStore {
                path: location.into(),
            });
        }
        // Session-level: held across refinery's own transactions, released below
        // (and by the server if this process dies).
        client
            .execute(
                "SELECT pg_advisory_lock(hashtext($1))",
                &[&lock_key(schema)],
            )
            .await?;
        let applied = async {
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await?;
            embedded::migrations::runner()
                .run_async(&mut client)
                .await
                .map_err(|e| StoreError::Migration(e.to_string()))?;
            Ok::<(), StoreError>(())
        }
        .await;
        client
            .execute(
                "SELECT pg_advisory_unlock(hashtext($1))",
                &[&lock_key(schema)],
            )
            .await?;
        applied
    }
    .await;
    drop(client);
    let _ = task.await;
    out
}

fn lock_key(schema: &str) -> String {
    format!("agent-harness migrations {schema}")
}
