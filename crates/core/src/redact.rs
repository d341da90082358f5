//! Secret redaction of text, bytes and JSON, with no I/O.
//!
//! A [`Redactor`] replaces two kinds of secrets with [`REDACTED`]:
//!
//! * **known values** it was built from (the engine reads them from its own
//!   environment: the variables the workspace declares), also in their
//!   JSON-escaped and percent-encoded forms. Values shorter than
//!   [`MIN_SECRET_LEN`] are ignored: they would replace ordinary words and
//!   numbers all over the records and protect nothing.
//! * **shapes** that hold a secret whatever its value: the password of a URL
//!   (`postgres://user:PASSWORD@host`), `Authorization:` headers and `Bearer`
//!   tokens, `-----BEGIN … PRIVATE KEY-----` blocks, flags (`--api-key=V`,
//!   `--token V`), `key=value` / `key: value` pairs whose key names a secret
//!   ([`is_secret_key`]), and in JSON the string values under such keys.
//!
//! Redaction is idempotent (redacting twice gives the same text), so records
//! redacted by the worker can be redacted again by an export.

use regex::Regex;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::LazyLock;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Known values shorter than this are not redacted by value (the shapes still apply).
pub const MIN_SECRET_LEN: usize = 6;

/// Redacts secrets from strings, bytes and JSON values. Cheap to clone.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Every known value and its encoded forms, longest first, as one alternation.
    values: Option<Regex>,
    values_bytes: Option<regex::bytes::Regex>,
    /// How many distinct secret values were accepted (encoded forms not counted).
    count: usize,
}

/// Never prints the values (the compiled pattern holds them).
impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("values", &self.count)
            .finish()
    }
}

impl Redactor {
    /// A redactor of `values` (those shorter than [`MIN_SECRET_LEN`] are skipped)
    /// and of every secret shape.
    pub fn new<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Self {
        let mut accepted: Vec<String> = values
            .into_iter()
            .map(|v| v.as_ref().to_string())
            .filter(|v| v.len() >= MIN_SECRET_LEN)
            .collect();
        accepted.sort();
        accepted.dedup();
        let count = accepted.len();
        let mut forms: Vec<String> = Vec::with_capacity(count * 3);
        for v in &accepted {
            forms.push(v.clone());
            forms.push(json_escaped(v));
            forms.push(percent_encoded(v));
        }
        // Longest first: at one position the alternation takes the first that matches,
        // so a secret containing another is replaced whole.
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        if forms.is_empty() {
            return Self::default();
        }
        let pattern = forms
            .iter()
            .map(|f| regex::escape(f))
            .collect::<Vec<_>>()
            .join("|");
        // Literal alternations of escaped strings always compile; the size limit is
        // raised for workspaces with many long secrets.
        let values = regex::RegexBuilder::new(&pattern)
            .size_limit(64 << 20)
            .build()
            .expect("escaped literals form a valid pattern");
        let values_bytes = regex::bytes::RegexBuilder::new(&pattern)
            .size_limit(64 << 20)
            .build()
            .expect("escaped literals form a valid pattern");
        Self {
            values: Some(values),
            values_bytes: Some(values_bytes),
            count,
        }
    }

    /// How many known values this redactor replaces (shapes are always redacted).
    pub fn value_count(&self) -> usize {
        self.count
    }

