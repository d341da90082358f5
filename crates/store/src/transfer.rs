//! Moving a SQLite store into PostgreSQL (`agent-harness runtime migrate-store`).
//!
//! The records are copied table by table, in key order, a batch of rows per
//! transaction on the target: sessions, requests, steps, approvals, events (their
//! seqs kept, so a subscriber's cursor stays valid), artifacts (rows, version
//! numbers and contents). Holds and waits are not copied (they are empty while no
//! worker runs), nor are workers and the integrity check record.
//!
//! After copying, both sides are read back: the rows of each table, in key order,
//! hash to the same SHA-256, and every artifact's contents read through each
//! backend hash the same. The copy refuses to start while a worker holds either
//! store, or when the target already holds records; it holds the SQLite worker
//! lock and the PostgreSQL workspace lock (exclusively) while it runs, so no worker
//! starts on either meanwhile.

use crate::pg::{PgStore, Stmt, in_tx};
use crate::sqlite::SqliteStore;
use crate::{Backend, Store, StoreError};
use harness_core::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;

/// Rows copied per transaction on the target.
const BATCH: usize = 500;
/// Artifacts copied per transaction (their contents ride with them).
const ARTIFACT_BATCH: usize = 50;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
}

/// A table copied as it stands: its key columns come first in `cols`.
struct Table {
    name: &'static str,
    key: usize,
    cols: &'static [(&'static str, Kind)],
}

use Kind::{Int, Text};

/// Every table copied, in the order they are copied (and reported).
const TABLES: &[Table] = &[
    Table {
        name: "sessions",
        key: 1,
        cols: &[
            ("id", Text),
            ("created_at", Int),
            ("last_activity_at", Int),
            ("last_claimed_at", Int),
            ("claim_seq", Int),
        ],
    },
    Table {
        name: "requests",
        key: 1,
        cols: &[
            ("id", Text),
            ("session_id", Text),
            ("agent", Text),
            ("parent_id", Text),
            ("status", Text),
            ("attempt", Int),
            ("current_agent", Text),
            ("input", Text),
            ("output", Text),
            ("error", Text),
            ("trace_id", Text),
            ("created_at", Int),
            ("started_at", Int),
            ("last_activity_at", Int),
            ("finished_at", Int),
            ("steps", Int),
            ("worker_id", Text),
            ("queue_seq", Int),
            ("retry_of", Text),
            ("priority", Int),
            ("idempotency_key", Text),
            ("traceparent", Text),
        ],
    },
    Table {
        name: "steps",
        key: 2,
        cols: &[
            ("request_id", Text),
            ("idx", Int),
            ("agent", Text),
            ("status", Text),
            ("body", Text),
            ("started_at", Int),
            ("finished_at", Int),
        ],
    },
    Table {
        name: "approvals",
        key: 1,
        cols: &[
            ("id", Text),
            ("request_id", Text),
            ("session_id", Text),
            ("agent", Text),
            ("step_idx", Int),
            ("call_id", Text),
            ("tool", Text),
            ("arguments", Text),
            ("status", Text),
            ("decided_by", Text),
            ("message", Text),
            ("edited_arguments", Text),
            ("created_at", Int),
            ("decided_at", Int),
            ("expires_at", Int),
            ("reason", Text),
            ("decided_by_kind", Text),
        ],
    },
    Table {
        name: "events",
        key: 1,
        cols: &[
            ("seq", Int),
            ("at", Int),
            ("kind", Text),
            ("request_id", Text),
            ("session_id", Text),
            ("payload", Text),
        ],
    },
    Table {
        name: "artifacts",
        key: 1,
        cols: &[
            ("id", Text),
            ("request_id", Text),
            ("session_id", Text),
            ("name", Text),
            ("version", Int),
            ("media_type", Text),
            ("size", Int),
            ("sha256", Text),
            ("created_at", Int),
        ],
    },
];

/// Columns a copy leaves behind, by table, and why.
const NOT_COPIED: &[(&str, &str, &str)] = &[
    (
        "requests",
        "lease_token",
        "a lease belongs to a running worker, and none runs during a copy",
    ),
    (
        "requests",
        "lease_expires_at",
        "a lease belongs to a running worker, and none runs during a copy",
    ),
];

