//! Group commit: several sessions' common steps in one transaction.
//!
//! A transaction's fixed costs (its commit record and flush, `BEGIN`/`COMMIT`, a
//! round trip, the server's per-transaction work) were most of a step's cost on the
//! server: pgbench-style on this machine kind, 4-statement steps pipelined, 1,840 –
//! 2,760 steps/s one step per transaction against 6,000 – 8,400 with eight per
//! transaction. So the common step (one statement: `steps.rs`, `OneStatement`) is
//! not sent by its caller but queued here. A committer takes every step waiting (at
//! most [`MAX_BATCH`]) and sends them as one transaction in one round trip: `BEGIN`,
//! each step's statement, `COMMIT` (and the NOTIFY). A step that finds nothing else
//! committing is sent at once as its own statement, as without grouping; at most
//! [`COMMITTERS`] transactions are in flight, and steps gather while they are.
//!
//! Each statement keeps its own fences. If any member is refused (its lease lost,
//! its request settled) or fails, the server rolls the whole transaction back and
//! every member is sent again alone, so one member's refusal never becomes
//! another's. Members lock their request rows in id order, so two batches cannot
//! deadlock on them; the heartbeat's renewal never waits for a row lock (it skips
//! locked rows: `workers.rs`), so it neither deadlocks with a batch nor queues
//! every other root's commits behind one.
//!
//! A committer is a task of its own: a caller that stops waiting (its run was
//! cancelled) does not abort the others' transaction, and its step commits or is
//! refused as if it had waited, as with the SQLite writer.

use super::events::{EventArrays, PER_TX, seq_of};
use super::{PgStore, Stmt, in_tx};
use crate::StoreError;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::oneshot;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

/// Transactions of grouped steps in flight at once, per store handle.
const COMMITTERS: usize = 2;
/// Steps one transaction takes at most.
const MAX_BATCH: usize = 32;

/// An owned statement parameter (the statement may be sent by another task).
pub(super) type Owned = Box<dyn ToSql + Sync + Send>;

/// One step as one statement, owning its parameters.
pub(super) struct Grouped {
    /// Its request: members are sent in this order.
    pub(super) request: String,
    /// Its text; the last column of its one row is the transaction id.
    pub(super) sql: String,
    pub(super) params: Vec<Owned>,
    /// Its events' parameters, numbered after `params`. Their indexes in the
    /// transaction move when the step is grouped.
    pub(super) events: Option<EventArrays>,
    /// One of its events may give a worker work to claim.
    pub(super) frees_work: bool,
}

impl Grouped {
    fn event_count(&self) -> i64 {
        self.events.as_ref().map_or(0, |e| e.len() as i64)
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut p: Vec<&(dyn ToSql + Sync)> = self
            .params
            .iter()
            .map(|b| &**b as &(dyn ToSql + Sync))
            .collect();
        if let Some(e) = &self.events {
            p.extend(e.params());
        }
        p
    }

    /// Its events' seqs, from the transaction id its row ends with.
    fn seqs(&self, rows: &[Row]) -> Result<Vec<i64>, StoreError> {
        let Some(row) = rows.first() else {
            return Err(StoreError::Io("a step's statement returned no row".into()));
        };
        let xid: i64 = row.try_get(row.len() - 1)?;
        Ok(self
            .events
            .as_ref()
            .map(|e| e.indexes().iter().map(|i| seq_of(xid, *i)).collect())
            .unwrap_or_default())
    }
}

/// A step's outcome: its events' seqs, `None` when its fence refused it (nothing
/// was written: the caller sends it the slow way, which says why).
type Answer = Result<Option<Vec<i64>>, StoreError>;

struct Job {
    step: Grouped,
    answer: oneshot::Sender<Answer>,
}

/// A store handle's queue of steps to commit, and what its committers did.
#[derive(Default)]
pub(super) struct Group {
    state: Mutex<Waiting>,
    transactions: AtomicU64,
    steps: AtomicU64,
    resent: AtomicU64,
}

#[derive(Default)]
struct Waiting {
    queue: VecDeque<Job>,
    committers: usize,
}

/// What a handle's group commit did since it opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Transactions sent by committers (a lone step is one).
    pub transactions: u64,
    /// Steps they carried.
    pub steps: u64,
    /// Steps sent again alone because their transaction was refused.
    pub resent: u64,
}

impl Group {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // Every update under the lock is one step: a poisoned lock is consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn stats(&self) -> GroupStats {
        GroupStats {
            transactions: self.transactions.load(Ordering::Relaxed),
            steps: self.steps.load(Ordering::Relaxed),
            resent: self.resent.load(Ordering::Relaxed),
        }
    }
}

