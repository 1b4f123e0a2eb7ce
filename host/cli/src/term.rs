//! Writing to the terminal or a pipe: every command prints through
//! [`outln!`]/[`out!`] (stdout) and [`errln!`] (stderr) instead of
//! `println!`/`eprintln!`, which panic when the reader has gone away
//! (`aos logs 1 | head -3`).
//!
//! When stdout is closed, the command ends quietly with exit code 0, like
//! `ls | head`; a command that owns work which must be cleaned up first
//! (`aos run`: its agent and sandbox container) calls [`keep_going_on_closed_stdout`]
//! first, and its later output is dropped. Failed writes to stderr are ignored.
//! Commands that wait for something to print (`aos logs -f`, `aos spawn
//! --wait`) also end as soon as the reader leaves, even while nothing is
//! being written ([`exit_when_reader_leaves`], like `tail -f | head`).
//! `println!` and friends are denied in this crate (`clippy::print_stdout`),
//! and a test (`tests/all/cli_ux.rs`) checks the sources for them.
//!
//! Colour: only when the stream is a terminal, `NO_COLOR` is unset or empty
//! and `TERM` is not `dumb` ([`color`]).

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);
static KEEP_GOING: AtomicBool = AtomicBool::new(false);

/// From now on a closed stdout does not end the process; output is dropped.
pub fn keep_going_on_closed_stdout() {
    KEEP_GOING.store(true, Ordering::SeqCst);
}

/// Writes to stdout; on a closed pipe, exits 0 (or, after
/// [`keep_going_on_closed_stdout`], drops this and later output).
pub fn write_out(args: fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|_| out.flush()) {
        CLOSED.store(true, Ordering::SeqCst);
        if !KEEP_GOING.load(Ordering::SeqCst) {
            drop(out);
            // Any other write error (disk full behind a redirect) is reported once.
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                write_err(format_args!("error: cannot write to stdout: {e}\n"));
                std::process::exit(1);
            }
            std::process::exit(0);
        }
    }
}

/// Ends the command quietly (exit 0, as a failed write would) as soon as the
/// reader of stdout goes away, without waiting for the next write: for
/// commands that can sit idle for a long time between lines (`aos logs -f
/// 3 | grep -m1 done`). Only when stdout is a pipe or a socket; after
/// [`keep_going_on_closed_stdout`] it only marks stdout closed.
pub fn exit_when_reader_leaves() {
    use std::os::fd::AsRawFd;
    let fd = std::io::stdout().as_raw_fd();
    // SAFETY: fstat fills the zeroed struct for a valid descriptor or fails.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return;
    }
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFIFO && kind != libc::S_IFSOCK {
        return;
    }
    std::thread::spawn(move || loop {
        // No events asked for: poll reports only POLLERR (a pipe without
        // readers) or POLLHUP (a socket whose peer closed).
        let mut p = libc::pollfd { fd, events: 0, revents: 0 };
        // SAFETY: one valid pollfd, for the duration of the call.
        let n = unsafe { libc::poll(&mut p, 1, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if p.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
            CLOSED.store(true, Ordering::SeqCst);
            if !KEEP_GOING.load(Ordering::SeqCst) {
                std::process::exit(0);
            }
            return;
        }
    });
}

/// Writes to stderr, ignoring failures (nobody is left to tell).
pub fn write_err(args: fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args);
    let _ = err.flush();
}

/// stderr for `tracing`, ignoring failed writes.
pub struct StderrWriter;

impl Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Whether stdout is a terminal.
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Whether colour (ANSI styling) may be written to stdout (`stderr = false`) or stderr.
pub fn color(stderr: bool) -> bool {
    let tty = if stderr { std::io::stderr().is_terminal() } else { std::io::stdout().is_terminal() };
    tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(true)
}

/// One status line that updates in place on a terminal (carriage return,
/// erase line): a model's progress while it makes a reply (`aos logs -f`
/// on stdout, `aos run` on stderr). Shown dimmed when colour is allowed,
/// cut to the terminal's width so it never wraps (a wrapped line could not
/// be erased); [`StatusLine::clear`] erases it before anything else is written.
pub struct StatusLine {
    stderr: bool,
    shown: bool,
}

impl StatusLine {
    /// A status line on stderr (`stderr`) or stdout; the caller shows it
    /// only when that stream is a terminal.
    pub fn new(stderr: bool) -> Self {
        StatusLine { stderr, shown: false }
    }

    fn write(&self, args: fmt::Arguments<'_>) {
        if self.stderr {
            write_err(args)
        } else {
            write_out(args)
        }
    }

    /// Replaces the line with `text`.
    pub fn show(&mut self, text: &str) {
        let width = crossterm::terminal::size().map(|(w, _)| w as usize).unwrap_or(80).max(10);
        let text: String = text.chars().take(width - 1).collect();
        if color(self.stderr) {
            self.write(format_args!("\r\x1b[K\x1b[2m{text}\x1b[0m"));
        } else {
            self.write(format_args!("\r\x1b[K{text}"));
        }
        self.shown = true;
    }

    /// Erases the line, if it is shown.
    pub fn clear(&mut self) {
        if std::mem::take(&mut self.shown) {
            self.write(format_args!("\r\x1b[K"));
        }
    }
}

/// The status line of `pid`'s model progress: `… pid 3: evaluating prompt 1536/3410 tokens`.
pub fn progress_line(pid: u64, progress: &aos_abi::ModelProgress) -> String {
    format!("… pid {pid}: {progress}")
}

/// `pid`'s model progress as one JSON line's object:
/// `{"type": "model_progress", "pid": 3, "phase": "prompt", "done": 1536, "total": 3410}`.
pub fn progress_json(pid: u64, progress: &aos_abi::ModelProgress) -> serde_json::Value {
    let mut v = serde_json::json!({"type": "model_progress", "pid": pid});
    if let (serde_json::Value::Object(m), Ok(serde_json::Value::Object(p))) = (&mut v, serde_json::to_value(progress)) {
        m.extend(p);
    }
    v
}

/// `println!` that survives a closed stdout.
#[macro_export]
macro_rules! outln {
    () => { $crate::term::write_out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::term::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that survives a closed stdout.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::term::write_out(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    () => { $crate::term::write_err(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::term::write_err(format_args!("{}\n", format_args!($($arg)*))) };
}
