//! Validation of a call's arguments against its syscall's JSON Schema, in
//! two stages:
//!
//! 1. the subset syscall specs use — `type` (object/string/integer/number/
//!    boolean/array/null, or a list of them), `properties`, `required`,
//!    `additionalProperties` (bool), `items`, `enum`, `minimum`/`maximum`,
//!    `minLength`/`maxLength`, `minItems`/`maxItems` — checked here with
//!    errors that name the offending field by its path (`permissions[2]`)
//!    and say what was expected, so the model can fix the call;
//! 2. for a schema that uses anything else (MCP tools' schemas use `oneOf`,
//!    `anyOf`, `$ref`/`$defs`, `pattern`, `format`, `const`, schema-valued
//!    `additionalProperties`, …): the complete implementation of the
//!    [`jsonschema`] crate (the draft the schema names, 2020-12 by default;
//!    no remote `$ref`s are fetched), its first error given with the field's
//!    path. Compiled validators are cached per schema. A schema it cannot
//!    compile keeps the subset check alone (logged once).

use serde_json::Value;

/// Validates `value` against `schema`. On failure returns one message that
/// names the field and what it should be.
pub fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    check(schema, value, "")?;
    if beyond_subset(schema) {
        complete::check(schema, value)?;
    }
    Ok(())
}

/// Keywords stage 1 checks, or that never constrain a value.
const SUBSET: [&str; 18] = [
    "type", "properties", "required", "additionalProperties", "items", "enum", "minimum", "maximum",
    "minLength", "maxLength", "minItems", "maxItems", "description", "title", "default", "examples", "$schema",
    "$comment",
];

/// Whether `schema` uses a keyword outside [`SUBSET`] (or a schema-valued
/// `additionalProperties`), anywhere.
fn beyond_subset(schema: &Value) -> bool {
    let Some(obj) = schema.as_object() else { return false };
    obj.iter().any(|(k, v)| match k.as_str() {
        "properties" => v.as_object().is_some_and(|p| p.values().any(beyond_subset)),
        "items" => beyond_subset(v) || v.is_array(),
        "additionalProperties" => !v.is_boolean(),
        // Values, not schemas.
        "enum" | "required" | "default" | "examples" | "description" | "title" | "$schema" | "$comment" => false,
        k => !SUBSET.contains(&k),
    })
}

/// Stage 2: the complete check, by the `jsonschema` crate.
mod complete {
    use std::collections::HashMap;
    use std::hash::{Hash, Hasher};
    use std::sync::{Arc, LazyLock};

    use parking_lot::Mutex;
    use serde_json::Value;

    /// Compiled validators by the hash of their schema's text (`None`: it
    /// does not compile). Bounded: cleared when full.
    static CACHE: LazyLock<Mutex<HashMap<u64, Option<Arc<jsonschema::Validator>>>>> = LazyLock::new(Default::default);
    const CACHE_MAX: usize = 4096;

    fn validator(schema: &Value) -> Option<Arc<jsonschema::Validator>> {
        let text = schema.to_string();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        let key = h.finish();
        if let Some(v) = CACHE.lock().get(&key) {
            return v.clone();
        }
        let compiled = match jsonschema::validator_for(schema) {
            Ok(v) => Some(Arc::new(v)),
            Err(e) => {
                tracing::warn!(error = %e, "a syscall's argument schema does not compile as JSON Schema; only its basic keywords are checked");
                None
            }
        };
        let mut cache = CACHE.lock();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, compiled.clone());
        compiled
    }

    /// `/a/2/b` → `a[2].b`.
    fn path_of(pointer: &str) -> String {
        let mut out = String::new();
        for seg in pointer.split('/').skip(1) {
            let seg = seg.replace("~1", "/").replace("~0", "~");
            if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
                out.push_str(&format!("[{seg}]"));
            } else {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&seg);
            }
        }
        out
    }

    pub(super) fn check(schema: &Value, value: &Value) -> Result<(), String> {
        let Some(v) = validator(schema) else { return Ok(()) };
        match v.validate(value) {
            Ok(()) => Ok(()),
            Err(e) => {
                let path = path_of(&e.instance_path().to_string());
                let what = e.to_string();
                let what = if what.chars().count() > 300 { format!("{}...", what.chars().take(300).collect::<String>()) } else { what };
                Err(format!("{}: {what}", super::field(&path)))
            }
        }
    }

    #[cfg(test)]
    #[test]
    fn pointers_become_paths() {
        assert_eq!(path_of(""), "");
        assert_eq!(path_of("/a/2/b"), "a[2].b");
        assert_eq!(path_of("/x~1y"), "x/y");
    }
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

    /// Keywords beyond the subset (as MCP tools' schemas use them) are
    /// checked completely, with the field's path.
    #[test]
    fn keywords_beyond_the_subset_are_checked() {
        let s = json!({
            "type": "object",
            "properties": {
                "id": {"type": "string", "pattern": "^[0-9]+$"},
                "target": {"oneOf": [{"type": "string"}, {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}]},
                "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
                "kind": {"const": "report"}
            },
            "$defs": {"item": {"type": "object", "properties": {"n": {"type": "integer", "exclusiveMinimum": 0}}, "required": ["n"]}}
        });
        validate(&s, &json!({"id": "42", "target": {"x": 1}, "items": [{"n": 1}], "kind": "report"})).unwrap();
        let e = |v| validate(&s, &v).unwrap_err();
        let m = e(json!({"id": "4a2"}));
        assert!(m.starts_with("field `id`: ") && m.contains("^[0-9]+$"), "{m}");
        let m = e(json!({"target": 3}));
        assert!(m.starts_with("field `target`: "), "{m}");
        let m = e(json!({"items": [{"n": 1}, {"n": 0}]}));
        assert!(m.starts_with("field `items[1].n`: ") && m.contains('0'), "{m}");
        let m = e(json!({"kind": "memo"}));
        assert!(m.starts_with("field `kind`: "), "{m}");
        // The subset's own messages still come first.
        assert_eq!(e(json!({"id": 5})), "field `id` must be string, got integer `5`");
        // A schema that does not compile keeps the subset check.
        let broken = json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "("}}});
        validate(&broken, &json!({"a": "x"})).unwrap();
        assert_eq!(validate(&broken, &json!({"a": 1})).unwrap_err(), "field `a` must be string, got integer `1`");
    }

    #[test]
    fn kernel_schemas_stay_in_the_subset() {
        for k in crate::syscalls::KernelSyscall::ALL {
            assert!(!beyond_subset(&k.spec().args_schema), "{}", k.name());
        }
    }
}