impl PgStore {
    /// Commits `step` together with whatever other steps are waiting.
    pub(super) async fn commit_grouped(&self, step: Grouped) -> Answer {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut w = self.inner.group.waiting();
            w.queue.push_back(Job { step, answer });
            let start = w.committers < COMMITTERS;
            w.committers += start as usize;
            start
        };
        if start {
            tokio::spawn(commit_waiting(Committer {
                store: self.clone(),
                ended: false,
            }));
        }
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::Commit(Box::new(StoreError::Io(
                "the committer stopped before answering (the runtime is shutting down)".into(),
            ))))
        })
    }
}

/// A committer's place among [`COMMITTERS`]. Dropped without ending normally
/// (its task aborted by a runtime shutting down, or a panic), it gives its place
/// back and drops the steps waiting, whose callers then hear that it stopped,
/// rather than wait for a committer that may never come.
struct Committer {
    store: PgStore,
    ended: bool,
}

impl Drop for Committer {
    fn drop(&mut self) {
        if !self.ended {
            let mut w = self.store.inner.group.waiting();
            w.committers -= 1;
            w.queue.clear();
        }
    }
}

async fn commit_waiting(mut me: Committer) {
    loop {
        let batch = {
            let mut w = me.store.inner.group.waiting();
            if w.queue.is_empty() {
                w.committers -= 1;
                me.ended = true;
                return;
            }
            let mut batch = Vec::new();
            let mut events = 0;
            while let Some(job) = w.queue.front() {
                let n = job.step.event_count();
                if batch.len() == MAX_BATCH || (!batch.is_empty() && events + n > PER_TX) {
                    break;
                }
                events += n;
                batch.extend(w.queue.pop_front());
            }
            batch
        };
        commit_batch(&me.store, batch).await;
    }
}

/// Sends `jobs` as one transaction (a lone one as its own statement) and answers
/// each; a refused transaction's members are sent again, each alone.
async fn commit_batch(store: &PgStore, mut jobs: Vec<Job>) {
    let group = &store.inner.group;
    group.transactions.fetch_add(1, Ordering::Relaxed);
    group.steps.fetch_add(jobs.len() as u64, Ordering::Relaxed);
    if jobs.len() == 1 {
        let job = jobs.pop().expect("one job");
        let answer = alone(store, &job.step).await;
        let _ = job.answer.send(answer);
        return;
    }
    jobs.sort_by(|a, b| a.step.request.cmp(&b.step.request));
    let mut events = 0;
    let mut frees_work = false;
    for job in &mut jobs {
        if let Some(e) = &mut job.step.events {
            e.shift(events);
        }
        events += job.step.event_count();
        frees_work |= job.step.frees_work;
    }
    let together: Result<Option<Vec<Answer>>, StoreError> = async {
        in_tx!(store, |tx| {
            tx.events = events;
            tx.frees_work = frees_work;
            let params: Vec<_> = jobs.iter().map(|j| j.step.params()).collect();
            let stmts: Vec<Stmt> = jobs
                .iter()
                .zip(&params)
                .map(|(j, p)| Stmt::query(&j.step.sql, p))
                .collect();
            match tx.pipeline_commit(&stmts).await {
                Ok(Some(outs)) => Ok(Some(
                    jobs.iter()
                        .zip(outs)
                        .map(|(j, out)| j.step.seqs(out.rows_ref()).map(Some))
                        .collect(),
                )),
                // Sent, and no answer for the end of the transaction: its outcome is
                // unknown, for every member alike.
                Err(e @ StoreError::Commit(_)) => Err(e),
                // Refused by the server (a fence, a conflict, any error): rolled back.
                Ok(None) | Err(_) => Ok(None),
            }
        })
    }
    .await;
    match together {
        Ok(Some(answers)) => {
            for (job, answer) in jobs.into_iter().zip(answers) {
                let _ = job.answer.send(answer);
            }
        }
        Err(e) => {
            for job in jobs {
                let _ = job.answer.send(Err(e.clone()));
            }
        }
        Ok(None) => {
            group.resent.fetch_add(jobs.len() as u64, Ordering::Relaxed);
            let answers =
                futures_util::future::join_all(jobs.iter().map(|j| alone(store, &j.step))).await;
            for (job, answer) in jobs.into_iter().zip(answers) {
                let _ = job.answer.send(answer);
            }
        }
    }
}

