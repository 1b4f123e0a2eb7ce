//! Fuzzes the reply parser (`host/kernel/src/parser.rs`, compiled in
//! directly): it must never panic, and every span must lie inside the input.
#![no_main]

#[path = "../../src/parser.rs"]
#[allow(dead_code)]
mod parser;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        for r in parser::parse_reply(s) {
            match r {
                Ok(c) => assert!(c.span.start < c.span.end && c.span.end <= s.len() && c.args.is_object()),
                Err(e) => assert!(e.span.start <= e.span.end && e.span.end <= s.len() && !e.message.is_empty()),
            }
        }
    }
});
