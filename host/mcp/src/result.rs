//! A `tools/call` result as a syscall result.
//!
//! Text content is joined into `text`; `structuredContent` is returned as
//! `structured`; images, audio and embedded binary resources are never
//! dumped raw: each is summarised in `attachments` (kind, MIME type, size).
//! A result with `isError` is a syscall error carrying the tool's text, so
//! the model reads why and can correct itself. Text beyond
//! [`MAX_TEXT_BYTES`] is cut with a note.

use aos_abi::SyscallError;
use serde_json::{json, Value};

/// The most text returned from one call.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;

fn decoded_len(b64: &str) -> usize {
    b64.trim_end_matches('=').len() * 3 / 4
}

fn summarise(item: &Value) -> Result<String, String> {
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("unknown");
    let mime = item.get("mimeType").and_then(Value::as_str);
    match kind {
        "text" => Ok(item.get("text").and_then(Value::as_str).unwrap_or_default().to_string()),
        "image" | "audio" => {
            let n = item.get("data").and_then(Value::as_str).map(decoded_len).unwrap_or(0);
            Err(format!("{kind} ({}, {n} bytes; not shown)", mime.unwrap_or("unknown type")))
        }
        "resource" => {
            let r = item.get("resource").cloned().unwrap_or(Value::Null);
            let uri = r.get("uri").and_then(Value::as_str).unwrap_or("?");
            if let Some(t) = r.get("text").and_then(Value::as_str) {
                Ok(format!("[resource {uri}]\n{t}"))
            } else {
                let n = r.get("blob").and_then(Value::as_str).map(decoded_len).unwrap_or(0);
                let mime = r.get("mimeType").and_then(Value::as_str).unwrap_or("unknown type");
                Err(format!("resource {uri} ({mime}, {n} bytes; not shown)"))
            }
        }
        "resource_link" => {
            let uri = item.get("uri").and_then(Value::as_str).unwrap_or("?");
            Err(format!("link to resource {uri}"))
        }
        other => Err(format!("{other} content (not shown)")),
    }
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_TEXT_BYTES {
        let mut i = MAX_TEXT_BYTES;
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        let total = s.len();
        s.truncate(i);
        s.push_str(&format!("\n[... cut: {total} bytes of text, {MAX_TEXT_BYTES} shown]"));
    }
    s
}

/// The syscall result of a `tools/call` answer (`result` as the server sent
/// it, in JSON), or the syscall error of a result with `isError`.
pub fn to_outcome(server: &str, tool: &str, result: &Value) -> Result<Value, SyscallError> {
    let mut texts = Vec::new();
    let mut attachments = Vec::new();
    for item in result.get("content").and_then(Value::as_array).into_iter().flatten() {
        match summarise(item) {
            Ok(t) => texts.push(t),
            Err(a) => attachments.push(Value::String(a)),
        }
    }
    let text = cut(texts.join("\n"));
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        let why = if text.is_empty() { "(no message)".to_string() } else { text };
        return Err(SyscallError::Io(format!("MCP tool `{tool}` of server `{server}` failed: {why}")));
    }
    let mut out = json!({ "text": text });
    if let Some(s) = result.get("structuredContent").filter(|v| !v.is_null()) {
        out["structured"] = s.clone();
    }
    if !attachments.is_empty() {
        out["attachments"] = Value::Array(attachments);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_structured_and_binary_summaries() {
        let big = "A".repeat(4000);
        let r = json!({"content": [
            {"type": "text", "text": "hello"},
            {"type": "image", "data": big, "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "file:///a", "blob": "AAAA", "mimeType": "application/pdf"}},
        ], "structuredContent": {"sum": 3}});
        let out = to_outcome("s", "t", &r).unwrap();
        assert_eq!(out["text"], "hello");
        assert_eq!(out["structured"]["sum"], 3);
        let a = out["attachments"].to_string();
        assert!(a.contains("image (image/png, 3000 bytes; not shown)") && !a.contains("AAAA"), "{a}");
        assert!(a.contains("resource file:///a (application/pdf, 3 bytes; not shown)"), "{a}");
    }

    #[test]
    fn is_error_is_a_syscall_error_with_the_tools_words() {
        let r = json!({"content": [{"type": "text", "text": "division by zero"}], "isError": true});
        let e = to_outcome("calc", "div", &r).unwrap_err();
        assert_eq!(e.to_string(), "i/o error: MCP tool `div` of server `calc` failed: division by zero");
    }

    #[test]
    fn long_text_is_cut() {
        let r = json!({"content": [{"type": "text", "text": "é".repeat(MAX_TEXT_BYTES)}]});
        let out = to_outcome("s", "t", &r).unwrap();
        let t = out["text"].as_str().unwrap();
        assert!(t.len() < MAX_TEXT_BYTES + 100 && t.ends_with("shown]"));
    }
}
