//! YAML through serde-saphyr: typed values with positioned errors, and a spanned
//! document tree that tells where each key and value was written (for the
//! semantic checks, which serde cannot see).

use crate::error::{ConfigError, ConfigErrors, suggestion};
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{
    DuplicateKeyPolicy, Error, Localizer, Location, MessageFormatter, Options, RenderOptions,
    SnippetMode, Spanned, UserMessageFormatter,
};
use std::borrow::Cow;
use std::fmt;
use std::path::Path;

/// 1-based (line, column).
pub(crate) type Pos = (usize, usize);

/// Parses `text` (the YAML file `file`, relative to the workspace root) into `T`.
/// Each error names the file, the line and column, and what is wrong there.
pub fn from_yaml<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, ConfigErrors> {
    parse_with_tree(text, file)
        .map(|(value, _)| value)
        .map_err(ConfigErrors)
}

/// `T` and the document's tree, or every error found: the typed parse stops at its
/// first error, so a syntax error further on (or on the same line as a duplicate
/// key) is looked for by parsing the tree, which lets duplicates through.
pub(crate) fn parse_with_tree<T: DeserializeOwned>(
    text: &str,
    file: &Path,
) -> Result<(T, Tree), Vec<ConfigError>> {
    let typed = serde_saphyr::from_str_with_options::<T>(text, options(DuplicateKeyPolicy::Error))
        .map_err(|e| config_error(file, &e));
    let tree = serde_saphyr::from_str_with_options::<Spanned<Node>>(
        text,
        options(DuplicateKeyPolicy::PassThrough),
    );
    match (typed, tree) {
        (Ok(value), tree) => Ok((value, Tree(tree.ok()))),
        (Err(mut first), Ok(tree)) => {
            if let Some(path) = first.line.zip(first.column).and_then(|p| path_at(&tree, p)) {
                first.message = format!("{path}: {}", first.message);
            }
            Err(vec![first])
        }
        (Err(first), Err(e)) => {
            // At the same place, the typed error is only a symptom of the syntax error.
            let syntax = config_error(file, &e);
            let same_place = (syntax.line, syntax.column) == (first.line, first.column);
            Err(if same_place {
                vec![syntax]
            } else {
                vec![first, syntax]
            })
        }
    }
}

/// Where in the document `at` is, e.g. `models.demo.provider` or `tools[1]`: the
/// path of the value written there, or of the mapping holding the key written
/// there (an unknown or duplicate key, a missing field). Empty at the top level.
fn path_at(root: &Spanned<Node>, at: Pos) -> Option<String> {
    fn search(node: &Spanned<Node>, at: Pos, path: &mut String) -> bool {
        if pos(&node.referenced) == at {
            return true;
        }
        let len = path.len();
        match &node.value {
            Node::Map(entries) => {
                for (key, value) in entries {
                    if pos(&key.referenced) == at {
                        return true;
                    }
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&key.value);
                    if search(value, at, path) {
                        return true;
                    }
                    path.truncate(len);
                }
            }
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push_str(&format!("[{i}]"));
                    if search(item, at, path) {
                        return true;
                    }
                    path.truncate(len);
                }
            }
            _ => {}
        }
        false
    }
    let mut path = String::new();
    (search(root, at, &mut path) && !path.is_empty()).then_some(path)
}

fn options(duplicate_keys: DuplicateKeyPolicy) -> Options {
    serde_saphyr::options! {
        duplicate_keys: duplicate_keys,
        with_snippet: false,
        // YAML 1.2 booleans only: `yes`/`on` in an untyped value (a tool's arguments
        // schema, a script's call arguments) stay strings, as with the YAML 1.2 parser
        // this replaced.
        strict_booleans: true,
    }
}

fn config_error(file: &Path, e: &Error) -> ConfigError {
    let pos = e
        .location()
        .filter(|l| *l != Location::UNKNOWN)
        .map(|l| pos(&l));
    let mut render = RenderOptions::new(&Messages);
    render.snippets = SnippetMode::Off;
    let message = e.render_with_options(render);
    ConfigError::at(file, pos, message)
}

fn pos(l: &Location) -> Pos {
    (l.line() as usize, l.column() as usize)
}

/// serde-saphyr's user-facing messages, with serde's own wording for unknown keys
/// and variants (backquoted candidates) plus a did-you-mean; the position is
/// reported separately, so none is appended to the text.
struct Messages;

impl MessageFormatter for Messages {
    fn localizer(&self) -> &dyn Localizer {
        &NoPositionSuffix
    }