/// The columns of each copied table on either side that the copy does not list:
/// a migration that added a column without teaching the copy about it would
/// otherwise lose that column's values, and the comparison (which reads only the
/// listed columns) would still pass.
async fn unknown_columns(src: &SqliteStore, dst: &PgStore) -> Result<Vec<String>, StoreError> {
    let known = |table: &str, col: &str| {
        TABLES
            .iter()
            .any(|t| t.name == table && t.cols.iter().any(|c| c.0 == col))
            || NOT_COPIED.iter().any(|(t, c, _)| *t == table && *c == col)
    };
    let names: Vec<&'static str> = TABLES.iter().map(|t| t.name).collect();
    let sqlite: Vec<(String, String)> = {
        let names = names.clone();
        src.read(move |c| {
            let mut out = Vec::new();
            for t in names {
                let mut stmt = c.prepare(&format!("SELECT name FROM pragma_table_info('{t}')"))?;
                for col in stmt.query_map([], |r| r.get::<_, String>(0))? {
                    out.push((t.to_string(), col?));
                }
            }
            Ok(out)
        })
        .await?
    };
    let pg: Vec<(String, String)> = dst
        .read_rows(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = ANY($1)",
            &[&names],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, StoreError>>()?;
    let mut out: Vec<String> = Vec::new();
    for (side, cols) in [("SQLite", sqlite), ("PostgreSQL", pg)] {
        for (t, c) in cols {
            if !known(&t, &c) {
                out.push(format!("{t}.{c} ({side})"));
            }
        }
    }
    Ok(out)
}

/// One value of a copied row.
#[derive(Clone, Debug, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Text(String),
}

impl Cell {
    fn json(&self) -> serde_json::Value {
        match self {
            Cell::Null => serde_json::Value::Null,
            Cell::Int(i) => (*i).into(),
            Cell::Text(s) => s.clone().into(),
        }
    }

    fn sqlite(&self) -> rusqlite::types::Value {
        match self {
            Cell::Null => rusqlite::types::Value::Null,
            Cell::Int(i) => rusqlite::types::Value::Integer(*i),
            Cell::Text(s) => rusqlite::types::Value::Text(s.clone()),
        }
    }

    /// The parameter for a column of `kind` (typed even when NULL).
    fn pg(&self, kind: Kind) -> Box<dyn ToSql + Sync + Send> {
        match (self, kind) {
            (Cell::Int(i), _) => Box::new(*i),
            (Cell::Text(s), _) => Box::new(s.clone()),
            (Cell::Null, Kind::Int) => Box::new(None::<i64>),
            (Cell::Null, Kind::Text) => Box::new(None::<String>),
        }
    }

    fn text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(i) => i.to_string(),
            Cell::Null => String::new(),
        }
    }

    fn int(&self) -> i64 {
        match self {
            Cell::Int(i) => *i,
            _ => 0,
        }
    }
}

type Row = Vec<Cell>;

/// One table after a copy: its rows and their hash on each side.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TableCheck {
    pub table: String,
    pub source_rows: u64,
    pub target_rows: u64,
    /// SHA-256 over the table's rows in key order (each row's values as a JSON array).
    pub source_sha256: String,
    pub target_sha256: String,
}

impl TableCheck {
    pub fn matches(&self) -> bool {
        self.source_rows == self.target_rows && self.source_sha256 == self.target_sha256
    }
}

/// What reading both stores back found.
#[derive(Clone, Debug, Serialize)]
pub struct CopyCheck {
    pub tables: Vec<TableCheck>,
    /// Artifacts whose contents were read back from both sides.
    pub artifacts_checked: u64,
    /// Artifacts whose contents read back differently (by SHA-256), `req/name vN`.
    pub artifact_mismatches: Vec<String>,
}

impl CopyCheck {
    /// Every table and every artifact's contents match.
    pub fn verified(&self) -> bool {
        self.tables.iter().all(TableCheck::matches) && self.artifact_mismatches.is_empty()
    }
}

