//! Retention: prune what finished requests left behind, then compact.

use crate::{Store, StoreError};
use harness_core::Timestamp;
use rusqlite::{Connection, params};
use serde::Serialize;

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

impl Store {
    /// Deletes every record of root requests that finished before `cutoff` (with their
    /// delegated children), their artifact files, and sessions left empty; then
    /// checkpoints the WAL and VACUUMs. With `dry_run`, only counts.
    pub async fn prune(&self, cutoff: Timestamp, dry_run: bool) -> Result<PruneReport, StoreError> {
        let before = self.disk_bytes();
        let mut report = self.write(move |c| prune(c, cutoff, dry_run)).await?;
        report.bytes_before = before;
        if !dry_run {
            for folder in [
                crate::artifacts::ARTIFACTS_DIR,
                crate::artifacts::VERSIONS_DIR,
            ] {
                let dir = self.dir().join(folder);
                for id in doomed_dirs(&dir, &self.request_ids_on_disk(&dir).await?) {
                    let _ = std::fs::remove_dir_all(dir.join(id));
                }
            }
            self.write_raw(|c| {
                c.execute_batch(
                    "PRAGMA wal_checkpoint(TRUNCATE); VACUUM; PRAGMA wal_checkpoint(TRUNCATE);",
                )?;
                Ok(())
            })
            .await?;
        }
        report.bytes_after = self.disk_bytes();
        Ok(report)
    }

    fn disk_bytes(&self) -> u64 {
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

fn doomed_dirs(_dir: &std::path::Path, gone: &[String]) -> Vec<String> {
    gone.iter()
        .filter(|n| n.starts_with("req_"))
        .cloned()
        .collect()
}

fn prune(c: &Connection, cutoff: Timestamp, dry_run: bool) -> Result<PruneReport, StoreError> {
    c.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS doomed (id TEXT PRIMARY KEY); DELETE FROM temp.doomed;",
    )?;
    c.execute(
        "INSERT INTO temp.doomed (id) WITH RECURSIVE tree(id) AS ( \
           SELECT id FROM requests WHERE parent_id IS NULL AND finished_at IS NOT NULL AND finished_at < ?1 \
             AND status IN ('completed', 'failed', 'cancelled') \
           UNION SELECT r.id FROM requests r JOIN tree t ON r.parent_id = t.id) SELECT id FROM tree",
        params![cutoff.0],
    )?;
    let n = |sql: &str| -> Result<u64, StoreError> {
        Ok(c.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
    };
    let mut report = PruneReport {
        requests: n("SELECT COUNT(*) FROM temp.doomed")?,
        steps: n("SELECT COUNT(*) FROM steps WHERE request_id IN (SELECT id FROM temp.doomed)")?,
        events: n("SELECT COUNT(*) FROM events WHERE request_id IN (SELECT id FROM temp.doomed)")?,
        approvals: n(
            "SELECT COUNT(*) FROM approvals WHERE request_id IN (SELECT id FROM temp.doomed)",
        )?,
        artifacts: n(
            "SELECT COUNT(*) FROM artifacts WHERE request_id IN (SELECT id FROM temp.doomed)",
        )?,
        artifact_bytes: n(
            "SELECT COALESCE(SUM(size), 0) FROM artifacts WHERE request_id IN (SELECT id FROM temp.doomed)",
        )?,
        ..PruneReport::default()
    };
    if dry_run {
        return Ok(report);
    }
    for table in ["steps", "events", "approvals", "artifacts"] {
        c.execute(
            &format!("DELETE FROM {table} WHERE request_id IN (SELECT id FROM temp.doomed)"),
            [],
        )?;
    }
    c.execute(
        "DELETE FROM requests WHERE id IN (SELECT id FROM temp.doomed)",
        [],
    )?;
    report.sessions = c.execute(
        "DELETE FROM sessions WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.session_id = sessions.id)",
        [],
    )? as u64;
    Ok(report)
}
