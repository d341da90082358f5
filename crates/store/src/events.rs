//! The event log: appended inside the transaction of the change it reports.

use crate::rows::{self, EVENT_COLS};
use crate::{SqliteStore, StoreError};
use harness_core::{Event, EventFilter, NewEvent, Timestamp};
use rusqlite::{Connection, params};

/// Appends events; returns their sequence numbers (visible only once the caller's transaction commits).
pub(crate) fn append(
    conn: &Connection,
    at: Timestamp,
    events: &[NewEvent],
) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events (at, kind, request_id, session_id, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut seqs = Vec::with_capacity(events.len());
    for e in events {
        stmt.execute(params![
            at.0,
            e.kind.as_str(),
            e.request_id.as_ref().map(|r| r.as_str()),
            e.session_id.as_ref().map(|s| s.as_str()),
            e.payload.to_string(),
        ])?;
        seqs.push(conn.last_insert_rowid());
    }
    Ok(seqs)
}

/// The highest seq appended so far (inside the caller's transaction).
pub(crate) fn last_seq(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events")?
        .query_row([], |r| r.get(0))?)
}

impl SqliteStore {
    /// Events with `seq > after`, oldest first, at most `limit`.
    ///
    /// The cursor contract: a subscriber that passes the last seq it saw misses
    /// nothing, because SQLite's single writer assigns seqs in commit order.
    pub async fn events_after(
        &self,
        after: i64,
        filter: EventFilter,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.read(move |c| events_after(c, after, &filter, limit))
            .await
    }

    /// Highest committed event sequence, as any process sees it now.
    pub async fn last_seq(&self) -> Result<i64, StoreError> {
        self.read(
            |c| Ok(c.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?),
        )
        .await
    }
}

fn events_after(
    c: &Connection,
    after: i64,
    f: &EventFilter,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let limit = if limit == 0 { i64::MAX } else { limit as i64 };
    let sql = match (&f.request_id, &f.session_id) {
        (Some(_), _) => format!(
            "SELECT {EVENT_COLS} FROM events WHERE request_id = ?2 AND seq > ?1 ORDER BY seq LIMIT ?3"
        ),
        (None, Some(_)) => format!(
            "SELECT {EVENT_COLS} FROM events WHERE session_id = ?2 AND seq > ?1 ORDER BY seq LIMIT ?3"
        ),
        (None, None) => {
            format!(
                "SELECT {EVENT_COLS} FROM events WHERE seq > ?1 AND ?2 IS NULL ORDER BY seq LIMIT ?3"
            )
        }
    };
    let key: Option<String> = f
        .request_id
        .as_ref()
        .map(|r| r.to_string())
        .or_else(|| f.session_id.as_ref().map(|s| s.to_string()));
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![after, key, limit], rows::event)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
