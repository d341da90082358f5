//! Opening a test workspace on either backend: SQLite in the workspace (as
//! written), or PostgreSQL in a fresh schema of `AGENT_HARNESS_TEST_DATABASE_URL`'s
//! server (its `stores.yaml` rewritten to point there; skipped, with one line, when
//! the variable is not set).

#![allow(dead_code)]

use harness_engine::{Harness, HarnessOptions};
use harness_store::testing::TestSchema;
use std::path::Path;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Keeps a PostgreSQL test schema until the test ends.
pub struct Keep(Option<TestSchema>);

/// The variable `stores.yaml` names for the URL (given to the harness through
/// `HarnessOptions::secret_env`, not the process environment).
const URL_ENV: &str = "HARNESS_TEST_PG_URL";

/// Opens the workspace at `root` on `b` with `opts`; `None` when PostgreSQL is not
/// configured.
pub fn open_with(root: &Path, b: Backend, mut opts: HarnessOptions) -> Option<(Harness, Keep)> {
    let keep = match b {
        Backend::Sqlite => Keep(None),
        Backend::Postgres => {
            let schema = TestSchema::new()?;
            let stores = format!(
                "backend: postgres\npostgres:\n  url_env: {URL_ENV}\n  pool_size: 8\n  schema: {}\n",
                schema.config.schema
            );
            std::fs::write(root.join("config/stores.yaml"), stores).unwrap();
            let url = schema.config.url.clone();
            let inner = opts.secret_env.take();
            opts.secret_env = Some(Arc::new(move |name: &str| {
                if name == URL_ENV {
                    Some(url.clone())
                } else {
                    inner.as_ref().and_then(|f| f(name))
                }
            }));
            Keep(Some(schema))
        }
    };
    let h = Harness::open_with(root, opts, true).unwrap();
    Some((h, keep))
}

pub fn open(root: &Path, b: Backend) -> Option<(Harness, Keep)> {
    open_with(root, b, HarnessOptions::default())
}

/// `let (h, _keep) = open!(root, backend)`, returning from the test when skipped.
#[macro_export]
macro_rules! open {
    ($root:expr, $b:expr) => {
        match $crate::common::open($root, $b) {
            Some(opened) => opened,
            None => return,
        }
    };
    ($root:expr, $b:expr, $opts:expr) => {
        match $crate::common::open_with($root, $b, $opts) {
            Some(opened) => opened,
            None => return,
        }
    };
}

/// Defines two tests with `$attr` (e.g. `#[tokio::test]`), one per backend, each
/// running `$body(backend)`.
#[macro_export]
macro_rules! on_both {
    (#[$attr:meta] $sqlite:ident, $postgres:ident, $body:ident) => {
        #[$attr]
        async fn $sqlite() {
            $body($crate::common::Backend::Sqlite).await
        }
        #[$attr]
        async fn $postgres() {
            $body($crate::common::Backend::Postgres).await
        }
    };
}
