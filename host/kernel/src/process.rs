//! The process control block ([`Process`]): identity, lineage, status,
//! rights, budgets, counters and history of one agent process; plus the
//! serializable types describing them ([`ProcessStatus`], [`ExitStatus`],
//! [`Budgets`], [`Counters`], [`Entry`], [`LogEntry`], [`ProcessInfo`]).
//!
//! A process's history *is* its log: every entry ever appended is kept (so
//! `logs` works after exit, until the process is reaped: [`crate::table`]);
//! compaction only moves the start of the part that is rendered into the
//! model's context (see [`crate::context`]).

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use aos_abi::CapabilitySet;
use aos_providers::Provider;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use crate::events::{now_ms, Budgets, Counters, Entry, ExitStatus, LogEntry, Pid, ProcessInfo, ProcessStatus};
use crate::ipc::IpcEnds;

/// Mutable part of a process, behind one lock.
#[derive(Debug)]
pub(crate) struct ProcState {
    pub status: ProcessStatus,
    pub children: Vec<Pid>,
    pub counters: Counters,
    pub log: Vec<LogEntry>,
    /// Log entries before this index are compacted out of the context.
    pub context_start: usize,
    /// How many in-context entries were compacted, and their one-line summaries.
    pub compacted: usize,
    pub compacted_summary: Vec<String>,
    /// The compaction window (estimated tokens) after the model rejected a
    /// prompt as too long; `None`: the configured one. Kept for later steps.
    pub context_window: Option<usize>,
    pub next_call_id: u64,
    pub exit: Option<ExitStatus>,
    /// When it ended (Unix ms), for the retention of ended processes.
    pub ended_at_ms: Option<u64>,
    /// Order of ending in this run (ties of `ended_at_ms`); 0 for a restored one.
    pub end_seq: u64,
    /// Set by a restore of a process that was sleeping: sleep until then (Unix ms) first.
    pub sleep_until_ms: Option<u64>,
    /// While [`ProcessStatus::Paused`]: the status to go back to.
    pub paused_from: Option<ProcessStatus>,
}

/// The process control block.
pub struct Process {
    pub pid: Pid,
    pub parent: Option<Pid>,
    pub role: String,
    pub task: String,
    pub provider_name: String,
    pub base_url: Option<String>,
    pub model: String,
    pub caps: CapabilitySet,
    pub budgets: Budgets,
    pub workspace: PathBuf,
    /// Where `SYS_WRITE_STDOUT` text is also delivered (as stdin).
    pub pipe_to: Option<Pid>,
    pub(crate) started: Instant,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) state: Mutex<ProcState>,
    pub(crate) ipc: IpcEnds,
    pub(crate) cancel: CancellationToken,
    /// Set by `kill` before cancelling: a killed process ends as `Killed`
    /// whatever its loop was doing at that moment.
    pub(crate) killed: std::sync::atomic::AtomicBool,
    pub(crate) exit_tx: watch::Sender<Option<ExitStatus>>,
    /// The lsn of its last journalled event: durable before its next side effect.
    pub(crate) lsn: AtomicU64,
}

pub(crate) struct NewProcess {
    pub pid: Pid,
    pub parent: Option<Pid>,
    pub role: String,
    pub task: String,
    pub provider_name: String,
    pub base_url: Option<String>,
    pub model: String,
    pub caps: CapabilitySet,
    pub budgets: Budgets,
    pub workspace: PathBuf,
    pub pipe_to: Option<Pid>,
    pub provider: Arc<dyn Provider>,
    pub ipc: IpcEnds,
}

impl Process {
    pub(crate) fn new(n: NewProcess) -> Process {
        let now = now_ms();
        Process {
            pid: n.pid,
            parent: n.parent,
            role: n.role,
            task: n.task,
            provider_name: n.provider_name,
            base_url: n.base_url,
            model: n.model,
            caps: n.caps,
            budgets: n.budgets,
            workspace: n.workspace,
            pipe_to: n.pipe_to,
            started: Instant::now(),
            provider: n.provider,
            state: Mutex::new(ProcState {
                status: ProcessStatus::Ready,
                children: Vec::new(),
                counters: Counters { started_at_ms: now, last_activity_ms: now, ..Default::default() },
                log: Vec::new(),
                context_start: 0,
                compacted: 0,
                compacted_summary: Vec::new(),
                context_window: None,
                next_call_id: 1,
                exit: None,
                ended_at_ms: None,
                end_seq: 0,
                sleep_until_ms: None,
                paused_from: None,
            }),
            ipc: n.ipc,
            cancel: CancellationToken::new(),
            killed: std::sync::atomic::AtomicBool::new(false),
            exit_tx: watch::channel(None).0,
            lsn: AtomicU64::new(0),
        }
    }

    /// What is left of the budgets now.
    pub fn remaining(&self) -> Budgets {
        let st = self.state.lock();
        self.remaining_locked(&st)
    }

    pub(crate) fn remaining_locked(&self, st: &ProcState) -> Budgets {
        Budgets {
            max_steps: self.budgets.max_steps.map(|m| m.saturating_sub(st.counters.steps)),
            max_tokens: self.budgets.max_tokens.map(|m| m.saturating_sub(st.counters.total_tokens())),
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
            remaining: self.remaining_locked(&st),
            counters: st.counters.clone(),
            workspace: self.workspace.clone(),
            pipe_to: self.pipe_to,
            base_url: self.base_url.clone(),
        }
    }

    /// Marks the process killed and cancels its task.
    pub(crate) fn signal_kill(&self) {
        self.killed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.cancel.cancel();
    }

    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A wall-time deadline, if the budget has one.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.budgets.max_wall_time.map(|d| self.started + d)
    }
}
