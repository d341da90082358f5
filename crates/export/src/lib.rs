//! Evidence export and verification (the library behind `runtime export request|session`
//! and `runtime verify-export`, and any other surface that hands out a package).
//!
//! An export is a self-checking package of everything the store knows about one
//! request (or every request of a session): an operator can hand it to someone
//! who has no access to the workspace, and anyone can later prove that nothing in
//! it was changed. The same text is in `docs/export-format.md`.
//!
//! # Package layout (format version 1)
//!
//! A directory, or a `.tar.gz` archive holding one top-level directory of the
//! same name (the archive's file name without `.tar.gz`). Every JSON file is
//! pretty-printed; field names are stable within a format version.
//!
//! | File | Contents |
//! |------|----------|
//! | `manifest.json` | what was exported, when, by which version, and the sha256 of every other file |
//! | `requests.json` | `[{request, steps}]`: the exported request(s) and all their descendant (delegated) child requests, each parent before its children, with its journal |
//! | `events.jsonl` | every event of those requests, one JSON object per line, ordered by `seq` |
//! | `approvals.json` | their approvals (pending or decided: `decided_by`, `decided_at`, `message`, `edited_arguments`), oldest first |
//! | `artifacts.json` | every version of every artifact: metadata (with `version`), plus `file`, `contents_redacted`, `contents_missing`, `contents_altered` |
//! | `artifacts/<request_id>/<name>` | an artifact's first version (only with `--artifact-contents`) |
//! | `artifact-versions/<request_id>/<version>/<name>` | its later versions (idem) |
//! | `health.json` | the health report at export time (only with `--health`) |
//! | `workspace/config/…` | `config/*.yaml` and `config/agents/*.yaml`, secrets redacted |
//!
//! `manifest.json`:
//!
//! ```json
//! {
//!   "format_version": 1,
//!   "kind": "request",                       // or "session"
//!   "exported_at": "2026-01-05T10:11:12.000Z",
//!   "exported_by": "agent-harness 0.1.0",
//!   "workspace": "demo",
//!   "session_id": "session-1",
//!   "root_request_ids": ["req_…"],           // the request asked for, or the session's root requests
//!   "request_ids": ["req_…", "req_…"],       // every exported request, as in requests.json
//!   "trace_ids": ["…"],                      // their distinct correlation ids (a child shares its root's)
//!   "options": {"artifact_contents": true, "health": true},
//!   "counts": {"requests": 2, "events": 31, "approvals": 1, "artifacts": 1},
//!   "files": [{"path": "approvals.json", "sha256": "…", "bytes": 812}, …]
//! }
//! ```
//!
//! `files` lists every file of the package except `manifest.json` itself, sorted
//! by path (always `/`-separated). `verify-export` recomputes each hash and
//! reports, by file, every file that was modified, is missing, or is not listed;
//! then checks every artifact version an `artifact.created` event names: listed in
//! `artifacts.json`, and (with contents) present with the sha256 the event recorded.
//! (The manifest is not signed: it proves integrity against accidental or naive
//! changes, not against someone who rewrites the manifest too.)
//!
//! # Redaction
//!
//! The worker redacts records before it stores them (`harness_engine`'s
//! `redact.rs`); the export redacts again with [`Harness::redactor`], which knows
//! the workspace's secret variables as *this* process's environment holds them:
//!
//! * In the copied configuration, a YAML line whose key names a secret
//!   ([`harness_core::is_secret_key`]: `api_key`, `token`, `password`, `secret`,
//!   `credentials`, `auth`, `authorization`…, but not `max_tokens`,
//!   `token_count`, `author` or keys ending in `_env`, `_file`, `_path`) gets its
//!   value replaced by `"[REDACTED]"`, also inside `{ … }` flow maps, in nested
//!   blocks under such a key, and in commented-out lines.
//! * In every exported file (records, events, configuration, text artifacts):
//!   the values of the workspace's secret variables and its literal secrets, and
//!   every secret shape (URL passwords, `Authorization`/`Bearer`, `--token V`,
//!   `key=value` under a secret key, private key blocks). An artifact whose
//!   contents were redacted says so with `contents_redacted: true`; its `sha256`
//!   is still the stored one.
//!
//! # Atomicity
//!
//! The package is built in a hidden staging folder next to the destination and
//! renamed into place (or archived, then renamed) only when complete: a failed
//! export leaves nothing behind. An export never overwrites an existing path.

