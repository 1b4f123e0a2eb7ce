//! Building the model's context for one step: the system prompt (what
//! AgentOS is, the exact call format, exactly the syscalls this process may
//! use with their argument schemas, its role), the task, and the history
//! rendered as messages — with compaction when it outgrows the context
//! window.
//!
//! Rendering: model replies are `assistant` messages; everything the kernel
//! feeds back is a `user` message with a prefix: `[RESULT NAME#id] {json}`,
//! `[ERROR NAME#id] kind: message`, `[EVENT] ...`, `[KERNEL] ...`. Every
//! in-context entry after the compaction point is rendered, so every result,
//! error and event reaches the model on the next step.
//!
//! Compaction: when the estimated size (characters / 4) exceeds the window,
//! the oldest history entries (never the system prompt or task) are replaced
//! by one marker `[... N earlier entries compacted ...]` followed by the first
//! line of each compacted entry (the most recent ones, bounded). The newest
//! entry is always kept, so a process never fails because history is long.
//! The window is the configured `context_window`, lowered to the provider's
//! real capacity ([`aos_providers::Provider::context_window`]) and, after the
//! model rejected a prompt as too long, to the process's shrunk window
//! (set by the scheduler). Compaction only moves `context_start` forward
//! ([`Compaction`], kept in the process control block) and is journalled as
//! `KernelEvent::Compacted`, so a restored process continues from the same
//! point. This module depends only on the process vocabulary.

use aos_abi::syscall::{ERROR_PREFIX, RESULT_PREFIX, TASK_PREFIX};
use aos_abi::{Capability, CapabilitySet, SyscallSpec};
use aos_providers::{Message, Role};

use crate::process::{Budgets, Entry, LogEntry, Pid};

/// Most summary lines kept in the compaction marker.
const MAX_SUMMARY_LINES: usize = 24;
const SUMMARY_LINE_CHARS: usize = 100;

/// Estimated tokens of a text (≈ 4 characters per token).
pub fn estimate(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// What the system prompt says about a process.
pub struct PromptFacts<'a> {
    pub pid: Pid,
    pub parent: Option<Pid>,
    pub caps: &'a CapabilitySet,
    pub budgets: &'a Budgets,
    pub role: &'a str,
}

/// The system prompt for `f`, listing `specs` (also used by the local
/// model's evaluation, so it scores exactly what the kernel sends).
pub fn render_system_prompt(p: &PromptFacts, specs: &[SyscallSpec]) -> String {
    let mut s = String::new();
    s.push_str("You are an agent process running inside AgentOS, an operating system whose processes are language-model agents. ");
    match p.parent {
        Some(parent) => s.push_str(&format!("You are process {} (started by process {parent}).\n\n", p.pid)),
        None => s.push_str(&format!("You are process {}.\n\n", p.pid)),
    }
    s.push_str(
        "You act on the world only through system calls. To make one, write the tag followed by a single JSON object with the arguments, for example:\n\
         [SYS_CALL::NAME] {\"arg\": \"value\"}\n\
         You may make several calls in one reply; they run in order and each gets its own result. \
         The kernel answers in the next message: `[RESULT NAME#id] {...}` for a success, `[ERROR NAME#id] kind: message` for a failure \
         (fix the call and try again), `[EVENT] ...` for things that happened to you, `[KERNEL] ...` for notices. \
         A reply without a call is a thought: it is kept and you get another turn, but every turn counts against your budget. \
         When the task is done, call SYS_EXIT.\n\n",
    );
    s.push_str("System calls available to you (exactly these; others will be refused):\n");
    for spec in specs {
        s.push_str(&format!("- {}: {}\n  arguments: {}\n", spec.name, spec.description, spec.args_schema));
    }
    s.push_str(&format!("\nYour capabilities: {}.\n", p.caps));
    if p.caps.contains(&Capability::FsRead) {
        s.push_str("Your workspace directory is /workspace; file paths are relative to it.\n");
    }
    let b = p.budgets;
    let mut limits = Vec::new();
    if let Some(n) = b.max_steps {
        limits.push(format!("{n} turns"));
    }
    if let Some(n) = b.max_tokens {
        limits.push(format!("{n} tokens"));
    }
    if let Some(d) = b.max_wall_time {
        limits.push(format!("{} s of wall time", d.as_secs()));
    }
    if !limits.is_empty() {
        s.push_str(&format!("Your budget: {}.\n", limits.join(", ")));
    }
    if !p.role.is_empty() {
        s.push_str(&format!("\nYour role: {}\n", p.role));
    }
    s
}

