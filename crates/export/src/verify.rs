//! `verify-export`: recomputes every file's sha256 and compares the package with
//! its manifest, for a folder or a `.tar.gz` alike; then checks every artifact
//! version the events name against the sha256 recorded when it was written.

use super::package::{FileEntry, MANIFEST};
use super::{FORMAT_VERSION, VerifyProblem, VerifyReport};
use crate::bad_input;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::path::{Component, Path};

/// The part of the manifest verification needs (other fields may change freely).
#[derive(Deserialize)]
struct ManifestFiles {
    format_version: u32,
    files: Vec<FileEntry>,
    #[serde(default)]
    options: Option<ManifestOptions>,
}

#[derive(Deserialize)]
struct ManifestOptions {
    #[serde(default)]
    artifact_contents: bool,
}

const EVENTS: &str = "events.jsonl";
const ARTIFACTS: &str = "artifacts.json";
pub(crate) const REQUESTS: &str = "requests.json";
pub(crate) const APPROVALS: &str = "approvals.json";

/// What a package holds, read from a folder or an archive.
#[derive(Default)]
struct Contents {
    /// Regular files other than the manifest: (sha256, bytes) by package path.
    files: BTreeMap<String, (String, u64)>,
    manifest: Option<Vec<u8>>,
    /// The bytes of `events.jsonl` and `artifacts.json`, for the artifact checks.
    kept: BTreeMap<String, Vec<u8>>,
    /// Found while reading (links, special files, duplicate archive entries).
    problems: Vec<VerifyProblem>,
}

/// Files whose bytes verification reads, not only hashes.
fn kept(path: &str) -> bool {
    [MANIFEST, EVENTS, ARTIFACTS, REQUESTS, APPROVALS].contains(&path)
}

/// Checks the package at `path` (a folder, or a file ending in `.tar.gz`).
/// An unreadable path is an error; anything wrong inside the package is a problem.
pub fn verify_export(path: &Path) -> anyhow::Result<VerifyReport> {
    Ok(read_verified(path)?.0)
}

/// Verifies the package at `path` and returns, beside the report, the bytes of the
/// record files it read (`manifest.json`, `requests.json`, `approvals.json`, …).
pub(crate) fn read_verified(
    path: &Path,
) -> anyhow::Result<(VerifyReport, BTreeMap<String, Vec<u8>>)> {
    let contents = if path.to_string_lossy().ends_with(".tar.gz") && path.is_file() {
        read_archive(path)?
    } else if path.is_dir() {
        read_dir(path)?
    } else if path.exists() {
        let msg = format!(
            "`{}` is not an export: give its folder or its .tar.gz file",
            path.display()
        );
        return Err(bad_input(msg));
    } else {
        return Err(bad_input(format!("`{}` does not exist", path.display())));
    };
    let mut kept = contents.kept.clone();
    if let Some(m) = &contents.manifest {
        kept.insert(MANIFEST.to_string(), m.clone());
    }
    let (checked, mut problems) = check(contents);
    problems.sort_by(|a, b| a.file.cmp(&b.file));
    let report = VerifyReport {
        path: path.to_path_buf(),
        ok: problems.is_empty(),
        checked,
        problems,
    };
    Ok((report, kept))
}

fn problem(file: &str, problem: impl Into<String>) -> VerifyProblem {
    VerifyProblem {
        file: file.to_string(),
        problem: problem.into(),
    }
}

/// Compares the files with the manifest, then the artifacts with their events;
/// returns (files checked, problems).
fn check(mut c: Contents) -> (usize, Vec<VerifyProblem>) {
    let mut problems = std::mem::take(&mut c.problems);
    let (listed, contents) = match parse_manifest(c.manifest.as_deref()) {
        Ok(m) => m,
        Err(p) => {
            problems.push(p);
            return (0, problems);
        }
    };
    let mut checked = 0;
    let mut seen = HashSet::new();
    for entry in &listed {
        if !seen.insert(entry.path.as_str()) {
            problems.push(problem(&entry.path, "listed twice in the manifest"));
            continue;
        }
        match c.files.get(&entry.path) {
            None => problems.push(problem(&entry.path, "missing")),
            Some(actual) => {
                checked += 1;
                problems.extend(compare(entry, actual));
            }
        }
    }
    let extra = c.files.keys().filter(|p| !seen.contains(p.as_str()));
    problems.extend(extra.map(|p| problem(p, "not listed in manifest")));
    // A file already reported as changed is not also reported as unparsable.
    let reported: HashSet<String> = problems.iter().map(|p| p.file.clone()).collect();
    problems.extend(check_artifacts(&c, contents, &reported));
    (checked, problems)
}