/// One step as its own statement (its own transaction).
async fn alone(store: &PgStore, step: &Grouped) -> Answer {
    in_tx!(store, |tx| {
        tx.events = step.event_count();
        tx.frees_work = step.frees_work;
        match tx.statement_commit(&step.sql, &step.params()).await? {
            Some(rows) => step.seqs(&rows).map(Some),
            None => Ok(None),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestSchema, new_request};
    use crate::{Admission, Backend, StepCommit, Store, StoreConfig, StoreOptions};
    use harness_core::*;

    async fn running(store: &Store, n: usize) -> Vec<Request> {
        for i in 0..n {
            let new = new_request(&format!("s{i}"), 0);
            let adm = Admission {
                queue_capacity: 100,
                reject_if_session_busy: false,
            };
            store.admit(new, adm, Timestamp(1)).await.unwrap();
        }
        let claimed = store
            .claim(&WorkerId::generate(), n, Timestamp(2))
            .await
            .unwrap();
        assert_eq!(claimed.len(), n);
        claimed
    }

    fn job(pg: &PgStore, r: &Request, at: i64) -> (Job, oneshot::Receiver<Answer>) {
        let commit = StepCommit::new(&r.id, &r.session_id, Timestamp(at))
            .event(EventBody::RequestRepaired {
                problem: "p".into(),
                action: "a".into(),
            })
            .event(EventBody::RequestRepaired {
                problem: "q".into(),
                action: "b".into(),
            });
        let token = pg.lease_of(&r.id).expect("claimed here");
        let step = super::super::steps::one_statement(&commit, &token).unwrap();
        let (answer, answered) = oneshot::channel();
        (Job { step, answer }, answered)
    }

    /// Events of `r` a reader sees, waiting (a while) for `n` of them: an event shows
    /// once every older transaction of the cluster has ended, and other tests' may
    /// be open.
    async fn events_of(store: &Store, r: &Request, n: usize) -> Vec<Event> {
        let filter = EventFilter {
            request_id: Some(r.id.clone()),
            ..Default::default()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let seen = store.events_after(0, filter.clone(), 0).await.unwrap();
            let repaired: Vec<Event> = seen
                .into_iter()
                .filter(|e| e.kind == EventKind::RequestRepaired)
                .collect();
            if repaired.len() >= n || std::time::Instant::now() >= deadline {
                return repaired;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Three steps in one transaction; then three again, the middle one's lease taken
    /// over meanwhile: the server refuses the transaction, the other two commit
    /// alone, and the refused one is answered `None` (its caller then says why).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_member_refused_costs_the_others_nothing() {
        let Some(schema) = TestSchema::new() else {
            return;
        };
        let config = StoreConfig::Postgres(schema.config.clone());
        let store = Store::open_config(&config, StoreOptions::default(), true).unwrap();
        let Backend::Postgres(pg) = &store.backend else {
            unreachable!("a PostgreSQL store")
        };
        let reqs = running(&store, 3).await;

        let (jobs, answered): (Vec<_>, Vec<_>) = reqs.iter().map(|r| job(pg, r, 3)).unzip();
        commit_batch(pg, jobs).await;
        let mut seqs = Vec::new();
        for a in answered {
            let s = a.await.unwrap().unwrap().expect("committed");
            assert_eq!(s.len(), 2);
            seqs.extend(s);
        }
        // One transaction: one id, six indexes.
        let xids: std::collections::HashSet<i64> = seqs.iter().map(|s| s >> 16).collect();
        assert_eq!(xids.len(), 1, "{seqs:?}");
        let mut idx: Vec<i64> = seqs.iter().map(|s| s & 0xffff).collect();
        idx.sort();
        assert_eq!(idx, (0..6).collect::<Vec<_>>());
        assert_eq!(
            pg.group_stats(),
            GroupStats {
                transactions: 1,
                steps: 3,
                resent: 0
            }
        );

        let c = pg.client().await.unwrap();
        c.execute(
            "UPDATE requests SET lease_token = 'taken' WHERE id = $1",
            &[&reqs[1].id.as_str()],
        )
        .await
        .unwrap();
        let (jobs, answered): (Vec<_>, Vec<_>) = reqs.iter().map(|r| job(pg, r, 4)).unzip();
        commit_batch(pg, jobs).await;
        let mut outcomes = Vec::new();
        for a in answered {
            outcomes.push(a.await.unwrap().unwrap());
        }
        assert!(
            outcomes[0].is_some() && outcomes[2].is_some(),
            "{outcomes:?}"
        );
        assert_eq!(outcomes[1], None, "the taken-over one is refused");
        assert_eq!(pg.group_stats().resent, 3);
        for (i, r) in reqs.iter().enumerate() {
            let want = if i == 1 { 2 } else { 4 };
            let seen = events_of(&store, r, want).await;
            assert_eq!(seen.len(), want, "request {i}: {seen:?}");
        }
    }
}
