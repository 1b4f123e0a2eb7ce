//! Replay: the kernel's own fold of its [`KernelEvent`]s into the state a
//! restore needs ([`RestoreRequest`], one per process, gathered in a
//! [`Replay`]). A journal only stores and returns events; what they mean is
//! decided here, next to the events themselves, and nowhere else:
//!
//! * [`RestoreRequest::apply`] applies one event about a process
//!   (history entries, status, compaction, counters, queued input and its
//!   consumption, timers, webhook registrations, exit);
//! * [`Replay::apply`] routes an event to its process and handles the
//!   events that change the set of processes (spawn, reap);
//! * [`RestoreRequest::recovery_entries`] says what to append when an
//!   unfinished process resumes (its interrupted call, never re-run; or,
//!   when that call was waiting for the operator's approval and so never
//!   started, a notice: the loop asks again and runs the rest of the reply).
//!
//! Replaying is idempotent for history entries (an entry whose `seq` is
//! already present is skipped), so a snapshot followed by events that
//! overlap it gives the same state. The property "replaying a recorded run
//! restores the same state" is tested in `tests/restore.rs`.
//!
//! This module depends only on [`crate::events`] and [`crate::parser`]
//! (the fuzz target `host/kernel/fuzz` compiles it on its own).

use std::collections::{BTreeMap, BTreeSet};

use crate::events::{
    Entry, ExitStatus, IpcMessage, KernelEvent, LogEntry, PendingTimer, Pid, Queue, RestoreRequest,
    WebhookRoute,
};
use crate::parser::{parse_reply, ParsedCall};

impl RestoreRequest {
    /// Applies one event about this process (events about other
    /// processes, `Spawned` and `Reaped` are for [`Replay::apply`]).
    pub fn apply(&mut self, ev: &KernelEvent) {
        match ev {
            KernelEvent::Entry { entry } => self.push(entry.clone()),
            KernelEvent::Status { status, .. } => {
                // A process that ended stays ended (a late status event cannot revive it).
                if self.exit.is_none() {
                    self.info.status = status.clone();
                }
            }
            KernelEvent::Compacted { entries, context_start, .. } => {
                self.context_start = *context_start;
                self.compacted += entries;
            }
            KernelEvent::ContextShrunk { window, .. } => self.context_window = Some(*window),
            KernelEvent::Counters { counters, .. } => self.info.counters = counters.clone(),
            KernelEvent::Exiting { code, result, .. } => {
                // It called SYS_EXIT: it has ended even if the crash came
                // before its `Exited` event.
                if self.exit.is_none() {
                    self.end(ExitStatus::Exited { code: *code, result: result.clone() });
                }
            }
            KernelEvent::Exited { status, .. } => self.end(status.clone()),
            KernelEvent::Delivered { queue, from, content, at_ms, .. } => {
                let q = &mut self.pending;
                match queue {
                    Queue::Mailbox => {
                        q.mailbox.push(IpcMessage { from: from.unwrap_or(0), content: content.clone(), sent_at_ms: *at_ms })
                    }
                    Queue::Stdin => q.stdin.push(content.clone()),
                    Queue::Events => q.events.push(content.clone()),
                }
            }
            KernelEvent::Consumed { queue, .. } => {
                let q = &mut self.pending;
                match queue {
                    Queue::Mailbox if !q.mailbox.is_empty() => drop(q.mailbox.remove(0)),
                    Queue::Stdin if !q.stdin.is_empty() => drop(q.stdin.remove(0)),
                    Queue::Events if !q.events.is_empty() => drop(q.events.remove(0)),
                    _ => {}
                }
            }
            KernelEvent::Scheduled { id, due_ms, prompt, .. } => {
                self.pending.timers.push(PendingTimer { id: *id, due_ms: *due_ms, prompt: prompt.clone() })
            }
            KernelEvent::Fired { id, .. } => self.pending.timers.retain(|t| t.id != *id),
            KernelEvent::WebhookRegistered { path, secret, .. } => {
                match self.webhooks.iter_mut().find(|w| w.path == *path) {
                    Some(w) => w.secret = secret.clone(),
                    None => self.webhooks.push(WebhookRoute { path: path.clone(), secret: secret.clone() }),
                }
            }
            KernelEvent::ApprovalAsked { approval, .. } => {
                if self.exit.is_none() {
                    self.awaiting_approval = Some(approval.clone());
                }
            }
            KernelEvent::ApprovalGranted { id, .. } => {
                if self.awaiting_approval.as_ref().is_some_and(|a| a.id == *id) {
                    self.awaiting_approval = None;
                }
            }
            KernelEvent::ApprovalRule { rule, .. } => {
                if !self.approval_rules.contains(rule) {
                    self.approval_rules.push(rule.clone());
                }
            }
            // Never journalled (a live view only).
            KernelEvent::Spawned { .. }
            | KernelEvent::Reaped { .. }
            | KernelEvent::ReplyDelta { .. }
            | KernelEvent::ModelProgress { .. } => {}
        }
    }