    fn format_message<'a>(&self, err: &'a Error) -> Cow<'a, str> {
        match err {
            Error::SerdeUnknownField {
                field, expected, ..
            } => unknown("field", "fields", field, expected).into(),
            Error::SerdeUnknownVariant {
                variant, expected, ..
            } => unknown("variant", "variants", variant, expected).into(),
            Error::DuplicateMappingKey { key: Some(key), .. } => {
                format!("duplicate key `{key}`: a key may appear only once in a mapping").into()
            }
            Error::Unexpected { expected, .. } => match *expected {
                "mapping start" => "expected a mapping (`key: value` entries)".into(),
                "sequence start" => "expected a list".into(),
                "string scalar" => "expected a string".into(),
                other => format!("expected {other}").into(),
            },
            Error::InvalidScalar { ty, .. } => match *ty {
                "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => {
                    "expected a whole number, 0 or more".into()
                }
                "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "expected a whole number".into(),
                "f32" | "f64" => "expected a number".into(),
                "bool" => "expected `true` or `false`".into(),
                other => format!("invalid {other}").into(),
            },
            other => UserMessageFormatter.format_message(other),
        }
    }
}

struct NoPositionSuffix;

impl Localizer for NoPositionSuffix {
    fn attach_location<'a>(&self, base: Cow<'a, str>, _: Location) -> Cow<'a, str> {
        base
    }
}

/// "unknown field `x`, expected one of `a`, `b`" (serde's wording) and a did-you-mean.
fn unknown(kind: &str, plural: &str, word: &str, expected: &[&str]) -> String {
    let quoted: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
    let candidates = match quoted.as_slice() {
        [] => format!("there are no {plural}"),
        [one] => format!("expected {one}"),
        [a, b] => format!("expected {a} or {b}"),
        many => format!("expected one of {}", many.join(", ")),
    };
    let hint = suggestion(word, expected.iter().copied());
    format!("unknown {kind} `{word}`, {candidates}{hint}")
}

/// A document's tree (`None` if it did not parse as one).
#[derive(Debug, Default)]
pub(crate) struct Tree(Option<Spanned<Node>>);

/// One YAML node; scalars keep their text whatever their type.
#[derive(Debug)]
pub(crate) enum Node {
    Scalar(String),
    Null,
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Scalar(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }
}

/// Positions of keys and values in one file, found by path through its mappings
/// (e.g. `["tools", "send_mail", "timeout"]`). A path that goes further than the
/// document falls back to the deepest key found.
pub(crate) struct Locator<'a> {
    tree: &'a Tree,
    text: &'a str,
}

/// The deepest key found along a path, its value, and whether the whole path was found.
struct Found<'a> {
    key: &'a Spanned<String>,
    value: &'a Spanned<Node>,
    complete: bool,
}

impl<'a> Locator<'a> {
    pub fn new(tree: &'a Tree, text: &'a str) -> Self {
        Self { tree, text }
    }

    /// The position of the key at `path`.
    pub fn key(&self, path: &[&str]) -> Option<Pos> {
        self.walk(path).map(|f| pos(&f.key.referenced))
    }

    /// The position of the scalar value at `path`, or of its key when the value is
    /// empty, a collection, or not there.
    pub fn scalar(&self, path: &[&str]) -> Option<Pos> {
        let found = self.walk(path)?;
        Some(match &found.value.value {
            Node::Scalar(_) if found.complete => pos(&found.value.referenced),
            _ => pos(&found.key.referenced),
        })
    }

    /// The position of `token` inside the value at `path`: the first scalar (at any
    /// depth, e.g. one element of a list) that is `token`, else the first that
    /// contains it (pointing at the token itself). Falls back to the key.
    pub fn value(&self, path: &[&str], token: &str) -> Option<Pos> {
        let found = self.walk(path)?;
        let within = found.complete.then(|| {
            self.find(found.value, &|s| s == token)
                .or_else(|| self.find(found.value, &|s| s.contains(token)))
        });
        let within = within.flatten().map(|(at, s)| match s == token {
            true => pos(at),
            false => self.inside(at, token),
        });
        Some(within.unwrap_or_else(|| pos(&found.key.referenced)))
    }

    /// The position of element `index` of the list at `path`, or of `token` within
    /// it; the key's when there is no such element.
    pub fn item(&self, path: &[&str], index: usize, token: &str) -> Option<Pos> {
        let found = self.walk(path)?;
        let item = match &found.value.value {
            Node::Seq(items) if found.complete => items.get(index),
            _ => None,
        };
        Some(match item {
            Some(item) => self.inside(&item.referenced, token),
            None => pos(&found.key.referenced),
        })
    }

