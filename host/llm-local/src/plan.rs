//! The task plan of the `local` provider: a task split into its clauses
//! ("write a haiku to haiku.txt, then exit" → "write a haiku to haiku.txt",
//! "exit"), and where a process is in it, read from its conversation.
//!
//! A 135M model cannot tell from a long conversation whether its task is
//! done (measured in `evals/next.jsonl`: it reads the file it just wrote, or
//! exits before the second half of the task). So after the first step the
//! engine does not ask it which syscall comes next: each clause's syscall is
//! chosen from the clause's words exactly as a first step is
//! ([`crate::Decoding::Pmi`]), a clause counts as done once a call of that
//! syscall succeeded, and when every clause is done the next call is
//! `SYS_EXIT`. Clauses [`crate::frame`] recognises get their calls built
//! from the task and the results ([`crate::bind`]); for the others the model
//! writes the arguments, seeing the whole conversation (so it can correct an
//! argument after an `[ERROR]`).

/// Verbs that start a new clause after "and" or a comma ("read a.txt and
/// print it"); other words after "and" continue the clause ("remove build
/// and everything in it").
pub(crate) const VERBS: &[&str] = &[
    "add", "answer", "append", "ask", "call", "check", "compute", "copy", "count", "create", "delete", "display",
    "download", "echo", "end", "erase", "exit", "fetch", "find", "forget", "get", "greet", "let", "list", "look", "make",
    "move", "notify", "open", "output", "print", "put", "quit", "read", "receive", "recall", "register", "remember",
    "remove", "reply", "report", "respond", "run", "save", "say", "send", "show", "sleep", "spawn", "start", "stop",
    "store", "summarise", "summarize", "tell", "wait", "write",
];

/// The clauses of `task`, in order. Split at sentence ends, at "then", and
/// at "and"/"," followed by a verb of [`VERBS`]. Never empty for a
/// non-empty task.
pub fn clauses(task: &str) -> Vec<String> {
    let words: Vec<&str> = task.split_whitespace().collect();
    let mut out: Vec<Vec<&str>> = vec![Vec::new()];
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let lower = w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
        let cur = out.last_mut().unwrap();
        let prev_ended = cur.last().is_some_and(|p| p.ends_with(['.', ';', '!', '?']) && !looks_like_a_name(p));
        let prev_comma = cur.last().is_some_and(|p| p.ends_with(','));
        if !cur.is_empty() && lower == "then" {
            // "..., then X" / "... and then X" / "... then X".
            if cur.last().is_some_and(|p| p.eq_ignore_ascii_case("and")) {
                cur.pop();
            }
            out.push(Vec::new());
            i += 1;
            continue;
        }
        let starts_verb = VERBS.contains(&lower.as_str());
        if !cur.is_empty() && (prev_ended || (prev_comma && starts_verb)) {
            out.push(Vec::new());
        } else if lower == "and" && i + 1 < words.len() && !cur.is_empty() {
            let next = words[i + 1].trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
            if VERBS.contains(&next.as_str()) || next == "then" {
                if next != "then" {
                    out.push(Vec::new());
                }
                i += 1;
                continue;
            }
        }
        out.last_mut().unwrap().push(w);
        i += 1;
    }
    out.into_iter()
        .map(|c| c.join(" ").trim_end_matches([',', '.', ';', '!', '?', ' ']).to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

/// "a.txt." ends a sentence, but "e.g." or "3." inside a clause hardly ever
/// ends a task's clause: single letters and numbers before the dot are kept.
fn looks_like_a_name(word: &str) -> bool {
    let w = word.trim_end_matches(['.', ';', '!', '?']);
    w.len() <= 1 || w.chars().all(|c| c.is_ascii_digit())
}

/// Where a process is in its plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The next clause's index.
    Next(usize),
    /// Every clause is done.
    Done,
}

/// How far `plan` (one syscall name per clause) is done, given the names of
/// the calls that succeeded, in order: a clause is done by the first
/// successful call of its syscall after the previous clause was done.
pub fn progress(plan: &[String], succeeded: &[String]) -> Progress {
    let mut p = 0;
    for name in succeeded {
        if p < plan.len() && *name == plan[p] {
            p += 1;
        }
    }
    if p < plan.len() { Progress::Next(p) } else { Progress::Done }
}

/// The names of the calls that succeeded, in order, from the kernel's
/// messages: every line starting `[RESULT NAME#id]` (also those inside a
/// compaction marker's summary lines).
pub fn succeeded_calls<'a>(user_messages: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    for m in user_messages {
        for line in m.lines() {
            let line = line.trim_start_matches(['-', ' ']);
            if let Some(rest) = line.strip_prefix("[RESULT ") {
                if let Some(name) = rest.split(['#', ']']).next() {
                    out.push(name.to_string());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(t: &str) -> Vec<String> {
        clauses(t)
    }

    #[test]
    fn splits_at_then_and_verbs_only() {
        assert_eq!(c("write a haiku about the sea to haiku.txt, then exit"), ["write a haiku about the sea to haiku.txt", "exit"]);
        assert_eq!(c("Wait 10 seconds, then exit"), ["Wait 10 seconds", "exit"]);
        assert_eq!(c("Read report.txt and tell me how many lines it has"), ["Read report.txt", "tell me how many lines it has"]);
        assert_eq!(c("Create the folder out and then write 'x' to out/a.txt"), ["Create the folder out", "write 'x' to out/a.txt"]);
        assert_eq!(c("Remove the directory build and everything in it"), ["Remove the directory build and everything in it"]);
        assert_eq!(c("Put a shopping list with milk, eggs and bread into list.txt"), ["Put a shopping list with milk, eggs and bread into list.txt"]);
        assert_eq!(c("The task is already complete. Exit."), ["The task is already complete", "Exit"]);
        assert_eq!(c("Save the number 42 in answer.txt"), ["Save the number 42 in answer.txt"]);
        assert_eq!(c("Fetch https://example.com and tell me its title"), ["Fetch https://example.com", "tell me its title"]);
        assert_eq!(c("Exit with code 3."), ["Exit with code 3"]);
        assert_eq!(c(""), Vec::<String>::new());
    }

    #[test]
    fn progress_follows_the_successful_calls_in_order() {
        let plan: Vec<String> = ["FS_READ", "SYS_WRITE_STDOUT"].map(String::from).to_vec();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(progress(&plan, &s(&[])), Progress::Next(0));
        assert_eq!(progress(&plan, &s(&["FS_LIST"])), Progress::Next(0));
        assert_eq!(progress(&plan, &s(&["FS_READ"])), Progress::Next(1));
        // Printing before reading does not count for the second clause.
        assert_eq!(progress(&plan, &s(&["SYS_WRITE_STDOUT", "FS_READ"])), Progress::Next(1));
        assert_eq!(progress(&plan, &s(&["FS_READ", "FS_READ", "SYS_WRITE_STDOUT"])), Progress::Done);
    }

    #[test]
    fn successes_are_read_from_results_and_compaction_summaries() {
        let msgs = [
            "[RESULT FS_WRITE#1] {\"path\":\"a\"}",
            "[ERROR FS_READ#2] not_found: no such file",
            "[... 4 earlier entries compacted ...]\n- [RESULT FS_MKDIR#3] {\"path\":\"out\"}\n- [ERROR X#4] bad",
            "[EVENT] timer 1 fired",
        ];
        assert_eq!(succeeded_calls(msgs.into_iter()), ["FS_WRITE", "FS_MKDIR"]);
    }
}