    fn end(&mut self, status: ExitStatus) {
        self.info.status = status.as_status();
        self.exit = Some(status);
        // Its webhook paths and its pending approval went with it.
        self.webhooks.clear();
        self.awaiting_approval = None;
    }

    fn push(&mut self, e: LogEntry) {
        // Idempotent: an entry already present is skipped.
        if e.seq < self.log.len() as u64 {
            return;
        }
        // A result or error after an approval was asked is that call's: it
        // was answered (denied, timed out) or ran.
        if matches!(e.entry, Entry::Result { .. } | Entry::Error { .. }) {
            self.awaiting_approval = None;
        }
        if let Entry::Result { id, .. } | Entry::Error { id, .. } = &e.entry {
            self.next_call_id = self.next_call_id.max(id + 1);
        }
        self.log.push(e);
    }

    /// Whether the log has no gap (no entry missing), i.e. can be trusted.
    pub fn is_complete(&self) -> bool {
        self.log.iter().enumerate().all(|(i, e)| e.seq == i as u64)
    }

    /// The calls of the last model reply that have no result yet: for an
    /// unfinished process, the first of them was running when the kernel
    /// stopped (it may have had effects) and the others had not started.
    pub fn pending_calls(&self) -> Vec<ParsedCall> {
        self.pending().into_iter().map(|(_, c)| c).collect()
    }

    /// The approval the first pending call of an unfinished process waits
    /// for: asked, neither granted nor answered, so that call has not run.
    pub fn waits_for_approval(&self) -> Option<&crate::approval::PendingApproval> {
        let a = self.awaiting_approval.as_ref().filter(|_| self.exit.is_none())?;
        self.pending().first().is_some_and(|(_, c)| c.name == a.syscall).then_some(a)
    }

    /// [`Self::pending_calls`] with the API's id of each native tool call
    /// (the text calls of the reply first, then its tool calls, the order
    /// the loop runs them in).
    fn pending(&self) -> Vec<(Option<String>, ParsedCall)> {
        let Some((text, tool_calls, done)) = last_reply(&self.log) else { return Vec::new() };
        let text_calls = parse_reply(text).into_iter().map(|c| match c {
            Ok(c) => (None, c),
            Err(e) => (
                None,
                ParsedCall { name: e.name.unwrap_or_else(|| "SYS_CALL".into()), args: serde_json::Value::Null, span: e.span },
            ),
        });
        let native = tool_calls.iter().map(|c| {
            let args = serde_json::from_str(&c.arguments).unwrap_or(serde_json::Value::Null);
            (Some(c.id.clone()), ParsedCall { name: c.name.clone(), args, span: 0..0 })
        });
        text_calls.chain(native).skip(done).collect()
    }

    /// The entries to append when this process is resumed: an error for the
    /// call that was interrupted (not retried), and for the calls of the
    /// same reply that never started a notice (text calls) or a "not run"
    /// error under each native call's id — so every tool call of the reply
    /// has its result, as the APIs require —, then a notice of the restart.
    ///
    /// A process whose first pending call was waiting for the operator
    /// ([`Self::waits_for_approval`]) gets only a notice: nothing of that
    /// reply ran, and its loop asks again and runs the rest.
    pub fn recovery_entries(&self) -> Vec<Entry> {
        let pending = self.pending();
        if let Some(a) = self.waits_for_approval() {
            return vec![Entry::Notice {
                text: format!(
                    "the kernel restarted; your process was resumed from its journal. Your {} call still waits for \
                     the operator's approval ({}); the rest of your last reply runs after it",
                    a.syscall, a.id
                ),
            }];
        }
        let mut out = Vec::new();
        let mut id = self.next_call_id;
        if let Some((call_id, first)) = pending.first() {
            out.push(Entry::Error {
                id,
                name: Some(first.name.clone()),
                args: (!first.args.is_null()).then(|| first.args.clone()),
                error: "interrupted: the kernel stopped while this call was running and has restarted; the call was \
                        not retried (not re-run) and may or may not have taken effect — check before repeating it"
                    .into(),
                call_id: call_id.clone(),
            });
            id += 1;
        }
        let mut not_started = Vec::new();
        for (call_id, c) in pending.iter().skip(1) {
            match call_id {
                Some(cid) => {
                    out.push(Entry::Error {
                        id,
                        name: Some(c.name.clone()),
                        args: (!c.args.is_null()).then(|| c.args.clone()),
                        error: "not run: the kernel restarted before this call started; repeat it if still needed".into(),
                        call_id: Some(cid.clone()),
                    });
                    id += 1;
                }
                None => not_started.push(c.name.as_str()),
            }
        }
        if !not_started.is_empty() {
            out.push(Entry::Notice {
                text: format!(
                    "{} later call(s) of your last reply were not run because the kernel restarted: {}; \
                     repeat them if still needed",
                    not_started.len(),
                    not_started.join(", ")
                ),
            });
        }
        out.push(Entry::Notice { text: "the kernel restarted; your process was resumed from its journal".into() });
        out
    }
}

