//! Tool-call arguments checked against the tool's JSON Schema with the
//! `jsonschema` crate (every keyword of drafts 4 to 2020-12; no remote `$ref` is
//! fetched: the crate is built without its resolvers). The common failures get a
//! message that names the argument the way a model can act on it; any other is
//! the validator's own message at the argument's path.

use crate::ToolConfig;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Compiled validators by schema text: a tool's schema is compiled once per process.
const CACHE_LIMIT: usize = 512;

fn cache() -> &'static Mutex<HashMap<String, Arc<Validator>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Validator>>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// The schema compiled, or why it is not a valid JSON Schema.
pub fn compile_schema(schema: &Value) -> Result<Arc<Validator>, String> {
    let key = schema.to_string();
    if let Some(v) = cache().lock().expect("schema cache").get(&key) {
        return Ok(v.clone());
    }
    let validator = jsonschema::options()
        .build(schema)
        .map_err(|e| format!("invalid JSON Schema: {e}"))?;
    let validator = Arc::new(validator);
    let mut cache = cache().lock().expect("schema cache");
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
    cache.insert(key, validator.clone());
    Ok(validator)
}

/// Checks `args` against a tool's `arguments` schema; the error names the argument.
pub fn validate_arguments(schema: &Value, args: &Value) -> Result<(), String> {
    let validator = compile_schema(schema).map_err(|e| unusable(&e))?;
    check(&validator, schema, args)
}

fn unusable(e: &str) -> String {
    format!("the tool's argument schema is unusable ({e})")
}

fn check(validator: &Validator, schema: &Value, args: &Value) -> Result<(), String> {
    match validator.validate(args) {
        Ok(()) => Ok(()),
        Err(e) => Err(describe(&e, schema, args)),
    }
}

/// A tool's configuration with its argument schema compiled at its first check and
/// kept, for the paths that check every call's arguments ([`validate_arguments`]
/// finds a schema's compiled form by its text, which costs a serialisation per call).
#[derive(Clone, Debug)]
pub struct CheckedTool {
    config: ToolConfig,
    validator: OnceLock<Result<Arc<Validator>, String>>,
}

impl CheckedTool {
    pub fn new(config: ToolConfig) -> CheckedTool {
        CheckedTool {
            config,
            validator: OnceLock::new(),
        }
    }

    /// [`validate_arguments`] against this tool's schema.
    pub fn check_arguments(&self, args: &Value) -> Result<(), String> {
        let compiled = self
            .validator
            .get_or_init(|| compile_schema(&self.config.arguments));
        match compiled {
            Ok(v) => check(v, &self.config.arguments, args),
            Err(e) => Err(unusable(e)),
        }
    }
}

impl std::ops::Deref for CheckedTool {
    type Target = ToolConfig;

    fn deref(&self) -> &ToolConfig {
        &self.config
    }
}

fn describe(e: &ValidationError<'_>, schema: &Value, args: &Value) -> String {
    let path: Vec<String> = e
        .instance_path()
        .iter()
        .map(|seg| match seg {
            jsonschema::paths::LocationSegment::Property(p) => p.to_string(),
            jsonschema::paths::LocationSegment::Index(i) => i.to_string(),
        })
        .collect();
    let at = path.join(".");
    match (e.kind(), path.len()) {
        (ValidationErrorKind::Type { kind }, 0) if !args.is_object() => {
            let _ = kind;
            format!("arguments must be a JSON object, got {}", type_name(args))
        }
        (ValidationErrorKind::Required { property }, 0) => {
            format!("missing required argument `{}`", plain(property))
        }
        (ValidationErrorKind::Required { property }, _) => {
            format!(
                "missing required field `{}` in argument `{at}`",
                plain(property)
            )
        }
        (ValidationErrorKind::AdditionalProperties { unexpected }, 0) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            unknown_argument(unexpected.first().map_or("", String::as_str), properties)
        }
        (ValidationErrorKind::FalseSchema, 0 | 1)
            if e.schema_path().as_str().ends_with("/additionalProperties") =>
        {
            let properties = schema.get("properties").and_then(Value::as_object);
            let extra = path.first().cloned().or_else(|| {
                args.as_object()?
                    .keys()
                    .find(|k| properties.is_none_or(|p| !p.contains_key(*k)))
                    .cloned()
            });
            unknown_argument(extra.as_deref().unwrap_or_default(), properties)
        }
        (ValidationErrorKind::Type { kind }, _) => {
            // In the order the schema lists them, when it is a top-level argument's.
            let declared: Option<Vec<String>> = (path.len() == 1)
                .then(|| schema.pointer(&format!("/properties/{}/type", path[0])))
                .flatten()
                .and_then(Value::as_array)
                .map(|ts| ts.iter().filter_map(Value::as_str).map(article).collect());
            let expected: Vec<String> = declared.unwrap_or_else(|| match kind {
                TypeKind::Single(t) => vec![article(&t.to_string())],
                TypeKind::Multiple(ts) => ts.iter().map(|t| article(&t.to_string())).collect(),
            });
            format!(
                "argument `{at}` must be {}, got {}",
                expected.join(" or "),
                type_name(e.instance())
            )
        }
        (_, 0) => format!("arguments: {e}"),
        _ => format!("argument `{at}`: {e}"),
    }
}

fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn article(t: &str) -> String {
    match t {
        "integer" | "object" | "array" => format!("an {t}"),
        "null" => "null".to_string(),
        _ => format!("a {t}"),
    }
}

