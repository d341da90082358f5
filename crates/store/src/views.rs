//! Read-only queries behind the operator views (`agent-harness runtime …`).
//! Each is one indexed query: views must stay fast on large stores.

use crate::rows::{self, EVENT_COLS};
use crate::{SqliteStore, StoreError};
use harness_core::{Event, RequestId};

impl SqliteStore {
    /// The last `limit` events of any of `requests`, oldest first.
    pub async fn recent_events(
        &self,
        requests: Vec<RequestId>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        if requests.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        self.read(move |c| {
            let marks = vec!["?"; requests.len()].join(", ");
            let sql = format!(
                "SELECT {EVENT_COLS} FROM events WHERE request_id IN ({marks}) \
                 ORDER BY seq DESC LIMIT {limit}"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let ids = requests.iter().map(|r| r.as_str());
            let rows = stmt.query_map(rusqlite::params_from_iter(ids), rows::event)?;
            let mut out: Vec<Event> = rows.collect::<Result<_, _>>()?;
            out.reverse();
            Ok(out)
        })
        .await
    }
}
