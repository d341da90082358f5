//! Ids as an operator types them: in full, or a unique prefix of one (the short ids
//! the views print). The CLI and the MCP server look them up the same way.

use crate::{Harness, HarnessError, IdKind, StoreError};
use harness_core::*;

/// Characters of a full id after its type prefix (a ULID).
pub const FULL_ID: usize = 26;
/// The fewest characters after the type prefix a short id may have.
pub const MIN_SHORT_ID: usize = 4;

impl Harness {
    /// A request id as given: in full, or a unique prefix of one.
    pub async fn find_request_id(&self, s: &str) -> Result<RequestId, HarnessError> {
        let id = RequestId::parse(s).map_err(|e| HarnessError::InvalidInput(e.to_string()))?;
        let full = self
            .find_id(IdKind::Request, "request", RequestId::PREFIX, id.as_str())
            .await?;
        Ok(RequestId::from_trusted(full))
    }

    /// An approval id as given: in full, or a unique prefix of one.
    pub async fn find_approval_id(&self, s: &str) -> Result<ApprovalId, HarnessError> {
        let id = ApprovalId::parse(s).map_err(|e| HarnessError::InvalidInput(e.to_string()))?;
        let full = self
            .find_id(
                IdKind::Approval,
                "approval",
                ApprovalId::PREFIX,
                id.as_str(),
            )
            .await?;
        Ok(ApprovalId::from_trusted(full))
    }

    async fn find_id(
        &self,
        kind: IdKind,
        what: &str,
        prefix: &str,
        s: &str,
    ) -> Result<String, HarnessError> {
        let chars = s.len() - prefix.len();
        if chars >= FULL_ID {
            return Ok(s.to_string());
        }
        if chars < MIN_SHORT_ID {
            return Err(HarnessError::InvalidInput(format!(
                "{what} id `{s}` is too short: give at least {MIN_SHORT_ID} characters after `{prefix}`"
            )));
        }
        let found = self.store().ids_with_prefix(kind, s, 4).await?;
        match found.as_slice() {
            [one] => Ok(one.clone()),
            // As for a full id: an unknown id is not found (not bad input).
            [] => Err(StoreError::NotFound {
                kind: match kind {
                    IdKind::Request => "request",
                    IdKind::Approval => "approval",
                },
                id: s.to_string(),
            }
            .into()),
            many => Err(HarnessError::InvalidInput(format!(
                "{what} id `{s}` is ambiguous: it starts {}{}; give more characters",
                many[..many.len().min(3)].join(", "),
                if many.len() > 3 { ", …" } else { "" }
            ))),
        }
    }
}
