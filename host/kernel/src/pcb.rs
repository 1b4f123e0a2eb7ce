//! The process control block ([`Process`]) and every change to a live
//! process's state.
//!
//! A process's mutable state ([`ProcState`]) is private to this module: its
//! history, status, queues, counters, compaction point and end are changed
//! only by the methods here, and each change that a journal must see goes
//! out on the [`EventBus`] as its [`KernelEvent`] (an appended entry, a
//! status, a delivery or consumption, a compaction, a shrunk window).
//! Creating, ending and restoring a process are in [`crate::lifecycle`],
//! which uses the constructors and end-of-life methods here.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use aos_abi::CapabilitySet;
use aos_providers::{Message, Provider, Usage};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::budget::Account;
use crate::context::{self, Compaction};
use crate::bus::EventBus;
use crate::events::KernelEvent;
use crate::ipc::{self, IpcEnds, IpcEvent};
use crate::process::{
    now_ms, Budgets, Counters, Entry, ExitStatus, LogEntry, Pid, ProcessInfo, ProcessStatus,
};

/// An item for a process's input queues.
pub(crate) enum Delivery {
    Msg { from: Pid, content: String },
    Stdin(String),
    /// `durable: false` = not journalled (webhook requests).
    Event { text: String, durable: bool },
}

/// Mutable part of a process, behind one lock; only this module touches it.
#[derive(Debug)]
struct ProcState {
    status: ProcessStatus,
    children: Vec<Pid>,
    counters: Counters,
    log: Vec<LogEntry>,
    compaction: Compaction,
    /// The compaction window (estimated tokens) after the model rejected a
    /// prompt as too long; `None`: the configured one. Kept for later steps.
    context_window: Option<usize>,
    next_call_id: u64,
    exit: Option<ExitStatus>,
    /// When it ended (Unix ms), for the retention of ended processes.
    ended_at_ms: Option<u64>,
    /// Order of ending in this run (ties of `ended_at_ms`).
    end_seq: u64,
    /// Set by a restore of a process that was sleeping: sleep until then (Unix ms) first.
    sleep_until_ms: Option<u64>,
    /// While [`ProcessStatus::Paused`]: the status to go back to.
    paused_from: Option<ProcessStatus>,
    /// The approval its current call waits for (journalled as
    /// [`KernelEvent::ApprovalAsked`]); after a restore, the one to ask
    /// again before the rest of its last reply runs.
    awaiting_approval: Option<crate::approval::PendingApproval>,
}

/// The process control block.
pub struct Process {
    pub pid: Pid,
    pub parent: Option<Pid>,
    pub role: String,
    pub task: String,
    /// How its syscalls reach its model (see [`aos_abi::ToolMode`]).
    pub tool_mode: aos_abi::ToolMode,
    pub provider_name: String,
    pub base_url: Option<String>,
    pub model: String,
    pub caps: CapabilitySet,
    pub budgets: Budgets,
    /// What it and its descendants used, against its budgets and its ancestors'.
    pub(crate) account: Arc<Account>,
    pub workspace: PathBuf,
    /// Where `SYS_WRITE_STDOUT` text is also delivered (as stdin).
    pub pipe_to: Option<Pid>,
    started: Instant,
    pub(crate) provider: Arc<dyn Provider>,
    state: Mutex<ProcState>,
    ipc: IpcEnds,
    pub(crate) cancel: CancellationToken,
    /// Set by `kill` before cancelling: a killed process ends as `Killed`
    /// whatever its loop was doing at that moment.
    killed: AtomicBool,
    exit_tx: watch::Sender<Option<ExitStatus>>,
    /// The lsn of its last journalled event: durable before its next side effect.
    lsn: AtomicU64,
    /// Its approval policies and its tree's "approved always" rules.
    pub approvals: crate::approval::Chain,
    /// How far its current model call is, as its provider last reported
    /// (`None` between calls): live state for `ps`/`top`, never journalled.
    pub(crate) model_progress: Arc<Mutex<Option<aos_abi::ModelProgress>>>,
}

/// Identity, rights and plumbing of a new process.
pub(crate) struct NewProcess {
    pub pid: Pid,
    pub parent: Option<Pid>,
    pub role: String,
    pub task: String,
    pub tool_mode: aos_abi::ToolMode,
    pub provider_name: String,
    pub base_url: Option<String>,
    pub model: String,
    pub caps: CapabilitySet,
    pub budgets: Budgets,
    pub account: Arc<Account>,
    pub workspace: PathBuf,
    pub pipe_to: Option<Pid>,
    pub provider: Arc<dyn Provider>,
    pub ipc: IpcEnds,
    pub approvals: crate::approval::Chain,
}