mod collect;
mod package;
mod redact;
mod replay;
mod verify;

#[cfg(test)]
mod tests;

pub use replay::recording;
pub use verify::verify_export;

use collect::Records;
use harness_core::{RequestId, SessionId};
use harness_engine::Harness;
use package::{Package, Target};
use serde::Serialize;
use sha2::Digest as _;
use std::path::PathBuf;

/// Bad input to an export or a verification: classified `invalid_input`
/// ([`harness_engine::error_code`]).
pub(crate) fn bad_input(message: impl Into<String>) -> anyhow::Error {
    harness_engine::HarnessError::InvalidInput(message.into()).into()
}

/// The package format this build writes and verifies.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub session: SessionId,
    /// None = export the whole session (every root request of it).
    pub request: Option<RequestId>,
    pub artifact_contents: bool,
    pub health: bool,
    /// A directory, or a `.tar.gz` file when the path ends so; None = a new folder
    /// `<workspace>/exports/<session>-<request or "session">-<UTC timestamp compact>`.
    pub out: Option<PathBuf>,
}

/// What was written. `files` counts every file of the package (manifest included);
/// `bytes` is their total size, or the archive's size for a `.tar.gz`.
#[derive(Clone, Debug, Serialize)]
pub struct ExportSummary {
    pub path: PathBuf,
    pub files: usize,
    pub bytes: u64,
    pub requests: usize,
    pub events: usize,
}

/// The outcome of a verification. `ok` is true exactly when `problems` is empty;
/// `checked` counts the listed files whose hash was recomputed.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub path: PathBuf,
    pub ok: bool,
    pub checked: usize,
    pub problems: Vec<VerifyProblem>,
}

/// One file that does not match the manifest (`file` is its path inside the package).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyProblem {
    pub file: String,
    pub problem: String,
}

/// Writes the evidence package described by `opts`, redacted with
/// [`Harness::redactor`] (the workspace's secrets as this process's environment
/// holds them, and every secret shape).
pub async fn export(h: &Harness, opts: &ExportOptions) -> anyhow::Result<ExportSummary> {
    // Read everything first: an unknown id must fail before anything is created.
    let records = collect::collect(h, &opts.session, opts.request.as_ref()).await?;
    let health = match opts.health {
        true => Some(h.health().await?),
        false => None,
    };
    let now = h.now();
    let target = Target::resolve(h, opts, now)?;
    let mut pkg = Package::create(&target, h.redactor(), now)?;
    write_records(&mut pkg, &records)?;
    if let Some(health) = &health {
        pkg.write_json("health.json", health)?;
    }
    write_artifacts(&mut pkg, h, &records, opts.artifact_contents).await?;
    write_workspace(&mut pkg, h)?;
    let manifest = manifest(h, opts, &records, now);
    let (files, bytes) = pkg.finish(manifest)?;
    Ok(ExportSummary {
        path: target.path,
        files,
        bytes,
        requests: records.requests.len(),
        events: records.events.len(),
    })
}

fn write_records(pkg: &mut Package, r: &Records) -> anyhow::Result<()> {
    pkg.write_json("requests.json", &r.requests)?;
    pkg.write_jsonl("events.jsonl", &r.events)?;
    pkg.write_json("approvals.json", &r.approvals)
}

/// One entry of `artifacts.json`: the stored metadata and what became of the contents.
#[derive(Serialize)]
struct ArtifactEntry<'a> {
    #[serde(flatten)]
    artifact: &'a harness_core::Artifact,
    /// Path of the contents inside the package (null when not exported).
    file: Option<String>,
    /// Secrets were replaced in the copy, so it no longer matches `sha256`.
    contents_redacted: bool,
    /// Contents were asked for but the store no longer has the file.
    contents_missing: bool,
    /// The stored file no longer matches the `sha256` recorded when it was written
    /// (it was changed on disk); the copy is of what the store holds now.
    contents_altered: bool,
}

