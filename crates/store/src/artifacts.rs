//! Artifacts: files under `<store>/artifacts/<request>/<name>`, rows in `artifacts`.
//! Names are flat: they can never escape their request's folder.

use crate::rows::{self, ARTIFACT_COLS};
use crate::{Store, StoreError};
use harness_core::*;
use rusqlite::{Connection, params};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Largest artifact accepted, in bytes.
pub const MAX_ARTIFACT_BYTES: usize = 64 * 1024 * 1024;

/// Checks that `name` is a plain file name: no separators, no `..`, no control characters.
pub fn validate_artifact_name(name: &str) -> Result<(), StoreError> {
    let bad = |why: &str| {
        Err(StoreError::Artifact(format!(
            "artifact name `{name}` {why}"
        )))
    };
    if name.is_empty() || name.len() > 200 {
        return bad("must be 1-200 bytes");
    }
    if name.contains(['/', '\\']) || name == "." || name == ".." || name.starts_with("..") {
        return bad(
            "must be a plain file name (no `/`, `\\` or `..`): it cannot leave the artifact folder",
        );
    }
    if name.chars().any(|c| c.is_control()) {
        return bad("contains control characters");
    }
    Ok(())
}

impl Store {
    /// Writes an artifact's file and returns its row, to be committed with the step
    /// that produced it. Writing the same name again replaces the file.
    pub fn write_artifact_file(
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
        let dir = self.dir().join("artifacts").join(request.as_str());
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::file(format!("creating {}", dir.display()), e))?;
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes)
            .map_err(|e| StoreError::file(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, dir.join(name))
            .map_err(|e| StoreError::file(format!("storing artifact {name}"), e))?;
        Ok(Artifact {
            id: ArtifactId::generate(),
            request_id: request.clone(),
            session_id: session.clone(),
            name: name.to_string(),
            media_type: media_type.to_string(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
            created_at: now,
        })
    }

    /// Where an artifact's contents are stored.
    pub fn artifact_path(&self, a: &Artifact) -> PathBuf {
        self.dir()
            .join("artifacts")
            .join(a.request_id.as_str())
            .join(&a.name)
    }

    pub async fn artifacts(&self, request: &RequestId) -> Result<Vec<Artifact>, StoreError> {
        let request = request.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ARTIFACT_COLS} FROM artifacts WHERE request_id = ?1 ORDER BY created_at, name"
            ))?;
            let rows = stmt.query_map([request.as_str()], rows::artifact)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}

pub(crate) fn insert(c: &Connection, a: &Artifact) -> Result<(), StoreError> {
    c.prepare_cached(&format!(
        "INSERT INTO artifacts ({ARTIFACT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
         ON CONFLICT (request_id, name) DO UPDATE SET id = excluded.id, media_type = excluded.media_type, \
         size = excluded.size, sha256 = excluded.sha256, created_at = excluded.created_at"
    ))?
    .execute(params![
        a.id.as_str(),
        a.request_id.as_str(),
        a.session_id.as_str(),
        a.name,
        a.media_type,
        a.size as i64,
        a.sha256,
        a.created_at.0,
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape() {
        for bad in ["../x", "a/b", "..", "a\\b", "", "..hidden", "x\ny"] {
            assert!(validate_artifact_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["summary.md", "report 2026.pdf", ".env.example"] {
            assert!(validate_artifact_name(good).is_ok(), "{good:?} refused");
        }
    }
}
