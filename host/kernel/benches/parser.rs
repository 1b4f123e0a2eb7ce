//! Parser benchmark (no harness; prints a table): time to parse replies made
//! of N calls — malformed tags on one line, malformed tags one per line, and
//! well-formed calls — at growing N. Parsing must stay linear: the time per
//! call should not grow with N.
//!
//! Run: `cargo bench -p aos-kernel --bench parser` (or `--profile dev`).

#![allow(clippy::unwrap_used)] // a benchmark stops on any failure

use std::time::Instant;

use aos_kernel::parse_reply;

fn time_ms(reply: &str, expect: usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let r = parse_reply(reply);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(r.len(), expect);
        best = best.min(ms);
    }
    best
}

fn main() {
    type Shape = (&'static str, fn(usize) -> String);
    let shapes: [Shape; 3] = [
        ("malformed, one line", |n| "[SYS_CALL::A ".repeat(n)),
        ("malformed, a line each", |n| "[SYS_CALL::B] oops\n".repeat(n)),
        ("well-formed calls", |n| "[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"tick\"}\n".repeat(n)),
    ];
    println!("{:<24} {:>8} {:>10} {:>12}", "reply", "calls", "parse ms", "µs per call");
    for (label, make) in shapes {
        for n in [1_000, 5_000, 20_000, 80_000] {
            let reply = make(n);
            let ms = time_ms(&reply, n);
            println!("{label:<24} {n:>8} {ms:>10.2} {:>12.3}", ms * 1e3 / n as f64);
        }
    }
}
