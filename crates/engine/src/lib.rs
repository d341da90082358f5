//! The engine: admits, queues, runs, pauses, resumes and recovers requests.
//!
//! [`Harness`] is the one library API every view (CLI, server, tests) uses. It
//! owns no durable state of its own: everything it knows is in the [`Store`], and
//! a request's progress is the fold of its journal ([`harness_core::journal`]).
//! The engine never formats for humans and never knows which model provider runs.

mod context;
mod deltas;
mod drain;
mod error;
mod health;
pub mod ids;
mod metrics;
mod rate_status;
mod redact;
pub mod replay;
mod run;
mod runs;
mod subscribe;
pub mod telemetry;
mod tools;
pub mod views;
mod worker;

pub use deltas::{DeltaItem, DeltaStream, TurnDelta};
pub use error::{HarnessError, error_code};
pub use harness_config::Workspace;
pub use harness_core::ErrorCode;
pub use harness_providers::ratelimit::{Budget, WaitingCall};
pub use harness_providers::{LimiterState, WaitChange, WaitEvent, WaitReason};
pub use harness_store::{
    Admitted, IdKind, LockHolder, PruneReport, Store, StoreError, StoreStats, StuckRequest,
};
pub use metrics::{HistogramSnapshot, Metrics, StepKind, TokenCount};
pub use rate_status::{RateLimitStatus, RateWait};
pub use redact::SecretEnv;
pub use subscribe::{EventReads, EventStream, FEED_BATCHES};
pub use worker::{WorkerHandle, WorkerOptions, run_until_settled};

use harness_core::*;
use harness_providers::{Model, ToolRunner};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The longest operator note, in bytes.
pub const MAX_NOTE_BYTES: usize = 8 * 1024;

/// Options for opening a harness (tests freeze the clock here).
#[derive(Clone)]
pub struct HarnessOptions {
    pub clock: Arc<dyn Clock>,
    /// Overrides `stores.yaml`'s `synchronous`.
    pub durability: Option<harness_store::Durability>,
    /// Where the values of the workspace's secret variables are read (to redact them
    /// from every record); None: this process's environment.
    pub secret_env: Option<SecretEnv>,
    /// Start a new, empty store if the workspace's is missing, empty or damaged
    /// (see [`harness_store::StoreOptions::new_store`]).
    pub new_store: bool,
    /// Open for a replay: a new SQLite store in its folder whatever `stores.yaml`
    /// says, its model answering every model name, its tools every call (MCP servers
    /// still start, to list their tools' schemas and policies; they are never called).
    /// See [`replay`].
    pub replay: Option<replay::ReplayParts>,
}

impl Default for HarnessOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            durability: None,
            secret_env: None,
            new_store: false,
            replay: None,
        }
    }
}

/// A workspace's runtime: configuration, store, models and tools.
#[derive(Clone)]
pub struct Harness {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) workspace: Workspace,
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) tools: Arc<dyn ToolRunner>,
    /// The workspace's tools, their argument schemas compiled (see [`Harness::tool`]).
    pub(crate) checked_tools: BTreeMap<String, Arc<harness_config::CheckedTool>>,
    /// The workspace's MCP servers (started by the worker) and their tools.
    pub(crate) mcp: Arc<harness_mcp::McpTools>,
    /// Applied to everything a run commits (see `redact.rs`).
    pub(crate) redactor: redact::Secrets,
    models: Mutex<HashMap<String, Arc<dyn Model>>>,
    /// Every HTTP model's rate limit, shared by all the runs of this process.
    pub(crate) rate_limits: harness_providers::RateLimits,
    /// Answers every model name when replaying.
    replay_model: Option<Arc<dyn Model>>,
    /// Model turns' pieces as they stream, for in-process watchers (never stored).
    pub(crate) deltas: deltas::Deltas,
    /// The one reader of the event log that every subscription of this harness shares.
    pub(crate) feed: subscribe::Feed,
    /// Wakes the dispatcher: new work may be runnable.
    pub(crate) wake: Notify,
    /// The runs this process executes (roots and children) and their cancel tokens.
    pub(crate) runs: runs::Runs,
    /// Held by the dispatcher from a claim until its runs are registered, and by
    /// the safety net from reading `runs` until its repair committed: a root claimed
    /// in between would look running with no live run here, and be re-queued.
    pub(crate) claiming: tokio::sync::Mutex<()>,
    /// How fast this process's worker claims queued requests (the `Retry-After` of a full queue).
    pub(crate) drain: drain::DrainRate,
    /// Set when a graceful stop begins: runs finish their step and park.
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
    /// Set when the worker finds its store damaged: it stops, and `serve` exits
    /// with this message (see [`Harness::worker_fault`]).
    pub(crate) fault: tokio::sync::watch::Sender<Option<String>>,
    /// Cancelled when the worker stops hard (stop deadline passed, second signal):
    /// every run's token is a child of it. Replaced at each worker start.
    pub(crate) abort: Mutex<tokio_util::sync::CancellationToken>,
    /// The worker this process runs, if any.
    pub(crate) worker: Mutex<Option<worker::WorkerParts>>,
    /// Counters and histograms since this process opened the harness.
    pub(crate) metrics: metrics::Metrics,
}