/// The state a journal says a process had (see `lifecycle::restore`).
pub(crate) struct Restored {
    pub status: ProcessStatus,
    pub children: Vec<Pid>,
    pub counters: Counters,
    pub log: Vec<LogEntry>,
    pub context_start: usize,
    pub compacted: usize,
    pub context_window: Option<usize>,
    pub next_call_id: u64,
    /// Set for a process that had ended: (status, ended at, order of ending).
    pub exit: Option<(ExitStatus, u64, u64)>,
    /// The approval its last reply's next call waited for.
    pub awaiting_approval: Option<crate::approval::PendingApproval>,
}

impl Process {
    pub(crate) fn new(n: NewProcess) -> Process {
        let now = now_ms();
        Process {
            pid: n.pid,
            parent: n.parent,
            role: n.role,
            task: n.task,
            tool_mode: n.tool_mode,
            provider_name: n.provider_name,
            base_url: n.base_url,
            model: n.model,
            caps: n.caps,
            budgets: n.budgets,
            account: n.account,
            workspace: n.workspace,
            pipe_to: n.pipe_to,
            started: Instant::now(),
            provider: n.provider,
            state: Mutex::new(ProcState {
                status: ProcessStatus::Ready,
                children: Vec::new(),
                counters: Counters { started_at_ms: now, last_activity_ms: now, ..Default::default() },
                log: Vec::new(),
                compaction: Compaction::default(),
                context_window: None,
                next_call_id: 1,
                exit: None,
                ended_at_ms: None,
                end_seq: 0,
                sleep_until_ms: None,
                paused_from: None,
                awaiting_approval: None,
            }),
            ipc: n.ipc,
            cancel: CancellationToken::new(),
            killed: AtomicBool::new(false),
            exit_tx: watch::channel(None).0,
            lsn: AtomicU64::new(0),
            approvals: n.approvals,
            model_progress: Arc::new(Mutex::new(None)),
        }
    }

    /// A process rebuilt from its journal: its wall-time budget counts from
    /// its original start; a sleeping one sleeps until its original wake-up;
    /// an ended one only answers `ps`, `logs` and `wait`.
    pub(crate) fn restored(n: NewProcess, r: Restored) -> Process {
        let mut p = Process::new(n);
        let age = std::time::Duration::from_millis(now_ms().saturating_sub(r.counters.started_at_ms));
        p.started = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        let st = p.state.get_mut();
        st.children = r.children;
        st.counters = r.counters;
        st.log = r.log;
        st.compaction = Compaction {
            context_start: r.context_start.min(st.log.len()),
            compacted: r.compacted,
            summary: Vec::new(),
        };
        st.context_window = r.context_window;
        st.next_call_id = r.next_call_id.max(1);
        // Every model call left exactly one reply in the log.
        let replies = st.log.iter().filter(|e| matches!(e.entry, Entry::Reply { .. })).count() as u64;
        st.counters.steps = st.counters.steps.max(replies);
        if let ProcessStatus::Sleeping { until_ms } = r.status {
            st.sleep_until_ms = Some(until_ms);
        }
        st.awaiting_approval = r.awaiting_approval;
        if let Some((exit, at, seq)) = r.exit {
            st.status = exit.as_status();
            st.exit = Some(exit.clone());
            st.ended_at_ms = Some(at);
            st.end_seq = seq;
            p.exit_tx.send_replace(Some(exit));
        }
        p
    }

    // ---- Reading ----

    /// What is left of the budgets now: of its own, after what it and its
    /// descendants used, and no more than any ancestor has left.
    pub fn remaining(&self) -> Budgets {
        let (max_steps, max_tokens) = self.account.left();
        Budgets {
            max_steps,
            max_tokens,
            max_wall_time: self.budgets.max_wall_time.map(|m| m.saturating_sub(self.started.elapsed())),
        }
    }

    pub fn status(&self) -> ProcessStatus {
        self.state.lock().status.clone()
    }

