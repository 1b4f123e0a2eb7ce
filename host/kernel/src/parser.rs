//! Parsing of model replies: finds every `[SYS_CALL::NAME] {json}` block in
//! a reply, in order, and turns each into a [`ParsedCall`] or a precise
//! [`ParseError`] (what was wrong and where).
//!
//! Tolerated: whitespace and newlines between the tag and the JSON, code
//! fences around the call or around the JSON (```` ```json ... ``` ````), text
//! before, between and after calls, spaces inside the tag and lower-case
//! names. A tag followed by nothing (end of reply or the next tag) means
//! "no arguments" (`{}`).
//!
//! The JSON object is delimited by a scanner that balances braces while
//! respecting strings and escapes (so `{"a": "}"}` works), then decoded with
//! `serde_json`. Argument validation against a syscall's schema lives in
//! [`crate::schema`]; this module only deals with syntax.

use std::ops::Range;

use serde_json::Value;

/// The literal that opens a call (defined once, in `aos_abi`).
pub use aos_abi::syscall::TAG_OPEN;

/// One syntactically valid call.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCall {
    /// Upper-cased syscall name.
    pub name: String,
    /// The decoded argument object.
    pub args: Value,
    /// Byte range of the call (tag through end of JSON) in the reply.
    pub span: Range<usize>,
}

/// A call that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The name in the tag, when one could be read.
    pub name: Option<String>,
    /// Byte range of the offending text in the reply.
    pub span: Range<usize>,
    /// Human-readable explanation including the line/column.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Line and column (both 1-based, column in characters) of byte `pos` in `text`.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = floor_char_boundary(text, pos.min(text.len()));
    let before = &text[..pos];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = text[line_start..pos].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A short, single-line excerpt of `s` for error messages. Looks at no more
/// than the first 41 characters, so excerpts cost O(1) however long the line.
fn excerpt(s: &str) -> String {
    let mut chars = s.chars().take_while(|&c| c != '\n' && c != '\r');
    let mut out: String = chars.by_ref().take(40).collect();
    if chars.next().is_some() {
        out.push_str("...");
    }
    out
}

/// Line/column lookups for one reply. The newline offsets are found once,
/// and columns are counted on from the previous lookup when it was earlier
/// on the same line, so the forward lookups of one parse cost linear time in
/// all (one scan from the start per call made 20,000 malformed tags take
/// seconds, and so would a scan from the line start on a one-line reply).
struct Lines<'a> {
    text: &'a str,
    /// Byte offsets of every `\n`.
    newlines: Vec<usize>,
    /// The last lookup: (byte position, 0-based line, 1-based column).
    last: std::cell::Cell<(usize, usize, usize)>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines {
            text,
            newlines: text.bytes().enumerate().filter(|&(_, b)| b == b'\n').map(|(i, _)| i).collect(),
            last: std::cell::Cell::new((0, 0, 1)),
        }
    }

    /// The same as [`line_col`].
    fn line_col(&self, pos: usize) -> (usize, usize) {
        let pos = floor_char_boundary(self.text, pos.min(self.text.len()));
        let line = self.newlines.partition_point(|&n| n < pos);
        let (last_pos, last_line, last_col) = self.last.get();
        let col = if last_line == line && last_pos <= pos {
            last_col + self.text[last_pos..pos].chars().count()
        } else {
            let line_start = if line == 0 { 0 } else { self.newlines[line - 1] + 1 };
            self.text[line_start..pos].chars().count() + 1
        };
        self.last.set((pos, line, col));
        (line + 1, col)
    }
}