impl Harness {
    /// Loads the workspace and opens (creating if needed) its store.
    pub fn open(root: &Path) -> Result<Harness, HarnessError> {
        Self::open_with(root, HarnessOptions::default(), true)
    }

    /// Loads the workspace and opens its existing store, for views: never creates one.
    pub fn inspect(root: &Path) -> Result<Harness, HarnessError> {
        Self::open_with(root, HarnessOptions::default(), false)
    }

    pub fn open_with(
        root: &Path,
        opts: HarnessOptions,
        create: bool,
    ) -> Result<Harness, HarnessError> {
        let mut workspace = harness_config::load(root)?;
        if let Some(r) = &opts.replay {
            workspace.stores.backend = harness_config::StoreBackend::Sqlite;
            workspace.stores.sqlite.path = r.store_dir.clone();
        }
        let sqlite = &workspace.stores.sqlite;
        let durability = opts.durability.unwrap_or(match sqlite.synchronous {
            harness_config::Durability::Normal => harness_store::Durability::Normal,
            harness_config::Durability::Full => harness_store::Durability::Full,
        });
        let store_opts = harness_store::StoreOptions {
            durability,
            new_store: opts.new_store,
        };
        let config = store_config(&workspace, opts.secret_env.as_ref(), create)?;
        let store = Store::open_config(&config, store_opts, create)?;
        let redactor = redact::Secrets::for_workspace(&workspace, opts.secret_env.as_ref());
        let mcp = Arc::new(harness_mcp::McpTools::new(
            &workspace,
            Some(tools::mcp_status_file(&workspace)),
            redactor.0.clone(),
        ));
        // One compiled schema per tool, for the engine's checks and the runner's.
        let checked_tools: BTreeMap<_, _> = workspace
            .tools
            .iter()
            .map(|(name, t)| {
                let checked = harness_config::CheckedTool::new(t.clone());
                (name.clone(), Arc::new(checked))
            })
            .collect();
        let tools: Arc<dyn ToolRunner> = Arc::new(redact::RedactingTools {
            inner: match &opts.replay {
                Some(r) => r.tools.clone(),
                None => Arc::new(tools::Tools {
                    workspace: harness_providers::tools::WorkspaceTools::checked(
                        checked_tools.clone(),
                    ),
                    mcp: mcp.clone(),
                }),
            },
            redactor: redactor.0.clone(),
        });
        let replay_model = opts.replay.as_ref().map(|r| r.model.clone());
        let rate_limits = harness_providers::RateLimits::for_workspace(&workspace);
        rate_limits.on_wait(log_rate_limit_wait);
        if opts.replay.is_none() {
            rate_status::publish(&rate_limits, rate_status::file(&workspace));
        }
        Ok(Harness {
            inner: Arc::new(Inner {
                workspace,
                store,
                clock: opts.clock,
                tools,
                checked_tools,
                mcp,
                redactor,
                models: Mutex::new(HashMap::new()),
                rate_limits,
                replay_model,
                deltas: deltas::Deltas::default(),
                feed: subscribe::Feed::default(),
                wake: Notify::new(),
                runs: runs::Runs::default(),
                claiming: tokio::sync::Mutex::new(()),
                drain: drain::DrainRate::default(),
                stopping: tokio::sync::watch::channel(false).0,
                abort: Mutex::new(tokio_util::sync::CancellationToken::new()),
                fault: tokio::sync::watch::channel(None).0,
                worker: Mutex::new(None),
                metrics: metrics::Metrics::default(),
            }),
        })
    }

