//! A minimal JSON Schema check of tool-call arguments: object type, `required`,
//! property `type`s and `additionalProperties: false`. Enough to give a model a
//! precise error before a tool runs; not a full JSON Schema implementation.

use serde_json::Value;

/// Checks `args` against a tool's `arguments` schema; the error names the argument.
pub fn validate_arguments(schema: &Value, args: &Value) -> Result<(), String> {
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return Ok(());
    }
    let Some(object) = args.as_object() else {
        return Err(format!(
            "arguments must be a JSON object, got {}",
            type_name(args)
        ));
    };
    let properties = schema.get("properties").and_then(Value::as_object);
    for name in required(schema) {
        if !object.contains_key(name) {
            return Err(format!("missing required argument `{name}`"));
        }
    }
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    for (name, value) in object {
        match properties.and_then(|p| p.get(name)) {
            Some(prop) => check_type(name, prop, value)?,
            None if closed => return Err(unknown_argument(name, properties)),
            None => {}
        }
    }
    Ok(())
}

fn required(schema: &Value) -> impl Iterator<Item = &str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
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

/// `type` may be one name or a list of names.
fn check_type(name: &str, prop: &Value, value: &Value) -> Result<(), String> {
    let allowed: Vec<&str> = match prop.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return Ok(()),
    };
    if allowed.iter().any(|t| has_type(value, t)) {
        return Ok(());
    }
    let article = |t: &str| match t {
        "integer" | "object" | "array" => format!("an {t}"),
        "null" => "null".to_string(),
        _ => format!("a {t}"),
    };
    let expected: Vec<String> = allowed.iter().map(|t| article(t)).collect();
    Err(format!(
        "argument `{name}` must be {}, got {}",
        expected.join(" or "),
        type_name(value)
    ))
}

fn has_type(value: &Value, t: &str) -> bool {
    match t {
        "string" => value.is_string(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => true,
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
    fn open_schemas_allow_extra_arguments() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        assert_eq!(validate_arguments(&schema, &json!({"b": 1})), Ok(()));
        let closed = json!({"type": "object", "additionalProperties": false});
        assert_eq!(
            validate_arguments(&closed, &json!({"b": 1})).unwrap_err(),
            "unknown argument `b` (this tool takes no arguments)"
        );
    }
}
