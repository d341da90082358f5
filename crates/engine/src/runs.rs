//! The runs this process is executing, roots and delegated children alike, with
//! the token that cancels each. A cancel reaches the run of exactly the request
//! it names (and, through child tokens, everything delegated under it).

use crate::Harness;
use harness_core::RequestId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub(crate) struct Runs {
    map: Mutex<HashMap<RequestId, (u64, CancellationToken)>>,
    next: AtomicU64,
}

/// Removes its run from [`Runs`] when dropped, unless a newer run of the same
/// request registered since (a tree re-claimed while its last run unwinds).
pub(crate) struct RunGuard {
    h: Harness,
    id: RequestId,
    generation: u64,
}

impl Runs {
    pub(crate) fn register(
        &self,
        h: &Harness,
        id: &RequestId,
        token: CancellationToken,
    ) -> RunGuard {
        let generation = self.next.fetch_add(1, Ordering::Relaxed);
        self.map
            .lock()
            .expect("runs")
            .insert(id.clone(), (generation, token));
        RunGuard {
            h: h.clone(),
            id: id.clone(),
            generation,
        }
    }

    /// Cancels the run of `id` in this process, if there is one.
    pub(crate) fn cancel(&self, id: &RequestId) -> bool {
        match self.map.lock().expect("runs").get(id) {
            Some((_, token)) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// The requests with a run in this process.
    pub(crate) fn ids(&self) -> Vec<RequestId> {
        self.map.lock().expect("runs").keys().cloned().collect()
    }

    /// The runs in this process now: each request with its run's generation.
    pub(crate) fn live(&self) -> Live {
        let map = self.map.lock().expect("runs");
        Live(map.iter().map(|(id, (g, _))| (id.clone(), *g)).collect())
    }

    /// Cancels the run of `id` that was live in `seen`, if it still is. A verdict
    /// read from the store about a run seen before the read (its lease lost, its
    /// tree re-claimed elsewhere) must not stop a newer run of the same request
    /// that registered meanwhile (the tree woke and this process claimed it again).
    pub(crate) fn cancel_seen(&self, seen: &Live, id: &RequestId) -> bool {
        let Some(generation) = seen.0.get(id) else {
            return false;
        };
        match self.map.lock().expect("runs").get(id) {
            Some((g, token)) if g == generation => {
                token.cancel();
                true
            }
            _ => false,
        }
    }
}

/// A snapshot of [`Runs`]: the requests running in this process, by generation.
pub(crate) struct Live(HashMap<RequestId, u64>);

impl Live {
    pub(crate) fn ids(&self) -> Vec<RequestId> {
        self.0.keys().cloned().collect()
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let mut map = self.h.inner.runs.map.lock().expect("runs");
        if map
            .get(&self.id)
            .is_some_and(|(g, _)| *g == self.generation)
        {
            map.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verdict about the run seen before a read stops that run only: a newer run
    /// of the same request (its tree claimed again meanwhile) goes on, and is
    /// stopped by a verdict read after it registered.
    #[tokio::test]
    async fn a_stale_verdict_never_stops_a_newer_run_of_the_request() {
        let dir = tempfile::tempdir().unwrap();
        harness_config::init(dir.path(), false).unwrap();
        let h = Harness::open(dir.path()).unwrap();
        let runs = &h.inner.runs;
        let id = RequestId::generate();
        let (old, new) = (CancellationToken::new(), CancellationToken::new());
        let _old_run = runs.register(&h, &id, old.clone());
        let seen = runs.live();
        // The old run unwinds while the request is claimed again.
        let _new_run = runs.register(&h, &id, new.clone());
        assert!(!runs.cancel_seen(&seen, &id));
        assert!(!old.is_cancelled() && !new.is_cancelled());
        assert!(!runs.cancel_seen(&seen, &RequestId::generate()), "not seen");
        let seen = runs.live();
        assert!(runs.cancel_seen(&seen, &id));
        assert!(new.is_cancelled());
    }
}
