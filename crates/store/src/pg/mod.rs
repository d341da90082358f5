//! The PostgreSQL backend: the same operations as SQLite's, on a pool of
//! connections (tokio-postgres + deadpool-postgres), for workers on one host or many.
//!
//! - Every write is one transaction on a pooled connection; `BEGIN` rides with its
//!   first statement. The hot path (a step commit) is one round trip: one statement
//!   of data-modifying CTEs for the common step, else `BEGIN`, its statements and
//!   `COMMIT` as one pipeline; refusals are raised by the server inside the
//!   transaction (see `steps.rs`). The common steps of several sessions are
//!   committed together, one transaction for all (`group.rs`).
//! - A transaction that changes a tree locks the tree's root row first, so two
//!   transactions on one tree queue instead of deadlocking. A deadlock or
//!   serialization failure (possible across trees) is retried whole.
//! - Claims carry a lease (token, expiry); a tree's step commits are conditional on
//!   the token this process's claim issued ([`PgStore::leases`]): a worker whose
//!   tree was claimed by another commits nothing (`StoreError::LeaseLost`).
//! - Event seqs follow transaction ids, and readers see only events of finished
//!   transactions (see `events.rs`): a cursor never skips.
//! - Wake-ups: LISTEN/NOTIFY, the NOTIFY sent after the commit (see `wakeups.rs`).

mod approvals;
mod artifacts;
mod events;
mod group;
mod health;
mod limits;
mod lookup;
mod maintenance;
mod migrate;
mod notes;
mod repair;
mod requests;
mod rows;
mod steps;
mod tree;
mod wakeups;
mod workers;

use crate::StoreError;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use harness_core::RequestId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

pub use group::GroupStats;
pub(crate) use wakeups::{FALLBACK_POLL, Listening};
pub(crate) use workers::PgLock;

/// The SQLSTATE of `step_fence` (migration V9): a step the server refused to commit.
const FENCE_REFUSED: &str = "AH001";
/// How long a caller waits for a pooled connection before the store reports the
/// database unavailable.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// Conflicts (deadlock, serialization) retried this many times.
const CONFLICT_RETRIES: u32 = 5;

/// Where a PostgreSQL store is and how to reach it.
#[derive(Clone)]
pub struct PgConfig {
    /// The connection URL (a secret: never printed; see [`PgConfig::location`]).
    pub url: String,
    pub pool_size: usize,
    pub schema: String,
    /// How long a claim holds without renewal (the worker's heartbeat renews the
    /// claims it holds; `postgres.lease_secs` in `config/stores.yaml`).
    pub lease: Duration,
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &"(secret)")
            .field("pool_size", &self.pool_size)
            .field("schema", &self.schema)
            .field("lease", &self.lease)
            .finish()
    }
}

impl PgConfig {
    /// The password in a connection URL, if it has one (to redact it wherever it
    /// might be written).
    pub fn password_of(url: &str) -> Option<String> {
        let cfg: tokio_postgres::Config = url.parse().ok()?;
        let p = cfg.get_password()?;
        Some(String::from_utf8_lossy(p).into_owned()).filter(|p| !p.is_empty())
    }

    /// The driver's configuration, with the schema as every connection's search path.
    fn driver(&self) -> Result<tokio_postgres::Config, StoreError> {
        if !is_schema_name(&self.schema) {
            return Err(StoreError::Io(format!(
                "`{}` is not a usable schema name (a-z, 0-9, `_`, at most 63 bytes)",
                self.schema
            )));
        }
        let mut cfg: tokio_postgres::Config = self.url.parse().map_err(|_| {
            // The parser's message may quote the URL: say only what is wrong.
            StoreError::Io(
                "the PostgreSQL URL is not valid: expected \
                 postgres://USER:PASSWORD@HOST:PORT/DATABASE"
                    .to_string(),
            )
        })?;
        cfg.options(search_path(&self.schema));
        if cfg.get_application_name().is_none() {
            cfg.application_name("agent-harness");
        }
        cfg.connect_timeout(Duration::from_secs(10));
        Ok(cfg)
    }
}

fn search_path(schema: &str) -> String {
    format!("-c search_path={schema}")
}

