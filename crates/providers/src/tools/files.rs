//! Built-in tools: `read_file`, `write_file`, `list_files` (confined to the request's
//! work folder) and `write_artifact` (returns bytes for the engine to store).
//!
//! Confinement: absolute paths and `..` components are refused outright; then the
//! deepest existing ancestor of the target is canonicalized and must lie inside the
//! canonical work folder, which catches symlinks pointing out of it (symlinks that
//! stay inside are followed).
//!
//! These run inline on a runtime thread, so nothing may block: files are opened
//! with `O_NONBLOCK` (opening a FIFO returns at once) and the opened file's own
//! metadata decides — anything but a regular file (FIFO, socket, device,
//! directory) is refused. Reads stop at [`MAX_READ_BYTES`], listings at
//! [`MAX_LIST_ENTRIES`] entries read.

use crate::{NewArtifact, ToolContext, ToolOutput};
use harness_config::Builtin;
use serde_json::Value;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Largest file `read_file` returns.
pub const MAX_READ_BYTES: u64 = 1024 * 1024;
/// Most entries `list_files` returns.
pub const MAX_LIST_ENTRIES: usize = 1000;

/// Runs a built-in tool on a blocking thread (a panic there becomes an error output).
pub(super) async fn run_builtin(builtin: Builtin, args: &Value, ctx: &ToolContext) -> ToolOutput {
    // These are a few bounded syscalls (reads capped at 1 MiB, listings at 1,000
    // entries): inline they cost less than a hop to the blocking pool. A panic
    // still fails only this call.
    let run = std::panic::AssertUnwindSafe(|| match builtin {
        Builtin::LoadSkill => load_skill(args, &ctx.workspace_root),
        _ => run_blocking(builtin, args, &ctx.work_dir),
    });
    match std::panic::catch_unwind(run) {
        Ok(Ok(output)) => output,
        Ok(Err(message)) => ToolOutput::error(message),
        Err(_) => ToolOutput::error(format!("{} failed: it panicked", builtin.name())),
    }
}

fn run_blocking(builtin: Builtin, args: &Value, work_dir: &Path) -> Result<ToolOutput, String> {
    match builtin {
        Builtin::ReadFile => read_file(args, &work_root(work_dir)?),
        Builtin::WriteFile => write_file(args, &work_root(work_dir)?),
        Builtin::ListFiles => list_files(args, &work_root(work_dir)?),
        Builtin::WriteArtifact => write_artifact(args),
        Builtin::Delegate => Err("delegate is run by the engine".to_string()),
        Builtin::LoadSkill => Err("load_skill reads the workspace's skills".to_string()),
    }
}

/// `{name}` → `resources/skills/NAME/SKILL.md`, whole. (The engine refuses a skill
/// the calling agent does not list before this runs.)
fn load_skill(args: &Value, workspace_root: &Path) -> Result<ToolOutput, String> {
    let name = args.get("name").and_then(Value::as_str).unwrap_or_default();
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if !plain {
        return Err(format!("`{name}` is not a skill name"));
    }
    let path = workspace_root
        .join(harness_config::SKILLS_DIR)
        .join(name)
        .join("SKILL.md");
    let text = fs::read_to_string(&path).map_err(|e| format!("cannot load skill `{name}`: {e}"))?;
    Ok(ToolOutput::ok(text))
}

/// The canonical work folder, created if missing.
fn work_root(work_dir: &Path) -> Result<PathBuf, String> {
    let shown = work_dir.display();
    // Looked at first: `mkdir` of a folder that exists still takes its parent's
    // lock for writing, and with a thousand sessions calling tools at once the
    // calls queued on that lock (a quarter of a worker's CPU in a profile).
    if !work_dir.is_dir() {
        fs::create_dir_all(work_dir)
            .map_err(|e| format!("cannot create work folder {shown}: {e}"))?;
    }
    fs::canonicalize(work_dir).map_err(|e| format!("cannot resolve work folder {shown}: {e}"))
}

