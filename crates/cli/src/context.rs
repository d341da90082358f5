//! Where the workspace is, and opening it for acting or for looking.

use anyhow::{Context, Result};
use harness_engine::Harness;
use std::path::{Path, PathBuf};

/// Options every command shares.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub workspace: Option<PathBuf>,
    pub json: bool,
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

    /// Opens the workspace to act on it (creates the store if needed).
    pub fn open(&self) -> Result<Harness> {
        Ok(Harness::open(&self.root()?)?)
    }

    /// Opens the workspace to look at it: never creates a store, never takes the worker lock.
    pub fn inspect(&self) -> Result<Harness> {
        Ok(Harness::inspect(&self.root()?)?)
    }
}

fn find_workspace(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| d.join("config/workspace.yaml").is_file())
        .map(Path::to_path_buf)
}
