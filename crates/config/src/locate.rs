//! A small position finder for YAML text: serde gives values without positions,
//! so semantic errors find the line and column of the offending key or value here.
//!
//! It understands block-style mappings (`key:` lines nested by indentation),
//! which is how configuration files are written; anything it cannot find falls
//! back to the nearest enclosing key it could find.

/// 1-based (line, column).
pub(crate) type Pos = (usize, usize);

/// Finds keys and values in one file's text.
pub(crate) struct Locator<'a> {
    lines: Vec<&'a str>,
}

/// A key found in the text: where it is and which lines its value spans.
#[derive(Clone, Copy)]
struct Found {
    line: usize,
    indent: usize,
    /// Byte offset just after the key's `:` on its line.
    after_colon: usize,
    /// One past the last line of the key's value.
    end: usize,
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            lines: text.lines().collect(),
        }
    }

    /// The position of the key at `path` (or of its deepest ancestor found).
    pub fn key(&self, path: &[&str]) -> Option<Pos> {
        let found = self.walk(path)?;
        Some((found.line + 1, found.indent + 1))
    }

    /// The position of the scalar written after the key at `path` (`key: VALUE`),
    /// or of the key when the value is on later lines.
    pub fn scalar(&self, path: &[&str]) -> Option<Pos> {
        let found = self.walk(path)?;
        let line = self.lines[found.line];
        let rest = &line[found.after_colon..];
        let skipped = rest.len() - rest.trim_start().len();
        if strip_comment(rest).trim().is_empty() {
            return Some((found.line + 1, found.indent + 1));
        }
        Some((found.line + 1, column(line, found.after_colon + skipped)))
    }

    /// The position of `value` inside the value of the key at `path` (e.g. one
    /// element of a list), falling back to the key.
    pub fn value(&self, path: &[&str], value: &str) -> Option<Pos> {
        let found = self.walk(path)?;
        for idx in found.line..found.end {
            let line = self.lines[idx];
            let from = if idx == found.line {
                found.after_colon
            } else {
                0
            };
            let searched = strip_comment(&line[from..]);
            if let Some(off) = find_token(searched, value) {
                return Some((idx + 1, column(line, from + off)));
            }
        }
        Some((found.line + 1, found.indent + 1))
    }

    /// Follows `path` from the top level; stops at the deepest key found.
    fn walk(&self, path: &[&str]) -> Option<Found> {
        let mut range = (0, self.lines.len());
        let mut found = None;
        for key in path {
            match self.find_child(range, key) {
                Some(f) => {
                    range = (f.line + 1, f.end);
                    found = Some(f);
                }
                None => break,
            }
        }
        found
    }

    /// The key `key` among the direct children found in lines `range`.
    fn find_child(&self, (start, end): (usize, usize), key: &str) -> Option<Found> {
        let child_indent = (start..end).find_map(|i| content_indent(self.lines[i]))?;
        (start..end).find_map(|i| {
            let line = self.lines[i];
            if content_indent(line) != Some(child_indent) {
                return None;
            }
            let after_colon = key_match(&line[child_indent..], key)? + child_indent;
            Some(Found {
                line: i,
                indent: child_indent,
                after_colon,
                end: self.block_end(i, child_indent, end),
            })
        })
    }

    /// One past the last line belonging to the key on line `at` (indented `indent`).
    fn block_end(&self, at: usize, indent: usize, limit: usize) -> usize {
        (at + 1..limit)
            .find(|&i| {
                let line = self.lines[i];
                match content_indent(line) {
                    Some(n) if n < indent => true,
                    Some(n) if n == indent => !line[n..].starts_with('-'),
                    _ => false,
                }
            })
            .unwrap_or(limit)
    }
}

/// The indentation of a line with content (not blank, not a comment).
fn content_indent(line: &str) -> Option<usize> {
    let trimmed = line.trim_start_matches(' ');
    if trimmed.trim().is_empty() || trimmed.starts_with('#') {
        return None;
    }
    Some(line.len() - trimmed.len())
}

/// If `text` starts with `key:` (bare or quoted), the byte offset after the colon.
fn key_match(text: &str, key: &str) -> Option<usize> {
    let quoted_dq = format!("\"{key}\"");
    let quoted_sq = format!("'{key}'");
    [key, quoted_dq.as_str(), quoted_sq.as_str()]
        .iter()
        .find_map(|k| {
            let rest = text.strip_prefix(k)?.strip_prefix(':')?;
            (rest.is_empty() || rest.starts_with([' ', '\t'])).then_some(k.len() + 1)
        })
}

/// `text` without a trailing ` # comment`.
fn strip_comment(text: &str) -> &str {
    match text.find(" #") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Byte offset of `token` in `text` where it is not part of a longer word.
fn find_token(text: &str, token: &str) -> Option<usize> {
    if token.is_empty() {
        return None;
    }
    let first_is_word = token.chars().next().is_some_and(is_word);
    let last_is_word = token.chars().last().is_some_and(is_word);
    text.match_indices(token).map(|(i, _)| i).find(|&i| {
        let before = text[..i].chars().last();
        let after = text[i + token.len()..].chars().next();
        let glued_before = first_is_word && before.is_some_and(is_word);
        let glued_after = last_is_word && after.is_some_and(is_word);
        !glued_before && !glued_after
    })
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// 1-based character column of byte offset `byte` in `line`.
fn column(line: &str, byte: usize) -> usize {
    line[..byte].chars().count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# comment
name: writer
model: gpt  # the model
tools:
  - read_file
  - sned_mail
delegates: [researcher, sned_mail]
nested:
  inner:
    deep: 3
  other: x
list_at_same_indent:
- a
- b
after: 1
";

    #[test]
    fn finds_keys_and_scalars() {
        let l = Locator::new(TEXT);
        assert_eq!(l.key(&["model"]), Some((3, 1)));
        assert_eq!(l.scalar(&["model"]), Some((3, 8)));
        assert_eq!(l.scalar(&["nested", "inner", "deep"]), Some((10, 11)));
        assert_eq!(l.key(&["nested", "other"]), Some((11, 3)));
        assert_eq!(l.scalar(&["tools"]), Some((4, 1)));
    }

    #[test]
    fn finds_values_within_a_key() {
        let l = Locator::new(TEXT);
        assert_eq!(l.value(&["tools"], "sned_mail"), Some((6, 5)));
        assert_eq!(l.value(&["delegates"], "sned_mail"), Some((7, 25)));
        assert_eq!(l.value(&["list_at_same_indent"], "b"), Some((14, 3)));
        assert_eq!(l.value(&["after"], "1"), Some((15, 8)));
    }

    #[test]
    fn falls_back_to_the_deepest_key_found() {
        let l = Locator::new(TEXT);
        assert_eq!(l.value(&["tools"], "missing"), Some((4, 1)));
        assert_eq!(l.key(&["nested", "nope"]), Some((8, 1)));
        assert_eq!(l.key(&["nope"]), None);
        assert_eq!(l.value(&["tools"], "read"), Some((4, 1)));
    }
}
