//! Retention: prune what finished requests left behind; compact only when asked.
//!
//! Pruning runs beside a live worker (in another process), so it never holds the
//! write lock for long: each transaction deletes at most [`PRUNE_BATCH_ROWS`] rows
//! and stops after about [`PRUNE_TX_TIME`], then the lock is left free for [`PRUNE_PAUSE`], longer than a waiting writer's
//! longest retry pause, so every waiting commit gets in between two prune
//! transactions. VACUUM rewrites the whole file under the lock, so it runs only on
//! request (the engine refuses it while a worker holds the workspace).

use crate::{SqliteStore, StoreError};
use harness_core::Timestamp;
use rusqlite::{Connection, params};
use serde::Serialize;
use std::time::Duration;

/// Most rows one prune transaction deletes ...
const PRUNE_BATCH_ROWS: usize = 2_000;
/// ... and it stops early once it has run this long (checked every [`PRUNE_CHUNK`] rows).
const PRUNE_TX_TIME: Duration = Duration::from_millis(25);
const PRUNE_CHUNK: usize = 200;
/// Root requests pruned per pass (their trees are re-read in every transaction).
const PRUNE_ROOTS: usize = 100;
/// The lock is left free this long between prune transactions: more than twice the
/// writer's longest retry pause ([`crate::writer::MAX_RETRY_PAUSE`]).
const PRUNE_PAUSE: Duration = Duration::from_millis(20);

const _: () = assert!(PRUNE_PAUSE.as_millis() > 2 * crate::writer::MAX_RETRY_PAUSE.as_millis());

/// A request a pass may prune: a finished root (`+status`: found through the
/// `finished_at` index, oldest first, not by scanning every completed request).
const PRUNABLE: &str = "parent_id IS NULL AND finished_at IS NOT NULL AND finished_at < ?1 \
     AND +status IN ('completed', 'failed', 'cancelled')";

/// What one maintenance pass removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    pub requests: u64,
    pub steps: u64,
    pub events: u64,
    pub approvals: u64,
    pub artifacts: u64,
    pub artifact_bytes: u64,
    pub sessions: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl PruneReport {
    pub(crate) fn add(&mut self, o: &PruneReport) {
        self.requests += o.requests;
        self.steps += o.steps;
        self.events += o.events;
        self.approvals += o.approvals;
        self.artifacts += o.artifacts;
        self.artifact_bytes += o.artifact_bytes;
        self.sessions += o.sessions;
    }
}

impl SqliteStore {
    /// Deletes every record of root requests that finished before `cutoff` (with their
    /// delegated children), their artifact files, and sessions left empty, in short
    /// transactions that leave the lock free between them (safe beside a running
    /// worker). With `vacuum`, then checkpoints the WAL and VACUUMs, which holds the
    /// write lock for as long as rewriting the file takes. With `dry_run`, only counts.
    pub async fn prune(
        &self,
        cutoff: Timestamp,
        dry_run: bool,
        vacuum: bool,
    ) -> Result<PruneReport, StoreError> {
        let before = self.disk_bytes();
        let mut report = if dry_run {
            self.read(move |c| count_prunable(c, cutoff)).await?
        } else {
            self.prune_in_batches(cutoff).await?
        };
        report.bytes_before = before;
        if !dry_run {
            for folder in [
                crate::artifacts::ARTIFACTS_DIR,
                crate::artifacts::VERSIONS_DIR,
            ] {
                let dir = self.dir().join(folder);
                for id in doomed_dirs(&self.request_ids_on_disk(&dir).await?) {
                    let _ = std::fs::remove_dir_all(dir.join(id));
                }
            }
            if vacuum {
                self.write_raw(|c| {
                    c.execute_batch(
                        "PRAGMA wal_checkpoint(TRUNCATE); VACUUM; PRAGMA wal_checkpoint(TRUNCATE);",
                    )?;
                    Ok(())
                })
                .await?;
                // The file is smaller now, legitimately: lower its recorded floor.
                let (dir, len) = (
                    self.dir().to_path_buf(),
                    crate::sqlite::file_len(self.db_path()),
                );
                tokio::task::spawn_blocking(move || {
                    crate::sidecar::update(&dir, len, |k| {
                        k.min_db_bytes = len;
                        k.seen_at = harness_core::Clock::now(&harness_core::SystemClock);
                    })
                })
                .await
                .map_err(|e| {
                    StoreError::Io(format!("recording the compacted size failed: {e}"))
                })??;
            }
        }
        report.bytes_after = self.disk_bytes();
        Ok(report)
    }

