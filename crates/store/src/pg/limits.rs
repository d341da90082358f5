//! Concurrency limits on PostgreSQL: the rules of `crate::limits`. Workers
//! acquire at once, so an acquisition takes a transaction advisory lock per key,
//! in key order (every acquisition takes them in that order: no deadlock), before
//! it counts the holds; a release needs no lock (it only frees).

use super::{PgStore, Stmt, Tx, events, in_tx, tree};
use crate::StoreError;
use crate::limits::{Acquire, HOLD_COLS, LIST_HOLDS, LIST_WAITS, LIVE_HOLDS, Park, WAIT_COLS};
use harness_core::*;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

const KEY_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('agent-harness limit ' || current_schema() || ' ' || $1))";
pub(super) const RELEASE_CALL: &str = "DELETE FROM holds WHERE call_id = $1";
pub(super) const RELEASE_REQUEST: &str = "DELETE FROM holds WHERE request_id = $1";
pub(super) const CLEAR_HOLDS: &str = "DELETE FROM holds WHERE root_id = $1";
pub(super) const CLEAR_WAITS: &str = "DELETE FROM waits WHERE root_id = $1";

async fn full(
    tx: &mut Tx<'_>,
    limits: &[Limit],
    root: &RequestId,
) -> Result<(Vec<String>, Vec<CallId>), StoreError> {
    let sql = LIVE_HOLDS.replace("$KEY", "$1").replace("$ROOT", "$2");
    let mut keys = Vec::new();
    let mut holders = Vec::new();
    for l in limits {
        let held = tx.query(&sql, &[&l.key, &root.as_str()]).await?;
        if held.len() >= l.capacity as usize {
            keys.push(l.key.clone());
            for r in held {
                holders.push(CallId::from_trusted(r.try_get(0)?));
            }
        }
    }
    Ok((keys, holders))
}

/// Takes a unit of every limit of `a` (locking the keys first, in order), or none.
pub(super) async fn acquire(
    tx: &mut Tx<'_>,
    request: &RequestId,
    a: &Acquire,
    at: Timestamp,
) -> Result<(), StoreError> {
    for l in &a.limits {
        tx.query(KEY_LOCK, &[&l.key]).await?;
    }
    let (keys, held_by) = full(tx, &a.limits, &a.root_id).await?;
    if !keys.is_empty() {
        return Err(StoreError::LimitsBusy {
            limits: keys,
            held_by,
        });
    }
    for l in &a.limits {
        tx.execute(
            "INSERT INTO holds (key, call_id, tool, request_id, root_id, acquired_at, held_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (key, call_id) DO UPDATE SET request_id = EXCLUDED.request_id, \
             root_id = EXCLUDED.root_id, acquired_at = EXCLUDED.acquired_at, held_until = EXCLUDED.held_until",
            &[
                &l.key,
                &a.call_id.as_str(),
                &a.tool,
                &request.as_str(),
                &a.root_id.as_str(),
                &at.0,
                &a.until.0,
            ],
        )
        .await?;
    }
    Ok(())
}

async fn park(tx: &mut Tx<'_>, p: &Park, token: Option<&str>) -> Result<bool, StoreError> {
    let root = p.root();
    tree::lock_root(tx, root).await?;
    if let Some(t) = token {
        let held: Option<String> = tx
            .query_one(
                "SELECT lease_token FROM requests WHERE id = $1",
                &[&root.as_str()],
            )
            .await?
            .try_get(0)?;
        if held.as_deref() != Some(t) {
            return Err(StoreError::LeaseLost {
                id: root.to_string(),
            });
        }
    }
    let (keys, held_by) = full(tx, &p.limits, root).await?;
    if keys.is_empty() {
        return Ok(false);
    }
    for id in std::iter::once(&p.request_id).chain(&p.ancestors) {
        let moved = tree::move_to(
            tx,
            id,
            RequestStatus::Queued,
            &[RequestStatus::Running],
            p.at,
            None,
        )
        .await?;
        if !moved {
            let r = tree::get_request(tx, id).await?;
            return Err(StoreError::WrongState {
                id: id.to_string(),
                status: r.status,
                action: "park it to wait for a limit (it is no longer running)",
            });
        }
    }
    tx.execute(CLEAR_WAITS, &[&root.as_str()]).await?;
    for l in p.limits.iter().filter(|l| keys.contains(&l.key)) {
        tx.execute(
            "INSERT INTO waits (root_id, key, capacity, request_id, call_id, tool, since) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &root.as_str(),
                &l.key,
                &(l.capacity as i32),
                &p.request_id.as_str(),
                &p.call_id.as_str(),
                &p.tool,
                &p.at.0,
            ],
        )
        .await?;
    }
    let body = EventBody::RequestWaiting {
        call_id: p.call_id.clone(),
        tool: p.tool.clone(),
        limits: keys,
        held_by,
    };
    events::append(tx, p.at, &[body.about(&p.request_id, &p.session_id)]).await?;
    Ok(true)
}

