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