    async fn prune_in_batches(&self, cutoff: Timestamp) -> Result<PruneReport, StoreError> {
        let mut total = PruneReport::default();
        loop {
            let roots: Vec<String> = self
                .read(move |c| {
                    let mut stmt = c.prepare_cached(&format!(
                        "SELECT id FROM requests WHERE {PRUNABLE} \
                         ORDER BY finished_at LIMIT {PRUNE_ROOTS}"
                    ))?;
                    let ids = stmt.query_map([cutoff.0], |r| r.get(0))?;
                    Ok(ids.collect::<Result<_, _>>()?)
                })
                .await?;
            if roots.is_empty() {
                return Ok(total);
            }
            let roots = serde_json::to_string(&roots)?;
            loop {
                let roots = roots.clone();
                let (part, done) = self.write(move |c| prune_some(c, &roots, cutoff)).await?;
                total.add(&part);
                tokio::time::sleep(PRUNE_PAUSE).await;
                if done {
                    break;
                }
            }
        }
    }

    /// The database and its WAL, in bytes.
    pub(crate) fn disk_bytes(&self) -> u64 {
        let files = [
            crate::DB_FILE.to_string(),
            format!("{}-wal", crate::DB_FILE),
        ];
        files
            .iter()
            .filter_map(|f| std::fs::metadata(self.dir().join(f)).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Request folders under `artifacts/` whose request no longer exists.
    async fn request_ids_on_disk(&self, dir: &std::path::Path) -> Result<Vec<String>, StoreError> {
        let names: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT 1 FROM requests WHERE id = ?1")?;
            let mut gone = Vec::new();
            for n in names {
                if !stmt.exists([&n])? {
                    gone.push(n);
                }
            }
            Ok(gone)
        })
        .await
    }
}

fn doomed_dirs(gone: &[String]) -> Vec<String> {
    gone.iter()
        .filter(|n| n.starts_with("req_"))
        .cloned()
        .collect()
}

/// The trees (as a JSON array of ids) of those `roots` (a JSON array) that are still
/// prunable: re-read in each transaction, so a request resumed meanwhile is kept.
/// (CROSS JOIN: look the few roots up by id, not scan every finished request.)
fn tree_of(c: &Connection, roots: &str, cutoff: Timestamp) -> Result<String, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "WITH RECURSIVE tree(id) AS ( \
           SELECT r.id FROM json_each(?2) j CROSS JOIN requests r ON r.id = j.value \
             WHERE {PRUNABLE} \
           UNION SELECT r.id FROM requests r JOIN tree t ON r.parent_id = t.id) \
         SELECT json_group_array(id) FROM tree"
    ))?;
    Ok(stmt.query_row(params![cutoff.0, roots], |r| r.get(0))?)
}

