//! The parser never panics: ~100k random and structured inputs; and
//! well-formed calls come back unchanged (names and arguments, in order)
//! from text with noise around them. The `cargo fuzz` target in `fuzz/`
//! checks both with coverage guidance.

use aos_kernel::parse_reply;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "[SYS_CALL::", "FS_READ", "]", "[SYS_CALL::SYS_EXIT]", " ", "\n", "{", "}", "[", "]", "\"", "\\", "\\\"",
    "```", "```json\n", ":", ",", "\"path\"", "1", "-2.5e3", "true", "null", "é", "日本", "\u{0}", "\r\n",
    "{\"a\": \"}\"}", "[SYS_CALL::X] {\"k\": [1, {\"z\": \"]\"}]}", "text ", "[SYS_CALL:: a b ]", "\\u12", "\u{1F600}",
];

fn check(s: &str) {
    for r in parse_reply(s) {
        match r {
            Ok(c) => {
                assert!(c.span.start < c.span.end && c.span.end <= s.len());
                assert!(c.args.is_object());
            }
            Err(e) => {
                assert!(e.span.start <= e.span.end && e.span.end <= s.len());
                assert!(!e.message.is_empty());
            }
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9E3779B97F4A7C15);
    for _ in 0..50_000 {
        let len = rng.below(64);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn structured_inputs_never_panic() {
    let mut rng = Rng(0xD1B54A32D192ED03);
    for _ in 0..50_000 {
        let n = rng.below(24);
        let s: String = (0..n).map(|_| PIECES[rng.below(PIECES.len())]).collect();
        check(&s);
    }
}

/// Round trip: well-formed calls, rendered as a model would write them
/// (`[SYS_CALL::NAME] {json}` in any of the tolerated layouts, with text
/// around and between them), come back from the parser unchanged: the same
/// names (upper-cased), the same arguments, in order, and nothing else.
mod round_trip {
    use aos_kernel::parse_reply;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            prop::num::f64::NORMAL.prop_map(Value::from),
            // Strings with what a scanner could trip on: braces, quotes,
            // escapes, tags, fences, control characters, non-ASCII.
            prop::collection::vec(
                prop_oneof![
                    Just("}".to_string()), Just("{".to_string()), Just("\"".to_string()), Just("\\".to_string()),
                    Just("[SYS_CALL::FS_READ] {\"path\": \"x\"}".to_string()), Just("```json\n".to_string()),
                    Just("\n".to_string()), Just("\u{0}".to_string()), Just("é日本\u{1F600}".to_string()),
                    "[a-z ]{0,6}".prop_map(String::from),
                ],
                0..6,
            )
            .prop_map(|v| Value::String(v.concat())),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_\"{}\\\\]{0,5}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    fn args() -> impl Strategy<Value = Value> {
        prop::collection::btree_map("[a-zA-Z_]{1,8}", json_value(), 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
    }

    /// Text around calls. No piece holds a `:`, so noise never forms a tag.
    const NOISE: &[&str] = &[
        "I will do that now.", " ", "\n", "\r\n", "\t", "{", "}", "]", "[", "\"", "\\", "```", "```json\n", "[SYS_CALL",
        "SYS_CALL", "[RESULT FS_READ#1] ok", "é日本", "\u{1F600}", "null", "1.5e3", "json",
    ];

    #[derive(Debug, Clone)]
    struct Call {
        name: String,
        args: Value,
        /// How it is written: lower-case name, spaces in the tag, layout.
        lower: bool,
        spaced: bool,
        layout: u8,
        pretty: bool,
    }

    fn call() -> impl Strategy<Value = Call> {
        ("[A-Z][A-Z0-9_]{0,15}", args(), any::<bool>(), any::<bool>(), 0u8..5, any::<bool>())
            .prop_map(|(name, args, lower, spaced, layout, pretty)| Call { name, args, lower, spaced, layout, pretty })
    }

    /// `bare_ok`: the call ends the reply, so no arguments may be written as nothing.
    fn render(c: &Call, bare_ok: bool) -> String {
        let name = if c.lower { c.name.to_ascii_lowercase() } else { c.name.clone() };
        let tag = if c.spaced { format!("[SYS_CALL:: {name} ]") } else { format!("[SYS_CALL::{name}]") };
        let json = if c.pretty { serde_json::to_string_pretty(&c.args) } else { serde_json::to_string(&c.args) }.unwrap();
        match c.layout {
            0 => format!("{tag} {json}"),
            1 => format!("{tag}\n\n{json}"),
            2 => format!("{tag}\n```json\n{json}\n```"),
            3 => format!("```\n{tag} {json}\n```"),
            // A call without arguments may be a bare tag at the end of the reply.
            _ if bare_ok && c.args.as_object().is_some_and(|m| m.is_empty()) => tag,
            _ => format!("{tag}{json}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]
        #[test]
        fn well_formed_calls_come_back_unchanged(
            calls in prop::collection::vec(call(), 1..5),
            noise in prop::collection::vec(prop::collection::vec(prop::sample::select(NOISE), 0..4), 5),
        ) {
            let mut text = String::new();
            for (i, c) in calls.iter().enumerate() {
                text.push_str(&noise[i].concat());
                // Noise ending in an open fence or brace must not glue onto the tag's line.
                text.push('\n');
                text.push_str(&render(c, i + 1 == calls.len() && noise[4].is_empty()));
                text.push('\n');
            }
            text.push_str(&noise[4].concat());
            let parsed = parse_reply(&text);
            prop_assert_eq!(parsed.len(), calls.len(), "{}\n{:#?}", text, parsed);
            for (c, p) in calls.iter().zip(&parsed) {
                let p = p.as_ref().map_err(|e| TestCaseError::fail(format!("{text}\n{}", e.message)))?;
                prop_assert_eq!(&p.name, &c.name, "{}", text);
                prop_assert_eq!(&p.args, &c.args, "{}", text);
                prop_assert!(text[p.span.clone()].starts_with("[SYS_CALL::"));
            }
        }
    }
}
