//! The parser never panics: ~100k random and structured inputs (the
//! `cargo fuzz` target in `fuzz/` does the same with coverage guidance).

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
