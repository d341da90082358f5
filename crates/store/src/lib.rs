//! The store: the only place SQL lives.
//!
//! [`Store`] is the one API the engine and every view use, in domain terms only:
//! admit, claim, commit a step, resolve, expire, cancel, recover and repair, events
//! after a cursor, wake-ups, artifacts as bytes, health facts, maintenance. Which
//! database runs behind it is chosen at open ([`StoreConfig`]) and visible nowhere
//! else: each method dispatches to the backend with one `match`.
//!
//! The SQLite backend ([`sqlite`]): one file in WAL mode, one writer thread with
//! group commit ([`writer`]), a small pool of read connections; the domain modules
//! (`requests`, `steps`, `approvals`, `tree`, `repair`, …) implement its operations.

mod approvals;
mod artifacts;
mod checkpoint;
mod error;
mod events;
mod health;
mod limits;
mod lookup;
mod maintenance;
mod notes;
mod pg;
mod query;
mod readers;
mod repair;
mod requests;
mod rows;
mod sidecar;
mod sqlite;
mod stats;
mod steps;
#[cfg(feature = "synthetic")]
pub mod synthetic;
pub mod testing;
mod transfer;
mod tree;
mod usage;
mod views;
mod wakeups;
mod worker_lock;
mod workers;
mod writer;

pub use artifacts::{MAX_ARTIFACT_BYTES, validate_artifact_name};
pub use error::StoreError;
pub use health::{INTEGRITY_EVERY, StoreCheck};
pub use limits::{Acquire, Park};
pub use lookup::IdKind;
pub use maintenance::PruneReport;
pub use pg::{GroupStats, PgConfig};
pub use repair::{Liveness, Problem, Recovery, Repaired, Stranded};
pub use requests::{Admission, Admitted, NewRequest};
pub use sidecar::SIDECAR_FILE;
pub use sqlite::DB_FILE;
pub use stats::{IntegrityCheck, StoreStats, StuckRequest};
pub use steps::{RequestPatch, RunStart, StepCommit, StepWrite};
pub use transfer::{CopyCheck, CopyReport, TableCheck};
pub use wakeups::Wakeups;
pub use worker_lock::{LockHolder, WorkerLock};
pub use workers::{WORKERS_LISTED, WORKERS_RECENT};

use harness_core::*;
use pg::PgStore;
use sqlite::SqliteStore;
use std::path::{Path, PathBuf};

/// How a committed write must survive failures (SQLite `synchronous` in WAL mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Survives a crash of the process (fsync at checkpoints, not at every commit).
    #[default]
    Normal,
    /// Also survives power loss and OS crashes (one fsync per group commit).
    Full,
}

#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    pub durability: Durability,
    /// Start a new, empty store if the one in the folder is missing, empty or damaged
    /// (a damaged file is moved aside, never deleted). Refused if the store is intact.
    pub new_store: bool,
}

/// Where the records are kept.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// A SQLite database in this folder (`harness.db`, its sidecar, artifact files).
    Sqlite { dir: PathBuf },
    /// A PostgreSQL database (one schema of it).
    Postgres(PgConfig),
}

/// A store that [`StoreOptions::new_store`] replaced with a new, empty one.
#[derive(Clone, Debug)]
pub struct Replaced {
    /// Where its database file was moved (none if there was no file).
    pub moved_to: Option<PathBuf>,
    /// Why it was replaced.
    pub problem: String,
}

/// What one read of the event feed found ([`Store::feed_events_after`]).
#[derive(Clone, Debug, Default)]
pub struct FeedRead {
    pub events: Vec<Event>,
    /// Later events are committed but not readable yet (PostgreSQL's watermark).
    pub held_back: bool,
}

/// A handle to the durable records. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Calls the same method on whichever backend runs.
macro_rules! on_backend {
    ($self:expr, $b:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($b) => $call,
            Backend::Postgres($b) => $call,
        }
    };
}

