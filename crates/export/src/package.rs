//! Writing a package: a staging folder next to the destination, every file
//! hashed as it is written, the manifest last, then one rename (or an archive
//! built from the folder, then renamed) so readers never see half a package.

use super::ExportOptions;
use super::redact;
use crate::bad_input;
use harness_core::{Redactor, Timestamp};
use harness_engine::Harness;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub(crate) const MANIFEST: &str = "manifest.json";
const TAR_GZ: &str = ".tar.gz";

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub format_version: u32,
    pub kind: String,
    pub exported_at: String,
    pub exported_by: String,
    pub workspace: String,
    pub session_id: String,
    pub root_request_ids: Vec<String>,
    pub request_ids: Vec<String>,
    pub trace_ids: Vec<String>,
    pub options: ManifestOptions,
    pub counts: Counts,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ManifestOptions {
    pub artifact_contents: bool,
    pub health: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Counts {
    pub requests: usize,
    pub events: usize,
    pub approvals: usize,
    pub artifacts: usize,
}

/// One file of the package, as listed in the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Dir,
    TarGz,
}

/// Where the package goes.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub path: PathBuf,
    pub format: Format,
}

impl Target {
    /// `opts.out`, or a new folder under `<workspace>/exports/`; refused if it exists.
    pub(crate) fn resolve(
        h: &Harness,
        opts: &ExportOptions,
        now: Timestamp,
    ) -> anyhow::Result<Self> {
        let path = match &opts.out {
            Some(p) => p.clone(),
            None => default_path(&h.workspace().root.join("exports"), opts, now),
        };
        let format = match path.to_string_lossy().ends_with(TAR_GZ) {
            true => Format::TarGz,
            false => Format::Dir,
        };
        refuse_existing(&path, format)?;
        Ok(Target { path, format })
    }

    fn file_name(&self) -> String {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        name.unwrap_or_else(|| "export".to_string())
    }

    fn parent(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

/// `<session>-<request or "session">-<YYYYMMDDTHHMMSSZ>`, suffixed `-2`, `-3`… when
/// an export of the same second already exists.
fn default_path(exports: &Path, opts: &ExportOptions, now: Timestamp) -> PathBuf {
    let what = opts.request.as_ref().map_or("session", |r| r.as_str());
    let base = format!("{}-{what}-{}", opts.session, compact_utc(now));
    let mut path = exports.join(&base);
    for n in 2.. {
        if !path.exists() {
            break;
        }
        path = exports.join(format!("{base}-{n}"));
    }
    path
}

fn compact_utc(t: Timestamp) -> String {
    let nanos = i128::from(t.millis()) * 1_000_000;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    t.format(&fmt).unwrap_or_default()
}

/// Exports never overwrite: only a missing path, or an empty folder for a folder export, will do.
fn refuse_existing(path: &Path, format: Format) -> anyhow::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => anyhow::bail!("cannot check `{}`: {e}", path.display()),
        Ok(m) if format == Format::Dir && m.is_dir() && is_empty_dir(path)? => Ok(()),
        Ok(_) => Err(bad_input(format!(
            "`{}` already exists: an export never overwrites; choose another --out path",
            path.display()
        ))),
    }
}

fn is_empty_dir(path: &Path) -> anyhow::Result<bool> {
    Ok(fs::read_dir(path)?.next().is_none())
}

/// A package being written. Dropped unfinished, it removes everything it wrote.
pub(crate) struct Package<'a> {
    target: Target,
    staging: PathBuf,
    secrets: &'a Redactor,
    files: Vec<FileEntry>,
    now: Timestamp,
    done: bool,
}