    /// The keys written in the mapping at `path` (serde defaults hide which were given).
    pub fn keys(&self, path: &[&str]) -> Vec<&'a str> {
        match self.walk(path) {
            Some(Found {
                value:
                    Spanned {
                        value: Node::Map(entries),
                        ..
                    },
                complete: true,
                ..
            }) => entries.iter().map(|(k, _)| k.value.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    fn walk(&self, path: &[&str]) -> Option<Found<'a>> {
        let mut node = self.tree.0.as_ref()?;
        let mut found = None;
        for (depth, key) in path.iter().enumerate() {
            let Node::Map(entries) = &node.value else {
                break;
            };
            let Some((k, v)) = entries.iter().find(|(k, _)| k.value == *key) else {
                break;
            };
            found = Some(Found {
                key: k,
                value: v,
                complete: depth + 1 == path.len(),
            });
            node = v;
        }
        found
    }

    /// The first scalar under `node` (in document order) that `matches`.
    fn find<'n>(
        &self,
        node: &'n Spanned<Node>,
        matches: &dyn Fn(&str) -> bool,
    ) -> Option<(&'n Location, &'n str)> {
        match &node.value {
            Node::Scalar(s) if matches(s) => Some((&node.referenced, s)),
            Node::Seq(items) => items.iter().find_map(|i| self.find(i, matches)),
            Node::Map(entries) => entries.iter().find_map(|(_, v)| self.find(v, matches)),
            _ => None,
        }
    }

    /// The position of `token` within the source text of the scalar at `at`
    /// (which may span lines, e.g. a block scalar); the scalar's own position when
    /// the token is not written literally there (escapes, aliases).
    fn inside(&self, at: &Location, token: &str) -> Pos {
        let (line, column) = pos(at);
        let span = at.span();
        let source = span
            .byte_offset()
            .zip(span.byte_len())
            .and_then(|(off, len)| self.text.get(off as usize..(off + len) as usize));
        let Some(before) = source.and_then(|s| s.find(token).map(|i| &s[..i])) else {
            return (line, column);
        };
        match before.rfind('\n') {
            Some(nl) => (
                line + before.matches('\n').count(),
                before[nl + 1..].chars().count() + 1,
            ),
            None => (line, column + before.chars().count()),
        }
    }
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
delegates: [researcher, \"sned_mail\"]
nested:
  inner:
    deep: 3
  other: x
list_at_same_indent:
- a
- b
script: |
  echo one
  echo {text} two
after: 1
";

    fn with_locator(check: impl FnOnce(Locator<'_>)) {
        let (_, tree) = parse_with_tree::<de::IgnoredAny>(TEXT, Path::new("t.yaml")).unwrap();
        check(Locator::new(&tree, TEXT));
    }

    #[test]
    fn finds_keys_and_scalars() {
        with_locator(|l| {
            assert_eq!(l.key(&["model"]), Some((3, 1)));
            assert_eq!(l.scalar(&["model"]), Some((3, 8)));
            assert_eq!(l.scalar(&["nested", "inner", "deep"]), Some((10, 11)));
            assert_eq!(l.key(&["nested", "other"]), Some((11, 3)));
            assert_eq!(l.scalar(&["tools"]), Some((4, 1)));
            assert_eq!(l.keys(&["nested"]), ["inner", "other"]);
        });
    }

    #[test]
    fn finds_values_within_a_key() {
        with_locator(|l| {
            assert_eq!(l.value(&["tools"], "sned_mail"), Some((6, 5)));
            assert_eq!(l.value(&["delegates"], "sned_mail"), Some((7, 25)));
            assert_eq!(l.value(&["list_at_same_indent"], "b"), Some((14, 3)));
            assert_eq!(l.value(&["script"], "{text}"), Some((17, 8)));
            assert_eq!(l.item(&["tools"], 1, "mail"), Some((6, 10)));
            assert_eq!(l.item(&["tools"], 7, "mail"), Some((4, 1)));
            assert_eq!(l.value(&["after"], "1"), Some((18, 8)));
        });
    }

    #[test]
    fn falls_back_to_the_deepest_key_found() {
        with_locator(|l| {
            assert_eq!(l.value(&["tools"], "missing"), Some((4, 1)));
            assert_eq!(l.key(&["nested", "nope"]), Some((8, 1)));
            assert_eq!(l.scalar(&["nested", "inner", "deep", "x"]), Some((10, 5)));
            assert_eq!(l.key(&["nope"]), None);
            assert_eq!(
                l.value(&["tools"], "read"),
                Some((5, 5)),
                "inside an element"
            );
        });
    }

    #[test]
    fn only_yaml_1_2_booleans_are_booleans() {
        let v: serde_json::Value = from_yaml("{a: yes, b: on, c: true}", Path::new("x")).unwrap();
        assert_eq!(v, serde_json::json!({"a": "yes", "b": "on", "c": true}));
        let err = from_yaml::<bool>("yes", Path::new("x")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x:1:1: invalid boolean (true or false expected)"
        );
    }

    #[test]
    fn unknown_keys_use_serde_wording_with_a_suggestion() {
        assert_eq!(
            unknown("field", "fields", "toolz", &["name", "tools", "model"]),
            "unknown field `toolz`, expected one of `name`, `tools`, `model` (did you mean `tools`?)"
        );
        assert_eq!(
            unknown("variant", "variants", "x", &["a", "b"]),
            "unknown variant `x`, expected `a` or `b`"
        );
        assert_eq!(
            unknown("field", "fields", "x", &[]),
            "unknown field `x`, there are no fields"
        );
    }
}
