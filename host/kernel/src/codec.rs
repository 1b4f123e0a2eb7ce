//! The line codec of events: how every [`KernelEvent`](crate::KernelEvent)
//! (and anything else that goes in a journal or an NDJSON stream) becomes
//! one line of JSON and back. Writers (the journal, the control API's
//! streams) and readers (recovery, `aos logs`) all use it, so they agree on
//! every line.
//!
//! Why not plain `serde_json`: a model's call arguments are parsed with
//! serde_json's default nesting limit (128), so they can be up to 127
//! levels deep; wrapped in an entry, an event and a journal record, the line
//! is deeper than that limit and a plain `serde_json::from_str` refuses to
//! read back what `to_string` wrote ("recursion limit exceeded"). Here the
//! reader has no nesting limit and grows its stack on the heap as it
//! descends (`serde_stacker`), so any line the writer produced is read back,
//! on any thread, whatever its depth. Numbers round-trip exactly
//! (serde_json's `float_roundtrip`), strings are escaped JSON (a line never
//! holds a raw newline), and lines are bytes (`decode` never stops at
//! invalid UTF-8 elsewhere in a file).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes `value` as one JSON line, newline included.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    Ok(line)
}

/// Appends `value` as one JSON line (newline included) to `out`; on error `out` is unchanged.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let start = out.len();
    match serde_json::to_writer(&mut *out, value) {
        Ok(()) => {
            out.push(b'\n');
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Decodes one line (with or without its newline) written by [`encode`],
/// whatever its nesting depth.
pub fn decode<T: DeserializeOwned>(line: &[u8]) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(line);
    de.disable_recursion_limit();
    let value = T::deserialize(serde_stacker::Deserializer::new(&mut de))?;
    de.end()?;
    Ok(value)
}

/// Decodes a line given as text.
pub fn decode_str<T: DeserializeOwned>(line: &str) -> Result<T, serde_json::Error> {
    decode(line.as_bytes())
}

/// The `"event"` tag of a line (`{"event":"NAME",...}`), read without
/// decoding the line: serde writes an internally tagged enum's tag first.
pub fn event_tag(line: &[u8]) -> Option<&str> {
    let rest = line.strip_prefix(b"{\"event\":\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn nested(depth: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..depth {
            v = json!([v]);
        }
        v
    }

    #[test]
    fn lines_deeper_than_serde_jsons_limit_round_trip() {
        for depth in [1, 126, 127, 200, 400] {
            let v = json!({"event": "x", "args": nested(depth)});
            let line = encode(&v).unwrap();
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(decode::<Value>(&line).unwrap(), v, "depth {depth}");
            if depth >= 127 {
                assert!(serde_json::from_slice::<Value>(&line).is_err(), "plain serde_json reads depth {depth}");
            }
        }
    }

    #[test]
    fn floats_round_trip_exactly() {
        for f in [0.1 + 0.2, 2.2250738585072014e-308, 1.7976931348623157e308, 5e-324, 9007199254740993.0, 1.0 / 3.0] {
            let line = encode(&json!([f])).unwrap();
            assert_eq!(decode::<Value>(&line).unwrap()[0].as_f64(), Some(f), "{}", String::from_utf8_lossy(&line));
        }
    }

    /// Native tool calls and their ids are journalled as typed fields, and
    /// lines of journals written before them still read (no ids).
    #[test]
    fn tool_call_ids_round_trip_and_old_lines_read() {
        use crate::events::{Entry, KernelEvent, LogEntry};
        let call = aos_abi::ToolCall { id: "call_1".into(), name: "FS_READ".into(), arguments: "{\"path\":".into(), signature: None };
        for entry in [
            Entry::Reply { text: String::new(), truncated: false, tool_calls: vec![call] },
            Entry::Result { id: 1, name: "FS_READ".into(), args: json!({}), output: json!({}), call_id: Some("call_1".into()) },
            Entry::Error { id: 2, name: None, args: None, error: "x".into(), call_id: Some("call_2".into()) },
        ] {
            let ev = KernelEvent::Entry { entry: LogEntry { pid: 1, seq: 0, at_ms: 1, entry } };
            assert_eq!(decode::<KernelEvent>(&encode(&ev).unwrap()).unwrap(), ev);
        }
        let old = br#"{"event":"entry","entry":{"pid":1,"seq":0,"at_ms":1,"type":"reply","text":"hi","truncated":false}}"#;
        match decode::<KernelEvent>(old).unwrap() {
            KernelEvent::Entry { entry } => assert!(matches!(entry.entry, Entry::Reply { ref tool_calls, .. } if tool_calls.is_empty())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tag_and_trailing_garbage() {
        assert_eq!(event_tag(br#"{"event":"entry","pid":1}"#), Some("entry"));
        assert_eq!(event_tag(br#"{"pid":1}"#), None);
        assert!(decode::<Value>(b"{} x").is_err());
        assert!(decode::<Value>(b"{\"a\":").is_err());
        let mut out = b"keep".to_vec();
        encode_into(&json!({"a": 1}), &mut out).unwrap();
        assert_eq!(out, b"keep{\"a\":1}\n");
    }
}