/// What a copy did, and what reading both sides back found.
#[derive(Clone, Debug, Serialize)]
pub struct CopyReport {
    #[serde(flatten)]
    pub check: CopyCheck,
    /// Bytes of artifact contents copied.
    pub artifact_bytes: u64,
    /// Artifacts whose contents were already gone from the source (their rows were
    /// copied; reading them answers "gone" on both sides).
    pub artifacts_without_contents: Vec<String>,
    /// The highest event seq copied: later events on the target are above it.
    pub last_seq: i64,
}

impl CopyReport {
    /// Every table and every artifact's contents match.
    pub fn verified(&self) -> bool {
        self.check.verified()
    }
}

impl Store {
    /// Copies every record of this (SQLite) store into `target` (an empty
    /// PostgreSQL store), then reads both back and compares them (see
    /// [`CopyReport::verified`]). Refused, with nothing written, while a worker
    /// holds either store or when `target` already holds requests or events. The
    /// source is never changed; both stay held (no worker may start on either)
    /// until the copy ends.
    pub async fn copy_into(
        &self,
        target: &Store,
        now: Timestamp,
    ) -> Result<CopyReport, StoreError> {
        let (Backend::Sqlite(src), Backend::Postgres(dst)) = (&self.backend, &target.backend)
        else {
            return Err(StoreError::Io(
                "a store can only be copied from SQLite into PostgreSQL".into(),
            ));
        };
        if let Some(h) = src.worker_holder().await? {
            return Err(StoreError::Locked(format!(
                "a worker holds the SQLite store {} (pid {}, worker {}, since {}): stop it \
                 first; the store cannot be copied while it changes",
                src.dir().display(),
                h.pid,
                h.worker_id,
                h.since
            )));
        }
        // Held until the copy ends: no worker starts on the source meanwhile.
        let _held = src.lock_worker(&WorkerId::generate(), now).await?;
        // Held exclusively until the copy ends: no worker starts on the target either.
        let Some(_held_target) = dst.lock_exclusive().await? else {
            let who = match dst.worker_holder().await? {
                Some(h) => format!(" (pid {}, worker {})", h.pid, h.worker_id),
                None => String::new(),
            };
            return Err(StoreError::Locked(format!(
                "a worker holds the PostgreSQL store {}{who}: stop every worker using it first",
                dst.location(),
            )));
        };
        let row = dst
            .read_one(
                "SELECT (SELECT COUNT(*) FROM requests), (SELECT COUNT(*) FROM events)",
                &[],
            )
            .await?;
        let (requests, events): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        if requests > 0 || events > 0 {
            return Err(StoreError::Locked(format!(
                "the target is not empty: {} holds {requests} requests and {events} events; \
                 copy into a new schema (set `--schema`), or drop this one first",
                dst.location()
            )));
        }

        let unknown = unknown_columns(src, dst).await?;
        if !unknown.is_empty() {
            return Err(StoreError::Io(format!(
                "this version cannot copy every column of the store: {} not known to the copy \
                 (was the store written by a newer agent-harness?)",
                unknown.join(", ")
            )));
        }
        for t in TABLES.iter().filter(|t| t.name != "artifacts") {
            copy_table(src, dst, t).await?;
        }
        let (artifact_bytes, without) = copy_artifacts(src, dst).await?;
        let last_seq = advance(dst).await?;

        Ok(CopyReport {
            check: self.compare_copy(target).await?,
            artifact_bytes,
            artifacts_without_contents: without,
            last_seq,
        })
    }

    /// Reads this (SQLite) store and `target` (PostgreSQL) back and compares them:
    /// each copied table's rows in key order hash the same, and each artifact's
    /// contents read through either store hash the same. Changes nothing.
    pub async fn compare_copy(&self, target: &Store) -> Result<CopyCheck, StoreError> {
        let (Backend::Sqlite(src), Backend::Postgres(dst)) = (&self.backend, &target.backend)
        else {
            return Err(StoreError::Io(
                "a copy is compared from SQLite to PostgreSQL".into(),
            ));
        };
        let mut tables = Vec::new();
        for t in TABLES {
            let (source_rows, source_sha256) = sqlite_digest(src, t).await?;
            let (target_rows, target_sha256) = pg_digest(dst, t).await?;
            tables.push(TableCheck {
                table: t.name.to_string(),
                source_rows,
                target_rows,
                source_sha256,
                target_sha256,
            });
        }
        let (artifacts_checked, artifact_mismatches) = check_artifacts(src, dst).await?;
        Ok(CopyCheck {
            tables,
            artifacts_checked,
            artifact_mismatches,
        })
    }
}

