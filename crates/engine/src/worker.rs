//! The worker: recovery on start, then one dispatcher loop that claims runnable
//! requests into free slots, beside its timers (heartbeat and approval expiry,
//! the safety net, taking over other workers' runs).
//!
//! Every trigger of a claim arrives in the dispatcher's one `select!` — a wake from
//! this process (new request, resolved approval, freed slot, a timer that moved
//! work), a tick that notices other processes' commits (the store's wake-ups), or
//! stop — so all claiming is in one place. The timers run in tasks of their own:
//! none waits on another or on a claim (a heartbeat held up behind a repair
//! waiting on a row lock would let this worker's leases lapse).

use crate::run::{Outcome, run_root};
use crate::{Harness, HarnessError};
use harness_core::*;

use std::time::Duration;
use tokio::task::JoinSet;

#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// How often to look for other processes' commits (new requests, approvals).
    pub poll: Duration,
    pub heartbeat: Duration,
    /// How often the safety net looks for requests that cannot progress.
    pub repair: Duration,
    /// How often to look for other workers' runs to take over (their process is
    /// gone, or their lease lapsed). Only where workers share a store (PostgreSQL).
    pub take_over: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(100),
            heartbeat: Duration::from_secs(2),
            repair: Duration::from_secs(5),
            take_over: Duration::from_millis(500),
        }
    }
}

/// A waiting or orphaned request counts as stranded only after this long
/// without activity (a backstop; trees change state in single commits).
pub(crate) const REPAIR_QUIET: Duration = Duration::from_secs(2);
/// After a hard stop, how long to wait for runs to record how they ended.
const ABORT_WAIT: Duration = Duration::from_secs(10);
/// Longest pause of claiming after store failures.
const MAX_CLAIM_BACKOFF: Duration = Duration::from_secs(30);
/// Longest a freed slot waits for others before a claim fills them together.
const CLAIM_GATHER: Duration = Duration::from_millis(2);

/// When the dispatcher claims. A claim reads every session with queued work, so
/// under a deep queue (most slots busy, runs ending one by one) a claim per ended
/// run made claiming the worker's largest cost (`http-load`: 16 % of the process's
/// CPU). While the last claim filled every slot it asked for (more is queued) and
/// fewer than a quarter of the slots are free, a claim waits up to [`CLAIM_GATHER`]
/// for more to free; otherwise it goes at once (an idle or lightly loaded worker,
/// and any worker of 4 slots or fewer, never waits).
#[derive(Debug, Default)]
struct Gather {
    /// The last claim filled every slot it asked for.
    deep: bool,
    /// Waiting for more slots to free, until then.
    until: Option<tokio::time::Instant>,
}

impl Gather {
    /// Whether to claim now for `free` of `slots` free slots.
    fn due(&mut self, now: tokio::time::Instant, free: usize, slots: usize) -> bool {
        if !(self.deep && free < slots / 4) {
            self.until = None;
            return true;
        }
        match self.until {
            None => {
                self.until = Some(now + CLAIM_GATHER);
                false
            }
            Some(t) if now < t => false,
            Some(_) => {
                self.until = None;
                true
            }
        }
    }

    /// A claim asked for `asked` and got `got`.
    fn claimed(&mut self, asked: usize, got: usize) {
        self.deep = got == asked;
    }

