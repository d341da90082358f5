//! Operator notes on a request or one of its approvals: a `note.added` event,
//! committed alone. A note decides nothing; it is part of the record (views,
//! event streams and evidence packages show it).

use crate::{SqliteStore, StoreError, events, requests};
use harness_core::*;

impl SqliteStore {
    pub async fn add_note(&self, note: Note, now: Timestamp) -> Result<Event, StoreError> {
        self.write(move |c| {
            let request = requests::get_request(c, &note.request_id)?;
            if let Some(a) = &note.approval_id {
                check_approval(&crate::approvals::get(c, a)?, &request)?;
            }
            let event = note.event(&request);
            let seq = events::append(c, now, std::slice::from_ref(&event))?[0];
            Ok(event.committed(seq, now))
        })
        .await
    }
}

/// An approval named with a note must be one of the request's own.
pub(crate) fn check_approval(a: &Approval, request: &Request) -> Result<(), StoreError> {
    if a.request_id != request.id {
        return Err(StoreError::ApprovalMismatch {
            id: a.id.to_string(),
            field: "request",
            actual: a.request_id.to_string(),
            given: request.id.to_string(),
        });
    }
    Ok(())
}