/// Host, port, database and schema: what messages name (never user or password).
fn location_of(cfg: &tokio_postgres::Config, schema: &str) -> String {
    let host = cfg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let db = cfg.get_dbname().or(cfg.get_user()).unwrap_or("postgres");
    format!("postgres://{host}:{port}/{db} (schema {schema})")
}

pub(crate) fn is_schema_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && !s.starts_with("pg_")
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub(crate) struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    driver: tokio_postgres::Config,
    schema: String,
    /// The NOTIFY channel of this schema.
    channel: String,
    /// Paces this handle's NOTIFYs (`wakeups::Notifier`).
    notifier: wakeups::Notifier,
    /// Its steps waiting to be committed together (`group.rs`).
    group: group::Group,
    location: String,
    pool_size: usize,
    /// How long a claim holds without renewal.
    lease: Duration,
    /// This process's commits (the value only changes; wakes [`crate::Wakeups`]).
    local: watch::Sender<i64>,
    /// Other handles' commits that may have given a worker work to claim.
    frees_work: watch::Sender<i64>,
    /// Names this handle in its NOTIFY payloads (`wakeups::handle_name`).
    handle: String,
    /// The LISTEN connection and the NOTIFY sender, started by the first wake-up
    /// handle (they need a runtime).
    listening: Listening,
    started: AtomicBool,
    /// The lease token of each root this process claimed and still runs: every
    /// commit of the root's tree is conditional on it.
    leases: Mutex<HashMap<RequestId, String>>,
    /// Round trips made by this handle's transactions ([`Tx::trip`]).
    trips: AtomicU64,
}

impl PgStore {
    /// Connects, creates the schema and applies pending migrations (under an
    /// advisory lock: workers starting together do not race). With `create` false
    /// (views), a schema without the store's tables is [`StoreError::NoStore`].
    pub(crate) fn open(config: &PgConfig, create: bool) -> Result<PgStore, StoreError> {
        let driver = config.driver()?;
        let location = location_of(&driver, &config.schema);
        migrate::run(&driver, &config.schema, &location, create)?;
        // A pooled connection idle inside a transaction for a lease (its worker
        // paused: SIGSTOP, a long GC, a partition) is ended by the server, so the
        // row locks it holds cannot keep other workers from taking over its runs.
        let mut pooled = driver.clone();
        pooled.options(format!(
            "{} -c idle_in_transaction_session_timeout={}",
            search_path(&config.schema),
            config.lease.as_millis().max(1)
        ));
        let mgr = Manager::from_config(
            pooled,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(config.pool_size.max(1))
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Io(format!("cannot set up the connection pool: {e}")))?;
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                driver,
                schema: config.schema.clone(),
                channel: wakeups::channel(&config.schema),
                notifier: wakeups::Notifier::default(),
                group: group::Group::default(),
                location,
                pool_size: config.pool_size.max(1),
                lease: config.lease,
                local: watch::channel(0).0,
                frees_work: watch::channel(0).0,
                handle: wakeups::handle_name(),
                listening: Listening::default(),
                started: AtomicBool::new(false),
                leases: Mutex::new(HashMap::new()),
                trips: AtomicU64::new(0),
            }),
        })
    }

    pub(crate) fn location(&self) -> String {
        self.inner.location.clone()
    }

    /// See [`crate::testing::transaction_round_trips`].
    pub(crate) fn transaction_round_trips(&self) -> u64 {
        self.inner.trips.load(Ordering::Relaxed)
    }

    pub(crate) fn group_stats(&self) -> GroupStats {
        self.inner.group.stats()
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.inner.pool.get().await.map_err(|e| {
            let problem = match e {
                deadpool_postgres::PoolError::Backend(e) => connect_problem(&e),
                deadpool_postgres::PoolError::Timeout(_) => format!(
                    "no connection became free within {} s (pool of {})",
                    POOL_WAIT.as_secs(),
                    self.inner.pool_size
                ),
                other => other.to_string(),
            };
            StoreError::Unavailable {
                location: self.inner.location.clone(),
                problem,
            }
        })
    }

    /// The token this process's claim of `root` issued, if it claimed it.
    /// When a claim or renewal made at `now` expires.
    pub(crate) fn lease_expiry(&self, now: harness_core::Timestamp) -> i64 {
        now.0 + self.inner.lease.as_millis() as i64
    }

    pub(crate) fn lease_of(&self, root: &RequestId) -> Option<String> {
        self.inner.leases.lock().expect("leases").get(root).cloned()
    }

    pub(crate) fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, String>> {
        self.inner.leases.lock().expect("leases")
    }

    /// Forgets the lease `token` of `root` once its claim is over; a newer claim's
    /// (the root re-claimed meanwhile) is kept.
    pub(crate) fn forget_lease(&self, root: &RequestId, token: Option<&str>) {
        let mut leases = self.leases();
        if token.is_some() && leases.get(root).map(|t| t.as_str()) == token {
            leases.remove(root);
        }
    }

    /// After a commit: wakes this process's waiters at once, other processes'
    /// through NOTIFY.
    fn committed(&self) {
        self.inner.local.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// Why a connection could not be made, without the URL.
fn connect_problem(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            // The driver's connection errors (and their I/O causes) name the host,
            // never the password.
            match std::error::Error::source(e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            }
        }
    }
}