    /// `text` with every known value and every secret shape replaced.
    pub fn redact_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let out = match &self.values {
            Some(re) => re.replace_all(text, REDACTED),
            None => Cow::Borrowed(text),
        };
        let shaped = match shapes(&out) {
            Cow::Owned(s) => Some(s),
            Cow::Borrowed(_) => None,
        };
        match shaped {
            Some(s) => Cow::Owned(s),
            None => out,
        }
    }

    /// Redacts `s` in place; returns whether anything was replaced.
    pub fn redact_string(&self, s: &mut String) -> bool {
        match self.redact_str(s) {
            Cow::Borrowed(_) => false,
            Cow::Owned(r) => {
                *s = r;
                true
            }
        }
    }

    /// Raw contents (an artifact): known values always; the shapes only when the
    /// bytes are UTF-8 text (in binary data they would match noise).
    pub fn redact_bytes<'a>(&self, data: &'a [u8]) -> Cow<'a, [u8]> {
        if let Ok(text) = std::str::from_utf8(data) {
            return match self.redact_str(text) {
                Cow::Borrowed(_) => Cow::Borrowed(data),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            };
        }
        match &self.values_bytes {
            Some(re) => re.replace_all(data, REDACTED.as_bytes()),
            None => Cow::Borrowed(data),
        }
    }

    /// Redacts a JSON value in place: every string (and object key) as text, every
    /// string under a key that names a secret, and the value after a secret flag in
    /// an argv-like array (`["--token", "V"]`). Numbers, booleans and null are kept,
    /// so the value keeps its types. Returns whether anything was replaced.
    pub fn redact_json(&self, value: &mut Value) -> bool {
        match value {
            Value::String(s) => self.redact_string(s),
            Value::Array(items) => {
                let mut changed = false;
                for i in 0..items.len() {
                    let flag = items[i].as_str().is_some_and(is_secret_flag);
                    changed |= self.redact_json(&mut items[i]);
                    if flag
                        && let Some(Value::String(next)) = items.get_mut(i + 1)
                        && !next.starts_with('-')
                    {
                        changed |= replace(next);
                    }
                }
                changed
            }
            Value::Object(map) => {
                let keys_change = self
                    .values
                    .as_ref()
                    .is_some_and(|re| map.keys().any(|k| re.is_match(k)));
                let mut changed = false;
                if keys_change {
                    let entries = std::mem::take(map);
                    for (k, v) in entries {
                        let k = match self.redact_str(&k) {
                            Cow::Borrowed(_) => k,
                            Cow::Owned(r) => r,
                        };
                        map.insert(k, v);
                    }
                    changed = true;
                }
                for (k, v) in map.iter_mut() {
                    changed |= match is_secret_key(k) {
                        true => redact_strings(v),
                        false => self.redact_json(v),
                    };
                }
                changed
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }
}

/// Sets `s` to [`REDACTED`]; returns whether it was anything else.
fn replace(s: &mut String) -> bool {
    if s == REDACTED {
        return false;
    }
    *s = REDACTED.to_string();
    true
}

/// Every string inside `v` (the value of a secret key) becomes [`REDACTED`].
fn redact_strings(v: &mut Value) -> bool {
    match v {
        Value::String(s) => replace(s),
        Value::Array(items) => items.iter_mut().fold(false, |c, v| redact_strings(v) | c),
        Value::Object(map) => map.values_mut().fold(false, |c, v| redact_strings(v) | c),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// `--token`, `-api-key`: an option whose value (the next argument) is a secret.
fn is_secret_flag(s: &str) -> bool {
    let name = s.trim_start_matches('-');
    s.starts_with('-') && name.len() < s.len() && !s.contains('=') && is_secret_key(name)
}

/// How `s` appears inside a JSON string.
fn json_escaped(s: &str) -> String {
    let quoted = Value::from(s).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// `s` with everything but RFC 3986 unreserved characters percent-encoded.
fn percent_encoded(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Keys that name a secret

/// Words that make a key name a secret on their own (`token`, `db_password`, `secrets:`).
const SECRET_WORDS: &[&str] = &[
    "token",
    "secret",
    "secrets",
    "password",
    "passwords",
    "passwd",
    "passphrase",
    "credential",
    "credentials",
    "apikey",
    "apikeys",
    "auth",
    "authorization",
    "cookie",
    "privatekey",
    "accesskey",
    "secretkey",
];

/// A word ending so names a secret too (`authtoken`, `dbpassword`, `clientsecret`);
/// `tokenizer` or `secretary` do not end so.
const SECRET_ENDINGS: &[&str] = &["token", "password", "passwd", "secret", "apikey"];

/// Words that make a following `key`/`keys` a secret (`api_key`, `private_key`, `x-api-key`).
const KEY_KINDS: &[&str] = &[
    "api",
    "private",
    "access",
    "secret",
    "signing",
    "encryption",
    "master",
    "client",
    "ssh",
];

/// Words that make the key describe a secret rather than hold one: counts and limits
/// (`max_tokens`, `token_count`), kinds and places (`token_type`, `auth_url`,
/// `secret_name`), pagination cursors (`next_token`, `page_token`).
const DESCRIPTIVE: &[&str] = &[
    "max",
    "min",
    "count",
    "limit",
    "limits",
    "budget",
    "usage",
    "used",
    "num",
    "number",
    "total",
    "length",
    "len",
    "remaining",
    "estimate",
    "type",
    "kind",
    "expires",
    "expiry",
    "expiration",
    "ttl",
    "url",
    "uri",
    "endpoint",
    "name",
    "method",
    "scheme",
    "mode",
    "enabled",
    "required",
    "page",
    "next",
    "pagination",
    "continuation",
    "cursor",
];

/// A key ending in one of these names where the secret is, not the secret
/// (`api_key_env: OPENAI_API_KEY`, `password_file: /run/secrets/db`).
const LOCATION_SUFFIXES: &[&str] = &["env", "file", "path", "dir", "var", "ref"];

/// Whether a key (JSON, YAML, `KEY=value`, `--flag`) names a secret value.
///
/// The key is split into words at `_`, `-`, `.`, spaces and camelCase humps
/// (`OPENAI_API_KEY`, `apiKey`, `X-Api-Key` → `api`, `key`). It names a secret when a
/// word is one of `token`, `secret(s)`, `password(s)`, `passwd`, `passphrase`,
/// `credential(s)`, `apikey`, `auth`, `authorization`, `cookie`, `privatekey`,
/// `accesskey`, `secretkey`; or ends in `token`, `password`, `passwd`, `secret` or
/// `apikey`; or is `key(s)` after `api`, `private`, `access`, `secret`, `signing`,
/// `encryption`, `master`, `client` or `ssh` — unless another word makes it a
/// description (`max_tokens`, `token_count`, `token_type`, `next_token`, `auth_url`)
/// or the last word says where the secret is (`…_env`, `…_file`, `…_path`).
/// `tokens` (a count) and `author` are not secret words.
pub fn is_secret_key(key: &str) -> bool {
    // Most keys (`tool`, `call_id`, `output_bytes`) hold no secret stem at all: answer
    // those without splitting (this runs for every key of every committed payload).
    if !SECRET_STEMS
        .iter()
        .any(|stem| contains_ignore_case(key, stem))
    {
        return false;
    }
    let words = words(key);
    let Some(last) = words.last() else {
        return false;
    };
    if LOCATION_SUFFIXES.contains(&last.as_str())
        || words.iter().any(|w| DESCRIPTIVE.contains(&w.as_str()))
    {
        return false;
    }
    words.iter().enumerate().any(|(i, w)| {
        SECRET_WORDS.contains(&w.as_str())
            || SECRET_ENDINGS.iter().any(|e| w.ends_with(e))
            || ((w == "key" || w == "keys") && i > 0 && KEY_KINDS.contains(&words[i - 1].as_str()))
    })
}

/// Every secret word above contains one of these.
const SECRET_STEMS: &[&str] = &[
    "token",
    "secret",
    "passw",
    "passphrase",
    "credential",
    "key",
    "auth",
    "cookie",
];

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Lower-case words of a key: split at non-alphanumerics and camelCase humps.
fn words(key: &str) -> Vec<String> {
    let chars: Vec<char> = key.chars().collect();
    let mut words = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if c.is_uppercase() && !cur.is_empty() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            // `apiKey` → api|Key; `APIKey` → API|Key; `OPENAI` stays whole.
            if prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower) {
                words.push(std::mem::take(&mut cur));
            }
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

// ---------------------------------------------------------------------------
// Shapes

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("built-in redaction pattern")
}

/// Text holding none of these cannot hold a secret shape: most strings (ids, names,
/// counts) are dismissed with one scan.
static MAY_HOLD_SHAPE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)token|secret|passw|passphrase|credential|key|auth|cookie|bearer|://")
});

/// `-----BEGIN RSA PRIVATE KEY----- … -----END RSA PRIVATE KEY-----` (or to the end of
/// the text when cut short).
static PRIVATE_KEY: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)[\s\S]*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)")
});