/// Of the claim's candidates (in claim order, each with whether its tree waits for
/// limits), the first `limit` to take (see [`crate::limits::Room`]). A tree that
/// waits for nothing is taken as it comes; the waits of those that do are read in
/// one round trip.
pub(super) async fn with_room(
    tx: &mut Tx<'_>,
    ids: Vec<(String, bool)>,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let mut room = crate::limits::Room::default();
    let waits_of = crate::limits::WAITS_OF.replace("$ROOT", "$1");
    let live_sql = crate::limits::LIVE_COUNT.replace("$KEY", "$1");
    let parked: Vec<&String> = ids.iter().filter(|(_, p)| *p).map(|(id, _)| id).collect();
    let params: Vec<[&(dyn ToSql + Sync); 1]> = parked.iter().map(|id| [*id as _]).collect();
    let stmts: Vec<Stmt> = params.iter().map(|p| Stmt::query(&waits_of, p)).collect();
    let mut parked_waits = match stmts.is_empty() {
        true => Vec::new(),
        false => tx.pipeline(&stmts).await?,
    }
    .into_iter();
    let mut out = Vec::with_capacity(limit);
    for (id, is_parked) in &ids {
        if out.len() == limit {
            break;
        }
        if !is_parked {
            out.push(id.clone());
            continue;
        }
        let rows = parked_waits
            .next()
            .expect("a pipeline answers each statement it was sent")
            .rows();
        let waits: Vec<(String, i64)> = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get::<_, i32>(1)? as i64)))
            .collect::<Result<_, StoreError>>()?;
        if waits.is_empty() {
            out.push(id.clone());
            continue;
        }
        let mut live = std::collections::HashMap::new();
        for (key, _) in &waits {
            let n: i64 = tx.query_one(&live_sql, &[key]).await?.try_get(0)?;
            live.insert(key.clone(), n);
        }
        if room.take(&waits, |k| Ok(live[k]))? {
            out.push(id.clone());
        }
    }
    Ok(out)
}

fn hold(r: &Row) -> Result<Hold, StoreError> {
    Ok(Hold {
        key: r.try_get(0)?,
        call_id: CallId::from_trusted(r.try_get(1)?),
        tool: r.try_get(2)?,
        request_id: RequestId::from_trusted(r.try_get(3)?),
        root_id: RequestId::from_trusted(r.try_get(4)?),
        acquired_at: Timestamp(r.try_get(5)?),
        until: Timestamp(r.try_get(6)?),
    })
}

fn wait(r: &Row) -> Result<Wait, StoreError> {
    Ok(Wait {
        root_id: RequestId::from_trusted(r.try_get(0)?),
        request_id: RequestId::from_trusted(r.try_get(1)?),
        call_id: CallId::from_trusted(r.try_get(2)?),
        tool: r.try_get(3)?,
        key: r.try_get(4)?,
        capacity: r.try_get::<_, i32>(5)? as u32,
        since: Timestamp(r.try_get(6)?),
    })
}

impl PgStore {
    pub(crate) async fn park(&self, p: Park) -> Result<bool, StoreError> {
        let root = p.root().clone();
        let token = self.lease_of(&root);
        let parked = in_tx!(self, |tx| park(tx, &p, token.as_deref()).await)?;
        if parked {
            // The root is back on the queue: its lease is over.
            self.forget_lease(&root, token.as_deref());
        }
        Ok(parked)
    }

    pub(crate) async fn holds(&self) -> Result<Vec<Hold>, StoreError> {
        let rows = self
            .read_rows(&format!("SELECT {HOLD_COLS} {LIST_HOLDS}"), &[])
            .await?;
        rows.iter().map(hold).collect()
    }

    pub(crate) async fn waits(&self) -> Result<Vec<Wait>, StoreError> {
        let rows = self
            .read_rows(&format!("SELECT {WAIT_COLS} {LIST_WAITS}"), &[])
            .await?;
        rows.iter().map(wait).collect()
    }
}