    pub fn workspace(&self) -> &Workspace {
        &self.inner.workspace
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// A graceful stop is under way: finish the step in flight, start nothing new.
    pub(crate) fn stopping(&self) -> bool {
        *self.inner.stopping.borrow()
    }

    /// The worker is stopping hard: runs in flight are being cancelled.
    pub(crate) fn aborting(&self) -> bool {
        self.inner.abort.lock().expect("abort").is_cancelled()
    }

    /// Redacts the workspace's secrets (their values as this process's environment
    /// holds them) and every secret shape; what the worker applies before it stores
    /// anything, and exports apply again.
    pub fn redactor(&self) -> &Redactor {
        &self.inner.redactor.0
    }

    pub(crate) fn model(&self, name: &str) -> Result<Arc<dyn Model>, HarnessError> {
        if let Some(m) = &self.inner.replay_model {
            return Ok(m.clone());
        }
        let mut models = self.inner.models.lock().expect("models");
        if let Some(m) = models.get(name) {
            return Ok(m.clone());
        }
        let m =
            harness_providers::build_model(&self.inner.workspace, name, &self.inner.rate_limits)
                .map_err(|e| HarnessError::Model(e.to_string()))?;
        let m: Arc<dyn Model> = Arc::new(redact::RedactingModel {
            inner: m,
            redactor: self.inner.redactor.0.clone(),
        });
        models.insert(name.to_string(), m.clone());
        Ok(m)
    }

    /// This process's counters and histograms (admissions, recoveries, step latency,
    /// approval waits, model tokens), kept since it opened the harness.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The state of every model rate limit of this process now (one per key: budget,
    /// `Retry-After` block, calls and tokens in the last 60 s, the calls waiting and
    /// until when). Other processes' limits are their own.
    pub fn rate_limits(&self) -> Vec<LimiterState> {
        self.inner.rate_limits.state()
    }

    /// Calls `f` whenever a model call of this process starts waiting for its rate
    /// limit, its expected end moves, or it stops waiting (see [`WaitEvent`]). `f`
    /// runs on the waiting call's task and must not block.
    pub fn on_rate_limit_wait(&self, f: impl Fn(&WaitEvent) + Send + Sync + 'static) {
        self.inner.rate_limits.on_wait(f);
    }

    /// Admits a request at the default priority (0); see [`Harness::request_with_priority`].
    pub async fn request(
        &self,
        session: Option<SessionId>,
        agent: &str,
        input: &str,
    ) -> Result<Request, HarnessError> {
        self.request_with_priority(session, agent, input, 0).await
    }

    /// Admits a request with a claim priority (`PRIORITY_MIN..=PRIORITY_MAX`: higher
    /// is claimed first across sessions, aging one level per `PRIORITY_AGING_MS`).
    pub async fn request_with_priority(
        &self,
        session: Option<SessionId>,
        agent: &str,
        input: &str,
        priority: i64,
    ) -> Result<Request, HarnessError> {
        self.admit(Admit {
            session,
            agent: agent.to_string(),
            input: input.to_string(),
            idempotency_key: None,
            priority,
            traceparent: None,
        })
        .await
        .map(|a| a.request)
    }

    /// Admits a request as [`Harness::request`] does, honouring an idempotency key:
    /// the request the key admitted before in the session when it asked for the same
    /// agent and input (`existing`: nothing new is queued), a `conflict` when it
    /// asked for something else. The key needs a session (it is unique per session).
    pub async fn admit(&self, a: Admit) -> Result<Admitted, HarnessError> {
        let admitted = self.admit_inner(a).await.map_err(|e| self.advise_wait(e));
        match &admitted {
            Ok(a) if !a.existing => self.inner.metrics.count_admitted(),
            Ok(_) => {}
            Err(e) => self.inner.metrics.count_rejected(e.code()),
        }
        admitted
    }

    /// A full queue's `retry_after`, from how fast this process's worker drains it
    /// (the store's hint, which grows with the queue's length, when none does here).
    fn advise_wait(&self, e: HarnessError) -> HarnessError {
        match e {
            HarnessError::Store(harness_store::StoreError::QueueFull {
                queued,
                capacity,
                retry_after,
            }) => {
                let rate = self.inner.drain.per_second(std::time::Instant::now());
                HarnessError::Store(harness_store::StoreError::QueueFull {
                    queued,
                    capacity,
                    retry_after: drain::retry_after(queued, capacity, rate, retry_after),
                })
            }
            other => other,
        }
    }

    async fn admit_inner(&self, a: Admit) -> Result<Admitted, HarnessError> {
        let priority =
            harness_core::check_priority(a.priority).map_err(HarnessError::InvalidInput)?;
        let ws = &self.inner.workspace;
        if let Some(key) = &a.idempotency_key {
            check_idempotency_key(key)?;
            if a.session.is_none() {
                return Err(HarnessError::InvalidInput(
                    "an idempotency key is unique per session: give the request a session"
                        .to_string(),
                ));
            }
        }
        let (agent, input) = (a.agent.as_str(), a.input.as_str());
        if !ws.agents.contains_key(agent) {
            return Err(HarnessError::UnknownAgent {
                name: agent.to_string(),
                known: ws.agents.keys().cloned().collect(),
            });
        }
        if input.trim().is_empty() {
            return Err(HarnessError::InvalidInput(
                "the request input is empty: give the agent a task to work on".to_string(),
            ));
        }
        let limits = &ws.settings.runtime;
        if input.len() > limits.max_input_bytes {
            return Err(HarnessError::InputTooLarge {
                bytes: input.len(),
                limit: limits.max_input_bytes,
            });
        }
        let id = RequestId::generate();
        let (trace_id, traceparent) = trace_of(a.traceparent.as_deref());
        let new = harness_store::NewRequest {
            trace_id,
            traceparent,
            priority,
            id,
            session_id: a.session.unwrap_or_else(SessionId::generate),
            agent: a.agent,
            input: a.input,
        };
        let admitted = self
            .inner
            .store
            .admit_keyed(new, a.idempotency_key, self.admission(), self.now())
            .await?;
        if !admitted.existing {
            self.inner.wake.notify_one();
        }
        Ok(admitted)
    }

    /// The root of `id`'s delegation chain: the request a worker claims and runs.
    pub async fn root_of(&self, id: &RequestId) -> Result<Request, HarnessError> {
        let mut r = self.inner.store.get_request(id).await?;
        while let Some(parent) = r.parent_id.clone() {
            r = self.inner.store.get_request(&parent).await?;
        }
        Ok(r)
    }

    /// Whether `id` (or the root of its delegation chain) can be resumed, the
    /// decision behind `runtime requests resume` and `POST /v1/requests/{id}/resume`:
    /// a root left `queued` or `running` (e.g. by a stopped in-process run) is
    /// [`Resumable::Ready`] for a worker to continue; one paused for approval
    /// resumes only through its pending approvals; a finished one is refused
    /// (`WrongState`, a conflict: retry runs it again). Ready wakes this process's
    /// worker, if it runs one.
    pub async fn resumable(&self, id: &RequestId) -> Result<Resumable, HarnessError> {
        let root = self.root_of(id).await?;
        match root.status {
            s if s.is_terminal() => Err(StoreError::WrongState {
                id: root.id.to_string(),
                status: s,
                action: "resume it (use `requests retry` to run it again)",
            }
            .into()),
            RequestStatus::WaitingApproval => {
                let pending = self
                    .inner
                    .store
                    .list_approvals(ApprovalFilter {
                        statuses: vec![ApprovalStatus::Pending],
                        session_id: Some(root.session_id.clone()),
                        ..Default::default()
                    })
                    .await?;
                Ok(Resumable::WaitingApproval { root, pending })
            }
            _ => {
                // A worker in this process claims it at once rather than at its next poll.
                self.inner.wake.notify_one();
                Ok(Resumable::Ready(root))
            }
        }
    }

    /// Admits a new request that runs the finished root request `original` again:
    /// same session, agent and input, linked by `retry_of` (listed both ways by
    /// [`RequestFilter::retry_of`]). Refused while `original` is still active, and
    /// for a delegated child (retry its root instead). The agent must still exist.
    pub async fn retry(&self, original: &RequestId) -> Result<Request, HarnessError> {
        let retried = self.retry_inner(original).await;
        match &retried {
            Ok(_) => self.inner.metrics.count_admitted(),
            Err(e) => self.inner.metrics.count_rejected(e.code()),
        }
        retried
    }

    async fn retry_inner(&self, original: &RequestId) -> Result<Request, HarnessError> {
        let old = self.inner.store.get_request(original).await?;
        let ws = &self.inner.workspace;
        if !ws.agents.contains_key(&old.agent) {
            return Err(HarnessError::UnknownAgent {
                name: old.agent,
                known: ws.agents.keys().cloned().collect(),
            });
        }
        let id = RequestId::generate();
        let req = self
            .inner
            .store
            .admit_retry(
                original,
                id.clone(),
                // A retry is a new request: a new trace, without the original's
                // `traceparent` (its caller's span is in the original's trace).
                harness_providers::trace::new_trace_id(),
                self.admission(),
                self.now(),
            )
            .await?;
        self.inner.wake.notify_one();
        Ok(req)
    }

    fn admission(&self) -> harness_store::Admission {
        let limits = &self.inner.workspace.settings.runtime;
        harness_store::Admission {
            queue_capacity: limits.queue_capacity,
            reject_if_session_busy: limits.session_strategy
                == harness_config::SessionStrategy::Reject,
        }
    }

    /// Events after `from_seq`, then every new one as it commits; resumable from any
    /// cursor. Subscriptions share one reader of the store (see [`EventStream`]).
    pub fn subscribe(&self, from_seq: i64, filter: EventFilter) -> EventStream {
        EventStream::new(self.inner.store.clone(), &self.inner.feed, from_seq, filter)
    }

    /// Store reads made for this harness's subscriptions so far: the shared
    /// reader's, the subscribers' own, and detachments of slow subscribers.
    pub fn event_reads(&self) -> EventReads {
        self.inner.feed.reads()
    }

    /// The pieces of model turns as they stream (text, thinking, tool call arguments),
    /// from now on, for runs in this process. Ephemeral and lossy by design: a watcher
    /// that falls behind is told how many pieces it missed, and the run never waits
    /// for it. What a turn finally said is its `model.turn` event and step.
    pub fn subscribe_deltas(&self, filter: EventFilter) -> DeltaStream {
        self.inner.deltas.subscribe(filter)
    }

    pub async fn get_request(&self, id: &RequestId) -> Result<Request, HarnessError> {
        Ok(self.inner.store.get_request(id).await?)
    }

    pub async fn list_requests(&self, f: RequestFilter) -> Result<Vec<Request>, HarnessError> {
        Ok(self.inner.store.list_requests(f).await?)
    }

    pub async fn list_sessions(&self, limit: usize) -> Result<Vec<Session>, HarnessError> {
        Ok(self.inner.store.list_sessions(limit).await?)
    }

    /// The limits tool calls hold now (`resource:NAME`, `tool:NAME`), by key.
    pub async fn holds(&self) -> Result<Vec<Hold>, HarnessError> {
        Ok(self.inner.store.holds().await?)
    }

    /// The request trees parked until a limit has room, oldest first.
    pub async fn waits(&self) -> Result<Vec<Wait>, HarnessError> {
        Ok(self.inner.store.waits().await?)
    }

    /// The capacity of limit `key` in this workspace's configuration, if it has one.
    pub fn limit_capacity(&self, key: &str) -> Option<u32> {
        let declared = self.inner.workspace.declared_limits();
        declared
            .into_iter()
            .find(|l| l.key == key)
            .map(|l| l.capacity)
    }

    pub async fn list_approvals(&self, f: ApprovalFilter) -> Result<Vec<Approval>, HarnessError> {
        Ok(self.inner.store.list_approvals(f).await?)
    }

    /// Resolves an approval; the worker then continues the run by itself. The message
    /// and edited arguments are stored redacted (checked against the schema first).
    pub async fn resolve_approval(&self, mut r: ResolveApproval) -> Result<Approval, HarnessError> {
        if let (Some(edited), harness_core::Decision::Approved) = (&r.edited_arguments, r.decision)
        {
            let a = self.inner.store.get_approval(&r.approval_id).await?;
            if let Some(tool) = self.tool(&a.tool) {
                tool.check_arguments(edited)
                    .map_err(|e| HarnessError::InvalidArguments {
                        tool: a.tool.clone(),
                        reason: e,
                    })?;
            }
        }
        redact::redact_resolution(self.redactor(), &mut r);
        let a = self.inner.store.resolve_approval(r, self.now()).await?;
        self.inner.wake.notify_one();
        if let Some(decided) = a.decided_at {
            let waited = decided.0.saturating_sub(a.created_at.0).max(0) as u64;
            let approved = a.status == ApprovalStatus::Approved;
            self.inner.metrics.observe_approval_wait(approved, waited);
        }
        Ok(a)
    }

    /// Adds an operator's note to a request or one of its approvals (a `note.added`
    /// event; it decides nothing). The text is redacted like every record, must not
    /// be empty, and is bounded.
    pub async fn add_note(&self, mut note: Note) -> Result<Event, HarnessError> {
        if note.text.trim().is_empty() {
            return Err(HarnessError::InvalidInput("a note needs some text".into()));
        }
        if note.text.len() > MAX_NOTE_BYTES {
            return Err(HarnessError::InputTooLarge {
                bytes: note.text.len(),
                limit: MAX_NOTE_BYTES,
            });
        }
        self.redactor().redact_string(&mut note.text);
        Ok(self.inner.store.add_note(note, self.now()).await?)
    }

    /// Cancels a request and everything delegated under it: each stops at its
    /// next step boundary, a running command tool is terminated (SIGTERM, then
    /// SIGKILL). A cancelled child becomes an error its parent's model sees; its
    /// parent goes on.
    pub async fn cancel(
        &self,
        id: &RequestId,
        by: &Actor,
        reason: Option<&str>,
    ) -> Result<Request, HarnessError> {
        let (req, settled) = self.inner.store.cancel(id, by, reason, self.now()).await?;
        for id in &settled {
            self.inner.runs.cancel(id);
        }
        // A tree paused on a cancelled child is runnable again.
        self.inner.wake.notify_one();
        Ok(req)
    }

    /// Prunes records of requests finished before `older_than` ago, in short
    /// transactions (safe beside a running worker). With `vacuum`, then compacts the
    /// store, which blocks every commit until it is done: refused while a worker holds
    /// the workspace.
    pub async fn maintenance(
        &self,
        older_than: std::time::Duration,
        dry_run: bool,
        vacuum: bool,
    ) -> Result<PruneReport, HarnessError> {
        let cutoff = self.now().minus(older_than);
        let store = &self.inner.store;
        if vacuum
            && !dry_run
            && let Some(w) = self.worker_holder().await?
        {
            return Err(HarnessError::Locked(format!(
                "--vacuum rewrites the whole store and blocks every commit until it is done, \
                 but worker {} (pid {}) is serving this workspace: stop it first, or prune \
                 without --vacuum (that is safe while it runs)",
                w.worker_id, w.pid
            )));
        }
        Ok(store.prune(cutoff, dry_run, vacuum).await?)
    }
}

/// Where `stores.yaml` says the records are. PostgreSQL's URL is read from the
/// variable it names (with `env`, or this process's environment); it is never
/// printed.
fn store_config(
    ws: &Workspace,
    env: Option<&SecretEnv>,
    create: bool,
) -> Result<harness_store::StoreConfig, HarnessError> {
    let local = ws.store_dir();
    match (&ws.stores.backend, &ws.stores.postgres) {
        (harness_config::StoreBackend::Postgres, Some(pg)) => {
            let url = match env {
                Some(f) => f(&pg.url_env),
                None => std::env::var(&pg.url_env).ok(),
            }
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| {
                HarnessError::InvalidInput(format!(
                    "{}: `backend: postgres` reads the database URL from the environment \
                     variable {}, which is not set: set it (postgres://USER:PASSWORD@HOST:PORT/DB), \
                     or set `backend: sqlite`",
                    harness_config::STORES_FILE,
                    pg.url_env
                ))
            })?;
            if create {
                // This host's local runtime files (running commands) still live here.
                std::fs::create_dir_all(&local).map_err(|e| {
                    HarnessError::Io(format!("cannot create {}: {e}", local.display()))
                })?;
            }
            Ok(harness_store::StoreConfig::Postgres(
                harness_store::PgConfig {
                    url,
                    pool_size: pg.pool_size,
                    schema: pg.schema.clone(),
                    lease: std::time::Duration::from_secs(pg.lease_secs),
                },
            ))
        }
        _ => Ok(harness_store::StoreConfig::Sqlite { dir: local }),
    }
}