/// Parses every call in `reply`, in order of appearance.
pub fn parse_reply(reply: &str) -> Vec<Result<ParsedCall, ParseError>> {
    let mut out = Vec::new();
    let lines = Lines::new(reply);
    let line_col = |pos| lines.line_col(pos);
    let mut pos = 0;
    while let Some(rel) = reply[pos..].find(TAG_OPEN) {
        let tag_start = pos + rel;
        let name_start = tag_start + TAG_OPEN.len();
        let (line, _) = line_col(tag_start);
        // The name runs to the closing `]`, which must come before the end of the line.
        let rest = &reply[name_start..];
        let close = rest.find([']', '\n', '[', '{']);
        let Some(close_rel) = close.filter(|&i| rest.as_bytes()[i] == b']') else {
            let shown = excerpt(&reply[tag_start..]);
            out.push(Err(ParseError {
                name: None,
                span: tag_start..name_start,
                message: format!(
                    "malformed call tag at line {line}: `{shown}` is missing the closing `]`; write [SYS_CALL::NAME] {{...}}"
                ),
            }));
            pos = name_start;
            continue;
        };
        let raw_name = rest[..close_rel].trim();
        let after_tag = name_start + close_rel + 1;
        if raw_name.is_empty()
            || !raw_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            out.push(Err(ParseError {
                name: None,
                span: tag_start..after_tag,
                message: format!(
                    "malformed call tag at line {line}: `{}` is not a syscall name (letters, digits and `_` only)",
                    &reply[tag_start..after_tag]
                ),
            }));
            pos = after_tag;
            continue;
        }
        let name = raw_name.to_ascii_uppercase();
        let tag_text = format!("{TAG_OPEN}{name}]");

        // Skip whitespace and an optional opening code fence (```json / ```).
        let p0 = skip_ws(reply, after_tag);
        let mut p = p0;
        let mut fence_without_object = false;
        if reply[p0..].starts_with("```") {
            let fence_end = p0 + 3;
            let lang_end = reply[fence_end..]
                .find(|c: char| !c.is_ascii_alphanumeric())
                .map(|i| fence_end + i)
                .unwrap_or(reply.len());
            let p1 = skip_ws(reply, lang_end);
            if reply[p1..].starts_with('{') {
                p = p1;
            } else {
                // A closing fence of a fenced call: the call had no arguments.
                fence_without_object = true;
            }
        }
        // Nothing (or another call, or a closing fence) after the tag: no arguments.
        if fence_without_object || p >= reply.len() || reply[p..].starts_with(TAG_OPEN) {
            out.push(Ok(ParsedCall {
                name,
                args: Value::Object(Default::default()),
                span: tag_start..after_tag,
            }));
            pos = if fence_without_object { p0 + 3 } else { p.max(after_tag) };
            continue;
        }
        if !reply[p..].starts_with('{') {
            let (l, c) = line_col(p);
            out.push(Err(ParseError {
                name: Some(name),
                span: tag_start..p,
                message: format!(
                    "{tag_text} at line {l}: expected a JSON object after the tag, found `{}` (column {c}); write {tag_text} {{\"arg\": \"value\"}}",
                    excerpt(&reply[p..])
                ),
            }));
            pos = p;
            continue;
        }
        match scan_object(reply, p) {
            Err(ScanError::Unterminated) => {
                let (l, c) = line_col(p);
                out.push(Err(ParseError {
                    name: Some(name),
                    span: tag_start..reply.len(),
                    message: format!(
                        "{tag_text} at line {l}: unterminated JSON object starting at line {l} column {c}: the reply ended before the closing `}}`"
                    ),
                }));
                break;
            }
            Err(ScanError::UnterminatedString(sp)) => {
                let (l, c) = line_col(sp);
                let (tl, _) = line_col(p);
                out.push(Err(ParseError {
                    name: Some(name),
                    span: tag_start..reply.len(),
                    message: format!(
                        "{tag_text} at line {tl}: invalid JSON at line {l} column {c}: EOF while parsing a string (missing closing `\"`)"
                    ),
                }));
                break;
            }
            Ok(end) => {
                let json = &reply[p..end];
                match serde_json::from_str::<Value>(json) {
                    Ok(args) => out.push(Ok(ParsedCall { name, args, span: tag_start..end })),
                    Err(e) => {
                        // serde's position is relative to the object; make it relative to the reply.
                        let (ol, oc) = line_col(p);
                        let (el, ec) = (e.line(), e.column());
                        let (l, c) = if el <= 1 { (ol, oc + ec.saturating_sub(1)) } else { (ol + el - 1, ec) };
                        let msg = e.to_string();
                        let msg = match msg.rfind(" at line ") {
                            Some(i) => msg[..i].to_string(),
                            None => msg,
                        };
                        out.push(Err(ParseError {
                            name: Some(name),
                            span: tag_start..end,
                            message: format!("{tag_text}: invalid JSON at line {l} column {c}: {msg}"),
                        }));
                    }
                }
                pos = end;
            }
        }
    }
    out
}

fn skip_ws(s: &str, mut p: usize) -> usize {
    let b = s.as_bytes();
    while p < b.len() && (b[p] as char).is_ascii_whitespace() {
        p += 1;
    }
    p
}

enum ScanError {
    Unterminated,
    /// Byte offset where the unterminated string started.
    UnterminatedString(usize),
}

