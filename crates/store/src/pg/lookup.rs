//! Ids from a unique prefix on PostgreSQL.

use super::PgStore;
use crate::StoreError;
use crate::lookup::{IdKind, check_prefix};

impl PgStore {
    pub(crate) async fn ids_with_prefix(
        &self,
        kind: IdKind,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        check_prefix(prefix)?;
        let rows = self
            .read_rows(
                &format!(
                    "SELECT id FROM {} WHERE starts_with(id, $1) ORDER BY id LIMIT $2",
                    kind.table()
                ),
                &[&prefix, &(limit as i64)],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }
}