    /// When a waiting claim is due (never while none waits).
    async fn wait(&self) {
        match self.until {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    }
}

/// A running worker. `stop` finishes the steps in flight and leaves the rest resumable.
pub struct WorkerHandle {
    harness: Harness,
    pub id: WorkerId,
    /// Requests re-queued by recovery when this worker started.
    pub recovered: Vec<RequestId>,
    /// Requests recovery failed instead: started `runtime.max_attempts` times.
    pub gave_up: Vec<RequestId>,
}

/// What a running worker owns; kept in the harness so `Harness::stop` can end it.
pub(crate) struct WorkerParts {
    id: WorkerId,
    task: tokio::task::JoinHandle<()>,
    /// The integrity check and the timers, ended once the dispatcher has.
    beside: Vec<tokio::task::JoinHandle<()>>,
    _lock: harness_store::WorkerLock,
}

impl Harness {
    /// Takes the workspace (refused, naming the holder, if another worker has it),
    /// recovers what a previous worker left, and starts executing.
    pub async fn start_worker(&self, opts: WorkerOptions) -> Result<WorkerHandle, HarnessError> {
        if self.inner.worker.lock().expect("worker").is_some() {
            return Err(HarnessError::Locked(
                "a worker is already running in this process".to_string(),
            ));
        }
        let id = WorkerId::generate();
        let now = self.now();
        let lock = match self.inner.store.lock_worker(&id, now).await {
            Err(harness_store::StoreError::Locked(why)) => return Err(HarnessError::Locked(why)),
            other => other?,
        };
        let _ = self.inner.stopping.send_replace(false);
        *self.inner.abort.lock().expect("abort") = tokio_util::sync::CancellationToken::new();
        // Before anything is re-run: kill the commands a dead worker left running.
        let runs = harness_providers::tools::running_dir(&self.inner.workspace.store_dir());
        for reaped in harness_providers::tools::reap_leftovers(&runs).await {
            tracing::warn!("{reaped}");
        }
        let max_attempts = self.inner.workspace.settings.runtime.max_attempts;
        let recovery = self.inner.store.recover(&id, now, max_attempts).await?;
        note_recovery(
            self,
            &recovery,
            max_attempts,
            "left running by a previous worker",
        );
        let recovered = recovery.requeued;
        let worker = Worker {
            id: id.clone(),
            pid: std::process::id(),
            host: hostname(),
            started_at: now,
            heartbeat_at: now,
            stopped_at: None,
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        self.inner
            .store
            .register_worker(worker, recovered.len())
            .await?;
        // MCP servers list their tools before the first claim (each within its
        // `startup_timeout`; one that fails is a health check, not an error).
        self.inner.mcp.start().await;
        let mut beside = vec![
            tokio::spawn(integrity_loop(self.clone())),
            supervised(
                self,
                "heartbeat",
                heartbeat_loop(self.clone(), id.clone(), opts.heartbeat),
            ),
            supervised(
                self,
                "safety net",
                repair_loop(self.clone(), id.clone(), opts.repair),
            ),
        ];
        if self.inner.store.shared_by_workers() {
            let take = take_over_loop(self.clone(), id.clone(), opts.take_over);
            beside.push(supervised(self, "take-over", take));
        }
        let task = supervised(self, "dispatcher", dispatch(self.clone(), id.clone(), opts));
        let parts = WorkerParts {
            id: id.clone(),
            task,
            beside,
            _lock: lock,
        };
        *self.inner.worker.lock().expect("worker") = Some(parts);
        Ok(WorkerHandle {
            harness: self.clone(),
            id,
            recovered,
            gave_up: recovery.failed,
        })
    }

    /// Graceful stop of this process's worker, if one runs: no new claims, no new
    /// calls; each run finishes the step in flight, then its request goes back to
    /// `queued` for the next worker; the workspace lock is released. Past
    /// `runtime.stop_timeout` the runs still going are cancelled (see [`Harness::abort`]).
    pub async fn stop(&self) -> Result<(), HarnessError> {
        let timeout = self.inner.workspace.settings.runtime.stop_timeout;
        self.stop_within(timeout).await
    }

    /// [`Harness::stop`] with its own deadline.
    pub async fn stop_within(&self, deadline: Duration) -> Result<(), HarnessError> {
        let Some(mut parts) = self.inner.worker.lock().expect("worker").take() else {
            return Ok(());
        };
        let _ = self.inner.stopping.send_replace(true);
        self.inner.wake.notify_one();
        if tokio::time::timeout(deadline, &mut parts.task)
            .await
            .is_err()
        {
            tracing::warn!(
                "stop deadline ({}) passed: cancelling the runs still in flight",
                harness_core::relative(deadline)
            );
            self.abort();
            if tokio::time::timeout(ABORT_WAIT, &mut parts.task)
                .await
                .is_err()
            {
                // Dropping the runs kills their command tools (process groups).
                parts.task.abort();
                let _ = (&mut parts.task).await;
            }
        }
        for t in &parts.beside {
            t.abort();
        }
        self.inner.mcp.shutdown().await;
        self.inner
            .store
            .worker_stopped(&parts.id, self.now())
            .await?;
        Ok(())
    }

    /// Stops hard: every run in flight is cancelled now (a running command tool
    /// gets SIGTERM, then SIGKILL), its call recorded `interrupted`, and its
    /// request put back on the queue. Used by a second Ctrl-C or SIGTERM, and
    /// when a graceful stop passes its deadline.
    pub fn abort(&self) {
        let _ = self.inner.stopping.send_replace(true);
        self.inner.abort.lock().expect("abort").cancel();
        self.inner.wake.notify_one();
    }

    /// Who holds this workspace's worker lock, if anyone.
    pub async fn worker_holder(&self) -> Result<Option<crate::LockHolder>, HarnessError> {
        Ok(self.inner.store.worker_holder().await?)
    }
}

impl WorkerHandle {
    /// Graceful stop (see [`Harness::stop`]).
    pub async fn stop(self) -> Result<(), HarnessError> {
        self.harness.stop().await
    }
}

/// Runs one of the worker's tasks; a panic in it (a bug) must not leave a worker
/// that holds the workspace and does nothing, or runs without renewing its leases:
/// it stops the worker as a fault, and `serve` exits.
fn supervised(
    h: &Harness,
    what: &'static str,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let h = h.clone();
    tokio::spawn(async move {
        // Aborting this task (a stop past its deadlines) aborts the one it watches.
        let mut watched = AbortOnDrop(tokio::spawn(task));
        if let Err(e) = (&mut watched.0).await
            && e.is_panic()
        {
            h.fault(format!(
                "the worker's {what} crashed ({}): the worker stopped; start it again",
                panic_text(e)
            ));
        }
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Pauses claiming after a store failure: doubling per fault (failures that come
/// while claims are already paused belong to the same fault), up to a limit.
fn back_off(backoff: &mut Duration, resume_claims: &mut tokio::time::Instant) {
    let now = tokio::time::Instant::now();
    if now < *resume_claims {
        return;
    }
    *backoff = (*backoff * 2).clamp(Duration::from_millis(200), MAX_CLAIM_BACKOFF);
    *resume_claims = now + *backoff;
}

async fn dispatch(h: Harness, worker: WorkerId, opts: WorkerOptions) {
    let inner = &h.inner;
    let limits = &inner.workspace.settings.runtime;
    let slots = limits.max_concurrent_requests.max(1);
    let mut runs: JoinSet<(RequestId, Outcome)> = JoinSet::new();
    let mut stopping = inner.stopping.subscribe();
    let mut poll = tokio::time::interval(opts.poll);
    let mut commits = inner.store.wakeups().await;
    let mut look = true;
    // Store failures pause claiming (doubling up to a limit), so a full disk or
    // a held lock is not met by a storm of failing runs.
    let mut backoff = Duration::ZERO;
    let mut resume_claims = tokio::time::Instant::now();
    let mut gather = Gather::default();
    loop {
        if *stopping.borrow() {
            break;
        }
        let now = tokio::time::Instant::now();
        let free = slots.saturating_sub(runs.len());
        if look && free > 0 && now >= resume_claims && gather.due(now, free, slots) {
            look = false;
            let _claiming = inner.claiming.lock().await;
            match inner.store.claim(&worker, free, h.now()).await {
                Ok(claimed) => {
                    inner.metrics.count_claim(claimed.len());
                    gather.claimed(free, claimed.len());
                    if !claimed.is_empty() {
                        inner.drain.record(claimed.len(), std::time::Instant::now());
                    }
                    // Claimed a full batch: there may be more runnable work behind it.
                    look = !claimed.is_empty() && runs.len() + claimed.len() < slots;
                    for req in claimed {
                        spawn_run(&h, &mut runs, req);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "claiming requests failed");
                    back_off(&mut backoff, &mut resume_claims);
                }
            }
        }
        tokio::select! {
            _ = inner.wake.notified() => look = true,
            Some(done) = runs.join_next(), if !runs.is_empty() => {
                // Every run that has ended by now, so that one claim fills all
                // the slots they freed (not a claim transaction per ended run): a
                // claim reads every session with queued work (~1 ms at 200
                // sessions), and one per ended run bounded the execution rate
                // (measured: `http-load` and `postgres`, bench README).
                let mut failed = finished(&h, done);
                while let Some(done) = runs.try_join_next() {
                    failed |= finished(&h, done);
                }
                if failed {
                    back_off(&mut backoff, &mut resume_claims);
                } else {
                    backoff = Duration::ZERO;
                }
                look = true;
            }
            _ = poll.tick() => {
                if commits.check().await {
                    look = true;
                    notice_cancels(&h, &worker).await;
                }
            }
            // Another process admitted, resolved an approval, cancelled or finished a
            // request (PostgreSQL notifies it): claim now, not at the next tick.
            // (Cancels by other processes are still noticed on the tick: reading
            // every run here, at each of their commits, would cost a read per wake.)
            _ = commits.work_freed() => look = true,
            _ = gather.wait() => {}
            _ = stopping.changed() => {}
        }
    }
    // Graceful stop: runs see `stopping`, finish their step and park their request.
    while let Some(done) = runs.join_next().await {
        finished(&h, done);
    }
}

/// Renews this worker's leases (stopping the runs whose lease it lost) and expires
/// overdue approvals. It keeps going through a graceful stop, while runs finish.
async fn heartbeat_loop(h: Harness, worker: WorkerId, every: Duration) {
    let inner = &h.inner;
    let fail =
        inner.workspace.settings.runtime.approval_expiry == harness_config::ExpiryOutcome::Fail;
    let mut beat = tokio::time::interval(every);
    loop {
        beat.tick().await;
        let now = h.now();
        let live = inner.runs.live();
        match inner.store.heartbeat(&worker, now).await {
            Ok(lost) => {
                for id in &lost {
                    // Another worker claimed it after the lease expired (or another
                    // process settled it): this run must stop, and its running
                    // command with it (its commits are refused).
                    if inner.runs.cancel_seen(&live, id) {
                        tracing::warn!(
                            request_id = %id,
                            "this worker no longer holds the request's lease: its run stops here"
                        );
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
        match inner.store.expire_approvals(now, fail).await {
            Ok(expired) if !expired.is_empty() => {
                for a in &expired {
                    // A tree failed by the expiry may be running here.
                    if fail {
                        inner.runs.cancel(&a.request_id);
                    }
                }
                inner.wake.notify_one();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "expiring approvals failed"),
        }
    }
}

/// Runs the safety net every `every` (not while stopping: the runs finishing
/// then are this worker's own).
async fn repair_loop(h: Harness, worker: WorkerId, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        if !*h.inner.stopping.borrow() && repair_stranded(&h, &worker).await {
            h.inner.wake.notify_one();
        }
    }
}

/// Takes over other workers' runs that cannot finish (their process is gone, or
/// their lease lapsed) every `every`, a batch at a time until none is left, and
/// wakes the dispatcher to claim them — within about `every` of a worker's death
/// or its lease's expiry, rather than at the safety net's slower pace.
async fn take_over_loop(h: Harness, worker: WorkerId, every: Duration) {
    let max_attempts = h.inner.workspace.settings.runtime.max_attempts;
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        while !*h.inner.stopping.borrow() {
            match h
                .inner
                .store
                .take_over(&worker, h.now(), max_attempts)
                .await
            {
                Ok(r) if r.requeued.is_empty() && r.failed.is_empty() => break,
                Ok(r) => {
                    note_recovery(&h, &r, max_attempts, "taken over from another worker");
                    h.inner.wake.notify_one();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "taking over other workers' requests failed");
                    break;
                }
            }
        }
    }
}

/// Counts and logs what recovery (at start, or a take-over) moved.
fn note_recovery(h: &Harness, r: &harness_store::Recovery, max_attempts: u32, from: &'static str) {
    h.inner.metrics.count_recovered(r.requeued.len());
    if !r.requeued.is_empty() {
        tracing::warn!(count = r.requeued.len(), from, "recovered requests");
    }
    for id in &r.failed {
        tracing::error!(request_id = %id, max_attempts, "request failed: its worker died on every attempt");
    }
}

/// The safety net: moves any request that cannot progress, with a visible event.
async fn repair_stranded(h: &Harness, worker: &WorkerId) -> bool {
    let _claiming = h.inner.claiming.lock().await;
    let now = h.now();
    let live = harness_store::Liveness {
        owner: Some(worker.clone()),
        running: Some(h.inner.runs.ids().into_iter().collect()),
    };
    let max_attempts = h.inner.workspace.settings.runtime.max_attempts;
    match h
        .inner
        .store
        .repair(live, now.minus(REPAIR_QUIET), now, max_attempts)
        .await
    {
        Ok(repaired) => {
            for r in &repaired {
                tracing::warn!(
                    request = %r.id, problem = %r.problem.describe(), action = %r.action,
                    "repaired a request that could not progress"
                );
            }
            !repaired.is_empty()
        }
        Err(e) => {
            tracing::warn!(error = %e, "looking for stranded requests failed");
            false
        }
    }
}

/// The full integrity check reads the whole store, so views do not run it on large
/// stores: the worker does, periodically, and records the result for them.
/// A worker that finds its store damaged stops: what it would commit next could
/// not be trusted. (`serve` checks the whole file before it starts; this repeats it.)
async fn integrity_loop(h: Harness) {
    let every = harness_store::INTEGRITY_EVERY;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        ticks.tick().await;
        match h.inner.store.check_integrity(h.now()).await {
            Ok(c) if !c.ok => {
                let path = h.inner.store.location();
                h.fault(format!(
                    "the store {path} failed its integrity check ({}): the worker stopped; \
                     restore it from a backup, or start over with `agent-harness serve --new-store`",
                    c.detail
                ));
            }
            Ok(_) => {}
            Err(e) if e.is_corrupt() => h.fault(format!("the store is damaged: {e}")),
            Err(e) => tracing::warn!(error = %e, "integrity check could not run"),
        }
    }
}

impl Harness {
    /// Stops the worker hard because of a fault it cannot work through (a damaged
    /// store); [`Harness::worker_fault`] then returns `why`.
    pub(crate) fn fault(&self, why: String) {
        tracing::error!("{why}");
        self.inner.fault.send_if_modified(|f| {
            let first = f.is_none();
            if first {
                *f = Some(why);
            }
            first
        });
        self.abort();
    }

    /// Resolves when the worker stopped on a fault (a damaged store), with why.
    pub async fn worker_fault(&self) -> String {
        let mut rx = self.inner.fault.subscribe();
        match rx.wait_for(|f| f.is_some()).await {
            Ok(f) => f.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }
}

fn spawn_run(h: &Harness, runs: &mut JoinSet<(RequestId, Outcome)>, req: Request) {
    let token = h.inner.abort.lock().expect("abort").child_token();
    // Registered before the task starts: the root is live from its claim on.
    let guard = h.inner.runs.register(h, &req.id, token.clone());
    let h2 = h.clone();
    let id = req.id.clone();
    runs.spawn(async move {
        // A panic in the run fails its own tree, never the worker.
        let task = tokio::spawn(run_root(h2.clone(), req, token, guard));
        let outcome = match task.await {
            Ok(o) => o,
            Err(e) => Outcome::Panicked(panic_text(e)),
        };
        (id, outcome)
    });
}

/// A run ended; returns whether it ended on a store failure.
fn finished(h: &Harness, done: Result<(RequestId, Outcome), tokio::task::JoinError>) -> bool {
    let Ok((id, outcome)) = done else {
        return false;
    };
    match outcome {
        Outcome::Panicked(msg) => {
            let h = h.clone();
            tokio::spawn(async move { crate::run::fail_after_panic(&h, &id, &msg).await });
            false
        }
        Outcome::StoreFailed(_) => true,
        _ => false,
    }
}

/// Another process may have cancelled a request this worker is running (a root
/// or a delegated child), or (PostgreSQL, many workers) re-claimed a root whose
/// lease this worker let lapse: either way the run stops, and its running command
/// is killed; a fenced run's last commits are refused (LeaseLost).
/// One read for every run (a worker running 1,000 requests looked them up one by
/// one, a round trip each, at every tick that saw a commit).
async fn notice_cancels(h: &Harness, me: &WorkerId) {
    let live = h.inner.runs.live();
    let requests = match h.inner.store.get_requests(&live.ids()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "could not look for cancels by other processes");
            return;
        }
    };
    for r in requests {
        let id = r.id.clone();
        let reclaimed = r.parent_id.is_none()
            && matches!(r.status, RequestStatus::Queued | RequestStatus::Running)
            && r.worker_id.as_ref() != Some(me);
        if reclaimed {
            tracing::warn!(
                request = %id, now_with = ?r.worker_id,
                "lease lost: the request was re-claimed; stopping this worker's run of it"
            );
        }
        if r.status == RequestStatus::Cancelled || reclaimed {
            h.inner.runs.cancel_seen(&live, &id);
        }
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => panic_message(p.as_ref()).unwrap_or_else(|| "panic".to_string()),
        Err(e) => e.to_string(),
    }
}

/// The message a panic was raised with, when it has one (a `&str` or a `String`).
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> Option<String> {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Runs `request` in this process until it settles (finished or waiting for approval):
/// the engine behind `agent-harness run` when no `serve` worker holds the workspace.
pub async fn run_until_settled(
    h: &Harness,
    request: &RequestId,
    opts: WorkerOptions,
) -> Result<Request, HarnessError> {
    let worker = h.start_worker(opts).await?;
    let mut commits = h.inner.store.wakeups().await;
    let mut stopping = h.inner.stopping.subscribe();
    let settled =
        |r: &Request| r.status.is_terminal() || r.status == RequestStatus::WaitingApproval;
    let result = loop {
        let r = match h.get_request(request).await {
            Ok(r) => r,
            Err(e) => break Err(e),
        };
        // Settled, or stopped from outside (`Harness::abort` on Ctrl-C).
        if settled(&r) || h.stopping() {
            break Ok(r);
        }
        tokio::select! {
            _ = commits.changed() => {}
            _ = stopping.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    };
    worker.stop().await?;
    match result {
        // Where the stop left it (back on the queue, once its run has ended).
        Ok(r) if !settled(&r) => h.get_request(request).await,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_gather_only_for_few_free_slots_under_a_deep_queue() {
        let t0 = tokio::time::Instant::now();
        let mut g = Gather::default();
        // Nothing claimed yet: at once, however few are free.
        assert!(g.due(t0, 1, 64));
        // The last claim got less than it asked for: the queue is short, at once.
        g.claimed(8, 3);
        assert!(g.due(t0, 1, 64));
        // It got all it asked for: one free slot of 64 waits for others...
        g.claimed(8, 8);
        assert!(!g.due(t0, 1, 64));
        assert!(!g.due(t0 + CLAIM_GATHER / 2, 3, 64));
        // ...until the gather time is up,
        assert!(g.due(t0 + CLAIM_GATHER, 3, 64));
        // or a quarter of the slots is free.
        assert!(!g.due(t0, 15, 64));
        assert!(g.due(t0, 16, 64));
        assert!(g.until.is_none(), "claiming ends the wait");
        // Four slots or fewer never wait.
        assert!(g.due(t0, 1, 4));
    }

    #[tokio::test]
    async fn a_gathering_claim_wakes_the_dispatcher_when_due() {
        let mut g = Gather {
            deep: true,
            until: None,
        };
        let t0 = tokio::time::Instant::now();
        assert!(!g.due(t0, 1, 64));
        g.wait().await;
        assert!(tokio::time::Instant::now() >= t0 + CLAIM_GATHER);
        assert!(g.due(tokio::time::Instant::now(), 1, 64));
        // With no wait pending, `wait` does not end.
        let pending = tokio::time::timeout(Duration::from_millis(50), g.wait()).await;
        assert!(pending.is_err());
    }
}