/// A new request's trace id and kept `traceparent`: the `trace-id` of its W3C
/// `traceparent` and the header itself (version 00 form, naming the caller's span),
/// or a new random trace id and None when it has none. An invalid `traceparent` is
/// ignored (logged) and a new trace starts, as trace-context says a receiver does.
fn trace_of(traceparent: Option<&str>) -> (String, Option<String>) {
    use harness_providers::trace;
    match traceparent.map(trace::parse_traceparent) {
        Some(Ok(t)) => {
            let header = t.header();
            (t.trace_id, Some(header))
        }
        Some(Err(why)) => {
            tracing::warn!(
                traceparent = traceparent.unwrap_or_default(),
                "ignoring an invalid traceparent ({why}): the request starts a new trace"
            );
            (trace::new_trace_id(), None)
        }
        None => (trace::new_trace_id(), None),
    }
}

/// What [`Harness::resumable`] found.
#[derive(Clone, Debug)]
pub enum Resumable {
    /// A root `queued` or `running`: a worker continues it.
    Ready(Request),
    /// A root paused for approval: it resumes when one of `pending` (its session's
    /// pending approvals) is resolved.
    WaitingApproval {
        root: Request,
        pending: Vec<Approval>,
    },
}

/// What [`Harness::admit`] admits.
#[derive(Clone, Debug, Default)]
pub struct Admit {
    /// The session; a new one when `None`.
    pub session: Option<SessionId>,
    pub agent: String,
    pub input: String,
    /// A client's key for this admission (HTTP `Idempotency-Key`): retrying with it
    /// returns the request it admitted instead of queueing another.
    pub idempotency_key: Option<String>,
    /// Claim priority, `PRIORITY_MIN..=PRIORITY_MAX` (0 by default).
    pub priority: i64,
    /// A W3C `traceparent` (HTTP header of the same name): its trace id becomes the
    /// request's, and it is kept (`Request::traceparent`) so that the request's spans
    /// are children of the caller's span. None, or an invalid one (ignored, per
    /// trace-context): a new random trace id.
    pub traceparent: Option<String>,
}