/// Given `s[start] == '{'`, returns the byte index just past the matching `}`,
/// honouring JSON strings and backslash escapes.
fn scan_object(s: &str, start: usize) -> Result<usize, ScanError> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = start;
    let mut in_str: Option<usize> = None;
    while i < b.len() {
        let c = b[i];
        if in_str.is_some() {
            match c {
                b'\\' => i += 1,
                b'"' => in_str = None,
                _ => {}
            }
        } else {
            match c {
                b'"' => in_str = Some(i),
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Ok(i + 1);
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    match in_str {
        Some(sp) => Err(ScanError::UnterminatedString(sp)),
        None => Err(ScanError::Unterminated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(r: &Result<ParsedCall, ParseError>) -> &ParsedCall {
        r.as_ref().unwrap_or_else(|e| panic!("expected Ok, got {e}"))
    }
    fn err(r: &Result<ParsedCall, ParseError>) -> &ParseError {
        r.as_ref().expect_err("expected an error")
    }

    #[test]
    fn simple_call() {
        let r = parse_reply(r#"[SYS_CALL::FS_READ] {"path": "a.txt"}"#);
        assert_eq!(r.len(), 1);
        let c = ok(&r[0]);
        assert_eq!(c.name, "FS_READ");
        assert_eq!(c.args, json!({"path": "a.txt"}));
        assert_eq!(c.span, 0..37);
    }

    #[test]
    fn no_calls_is_a_thought() {
        assert!(parse_reply("I am thinking about { braces } and [brackets].").is_empty());
        assert!(parse_reply("").is_empty());
    }

    #[test]
    fn whitespace_and_newlines_between_tag_and_json() {
        let r = parse_reply("[SYS_CALL::FS_READ]\n\n   \t{\n \"path\": \"a\"\n}\n");
        assert_eq!(ok(&r[0]).args, json!({"path": "a"}));
    }

    #[test]
    fn fenced_json_after_tag() {
        let r = parse_reply("Let me read.\n[SYS_CALL::FS_READ]\n```json\n{\"path\": \"a\"}\n```\nDone.");
        assert_eq!(r.len(), 1);
        assert_eq!(ok(&r[0]).args, json!({"path": "a"}));
    }

    #[test]
    fn fence_around_whole_call() {
        let r = parse_reply("```\n[SYS_CALL::FS_LIST] {\"path\": \".\"}\n```\n```text\n[SYS_CALL::SYS_EXIT] {}\n```");
        assert_eq!(r.len(), 2);
        assert_eq!(ok(&r[0]).name, "FS_LIST");
        assert_eq!(ok(&r[1]).name, "SYS_EXIT");
    }

    #[test]
    fn multiple_calls_with_text_between() {
        let r = parse_reply(
            "First.\n[SYS_CALL::A] {\"x\": 1} then [SYS_CALL::B] {\"y\": [1, {\"z\": 2}]}\nand [SYS_CALL::C] {}",
        );
        let names: Vec<_> = r.iter().map(|c| ok(c).name.clone()).collect();
        assert_eq!(names, ["A", "B", "C"]);
        assert_eq!(ok(&r[1]).args, json!({"y": [1, {"z": 2}]}));
    }

    #[test]
    fn braces_and_tags_inside_strings() {
        let r = parse_reply(r#"[SYS_CALL::FS_WRITE] {"path": "x", "content": "fn f() { } } [SYS_CALL::FS_DELETE] {"}"#);
        assert_eq!(r.len(), 1);
        assert_eq!(ok(&r[0]).args["content"], "fn f() { } } [SYS_CALL::FS_DELETE] {");
    }

    #[test]
    fn escaped_quotes_and_backslashes() {
        let r = parse_reply(r#"[SYS_CALL::FS_WRITE] {"content": "say \"hi\" \\", "path": "q\\"} tail"#);
        let c = ok(&r[0]);
        assert_eq!(c.args["content"], "say \"hi\" \\");
        assert_eq!(c.args["path"], "q\\");
    }

    #[test]
    fn unicode_content() {
        let r = parse_reply("héllo → [SYS_CALL::SEND_MSG] {\"to_pid\": 2, \"content\": \"日本語 {\"}");
        assert_eq!(ok(&r[0]).args["content"], "日本語 {");
    }

    #[test]
    fn missing_object_is_reported_with_line() {
        let r = parse_reply("ok\nnow\n[SYS_CALL::FS_READ] path=notes.txt");
        let e = err(&r[0]);
        assert_eq!(e.name.as_deref(), Some("FS_READ"));
        assert!(
            e.message.starts_with("[SYS_CALL::FS_READ] at line 3: expected a JSON object after the tag, found `path=notes.txt`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn bare_tag_means_no_arguments() {
        let r = parse_reply("[SYS_CALL::SYS_READ_STDIN]");
        assert_eq!(ok(&r[0]).args, json!({}));
        let r = parse_reply("[SYS_CALL::SYS_READ_STDIN]\n[SYS_CALL::SYS_EXIT] {\"code\": 1}");
        assert_eq!(r.len(), 2);
        assert_eq!(ok(&r[1]).args, json!({"code": 1}));
    }

    #[test]
    fn unterminated_string() {
        let r = parse_reply("a\n[SYS_CALL::FS_READ] {\"path\": \"abc");
        let e = err(&r[0]);
        assert!(e.message.contains("invalid JSON at line 2 column 30: EOF while parsing a string"), "{}", e.message);
    }

    #[test]
    fn unterminated_object() {
        let r = parse_reply("[SYS_CALL::FS_READ] {\"path\": \"abc\"");
        let e = err(&r[0]);
        assert!(e.message.contains("unterminated JSON object starting at line 1 column 21"), "{}", e.message);
    }

    #[test]
    fn invalid_json_position_is_relative_to_reply() {
        let r = parse_reply("x\n[SYS_CALL::FS_READ] {\"path\": 'a'}");
        let e = err(&r[0]);
        assert!(e.message.contains("invalid JSON at line 2 column 30: expected value"), "{}", e.message);
        let r = parse_reply("[SYS_CALL::X] {\n  \"a\": 1,\n  \"b\": nope\n}");
        let e = err(&r[0]);
        assert!(e.message.contains("invalid JSON at line 3 column 9: expected ident"), "{}", e.message);
    }

    #[test]
    fn trailing_comma_is_an_error_then_parsing_continues() {
        let r = parse_reply("[SYS_CALL::A] {\"a\": 1,} [SYS_CALL::B] {\"b\": 2}");
        assert_eq!(r.len(), 2);
        assert!(err(&r[0]).message.contains("trailing comma"), "{}", err(&r[0]).message);
        assert_eq!(ok(&r[1]).name, "B");
    }

    #[test]
    fn malformed_tags() {
        let r = parse_reply("[SYS_CALL::FS READ] {}");
        assert!(err(&r[0]).message.contains("is not a syscall name"));
        let r = parse_reply("[SYS_CALL::FS_READ {\"path\": 1}");
        assert!(err(&r[0]).message.contains("missing the closing `]`"));
        let r = parse_reply("[SYS_CALL::]");
        assert!(r[0].is_err());
    }

    #[test]
    fn lower_case_and_spaced_names_are_normalised() {
        let r = parse_reply("[SYS_CALL:: fs_read ] {\"path\": \"a\"}");
        assert_eq!(ok(&r[0]).name, "FS_READ");
    }

    #[test]
    fn non_object_json_is_rejected() {
        let r = parse_reply("[SYS_CALL::FS_READ] [\"a\"]");
        assert!(err(&r[0]).message.contains("expected a JSON object"));
        let r = parse_reply("[SYS_CALL::FS_READ] \"a\"");
        assert!(err(&r[0]).message.contains("expected a JSON object"));
    }

    #[test]
    fn line_col_counts_chars() {
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
        assert_eq!(line_col("", 0), (1, 1));
    }

    /// The incremental lookups agree with the plain function at every
    /// position, forwards, backwards and across lines.
    #[test]
    fn incremental_line_col_agrees_with_line_col() {
        let text = "ab\ncé d\n\nxyz é\n";
        let lines = Lines::new(text);
        let positions: Vec<usize> = (0..=text.len()).chain((0..=text.len()).rev()).chain([3, 9, 1, 14, 4]).collect();
        for pos in positions {
            assert_eq!(lines.line_col(pos), line_col(text, pos), "at {pos}");
        }
    }

    /// Many malformed tags on one line and on many lines: every one is
    /// reported, with its line (parse time is measured by the kernel bench).
    #[test]
    fn many_malformed_tags_are_each_reported() {
        let one_line = "[SYS_CALL::A ".repeat(20_000);
        let r = parse_reply(&one_line);
        assert_eq!(r.len(), 20_000);
        assert!(err(&r[19_999]).message.contains("at line 1:"), "{}", err(&r[19_999]).message);
        let many_lines = "[SYS_CALL::B] oops\n".repeat(20_000);
        let r = parse_reply(&many_lines);
        assert_eq!(r.len(), 20_000);
        assert!(err(&r[19_999]).message.contains("at line 20000:"), "{}", err(&r[19_999]).message);
    }
}