    pub fn info(&self) -> ProcessInfo {
        let st = self.state.lock();
        ProcessInfo {
            pid: self.pid,
            parent: self.parent,
            children: st.children.clone(),
            status: st.status.clone(),
            role: self.role.clone(),
            task: self.task.clone(),
            provider: self.provider_name.clone(),
            model: self.model.clone(),
            capabilities: self.caps.names(),
            budgets: self.budgets.clone(),
            remaining: self.remaining(),
            counters: st.counters.clone(),
            workspace: self.workspace.clone(),
            pipe_to: self.pipe_to,
            base_url: self.base_url.clone(),
            tool_mode: self.tool_mode,
            approvals: self.approvals.policies.clone(),
            model_progress: match st.status {
                ProcessStatus::WaitingModel => self.model_progress.lock().clone(),
                _ => None,
            },
        }
    }

    /// How it ended, or `None` while it runs.
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        self.state.lock().exit.clone()
    }

    pub(crate) fn is_running(&self) -> bool {
        self.state.lock().exit.is_none()
    }

    /// (ended at in Unix ms, order of ending) of an ended process.
    pub(crate) fn ended(&self) -> Option<(Option<u64>, u64)> {
        let st = self.state.lock();
        st.exit.as_ref().map(|_| (st.ended_at_ms, st.end_seq))
    }

    pub(crate) fn children(&self) -> Vec<Pid> {
        self.state.lock().children.clone()
    }

    /// The full history (never compacted).
    pub(crate) fn log(&self) -> Vec<LogEntry> {
        self.state.lock().log.clone()
    }

    /// (model calls made, tokens used).
    pub(crate) fn usage(&self) -> (u64, u64) {
        let st = self.state.lock();
        (st.counters.steps, st.counters.total_tokens())
    }

    /// Its compaction window: `base`, or the smaller one it shrank to.
    pub(crate) fn window(&self, base: usize) -> usize {
        self.state.lock().context_window.map_or(base, |w| w.min(base))
    }

    /// A wall-time deadline, if the budget has one.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.budgets.max_wall_time.map(|d| self.started + d)
    }

    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// A receiver that sees the exit status once the process has ended.
    pub(crate) fn exit_watch(&self) -> watch::Receiver<Option<ExitStatus>> {
        self.exit_tx.subscribe()
    }

    /// The lsn of its last journalled event (0: none).
    pub(crate) fn lsn(&self) -> crate::durability::Lsn {
        self.lsn.load(Ordering::Acquire)
    }

    // ---- Changing (each change announced on the bus) ----

    /// Emits `ev`, an event about this process, keeping its lsn.
    pub(crate) fn announce(&self, bus: &EventBus, ev: KernelEvent) {
        self.lsn.fetch_max(bus.emit(ev), Ordering::AcqRel);
    }

    /// Emits the event `f` builds, if anyone listens, keeping its lsn.
    pub(crate) fn announce_with(&self, bus: &EventBus, f: impl FnOnce() -> KernelEvent) {
        self.lsn.fetch_max(bus.emit_with(f), Ordering::AcqRel);
    }

    /// THE function through which a process's history changes: appends the
    /// entry to its log and emits [`KernelEvent::Entry`].
    /// Token, step and syscall counters change with replies and call
    /// results, so those entries are followed by [`KernelEvent::Counters`].
    pub(crate) fn record(&self, bus: &EventBus, entry: Entry) {
        let now = now_ms();
        let counted = matches!(entry, Entry::Reply { .. } | Entry::Result { .. } | Entry::Error { .. });
        let (le, counters) = {
            let mut st = self.state.lock();
            let le = LogEntry { pid: self.pid, seq: st.log.len() as u64, at_ms: now, entry };
            st.log.push(le.clone());
            st.counters.last_activity_ms = now;
            (le, counted.then(|| st.counters.clone()))
        };
        if bus.wants() {
            self.announce(bus, KernelEvent::Entry { entry: le });
            if let Some(counters) = counters {
                self.announce(bus, KernelEvent::Counters { pid: self.pid, counters });
            }
        }
    }

    /// Announces its counters (before its end).
    pub(crate) fn emit_counters(&self, bus: &EventBus) {
        self.announce_with(bus, || KernelEvent::Counters { pid: self.pid, counters: self.state.lock().counters.clone() });
    }

    /// Shows it as `status` (a [`ProcessStatus::Paused`]) while it waits for
    /// the journal; false when it has ended or is paused already.
    pub(crate) fn pause(&self, status: ProcessStatus) -> bool {
        let mut st = self.state.lock();
        if st.status.is_terminal() || st.paused_from.is_some() {
            return false;
        }
        let before = std::mem::replace(&mut st.status, status);
        st.paused_from = Some(before);
        true
    }

    /// Back to the status it had before [`Process::pause`]; that status,
    /// or `None` when it was not paused (or has changed since).
    pub(crate) fn unpause(&self) -> Option<ProcessStatus> {
        let mut st = self.state.lock();
        let before = st.paused_from.take()?;
        if !matches!(st.status, ProcessStatus::Paused { .. }) {
            return None;
        }
        st.status = before.clone();
        Some(before)
    }

    /// Its state as a restore would need it (see `Kernel::checkpoint`):
    /// queued input and webhook routes are left empty.
    pub(crate) fn checkpoint(&self) -> crate::events::RestoreRequest {
        let mut info = self.info();
        let st = self.state.lock();
        if let Some(before) = &st.paused_from {
            info.status = before.clone();
        }
        crate::events::RestoreRequest {
            info,
            log: st.log.clone(),
            context_start: st.compaction.context_start,
            compacted: st.compaction.compacted,
            context_window: st.context_window,
            next_call_id: st
                .log
                .iter()
                .filter_map(|e| match &e.entry {
                    Entry::Result { id, .. } | Entry::Error { id, .. } => Some(id + 1),
                    _ => None,
                })
                .max()
                .unwrap_or(1),
            exit: st.exit.clone(),
            pending: Default::default(),
            webhooks: Vec::new(),
            awaiting_approval: st.awaiting_approval.clone().filter(|_| st.exit.is_none()),
            // Kept by the tree's chain, not per process: the journal knows who added which.
            approval_rules: Vec::new(),
        }
    }

    pub(crate) fn set_status(&self, bus: &EventBus, status: ProcessStatus) {
        {
            let mut st = self.state.lock();
            if st.status == status || st.status.is_terminal() {
                return;
            }
            st.status = status.clone();
        }
        self.announce_with(bus, || KernelEvent::Status { pid: self.pid, status });
    }

    /// Puts an item in this process's queue, announcing it first
    /// ([`KernelEvent::Delivered`]) so a journal can restore it. False when
    /// the process has ended.
    pub(crate) fn deliver(&self, bus: &EventBus, item: Delivery) -> bool {
        let _order = self.ipc.order.lock();
        let (queue, from, content, durable) = match &item {
            Delivery::Msg { from, content } => (ipc::Queue::Mailbox, Some(*from), content, true),
            Delivery::Stdin(t) => (ipc::Queue::Stdin, None, t, true),
            Delivery::Event { text, durable } => (ipc::Queue::Events, None, text, *durable),
        };
        if durable && self.is_running() {
            self.announce_with(bus, || KernelEvent::Delivered {
                pid: self.pid,
                queue,
                from,
                content: content.clone(),
                at_ms: now_ms(),
            });
        }
        match item {
            Delivery::Msg { from, content } => self.ipc.send_msg(from, content),
            Delivery::Stdin(t) => self.ipc.send_stdin(t),
            Delivery::Event { text, durable } => self.ipc.send_event(text, durable),
        }
    }

    /// Puts back, unannounced, input a journal says was queued (restore).
    pub(crate) fn requeue(&self, pending: &ipc::PendingInput) {
        for m in &pending.mailbox {
            self.ipc.requeue_msg(m.clone());
        }
        for l in &pending.stdin {
            self.ipc.send_stdin(l.clone());
        }
        for e in &pending.events {
            self.ipc.send_event(e.clone(), true);
        }
    }

    /// This process took the oldest item of `queue` (not announced for non-durable events).
    pub(crate) fn consumed(&self, bus: &EventBus, queue: ipc::Queue) {
        self.announce_with(bus, || KernelEvent::Consumed { pid: self.pid, queue });
    }

    /// Records a received event in the history (and its consumption).
    pub(crate) fn take_event(&self, bus: &EventBus, ev: IpcEvent) {
        if ev.durable {
            self.consumed(bus, ipc::Queue::Events);
        }
        self.record(bus, Entry::Event { text: ev.text });
    }

    /// The id of its next call.
    pub(crate) fn next_call_id(&self) -> u64 {
        let mut st = self.state.lock();
        let id = st.next_call_id;
        st.next_call_id += 1;
        id
    }

    /// Makes later calls get ids above `id` (entries recorded by a restore).
    pub(crate) fn reserve_call_id(&self, id: u64) {
        let mut st = self.state.lock();
        st.next_call_id = st.next_call_id.max(id + 1);
    }

    /// Counts a call of `name` (a failed one also as an error).
    pub(crate) fn count_call(&self, name: &str, failed: bool) {
        let mut st = self.state.lock();
        *st.counters.syscalls.entry(name.to_string()).or_default() += 1;
        if failed {
            st.counters.errors += 1;
        }
    }

    /// Counts an error that names no syscall.
    pub(crate) fn count_error(&self) {
        self.state.lock().counters.errors += 1;
    }

    /// Counts a model call and its tokens.
    pub(crate) fn count_step(&self, usage: &Usage) {
        let mut st = self.state.lock();
        st.counters.steps += 1;
        st.counters.prompt_tokens += usage.prompt_tokens;
        st.counters.completion_tokens += usage.completion_tokens;
        st.counters.cached_prompt_tokens += usage.cached_prompt_tokens;
        st.counters.cache_write_tokens += usage.cache_write_tokens;
        st.counters.tokens_estimated |= usage.estimated;
        st.counters.last_activity_ms = now_ms();
    }

    /// The messages of its next model call, compacting its oldest history
    /// into a `window` (announced as [`KernelEvent::Compacted`]); and
    /// whether any entry was newly compacted.
    pub(crate) fn messages(&self, bus: &EventBus, system: &str, window: usize, native: bool) -> (Vec<Message>, bool) {
        let (messages, newly, start) = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            let (m, n) = context::build_messages(&self.task, &st.log, &mut st.compaction, system, window, native);
            (m, n, st.compaction.context_start)
        };
        if newly > 0 {
            self.announce(bus, KernelEvent::Compacted { pid: self.pid, entries: newly, context_start: start });
        }
        (messages, newly > 0)
    }

    /// Lowers its compaction window to `window` after the model rejected a
    /// prompt of `prompt_tokens` (its limit: `limit`).
    pub(crate) fn shrink_window(&self, bus: &EventBus, prompt_tokens: u64, limit: u64, window: usize) {
        self.state.lock().context_window = Some(window);
        self.announce(bus, KernelEvent::ContextShrunk { pid: self.pid, prompt_tokens, limit, window });
    }

    /// The approval its current call waits for (see [`crate::approval`]).
    pub(crate) fn awaiting_approval(&self) -> Option<crate::approval::PendingApproval> {
        self.state.lock().awaiting_approval.clone()
    }

    /// Records that its current call waits for `a` (announced for the
    /// journal), or, with `None`, that the wait is over.
    pub(crate) fn await_approval(&self, bus: &EventBus, a: Option<crate::approval::PendingApproval>) {
        self.state.lock().awaiting_approval = a.clone();
        if let Some(approval) = a {
            self.announce_with(bus, || KernelEvent::ApprovalAsked { pid: self.pid, approval });
        }
    }

    /// The calls of its last reply that have not run yet (text calls,
    /// then native tool calls, as [`crate::scheduler`] runs them), when a
    /// restore left one of them waiting for approval.
    pub(crate) fn unfinished_reply(&self) -> Option<(String, Vec<aos_abi::ToolCall>, usize)> {
        let st = self.state.lock();
        st.awaiting_approval.as_ref()?;
        let (text, tool_calls, done) = crate::replay::last_reply(&st.log)?;
        Some((text.to_string(), tool_calls.to_vec(), done))
    }

    /// The wake-up time of a sleep a restore interrupted, once.
    pub(crate) fn take_sleep_until(&self) -> Option<u64> {
        self.state.lock().sleep_until_ms.take()
    }

    pub(crate) fn add_child(&self, pid: Pid) {
        let mut st = self.state.lock();
        if !st.children.contains(&pid) {
            st.children.push(pid);
        }
    }

    pub(crate) fn remove_child(&self, pid: Pid) {
        self.state.lock().children.retain(|c| *c != pid);
    }

    /// Marks the process killed and cancels its task.
    pub(crate) fn signal_kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.cancel.cancel();
    }

    /// Marks it ended (`seq`: its order of ending) at `at_ms`.
    pub(crate) fn end(&self, status: &ExitStatus, at_ms: u64, seq: u64) {
        let mut st = self.state.lock();
        st.exit = Some(status.clone());
        st.status = status.as_status();
        st.ended_at_ms = Some(at_ms);
        st.end_seq = seq;
    }

    /// Wakes everyone waiting for its end.
    pub(crate) fn announce_exit(&self, status: ExitStatus) {
        self.exit_tx.send_replace(Some(status));
    }
}
