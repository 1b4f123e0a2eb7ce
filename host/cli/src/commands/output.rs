//! Printing shared by the commands that show logs (`run`, `logs`, `spawn --wait`):
//! one log entry per line (or JSON line), exit statuses and their exit codes.

use aos_kernel::{Entry, ExitStatus, LogEntry};

/// Prints one history entry: replies, syscalls with their arguments and
/// result or error, events, kernel notices, stdout.
pub fn print_entry(e: &LogEntry, json: bool) {
    if json {
        if let Ok(s) = serde_json::to_string(e) {
            println!("{s}");
        }
        return;
    }
    let pid = e.pid;
    match &e.entry {
        Entry::Reply { text, truncated } => {
            println!("[{pid}] model{}:", if *truncated { " (truncated)" } else { "" });
            for line in text.lines() {
                println!("[{pid}]   {line}");
            }
        }
        Entry::Result { id, name, args, output } => println!("[{pid}] {name}#{id} {args} -> {output}"),
        Entry::Error { id, name, args, error } => println!(
            "[{pid}] {}#{id}{} -> ERROR {error}",
            name.as_deref().unwrap_or("?"),
            args.as_ref().map(|a| format!(" {a}")).unwrap_or_default()
        ),
        Entry::Event { text } => println!("[{pid}] event: {text}"),
        Entry::Notice { text } => println!("[{pid}] kernel: {text}"),
        Entry::Stdout { text } => println!("[{pid}] stdout: {text}"),
    }
}

/// The command's exit code for how an agent ended: its `SYS_EXIT` code
/// (clamped to 0..=255), 137 if killed, 1 if the kernel ended it.
pub fn exit_code(status: &ExitStatus) -> i32 {
    match status {
        ExitStatus::Exited { code, .. } => (*code).clamp(0, 255) as i32,
        ExitStatus::Killed => 137,
        ExitStatus::Failed { .. } => 1,
    }
}
