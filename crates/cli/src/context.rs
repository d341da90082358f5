//! Where the workspace is, and opening it for acting or for looking.

use anyhow::{Context, Result};
use harness_core::{FixedClock, Timestamp};
use harness_engine::{Harness, HarnessOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Freezes "now" for rendering (snapshot tests): RFC 3339 or epoch milliseconds.
pub const NOW_ENV: &str = "AGENT_HARNESS_NOW";

/// Options every command shares.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub workspace: Option<PathBuf>,
    pub json: bool,
    /// `--server`: `runtime` commands read and act through the HTTP API instead.
    pub server: Option<crate::remote::Server>,
}

impl Ctx {
    /// The workspace root: `--workspace`, or the nearest folder upwards holding a workspace.
    pub fn root(&self) -> Result<PathBuf> {
        if let Some(w) = &self.workspace {
            return Ok(w.clone());
        }
        let cwd = std::env::current_dir().context("cannot read the current folder")?;
        Ok(find_workspace(&cwd).unwrap_or(cwd))
    }

    /// Opens the workspace to act on it (creates the store if needed). With
    /// `new_store`, a missing, empty or damaged store is replaced by a new, empty one
    /// (a damaged file is moved aside, and this says where).
    pub fn open_or_replace(&self, new_store: bool) -> Result<Harness> {
        let opts = HarnessOptions {
            new_store,
            ..options()?
        };
        let h = Harness::open_with(&self.root()?, opts, true)?;
        if let Some(r) = h.store().replaced() {
            let moved = r
                .moved_to
                .as_ref()
                .map(|p| format!("; the old file is now {}", p.display()))
                .unwrap_or_default();
            // On stderr: stdout stays the command's own output (JSON with --json).
            eprintln!(
                "started a new, empty store at {} ({}{moved})",
                h.store().location(),
                r.problem
            );
        }
        Ok(h)
    }

    /// Opens the workspace to act on records that must already exist: a missing
    /// store is an error (NoStore), never created by a command that then fails.
    pub fn open_existing(&self) -> Result<Harness> {
        Ok(Harness::open_with(&self.root()?, options()?, false)?)
    }

    /// Opens the workspace to look at it: never creates a store, never takes the worker lock.
    pub fn inspect(&self) -> Result<Harness> {
        self.open_existing()
    }

    /// Where a `runtime` command reads and acts: the HTTP API with `--server`, else
    /// the workspace (opened as by [`Ctx::inspect`]).
    pub fn source(&self) -> Result<crate::runtime::source::Source> {
        use crate::runtime::source::Source;
        Ok(match &self.server {
            Some(s) => Source::Remote(crate::remote::Client::new(s)?),
            None => Source::Local(self.inspect()?),
        })
    }

    /// Refuses `--server` for a command that needs the store directly (`what` names it).
    pub fn local_only(&self, what: &str) -> Result<()> {
        match &self.server {
            Some(_) => Err(crate::remote::not_remote(what)),
            None => Ok(()),
        }
    }
}

/// Harness options: the clock is frozen when [`NOW_ENV`] is set.
pub fn options() -> Result<HarnessOptions> {
    let mut opts = HarnessOptions::default();
    if let Ok(v) = std::env::var(NOW_ENV) {
        let at = parse_now(&v).ok_or_else(|| {
            crate::output::bad_input(format!(
                "{NOW_ENV}=`{v}` is neither RFC 3339 (2026-01-02T03:04:05Z) nor epoch milliseconds"
            ))
        })?;
        opts.clock = Arc::new(FixedClock::new(at));
    }
    Ok(opts)
}

/// An instant: RFC 3339, or epoch milliseconds.
pub(crate) fn parse_now(v: &str) -> Option<Timestamp> {
    if let Ok(ms) = v.trim().parse::<i64>() {
        return Some(Timestamp(ms));
    }
    let t = time::OffsetDateTime::parse(v.trim(), &time::format_description::well_known::Rfc3339)
        .ok()?;
    Some(Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64))
}

fn find_workspace(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| d.join("config/workspace.yaml").is_file())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_accepts_rfc3339_and_millis() {
        assert_eq!(parse_now("1000"), Some(Timestamp(1000)));
        assert_eq!(
            parse_now("2025-11-25T17:00:00.123Z"),
            Some(Timestamp(1_764_090_000_123))
        );
        assert_eq!(parse_now("yesterday"), None);
    }
}