/// The user message carrying the task.
pub fn task_message(task: &str) -> String {
    format!("{TASK_PREFIX} {task}")
}

/// Renders one history entry as a message (None for log-only entries).
pub fn render(entry: &Entry) -> Option<Message> {
    let (role, content) = match entry {
        Entry::Reply { text, .. } => (Role::Assistant, text.clone()),
        Entry::Result { id, name, output, .. } => (Role::User, format!("{RESULT_PREFIX}{name}#{id}] {output}")),
        Entry::Error { id, name, error, .. } => {
            (Role::User, format!("{ERROR_PREFIX}{}#{id}] {error}", name.as_deref().unwrap_or("SYS_CALL")))
        }
        Entry::Event { text } => (Role::User, format!("[EVENT] {text}")),
        Entry::Notice { text } => (Role::User, format!("[KERNEL] {text}")),
        Entry::Stdout { .. } => return None,
    };
    Some(Message { role, content })
}

/// Where a process's context starts: what compaction has moved out of it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Compaction {
    /// Log entries before this index are compacted out of the context.
    pub context_start: usize,
    /// How many in-context entries were compacted, and their one-line summaries.
    pub compacted: usize,
    pub summary: Vec<String>,
}

fn marker(st: &Compaction) -> String {
    let mut s = format!("[... {} earlier entries compacted ...]", st.compacted);
    if !st.summary.is_empty() {
        let omitted = st.compacted - st.summary.len().min(st.compacted);
        s.push_str("\nFirst line of each compacted entry");
        if omitted > 0 {
            s.push_str(&format!(" (the {omitted} oldest are omitted)"));
        }
        s.push(':');
        for line in &st.summary {
            s.push_str("\n- ");
            s.push_str(line);
        }
    }
    s
}

fn summary_line(m: &Message) -> String {
    let who = if m.role == Role::Assistant { "you: " } else { "" };
    let first = m.content.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    let mut line: String = first.chars().take(SUMMARY_LINE_CHARS).collect();
    if first.chars().count() > SUMMARY_LINE_CHARS {
        line.push_str("...");
    }
    format!("{who}{line}")
}

/// Builds the messages of the next model call from `log`, compacting the
/// oldest history into `st` if the estimate exceeds `window` tokens.
/// Returns the messages and how many entries were newly compacted.
pub(crate) fn build_messages(
    task: &str,
    log: &[LogEntry],
    st: &mut Compaction,
    system: &str,
    window: usize,
) -> (Vec<Message>, usize) {
    let head = vec![
        Message { role: Role::System, content: system.to_string() },
        Message { role: Role::User, content: task_message(task) },
    ];
    let head_tokens: usize = head.iter().map(|m| estimate(&m.content)).sum();
    // (log index, rendered message) of every in-context entry after the compaction point.
    let start = st.context_start.min(log.len());
    let mut rendered: Vec<(usize, Message)> = log[start..]
        .iter()
        .enumerate()
        .filter_map(|(i, e)| render(&e.entry).map(|m| (start + i, m)))
        .collect();
    let mut body_tokens: usize = rendered.iter().map(|(_, m)| estimate(&m.content)).sum();
    let marker_tokens = |st: &Compaction| if st.compacted > 0 { estimate(&marker(st)) } else { 0 };

    let mut newly = 0;
    let mut drop = 0;
    while head_tokens + body_tokens + marker_tokens(st) > window && rendered.len() - drop > 1 {
        let (idx, m) = &rendered[drop];
        body_tokens -= estimate(&m.content);
        st.compacted += 1;
        st.summary.push(summary_line(m));
        // The summary is bounded: at most MAX_SUMMARY_LINES lines and about a
        // quarter of the window.
        while st.summary.len() > MAX_SUMMARY_LINES || st.summary.iter().map(|l| l.len() + 3).sum::<usize>() > window {
            st.summary.remove(0);
        }
        st.context_start = idx + 1;
        newly += 1;
        drop += 1;
    }
    rendered.drain(..drop);

    let mut msgs = head;
    if st.compacted > 0 {
        msgs.push(Message { role: Role::User, content: marker(st) });
    }
    msgs.extend(rendered.into_iter().map(|(_, m)| m));
    (msgs, newly)
}
