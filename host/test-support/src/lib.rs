//! What the workspace's tests share: the one way a test that cannot run
//! (Docker, ChromaDB, a model file, root, tmux missing) says so.
//!
//! Outside CI a skip is loud: a `SKIPPED` line goes straight to the
//! process's stderr (not through `eprintln!`, which the test harness
//! captures and hides for a passing test), it is counted ([`skipped`]), and
//! it is appended to the file `AOS_SKIP_LOG` names, so that `./dev test`
//! ends with a summary of every skip and its reason. Under CI ([`ci`]) a
//! skip is a failure: CI provides every dependency.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The file (appended to, one `what<TAB>why` line per skip) from which
/// `./dev test` prints its summary.
pub const SKIP_LOG_VAR: &str = "AOS_SKIP_LOG";

static SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// Whether the tests run under CI: `CI` is set to anything but the empty
/// string, `0` or `false` (any case). `./dev` applies the same rule.
pub fn ci() -> bool {
    match std::env::var_os("CI") {
        None => false,
        Some(v) => {
            let v = v.to_string_lossy();
            let v = v.trim();
            !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
        }
    }
}

/// The running test's name, as the test harness names its thread
/// (`module::test`), or `what` when the thread has no such name.
pub fn current_test_or(what: &str) -> String {
    match std::thread::current().name() {
        Some(n) if n != "main" => n.to_string(),
        _ => what.to_string(),
    }
}

/// Says that `what` (a test, or a part of one) did not run because `why`.
/// Under CI this panics (a skip there is a failure); otherwise it writes a
/// loud line to the real stderr, counts the skip and logs it for `./dev
/// test`'s summary. The caller then returns without checking anything.
pub fn skip(what: &str, why: &str) {
    if ci() {
        panic!("{what}: {why} (CI is set, so this is a failure, not a skip)");
    }
    SKIPPED.fetch_add(1, Ordering::Relaxed);
    // Written to fd 2 directly: the harness captures only `eprint!`.
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!! SKIPPED: `{what}` did not run: {} !!!!!!!!\n", one_line(why));
    if let Some(path) = std::env::var_os(SKIP_LOG_VAR).filter(|p| !p.is_empty()) {
        let line = format!("{}\t{}\n", one_line(what), one_line(why));
        // One write of one short line to a file opened for appending: lines
        // of concurrent tests and test binaries do not interleave.
        let logged = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = logged {
            let _ = writeln!(std::io::stderr(), "(could not log the skip to {}: {e})", path.to_string_lossy());
        }
    }
}

/// How many skips this process has reported.
pub fn skipped() -> usize {
    SKIPPED.load(Ordering::Relaxed)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the environment is process-wide.
    #[test]
    fn the_ci_rule_and_the_skip_log() {
        for (v, expected) in
            [("", false), ("0", false), ("false", false), ("FALSE", false), (" ", false), ("1", true), ("true", true), ("yes", true)]
        {
            std::env::set_var("CI", v);
            assert_eq!(ci(), expected, "CI={v:?}");
        }
        std::env::remove_var("CI");
        assert!(!ci());

        let dir = std::env::temp_dir().join(format!("aos-skip-log-{}", std::process::id()));
        let log = dir.join("skips");
        std::fs::create_dir_all(&dir).unwrap();
        std::env::set_var(SKIP_LOG_VAR, &log);
        let before = skipped();
        skip("self-test a (not a real skip)", "Docker is\tnot\nreachable");
        skip("self-test b (not a real skip)", "no model");
        assert_eq!(skipped(), before + 2);
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text, "self-test a (not a real skip)\tDocker is not reachable\nself-test b (not a real skip)\tno model\n");
        std::env::set_var("CI", "1");
        let caught = std::panic::catch_unwind(|| skip("c::test", "no tmux"));
        std::env::remove_var("CI");
        let msg = caught.unwrap_err();
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(msg.contains("c::test: no tmux (CI is set, so this is a failure, not a skip)"), "{msg}");
        assert_eq!(skipped(), before + 2);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), text, "a CI failure is not logged as a skip");
        std::env::remove_var(SKIP_LOG_VAR);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
