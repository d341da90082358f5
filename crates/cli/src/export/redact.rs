//! Secret redaction: YAML values under secret-looking keys, and the values of
//! the API-key environment variables wherever they appear.

use harness_config::Workspace;

pub(crate) const REDACTED: &str = "[REDACTED]";
/// What replaces a YAML value: quoted, so the file still parses as a string.
const REDACTED_YAML: &str = "\"[REDACTED]\"";
/// Shorter values are not replaced: they would garble the evidence and protect nothing.
const MIN_SECRET_LEN: usize = 4;

/// Values that must not appear in any exported file.
#[derive(Clone, Debug, Default)]
pub(crate) struct Secrets {
    /// Longest first, so a secret containing another is replaced whole.
    values: Vec<String>,
}

impl Secrets {
    /// The current values of every model's `api_key_env`, looked up with `env`.
    pub(crate) fn from_workspace(ws: &Workspace, env: impl Fn(&str) -> Option<String>) -> Self {
        let names = ws.models.values().filter_map(|m| m.api_key_env.as_deref());
        Self::new(names.filter_map(env))
    }

    pub(crate) fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut values: Vec<String> = values
            .into_iter()
            .filter(|v| v.len() >= MIN_SECRET_LEN)
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Self { values }
    }

    /// `text` with every secret replaced; None when it held none (the common case: no copy).
    pub(crate) fn text(&self, text: &str) -> Option<String> {
        if !self.values.iter().any(|v| text.contains(v.as_str())) {
            return None;
        }
        let mut out = text.to_string();
        for v in &self.values {
            out = out.replace(v.as_str(), REDACTED);
        }
        Some(out)
    }

    /// Raw contents with every secret replaced; None when they held none.
    pub(crate) fn bytes(&self, data: &[u8]) -> Option<Vec<u8>> {
        let found = |v: &String| data.windows(v.len()).any(|w| w == v.as_bytes());
        if !self.values.iter().any(found) {
            return None;
        }
        let mut out = data.to_vec();
        for v in &self.values {
            out = replace_bytes(&out, v.as_bytes(), REDACTED.as_bytes());
        }
        Some(out)
    }

    /// `value` as JSON (pretty or one line) with every secret replaced. Serialized
    /// directly when no secret can be in it, so fields keep their declared order;
    /// otherwise through a [`serde_json::Value`] (fields then sorted by name).
    pub(crate) fn to_json<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
        pretty: bool,
    ) -> serde_json::Result<String> {
        let text = write_json(value, pretty)?;
        // A secret inside any string shows up in the text in its JSON-escaped form.
        if !self
            .values
            .iter()
            .any(|s| text.contains(escaped(s).as_str()))
        {
            return Ok(text);
        }
        let mut v = serde_json::to_value(value)?;
        self.json(&mut v);
        write_json(&v, pretty)
    }

    /// Redacts every string (and object key) of a JSON value in place, so the
    /// document stays valid JSON whatever the secret's characters are.
    pub(crate) fn json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        if self.values.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                if let Some(r) = self.text(s) {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.json(&mut v);
                    map.insert(self.text(&k).unwrap_or(k), v);
                }
            }
            _ => {}
        }
    }
}

fn write_json<T: serde::Serialize + ?Sized>(v: &T, pretty: bool) -> serde_json::Result<String> {
    match pretty {
        true => serde_json::to_string_pretty(v),
        false => serde_json::to_string(v),
    }
}

/// How `s` appears inside a JSON string.
fn escaped(s: &str) -> String {
    let quoted = serde_json::Value::from(s).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

fn replace_bytes(data: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// Whether a YAML key names a secret: matches /(api_?key|token|secret|password|authorization)/i,
/// except `…_env` keys, which only name the variable that holds one.
pub(crate) fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    !k.ends_with("_env")
        && [
            "apikey",
            "api_key",
            "token",
            "secret",
            "password",
            "authorization",
        ]
        .iter()
        .any(|s| k.contains(s))
}

/// A YAML file with secret values replaced, line by line (comments and layout kept,
/// so the copy still reads like the original).
pub(crate) fn yaml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Indentation of a secret key whose value is the block of more-indented lines below it.
    let mut block: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let eol = &line[body.len()..];
        let indent = body.len() - body.trim_start().len();
        if let Some(parent) = block {
            if body.trim().is_empty() || indent > parent {
                out.push_str(&nested_line(body));
                out.push_str(eol);
                continue;
            }
            block = None;
        }
        let (redacted, opens_block) = line_redacted(body);
        if opens_block {
            block = Some(indent);
        }
        out.push_str(&redacted);
        out.push_str(eol);
    }
    out
}