/// The rows of `t` after key `after` (all of them from the start with `None`), at
/// most `limit`, in key order.
async fn page(
    s: &SqliteStore,
    t: &'static Table,
    after: Option<&[Cell]>,
    limit: usize,
) -> Result<Vec<Row>, StoreError> {
    let key_list: Vec<&str> = t.cols[..t.key].iter().map(|c| c.0).collect();
    let key_list = key_list.join(", ");
    let cond = match after {
        None => String::new(),
        Some(_) => {
            let ph: Vec<String> = (1..=t.key).map(|i| format!("?{i}")).collect();
            format!("WHERE ({key_list}) > ({})", ph.join(", "))
        }
    };
    let sql = format!(
        "{} {cond} ORDER BY {key_list} LIMIT {limit}",
        sqlite_select(t)
    );
    let params: Vec<rusqlite::types::Value> = after
        .map(|a| a.iter().map(Cell::sqlite).collect())
        .unwrap_or_default();
    s.read(move |c| {
        let mut stmt = c.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(sqlite_row(t, r)?);
        }
        Ok(out)
    })
    .await
}

fn sqlite_select(t: &Table) -> String {
    let cols: Vec<&str> = t.cols.iter().map(|c| c.0).collect();
    format!("SELECT {} FROM {}", cols.join(", "), t.name)
}

fn sqlite_row(t: &Table, r: &rusqlite::Row<'_>) -> Result<Row, StoreError> {
    let mut row = Vec::with_capacity(t.cols.len());
    for (i, (col, _)) in t.cols.iter().enumerate() {
        row.push(match r.get_ref(i)? {
            rusqlite::types::ValueRef::Null => Cell::Null,
            rusqlite::types::ValueRef::Integer(v) => Cell::Int(v),
            rusqlite::types::ValueRef::Text(v) => {
                Cell::Text(String::from_utf8_lossy(v).into_owned())
            }
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "{}.{col} holds neither text nor an integer",
                    t.name
                )));
            }
        });
    }
    Ok(row)
}

fn pg_row(t: &Table, r: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut row = Vec::with_capacity(t.cols.len());
    for (i, (_, k)) in t.cols.iter().enumerate() {
        row.push(match k {
            Int => r
                .try_get::<_, Option<i64>>(i)?
                .map_or(Cell::Null, Cell::Int),
            Text => r
                .try_get::<_, Option<String>>(i)?
                .map_or(Cell::Null, Cell::Text),
        });
    }
    Ok(row)
}

/// Adds one row to a table's hash.
fn hash_row(h: &mut Sha256, row: &Row) {
    let v = serde_json::Value::Array(row.iter().map(Cell::json).collect());
    h.update(v.to_string().as_bytes());
    h.update(b"\n");
}

/// The row count and SHA-256 of `t` in the SQLite store (one pass in key order).
async fn sqlite_digest(s: &SqliteStore, t: &'static Table) -> Result<(u64, String), StoreError> {
    let key_list: Vec<&str> = t.cols[..t.key].iter().map(|c| c.0).collect();
    let sql = format!("{} ORDER BY {}", sqlite_select(t), key_list.join(", "));
    s.read(move |c| {
        let mut stmt = c.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        let (mut h, mut n) = (Sha256::new(), 0u64);
        while let Some(r) = rows.next()? {
            hash_row(&mut h, &sqlite_row(t, r)?);
            n += 1;
        }
        Ok((n, hex::encode(h.finalize())))
    })
    .await
}

