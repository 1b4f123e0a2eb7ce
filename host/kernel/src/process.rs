//! The process control block ([`Process`]): identity, lineage, status,
//! rights, budgets, counters and history of one agent process; plus the
//! serializable types describing them ([`ProcessStatus`], [`ExitStatus`],
//! [`Budgets`], [`Counters`], [`Entry`], [`LogEntry`], [`ProcessInfo`]).
//!
//! A process's history *is* its log: every entry ever appended is kept (so
//! `logs` works after exit, until the process is reaped: [`crate::table`]);
//! compaction only moves the start of the part that is rendered into the
//! model's context (see [`crate::context`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aos_abi::CapabilitySet;
use aos_providers::Provider;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ipc::IpcEnds;

/// Process id; the first process is 1.
pub type Pid = u64;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What a process is doing right now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ProcessStatus {
    /// Runnable; waiting for its turn at the model (a provider slot).
    Ready,
    /// Executing syscalls.
    Running,
    /// A model call is in flight.
    WaitingModel,
    /// Blocked in `RECV_MSG`.
    BlockedRecv,
    /// Blocked in `SYS_READ_STDIN`.
    BlockedStdin,
    /// Suspended by `SLEEP` until this time (Unix ms).
    Sleeping { until_ms: u64 },
    Exited { code: i64 },
    Killed,
    Failed { reason: String },
}

impl ProcessStatus {
    pub fn is_terminal(&self) -> bool {
        matches!(self, ProcessStatus::Exited { .. } | ProcessStatus::Killed | ProcessStatus::Failed { .. })
    }
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ExitStatus {
    /// `SYS_EXIT` (code and optional result text).
    Exited { code: i64, result: Option<String> },
    /// Killed by `kill` (itself or an ancestor).
    Killed,
    /// Ended by the kernel: budget exhausted, loop breaker, provider failure.
    Failed { reason: String },
}

impl ExitStatus {
    pub fn as_status(&self) -> ProcessStatus {
        match self {
            ExitStatus::Exited { code, .. } => ProcessStatus::Exited { code: *code },
            ExitStatus::Killed => ProcessStatus::Killed,
            ExitStatus::Failed { reason } => ProcessStatus::Failed { reason: reason.clone() },
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited { code, result: Some(r) } => write!(f, "exited with code {code}: {r}"),
            ExitStatus::Exited { code, result: None } => write!(f, "exited with code {code}"),
            ExitStatus::Killed => f.write_str("was killed"),
            ExitStatus::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// Resource limits of a process. `None` = unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Budgets {
    /// Model calls (steps).
    pub max_steps: Option<u64>,
    /// Prompt + completion tokens over all steps.
    pub max_tokens: Option<u64>,
    /// Wall time from spawn.
    pub max_wall_time: Option<Duration>,
}

impl Budgets {
    /// The element-wise minimum of `self` and `cap` (`None` = unlimited).
    pub fn capped_by(&self, cap: &Budgets) -> Budgets {
        fn min<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, None) => a,
                (None, b) => b,
            }
        }
        Budgets {
            max_steps: min(self.max_steps, cap.max_steps),
            max_tokens: min(self.max_tokens, cap.max_tokens),
            max_wall_time: min(self.max_wall_time, cap.max_wall_time),
        }
    }
}

/// Usage counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// True when any step's counts were estimated rather than reported.
    pub tokens_estimated: bool,
    pub steps: u64,
    /// Calls per syscall name (including failed ones).
    pub syscalls: BTreeMap<String, u64>,
    /// Parse, validation and syscall errors.
    pub errors: u64,
    pub started_at_ms: u64,
    pub last_activity_ms: u64,
}

impl Counters {
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// One history entry. Everything except [`Entry::Stdout`] is shown to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// A model reply.
    Reply { text: String, truncated: bool },
    /// A syscall that succeeded; `id` numbers the process's calls from 1.
    Result { id: u64, name: String, args: Value, output: Value },
    /// A call that failed to parse, validate or run.
    Error { id: u64, name: Option<String>, args: Option<Value>, error: String },
    /// Something that happened to the process (timer, child exit, ...).
    Event { text: String },
    /// A message from the kernel itself (budget warnings, skipped calls, ...).
    Notice { text: String },
    /// Text the process wrote to stdout (log only).
    Stdout { text: String },
}

impl Entry {
    /// Whether this entry is rendered into the model's context.
    pub fn in_context(&self) -> bool {
        !matches!(self, Entry::Stdout { .. })
    }
}

/// An entry with its position and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub pid: Pid,
    /// Index in the process's log, from 0.
    pub seq: u64,
    pub at_ms: u64,
    #[serde(flatten)]
    pub entry: Entry,
}

/// Snapshot of a process for `ps` / `top`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: Pid,
    pub parent: Option<Pid>,
    pub children: Vec<Pid>,
    pub status: ProcessStatus,
    pub role: String,
    pub task: String,
    pub provider: String,
    pub model: String,
    pub capabilities: Vec<String>,
    pub budgets: Budgets,
    /// What is left of the budgets.
    pub remaining: Budgets,
    pub counters: Counters,
    pub workspace: PathBuf,
    pub pipe_to: Option<Pid>,
    /// Base URL of its provider, when not the provider's default.
    #[serde(default)]
    pub base_url: Option<String>,
}

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
            }),
            ipc: n.ipc,
            cancel: CancellationToken::new(),
            killed: std::sync::atomic::AtomicBool::new(false),
            exit_tx: watch::channel(None).0,
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
