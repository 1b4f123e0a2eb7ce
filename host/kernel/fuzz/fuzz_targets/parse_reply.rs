//! Fuzzes the reply parser (`host/kernel/src/parser.rs`, compiled in
//! directly): it must never panic, every span must lie inside the input,
//! and well-formed calls round-trip: each call parsed from the input,
//! written out again as `[SYS_CALL::NAME] {json}` between text, comes back
//! with the same name and arguments, and so does the input itself carried
//! as a string argument.
#![no_main]

#[path = "../../src/parser.rs"]
#[allow(dead_code)]
mod parser;

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

/// Parses `text`, which must hold exactly the calls `expected`, unchanged.
fn round_trip(text: &str, expected: &[(String, Value)]) {
    let got = parser::parse_reply(text);
    assert_eq!(got.len(), expected.len(), "{text:?}: {got:?}");
    for ((name, args), g) in expected.iter().zip(got) {
        let g = g.unwrap_or_else(|e| panic!("{text:?}: a well-formed call did not parse: {}", e.message));
        assert_eq!(&g.name, name, "{text:?}");
        assert_eq!(&g.args, args, "{text:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let mut calls = Vec::new();
    for r in parser::parse_reply(s) {
        match r {
            Ok(c) => {
                assert!(c.span.start < c.span.end && c.span.end <= s.len() && c.args.is_object());
                calls.push((c.name, c.args));
            }
            Err(e) => assert!(e.span.start <= e.span.end && e.span.end <= s.len() && !e.message.is_empty()),
        }
    }
    // The calls found, written out again in two layouts, with text between.
    let mut text = String::from("Let me do that.\n");
    for (i, (name, args)) in calls.iter().enumerate() {
        let args = args.to_string();
        if i % 2 == 0 {
            text.push_str(&format!("[SYS_CALL::{name}] {args}\nthen }} ] {{ \"\n"));
        } else {
            text.push_str(&format!("```json\n[SYS_CALL::{name}]\n{args}\n```\n"));
        }
    }
    round_trip(&text, &calls);
    // The input itself as an argument: any text survives JSON escaping.
    let echo = json!({ "text": s });
    round_trip(&format!("Sending it.\n[SYS_CALL::SEND_MSG] {echo}\ndone"), &[("SEND_MSG".into(), echo)]);
});
