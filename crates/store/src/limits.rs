//! Concurrency limits on SQLite: holds taken with a call's `started` commit,
//! released with its end, and trees parked on the queue while a key is full.
//!
//! A hold counts only while its tree's root is `running` (see
//! [`LIVE_HOLDS`]), so every way a tree stops running — a pause, a re-queue, a
//! cancel, a crash and its recovery — frees what it held without a statement of
//! its own; a claim deletes its root's leftover rows. SQLite has one writer, so a
//! count and the insert after it cannot interleave with another acquisition.

use crate::{SqliteStore, StoreError, events, tree};
use harness_core::*;
use rusqlite::{Connection, params};

/// The holds of `key` that count against a tree (`$ROOT`): their request and
/// its tree's root are running, and they are another tree's (a tree counts once:
/// an agent that runs again deeper in its own tree does not wait for itself).
/// Shared by both backends.
pub(crate) const LIVE_HOLDS: &str = "SELECT h.call_id FROM holds h \
     JOIN requests hr ON hr.id = h.root_id JOIN requests hq ON hq.id = h.request_id \
     WHERE h.key = $KEY AND h.root_id <> $ROOT AND hr.status = 'running' AND hq.status = 'running' \
     ORDER BY h.acquired_at";

/// The claim's filter: a parked root is a candidate only once every key it waits
/// for has room. `root` names the candidate's id column.
pub(crate) fn has_room(root: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM waits w WHERE w.root_id = {root} AND w.capacity <= ({}))",
        LIVE_COUNT.replace("$KEY", "w.key")
    )
}

/// How many more candidates than it claims a claim reads, so that parked trees
/// skipped for want of room leave their places to others.
pub(crate) const CLAIM_SLACK: usize = 64;

/// The live holds of `key` (any tree's). `?1`/`$1` is the key. Both backends.
pub(crate) const LIVE_COUNT: &str = "SELECT COUNT(*) FROM holds h JOIN requests hr ON hr.id = h.root_id \
     JOIN requests hq ON hq.id = h.request_id \
     WHERE h.key = $KEY AND hr.status = 'running' AND hq.status = 'running'";
pub(crate) const WAITS_OF: &str = "SELECT key, capacity FROM waits WHERE root_id = $ROOT";

/// The units each key has left during one claim: a parked tree is taken only while
/// every key it waits for has a unit left for it, so one freed unit wakes one parked
/// tree, not every tree parked on that key.
#[derive(Default)]
pub(crate) struct Room(std::collections::HashMap<String, i64>);

impl Room {
    /// Takes a unit of each of `waits` ((key, capacity), with `live(key)` the units
    /// held now) if each has one left; else takes nothing and returns false.
    pub(crate) fn take(
        &mut self,
        waits: &[(String, i64)],
        mut live: impl FnMut(&str) -> Result<i64, StoreError>,
    ) -> Result<bool, StoreError> {
        for (key, capacity) in waits {
            if !self.0.contains_key(key) {
                let free = capacity - live(key)?;
                self.0.insert(key.clone(), free);
            }
        }
        if waits.iter().any(|(k, _)| self.0[k] <= 0) {
            return Ok(false);
        }
        for (k, _) in waits {
            *self.0.get_mut(k).expect("counted above") -= 1;
        }
        Ok(true)
    }
}

/// Of the claim's candidates (in claim order), the first `limit` to take (see [`Room`]).
pub(crate) fn with_room(
    c: &Connection,
    ids: Vec<String>,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let mut room = Room::default();
    let mut waits_of = c.prepare_cached(&WAITS_OF.replace("$ROOT", "?1"))?;
    let mut live = c.prepare_cached(&LIVE_COUNT.replace("$KEY", "?1"))?;
    let mut out = Vec::with_capacity(limit);
    for id in ids {
        if out.len() == limit {
            break;
        }
        let waits: Vec<(String, i64)> = waits_of
            .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        if waits.is_empty() || room.take(&waits, |k| Ok(live.query_row([k], |r| r.get(0))?))? {
            out.push(id);
        }
    }
    Ok(out)
}