/// A statement's parameters.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A statement of a [`Tx::pipeline`]: `rows` when its rows are wanted (else its count).
pub(crate) struct Stmt<'a> {
    pub sql: &'a str,
    pub params: Params<'a>,
    pub rows: bool,
}

impl<'a> Stmt<'a> {
    pub(crate) fn exec(sql: &'a str, params: Params<'a>) -> Self {
        Stmt {
            sql,
            params,
            rows: false,
        }
    }
    pub(crate) fn query(sql: &'a str, params: Params<'a>) -> Self {
        Stmt {
            sql,
            params,
            rows: true,
        }
    }
}

/// What one pipelined statement returned.
pub(crate) enum Out {
    Count(u64),
    Rows(Vec<Row>),
}

impl Out {
    pub(crate) fn count(&self) -> u64 {
        match self {
            Out::Count(n) => *n,
            Out::Rows(r) => r.len() as u64,
        }
    }
    pub(crate) fn rows_ref(&self) -> &[Row] {
        match self {
            Out::Rows(r) => r,
            Out::Count(_) => &[],
        }
    }
    pub(crate) fn rows(self) -> Vec<Row> {
        match self {
            Out::Rows(r) => r,
            Out::Count(_) => Vec::new(),
        }
    }
}

/// One transaction on a pooled connection. `BEGIN` is sent with the first
/// statement; [`Tx::finish`] commits (or rolls back) and wakes readers.
pub(crate) struct Tx<'a> {
    c: &'a deadpool_postgres::Object,
    /// Its NOTIFY channel, its handle's name (the payload says who committed) and
    /// its notifier (whether a NOTIFY may ride with this commit).
    store: &'a PgStore,
    /// A NOTIFY was sent with the commit.
    notified: bool,
    begun: bool,
    /// Set when [`Tx::pipeline_commit`] or [`Tx::statement_commit`] ended the
    /// transaction: whether the server answered its end (the connection may serve
    /// another caller).
    ended: Option<bool>,
    /// Events appended in this transaction (their seqs' low bits).
    pub(crate) events: i64,
    /// One of them may give a worker work to claim (`EventKind::may_free_work`): the
    /// NOTIFY says so, and workers elsewhere claim at once.
    pub(crate) frees_work: bool,
}