/// A `key: value` split: everything up to and including the `:`, the key itself, and the value.
struct Pair<'a> {
    head: &'a str,
    key: &'a str,
    value: &'a str,
}

/// Splits `[indent][- ][# ]key: value`; None when the line holds no key.
fn pair(line: &str) -> Option<Pair<'_>> {
    let start = line.len() - line.trim_start_matches([' ', '\t', '-', '#']).len();
    let rest = &line[start..];
    let (key, after_key) = match rest.chars().next()? {
        q @ ('"' | '\'') => {
            let end = rest[1..].find(q)? + 1;
            (&rest[1..end], end + 1)
        }
        _ => {
            let colon = colon_at(rest)?;
            (rest[..colon].trim_end(), colon)
        }
    };
    let tail = &rest[after_key..];
    let value = tail.trim_start().strip_prefix(':')?;
    if !(value.is_empty() || value.starts_with([' ', '\t'])) {
        return None;
    }
    let head_len = line.len() - value.len();
    Some(Pair {
        head: &line[..head_len],
        key,
        value,
    })
}

/// Position of the first `:` that ends a plain key (followed by a space or the end).
fn colon_at(s: &str) -> Option<usize> {
    s.char_indices()
        .find(|&(i, c)| {
            c == ':'
                && s[i + 1..]
                    .chars()
                    .next()
                    .is_none_or(|n| n == ' ' || n == '\t')
        })
        .map(|(i, _)| i)
}

/// One line outside secret blocks. Returns the line and whether it opens a secret
/// block (a secret key whose value is on the following, more-indented lines).
fn line_redacted(line: &str) -> (String, bool) {
    let Some(p) = pair(line) else {
        return (line.to_string(), false);
    };
    let value = p.value.trim();
    if !secret_key(p.key) {
        return match value.starts_with('{') {
            true => (format!("{}{}", p.head, flow_redacted(p.value)), false),
            false => (line.to_string(), false),
        };
    }
    // Empty, comment-only, or a block scalar (`|`, `>`): the secret is on the lines below
    // (unless this line is itself a comment: what follows it is not its value).
    if value.is_empty() || value.starts_with(['#', '|', '>']) {
        return (line.to_string(), !line.trim_start().starts_with('#'));
    }
    (format!("{} {REDACTED_YAML}", p.head), false)
}

/// A line inside a secret block: every value goes, the structure stays.
fn nested_line(line: &str) -> String {
    if line.trim().is_empty() {
        return line.to_string();
    }
    match pair(line) {
        Some(p) if p.value.trim().is_empty() => line.to_string(),
        Some(p) => format!("{} {REDACTED_YAML}", p.head),
        None => {
            let start = line.len() - line.trim_start_matches([' ', '\t', '-']).len();
            format!("{}{REDACTED_YAML}", &line[..start])
        }
    }
}

/// A flow mapping (`{ a: 1, api_token: x }`) with the values of secret keys replaced.
fn flow_redacted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut segment = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) => {
                segment.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => {
                segment.push(c);
                quote = Some(c);
            }
            None if matches!(c, ',' | '{' | '}' | '[' | ']') => {
                out.push_str(&flow_pair_redacted(&segment));
                out.push(c);
                segment.clear();
            }
            None => segment.push(c),
        }
    }
    out.push_str(&flow_pair_redacted(&segment));
    out
}

fn flow_pair_redacted(segment: &str) -> String {
    match pair(segment) {
        Some(p) if secret_key(p.key) && !p.value.trim().is_empty() => {
            let trailing = &p.value[p.value.trim_end().len()..];
            format!("{} {REDACTED_YAML}{trailing}", p.head)
        }
        _ => segment.to_string(),
    }
}
