//! Redaction in exports: the harness's [`Redactor`] (the workspace's secret
//! variables as the exporting process's environment holds them, and every secret
//! shape) over every file, plus line-wise redaction of the copied YAML configuration.
//! The worker already redacted the records before storing them; this pass catches
//! what it could not know (a variable set only where the export runs, records
//! written by an older version).

use harness_core::{Redactor, is_secret_key};

/// What replaces a YAML value: quoted, so the file still parses as a string.
const REDACTED_YAML: &str = "\"[REDACTED]\"";

/// `value` as JSON (pretty or one line) with every secret replaced. Written as
/// serialized when nothing needed redacting, so fields keep their declared order;
/// otherwise from the redacted [`serde_json::Value`] (fields then sorted by name).
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(
    r: &Redactor,
    value: &T,
    pretty: bool,
) -> serde_json::Result<String> {
    let mut v = serde_json::to_value(value)?;
    match r.redact_json(&mut v) {
        true => write_json(&v, pretty),
        false => write_json(value, pretty),
    }
}

fn write_json<T: serde::Serialize + ?Sized>(v: &T, pretty: bool) -> serde_json::Result<String> {
    match pretty {
        true => serde_json::to_string_pretty(v),
        false => serde_json::to_string(v),
    }
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
    if !is_secret_key(p.key) {
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
    if is_variable_reference(value) {
        return (line.to_string(), false);
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
        Some(p)
            if is_secret_key(p.key)
                && !p.value.trim().is_empty()
                && !is_variable_reference(p.value) =>
        {
            let trailing = &p.value[p.value.trim_end().len()..];
            format!("{} {REDACTED_YAML}{trailing}", p.head)
        }
        _ => segment.to_string(),
    }
}

/// `${NAME}` (quoted or not, a comment after it allowed): names the variable that holds
/// the secret, as `api_key_env` does, so it is kept.
fn is_variable_reference(value: &str) -> bool {
    let v = value.split(" #").next().unwrap_or_default().trim();
    let v = v
        .strip_prefix(['"', '\''])
        .and_then(|x| x.strip_suffix(['"', '\'']))
        .unwrap_or(v);
    v.strip_prefix("${")
        .and_then(|x| x.strip_suffix('}'))
        .is_some_and(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}