impl<'a> Package<'a> {
    pub(crate) fn create(
        target: &Target,
        secrets: &'a Redactor,
        now: Timestamp,
    ) -> anyhow::Result<Self> {
        let parent = target.parent();
        fs::create_dir_all(&parent)
            .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", parent.display()))?;
        // Hidden and next to the destination: same filesystem, so the final rename is atomic.
        let staging = parent.join(format!(
            ".{}.partial-{}",
            target.file_name(),
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir(&staging)
            .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", staging.display()))?;
        Ok(Package {
            target: target.clone(),
            staging,
            secrets,
            files: Vec::new(),
            now,
            done: false,
        })
    }

    /// Writes a value as pretty JSON, secrets redacted.
    pub(crate) fn write_json<T: Serialize + ?Sized>(
        &mut self,
        rel: &str,
        value: &T,
    ) -> anyhow::Result<()> {
        let mut text = redact::to_json(self.secrets, value, true)?;
        text.push('\n');
        self.write_file(rel, text.as_bytes())
    }

    /// Writes one compact JSON object per line, secrets redacted.
    pub(crate) fn write_jsonl<T: Serialize>(
        &mut self,
        rel: &str,
        items: &[T],
    ) -> anyhow::Result<()> {
        let mut text = String::new();
        for item in items {
            text.push_str(&redact::to_json(self.secrets, item, false)?);
            text.push('\n');
        }
        self.write_file(rel, text.as_bytes())
    }

    pub(crate) fn write_text(&mut self, rel: &str, text: &str) -> anyhow::Result<()> {
        let redacted = self.secrets.redact_str(text);
        self.write_file(rel, redacted.as_bytes())
    }

    /// Writes raw contents with secrets replaced; returns whether any were.
    pub(crate) fn write_redacted(&mut self, rel: &str, bytes: &[u8]) -> anyhow::Result<bool> {
        match self.secrets.redact_bytes(bytes) {
            std::borrow::Cow::Owned(redacted) => self.write_file(rel, &redacted).map(|_| true),
            std::borrow::Cow::Borrowed(_) => self.write_file(rel, bytes).map(|_| false),
        }
    }

    fn write_file(&mut self, rel: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.staging.join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&path, bytes).map_err(|e| anyhow::anyhow!("cannot write {rel}: {e}"))?;
        self.files.push(FileEntry {
            path: rel.to_string(),
            sha256: hex::encode(Sha256::digest(bytes)),
            bytes: bytes.len() as u64,
        });
        Ok(())
    }

    /// Writes the manifest (listing every file written) and moves the package into
    /// place. Returns (files, bytes) as [`super::ExportSummary`] counts them.
    pub(crate) fn finish(mut self, mut manifest: Manifest) -> anyhow::Result<(usize, u64)> {
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        manifest.files = self.files.clone();
        let mut text = serde_json::to_string_pretty(&manifest)?;
        text.push('\n');
        fs::write(self.staging.join(MANIFEST), &text)?;
        let files = self.files.len() + 1;
        let bytes = match self.target.format {
            Format::Dir => {
                self.move_into_place()?;
                self.files.iter().map(|f| f.bytes).sum::<u64>() + text.len() as u64
            }
            Format::TarGz => self.archive_into_place()?,
        };
        self.done = true;
        Ok((files, bytes))
    }

    fn move_into_place(&self) -> anyhow::Result<()> {
        let dest = &self.target.path;
        if dest.is_dir() {
            // Checked empty by `Target::resolve`; rename cannot replace a folder everywhere.
            fs::remove_dir(dest)?;
        }
        fs::rename(&self.staging, dest)
            .map_err(|e| anyhow::anyhow!("cannot move the export to `{}`: {e}", dest.display()))
    }

    fn archive_path(&self) -> PathBuf {
        let mut name = self.staging.clone().into_os_string();
        name.push(".archive");
        PathBuf::from(name)
    }

    /// Builds the `.tar.gz` beside the destination, renames it into place and
    /// removes the staging folder. Returns the archive's size.
    fn archive_into_place(&self) -> anyhow::Result<u64> {
        let tmp = self.archive_path();
        let top = self.target.file_name();
        let top = top.strip_suffix(TAR_GZ).unwrap_or(&top).to_string();
        let mut paths = vec![MANIFEST.to_string()];
        paths.extend(self.files.iter().map(|f| f.path.clone()));
        write_archive(&self.staging, &paths, &top, self.now, &tmp)
            .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", self.target.path.display()))?;
        fs::rename(&tmp, &self.target.path)?;
        let _ = fs::remove_dir_all(&self.staging);
        Ok(fs::metadata(&self.target.path)?.len())
    }
}

impl Drop for Package<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.staging);
            let _ = fs::remove_file(self.archive_path());
        }
    }
}

/// A gzip'd tar of `paths` (relative to `dir`) under the folder `top/`, manifest
/// first, with fixed modes and the export time as mtime (no local user or umask leaks in).
fn write_archive(
    dir: &Path,
    paths: &[String],
    top: &str,
    now: Timestamp,
    out: &Path,
) -> io::Result<()> {
    let file = fs::File::create(out)?;
    let gz =
        flate2::write::GzEncoder::new(io::BufWriter::new(file), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = (now.millis() / 1000).max(0) as u64;
    let mut header = header(tar::EntryType::Directory, 0o755, 0, mtime);
    tar.append_data(&mut header, format!("{top}/"), io::empty())?;
    for rel in paths {
        let f = fs::File::open(dir.join(rel))?;
        let mut header = header_for_file(&f, mtime)?;
        tar.append_data(&mut header, format!("{top}/{rel}"), f)?;
    }
    let gz = tar.into_inner()?;
    let mut buf = gz.finish()?;
    buf.flush()?;
    let file = buf.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

fn header_for_file(f: &fs::File, mtime: u64) -> io::Result<tar::Header> {
    Ok(header(
        tar::EntryType::Regular,
        0o644,
        f.metadata()?.len(),
        mtime,
    ))
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(mtime);
    h
}
