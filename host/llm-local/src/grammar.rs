//! GBNF grammars built from the syscall specs a process may use.
//!
//! A reply is `[thought line "\n"]` then `[SYS_CALL::NAME] {json}`, where NAME
//! is one of the allowed syscalls and the JSON object has exactly that
//! syscall's argument keys (required ones always, optional ones may be left
//! out, in schema order) with values of the declared types. JSON is written
//! in one fixed compact layout (`{"k": v, "k2": v2}`) so the model spends no
//! tokens on whitespace. Supported schema features: `type` (a name or a list,
//! e.g. schemars' `["string", "null"]`), `enum`/`const`, `anyOf`/`oneOf`,
//! objects with `properties`/`required`, arrays with `items`, `minLength >= 1`,
//! non-negative integers (`minimum >= 0`); anything else (`{}`) is any JSON value.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use aos_abi::SyscallSpec;
use serde_json::Value;

/// The tag that opens a call (defined once, in the ABI; the kernel's parser
/// uses the same constant).
pub use aos_abi::syscall::TAG_OPEN;

/// Grammar options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrammarOptions {
    /// Allow one short thought line before the call.
    pub thought: bool,
    /// Longest thought line, in characters.
    pub max_thought_chars: u32,
}

impl Default for GrammarOptions {
    fn default() -> Self {
        Self { thought: false, max_thought_chars: 120 }
    }
}

/// Full reply grammar: optional thought, then one call to any of `specs`.
pub fn reply_grammar(specs: &[SyscallSpec], opts: GrammarOptions) -> String {
    let mut g = Builder::default();
    let mut alts = Vec::new();
    for s in specs {
        let args = g.object_rule(&rule_name(&s.name), &s.args_schema);
        alts.push(format!("{} {args}", lit(&format!("{}] ", s.name))));
    }
    let call = if alts.is_empty() {
        // No syscall at all: only a thought is possible.
        String::new()
    } else {
        format!("{} ( {} )", lit(TAG_OPEN), alts.join(" | "))
    };
    let root = match (opts.thought, call.is_empty()) {
        (_, true) => thought_expr(opts),
        (true, false) => format!("( {} \"\\n\" )? {call}", thought_expr(opts)),
        (false, false) => call,
    };
    g.finish(&root)
}

/// Grammar for the arguments of one syscall after its tag `[SYS_CALL::NAME]`:
/// a space, then the JSON object.
pub fn args_grammar(spec: &SyscallSpec) -> String {
    let mut g = Builder::default();
    let args = g.object_rule(&rule_name(&spec.name), &spec.args_schema);
    g.finish(&format!("\" \" {args}"))
}

/// `spec` with its argument `field` limited to the strings `values` (an
/// `enum` in its schema; unchanged when it has no such argument).
pub fn with_enum(spec: &SyscallSpec, field: &str, values: &[String]) -> SyscallSpec {
    let mut s = spec.clone();
    if let Some(p) = s.args_schema.get_mut("properties").and_then(|p| p.get_mut(field)) {
        *p = serde_json::json!({ "type": "string", "enum": values });
    }
    s
}

fn thought_expr(opts: GrammarOptions) -> String {
    // Starts with a letter so the model cannot open a fake tag or a blank line.
    let n = opts.max_thought_chars.max(2) - 1;
    format!("[A-Za-z] [^\\n\\[\\]]{{0,{n}}}")
}

/// GBNF rule name for a syscall: lower case, `_` → `-`.
fn rule_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    s.insert_str(0, "call-");
    s
}