impl<'a> Tx<'a> {
    pub(crate) fn new(c: &'a deadpool_postgres::Object, store: &'a PgStore) -> Tx<'a> {
        Tx {
            c,
            store,
            notified: false,
            begun: false,
            ended: None,
            events: 0,
            frees_work: false,
        }
    }

    async fn prepare(&self, sql: &str) -> Result<tokio_postgres::Statement, StoreError> {
        Ok(self.c.prepare_cached(sql).await?)
    }

    /// Counts one exchange with the server: requests sent together and their answers
    /// awaited. A statement's first preparation on a connection is not counted (it
    /// happens once per pooled connection, whichever one a caller gets).
    fn trip(&self) {
        self.store.inner.trips.fetch_add(1, Ordering::Relaxed);
    }

    /// The NOTIFY to send with the commit, when it appended events and no NOTIFY
    /// left this handle lately (else the commit's is deferred: `wakeups::Notifier`).
    async fn notify_with_commit(
        &mut self,
    ) -> Result<Option<tokio_postgres::Statement>, StoreError> {
        if self.events == 0 || !self.store.inner.notifier.may_send_now() {
            return Ok(None);
        }
        let notify = self.prepare(wakeups::NOTIFY).await?;
        self.notified = true;
        Ok(Some(notify))
    }

    /// What other processes are still to be told once this commits (the NOTIFY did
    /// not ride with it): nothing when it appended no events, else whether it may
    /// have given a worker work to claim.
    pub(crate) fn untold(&self) -> Option<bool> {
        (self.events > 0 && !self.notified).then_some(self.frees_work)
    }

    /// Sends `BEGIN` along with `f`'s first request if the transaction has not begun.
    async fn run<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        self.trip();
        if self.begun {
            return Ok(f.await?);
        }
        self.begun = true;
        let (_, out) = futures_util::future::try_join(self.c.batch_execute("BEGIN"), f).await?;
        Ok(out)
    }

    pub(crate) async fn execute(&mut self, sql: &str, p: Params<'_>) -> Result<u64, StoreError> {
        let st = self.prepare(sql).await?;
        let c = self.c;
        self.run(c.execute(&st, p)).await
    }

    pub(crate) async fn query(&mut self, sql: &str, p: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let st = self.prepare(sql).await?;
        let c = self.c;
        self.run(c.query(&st, p)).await
    }

    pub(crate) async fn query_opt(
        &mut self,
        sql: &str,
        p: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let st = self.prepare(sql).await?;
        let c = self.c;
        self.run(c.query_opt(&st, p)).await
    }

    pub(crate) async fn query_one(&mut self, sql: &str, p: Params<'_>) -> Result<Row, StoreError> {
        let st = self.prepare(sql).await?;
        let c = self.c;
        self.run(c.query_one(&st, p)).await
    }

    /// Runs `statements` as one pipeline (sent together, answered together) and
    /// returns each one's outcome, in order. Every statement runs, even after one
    /// fails; the first failure is returned.
    pub(crate) async fn pipeline(
        &mut self,
        statements: &[Stmt<'_>],
    ) -> Result<Vec<Out>, StoreError> {
        let mut prepared = Vec::with_capacity(statements.len());
        for s in statements {
            prepared.push(self.prepare(s.sql).await?);
        }
        let c = self.c;
        let all = send_all(c, &prepared, statements);
        self.trip();
        let results = if self.begun {
            all.await
        } else {
            self.begun = true;
            let (begin, results) = futures_util::future::join(c.batch_execute("BEGIN"), all).await;
            begin?;
            results
        };
        results
            .into_iter()
            .map(|r| r.map_err(StoreError::from))
            .collect()
    }

    /// The rest of the transaction in one round trip: `BEGIN` (unless it has begun),
    /// `statements`, `COMMIT` and the NOTIFY (when events were appended) sent
    /// together. `None` when the fence refused a statement; the server's error when
    /// it refused one otherwise (either way the transaction rolled back on the
    /// server and nothing was written). An error when the `COMMIT` itself failed
    /// after every statement succeeded (its outcome is unknown).
    pub(crate) async fn pipeline_commit(
        &mut self,
        statements: &[Stmt<'_>],
    ) -> Result<Option<Vec<Out>>, StoreError> {
        let mut prepared = Vec::with_capacity(statements.len());
        for s in statements {
            prepared.push(self.prepare(s.sql).await?);
        }
        let notify = self.notify_with_commit().await?;
        let (c, begun) = (self.c, self.begun);
        let all = send_all(c, &prepared, statements);
        let begin = async move {
            match begun {
                true => Ok(()),
                false => c.batch_execute("BEGIN").await,
            }
        };
        self.begun = true;
        self.trip();
        let (begin, results, committed) =
            futures_util::future::join3(begin, all, self.commit_and_notify(notify.as_ref())).await;
        // The server answered the COMMIT: whatever happened, no transaction is open.
        self.ended = Some(committed.is_ok());
        // The first failure says why: a refusal aborted the transaction on the
        // server (those after it only say so), or the connection failed (and every
        // answer after it with it).
        let mut outs = Vec::with_capacity(results.len());
        if let Err(e) = begin {
            return refusal(e);
        }
        for answer in results {
            match answer {
                Ok(out) => outs.push(out),
                Err(e) => return refusal(e),
            }
        }
        match committed {
            Ok(()) => Ok(Some(outs)),
            Err(e) => refusal(e),
        }
    }

    /// One statement as its own transaction (no `BEGIN`), with the NOTIFY (when
    /// events were appended) in the same round trip: its rows, `None` when the
    /// fence refused it (nothing was written), the server's error for any other
    /// refusal, and [`StoreError::Commit`] when the connection failed with it sent.
    pub(crate) async fn statement_commit(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Vec<Row>>, StoreError> {
        assert!(
            !self.begun,
            "a one-statement transaction is the whole transaction"
        );
        let st = self.prepare(sql).await?;
        let notify = self.notify_with_commit().await?;
        self.begun = true;
        self.trip();
        let out = self
            .then_notify(self.c.query(&st, params), notify.as_ref())
            .await;
        // A statement the server answered, refused or not, ended its transaction.
        self.ended = Some(out.as_ref().map_or_else(|e| e.code().is_some(), |_| true));
        match out {
            Ok(rows) => Ok(Some(rows)),
            Err(e) => refusal(e),
        }
    }

    /// `COMMIT`, then (when given) the NOTIFY (see [`Tx::then_notify`]).
    async fn commit_and_notify(
        &self,
        notify: Option<&tokio_postgres::Statement>,
    ) -> Result<(), tokio_postgres::Error> {
        self.then_notify(self.c.batch_execute("COMMIT"), notify)
            .await
    }

    /// Sends `ending` (what ends the transaction), then (when given) the NOTIFY as a
    /// transaction of its own (see `wakeups`), prepared beforehand so it rides in the
    /// same round trip. Done when `ending` is answered: the NOTIFY's answer comes
    /// after it and is not waited for (the connection discards it; a lost
    /// notification is a lost hint, which the listeners' polling covers).
    async fn then_notify<T>(
        &self,
        ending: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
        notify: Option<&tokio_postgres::Statement>,
    ) -> Result<T, tokio_postgres::Error> {
        let Some(notify) = notify else {
            return ending.await;
        };
        let payload = wakeups::payload(self.frees_work, &self.store.inner.handle);
        let channel: [&(dyn ToSql + Sync); 2] = [&self.store.inner.channel, &payload];
        let notify = self.c.execute(notify, &channel);
        // Both are sent on the first poll, `ending` first.
        match futures_util::future::select(std::pin::pin!(ending), std::pin::pin!(notify)).await {
            futures_util::future::Either::Left((ended, _)) => ended,
            futures_util::future::Either::Right((_, ending)) => ending.await,
        }
    }

    /// Commits if `out` is `Ok` (else rolls back) and returns `out`, or why the
    /// commit failed. `clean`: the connection ended the transaction and may serve
    /// another caller.
    pub(crate) async fn finish<T>(
        &mut self,
        out: Result<T, StoreError>,
        clean: &AtomicBool,
    ) -> Result<T, StoreError> {
        if let Some(answered) = self.ended {
            clean.store(answered, Ordering::Release);
            return out;
        }
        if !self.begun {
            clean.store(true, Ordering::Release);
            return out;
        }
        self.trip();
        match out {
            Ok(v) => {
                let committed = match self.notify_with_commit().await {
                    Ok(notify) => self.commit_and_notify(notify.as_ref()).await,
                    Err(e) => {
                        tracing::debug!(error = %e, "preparing the NOTIFY failed");
                        self.commit_and_notify(None).await
                    }
                };
                match committed {
                    Ok(()) => {
                        clean.store(true, Ordering::Release);
                        Ok(v)
                    }
                    Err(e) => Err(StoreError::Commit(Box::new(e.into()))),
                }
            }
            Err(e) => {
                let rolled_back = self.c.batch_execute("ROLLBACK").await.is_ok();
                clean.store(rolled_back, Ordering::Release);
                Err(e)
            }
        }
    }
}

/// What a failed one-trip transaction means: the fence's refusal is `None` (nothing
/// was written: send the step the slow way), another refusal by the server is that
/// error (nothing was written either), and a failed connection is
/// [`StoreError::Commit`] (the transaction's end was sent; its outcome is unknown).
fn refusal<T>(e: tokio_postgres::Error) -> Result<Option<T>, StoreError> {
    match e.code().map(|c| c.code()) {
        Some(FENCE_REFUSED) => Ok(None),
        Some(_) => Err(e.into()),
        None => Err(StoreError::Commit(Box::new(e.into()))),
    }
}

/// Sends `statements` (prepared as `prepared`) on `c` together; each one's outcome.
fn send_all<'a>(
    c: &'a deadpool_postgres::Object,
    prepared: &'a [tokio_postgres::Statement],
    statements: &'a [Stmt<'a>],
) -> impl std::future::Future<Output = Vec<Result<Out, tokio_postgres::Error>>> + 'a {
    futures_util::future::join_all(prepared.iter().zip(statements).map(|(st, s)| async move {
        if s.rows {
            c.query(st, s.params).await.map(Out::Rows)
        } else {
            c.execute(st, s.params).await.map(Out::Count)
        }
    }))
}

