//! Printing shared by the commands: one log entry per line (or JSON line)
//! for `run`, `logs` and `spawn --wait`, exit statuses and their exit
//! codes, and ages (`ps`, `top`, `kernel status`).

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

/// "3s", "4m12s", "2h05m", "3d04h".
pub fn age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}
