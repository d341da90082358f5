//! The event log on PostgreSQL, and why its cursor never skips.
//!
//! A sequence value taken by a transaction that commits later becomes visible
//! after a higher one, so "events after seq N" over a plain sequence can skip. Here
//! an event's seq is `(its top-level transaction id << 16) + its index in that
//! transaction`, and a reader returns only events of transactions older than its
//! snapshot's xmin (every one of them has finished, so the set below that mark never
//! grows). An event committed later belongs to a transaction at or above the mark,
//! so its seq is above every seq already returned. Writers take no lock for this
//! (a lock serialising them through their commit flush caps a server at about
//! 1,200 steps/s); readers see an event once every transaction older than its own
//! has finished (a transaction left open holds back every reader).
//!
//! `xmin` covers every database of the server: a long transaction in another
//! database delays (never breaks) delivery here, so readers also poll.

use super::rows::{self, EVENT_COLS};
use super::{PgStore, Stmt, Tx};
use crate::StoreError;
use harness_core::{Event, EventFilter, NewEvent, RequestId, Timestamp};

/// The lowest seq a transaction still running (or starting later) may take.
macro_rules! watermark {
    () => {
        "(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 16)"
    };
}

/// Whether events after `$1` are committed but not [`VISIBLE`] yet.
const HELD_BACK: &str = concat!(
    "SELECT EXISTS (SELECT 1 FROM events WHERE seq > $1 AND seq >= ",
    watermark!(),
    ")"
);

/// Events one transaction may append (the low bits of a seq).
pub(super) const PER_TX: i64 = 1 << 16;

/// The insert of one event; `$1` is its index in the transaction.
pub(super) const INSERT: &str = "INSERT INTO events (seq, at, kind, request_id, session_id, payload) \
     VALUES ((pg_current_xact_id()::text::bigint << 16) + $1, $2, $3, $4, $5, $6)";

/// The current transaction's id, to compute the seqs of its events.
pub(super) const XID: &str = "SELECT pg_current_xact_id()::text::bigint";

/// Reads see only events of transactions older than the oldest one still running.
const VISIBLE: &str = concat!("seq < ", watermark!());

/// The owned parameters of one event insert.
pub(super) struct EventRow {
    pub(super) idx: i64,
    at: i64,
    kind: &'static str,
    request_id: Option<String>,
    session_id: Option<String>,
    payload: String,
}

impl EventRow {
    pub(super) fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 6] {
        [
            &self.idx,
            &self.at,
            &self.kind,
            &self.request_id,
            &self.session_id,
            &self.payload,
        ]
    }
}

/// The rows for `events`, numbered after those `tx` appended already.
pub(super) fn rows_for(
    tx: &mut Tx<'_>,
    at: Timestamp,
    events: &[NewEvent],
) -> Result<Vec<EventRow>, StoreError> {
    let (rows, frees_work) = rows_from(tx.events, at, events)?;
    tx.events += rows.len() as i64;
    tx.frees_work |= frees_work;
    Ok(rows)
}

/// The rows for `events`, numbered from `first` in their transaction, and whether
/// one of them may give a worker work to claim (`EventKind::may_free_work`).
pub(super) fn rows_from(
    first: i64,
    at: Timestamp,
    events: &[NewEvent],
) -> Result<(Vec<EventRow>, bool), StoreError> {
    if first + events.len() as i64 > PER_TX {
        return Err(StoreError::Io(format!(
            "one transaction may append at most {PER_TX} events"
        )));
    }
    let rows = events
        .iter()
        .zip(first..)
        .map(|(e, idx)| EventRow {
            idx,
            at: at.0,
            kind: e.kind.as_str(),
            request_id: e.request_id.as_ref().map(|r| r.to_string()),
            session_id: e.session_id.as_ref().map(|s| s.to_string()),
            payload: e.payload.to_string(),
        })
        .collect();
    Ok((rows, events.iter().any(|e| e.kind.may_free_work())))
}

/// The insert of several events at once, from arrays (`$1` the time, then the
/// indexes, kinds, request ids, session ids and payloads: [`EventArrays`]).
pub(super) const INSERT_ARRAYS: &str = "INSERT INTO events (seq, at, kind, request_id, session_id, payload) \
     SELECT (pg_current_xact_id()::text::bigint << 16) + u.i, $1, u.k, u.r, u.s, u.p \
     FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]) AS u(i, k, r, s, p)";

/// The parameters of [`INSERT_ARRAYS`] for `rows` (all of one commit: one time).
pub(super) struct EventArrays {
    at: i64,
    idx: Vec<i64>,
    kind: Vec<&'static str>,
    request_id: Vec<Option<String>>,
    session_id: Vec<Option<String>>,
    payload: Vec<String>,
}