/// What `artifacts.json` says of one artifact version.
#[derive(Deserialize)]
struct ArtifactEntry {
    id: String,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    contents_redacted: bool,
    #[serde(default)]
    contents_missing: bool,
    #[serde(default)]
    contents_altered: bool,
}

/// Every artifact version an `artifact.created` event names must be listed in
/// `artifacts.json` and, when contents were exported, be in the package with the
/// sha256 the event recorded when it was written (unless the export redacted it).
fn check_artifacts(c: &Contents, contents: bool, reported: &HashSet<String>) -> Vec<VerifyProblem> {
    let mut problems = Vec::new();
    let unparsable =
        |file: &str, what: String| (!reported.contains(file)).then(|| problem(file, what));
    let entries: Vec<ArtifactEntry> = match c.kept.get(ARTIFACTS) {
        Some(bytes) => match serde_json::from_slice(bytes) {
            Ok(e) => e,
            Err(e) => {
                return unparsable(ARTIFACTS, format!("unparsable: {e}"))
                    .into_iter()
                    .collect();
            }
        },
        None => Vec::new(),
    };
    let events = c.kept.get(EVENTS).map(Vec::as_slice).unwrap_or_default();
    for (n, line) in events.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(line) else {
            problems.extend(unparsable(EVENTS, format!("line {} is not JSON", n + 1)));
            continue;
        };
        if event["kind"] != "artifact.created" {
            continue;
        }
        problems.extend(check_version(c, &entries, &event, contents));
    }
    problems
}

fn check_version(
    c: &Contents,
    entries: &[ArtifactEntry],
    event: &serde_json::Value,
    contents: bool,
) -> Option<VerifyProblem> {
    let p = &event["payload"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let (id, name, sha) = (
        text(&p["artifact_id"]),
        text(&p["name"]),
        text(&p["sha256"]),
    );
    let version = p["version"].as_u64().unwrap_or(1);
    let label = format!("artifact {id} (`{name}` version {version})");
    let Some(entry) = entries.iter().find(|e| e.id == id) else {
        let seq = &event["seq"];
        return Some(problem(
            ARTIFACTS,
            format!("{label}, created by event {seq}, is not listed"),
        ));
    };
    if !contents {
        return None;
    }
    let request = text(&event["request_id"]);
    let path = entry.file.clone().unwrap_or_else(|| {
        super::package_path(&request, &name, u32::try_from(version).unwrap_or(u32::MAX))
    });
    let short = |s: &str| s.chars().take(12).collect::<String>();
    let trouble = if entry.contents_missing {
        format!("{label}: the store no longer had its contents when the export was taken")
    } else if entry.contents_altered {
        format!(
            "{label}: the stored contents had changed since it was written (sha256 {}… recorded)",
            short(&sha)
        )
    } else if entry.file.is_none() {
        format!("{label}: its contents were not exported")
    } else {
        match c.files.get(&path) {
            None => format!("missing: {label}"),
            Some((actual, _)) if !entry.contents_redacted && !actual.eq_ignore_ascii_case(&sha) => {
                format!(
                    "{label}: sha256 {}… differs from the {}… recorded when it was written",
                    short(actual),
                    short(&sha)
                )
            }
            Some(_) => return None,
        }
    };
    Some(problem(&path, trouble))
}

/// The manifest's files and whether artifact contents were exported.
fn parse_manifest(bytes: Option<&[u8]>) -> Result<(Vec<FileEntry>, bool), VerifyProblem> {
    let bytes = bytes.ok_or_else(|| problem(MANIFEST, "missing"))?;
    let m: ManifestFiles =
        serde_json::from_slice(bytes).map_err(|e| problem(MANIFEST, format!("unparsable: {e}")))?;
    if m.format_version != FORMAT_VERSION {
        let msg = format!(
            "unsupported format_version {} (this build reads {FORMAT_VERSION})",
            m.format_version
        );
        return Err(problem(MANIFEST, msg));
    }
    let contents = m.options.is_some_and(|o| o.artifact_contents);
    Ok((m.files, contents))
}

fn compare(entry: &FileEntry, (sha, bytes): &(String, u64)) -> Option<VerifyProblem> {
    let short = |s: &str| s.chars().take(12).collect::<String>();
    if !entry.sha256.eq_ignore_ascii_case(sha) {
        let mut msg = format!(
            "sha256 mismatch (manifest {}…, file {}…)",
            short(&entry.sha256),
            short(sha)
        );
        if entry.bytes != *bytes {
            msg.push_str(&format!(
                "; size {} bytes, manifest says {}",
                bytes, entry.bytes
            ));
        }
        return Some(problem(&entry.path, msg));
    }
    (entry.bytes != *bytes).then(|| {
        let msg = format!(
            "size mismatch (manifest {} bytes, file {bytes})",
            entry.bytes
        );
        problem(&entry.path, msg)
    })
}

/// (sha256 hex, size, the bytes when kept).
type Digest = (String, u64, Option<Vec<u8>>);

/// Hashes a reader to the end, keeping the bytes when asked (the manifest).
fn digest(mut r: impl Read, keep: bool) -> io::Result<Digest> {
    let mut hasher = Sha256::new();
    let mut kept = keep.then(Vec::new);
    let mut buf = [0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        if let Some(k) = kept.as_mut() {
            k.extend_from_slice(&buf[..n]);
        }
    }
    Ok((hex::encode(hasher.finalize()), total, kept))
}

impl Contents {
    /// Records one regular file; the bytes of those verification reads are kept.
    fn add(&mut self, path: String, (sha, bytes, kept): Digest) {
        if path == MANIFEST {
            if self.manifest.is_some() {
                self.problems.push(problem(MANIFEST, "appears twice"));
            }
            self.manifest = kept;
            return;
        }
        if let Some(k) = kept {
            self.kept.insert(path.clone(), k);
        }
        if self.files.insert(path.clone(), (sha, bytes)).is_some() {
            self.problems.push(problem(&path, "appears twice"));
        }
    }
}

/// Every file under `root` (symbolic links are reported, never followed).
fn read_dir(root: &Path) -> anyhow::Result<Contents> {
    let mut c = Contents::default();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let rel = package_path(path.strip_prefix(root)?);
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let file = std::fs::File::open(&path)?;
                c.add(rel.clone(), digest(file, kept(&rel))?);
            } else {
                c.problems.push(problem(&rel, "not a regular file"));
            }
        }
    }
    Ok(c)
}

