//! Formatting shared by the commands: one log entry per line (or JSON
//! line), optionally timestamped, for `run`, `logs` and `spawn --wait`;
//! exit statuses and their exit codes; ages (`ps`, `top`, `kernel status`),
//! times and durations.

use aos_kernel::{Entry, ExitStatus, LogEntry};

/// How log entries are printed.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntryFormat {
    /// One JSON object per line.
    pub json: bool,
    /// Prefix each line with its UTC time (RFC 3339).
    pub timestamps: bool,
}

/// One history entry as text (possibly several lines, each ending in a
/// newline): replies, syscalls with their arguments and result or error,
/// events, kernel notices, stdout.
pub fn format_entry(e: &LogEntry, f: EntryFormat) -> String {
    if f.json {
        return serde_json::to_string(e).map(|s| s + "\n").unwrap_or_default();
    }
    let pid = e.pid;
    let ts = if f.timestamps { format!("{} ", rfc3339(e.at_ms)) } else { String::new() };
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&ts);
        out.push_str(&s);
        out.push('\n');
    };
    match &e.entry {
        Entry::Reply { text, truncated, tool_calls } => {
            line(format!("[{pid}] model{}:", if *truncated { " (truncated)" } else { "" }));
            for l in text.lines() {
                line(format!("[{pid}]   {l}"));
            }
            for c in tool_calls {
                line(format!("[{pid}]   tool call {} {} {}", c.id, c.name, c.arguments));
            }
        }
        Entry::Result { id, name, args, output, .. } => line(format!("[{pid}] {name}#{id} {args} -> {output}")),
        Entry::Error { id, name, args, error, .. } => line(format!(
            "[{pid}] {}#{id}{} -> ERROR {error}",
            name.as_deref().unwrap_or("?"),
            args.as_ref().map(|a| format!(" {a}")).unwrap_or_default()
        )),
        Entry::Event { text } => line(format!("[{pid}] event: {text}")),
        Entry::Notice { text } => line(format!("[{pid}] kernel: {text}")),
        Entry::Stdout { text } => line(format!("[{pid}] stdout: {text}")),
    }
    out
}

/// What an agent wrote to stdout, as the agent wrote it (one line per
/// `SYS_WRITE_STDOUT`), or `None` for other entries.
pub fn stdout_text(e: &LogEntry, timestamps: bool) -> Option<String> {
    match &e.entry {
        Entry::Stdout { text } if timestamps => Some(format!("{} {text}\n", rfc3339(e.at_ms))),
        Entry::Stdout { text } => Some(format!("{text}\n")),
        _ => None,
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

/// `2025-03-01T12:00:05.123Z` for a Unix time in milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms % 1000
    )
}

/// Parses a duration: `90`, `90s`, `15m`, `2h`, `1d`, `1h30m`, `1.5h`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a duration; write e.g. 90s, 15m, 2h, 1d or 1h30m");
    if t.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut any_unit = false;
    for c in t.chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86_400.0,
            'w' => 7.0 * 86_400.0,
            _ => return Err(bad()),
        };
        let n: f64 = num.parse().map_err(|_| bad())?;
        total += n * unit;
        num.clear();
        any_unit = true;
    }
    if !num.is_empty() {
        if any_unit {
            return Err(bad());
        }
        total += num.parse::<f64>().map_err(|_| bad())?;
    }
    if !total.is_finite() || total < 0.0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("1.5h").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("2d").unwrap().as_secs(), 172_800);
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5m3").is_err());
    }
}
