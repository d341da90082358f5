//! Retention on PostgreSQL: prune finished trees a few at a time (row locks only:
//! commits of other requests never wait for it); `VACUUM` only on request.

use super::{PgStore, in_tx};
use crate::StoreError;
use crate::maintenance::PruneReport;
use harness_core::Timestamp;

/// Root requests pruned per transaction.
const PRUNE_ROOTS: i64 = 50;

/// A root request a pass may prune.
const PRUNABLE: &str = "parent_id IS NULL AND finished_at IS NOT NULL AND finished_at < $1 \
     AND status IN ('completed', 'failed', 'cancelled')";

const TABLES: &[&str] = &[
    "sessions",
    "requests",
    "steps",
    "approvals",
    "events",
    "artifacts",
    "artifact_versions",
    "artifact_blobs",
    "workers",
];

impl PgStore {
    pub(crate) async fn prune(
        &self,
        cutoff: Timestamp,
        dry_run: bool,
        vacuum: bool,
    ) -> Result<PruneReport, StoreError> {
        let before = self.schema_bytes().await?;
        let mut report = if dry_run {
            self.count_prunable(cutoff).await?
        } else {
            let mut total = PruneReport::default();
            loop {
                let part = in_tx!(self, |tx| {
                    let roots: Vec<String> = tx
                        .query(
                            &format!(
                                "SELECT id FROM requests WHERE {PRUNABLE} ORDER BY finished_at \
                                 LIMIT $2 FOR UPDATE SKIP LOCKED"
                            ),
                            &[&cutoff.0, &PRUNE_ROOTS],
                        )
                        .await?
                        .iter()
                        .map(|r| r.try_get(0))
                        .collect::<Result<_, _>>()?;
                    if roots.is_empty() {
                        return Ok(None);
                    }
                    let row = tx
                        .query_one(
                            "WITH RECURSIVE tree(id) AS (SELECT unnest($1::text[]) \
                               UNION ALL SELECT r.id FROM requests r JOIN tree t ON r.parent_id = t.id), \
                             st AS (DELETE FROM steps WHERE request_id IN (SELECT id FROM tree) RETURNING 1), \
                             ev AS (DELETE FROM events WHERE request_id IN (SELECT id FROM tree) RETURNING 1), \
                             ap AS (DELETE FROM approvals WHERE request_id IN (SELECT id FROM tree) RETURNING 1), \
                             ar AS (DELETE FROM artifacts WHERE request_id IN (SELECT id FROM tree) RETURNING sha256, size), \
                             av AS (DELETE FROM artifact_versions WHERE request_id IN (SELECT id FROM tree) RETURNING sha256), \
                             rq AS (DELETE FROM requests WHERE id IN (SELECT id FROM tree) RETURNING session_id) \
                             SELECT (SELECT COUNT(*) FROM rq), (SELECT COUNT(*) FROM st), \
                                    (SELECT COUNT(*) FROM ev), (SELECT COUNT(*) FROM ap), \
                                    (SELECT COUNT(*) FROM ar), (SELECT COALESCE(SUM(size), 0)::bigint FROM ar), \
                                    ARRAY(SELECT DISTINCT session_id FROM rq), \
                                    ARRAY(SELECT sha256 FROM ar UNION SELECT sha256 FROM av)",
                            &[&roots],
                        )
                        .await?;
                    let n = |i: usize| -> Result<u64, StoreError> {
                        Ok(row.try_get::<_, i64>(i)? as u64)
                    };
                    let sessions: Vec<String> = row.try_get(6)?;
                    let shas: Vec<String> = row.try_get(7)?;
                    let emptied = tx
                        .execute(
                            "DELETE FROM sessions s WHERE s.id = ANY($1) \
                             AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.session_id = s.id)",
                            &[&sessions],
                        )
                        .await?;
                    // Contents no row names any more (equal contents may still be named
                    // by another request's artifact).
                    tx.execute(
                        "DELETE FROM artifact_blobs b WHERE b.sha256 = ANY($1) \
                         AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.sha256 = b.sha256) \
                         AND NOT EXISTS (SELECT 1 FROM artifact_versions v WHERE v.sha256 = b.sha256)",
                        &[&shas],
                    )
                    .await?;
                    Ok(Some(PruneReport {
                        requests: n(0)?,
                        steps: n(1)?,
                        events: n(2)?,
                        approvals: n(3)?,
                        artifacts: n(4)?,
                        artifact_bytes: n(5)?,
                        sessions: emptied,
                        ..PruneReport::default()
                    }))
                })?;
                match part {
                    Some(p) => total.add(&p),
                    None => break total,
                }
            }
        };
        if vacuum && !dry_run {
            let c = self.client().await?;
            for table in TABLES {
                c.simple_query(&format!("VACUUM (ANALYZE) {table}")).await?;
            }
        }
        report.bytes_before = before;
        report.bytes_after = self.schema_bytes().await?;
        Ok(report)
    }

    async fn schema_bytes(&self) -> Result<u64, StoreError> {
        let row = self
            .read_one(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
                 WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'm')",
                &[],
            )
            .await?;
        Ok(row.try_get::<_, i64>(0)? as u64)
    }

    async fn count_prunable(&self, cutoff: Timestamp) -> Result<PruneReport, StoreError> {
        let in_tree = "request_id IN (SELECT id FROM tree)";
        let row = self
            .read_one(
                &format!(
                    "WITH RECURSIVE tree(id) AS (SELECT id FROM requests WHERE {PRUNABLE} \
                       UNION ALL SELECT r.id FROM requests r JOIN tree t ON r.parent_id = t.id) \
                     SELECT (SELECT COUNT(*) FROM tree), \
                            (SELECT COUNT(*) FROM steps WHERE {in_tree}), \
                            (SELECT COUNT(*) FROM events WHERE {in_tree}), \
                            (SELECT COUNT(*) FROM approvals WHERE {in_tree}), \
                            (SELECT COUNT(*) FROM artifacts WHERE {in_tree}), \
                            (SELECT COALESCE(SUM(size), 0)::bigint FROM artifacts WHERE {in_tree})"
                ),
                &[&cutoff.0],
            )
            .await?;
        let n = |i: usize| -> Result<u64, StoreError> { Ok(row.try_get::<_, i64>(i)? as u64) };
        Ok(PruneReport {
            requests: n(0)?,
            steps: n(1)?,
            events: n(2)?,
            approvals: n(3)?,
            artifacts: n(4)?,
            artifact_bytes: n(5)?,
            ..PruneReport::default()
        })
    }
}
