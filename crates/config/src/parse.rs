//! Reading one YAML file into a typed value and the tree that locates its keys
//! and values (see [`crate::yaml`]).

use crate::error::ConfigError;
use crate::yaml::{Locator, Pos, Tree, parse_with_tree};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// One configuration file's text.
pub(crate) struct Source {
    /// Relative to the workspace root.
    pub rel: PathBuf,
    pub text: String,
    /// Filled in by [`parse`].
    pub tree: Tree,
}

impl Source {
    pub fn new(rel: impl Into<PathBuf>, text: String) -> Self {
        Self {
            rel: rel.into(),
            text,
            tree: Tree::default(),
        }
    }

    /// Positions of keys and values in this file.
    pub fn locator(&self) -> Locator<'_> {
        Locator::new(&self.tree, &self.text)
    }

    /// An error at `pos` in this file.
    pub fn error(&self, pos: Option<Pos>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(&self.rel, pos, message)
    }
}

/// A parsed file together with its source (for positions of semantic errors).
pub(crate) struct Parsed<T> {
    pub src: Source,
    pub value: T,
}

/// Reads `rel` under `root`; `Ok(None)` when it does not exist.
pub(crate) fn read(root: &Path, rel: &Path) -> Result<Option<Source>, ConfigError> {
    match std::fs::read_to_string(root.join(rel)) {
        Ok(text) => Ok(Some(Source::new(rel, text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::file(rel, format!("cannot read: {e}"))),
    }
}

/// Parses a file's text; a file with nothing but comments reads as `{}`.
/// Every error found is returned (a typed error and a syntax error after it).
pub(crate) fn parse<T: DeserializeOwned>(mut src: Source) -> Result<Parsed<T>, Vec<ConfigError>> {
    let text = if is_blank(&src.text) { "{}" } else { &src.text };
    let (value, tree) = parse_with_tree(text, &src.rel)?;
    src.tree = tree;
    Ok(Parsed { src, value })
}

fn is_blank(text: &str) -> bool {
    text.lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
}
