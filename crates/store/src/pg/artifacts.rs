//! Artifacts on PostgreSQL: contents in the database, addressed by their SHA-256
//! (`artifact_blobs`), so every worker and view on any host reads them, one backup
//! holds everything, and equal contents are stored once. A version number is
//! taken when the contents are stored (`artifact_versions`, whose primary key makes
//! two writes of one name take different numbers); the row naming it commits with
//! the step.

use super::rows::{self, ARTIFACT_COLS};
use super::{PgStore, Stmt, in_tx};
use crate::StoreError;
use crate::artifacts::{MAX_ARTIFACT_BYTES, validate_artifact_name};
use harness_core::*;
use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;

pub(super) const INSERT: &str = "INSERT INTO artifacts (id, request_id, session_id, name, version, \
     media_type, size, sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// The owned parameters of an artifact row.
pub(super) struct ArtifactRow {
    id: String,
    request_id: String,
    session_id: String,
    name: String,
    version: i64,
    media_type: String,
    size: i64,
    sha256: String,
    created_at: i64,
}

impl ArtifactRow {
    pub(super) fn of(a: &Artifact) -> ArtifactRow {
        ArtifactRow {
            id: a.id.to_string(),
            request_id: a.request_id.to_string(),
            session_id: a.session_id.to_string(),
            name: a.name.clone(),
            version: a.version as i64,
            media_type: a.media_type.clone(),
            size: a.size as i64,
            sha256: a.sha256.clone(),
            created_at: a.created_at.0,
        }
    }

    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.id,
            &self.request_id,
            &self.session_id,
            &self.name,
            &self.version,
            &self.media_type,
            &self.size,
            &self.sha256,
            &self.created_at,
        ]
    }
}

impl PgStore {
    pub(crate) async fn put_artifact(
        &self,
        request: &RequestId,
        session: &SessionId,
        name: &str,
        media_type: &str,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<Artifact, StoreError> {
        validate_artifact_name(name)?;
        if bytes.len() > MAX_ARTIFACT_BYTES {
            return Err(StoreError::Artifact(format!(
                "artifact `{name}` is {} bytes; the limit is {MAX_ARTIFACT_BYTES}",
                bytes.len()
            )));
        }
        let sha256 = hex::encode(Sha256::digest(bytes));
        let version: i64 = in_tx!(self, |tx| {
            tx.pipeline(&[
                Stmt::exec(
                    "INSERT INTO artifact_blobs (sha256, bytes) VALUES ($1, $2) \
                     ON CONFLICT (sha256) DO NOTHING",
                    &[&sha256, &bytes],
                ),
                // Two writes of one name at once take their numbers one after the other.
                Stmt::query(
                    "SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2))",
                    &[&request.as_str(), &name],
                ),
            ])
            .await?;
            let row = tx
                .query_one(
                    "INSERT INTO artifact_versions (request_id, name, version, sha256) \
                     SELECT $1, $2, COALESCE(MAX(version), 0) + 1, $3 FROM artifact_versions \
                     WHERE request_id = $1 AND name = $2 RETURNING version",
                    &[&request.as_str(), &name, &sha256],
                )
                .await?;
            Ok(row.try_get::<_, i64>(0)?)
        })?;
        Ok(Artifact {
            id: ArtifactId::generate(),
            request_id: request.clone(),
            session_id: session.clone(),
            name: name.to_string(),
            version: version as u32,
            media_type: media_type.to_string(),
            size: bytes.len() as u64,
            sha256,
            created_at: now,
        })
    }

    pub(crate) async fn read_artifact(&self, a: &Artifact) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self
            .read_opt(
                "SELECT b.bytes FROM artifacts a JOIN artifact_blobs b ON b.sha256 = a.sha256 \
                 WHERE a.id = $1",
                &[&a.id.as_str()],
            )
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    pub(crate) async fn get_artifact(&self, id: &ArtifactId) -> Result<Artifact, StoreError> {
        let row = self
            .read_opt(
                &format!("SELECT {ARTIFACT_COLS} FROM artifacts WHERE id = $1"),
                &[&id.as_str()],
            )
            .await?;
        match row {
            Some(r) => rows::artifact(&r),
            None => Err(StoreError::NotFound {
                kind: "artifact",
                id: id.to_string(),
            }),
        }
    }

    pub(crate) async fn artifacts(&self, request: &RequestId) -> Result<Vec<Artifact>, StoreError> {
        let rows = self
            .read_rows(
                &format!(
                    "SELECT {ARTIFACT_COLS} FROM artifacts WHERE request_id = $1 \
                     ORDER BY created_at, name, version"
                ),
                &[&request.as_str()],
            )
            .await?;
        rows::all(rows, rows::artifact)
    }
}