/// `scheme://user:PASSWORD@host`: the password is everything up to the last `@`
/// of the authority.
static URL_PASSWORD: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/?#@"'<>]*):([^\s/?#"'<>]+)@"#));

/// `Authorization: Bearer X`, `"authorization": "Basic X"`, `Proxy-Authorization=X`.
static AUTH_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)\b((?:proxy-)?authorization["']?\s*[:=]\s*["']?)((?:bearer|basic|digest|token|negotiate|apikey)\s+)?(\[REDACTED\]|[^\s"',;]+)"#,
    )
});

/// A bearer token on its own (`Bearer eyJhbGciOi…`).
static BEARER: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b([Bb]earer\s+)([A-Za-z0-9\-._~+/]{8,}=*)"));

/// `--name VALUE`: separated by spaces, as consecutive items of a quoted list
/// (`"--name", "VALUE"` in JSON or a YAML flow list) or of a YAML block list
/// (`- --name` / `- VALUE`). (`--name=VALUE` is a key-value pair.)
static FLAG: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"((?:^|[\s"'`(\[,])--?)([A-Za-z0-9][A-Za-z0-9_\-]*)(\s+|["'][ \t]*,\s*["']|[ \t]*\r?\n\s*-[ \t]+)("(?:[^"\\]|\\.)*"|'[^']*'|\[REDACTED\]|[^\s"'`\-][^\s"'`]*)"#,
    )
});

