//! Worked examples appended to the system prompt: one line per allowed
//! syscall showing a request and the call that starts it. A 135M model picks
//! the right syscall far more often with them (see `evals/README.md`).

use aos_abi::SyscallSpec;

pub(crate) const EXAMPLES: &[(&str, &str, &str)] = &[
    ("FS_WRITE", "save the word hello in notes.txt", r#"{"path": "notes.txt", "content": "hello"}"#),
    ("FS_READ", "show what config.json contains", r#"{"path": "config.json"}"#),
    ("FS_LIST", "which files are in the workspace?", r#"{}"#),
    ("FS_DELETE", "remove old.log", r#"{"path": "old.log"}"#),
    ("FS_MKDIR", "create a folder named src", r#"{"path": "src"}"#),
    ("SLEEP", "wait 5 seconds before continuing", r#"{"seconds": 5}"#),
    ("SYS_SCHEDULE", "remind yourself in an hour to check the build", r#"{"seconds": 3600, "prompt": "check the build"}"#),
    ("SEND_MSG", "tell process 3 that the job is done", r#"{"to_pid": 3, "content": "the job is done"}"#),
    ("RECV_MSG", "wait for a message from another process", r#"{}"#),
    ("SYS_WRITE_STDOUT", "print hello world", r#"{"text": "hello world"}"#),
    ("SYS_READ_STDIN", "ask the user for a line of input", r#"{}"#),
    ("SPAWN_AGENT", "start a helper agent that summarises a.txt", r#"{"task": "summarise a.txt", "permissions": ["fs:ro"]}"#),
    ("SYS_EXIT", "(a result shows the task is done, e.g. after [RESULT FS_WRITE#1])", r#"{"code": 0}"#),
];

/// The examples block for `specs` (only syscalls among them are shown).
pub fn examples_for(specs: &[SyscallSpec]) -> String {
    let mut s = String::from(
        "Answer with exactly one system call: the first step of the task. Pick the call whose description matches what the task asks. Examples:\n",
    );
    for (name, task, args) in EXAMPLES {
        if specs.iter().any(|sp| sp.name == *name) {
            s.push_str(&format!("- Task: {task} -> [SYS_CALL::{name}] {args}\n"));
        }
    }
    s
}

/// One short line per syscall, saying with everyday verbs what a request that
/// starts with it asks for. Used by [`crate::Decoding::Channel`] to score how
/// well the task text fits each syscall. Written from the syscalls'
/// meaning, not from the eval tasks (`evals/heldout.jsonl` checks that).
pub(crate) const HINTS: &[(&str, &str)] = &[
    ("FS_WRITE", "write, save or put some text into a file"),
    ("FS_READ", "read a file and look at what it contains"),
    ("FS_LIST", "list the files in a directory"),
    ("FS_DELETE", "delete or remove a file or a directory"),
    ("FS_MKDIR", "make a new directory (a folder)"),
    ("SLEEP", "wait or pause for a number of seconds"),
    ("SYS_SCHEDULE", "schedule a reminder that wakes you up later"),
    ("SEND_MSG", "send a message to another process"),
    ("RECV_MSG", "wait for and receive a message from another process"),
    ("SYS_WRITE_STDOUT", "print or say something to the user"),
    ("SYS_READ_STDIN", "read a line of input that the user types"),
    ("SPAWN_AGENT", "start a new child agent to do a sub-task"),
    ("SYS_EXIT", "stop and exit the process because the work is finished"),
];

/// The hint line of `spec`: from [`HINTS`], else the first sentence of its
/// description (syscalls of other drivers).
pub fn hint_for(spec: &SyscallSpec) -> String {
    if let Some((_, h)) = HINTS.iter().find(|(n, _)| *n == spec.name) {
        return (*h).to_string();
    }
    let d = spec.description.trim();
    let first = d.split(". ").next().unwrap_or(d).trim_end_matches('.');
    let mut h = first.to_string();
    if let Some(c) = h.get(..1) {
        h = c.to_lowercase() + &h[1..];
    }
    h
}