/// What a tool call acquires with its `started` commit.
#[derive(Clone, Debug)]
pub struct Acquire {
    pub call_id: CallId,
    pub tool: String,
    /// The root of the call's tree: the hold counts while it runs.
    pub root_id: RequestId,
    /// Sorted by key (the one order every acquisition takes them in).
    pub limits: Vec<Limit>,
    /// When the call's timeout ends.
    pub until: Timestamp,
}

/// A tree to park because its call's limits have no room.
#[derive(Clone, Debug)]
pub struct Park {
    pub request_id: RequestId,
    pub session_id: SessionId,
    /// Parent first, root last (empty for a root's own call).
    pub ancestors: Vec<RequestId>,
    pub call_id: CallId,
    pub tool: String,
    pub limits: Vec<Limit>,
    pub at: Timestamp,
}

impl Park {
    pub fn root(&self) -> &RequestId {
        self.ancestors.last().unwrap_or(&self.request_id)
    }
}

/// The keys among `limits` that other trees than `root`'s fill, and who holds them.
pub(crate) fn full(
    c: &Connection,
    limits: &[Limit],
    root: &RequestId,
) -> Result<(Vec<String>, Vec<CallId>), StoreError> {
    let mut keys = Vec::new();
    let mut holders = Vec::new();
    let mut stmt = c.prepare_cached(&LIVE_HOLDS.replace("$KEY", "?1").replace("$ROOT", "?2"))?;
    for l in limits {
        let held: Vec<String> = stmt
            .query_map(params![l.key, root.as_str()], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if held.len() >= l.capacity as usize {
            keys.push(l.key.clone());
            holders.extend(held.into_iter().map(CallId::from_trusted));
        }
    }
    Ok((keys, holders))
}

/// Takes a unit of every limit of `a`, or none ([`StoreError::LimitsBusy`]).
pub(crate) fn acquire(
    c: &Connection,
    request: &RequestId,
    a: &Acquire,
    at: Timestamp,
) -> Result<(), StoreError> {
    let (keys, held_by) = full(c, &a.limits, &a.root_id)?;
    if !keys.is_empty() {
        return Err(StoreError::LimitsBusy {
            limits: keys,
            held_by,
        });
    }
    let mut insert = c.prepare_cached(
        "INSERT OR REPLACE INTO holds (key, call_id, tool, request_id, root_id, acquired_at, held_until) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for l in &a.limits {
        insert.execute(params![
            l.key,
            a.call_id.as_str(),
            a.tool,
            request.as_str(),
            a.root_id.as_str(),
            at.0,
            a.until.0
        ])?;
    }
    Ok(())
}

/// A call that ended (completed or interrupted) releases what it held.
pub(crate) fn release_call(c: &Connection, call: &CallId) -> Result<(), StoreError> {
    c.prepare_cached("DELETE FROM holds WHERE call_id = ?1")?
        .execute([call.as_str()])?;
    Ok(())
}

/// A request that settled holds nothing (its rows would only be dead weight).
pub(crate) fn release_request(c: &Connection, request: &RequestId) -> Result<(), StoreError> {
    c.prepare_cached("DELETE FROM holds WHERE request_id = ?1")?
        .execute([request.as_str()])?;
    Ok(())
}

/// A claimed root starts with nothing held and nothing waited for.
pub(crate) fn clear_root(c: &Connection, root: &RequestId) -> Result<(), StoreError> {
    c.prepare_cached("DELETE FROM holds WHERE root_id = ?1")?
        .execute([root.as_str()])?;
    c.prepare_cached("DELETE FROM waits WHERE root_id = ?1")?
        .execute([root.as_str()])?;
    Ok(())
}

fn park(c: &Connection, p: &Park) -> Result<bool, StoreError> {
    let (keys, held_by) = full(c, &p.limits, p.root())?;
    if keys.is_empty() {
        return Ok(false);
    }
    for id in std::iter::once(&p.request_id).chain(&p.ancestors) {
        let moved = tree::move_to(
            c,
            id,
            RequestStatus::Queued,
            &[RequestStatus::Running],
            p.at,
            None,
        )?;
        if !moved {
            let r = crate::requests::get_request(c, id)?;
            return Err(StoreError::WrongState {
                id: id.to_string(),
                status: r.status,
                action: "park it to wait for a limit (it is no longer running)",
            });
        }
    }
    let root = p.root();
    c.prepare_cached("DELETE FROM waits WHERE root_id = ?1")?
        .execute([root.as_str()])?;
    let mut insert = c.prepare_cached(
        "INSERT INTO waits (root_id, key, capacity, request_id, call_id, tool, since) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for l in p.limits.iter().filter(|l| keys.contains(&l.key)) {
        insert.execute(params![
            root.as_str(),
            l.key,
            l.capacity,
            p.request_id.as_str(),
            p.call_id.as_str(),
            p.tool,
            p.at.0
        ])?;
    }
    let body = EventBody::RequestWaiting {
        call_id: p.call_id.clone(),
        tool: p.tool.clone(),
        limits: keys,
        held_by,
    };
    events::append(c, p.at, &[body.about(&p.request_id, &p.session_id)])?;
    Ok(true)
}

pub(crate) const HOLD_COLS: &str =
    "h.key, h.call_id, h.tool, h.request_id, h.root_id, h.acquired_at, h.held_until";
pub(crate) const WAIT_COLS: &str =
    "w.root_id, w.request_id, w.call_id, w.tool, w.key, w.capacity, w.since";

/// Every hold that counts now, oldest first.
pub(crate) const LIST_HOLDS: &str = "FROM holds h JOIN requests hr ON hr.id = h.root_id \
     JOIN requests hq ON hq.id = h.request_id \
     WHERE hr.status = 'running' AND hq.status = 'running' ORDER BY h.key, h.acquired_at";
/// Every wait of a parked (queued) tree, oldest first.
pub(crate) const LIST_WAITS: &str = "FROM waits w JOIN requests wr ON wr.id = w.root_id \
     WHERE wr.status = 'queued' ORDER BY w.since, w.root_id, w.key";

fn hold(r: &rusqlite::Row<'_>) -> rusqlite::Result<Hold> {
    Ok(Hold {
        key: r.get(0)?,
        call_id: CallId::from_trusted(r.get::<_, String>(1)?),
        tool: r.get(2)?,
        request_id: RequestId::from_trusted(r.get::<_, String>(3)?),
        root_id: RequestId::from_trusted(r.get::<_, String>(4)?),
        acquired_at: Timestamp(r.get(5)?),
        until: Timestamp(r.get(6)?),
    })
}

fn wait(r: &rusqlite::Row<'_>) -> rusqlite::Result<Wait> {
    Ok(Wait {
        root_id: RequestId::from_trusted(r.get::<_, String>(0)?),
        request_id: RequestId::from_trusted(r.get::<_, String>(1)?),
        call_id: CallId::from_trusted(r.get::<_, String>(2)?),
        tool: r.get(3)?,
        key: r.get(4)?,
        capacity: r.get(5)?,
        since: Timestamp(r.get(6)?),
    })
}

impl SqliteStore {
    pub async fn park(&self, p: Park) -> Result<bool, StoreError> {
        self.write(move |c| park(c, &p)).await
    }

    pub async fn holds(&self) -> Result<Vec<Hold>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {HOLD_COLS} {LIST_HOLDS}"))?;
            let rows = stmt.query_map([], hold)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    pub async fn waits(&self) -> Result<Vec<Wait>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {WAIT_COLS} {LIST_WAITS}"))?;
            let rows = stmt.query_map([], wait)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
