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

/// Estimated tokens of a message, its tool calls' arguments included.
fn msg_estimate(m: &Message) -> usize {
    estimate(&m.content) + m.tool_calls.iter().map(|c| estimate(&c.arguments) + 4).sum::<usize>()
}

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

/// The system prompt of a process in native tool mode: the syscalls are
/// the API's tools (their names, descriptions and schemas travel in the
/// request's tool list, derived from the same resolution), so the prompt
/// explains the loop and says that the `[SYS_CALL::NAME] {json}` text form
/// works too, without listing them again.
pub fn render_native_system_prompt(p: &PromptFacts) -> String {
    let mut s = prompt_intro(p);
    s.push_str(
        "You act on the world only through system calls: the tools offered to you (exactly these; others will be refused). \
         You may make several calls in one reply; they run in order and each gets its own result: \
         `[RESULT NAME#id] {...}` for a success, `[ERROR NAME#id] kind: message` for a failure (fix the call and try again). \
         `[EVENT] ...` messages are things that happened to you, `[KERNEL] ...` notices. \
         A reply without a call is a thought: it is kept and you get another turn, but every turn counts against your budget. \
         When the task is done, call SYS_EXIT.\n",
    );
    facts_tail(&mut s, p);
    s
}

/// The system prompt for `f`, listing `specs` (also used by the local
/// model's evaluation, so it scores exactly what the kernel sends).
pub fn render_system_prompt(p: &PromptFacts, specs: &[SyscallSpec]) -> String {
    let mut s = prompt_intro(p);
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
    facts_tail(&mut s, p);
    s
}

/// Who the process is: the start of both prompts.
fn prompt_intro(p: &PromptFacts) -> String {
    let mut s = String::from(
        "You are an agent process running inside AgentOS, an operating system whose processes are language-model agents. ",
    );
    match p.parent {
        Some(parent) => s.push_str(&format!("You are process {} (started by process {parent}).\n\n", p.pid)),
        None => s.push_str(&format!("You are process {}.\n\n", p.pid)),
    }
    s
}

/// Capabilities, workspace, budget and role: the end of both prompts.
fn facts_tail(s: &mut String, p: &PromptFacts) {
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
}

/// The user message carrying the task.
pub fn task_message(task: &str) -> String {
    format!("{TASK_PREFIX} {task}")
}

/// Renders one history entry as a message for the text protocol (None
/// for log-only entries).
pub fn render(entry: &Entry) -> Option<Message> {
    render_with(entry, false)
}

/// Renders one history entry as a message. In native tool mode a reply
/// keeps its tool calls and the result of a native call is a tool message
/// under its id; otherwise (text mode, e.g. after a fallback) a native call
/// is written out as `[SYS_CALL::NAME] args` and its result is a user
/// message, as for text calls.
pub fn render_with(entry: &Entry, native: bool) -> Option<Message> {
    let tool = |call_id: &Option<String>| if native { call_id.clone() } else { None };
    let (role, content, tool_call_id) = match entry {
        Entry::Reply { text, tool_calls, .. } if native && !tool_calls.is_empty() => {
            return Some(Message { role: Role::Assistant, content: text.clone(), tool_calls: tool_calls.clone(), tool_call_id: None });
        }
        Entry::Reply { text, tool_calls, .. } => {
            let mut t = text.clone();
            for c in tool_calls {
                t.push_str(&format!("\n{}{}] {}", aos_abi::syscall::TAG_OPEN, c.name, c.arguments));
            }
            (Role::Assistant, t, None)
        }
        Entry::Result { id, name, output, call_id, .. } => {
            (Role::User, format!("{RESULT_PREFIX}{name}#{id}] {output}"), tool(call_id))
        }
        Entry::Error { id, name, error, call_id, .. } => (
            Role::User,
            format!("{ERROR_PREFIX}{}#{id}] {error}", name.as_deref().unwrap_or("SYS_CALL")),
            tool(call_id),
        ),
        Entry::Event { text } => (Role::User, format!("[EVENT] {text}"), None),
        Entry::Notice { text } => (Role::User, format!("[KERNEL] {text}"), None),
        Entry::Stdout { .. } => return None,
    };
    let role = if tool_call_id.is_some() { Role::Tool } else { role };
    Some(Message { role, content, tool_calls: Vec::new(), tool_call_id })
}

/// Orders messages as tool-calling APIs require: the results of an
/// assistant message's tool calls right after it (other messages that
/// arrived in between follow them), one result per call — a call with no
/// recorded result gets a "not run" one, and a result whose call is no
/// longer in the context (compacted away) becomes a plain user message.
pub fn pair_tool_results(msgs: Vec<Message>) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(msgs.len());
    // Ids (and names) of the open assistant message's calls still without a result.
    let mut open: Vec<(String, String)> = Vec::new();
    let mut deferred: Vec<Message> = Vec::new();
    fn close(out: &mut Vec<Message>, open: &mut Vec<(String, String)>, deferred: &mut Vec<Message>) {
        for (id, name) in open.drain(..) {
            out.push(Message {
                role: Role::Tool,
                content: format!("{ERROR_PREFIX}{name}] not run: no result was recorded for this call; repeat it if still needed"),
                tool_calls: Vec::new(),
                tool_call_id: Some(id),
            });
        }
        out.append(deferred);
    }
    for m in msgs {
        if m.role == Role::Tool {
            let pos = m.tool_call_id.as_ref().and_then(|id| open.iter().position(|(o, _)| o == id));
            match pos {
                Some(i) => {
                    open.remove(i);
                    out.push(m);
                    if open.is_empty() {
                        out.append(&mut deferred);
                    }
                }
                None => {
                    let plain = Message { role: Role::User, tool_call_id: None, ..m };
                    if open.is_empty() { out.push(plain) } else { deferred.push(plain) }
                }
            }
            continue;
        }
        if !open.is_empty() {
            if m.role == Role::Assistant {
                close(&mut out, &mut open, &mut deferred);
            } else {
                deferred.push(m);
                continue;
            }
        }
        open = m.tool_calls.iter().map(|c| (c.id.clone(), c.name.clone())).collect();
        out.push(m);
    }
    close(&mut out, &mut open, &mut deferred);
    out
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
    native: bool,
) -> (Vec<Message>, usize) {
    let head = vec![Message::new(Role::System, system), Message::new(Role::User, task_message(task))];
    let head_tokens: usize = head.iter().map(msg_estimate).sum();
    // (log index, rendered message) of every in-context entry after the compaction point.
    let start = st.context_start.min(log.len());
    let mut rendered: Vec<(usize, Message)> = log[start..]
        .iter()
        .enumerate()
        .filter_map(|(i, e)| render_with(&e.entry, native).map(|m| (start + i, m)))
        .collect();
    let mut body_tokens: usize = rendered.iter().map(|(_, m)| msg_estimate(m)).sum();
    let marker_tokens = |st: &Compaction| if st.compacted > 0 { estimate(&marker(st)) } else { 0 };

    let mut newly = 0;
    let mut drop = 0;
    while head_tokens + body_tokens + marker_tokens(st) > window && rendered.len() - drop > 1 {
        let (idx, m) = &rendered[drop];
        body_tokens -= msg_estimate(m);
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
        msgs.push(Message::new(Role::User, marker(st)));
    }
    msgs.extend(rendered.into_iter().map(|(_, m)| m));
    let msgs = if native { pair_tool_results(msgs) } else { msgs };
    (msgs, newly)
}