impl EventArrays {
    pub(super) fn of(rows: &[EventRow]) -> EventArrays {
        EventArrays {
            at: rows.first().map(|r| r.at).unwrap_or_default(),
            idx: rows.iter().map(|r| r.idx).collect(),
            kind: rows.iter().map(|r| r.kind).collect(),
            request_id: rows.iter().map(|r| r.request_id.clone()).collect(),
            session_id: rows.iter().map(|r| r.session_id.clone()).collect(),
            payload: rows.iter().map(|r| r.payload.clone()).collect(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.idx.len()
    }

    /// Their indexes in the transaction.
    pub(super) fn indexes(&self) -> &[i64] {
        &self.idx
    }

    /// Numbers them after `by` other events of the transaction (a step grouped
    /// with others: `group.rs`).
    pub(super) fn shift(&mut self, by: i64) {
        for i in &mut self.idx {
            *i += by;
        }
    }

    pub(super) fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 6] {
        [
            &self.at,
            &self.idx,
            &self.kind,
            &self.request_id,
            &self.session_id,
            &self.payload,
        ]
    }
}

/// The seq of the event at `idx` in the transaction whose id is `xid`.
pub(super) fn seq_of(xid: i64, idx: i64) -> i64 {
    (xid << 16) + idx
}

/// Appends events inside `tx`; returns their seqs.
pub(super) async fn append(
    tx: &mut Tx<'_>,
    at: Timestamp,
    events: &[NewEvent],
) -> Result<Vec<i64>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let rows = rows_for(tx, at, events)?;
    let params: Vec<_> = rows.iter().map(|r| r.params()).collect();
    let mut stmts = vec![Stmt::query(XID, &[])];
    stmts.extend(params.iter().map(|p| Stmt::exec(INSERT, p)));
    let mut out = tx.pipeline(&stmts).await?;
    let xid: i64 = out.swap_remove(0).rows()[0].try_get(0)?;
    Ok(rows.iter().map(|r| seq_of(xid, r.idx)).collect())
}

/// Appends events inside `tx` and commits it in the same round trip (the insert
/// sent with the `COMMIT`): the end of a transaction that needs no seq back.
pub(super) async fn append_and_commit(
    tx: &mut Tx<'_>,
    at: Timestamp,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let rows = rows_for(tx, at, events)?;
    let arrays = EventArrays::of(&rows);
    let params = arrays.params();
    match tx
        .pipeline_commit(&[Stmt::exec(INSERT_ARRAYS, &params)])
        .await?
    {
        Some(_) => Ok(()),
        // Only a step's fenced statement raises the fence's refusal.
        None => Err(StoreError::Io(
            "an event insert was refused as if fenced: a bug in the store".into(),
        )),
    }
}

impl PgStore {
    pub(crate) async fn events_after(
        &self,
        after: i64,
        f: EventFilter,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let (sql, keys) =
            crate::events::after_query(EVENT_COLS, &f, VISIBLE, limit, |n| format!("${n}"));
        let mut binds: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&after];
        binds.extend(
            keys.iter()
                .map(|k| k as &(dyn tokio_postgres::types::ToSql + Sync)),
        );
        let rows = self.read_rows(&sql, &binds).await?;
        rows::all(rows, rows::event)
    }

    /// The feed's read ([`crate::Store::feed_events_after`]): the events, and in
    /// the same round trip whether events after `after` are committed but held
    /// back by the watermark (both on one connection, each with its own snapshot:
    /// a hint, which a later read settles).
    pub(crate) async fn feed_events_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<crate::FeedRead, StoreError> {
        let (sql, _) =
            crate::events::after_query(EVENT_COLS, &EventFilter::default(), VISIBLE, limit, |n| {
                format!("${n}")
            });
        let c = self.client().await?;
        let (read, probe) =
            futures_util::future::try_join(c.prepare_cached(&sql), c.prepare_cached(HELD_BACK))
                .await?;
        let (rows, held) = futures_util::future::try_join(
            c.query(&read, &[&after]),
            c.query_one(&probe, &[&after]),
        )
        .await?;
        Ok(crate::FeedRead {
            events: rows::all(rows, rows::event)?,
            held_back: held.try_get(0)?,
        })
    }

    pub(crate) async fn subtree_ids(&self, id: &RequestId) -> Result<Vec<RequestId>, StoreError> {
        let rows = self
            .read_rows(
                "WITH RECURSIVE t(id, depth) AS (SELECT $1::text, 0 \
                   UNION ALL SELECT r.id, t.depth + 1 FROM requests r JOIN t ON r.parent_id = t.id) \
                 SELECT id FROM t ORDER BY depth, id",
                &[&id.as_str()],
            )
            .await?;
        rows.iter()
            .map(|r| Ok(RequestId::from_trusted(r.try_get(0)?)))
            .collect()
    }

    pub(crate) async fn last_seq(&self) -> Result<i64, StoreError> {
        let row = self
            .read_one(
                &format!("SELECT COALESCE(MAX(seq), 0)::bigint FROM events WHERE {VISIBLE}"),
                &[],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    pub(crate) async fn recent_events(
        &self,
        requests: Vec<RequestId>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        if requests.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = requests.iter().map(|r| r.to_string()).collect();
        let limit = limit as i64;
        let rows = self
            .read_rows(
                &format!(
                    "SELECT {EVENT_COLS} FROM events WHERE request_id = ANY($1) \
                     ORDER BY seq DESC LIMIT $2"
                ),
                &[&ids, &limit],
            )
            .await?;
        let mut out = rows::all(rows, rows::event)?;
        out.reverse();
        Ok(out)
    }
}