/// Where an artifact version's contents go in the package: the first version at
/// `artifacts/<request_id>/<name>`, later ones at
/// `artifact-versions/<request_id>/<version>/<name>` (as in the store).
pub(crate) fn package_path(request_id: &str, name: &str, version: u32) -> String {
    match version {
        1 => format!("artifacts/{request_id}/{name}"),
        v => format!("artifact-versions/{request_id}/{v}/{name}"),
    }
}

async fn write_artifacts(
    pkg: &mut Package<'_>,
    h: &Harness,
    r: &Records,
    contents: bool,
) -> anyhow::Result<()> {
    let mut entries = Vec::with_capacity(r.artifacts.len());
    for a in &r.artifacts {
        let mut entry = ArtifactEntry {
            artifact: a,
            file: None,
            contents_redacted: false,
            contents_missing: false,
            contents_altered: false,
        };
        if contents {
            copy_artifact(pkg, h, &mut entry).await?;
        }
        entries.push(entry);
    }
    pkg.write_json("artifacts.json", &entries)
}

async fn copy_artifact(
    pkg: &mut Package<'_>,
    h: &Harness,
    entry: &mut ArtifactEntry<'_>,
) -> anyhow::Result<()> {
    let a = entry.artifact;
    // Names come from our own store, but a tampered row must not write outside the
    // package: the name and the request id are each one plain path component.
    harness_store::validate_artifact_name(&a.name)?;
    harness_store::validate_artifact_name(a.request_id.as_str())?;
    let bytes = match h.store().read_artifact(a).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            entry.contents_missing = true;
            return Ok(());
        }
        Err(e) => anyhow::bail!("cannot read artifact `{}` of {}: {e}", a.name, a.request_id),
    };
    let rel = package_path(a.request_id.as_str(), &a.name, a.version);
    entry.contents_altered = hex::encode(sha2::Sha256::digest(&bytes)) != a.sha256;
    entry.contents_redacted = pkg.write_redacted(&rel, &bytes)?;
    entry.file = Some(rel);
    Ok(())
}

/// Copies `config/*.yaml` and `config/agents/*.yaml` with secrets redacted.
fn write_workspace(pkg: &mut Package, h: &Harness) -> anyhow::Result<()> {
    let root = &h.workspace().root;
    for dir in ["config", "config/agents"] {
        for name in yaml_files(&root.join(dir))? {
            let text = std::fs::read_to_string(root.join(dir).join(&name))
                .map_err(|e| anyhow::anyhow!("cannot read {dir}/{name}: {e}"))?;
            pkg.write_text(&format!("workspace/{dir}/{name}"), &redact::yaml(&text))?;
        }
    }
    Ok(())
}

/// File names of the `.yaml`/`.yml` files directly in `dir`, sorted (none if it is missing).
fn yaml_files(dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => anyhow::bail!("cannot list {}: {e}", dir.display()),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file() && (name.ends_with(".yaml") || name.ends_with(".yml")) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn manifest(
    h: &Harness,
    opts: &ExportOptions,
    r: &Records,
    now: harness_core::Timestamp,
) -> package::Manifest {
    let requests = r.requests.iter().map(|e| &e.request);
    package::Manifest {
        format_version: FORMAT_VERSION,
        kind: if opts.request.is_some() {
            "request"
        } else {
            "session"
        }
        .to_string(),
        exported_at: now.to_rfc3339(),
        exported_by: format!("agent-harness {}", env!("CARGO_PKG_VERSION")),
        workspace: h.workspace().settings.name.clone(),
        session_id: opts.session.to_string(),
        root_request_ids: r.roots.iter().map(|id| id.to_string()).collect(),
        request_ids: requests.clone().map(|q| q.id.to_string()).collect(),
        trace_ids: distinct(requests.map(|q| q.trace_id.clone())),
        options: package::ManifestOptions {
            artifact_contents: opts.artifact_contents,
            health: opts.health,
        },
        counts: package::Counts {
            requests: r.requests.len(),
            events: r.events.len(),
            approvals: r.approvals.len(),
            artifacts: r.artifacts.len(),
        },
        files: Vec::new(),
    }
}

/// The values in first-seen order, without repeats (children share their root's trace id).
fn distinct(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    values.filter(|v| seen.insert(v.clone())).collect()
}