/// Runs `$body` (an expression using `$tx: &mut Tx`) in one transaction, committed
/// if it returns `Ok`; retried whole on a deadlock or serialization failure.
macro_rules! in_tx {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let store: &$crate::pg::PgStore = $store;
        let mut attempt = 0u32;
        loop {
            let conn = $crate::pg::Guarded(Some(store.client().await?), Default::default());
            let mut tx = $crate::pg::Tx::new(conn.object(), store);
            // `?` inside the body ends the body, not the caller: the transaction is
            // always finished (committed or rolled back) before the connection returns.
            let out: Result<_, $crate::StoreError> = {
                let $tx = &mut tx;
                async { $body }.await
            };
            let wrote = tx.begun_writes();
            let finished = tx.finish(out, &conn.1).await;
            let untold = tx.untold();
            drop(conn);
            match finished {
                Err(e) if e.is_retryable_conflict() && attempt < $crate::pg::conflict_retries() => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(2 << attempt)).await;
                }
                Ok(v) => {
                    if wrote {
                        store.committed_now(untold);
                    }
                    break Ok(v);
                }
                Err(e) => break Err(e),
            }
        }
    }};
}
pub(crate) use in_tx;

pub(crate) fn conflict_retries() -> u32 {
    CONFLICT_RETRIES
}