/// A GBNF string literal.
fn lit(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const PRIMITIVES: &[(&str, &str)] = &[
    ("char", r#"[^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] )"#),
    ("string", r#""\"" char* "\"""#),
    ("string1", r#""\"" char+ "\"""#),
    ("text", r#""\"" char{1,160} "\"""#),
    ("uint", r#"[0-9] | [1-9] [0-9]{1,15}"#),
    ("integer", r#""-"? uint"#),
    ("number", r#""-"? uint ( "." [0-9]{1,15} )? ( [eE] [-+]? [0-9]{1,3} )?"#),
    ("boolean", r#""true" | "false""#),
    ("null", r#""null""#),
    ("value", r#"object | array | string | number | boolean | null"#),
    ("object", r#""{" ( string ": " value ( ", " string ": " value )* )? "}""#),
    ("array", r#""[" ( value ( ", " value )* )? "]""#),
];

/// Which primitive rules each primitive needs.
fn deps(name: &str) -> &'static [&'static str] {
    match name {
        "string" | "string1" | "text" => &["char"],
        "integer" => &["uint"],
        "number" => &["uint"],
        "value" => &["object", "array", "string", "number", "boolean", "null"],
        "object" => &["string", "value"],
        "array" => &["value"],
        _ => &[],
    }
}

#[derive(Default)]
struct Builder {
    rules: Vec<(String, String)>,
    used: BTreeSet<&'static str>,
}

impl Builder {
    fn use_prim(&mut self, name: &'static str) -> String {
        if self.used.insert(name) {
            for d in deps(name) {
                let d: &'static str = PRIMITIVES.iter().find(|(n, _)| n == d).map(|(n, _)| *n).unwrap();
                self.use_prim(d);
            }
        }
        name.to_string()
    }

    fn add(&mut self, name: String, body: String) -> String {
        self.rules.push((name.clone(), body));
        name
    }

    fn finish(mut self, root: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "root ::= {root}");
        for (n, b) in self.rules.drain(..) {
            let _ = writeln!(out, "{n} ::= {b}");
        }
        for (n, b) in PRIMITIVES {
            if self.used.contains(n) {
                let _ = writeln!(out, "{n} ::= {b}");
            }
        }
        out
    }

    /// An object rule for `schema` (any object when it lists no properties).
    fn object_rule(&mut self, name: &str, schema: &Value) -> String {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return self.value_expr(name, schema);
        };
        let required: BTreeSet<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let keys: Vec<(&String, &Value)> = props.iter().collect();
        let n = keys.len();
        // after[i]: the keys from i on, when a key was already written;
        // first[i]: the keys from i on, when none was written yet.
        let mut after: Vec<Option<String>> = vec![None; n + 1];
        let mut first: Vec<Option<String>> = vec![None; n + 1];
        for i in (0..n).rev() {
            let (key, sub) = keys[i];
            let req = required.contains(key.as_str());
            // A required string is never left empty (an empty haiku is not
            // what a task asks for; greedy decoding of a small model often
            // closes the string at once).
            let nonempty;
            let sub = if req && sub.get("type").and_then(Value::as_str) == Some("string") && sub.get("minLength").is_none() {
                let mut s2 = sub.clone();
                s2["minLength"] = Value::from(1);
                nonempty = s2;
                &nonempty
            } else {
                sub
            };
            let v = self.value_expr(&format!("{name}-{}", rule_name(key).trim_start_matches("call-")), sub);
            let kv = self.add(format!("{name}-kv{i}"), format!("{} {v}", lit(&format!("{}: ", json_str(key)))));
            let next_after = after[i + 1].clone().unwrap_or_default();
            let a = if req {
                format!("\", \" {kv} {next_after}")
            } else {
                format!("( \", \" {kv} )? {next_after}")
            };
            after[i] = Some(self.add(format!("{name}-a{i}"), a));
            let f = if req {
                format!("{kv} {next_after}")
            } else {
                match &first[i + 1] {
                    Some(nf) => format!("( {kv} {next_after} | {nf} )"),
                    None => format!("( {kv} {next_after} )?"),
                }
            };
            first[i] = Some(self.add(format!("{name}-f{i}"), f));
        }
        let body = match &first[0] {
            Some(f) => format!("\"{{\" {f} \"}}\""),
            None => "\"{}\"".to_string(),
        };
        self.add(name.to_string(), body)
    }

    /// A GBNF expression for a value matching `schema`.
    fn value_expr(&mut self, name: &str, schema: &Value) -> String {
        let Some(obj) = schema.as_object() else {
            return self.use_prim("value");
        };
        if let Some(vals) = obj.get("enum").and_then(Value::as_array) {
            let alts: Vec<String> = vals.iter().map(|v| lit(&v.to_string())).collect();
            if !alts.is_empty() {
                return format!("( {} )", alts.join(" | "));
            }
        }
        if let Some(v) = obj.get("const") {
            return lit(&v.to_string());
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(subs) = obj.get(key).and_then(Value::as_array) {
                let alts: Vec<String> =
                    subs.iter().enumerate().map(|(i, s)| self.value_expr(&format!("{name}-{i}"), s)).collect();
                if !alts.is_empty() {
                    return format!("( {} )", alts.join(" | "));
                }
            }
        }
        let types: Vec<&str> = match obj.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ if obj.contains_key("properties") => vec!["object"],
            _ => vec![],
        };
        if types.is_empty() {
            // Any JSON value is allowed (e.g. SYS_EXIT's `result`). A small
            // model given the full JSON grammar here opens objects with junk
            // keys; a short non-empty string is just as valid and stays
            // readable (and cannot run on to the token limit).
            return self.use_prim("text");
        }
        let mut alts = Vec::new();
        for t in types {
            let e = match t {
                "string" => {
                    if obj.get("minLength").and_then(Value::as_u64).unwrap_or(0) >= 1 {
                        self.use_prim("string1")
                    } else {
                        self.use_prim("string")
                    }
                }
                "integer" => {
                    if obj.get("minimum").and_then(Value::as_f64).is_some_and(|m| m >= 0.0) {
                        self.use_prim("uint")
                    } else {
                        self.use_prim("integer")
                    }
                }
                "number" => self.use_prim("number"),
                "boolean" => self.use_prim("boolean"),
                "null" => self.use_prim("null"),
                "object" => {
                    if obj.contains_key("properties") {
                        self.object_rule(&format!("{name}-o"), schema)
                    } else {
                        self.use_prim("object")
                    }
                }
                "array" => {
                    let item = match obj.get("items") {
                        Some(items) => self.value_expr(&format!("{name}-item"), items),
                        None => self.use_prim("value"),
                    };
                    self.add(format!("{name}-arr"), format!("\"[\" ( {item} ( \", \" {item} )* )? \"]\""))
                }
                _ => self.use_prim("value"),
            };
            alts.push(e);
        }
        if alts.len() == 1 {
            alts.pop().unwrap()
        } else {
            format!("( {} )", alts.join(" | "))
        }
    }
}

fn json_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str, schema: Value) -> SyscallSpec {
        SyscallSpec { name: name.into(), description: String::new(), args_schema: schema }
    }

    #[test]
    fn optional_and_required_keys() {
        let s = spec(
            "FS_READ",
            json!({"type":"object","properties":{"path":{"type":"string"},"offset":{"type":["integer","null"],"minimum":0}},"required":["path"]}),
        );
        let g = reply_grammar(&[s], GrammarOptions { thought: true, max_thought_chars: 50 });
        assert!(g.contains("root ::= ( [A-Za-z]"), "{g}");
        assert!(g.contains("\"FS_READ] \" call-fs-read"), "{g}");
        assert!(g.contains("( uint | null )"), "{g}");
        assert!(g.contains("call-fs-read-a1 ::= ( \", \" call-fs-read-kv1 )?"), "{g}");
    }

    #[test]
    fn required_strings_are_non_empty_optional_ones_may_be_empty() {
        let g = args_grammar(&spec(
            "FS_WRITE",
            json!({"type":"object","properties":{"path":{"type":"string"},"content":{"type":"string"},"note":{"type":"string"}},"required":["path","content"]}),
        ));
        assert!(g.contains("call-fs-write-kv0 ::= \"\\\"path\\\": \" string1"), "{g}");
        assert!(g.contains("call-fs-write-kv1 ::= \"\\\"content\\\": \" string1"), "{g}");
        assert!(g.contains("call-fs-write-kv2 ::= \"\\\"note\\\": \" string\n"), "{g}");
    }

    #[test]
    fn empty_and_all_optional_objects() {
        let g = args_grammar(&spec("SYS_READ_STDIN", json!({"type":"object","properties":{}})));
        assert!(g.contains("call-sys-read-stdin ::= \"{}\""), "{g}");
        let g = args_grammar(&spec("SYS_EXIT", json!({"type":"object","properties":{"code":{"type":"integer"},"result":{}}})));
        assert!(g.contains("call-sys-exit-f0 ::= ( call-sys-exit-kv0 call-sys-exit-a1 | call-sys-exit-f1 )"), "{g}");
        // An untyped value (`result`) is written as a short string, not as
        // arbitrary JSON.
        assert!(g.contains("call-sys-exit-kv1 ::= \"\\\"result\\\": \" text"), "{g}");
        assert!(g.contains("text ::= \"\\\"\" char{1,160} \"\\\"\""), "{g}");
        assert!(!g.contains("value ::="), "{g}");
    }
}
