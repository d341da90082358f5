//! Artifacts: immutable files, one row each in `artifacts`. The first version of a
//! name is `<store>/artifacts/<request>/<name>`; writing the name again in the same
//! request adds version 2, 3… as `<store>/artifact-versions/<request>/<version>/<name>`
//! (a separate tree, so no artifact name can collide with a version folder). Names
//! are flat: they can never escape their request's folder.

use crate::rows::{self, ARTIFACT_COLS};
use crate::{SqliteStore, StoreError};
use harness_core::*;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Folder (under the store) of every artifact's first version.
pub(crate) const ARTIFACTS_DIR: &str = "artifacts";
/// Folder (under the store) of the later versions.
pub(crate) const VERSIONS_DIR: &str = "artifact-versions";

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

impl SqliteStore {
    /// Writes a new version of artifact `name` of `request` and returns its row, to be
    /// committed with the step that produced it. Never replaces a file: the first
    /// write of a name is version 1, each later one the next version. (A version
    /// whose step never committed, after a crash, leaves its number unused.)
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
        let mut version = next_version(self.dir(), request, name)?;
        loop {
            let path = artifact_file(self.dir(), request, name, version);
            match create_new(&path, bytes) {
                Ok(()) => break,
                // Only another write of this very name can have taken the number.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => version += 1,
                Err(e) => return Err(StoreError::file(format!("writing {}", path.display()), e)),
            }
        }
        Ok(Artifact {
            id: ArtifactId::generate(),
            request_id: request.clone(),
            session_id: session.clone(),
            name: name.to_string(),
            version,
            media_type: media_type.to_string(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
            created_at: now,
        })
    }

    /// An artifact version's contents, from its file; `None` if the file is gone.
    pub(crate) async fn read_artifact(&self, a: &Artifact) -> Result<Option<Vec<u8>>, StoreError> {
        // Names come from the store, but a tampered row must not read outside it: the
        // name and the request id are each one plain path component.
        validate_artifact_name(&a.name)?;
        validate_artifact_name(a.request_id.as_str())?;
        let path = artifact_file(self.dir(), &a.request_id, &a.name, a.version);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::file(format!("reading {}", path.display()), e)),
        }
    }

    /// One artifact version by id.
    pub(crate) async fn get_artifact(&self, id: &ArtifactId) -> Result<Artifact, StoreError> {
        let id = id.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ARTIFACT_COLS} FROM artifacts WHERE id = ?1"
            ))?;
            stmt.query_row([id.as_str()], rows::artifact)
                .optional()?
                .ok_or_else(|| StoreError::NotFound {
                    kind: "artifact",
                    id: id.to_string(),
                })
        })
        .await
    }

    /// Every version of every artifact of `request`, by name then version.
    pub(crate) async fn artifacts(&self, request: &RequestId) -> Result<Vec<Artifact>, StoreError> {
        let request = request.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ARTIFACT_COLS} FROM artifacts WHERE request_id = ?1 \
                 ORDER BY created_at, name, version"
            ))?;
            let rows = stmt.query_map([request.as_str()], rows::artifact)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}

/// `<store>/artifacts/<request>/<name>` for version 1, else
/// `<store>/artifact-versions/<request>/<version>/<name>`.
fn artifact_file(store: &Path, request: &RequestId, name: &str, version: u32) -> PathBuf {
    match version {
        1 => store.join(ARTIFACTS_DIR).join(request.as_str()).join(name),
        v => store
            .join(VERSIONS_DIR)
            .join(request.as_str())
            .join(v.to_string())
            .join(name),
    }
}

/// One more than the highest version of `name` on disk. Files, not rows, decide: a
/// file is written before its step commits, and one written for a step that never
/// committed (a crash) must not be overwritten either.
fn next_version(store: &Path, request: &RequestId, name: &str) -> Result<u32, StoreError> {
    if !artifact_file(store, request, name, 1).exists() {
        return Ok(1);
    }
    let dir = store.join(VERSIONS_DIR).join(request.as_str());
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(2),
        Err(e) => return Err(StoreError::Io(format!("{}: {e}", dir.display()))),
    };
    let highest = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|v| dir.join(v.to_string()).join(name).exists())
        .max()
        .unwrap_or(1);
    Ok(highest + 1)
}

/// Writes `bytes` to a file that must not exist yet (the check and the creation are
/// one atomic step, so an existing version can never be overwritten).
fn create_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    let written = f.write_all(bytes);
    if written.is_err() {
        // A partial file must not pass for a version: it goes, and the next write
        // takes its number (no row names it).
        let _ = std::fs::remove_file(path);
    }
    written
}

pub(crate) fn insert(c: &Connection, a: &Artifact) -> Result<(), StoreError> {
    c.prepare_cached(&format!(
        "INSERT INTO artifacts ({ARTIFACT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))?
    .execute(params![
        a.id.as_str(),
        a.request_id.as_str(),
        a.session_id.as_str(),
        a.name,
        a.version,
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

    /// A store written before versions existed (schema V3) keeps its artifacts as
    /// version 1, at the same path; writing the name again adds version 2.
    #[tokio::test]
    async fn a_v3_store_migrates_its_artifacts_to_version_1() {
        let dir = tempfile::tempdir().unwrap();
        let req = RequestId::generate();
        let path = dir
            .path()
            .join("artifacts")
            .join(req.as_str())
            .join("r.txt");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"old").unwrap();
        {
            let mut c = Connection::open(dir.path().join(crate::DB_FILE)).unwrap();
            crate::sqlite::embedded::migrations::runner()
                .set_target(refinery::Target::Version(3))
                .run(&mut c)
                .unwrap();
            c.execute(
                "INSERT INTO artifacts (id, request_id, session_id, name, media_type, size, sha256, created_at) \
                 VALUES ('art_1', ?1, 's', 'r.txt', 'text/plain', 3, 'h', 7)",
                [req.as_str()],
            )
            .unwrap();
        }
        let store = crate::Store::open(dir.path(), Default::default()).unwrap();
        let old = store.artifacts(&req).await.unwrap().remove(0);
        assert_eq!((old.name.as_str(), old.version), ("r.txt", 1));
        assert_eq!(store.read_artifact(&old).await.unwrap().unwrap(), b"old");
        let session = SessionId::parse("s").unwrap();
        let new = store
            .put_artifact(&req, &session, "r.txt", "text/plain", b"new", Timestamp(8))
            .await
            .unwrap();
        assert_eq!(new.version, 2);
        assert_eq!(std::fs::read(&path).unwrap(), b"old", "version 1 untouched");
        assert_eq!(store.read_artifact(&new).await.unwrap().unwrap(), b"new");
    }

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
