//! What a process is, as data: the serializable types describing one agent
//! process ([`Pid`], [`ProcessStatus`], [`ExitStatus`], [`Budgets`],
//! [`Counters`], [`Entry`], [`LogEntry`], [`ProcessInfo`]), shared by every
//! kernel module, the journal and the control API. A leaf module: it
//! depends on nothing else in the kernel. The live process (its control
//! block, and every change to its state) is [`crate::pcb`].
//!
//! A process's history *is* its log: every entry ever appended is kept (so
//! `logs` works after exit, until the process is reaped: [`crate::table`]);
//! compaction only moves the start of the part that is rendered into the
//! model's context (see [`crate::context`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aos_abi::CapabilitySet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// What to start (`Kernel::spawn`, `SPAWN_AGENT`).
#[derive(Debug, Clone, Default)]
pub struct SpawnRequest {
    pub task: String,
    pub role: String,
    /// Provider name given to the factory.
    pub provider: String,
    pub model: String,
    pub base_url: Option<String>,
    /// Rights of the process. For a child (`parent: Some`) they must be held by the parent.
    pub caps: CapabilitySet,
    /// `None` fields take `KernelConfig::default_budgets`; a child's are also capped by
    /// what its parent has left.
    pub budgets: Budgets,
    /// Default: a new directory `{home}/workspaces/{pid}-{ms}` for a root (never an existing one), the parent's for a child.
    pub workspace: Option<PathBuf>,
    /// Also deliver this process's stdout to that process's stdin.
    pub pipe_to: Option<Pid>,
    pub parent: Option<Pid>,
}