/// The row count and SHA-256 of `t` in the PostgreSQL store: the same rows in the
/// same order (text keys in byte order, as SQLite compares them), streamed.
async fn pg_digest(p: &PgStore, t: &'static Table) -> Result<(u64, String), StoreError> {
    use futures_util::TryStreamExt;
    let cols: Vec<String> = t
        .cols
        .iter()
        .map(|(c, k)| match k {
            Int => format!("{c}::bigint"),
            Text => c.to_string(),
        })
        .collect();
    let ordered: Vec<String> = t.cols[..t.key]
        .iter()
        .map(|(c, k)| match k {
            Int => c.to_string(),
            Text => format!("{c} COLLATE \"C\""),
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {}",
        cols.join(", "),
        t.name,
        ordered.join(", ")
    );
    let c = p.client().await?;
    let stream = c.query_raw(&sql, std::iter::empty::<i64>()).await?;
    futures_util::pin_mut!(stream);
    let (mut h, mut n) = (Sha256::new(), 0u64);
    while let Some(r) = stream.try_next().await? {
        hash_row(&mut h, &pg_row(t, &r)?);
        n += 1;
    }
    Ok((n, hex::encode(h.finalize())))
}

/// The insert of one row of `t` on PostgreSQL.
fn insert_sql(t: &Table) -> String {
    let cols: Vec<&str> = t.cols.iter().map(|c| c.0).collect();
    let ph: Vec<String> = t
        .cols
        .iter()
        .enumerate()
        .map(|(i, (_, k))| match k {
            Int => format!("${}::bigint", i + 1),
            Text => format!("${}::text", i + 1),
        })
        .collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        t.name,
        cols.join(", "),
        ph.join(", ")
    )
}

fn params_of(t: &Table, row: &Row) -> Vec<Box<dyn ToSql + Sync + Send>> {
    row.iter().zip(t.cols).map(|(c, (_, k))| c.pg(*k)).collect()
}

/// Copies every row of `t`, a batch per transaction on the target.
async fn copy_table(src: &SqliteStore, dst: &PgStore, t: &'static Table) -> Result<(), StoreError> {
    let sql = insert_sql(t);
    let mut after: Option<Row> = None;
    loop {
        let rows = page(src, t, after.as_deref(), BATCH).await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = Some(last[..t.key].to_vec());
        let params: Vec<Vec<Box<dyn ToSql + Sync + Send>>> =
            rows.iter().map(|r| params_of(t, r)).collect();
        let refs: Vec<Vec<&(dyn ToSql + Sync)>> = params
            .iter()
            .map(|p| {
                p.iter()
                    .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                    .collect()
            })
            .collect();
        in_tx!(dst, |tx| {
            let stmts: Vec<Stmt<'_>> = refs.iter().map(|p| Stmt::exec(&sql, p)).collect();
            tx.pipeline(&stmts).await?;
            Ok(())
        })?;
        if rows.len() < BATCH {
            return Ok(());
        }
    }
}

/// An artifact row as a record.
fn artifact_of(r: &Row) -> Artifact {
    Artifact {
        id: ArtifactId::from_trusted(r[0].text()),
        request_id: RequestId::from_trusted(r[1].text()),
        session_id: SessionId::from_trusted(r[2].text()),
        name: r[3].text(),
        version: r[4].int() as u32,
        media_type: r[5].text(),
        size: r[6].int() as u64,
        sha256: r[7].text(),
        created_at: Timestamp(r[8].int()),
    }
}

fn artifact_label(a: &Artifact) -> String {
    format!("{}/{} v{}", a.request_id, a.name, a.version)
}

const ARTIFACTS: &Table = &TABLES[5];

