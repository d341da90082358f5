//! Reading one YAML file into a typed value, turning serde errors into
//! positioned [`ConfigError`]s (with a did-you-mean for misspelled keys).

use crate::error::{ConfigError, suggestion};
use crate::locate::Locator;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// One configuration file's text.
pub(crate) struct Source {
    /// Relative to the workspace root.
    pub rel: PathBuf,
    pub text: String,
}

impl Source {
    pub fn locator(&self) -> Locator<'_> {
        Locator::new(&self.text)
    }

    /// An error at `pos` in this file.
    pub fn error(&self, pos: Option<(usize, usize)>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(&self.rel, pos, message)
    }
}

/// A parsed file together with its text (for positions of semantic errors).
pub(crate) struct Parsed<T> {
    pub src: Source,
    pub value: T,
}

/// Reads `rel` under `root`; `Ok(None)` when it does not exist.
pub(crate) fn read(root: &Path, rel: &Path) -> Result<Option<Source>, ConfigError> {
    match std::fs::read_to_string(root.join(rel)) {
        Ok(text) => Ok(Some(Source {
            rel: rel.to_path_buf(),
            text,
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::file(rel, format!("cannot read: {e}"))),
    }
}

/// Parses a file's text; a file with nothing but comments reads as `{}`.
pub(crate) fn parse<T: DeserializeOwned>(src: Source) -> Result<Parsed<T>, ConfigError> {
    let text = if is_blank(&src.text) { "{}" } else { &src.text };
    match serde_norway::from_str(text) {
        Ok(value) => Ok(Parsed { src, value }),
        Err(e) => {
            let mut error = yaml_error(&src.rel, &e);
            refine_position(&src, &mut error);
            Err(error)
        }
    }
}

/// Errors raised by a field adapter (durations) carry the position of the
/// enclosing mapping; move them onto the offending value when it can be found.
fn refine_position(src: &Source, error: &mut ConfigError) {
    let Some(value) = error
        .message
        .split_once("invalid duration `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(value, _)| value)
    else {
        return;
    };
    let from = error.line.unwrap_or(1).saturating_sub(1);
    if let Some(pos) = find_scalar_from(&src.text, from, value) {
        (error.line, error.column) = (Some(pos.0), Some(pos.1));
    }
}

/// The first `key: VALUE` line at or after line index `from` whose value is `value`.
fn find_scalar_from(text: &str, from: usize, value: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().skip(from).find_map(|(i, line)| {
        let (key, rest) = line.split_once(':')?;
        let scalar = rest.split(" #").next()?.trim().trim_matches(['"', '\'']);
        let spaces = rest.len() - rest.trim_start().len();
        (scalar == value).then(|| (i + 1, key.chars().count() + 1 + spaces + 1))
    })
}

fn is_blank(text: &str) -> bool {
    text.lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
}

/// A serde error as a positioned error; the position moves out of the message.
pub(crate) fn yaml_error(rel: &Path, e: &serde_norway::Error) -> ConfigError {
    let mut message = e.to_string();
    let pos = e.location().map(|l| (l.line(), l.column()));
    if let Some((line, column)) = pos {
        message = message.replacen(&format!(" at line {line} column {column}"), "", 1);
    }
    message.push_str(&misspelling_hint(&message));
    ConfigError::at(rel, pos, message)
}

/// For "unknown field `x`, expected one of `a`, `b`": a did-you-mean, if close.
fn misspelling_hint(message: &str) -> String {
    let Some(rest) = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|p| message.find(p).map(|i| &message[i + p.len()..]))
    else {
        return String::new();
    };
    let Some((word, expected)) = rest.split_once('`') else {
        return String::new();
    };
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    suggestion(word, candidates)
}