/// `key=value`, `key: value`, `"key": "value"`, `--key=value`, `?key=value&…`.
static KEY_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"([A-Za-z0-9_.\-]+)(["'`]?[ \t]*[:=][ \t]*)("(?:[^"\\]|\\.)*"|'[^']*'|`[^`]*`|\[REDACTED\]|[^\s"'`,;&<>(){}\[\]]+)"#,
    )
});

/// Applies every shape rule in turn.
fn shapes(text: &str) -> Cow<'_, str> {
    if !MAY_HOLD_SHAPE.is_match(text) {
        return Cow::Borrowed(text);
    }
    let mut out = Cow::Borrowed(text);
    let rules: [fn(&str) -> Cow<'_, str>; 6] = [
        private_keys,
        url_passwords,
        auth_headers,
        bearers,
        flags,
        key_values,
    ];
    for rule in rules {
        // A rule that matched but kept everything (a harmless key) still returns a
        // copy: only a real change counts, so untouched text stays borrowed.
        let changed = match rule(&out) {
            Cow::Owned(s) if s != *out => Some(s),
            _ => None,
        };
        if let Some(s) = changed {
            out = Cow::Owned(s);
        }
    }
    out
}

fn private_keys(text: &str) -> Cow<'_, str> {
    PRIVATE_KEY.replace_all(text, |c: &regex::Captures| {
        let end = &c[2];
        let end = if end.is_empty() { "" } else { end };
        format!("{}\n{REDACTED}\n{end}", &c[1])
    })
}

fn url_passwords(text: &str) -> Cow<'_, str> {
    URL_PASSWORD.replace_all(text, format!("${{1}}:{REDACTED}@").as_str())
}

fn auth_headers(text: &str) -> Cow<'_, str> {
    AUTH_HEADER.replace_all(text, |c: &regex::Captures| {
        let scheme = c.get(2).map_or("", |m| m.as_str());
        format!("{}{scheme}{REDACTED}", &c[1])
    })
}

fn bearers(text: &str) -> Cow<'_, str> {
    BEARER.replace_all(text, format!("${{1}}{REDACTED}").as_str())
}

fn flags(text: &str) -> Cow<'_, str> {
    FLAG.replace_all(text, |c: &regex::Captures| {
        let value = &c[4];
        match is_secret_key(&c[2]) {
            true => format!("{}{}{}{}", &c[1], &c[2], &c[3], redacted_like(value)),
            false => c[0].to_string(),
        }
    })
}