impl Tx<'_> {
    /// Whether a transaction was begun (anything was sent).
    pub(crate) fn begun_writes(&self) -> bool {
        self.begun
    }
}

/// A pooled connection that goes back to the pool only once its transaction ended
/// (the flag). Dropped before that — the caller's future cancelled mid-transaction,
/// a failed `COMMIT` or `ROLLBACK` — it is closed instead, and the server rolls the
/// transaction back: the next caller never finds half of someone else's step.
pub(crate) struct Guarded(pub Option<deadpool_postgres::Object>, pub AtomicBool);

impl Guarded {
    pub(crate) fn object(&self) -> &deadpool_postgres::Object {
        self.0.as_ref().expect("held until dropped")
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if !self.1.load(Ordering::Acquire)
            && let Some(o) = self.0.take()
        {
            drop(deadpool_postgres::Object::take(o));
        }
    }
}

impl PgStore {
    /// After a commit: wakes this process's waiters at once and, when it appended
    /// events and its NOTIFY did not ride with it (`untold`, [`Tx::untold`]), sends
    /// that NOTIFY soon after (`wakeups::Notifier`).
    pub(crate) fn committed_now(&self, untold: Option<bool>) {
        self.committed();
        if let Some(frees_work) = untold {
            self.inner.notifier.defer(self, frees_work);
        }
    }

    /// Runs a read on a pooled connection (autocommit: its own snapshot).
    pub(crate) async fn read_rows(&self, sql: &str, p: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let c = self.client().await?;
        let st = c.prepare_cached(sql).await?;
        Ok(c.query(&st, p).await?)
    }

    pub(crate) async fn read_opt(
        &self,
        sql: &str,
        p: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let c = self.client().await?;
        let st = c.prepare_cached(sql).await?;
        Ok(c.query_opt(&st, p).await?)
    }

    pub(crate) async fn read_one(&self, sql: &str, p: Params<'_>) -> Result<Row, StoreError> {
        let c = self.client().await?;
        let st = c.prepare_cached(sql).await?;
        Ok(c.query_one(&st, p).await?)
    }
}
