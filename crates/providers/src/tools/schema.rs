//! Checks tool arguments against the JSON Schema subset tools declare: an object
//! with `properties` (each with a `type`), `required` and `additionalProperties: false`.
//! Unknown schema keywords are ignored.

use serde_json::{Map, Value};

/// `Ok` when `args` fits `schema`; otherwise a message naming the argument at fault.
pub fn validate_arguments(schema: &Value, args: &Value) -> Result<(), String> {
    let Some(schema) = schema.as_object() else {
        return Ok(());
    };
    let Some(args) = args.as_object() else {
        return Err(format!(
            "arguments must be a JSON object, got {}",
            type_name(args)
        ));
    };
    check_required(schema, args)?;
    let properties = schema.get("properties").and_then(Value::as_object);
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    for (key, value) in args {
        match properties.and_then(|p| p.get(key)) {
            Some(prop) => check_type(key, prop, value)?,
            None if closed => return Err(format!("unknown argument `{key}`")),
            None => {}
        }
    }
    Ok(())
}

fn check_required(schema: &Map<String, Value>, args: &Map<String, Value>) -> Result<(), String> {
    let required = schema.get("required").and_then(Value::as_array);
    for key in required.into_iter().flatten().filter_map(Value::as_str) {
        if !args.contains_key(key) {
            return Err(format!("missing required argument `{key}`"));
        }
    }
    Ok(())
}

/// `type` may be one name or a list of names.
fn check_type(key: &str, prop: &Value, value: &Value) -> Result<(), String> {
    let allowed: Vec<&str> = match prop.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return Ok(()),
    };
    if allowed.is_empty() || allowed.iter().any(|t| has_type(value, t)) {
        return Ok(());
    }
    Err(format!(
        "argument `{key}` must be {}, got {}",
        allowed.join(" or "),
        type_name(value)
    ))
}

fn has_type(value: &Value, ty: &str) -> bool {
    match ty {
        "string" => value.is_string(),
        "integer" => is_integer(value),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        // An unknown type name is not ours to enforce.
        _ => true,
    }
}

fn is_integer(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) if is_integer(value) => "integer",
        Value::Number(_) => "number",
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
                "flag": {"type": "boolean"},
                "meta": {"type": "object"},
                "list": {"type": "array"}
            },
            "required": ["to"],
            "additionalProperties": false
        })
    }

    #[test]
    fn accepts_matching_arguments() {
        let args =
            json!({"to": "a", "count": 3, "ratio": 0.5, "flag": true, "meta": {}, "list": []});
        assert_eq!(validate_arguments(&schema(), &args), Ok(()));
        assert_eq!(
            validate_arguments(&schema(), &json!({"to": "a", "ratio": 2})),
            Ok(())
        );
    }

    #[test]
    fn errors_name_the_argument() {
        let err = |args| validate_arguments(&schema(), &args).unwrap_err();
        assert_eq!(err(json!({})), "missing required argument `to`");
        assert_eq!(
            err(json!({"to": 1})),
            "argument `to` must be string, got integer"
        );
        assert_eq!(
            err(json!({"to": "a", "count": 1.5})),
            "argument `count` must be integer, got number"
        );
        assert_eq!(err(json!({"to": "a", "cc": "b"})), "unknown argument `cc`");
        assert_eq!(
            err(json!([1])),
            "arguments must be a JSON object, got array"
        );
    }

    #[test]
    fn open_schema_allows_extra_keys() {
        assert_eq!(
            validate_arguments(&json!({"type": "object"}), &json!({"x": 1})),
            Ok(())
        );
    }
}
