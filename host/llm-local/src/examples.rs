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
    ("SYS_EXIT", "(the task is finished)", r#"{"code": 0}"#),
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