/// Deletes up to [`PRUNE_BATCH_ROWS`] rows (for at most about [`PRUNE_TX_TIME`]) of
/// the trees of `roots`: their steps, events, approvals and artifacts first, and
/// once none are left, the request rows and the sessions they leave empty. Returns
/// what it deleted and whether it finished.
fn prune_some(
    c: &Connection,
    roots: &str,
    cutoff: Timestamp,
) -> Result<(PruneReport, bool), StoreError> {
    let started = std::time::Instant::now();
    let tree = tree_of(c, roots, cutoff)?;
    let mut part = PruneReport::default();
    let mut left = PRUNE_BATCH_ROWS;
    let in_tree = "request_id IN (SELECT value FROM json_each(?1))";
    // `steps` has no rowid: its rows are picked by primary key.
    let deletes: [(&str, String); 4] = [
        (
            "steps",
            format!(
                "DELETE FROM steps WHERE (request_id, idx) IN \
                 (SELECT request_id, idx FROM steps WHERE {in_tree} LIMIT ?2) RETURNING 0"
            ),
        ),
        (
            "events",
            format!(
                "DELETE FROM events WHERE rowid IN \
                 (SELECT rowid FROM events WHERE {in_tree} LIMIT ?2) RETURNING 0"
            ),
        ),
        (
            "approvals",
            format!(
                "DELETE FROM approvals WHERE rowid IN \
                 (SELECT rowid FROM approvals WHERE {in_tree} LIMIT ?2) RETURNING 0"
            ),
        ),
        (
            "artifacts",
            format!(
                "DELETE FROM artifacts WHERE rowid IN \
                 (SELECT rowid FROM artifacts WHERE {in_tree} LIMIT ?2) RETURNING size"
            ),
        ),
    ];
    for (table, sql) in &deletes {
        let mut stmt = c.prepare_cached(sql)?;
        loop {
            if left == 0 || started.elapsed() >= PRUNE_TX_TIME {
                return Ok((part, false));
            }
            let asked = left.min(PRUNE_CHUNK);
            let sizes: Vec<i64> = stmt
                .query_map(params![tree, asked as i64], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let n = sizes.len() as u64;
            left -= sizes.len();
            match *table {
                "steps" => part.steps += n,
                "events" => part.events += n,
                "approvals" => part.approvals += n,
                _ => {
                    part.artifacts += n;
                    part.artifact_bytes += sizes.iter().sum::<i64>() as u64;
                }
            }
            if sizes.len() < asked {
                break;
            }
        }
    }
    let sessions: String = c.query_row(
        "SELECT json_group_array(DISTINCT session_id) FROM requests \
         WHERE id IN (SELECT value FROM json_each(?1))",
        [&tree],
        |r| r.get(0),
    )?;
    part.requests = c.execute(
        "DELETE FROM requests WHERE id IN (SELECT value FROM json_each(?1))",
        [&tree],
    )? as u64;
    part.sessions = c.execute(
        "DELETE FROM sessions WHERE id IN (SELECT value FROM json_each(?1)) \
         AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.session_id = sessions.id)",
        [&sessions],
    )? as u64;
    Ok((part, true))
}

/// What a prune would delete, without the sessions it would leave empty.
fn count_prunable(c: &Connection, cutoff: Timestamp) -> Result<PruneReport, StoreError> {
    let in_tree = "request_id IN (SELECT id FROM tree)";
    let sql = format!(
        "WITH RECURSIVE tree(id) AS (SELECT id FROM requests WHERE {PRUNABLE} \
           UNION SELECT r.id FROM requests r JOIN tree t ON r.parent_id = t.id) \
         SELECT (SELECT COUNT(*) FROM tree), \
                (SELECT COUNT(*) FROM steps WHERE {in_tree}), \
                (SELECT COUNT(*) FROM events WHERE {in_tree}), \
                (SELECT COUNT(*) FROM approvals WHERE {in_tree}), \
                (SELECT COUNT(*) FROM artifacts WHERE {in_tree}), \
                (SELECT COALESCE(SUM(size), 0) FROM artifacts WHERE {in_tree})"
    );
    Ok(c.query_row(&sql, [cutoff.0], |r| {
        let n = |i: usize| r.get::<_, i64>(i).map(|v| v as u64);
        Ok(PruneReport {
            requests: n(0)?,
            steps: n(1)?,
            events: n(2)?,
            approvals: n(3)?,
            artifacts: n(4)?,
            artifact_bytes: n(5)?,
            ..PruneReport::default()
        })
    })?)
}
