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
    ("EXEC_CMD", "count the lines of data.txt with wc", r#"{"cmd": "wc -l data.txt"}"#),
    ("NET_FETCH", "get the page https://example.com", r#"{"url": "https://example.com"}"#),
    ("MEM_WRITE", "remember that the build server is ci-3", r#"{"key": "build server", "value": "the build server is ci-3"}"#),
    ("MEM_READ", "what do you know about the build server?", r#"{"query": "build server"}"#),
    ("MEM_DELETE", "forget the note called build server", r#"{"key": "build server"}"#),
    ("SYS_REGISTER_WEBHOOK", "let GitHub notify you of pushes", r#"{"path": "/github/push"}"#),
    ("SYS_WEBHOOK_REPLY", "(an [EVENT] webhook request #4 arrived) answer it with ok", r#"{"request_id": 4, "status": 200, "body": "ok"}"#),
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

/// Two short lines per syscall, each saying with everyday verbs (in two
/// different phrasings) what a request that starts with it asks for. The
/// first step's name is chosen by how well the task fits them
/// ([`crate::Decoding::Pmi`]). Written from the
/// syscalls' meaning, not from the eval tasks (`evals/heldout.jsonl` checks
/// that).
pub(crate) const HINTS: &[(&str, [&str; 2])] = &[
    ("FS_WRITE", ["write, save or put some text into a file", "create or change a file by writing text into it"]),
    ("FS_READ", ["read a file and look at what it contains", "open a file and read its text"]),
    ("FS_LIST", ["list the files in a directory", "see which files and folders there are"]),
    ("FS_DELETE", ["delete or remove a file or a directory", "get rid of a file or a folder"]),
    ("FS_MKDIR", ["make a new directory (a folder)", "create an empty folder"]),
    ("SLEEP", ["wait or pause for a number of seconds", "do nothing for a while, then carry on"]),
    ("SYS_SCHEDULE", ["schedule a reminder that wakes you up later", "set a timer or a reminder for a later time"]),
    ("SEND_MSG", ["send a message to another process", "tell another process something by sending it a message"]),
    ("RECV_MSG", ["wait for and receive a message from another process", "check the inbox for a message from another process"]),
    ("SYS_WRITE_STDOUT", ["print or say something to the user", "show some text or an answer to the user"]),
    ("SYS_READ_STDIN", ["read a line of input that the user types", "get the text that the user types in"]),
    ("SPAWN_AGENT", ["start a new child agent to do a sub-task", "hand part of the work to a helper agent"]),
    ("SYS_EXIT", ["stop and exit the process because the work is finished", "quit, because nothing is left to do"]),
    ("EXEC_CMD", ["run a shell command or a program", "execute a command line in a bash shell"]),
    ("NET_FETCH", ["fetch a web page or a URL from the internet", "download something from a web address"]),
    ("MEM_WRITE", ["remember a fact by storing it in long-term memory", "save a note in long-term memory to recall later"]),
    ("MEM_READ", ["recall something that was stored earlier in long-term memory", "search long-term memory for something saved before"]),
    ("MEM_DELETE", ["forget something that is stored in long-term memory", "erase a saved note from long-term memory"]),
    ("SYS_REGISTER_WEBHOOK", ["receive HTTP requests at a new webhook URL", "get notified by web requests sent to a URL"]),
    ("SYS_WEBHOOK_REPLY", ["answer an HTTP request that came to your webhook", "send the HTTP response to a webhook request"]),
];

/// Phrasing `k` (0 or 1) of `spec`'s hint: from [`HINTS`], else (syscalls of
/// other drivers) the first sentence of its description for both.
pub fn hint_for(spec: &SyscallSpec, k: usize) -> String {
    if let Some((_, h)) = HINTS.iter().find(|(n, _)| *n == spec.name) {
        return h[k.min(1)].to_string();
    }
    let d = spec.description.trim();
    let first = d.split(". ").next().unwrap_or(d).trim_end_matches('.');
    let mut h = first.to_string();
    if let Some(c) = h.get(..1) {
        h = c.to_lowercase() + &h[1..];
    }
    h
}
