//! The event log: appended inside the transaction of the change it reports.

use crate::rows::{self, EVENT_COLS};
use crate::{SqliteStore, StoreError};
use harness_core::{Event, EventFilter, NewEvent, RequestId, Timestamp};
use rusqlite::{Connection, params};

thread_local! {
    /// The highest seq [`append`] gave on this thread since the writer last took
    /// it: what the writer's next commit makes visible, known without reading the
    /// table again after it.
    static APPENDED: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

/// Takes (and clears) the highest seq appended on this thread; 0 when none.
pub(crate) fn take_appended() -> i64 {
    APPENDED.replace(0)
}

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
        let seq = conn.last_insert_rowid();
        APPENDED.set(APPENDED.get().max(seq));
        seqs.push(seq);
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

    /// Every event with `seq > after`, for the process's shared event feed: on the
    /// feed's own connection, never queued behind the pool's reads.
    pub async fn feed_events_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.read_on(crate::readers::Lane::Feed, move |c| {
            events_after(c, after, &EventFilter::default(), limit)
        })
        .await
    }

    /// `id` and every request delegated under it, parents before children.
    pub async fn subtree_ids(&self, id: &RequestId) -> Result<Vec<RequestId>, StoreError> {
        let id = id.clone();
        self.read(move |c| crate::tree::subtree(c, &id)).await
    }

    /// Highest committed event sequence, as any process sees it now.
    pub async fn last_seq(&self) -> Result<i64, StoreError> {
        self.read(
            |c| Ok(c.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?),
        )
        .await
    }
}

/// A filtered read after a cursor, for either backend: the query (cursor first,
/// then the filter's keys; `ph(n)` writes placeholder `n`) and the keys to bind.
/// At most `limit` rows (0: all). A tree is walked from its request down
/// `parent_id` (`requests_parent`), and its events found by `events_request` per
/// member.
///
/// The limit is written into the query, not bound: SQLite (3.50, with STAT4)
/// marks a statement whose `LIMIT` is a parameter to be prepared again at every
/// new binding of it, which cost the feed and every subscriber a full re-prepare
/// per read. The callers use a few limits, so each shape stays cached.
pub(crate) fn after_query(
    cols: &str,
    f: &EventFilter,
    visible: &str,
    limit: usize,
    ph: impl Fn(usize) -> String,
) -> (String, Vec<String>) {
    let mut keys: Vec<String> = Vec::new();
    let mut conds = vec![format!("seq > {}", ph(1))];
    let mut with = String::new();
    if let Some(r) = &f.request_id {
        keys.push(r.to_string());
        conds.push(format!("request_id = {}", ph(keys.len() + 1)));
    }
    if let Some(s) = &f.session_id {
        keys.push(s.to_string());
        conds.push(format!("session_id = {}", ph(keys.len() + 1)));
    }
    if let Some(t) = &f.tree {
        keys.push(t.to_string());
        with = format!(
            "WITH RECURSIVE tree(id) AS (SELECT CAST({} AS TEXT) \
             UNION SELECT r.id FROM requests r JOIN tree ON r.parent_id = tree.id) ",
            ph(keys.len() + 1)
        );
        conds.push("request_id IN (SELECT id FROM tree)".into());
    }
    if !visible.is_empty() {
        conds.push(visible.to_string());
    }
    let limit = match limit {
        0 => String::new(),
        n => format!(" LIMIT {n}"),
    };
    let sql = format!(
        "{with}SELECT {cols} FROM events WHERE {} ORDER BY seq{limit}",
        conds.join(" AND "),
    );
    (sql, keys)
}

pub(crate) fn events_after(
    c: &Connection,
    after: i64,
    f: &EventFilter,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let (sql, keys) = after_query(EVENT_COLS, f, "", limit, |n| format!("?{n}"));
    let mut stmt = c.prepare_cached(&sql)?;
    let mut binds: Vec<&dyn rusqlite::ToSql> = vec![&after];
    binds.extend(keys.iter().map(|k| k as &dyn rusqlite::ToSql));
    let rows = stmt.query_map(binds.as_slice(), rows::event)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
