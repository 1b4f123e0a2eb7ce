//! A validator for the JSON-Schema subset syscall specs use: `type`
//! (object/string/integer/number/boolean/array/null, or a list of them),
//! `properties`, `required`, `additionalProperties` (bool), `items`, `enum`,
//! `minimum`/`maximum`, `minLength`/`maxLength`, `minItems`/`maxItems`.
//! Unknown keywords are ignored. Errors name the offending field by its path
//! (`permissions[2]`) and say what was expected, so the model can fix the call.

use serde_json::Value;

/// Validates `value` against `schema`. On failure returns one message that
/// names the field and what it should be.
pub fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    check(schema, value, "")
}

fn field(path: &str) -> String {
    if path.is_empty() {
        "the arguments".to_string()
    } else {
        format!("field `{path}`")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn matches_type(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => match v {
            Value::Number(n) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0),
            _ => false,
        },
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

/// A short description of what a schema expects, e.g. `string` or `integer >= 0`.
pub fn describe(schema: &Value) -> String {
    let mut s = match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts.iter().filter_map(|t| t.as_str()).collect::<Vec<_>>().join(" or "),
        _ => "any value".to_string(),
    };
    if s == "array" {
        if let Some(items) = schema.get("items") {
            s = format!("array of {}", describe(items));
        }
    }
    if let Some(Value::Array(e)) = schema.get("enum") {
        s = format!("one of {}", e.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "));
    }
    s
}

fn check(schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    let Some(obj) = schema.as_object() else { return Ok(()) };
    match obj.get("type") {
        Some(Value::String(t)) if !matches_type(t, v) => {
            return Err(format!("{} must be {}, got {} `{}`", field(path), describe(schema), type_name(v), short(v)));
        }
        Some(Value::Array(ts)) if !ts.iter().any(|t| t.as_str().is_some_and(|t| matches_type(t, v))) => {
            return Err(format!("{} must be {}, got {} `{}`", field(path), describe(schema), type_name(v), short(v)));
        }
        _ => {}
    }
    if let Some(Value::Array(allowed)) = obj.get("enum") {
        if !allowed.contains(v) {
            return Err(format!("{} must be {}, got `{}`", field(path), describe(schema), short(v)));
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = obj.get("minimum").and_then(Value::as_f64) {
            if n < min {
                return Err(format!("{} must be >= {min}, got {n}", field(path)));
            }
        }
        if let Some(max) = obj.get("maximum").and_then(Value::as_f64) {
            if n > max {
                return Err(format!("{} must be <= {max}, got {n}", field(path)));
            }
        }
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = obj.get("minLength").and_then(Value::as_u64) {
            if len < min {
                return Err(format!("{} must be at least {min} characters long, got {len}", field(path)));
            }
        }
        if let Some(max) = obj.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                return Err(format!("{} must be at most {max} characters long, got {len}", field(path)));
            }
        }
    }
    if let Some(items) = v.as_array() {
        let len = items.len() as u64;
        if let Some(min) = obj.get("minItems").and_then(Value::as_u64) {
            if len < min {
                return Err(format!("{} must have at least {min} items, got {len}", field(path)));
            }
        }
        if let Some(max) = obj.get("maxItems").and_then(Value::as_u64) {
            if len > max {
                return Err(format!("{} must have at most {max} items, got {len}", field(path)));
            }
        }
        if let Some(item_schema) = obj.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(item_schema, item, &format!("{path}[{i}]"))?;
            }
        }
    }
    if let Some(map) = v.as_object() {
        let props = obj.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(req)) = obj.get("required") {
            for r in req.iter().filter_map(Value::as_str) {
                if !map.contains_key(r) {
                    let what = props.and_then(|p| p.get(r)).map(describe).unwrap_or_else(|| "a value".into());
                    return Err(format!("missing required field `{}` ({what})", join(path, r)));
                }
            }
        }
        for (k, val) in map {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(s, val, &join(path, k))?,
                None => {
                    if obj.get("additionalProperties") == Some(&Value::Bool(false)) {
                        let known: Vec<String> = props
                            .map(|p| p.keys().map(|k| format!("`{k}`")).collect())
                            .unwrap_or_default();
                        return Err(format!(
                            "unexpected field `{}`; allowed fields: {}",
                            join(path, k),
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s
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
                "path": {"type": "string", "minLength": 1},
                "count": {"type": "integer", "minimum": 0, "maximum": 10},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "ratio": {"type": "number"},
                "flag": {"type": "boolean"}
            },
            "required": ["path"],
            "additionalProperties": false
        })
    }

    #[test]
    fn accepts_valid() {
        validate(&schema(), &json!({"path": "a", "count": 3, "mode": "b", "tags": ["x"], "ratio": 1, "flag": true})).unwrap();
    }

    #[test]
    fn precise_errors() {
        let s = schema();
        let e = |v| validate(&s, &v).unwrap_err();
        assert_eq!(e(json!({})), "missing required field `path` (string)");
        assert_eq!(e(json!({"path": 3})), "field `path` must be string, got integer `3`");
        assert_eq!(e(json!({"path": ""})), "field `path` must be at least 1 characters long, got 0");
        assert_eq!(e(json!({"path": "a", "count": 11})), "field `count` must be <= 10, got 11");
        assert_eq!(e(json!({"path": "a", "count": 1.5})), "field `count` must be integer, got number `1.5`");
        assert_eq!(e(json!({"path": "a", "mode": "c"})), "field `mode` must be one of \"a\", \"b\", got `\"c\"`");
        assert_eq!(e(json!({"path": "a", "tags": ["x", 2]})), "field `tags[1]` must be string, got integer `2`");
        assert!(e(json!({"path": "a", "extra": 1})).starts_with("unexpected field `extra`; allowed fields: `path`"));
        assert_eq!(e(json!([1])), "the arguments must be object, got array `[1]`");
    }
}