/// The longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// An idempotency key is 1 to 255 printable ASCII characters.
fn check_idempotency_key(key: &str) -> Result<(), HarnessError> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(HarnessError::InvalidInput(format!(
            "the idempotency key is {} bytes; it must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES}",
            key.len()
        )));
    }
    if let Some(c) = key.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(HarnessError::InvalidInput(format!(
            "the idempotency key holds {c:?}; it must be printable ASCII"
        )));
    }
    Ok(())
}

/// What operators see of rate limit waits: a call expected to wait more than a second,
/// and one that did.
fn log_rate_limit_wait(e: &WaitEvent) {
    let request = e.request_id.as_ref().map(|r| r.as_str()).unwrap_or("-");
    match &e.change {
        WaitChange::Waiting {
            since,
            until,
            reason,
        } if until.millis() - since.millis() > 1000 => tracing::info!(
            key = %e.key,
            model = %e.model,
            request,
            %until,
            reason = reason.as_str(),
            "a model call waits for its rate limit ({reason}) until {until}"
        ),
        WaitChange::Done { waited, started } if *waited > std::time::Duration::from_secs(1) => {
            tracing::info!(
                key = %e.key,
                model = %e.model,
                request,
                waited_ms = waited.as_millis() as u64,
                started,
                "a model call waited {:.1}s for its rate limit",
                waited.as_secs_f64()
            )
        }
        _ => {}
    }
}