/// The last reply of `log` that was not cut by `max_tokens` (none of a
/// truncated reply's calls run), with how many of its calls have a result
/// or an error entry since.
pub(crate) fn last_reply(log: &[LogEntry]) -> Option<(&str, &[aos_abi::ToolCall], usize)> {
    let r = log.iter().rposition(|e| matches!(e.entry, Entry::Reply { .. }))?;
    let Entry::Reply { text, truncated: false, tool_calls } = &log[r].entry else { return None };
    let done = log[r + 1..].iter().filter(|e| matches!(e.entry, Entry::Result { .. } | Entry::Error { .. })).count();
    Some((text, tool_calls, done))
}

/// What a journal describes: the last known state of every process it
/// mentions (reaped ones excluded) and the pids reaped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replay {
    pub procs: BTreeMap<Pid, RestoreRequest>,
    /// Pids reaped by the retention rules (`ps`, `logs`, `wait` say so).
    pub reaped: BTreeSet<Pid>,
}

impl Replay {
    pub fn new() -> Replay {
        Replay::default()
    }

    /// Applies one event.
    pub fn apply(&mut self, ev: &KernelEvent) {
        match ev {
            KernelEvent::Spawned { info } => {
                let pid = info.pid;
                let parent = info.parent;
                self.procs.insert(pid, RestoreRequest::new((**info).clone()));
                self.reaped.remove(&pid);
                if let Some(pp) = parent.and_then(|pp| self.procs.get_mut(&pp)) {
                    if !pp.info.children.contains(&pid) {
                        pp.info.children.push(pid);
                    }
                }
            }
            KernelEvent::Reaped { pid } => {
                if let Some(parent) = self.procs.remove(pid).and_then(|s| s.info.parent) {
                    if let Some(pp) = self.procs.get_mut(&parent) {
                        pp.info.children.retain(|c| c != pid);
                    }
                }
                self.reaped.insert(*pid);
            }
            ev => {
                if let Some(s) = self.procs.get_mut(&ev.pid()) {
                    s.apply(ev);
                }
            }
        }
    }

    /// Applies one event it owns: the same as [`Replay::apply`], without
    /// copying a history entry (what a journal's reader and writer fold).
    pub fn apply_owned(&mut self, ev: KernelEvent) {
        match ev {
            KernelEvent::Entry { entry } => {
                if let Some(s) = self.procs.get_mut(&entry.pid) {
                    s.push(entry);
                }
            }
            ev => self.apply(&ev),
        }
    }

    /// A process's whole state, as a snapshot stores it (replaces what was known).
    pub fn restored(&mut self, state: RestoreRequest) {
        self.reaped.remove(&state.info.pid);
        self.procs.insert(state.info.pid, state);
    }

    /// Processes that have not ended.
    pub fn live(&self) -> impl Iterator<Item = &RestoreRequest> {
        self.procs.values().filter(|s| s.exit.is_none())
    }

    /// The reaped pids as inclusive ranges (compact for snapshots).
    pub fn reaped_ranges(&self) -> Vec<(Pid, Pid)> {
        let mut out: Vec<(Pid, Pid)> = Vec::new();
        for &pid in &self.reaped {
            match out.last_mut() {
                Some((_, end)) if *end + 1 == pid => *end = pid,
                _ => out.push((pid, pid)),
            }
        }
        out
    }

    /// Adds reaped pids given as inclusive ranges.
    pub fn add_reaped_ranges(&mut self, ranges: &[(Pid, Pid)]) {
        for &(a, b) in ranges {
            for pid in a..=b.min(a.saturating_add(10_000_000)) {
                self.procs.remove(&pid);
                self.reaped.insert(pid);
            }
        }
    }
}