impl Store {
    /// Opens (creating if needed) the SQLite store in `dir` and applies pending
    /// migrations. See [`Store::open_config`].
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        Self::open_config(&StoreConfig::Sqlite { dir: dir.into() }, opts, true)
    }

    /// Opens the SQLite store in `dir`, which must already exist.
    pub fn open_existing(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        Self::open_config(&StoreConfig::Sqlite { dir: dir.into() }, opts, false)
    }

    /// Opens the store `config` names and applies pending migrations. With `create`
    /// false (views), a store that does not exist yet is an error
    /// ([`StoreError::NoStore`]): reading never creates one.
    ///
    /// SQLite: the database file is checked first (cheaply, see `sidecar`): a damaged
    /// file is refused ([`StoreError::Damaged`]), and so is a missing or empty one
    /// where the sidecar says a store existed ([`StoreError::Missing`]), unless
    /// [`StoreOptions::new_store`] asks to start over.
    pub fn open_config(
        config: &StoreConfig,
        opts: StoreOptions,
        create: bool,
    ) -> Result<Store, StoreError> {
        let backend = match config {
            StoreConfig::Sqlite { dir } if create => Backend::Sqlite(SqliteStore::open(dir, opts)?),
            StoreConfig::Sqlite { dir } => Backend::Sqlite(SqliteStore::open_existing(dir, opts)?),
            StoreConfig::Postgres(_) if opts.new_store => {
                return Err(StoreError::Io(
                    "--new-store replaces a damaged SQLite file; a PostgreSQL store is \
                     restored with the server's own tools"
                        .into(),
                ));
            }
            StoreConfig::Postgres(pg) => Backend::Postgres(PgStore::open(pg, create)?),
        };
        Ok(Store { backend })
    }

    /// What [`StoreOptions::new_store`] replaced, if it did.
    pub fn replaced(&self) -> Option<&Replaced> {
        match &self.backend {
            Backend::Sqlite(b) => b.replaced(),
            Backend::Postgres(_) => None,
        }
    }

    /// Where the records are, for messages: the store folder, or a database's host,
    /// name and schema (never its credentials).
    pub fn location(&self) -> String {
        on_backend!(self, b => b.location())
    }

    // --- wake-ups ---------------------------------------------------------------

    /// A handle that tells when something may have been committed: by this process
    /// at once, by another process as soon as this backend learns of it. Always a
    /// hint: readers re-read the records (events by cursor) when woken.
    pub async fn wakeups(&self) -> Wakeups {
        on_backend!(self, b => b.wakeups().await)
    }

    // --- workers --------------------------------------------------------------------

    /// Registers `worker` (since `since`) as holding the store. SQLite: exclusive,
    /// refused naming the holder while another live worker holds it. PostgreSQL:
    /// shared by any number of workers, each also holding its own liveness lock.
    /// Released when the returned lock is dropped, and when the process dies,
    /// however it dies.
    pub async fn lock_worker(
        &self,
        worker: &WorkerId,
        since: Timestamp,
    ) -> Result<WorkerLock, StoreError> {
        on_backend!(self, b => b.lock_worker(worker, since).await)
    }

    /// A live worker holding the store, if any (PostgreSQL: the latest started).
    pub async fn worker_holder(&self) -> Result<Option<LockHolder>, StoreError> {
        on_backend!(self, b => b.worker_holder().await)
    }

    // --- requests and the queue -------------------------------------------------

    /// Admits a request (status `queued`), or refuses it at once: queue full, session busy.
    pub async fn admit(
        &self,
        new: NewRequest,
        adm: Admission,
        now: Timestamp,
    ) -> Result<Request, StoreError> {
        on_backend!(self, b => b.admit(new, adm, now).await)
    }

    /// Admits a request that runs `original` again (same session, agent and input),
    /// linked to it by `retry_of`. Refused unless `original` is a finished root
    /// request, checked in the admitting transaction.
    pub async fn admit_retry(
        &self,
        original: &RequestId,
        id: RequestId,
        trace_id: String,
        adm: Admission,
        now: Timestamp,
    ) -> Result<Request, StoreError> {
        on_backend!(self, b => b.admit_retry(original, id, trace_id, adm, now).await)
    }

    /// Admits a request under a client's idempotency key (unique per session): the
    /// request the key admitted before when it asked for the same agent and input
    /// (`existing`, nothing written), [`StoreError::IdempotencyKeyReused`] when it
    /// asked for something else, else a new request as [`Store::admit`]. The lookup
    /// and the insert are one transaction, so concurrent admissions under one key
    /// admit one request. `key: None` is [`Store::admit`].
    pub async fn admit_keyed(
        &self,
        new: NewRequest,
        key: Option<String>,
        adm: Admission,
        now: Timestamp,
    ) -> Result<Admitted, StoreError> {
        on_backend!(self, b => b.admit_keyed(new, key, adm, now).await)
    }

    /// Claims up to `limit` runnable root requests, FIFO, at most one per session,
    /// marking them `running` for `worker`.
    pub async fn claim(
        &self,
        worker: &WorkerId,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<Request>, StoreError> {
        on_backend!(self, b => b.claim(worker, limit, now).await)
    }

    /// Puts this worker's own running requests back on the queue (graceful stop),
    /// each with a `request.requeued` event saying why.
    pub async fn release(
        &self,
        ids: Vec<RequestId>,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        on_backend!(self, b => b.release(ids, reason, now).await)
    }

    /// Cancels a request that has not finished, with everything delegated under
    /// it. A cancelled child becomes an error its parent's model sees: if the tree
    /// above was paused on it, the tree is runnable again. Returns the request and
    /// every request the cancel settled (to stop their runs).
    pub async fn cancel(
        &self,
        id: &RequestId,
        by: &Actor,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<(Request, Vec<RequestId>), StoreError> {
        on_backend!(self, b => b.cancel(id, by, reason, now).await)
    }

    pub async fn get_request(&self, id: &RequestId) -> Result<Request, StoreError> {
        on_backend!(self, b => b.get_request(id).await)
    }

    /// The requests of `ids` that exist, in no particular order: one read for
    /// all of them (the worker looks at every run it holds this way).
    pub async fn get_requests(&self, ids: &[RequestId]) -> Result<Vec<Request>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        on_backend!(self, b => b.get_requests(ids).await)
    }

    pub async fn list_requests(&self, filter: RequestFilter) -> Result<Vec<Request>, StoreError> {
        on_backend!(self, b => b.list_requests(filter).await)
    }

    pub async fn list_sessions(&self, limit: usize) -> Result<Vec<Session>, StoreError> {
        on_backend!(self, b => b.list_sessions(limit).await)
    }

    pub async fn get_session(&self, id: &SessionId) -> Result<Session, StoreError> {
        on_backend!(self, b => b.get_session(id).await)
    }

    // --- the journal ------------------------------------------------------------

    /// Commits one step; returns the sequence numbers of its events.
    pub async fn commit_step(&self, commit: StepCommit) -> Result<Vec<i64>, StoreError> {
        on_backend!(self, b => b.commit_step(commit).await)
    }

    /// Parks a tree whose call found its limits full: the request and its
    /// ancestors go back on the queue (holding no worker slot), with a wait per
    /// full key and a `request.waiting` event; the claim takes the tree again once
    /// every key has room. Returns false, writing nothing, if they have room now
    /// (the caller commits its call again).
    pub async fn park(&self, p: Park) -> Result<bool, StoreError> {
        on_backend!(self, b => b.park(p).await)
    }

    /// The limits held now (by calls of running trees), by key then age.
    pub async fn holds(&self) -> Result<Vec<Hold>, StoreError> {
        on_backend!(self, b => b.holds().await)
    }

    /// What the parked trees wait for, oldest first.
    pub async fn waits(&self) -> Result<Vec<Wait>, StoreError> {
        on_backend!(self, b => b.waits().await)
    }

    /// The request's journal, in order.
    pub async fn steps(&self, request: &RequestId) -> Result<Vec<Step>, StoreError> {
        on_backend!(self, b => b.steps(request).await)
    }

    /// What a run reads when it starts, in one read: `request`'s steps and
    /// approvals (as [`Store::steps`] and [`Store::list_approvals`] by request give
    /// them) and, when `history` > 0, the inputs and answers of `session`'s
    /// completed root requests admitted before it, the last `history`, oldest first.
    pub async fn run_start(
        &self,
        request: &RequestId,
        session: &SessionId,
        history: usize,
    ) -> Result<RunStart, StoreError> {
        on_backend!(self, b => b.run_start(request, session, history).await)
    }

    /// Ids of `kind` starting with `prefix`, in order, at most `limit` (a prefix
    /// holding anything an id cannot hold matches nothing: NotFound).
    pub async fn ids_with_prefix(
        &self,
        kind: IdKind,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        on_backend!(self, b => b.ids_with_prefix(kind, prefix, limit).await)
    }

    /// Records an operator's note on a request (or one of its approvals, which must
    /// be the request's own) as a `note.added` event; returns it.
    pub async fn add_note(&self, note: Note, now: Timestamp) -> Result<Event, StoreError> {
        on_backend!(self, b => b.add_note(note, now).await)
    }

    // --- approvals --------------------------------------------------------------

    /// Resolves a pending approval and makes its request runnable again, atomically.
    /// Refused (nothing changed) if the approval is not pending, expired, or does not
    /// belong to the given request and session.
    pub async fn resolve_approval(
        &self,
        r: ResolveApproval,
        now: Timestamp,
    ) -> Result<Approval, StoreError> {
        on_backend!(self, b => b.resolve_approval(r, now).await)
    }

    /// Marks pending approvals past their expiry as expired. With `fail_request`, their
    /// requests fail; otherwise they become runnable and the model sees the expiry.
    pub async fn expire_approvals(
        &self,
        now: Timestamp,
        fail_request: bool,
    ) -> Result<Vec<Approval>, StoreError> {
        on_backend!(self, b => b.expire_approvals(now, fail_request).await)
    }

    pub async fn get_approval(&self, id: &ApprovalId) -> Result<Approval, StoreError> {
        on_backend!(self, b => b.get_approval(id).await)
    }

    pub async fn list_approvals(&self, f: ApprovalFilter) -> Result<Vec<Approval>, StoreError> {
        on_backend!(self, b => b.list_approvals(f).await)
    }

    /// Marks a delegated child request `running` again when its root resumes it
    /// (with a `request.started` event naming the root's worker).
    pub async fn resume_child(&self, id: &RequestId, now: Timestamp) -> Result<(), StoreError> {
        on_backend!(self, b => b.resume_child(id, now).await)
    }

    // --- recovery and the safety net --------------------------------------------

    /// Puts every request left `running` by a dead worker back on the queue (its
    /// `attempt` goes up by one), or fails it once it has been started
    /// `max_attempts` times. Called by a worker holding [`Store::lock_worker`].
    /// SQLite: every `running` root (the lock is exclusive). PostgreSQL: only roots
    /// whose worker is dead (liveness lock free) or whose lease lapsed. A root
    /// taken from another worker gets `request.reclaimed` (from it, by `by`).
    pub async fn recover(
        &self,
        by: &WorkerId,
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Recovery, StoreError> {
        on_backend!(self, b => b.recover(by, now, max_attempts).await)
    }

    /// For a running worker `by`: takes back, as [`Store::recover`] does, what other
    /// workers left running and can no longer finish — their process is gone, or
    /// their lease lapsed (their commits are then refused). A bounded batch per call
    /// ([`Recovery::requeued`] plus [`Recovery::failed`] at its limit means call
    /// again). SQLite: nothing (the workspace lock admits one worker, and its own
    /// runs are watched by [`Store::repair`]).
    pub async fn take_over(
        &self,
        by: &WorkerId,
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Recovery, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Recovery::default()),
            Backend::Postgres(b) => b.take_over(by, now, max_attempts).await,
        }
    }

    /// Whether [`Store::take_over`] can find anything: more than one worker can
    /// share this store.
    pub fn shared_by_workers(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Requests that cannot progress as they stand. `quiet_since`: only requests
    /// with no activity since then count for the problems that a commit in flight
    /// could still resolve (a grace period).
    pub async fn stranded(
        &self,
        live: Liveness,
        quiet_since: Timestamp,
    ) -> Result<Vec<Stranded>, StoreError> {
        on_backend!(self, b => b.stranded(live, quiet_since).await)
    }

    /// Finds stranded requests and moves each so it can progress (see
    /// [`Stranded`]); each move commits with a `request.repaired` event.
    pub async fn repair(
        &self,
        live: Liveness,
        quiet_since: Timestamp,
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Vec<Repaired>, StoreError> {
        on_backend!(self, b => b.repair(live, quiet_since, now, max_attempts).await)
    }

    /// Fails every active request of `id`'s tree (from its root), e.g. after its
    /// run panicked; returns the requests it moved.
    pub async fn fail_tree(
        &self,
        id: &RequestId,
        error: &str,
        now: Timestamp,
    ) -> Result<Vec<RequestId>, StoreError> {
        on_backend!(self, b => b.fail_tree(id, error, now).await)
    }

    // --- events -----------------------------------------------------------------

    /// Events with `seq > after`, in seq order, at most `limit` (0: no limit).
    ///
    /// The cursor contract, on every backend: a reader that passes the seq of the
    /// last event it saw misses nothing and sees nothing twice. Seqs increase but
    /// need not be consecutive.
    pub async fn events_after(
        &self,
        after: i64,
        filter: EventFilter,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        on_backend!(self, b => b.events_after(after, filter, limit).await)
    }

    /// Every event with `seq > after` (at most `limit`, 0: no limit), read for a
    /// process's shared event feed, which hands each batch to many subscribers:
    /// on SQLite on a connection of its own, so the read never waits its turn
    /// behind other reads (a burst of run loads). The same cursor contract as
    /// [`Store::events_after`]. On PostgreSQL the read also says whether events
    /// after `after` are committed but held back by the cursor's watermark (an
    /// older transaction still open): a reader then looks again soon, as no
    /// wake-up will tell it when that transaction ends.
    pub async fn feed_events_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<FeedRead, StoreError> {
        match &self.backend {
            Backend::Sqlite(b) => Ok(FeedRead {
                events: b.feed_events_after(after, limit).await?,
                held_back: false,
            }),
            Backend::Postgres(b) => b.feed_events_after(after, limit).await,
        }
    }

    /// What the group commit did since this handle opened (PostgreSQL; SQLite's
    /// writer groups commits too, and counts nothing here: `None`).
    pub fn group_commits(&self) -> Option<GroupStats> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(b) => Some(b.group_stats()),
        }
    }

    /// The cursor of the newest event a reader can see now (0 when none): events
    /// after it are the ones still to come.
    pub async fn last_seq(&self) -> Result<i64, StoreError> {
        on_backend!(self, b => b.last_seq().await)
    }

    /// `id` and every request delegated under it at any depth (parents before
    /// children): the members of the tree an [`EventFilter::tree`] follows, now.
    pub async fn subtree_ids(&self, id: &RequestId) -> Result<Vec<RequestId>, StoreError> {
        on_backend!(self, b => b.subtree_ids(id).await)
    }

    /// The last `limit` events of any of `requests`, oldest first.
    pub async fn recent_events(
        &self,
        requests: Vec<RequestId>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        on_backend!(self, b => b.recent_events(requests, limit).await)
    }

    // --- artifacts --------------------------------------------------------------

    /// Stores a new version of artifact `name` of `request` and returns its row, to
    /// be committed with the step that produced it ([`StepCommit::artifacts`]). Never
    /// replaces stored contents: the first write of a name is version 1, each later
    /// one the next version. (A version whose step never committed, after a crash,
    /// leaves its number unused.)
    pub async fn put_artifact(
        &self,
        request: &RequestId,
        session: &SessionId,
        name: &str,
        media_type: &str,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<Artifact, StoreError> {
        on_backend!(self, b => b.put_artifact(request, session, name, media_type, bytes, now).await)
    }

    /// The stored contents of an artifact version; `None` if they are gone.
    pub async fn read_artifact(&self, a: &Artifact) -> Result<Option<Vec<u8>>, StoreError> {
        on_backend!(self, b => b.read_artifact(a).await)
    }

    /// One artifact version by id (`NotFound` when there is none).
    pub async fn get_artifact(&self, id: &ArtifactId) -> Result<Artifact, StoreError> {
        on_backend!(self, b => b.get_artifact(id).await)
    }

    /// Every version of every artifact of `request`, by name then version.
    pub async fn artifacts(&self, request: &RequestId) -> Result<Vec<Artifact>, StoreError> {
        on_backend!(self, b => b.artifacts(request).await)
    }

    // --- workers ----------------------------------------------------------------

    pub async fn register_worker(&self, w: Worker, recovered: usize) -> Result<(), StoreError> {
        on_backend!(self, b => b.register_worker(w, recovered).await)
    }

    /// Marks the worker alive and renews the leases of the roots this process
    /// runs (PostgreSQL). Returns the roots whose lease this process no longer
    /// holds: their runs must stop (nothing they commit is accepted).
    pub async fn heartbeat(
        &self,
        id: &WorkerId,
        now: Timestamp,
    ) -> Result<Vec<RequestId>, StoreError> {
        on_backend!(self, b => b.heartbeat(id, now).await)
    }

    pub async fn worker_stopped(&self, id: &WorkerId, now: Timestamp) -> Result<(), StoreError> {
        on_backend!(self, b => b.worker_stopped(id, now).await)
    }

    /// The most recently started workers, newest first.
    pub async fn workers(&self, limit: usize) -> Result<Vec<Worker>, StoreError> {
        on_backend!(self, b => b.workers(limit).await)
    }

    /// The workers an operator needs to see at `now`, newest first, at most
    /// [`WORKERS_LISTED`]: every live one, those stopped or dead within
    /// [`WORKERS_RECENT`], and any dead one still holding running requests. Each
    /// with its state (alive by its lock, not by its heartbeat) and the root
    /// requests it runs now (SQLite: the one live worker runs them all).
    pub async fn list_workers(&self, now: Timestamp) -> Result<Vec<WorkerSummary>, StoreError> {
        on_backend!(self, b => b.list_workers(now).await)
    }

    /// How long a claim's lease lasts where several workers share the store
    /// (PostgreSQL, `postgres.lease_secs`): a worker silent for longer has lost
    /// its running requests to the others. `None` on SQLite: one worker, no leases.
    pub fn worker_lease(&self) -> Option<std::time::Duration> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(b) => Some(b.lease()),
        }
    }

    // --- health -----------------------------------------------------------------

    /// Counts by status and approval expiry relative to `now` and `horizon`.
    pub async fn stats(
        &self,
        now: Timestamp,
        horizon: Timestamp,
    ) -> Result<StoreStats, StoreError> {
        on_backend!(self, b => b.stats(now, horizon).await)
    }

    /// Running requests whose last activity is older than `before`.
    pub async fn stuck_requests(&self, before: Timestamp) -> Result<Vec<StuckRequest>, StoreError> {
        on_backend!(self, b => b.stuck_requests(before).await)
    }

    /// The store's own health check: reachable, intact, how large. `deep`: run the
    /// full integrity check now, whatever it costs.
    pub async fn health_check(&self, now: Timestamp, deep: bool) -> Result<StoreCheck, StoreError> {
        on_backend!(self, b => b.health_check(now, deep).await)
    }

    /// Runs the full integrity check now and records its result (for views to
    /// reuse: see [`Store::last_integrity`]). Reads the whole store.
    pub async fn check_integrity(&self, now: Timestamp) -> Result<IntegrityCheck, StoreError> {
        on_backend!(self, b => b.check_integrity(now).await)
    }

    /// Runs the full integrity check now (recording it) and turns a failed one into
    /// [`StoreError::Damaged`], naming what is damaged.
    pub async fn verify(&self, now: Timestamp) -> Result<(), StoreError> {
        on_backend!(self, b => b.verify(now).await)
    }

    /// The last recorded integrity check, if any.
    pub async fn last_integrity(&self) -> Result<Option<IntegrityCheck>, StoreError> {
        on_backend!(self, b => b.last_integrity().await)
    }

    /// The full integrity check: `Ok(())` or the problems it found, not recorded.
    pub async fn integrity_check(&self) -> Result<Result<(), String>, StoreError> {
        on_backend!(self, b => b.integrity_check().await)
    }

    // --- maintenance ------------------------------------------------------------

    /// Deletes every record of root requests that finished before `cutoff` (with their
    /// delegated children and their artifacts), and sessions left empty, in short
    /// transactions (safe beside a running worker). With `vacuum`, then compacts the
    /// store, which may block commits while it runs. With `dry_run`, only counts.
    pub async fn prune(
        &self,
        cutoff: Timestamp,
        dry_run: bool,
        vacuum: bool,
    ) -> Result<PruneReport, StoreError> {
        on_backend!(self, b => b.prune(cutoff, dry_run, vacuum).await)
    }
}