#[cfg(test)]
mod idempotency_key_tests {
    use super::check_idempotency_key;

    #[test]
    fn a_key_is_1_to_255_printable_ascii_characters() {
        assert!(check_idempotency_key("order-17 retry").is_ok());
        assert!(check_idempotency_key(&"k".repeat(255)).is_ok());
        let long = check_idempotency_key(&"k".repeat(256)).unwrap_err();
        assert!(long.to_string().contains("256 bytes"), "{long}");
        assert!(check_idempotency_key("").is_err());
        let ctl = check_idempotency_key("a\nb").unwrap_err();
        assert!(ctl.to_string().contains("printable ASCII"), "{ctl}");
        assert!(check_idempotency_key("clé").is_err());
    }
}

#[cfg(test)]
mod trace_tests {
    use super::trace_of;

    fn trace_id_of(traceparent: Option<&str>) -> String {
        trace_of(traceparent).0
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn is_trace_id(id: &str) -> bool {
        id.len() == 32
            && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && id.bytes().any(|b| b != b'0')
    }

    #[test]
    fn a_valid_traceparent_gives_its_trace_id_and_is_kept() {
        let header = format!("00-{TRACE}-00f067aa0ba902b7-01");
        assert_eq!(trace_of(Some(&header)), (TRACE.to_string(), Some(header)));
        // A later version is kept in the version 00 form it is read as.
        assert_eq!(
            trace_of(Some(&format!("cc-{TRACE}-00f067aa0ba902b7-00-more"))),
            (
                TRACE.to_string(),
                Some(format!("00-{TRACE}-00f067aa0ba902b7-00"))
            )
        );
    }

    #[test]
    fn none_or_an_invalid_one_starts_a_new_random_trace() {
        let invalid = [
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{TRACE}-0000000000000000-01"),
            format!("ff-{TRACE}-00f067aa0ba902b7-01"),
            format!("00-{}-00f067aa0ba902b7-01", &TRACE[1..]),
            format!("00-{TRACE}-00f067aa0ba902b7-1"),
            format!("00-{}-00f067aa0ba902b7-01", TRACE.to_uppercase()),
            "garbage".to_string(),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for value in invalid.iter().map(|v| Some(v.as_str())).chain([None, None]) {
            assert_eq!(trace_of(value).1, None, "{value:?} is not kept");
            let id = trace_id_of(value);
            assert!(is_trace_id(&id), "{id} for {value:?}");
            assert_ne!(id, TRACE, "{value:?}");
            seen.insert(id);
        }
        assert_eq!(seen.len(), invalid.len() + 2, "every new trace is random");
    }
}