fn unknown_argument(name: &str, properties: Option<&serde_json::Map<String, Value>>) -> String {
    let known: Vec<&str> = properties
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if known.is_empty() {
        format!("unknown argument `{name}` (this tool takes no arguments)")
    } else {
        format!("unknown argument `{name}` (expected: {})", known.join(", "))
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "to": {"type": "string"},
                "count": {"type": "integer"},
                "ratio": {"type": "number"},
                "urgent": {"type": "boolean"},
                "tags": {"type": "array"},
                "meta": {"type": "object"},
                "maybe": {"type": ["string", "null"]},
                "free": {}
            },
            "required": ["to"],
            "additionalProperties": false
        })
    }

    #[test]
    fn accepts_matching_arguments() {
        let args = json!({
            "to": "a@b.c", "count": 3, "ratio": 0.5, "urgent": true,
            "tags": [], "meta": {}, "maybe": null, "free": [1]
        });
        assert_eq!(validate_arguments(&schema(), &args), Ok(()));
        assert_eq!(
            validate_arguments(&schema(), &json!({"to": "x", "count": 2.0})),
            Ok(())
        );
        assert_eq!(
            validate_arguments(&schema(), &json!({"to": "x", "ratio": 2})),
            Ok(())
        );
    }

    #[test]
    fn rejects_with_the_argument_named() {
        let check = |args: Value| validate_arguments(&schema(), &args).unwrap_err();
        assert_eq!(
            check(json!("hi")),
            "arguments must be a JSON object, got string"
        );
        assert_eq!(check(json!({})), "missing required argument `to`");
        assert_eq!(
            check(json!({"to": 1})),
            "argument `to` must be a string, got integer"
        );
        assert_eq!(
            check(json!({"to": "x", "count": 1.5})),
            "argument `count` must be an integer, got number"
        );
        assert_eq!(
            check(json!({"to": "x", "maybe": 3})),
            "argument `maybe` must be a string or null, got integer"
        );
        assert_eq!(
            check(json!({"to": "x", "urgent": "yes"})),
            "argument `urgent` must be a boolean, got string"
        );
        assert!(
            check(json!({"to": "x", "cc": "y"})).starts_with("unknown argument `cc` (expected: ")
        );
    }

    #[test]
    fn the_whole_of_json_schema_applies() {
        let schema = json!({
            "type": "object",
            "properties": {
                "mode": {"enum": ["fast", "slow"]},
                "n": {"type": "integer", "minimum": 1, "maximum": 10},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                "to": {"type": "object", "properties": {"addr": {"type": "string"}}, "required": ["addr"]},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                "pick": {"oneOf": [{"type": "string"}, {"type": "integer"}]}
            }
        });
        let check = |args: Value| validate_arguments(&schema, &args);
        assert_eq!(
            check(json!({"mode": "fast", "n": 3, "name": "abc", "tags": ["a"], "pick": 1})),
            Ok(())
        );
        assert_eq!(
            check(json!({"mode": "medium"})).unwrap_err(),
            r#"argument `mode`: "medium" is not one of "fast" or "slow""#
        );
        assert_eq!(
            check(json!({"n": 0})).unwrap_err(),
            "argument `n`: 0 is less than the minimum of 1"
        );
        assert_eq!(
            check(json!({"name": "ABC"})).unwrap_err(),
            r#"argument `name`: "ABC" does not match "^[a-z]+$""#
        );
        assert_eq!(
            check(json!({"to": {}})).unwrap_err(),
            "missing required field `addr` in argument `to`"
        );
        assert_eq!(
            check(json!({"tags": ["a", 1]})).unwrap_err(),
            "argument `tags.1` must be a string, got integer"
        );
        assert!(
            check(json!({"pick": true}))
                .unwrap_err()
                .starts_with("argument `pick`: ")
        );
    }

    #[test]
    fn an_unusable_schema_is_an_error_not_a_pass() {
        let bad = json!({"type": "object", "properties": {"a": {"type": "no-such-type"}}});
        let e = validate_arguments(&bad, &json!({"a": 1})).unwrap_err();
        assert!(
            e.starts_with("the tool's argument schema is unusable (invalid JSON Schema: "),
            "{e}"
        );
        // A remote reference is never fetched.
        let remote = json!({"$ref": "https://example.com/schema.json"});
        assert!(validate_arguments(&remote, &json!({})).is_err());
    }

    #[test]
    fn open_schemas_allow_extra_arguments() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        assert_eq!(validate_arguments(&schema, &json!({"b": 1})), Ok(()));
        let closed = json!({"type": "object", "additionalProperties": false});
        assert_eq!(
            validate_arguments(&closed, &json!({"b": 1})).unwrap_err(),
            "unknown argument `b` (this tool takes no arguments)"
        );
    }

    #[test]
    fn a_checked_tool_answers_as_its_schema_does() {
        let tool = |arguments: Value| {
            let mut config = crate::builtins::builtin_tool(crate::Builtin::ReadFile);
            config.arguments = arguments;
            CheckedTool::new(config)
        };
        let checked = tool(schema());
        for args in [
            json!({"to": "x", "count": 2}),
            json!("hi"),
            json!({}),
            json!({"to": 1}),
            json!({"to": "x", "extra": 1}),
        ] {
            assert_eq!(
                checked.check_arguments(&args),
                validate_arguments(&schema(), &args),
                "{args}"
            );
        }
        let broken = json!({"type": "object", "properties": {"n": {"type": "no-such-type"}}});
        let e = tool(broken.clone())
            .check_arguments(&json!({}))
            .unwrap_err();
        assert!(
            e.starts_with("the tool's argument schema is unusable ("),
            "{e}"
        );
        assert_eq!(Err(e), validate_arguments(&broken, &json!({})));
    }
}