fn read_file(args: &Value, root: &Path) -> Result<ToolOutput, String> {
    let rel = str_arg(args, "path")?;
    let path = resolve(root, rel)?;
    let mut options = fs::OpenOptions::new();
    options.read(true);
    let file = open_regular(&options, &path, rel, "read")?;
    let len = file.metadata().map_or(0, |m| m.len());
    if len > MAX_READ_BYTES {
        return Err(format!(
            "file `{rel}` is {len} bytes; read_file reads at most 1 MiB"
        ));
    }
    // One byte past the cap tells a file that grew since fstat from one that fits.
    let mut bytes = Vec::new();
    file.take(MAX_READ_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read `{rel}`: {e}"))?;
    if bytes.len() as u64 > MAX_READ_BYTES {
        return Err(format!(
            "file `{rel}` grew past 1 MiB while being read; read_file reads at most 1 MiB"
        ));
    }
    Ok(ToolOutput::ok(String::from_utf8_lossy(&bytes)))
}

/// Opens `path` without blocking and returns it only if it is a regular file
/// (judged by the opened file's metadata, so a swap after the check cannot fool it).
fn open_regular(
    options: &fs::OpenOptions,
    path: &Path,
    rel: &str,
    verb: &str,
) -> Result<fs::File, String> {
    let mut options = options.clone();
    options.custom_flags(libc::O_NONBLOCK);
    let file = match options.open(path) {
        Ok(file) => file,
        // Opening a socket, or a FIFO for writing with no reader, fails with ENXIO.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            let kind = fs::metadata(path).map_or("not a regular file", |m| kind_of(&m));
            return Err(not_regular(rel, kind));
        }
        Err(e) => return Err(format!("cannot {verb} `{rel}`: {e}")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot {verb} `{rel}`: {e}"))?;
    if meta.is_file() {
        Ok(file)
    } else {
        Err(not_regular(rel, kind_of(&meta)))
    }
}

fn kind_of(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory (use list_files)"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

fn not_regular(rel: &str, kind: &str) -> String {
    format!("`{rel}` is {kind}; file tools read and write only regular files")
}

fn write_file(args: &Value, root: &Path) -> Result<ToolOutput, String> {
    let rel = str_arg(args, "path")?;
    let content = str_arg(args, "content")?;
    let path = resolve(root, rel)?;
    let parent = match path.parent() {
        Some(parent) if path != root => parent,
        _ => return Err(format!("path `{rel}` names the work folder itself")),
    };
    fs::create_dir_all(parent).map_err(|e| format!("cannot create folders for `{rel}`: {e}"))?;
    ensure_inside(root, &path, rel)?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true);
    // Truncated only once known to be a regular file.
    let mut file = open_regular(&options, &path, rel, "write")?;
    file.set_len(0)
        .and_then(|()| file.write_all(content.as_bytes()))
        .map_err(|e| format!("cannot write `{rel}`: {e}"))?;
    Ok(ToolOutput::ok(format!(
        "wrote {} bytes to {rel}",
        content.len()
    )))
}

fn list_files(args: &Value, root: &Path) -> Result<ToolOutput, String> {
    let rel = opt_str_arg(args, "path")?.unwrap_or("");
    let dir = resolve(root, rel)?;
    if !dir.is_dir() {
        return Err(format!("`{rel}` is not a directory"));
    }
    let mut entries = Vec::new();
    walk(root, &dir, &mut entries).map_err(|e| format!("cannot list `{rel}`: {e}"))?;
    let truncated = entries.len() > MAX_LIST_ENTRIES;
    entries.truncate(MAX_LIST_ENTRIES);
    entries.sort_unstable();
    let mut out = entries.join("\n");
    if entries.is_empty() {
        out.push_str("(no files)");
    }
    if truncated {
        out.push_str(&format!(
            "\n... (listing stopped at {MAX_LIST_ENTRIES} entries)"
        ));
    }
    Ok(ToolOutput::ok(out))
}

/// Depth-first, siblings sorted, symlinks not followed; stops past the entry cap
/// (a folder is read only up to the entries still wanted, so a huge one costs no
/// more). Folders are listed with a trailing `/`; unreadable sub-folders are skipped.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    let wanted = (MAX_LIST_ENTRIES + 1).saturating_sub(out.len());
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .take(wanted)
        .collect();
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        if out.len() > MAX_LIST_ENTRIES {
            break;
        }
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(format!("{rel}/"));
            let _ = walk(root, &path, out);
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

fn write_artifact(args: &Value) -> Result<ToolOutput, String> {
    let name = str_arg(args, "name")?;
    if name.trim().is_empty() {
        return Err("argument `name` must not be empty".to_string());
    }
    let content = str_arg(args, "content")?;
    let media_type =
        opt_str_arg(args, "media_type")?.map_or_else(|| guess_media_type(name), str::to_string);
    let mut output = ToolOutput::ok(format!("stored artifact {name} ({} bytes)", content.len()));
    output.artifacts.push(NewArtifact {
        name: name.to_string(),
        media_type,
        bytes: content.as_bytes().to_vec(),
    });
    Ok(output)
}

fn guess_media_type(name: &str) -> String {
    let ext = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("");
    let ty = match ext.to_ascii_lowercase().as_str() {
        "md" | "markdown" => "text/markdown",
        "json" => "application/json",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "yaml" | "yml" => "application/yaml",
        "xml" => "application/xml",
        _ => "text/plain",
    };
    ty.to_string()
}

/// `root.join(rel)` after checking that it stays inside `root` (canonical).
fn resolve(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let lexical_ok = Path::new(rel)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !lexical_ok {
        return Err(escapes(rel));
    }
    let path = root.join(rel);
    ensure_inside(root, &path, rel)?;
    Ok(path)
}

/// The deepest existing ancestor of `path` (itself included), resolved, is inside `root`.
fn ensure_inside(root: &Path, path: &Path, rel: &str) -> Result<(), String> {
    let existing = path
        .ancestors()
        .find(|p| p.symlink_metadata().is_ok())
        .unwrap_or(root);
    let real =
        fs::canonicalize(existing).map_err(|e| format!("cannot resolve path `{rel}`: {e}"))?;
    if real.starts_with(root) {
        Ok(())
    } else {
        Err(escapes(rel))
    }
}

fn escapes(rel: &str) -> String {
    format!("path `{rel}` escapes the work folder")
}

fn str_arg<'a>(args: &'a Value, key: &str) -> Result<&'a str, String> {
    match args.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("argument `{key}` must be a string")),
        None => Err(format!("missing required argument `{key}`")),
    }
}

fn opt_str_arg<'a>(args: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => str_arg(args, key).map(Some),
    }
}
