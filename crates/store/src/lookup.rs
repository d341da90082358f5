//! Ids from a unique prefix (`req_01m8cw42hk4j` → the request), like git's short
//! object ids: operator views print short ids; commands accept them back.

use crate::{SqliteStore, StoreError};
use rusqlite::params;

/// Which records an id prefix names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    Request,
    Approval,
}

impl IdKind {
    pub(crate) fn table(self) -> &'static str {
        match self {
            IdKind::Request => "requests",
            IdKind::Approval => "approvals",
        }
    }
}

/// A prefix holds only what ids hold (so it needs no escaping in a pattern).
pub(crate) fn check_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.is_empty()
        || !prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(StoreError::NotFound {
            kind: "id",
            id: prefix.to_string(),
        });
    }
    Ok(())
}

impl SqliteStore {
    pub async fn ids_with_prefix(
        &self,
        kind: IdKind,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        check_prefix(prefix)?;
        let pattern = format!("{prefix}*");
        self.read(move |c| {
            // GLOB is case-sensitive and uses the primary key's index.
            let mut stmt = c.prepare_cached(&format!(
                "SELECT id FROM {} WHERE id GLOB ?1 ORDER BY id LIMIT ?2",
                kind.table()
            ))?;
            let rows = stmt.query_map(params![pattern, limit as i64], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
