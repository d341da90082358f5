//! Operator notes on PostgreSQL: the same `note.added` event as on SQLite.

use super::rows::{self, APPROVAL_COLS};
use super::{PgStore, events, in_tx, tree};
use crate::StoreError;
use crate::notes::check_approval;
use harness_core::*;

impl PgStore {
    pub(crate) async fn add_note(&self, note: Note, now: Timestamp) -> Result<Event, StoreError> {
        in_tx!(self, |tx| {
            let request = tree::get_request(tx, &note.request_id).await?;
            if let Some(id) = &note.approval_id {
                let row = tx
                    .query_opt(
                        &format!("SELECT {APPROVAL_COLS} FROM approvals WHERE id = $1"),
                        &[&id.as_str()],
                    )
                    .await?
                    .ok_or_else(|| StoreError::NotFound {
                        kind: "approval",
                        id: id.to_string(),
                    })?;
                check_approval(&rows::approval(&row)?, &request)?;
            }
            let event = note.event(&request);
            let seq = events::append(tx, now, std::slice::from_ref(&event)).await?[0];
            Ok(event.committed(seq, now))
        })
    }
}