fn key_values(text: &str) -> Cow<'_, str> {
    KEY_VALUE.replace_all(text, |c: &regex::Captures| {
        let (key, sep, value) = (&c[1], &c[2], &c[3]);
        if !is_secret_key(key) {
            // `config:password=x`: the value may itself hold a pair.
            return format!("{key}{sep}{}", key_values(value));
        }
        // `Authorization: Bearer [REDACTED]` was handled whole; `null`/`true` are no secret.
        let scheme = ["bearer", "basic", "digest", "token", "negotiate"];
        let bare = value.to_ascii_lowercase();
        if scheme.contains(&bare.as_str()) || ["null", "true", "false"].contains(&bare.as_str()) {
            return c[0].to_string();
        }
        format!("{key}{sep}{}", redacted_like(value))
    })
}

/// [`REDACTED`], quoted as `value` was.
fn redacted_like(value: &str) -> String {
    match value.chars().next() {
        Some(q @ ('"' | '\'' | '`')) if value.len() >= 2 && value.ends_with(q) => {
            format!("{q}{REDACTED}{q}")
        }
        _ => REDACTED.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_keys() {
        for k in [
            "api_key",
            "apiKey",
            "APIKey",
            "apikey",
            "x-api-key",
            "X-Api-Key",
            "OPENAI_API_KEY",
            "token",
            "GITHUB_TOKEN",
            "access_token",
            "accessToken",
            "refresh_token",
            "authtoken",
            "csrf-token",
            "secret",
            "client_secret",
            "clientSecret",
            "secrets",
            "password",
            "DB_PASSWORD",
            "dbpassword",
            "passwd",
            "passphrase",
            "credential",
            "credentials",
            "private_key",
            "privateKey",
            "access_key",
            "aws_secret_access_key",
            "signing_key",
            "auth",
            "basic_auth",
            "Authorization",
            "Proxy-Authorization",
            "Set-Cookie",
            "smtp.password",
            "--api-key",
        ] {
            assert!(is_secret_key(k), "{k} should name a secret");
        }
    }

    #[test]
    fn harmless_keys() {
        for k in [
            "max_tokens",
            "maxTokens",
            "max_completion_tokens",
            "tokens_used",
            "token_count",
            "prompt_tokens",
            "total_tokens",
            "tokens",
            "tokenizer",
            "author",
            "authors",
            "authored_by",
            "authenticated",
            "auth_url",
            "token_type",
            "next_token",
            "page_token",
            "secret_name",
            "password_min_length",
            "api_key_env",
            "password_file",
            "private_key_path",
            "key",
            "keys",
            "monkey",
            "primary_key",
            "secretary",
            "session_id",
            "call_id",
            "trace_id",
            "output_bytes",
            "",
            "--max-tokens",
        ] {
            assert!(!is_secret_key(k), "{k} should not name a secret");
        }
    }

    fn shaped(text: &str) -> String {
        Redactor::default().redact_str(text).into_owned()
    }

    #[test]
    fn url_passwords_are_redacted_users_and_hosts_kept() {
        assert_eq!(
            shaped("dsn=postgres://u:pw@h/db ok"),
            "dsn=postgres://u:[REDACTED]@h/db ok"
        );
        assert_eq!(
            shaped("https://bob:p@ss@example.com:8443/x?y=1"),
            "https://bob:[REDACTED]@example.com:8443/x?y=1",
            "up to the last @ of the authority"
        );
        assert_eq!(
            shaped("https://example.com:8443/a@b"),
            "https://example.com:8443/a@b"
        );
        assert_eq!(shaped("ssh://git@host/repo"), "ssh://git@host/repo");
    }

    #[test]
    fn flags_are_redacted() {
        assert_eq!(
            shaped("tool --api-key=S3CRET --token xyz --password 'a b' --secret=\"q\" -v"),
            "tool --api-key=[REDACTED] --token [REDACTED] --password '[REDACTED]' --secret=\"[REDACTED]\" -v"
        );
        assert_eq!(
            shaped("--max-tokens 256 --token-count=3 -p 8080 --password-file /run/pw"),
            "--max-tokens 256 --token-count=3 -p 8080 --password-file /run/pw",
            "counts, short options and file flags are kept"
        );
        assert_eq!(
            shaped(r#"command: ["sh", "--token", "t-1", "--api-key", "k-2", "{q}"]"#),
            r#"command: ["sh", "--token", "[REDACTED]", "--api-key", "[REDACTED]", "{q}"]"#,
            "argv as a JSON or YAML flow list"
        );
        assert_eq!(
            shaped("command:\n  - tool\n  - --password\n  - hunter2\n  - -v\n"),
            "command:\n  - tool\n  - --password\n  - [REDACTED]\n  - -v\n",
            "argv as a YAML block list"
        );
        assert_eq!(
            shaped("--token --verbose"),
            "--token --verbose",
            "a flag is not a value"
        );
    }

    #[test]
    fn auth_headers_and_bearer_tokens() {
        assert_eq!(
            shaped("-H 'Authorization: Bearer eyJhbGciOi.x.y' -H \"X-Api-Key: k-123\""),
            "-H 'Authorization: Bearer [REDACTED]' -H \"X-Api-Key: [REDACTED]\""
        );
        assert_eq!(
            shaped("authorization=Basic dXNlcjpwYXNz"),
            "authorization=Basic [REDACTED]"
        );
        assert_eq!(
            shaped("sent Bearer abcdef0123456789"),
            "sent Bearer [REDACTED]"
        );
        assert_eq!(shaped("the author: Ann"), "the author: Ann");
    }

    #[test]
    fn key_value_pairs_in_text() {
        assert_eq!(
            shaped(r#"{"api_key": "sk-1", "max_tokens": 256, "tokens_used": 12, "ok": true}"#),
            r#"{"api_key": "[REDACTED]", "max_tokens": 256, "tokens_used": 12, "ok": true}"#
        );
        assert_eq!(
            shaped("GITHUB_TOKEN=ghp_x LOG=info https://h/x?access_token=abc&page=2"),
            "GITHUB_TOKEN=[REDACTED] LOG=info https://h/x?access_token=[REDACTED]&page=2"
        );
        assert_eq!(shaped("config:password=abc"), "config:password=[REDACTED]");
        assert_eq!(shaped("password: null"), "password: null");
        assert_eq!(
            shaped("unknown field `--api-key=k-1`, expected `text`"),
            "unknown field `--api-key=[REDACTED]`, expected `text`",
            "backticks quote like quotes"
        );
    }

    #[test]
    fn private_key_blocks() {
        let pem = "a\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\nabc\n-----END RSA PRIVATE KEY-----\nb";
        assert_eq!(
            shaped(pem),
            "a\n-----BEGIN RSA PRIVATE KEY-----\n[REDACTED]\n-----END RSA PRIVATE KEY-----\nb"
        );
        assert_eq!(
            shaped("-----BEGIN PRIVATE KEY-----\nMIIE (cut"),
            "-----BEGIN PRIVATE KEY-----\n[REDACTED]\n"
        );
    }

    #[test]
    fn known_values_and_their_encodings() {
        let r = Redactor::new(["s3cr3t\"v@lue", "abc", "sk-live-0123"]);
        assert_eq!(r.value_count(), 2, "`abc` is too short");
        assert_eq!(
            r.redact_str("x s3cr3t\"v@lue y sk-live-0123 abc"),
            "x [REDACTED] y [REDACTED] abc"
        );
        assert_eq!(
            r.redact_str(r#"{"v":"s3cr3t\"v@lue"}"#),
            r#"{"v":"[REDACTED]"}"#
        );
        assert_eq!(r.redact_str("q=s3cr3t%22v%40lue"), "q=[REDACTED]");
        assert_eq!(
            r.redact_bytes(b"\xff sk-live-0123 \xfe").as_ref(),
            b"\xff [REDACTED] \xfe"
        );
        assert!(matches!(r.redact_str("nothing here"), Cow::Borrowed(_)));
        assert!(!format!("{r:?}").contains("sk-live"), "Debug hides values");
    }

    #[test]
    fn longer_values_win() {
        let r = Redactor::new(["secret-1", "secret-1-long"]);
        assert_eq!(r.redact_str("secret-1-long!"), "[REDACTED]!");
    }

    #[test]
    fn json_values() {
        let r = Redactor::new(["sk-live-0123"]);
        let mut v = json!({
            "dsn": "postgres://u:pw@h/db",
            "password": "hunter2",
            "max_tokens": 256,
            "usage": {"prompt_tokens": 3, "tokens_used": 5},
            "credentials": {"user": "bob", "pin": 1234, "nested": ["a"]},
            "argv": ["run", "--token", "t-1", "--api-key", "--verbose", "-v"],
            "note": "key sk-live-0123",
            "sk-live-0123": true,
            "author": "Ann",
            "is_secret": false,
        });
        assert!(r.redact_json(&mut v));
        assert_eq!(
            v,
            json!({
                "dsn": "postgres://u:[REDACTED]@h/db",
                "password": "[REDACTED]",
                "max_tokens": 256,
                "usage": {"prompt_tokens": 3, "tokens_used": 5},
                "credentials": {"user": "[REDACTED]", "pin": 1234, "nested": ["[REDACTED]"]},
                "argv": ["run", "--token", "[REDACTED]", "--api-key", "--verbose", "-v"],
                "note": "key [REDACTED]",
                "[REDACTED]": true,
                "author": "Ann",
                "is_secret": false,
            })
        );
        let again = v.clone();
        assert!(!r.redact_json(&mut v), "nothing left to redact");
        assert_eq!(v, again);
    }

    #[test]
    fn redaction_is_idempotent() {
        let r = Redactor::new(["sk-live-0123"]);
        for text in [
            "--api-key=S3CRET --token xyz --password 'a b'",
            "Authorization: Bearer abcdefgh12 and Bearer zzzzzzzz99",
            "postgres://u:pw@h/db and https://a:b@c@d/e",
            r#"{"api_key": "x", "secret": 'y', "token": [1]}"#,
            "x sk-live-0123 y; password: hunter2; a.b.password=z",
            "-----BEGIN EC PRIVATE KEY-----\nabc\n-----END EC PRIVATE KEY-----",
        ] {
            let once = r.redact_str(text).into_owned();
            assert_eq!(r.redact_str(&once), once, "{text}");
        }
    }

    proptest::proptest! {
        /// Worker and export both redact: the second pass must change nothing, however
        /// the shapes are mixed (as words of a text).
        #[test]
        fn idempotent_on_any_mixture(parts in proptest::collection::vec(
            proptest::sample::select(FRAGMENTS), 0..12)) {
            let text = parts.join(" ");
            let r = Redactor::new(["sk-live-0123"]);
            let once = r.redact_str(&text).into_owned();
            proptest::prop_assert_eq!(r.redact_str(&once).into_owned(), once);
        }
    }

    const FRAGMENTS: &[&str] = &[
        "--token",
        "--api-key",
        " ",
        "=",
        ":",
        ": ",
        "x",
        "\"",
        "'",
        "postgres://u:pw@h",
        "/db",
        "@",
        "Bearer ",
        "abcdefgh12",
        "Authorization",
        "sk-live-0123",
        "password",
        "[REDACTED]",
        ",",
        "\n",
        "-----BEGIN PRIVATE KEY-----",
        "-----END PRIVATE KEY-----",
        "max_tokens",
        "{",
        "}",
        "[",
        "]",
        "&",
        "?",
        "Basic ",
        "`",
    ];

    #[test]
    fn ordinary_text_is_untouched() {
        for text in [
            "call_01j8 completed: 3 files, 12 words",
            "max_tokens=256 tokens_used: 12 author: Ann keyboard monkey",
            "see https://example.com/docs?page=2#x",
            "The bearer of this note",
            "ssh -p 22 host; mkdir -p a/b",
        ] {
            assert!(
                matches!(Redactor::default().redact_str(text), Cow::Borrowed(_)),
                "{text} changed to {}",
                shaped(text)
            );
        }
    }
}