/// `a/b/c` whatever the platform's separator.
fn package_path(p: &Path) -> String {
    let parts: Vec<String> = p
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

/// Every entry of a `.tar.gz`, paths relative to its top-level folder.
fn read_archive(path: &Path) -> anyhow::Result<Contents> {
    let file = std::fs::File::open(path)?;
    let gz = flate2::read::GzDecoder::new(io::BufReader::new(file));
    let mut archive = tar::Archive::new(gz);
    let unreadable =
        |e: io::Error| anyhow::anyhow!("cannot read archive `{}`: {e}", path.display());
    // (path, Some(digest) for a regular file, None for anything else)
    let mut items: Vec<(String, Option<Digest>)> = Vec::new();
    for entry in archive.entries().map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let name = package_path(&entry.path().map_err(unreadable)?);
        match entry.header().entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                // The top folder is not known yet: keep by file name, at most one level down.
                let keep = kept(name.split_once('/').map_or(name.as_str(), |(_, rest)| rest))
                    || kept(&name);
                items.push((name, Some(digest(entry, keep).map_err(unreadable)?)));
            }
            _ => items.push((name, None)),
        }
    }
    let top = top_folder(&items);
    let mut c = Contents::default();
    for (name, item) in items {
        let rel = match &top {
            Some(top) => name.strip_prefix(top.as_str()).unwrap_or(&name).to_string(),
            None => name,
        };
        match item {
            Some(d) => c.add(rel, d),
            None => c.problems.push(problem(&rel, "not a regular file")),
        }
    }
    Ok(c)
}

/// The `top/` prefix shared by every entry, when the manifest is under it (the layout
/// `export` writes); None when entries sit at the archive's root.
fn top_folder(items: &[(String, Option<Digest>)]) -> Option<String> {
    let (first, _) = items.first()?;
    let top = format!("{}/", first.split('/').next()?);
    let all_under = items.iter().all(|(n, _)| n.starts_with(&top));
    let manifest_there = items.iter().any(|(n, _)| *n == format!("{top}{MANIFEST}"));
    (all_under && manifest_there).then_some(top)
}