/// Copies the artifact rows with their version numbers and contents; returns the
/// bytes copied and the artifacts whose contents the source no longer has.
async fn copy_artifacts(
    src: &SqliteStore,
    dst: &PgStore,
) -> Result<(u64, Vec<String>), StoreError> {
    let t = ARTIFACTS;
    let sql = insert_sql(t);
    let mut bytes_copied = 0u64;
    let mut without = Vec::new();
    let mut after: Option<Row> = None;
    loop {
        let rows = page(src, t, after.as_deref(), ARTIFACT_BATCH).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last[..t.key].to_vec());
        let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
        let mut versions: Vec<(String, String, i64, String)> = Vec::new();
        for r in &rows {
            let a = artifact_of(r);
            match src.read_artifact(&a).await? {
                Some(bytes) => {
                    let sha = hex::encode(Sha256::digest(&bytes));
                    if sha != a.sha256 {
                        return Err(StoreError::Corrupt(format!(
                            "artifact {}: its file's contents do not match the SHA-256 its \
                             row records ({} != {}); the copy stopped",
                            artifact_label(&a),
                            sha,
                            a.sha256
                        )));
                    }
                    bytes_copied += bytes.len() as u64;
                    blobs.push((sha, bytes));
                }
                None => without.push(artifact_label(&a)),
            }
            versions.push((
                a.request_id.to_string(),
                a.name.clone(),
                a.version as i64,
                a.sha256.clone(),
            ));
        }
        let params: Vec<Vec<Box<dyn ToSql + Sync + Send>>> =
            rows.iter().map(|r| params_of(t, r)).collect();
        let refs: Vec<Vec<&(dyn ToSql + Sync)>> = params
            .iter()
            .map(|p| {
                p.iter()
                    .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                    .collect()
            })
            .collect();
        let blob_refs: Vec<[&(dyn ToSql + Sync); 2]> =
            blobs.iter().map(|(s, b)| [s as _, b as _]).collect();
        let version_refs: Vec<[&(dyn ToSql + Sync); 4]> = versions
            .iter()
            .map(|(r, n, v, s)| [r as _, n as _, v as _, s as _])
            .collect();
        in_tx!(dst, |tx| {
            let mut stmts: Vec<Stmt<'_>> = Vec::new();
            for p in &blob_refs {
                stmts.push(Stmt::exec(
                    "INSERT INTO artifact_blobs (sha256, bytes) VALUES ($1, $2) \
                     ON CONFLICT (sha256) DO NOTHING",
                    p,
                ));
            }
            for p in &version_refs {
                stmts.push(Stmt::exec(
                    "INSERT INTO artifact_versions (request_id, name, version, sha256) \
                     VALUES ($1, $2, $3, $4)",
                    p,
                ));
            }
            for p in &refs {
                stmts.push(Stmt::exec(&sql, p));
            }
            tx.pipeline(&stmts).await?;
            Ok(())
        })?;
        if rows.len() < ARTIFACT_BATCH {
            break;
        }
    }
    Ok((bytes_copied, without))
}

/// Moves the target's counters past the copied rows: the admission order, the
/// claim order, and the transaction ids event seqs derive from (each new event's
/// seq is its transaction id << 16, so transaction ids are used up until that is
/// above every copied seq). Returns the highest copied seq.
async fn advance(dst: &PgStore) -> Result<i64, StoreError> {
    let c = dst.client().await?;
    c.batch_execute(
        "SELECT setval('queue_seq', (SELECT COALESCE(MAX(queue_seq), 0) + 1 FROM requests), false); \
         SELECT setval('session_claim_seq', (SELECT COALESCE(MAX(claim_seq), 0) + 1 FROM sessions), false)",
    )
    .await?;
    let last: i64 = c
        .query_one("SELECT COALESCE(MAX(seq), 0)::bigint FROM events", &[])
        .await?
        .try_get(0)?;
    let need = (last >> 16) + 1;
    loop {
        // Each statement is a transaction of its own, and asking for its id assigns one.
        let xid: i64 = c
            .query_one("SELECT pg_current_xact_id()::text::bigint", &[])
            .await?
            .try_get(0)?;
        if xid > need {
            break;
        }
    }
    Ok(last)
}

/// Reads every artifact's contents through both backends; returns how many were
/// compared and those that differ.
async fn check_artifacts(
    src: &SqliteStore,
    dst: &PgStore,
) -> Result<(u64, Vec<String>), StoreError> {
    let mut n = 0u64;
    let mut bad = Vec::new();
    let mut after: Option<Row> = None;
    loop {
        let rows = page(src, ARTIFACTS, after.as_deref(), BATCH).await?;
        for r in &rows {
            let a = artifact_of(r);
            let hash = |b: Option<Vec<u8>>| b.map(|b| hex::encode(Sha256::digest(&b)));
            let s = hash(src.read_artifact(&a).await?);
            let d = hash(dst.read_artifact(&a).await?);
            n += 1;
            if s != d {
                bad.push(artifact_label(&a));
            }
        }
        match rows.last() {
            Some(last) if rows.len() == BATCH => after = Some(last[..1].to_vec()),
            _ => break,
        }
    }
    // By name and version (ids made in one millisecond are in no particular order).
    bad.sort();
    Ok((n, bad))
}
