//! What a process is, as data: the serializable types describing one agent
//! process ([`Pid`], [`ProcessStatus`], [`ExitStatus`], [`Budgets`],
//! [`Counters`], [`Entry`], [`LogEntry`], [`ProcessInfo`]; defined with the
//! events that change them in [`crate::events`], the journal's record) and
//! what to start ([`SpawnRequest`]), shared by every kernel module, the
//! journal and the control API. The live process (its control
//! block, and every change to its state) is [`crate::pcb`].
//!
//! A process's history *is* its log: every entry ever appended is kept (so
//! `logs` works after exit, until the process is reaped: [`crate::table`]);
//! compaction only moves the start of the part that is rendered into the
//! model's context (see [`crate::context`]).

use std::path::PathBuf;

use aos_abi::CapabilitySet;

pub use crate::events::{now_ms, Budgets, Counters, Entry, ExitStatus, LogEntry, Pid, ProcessInfo, ProcessStatus};

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
    /// How its syscalls reach its model (`aos run/spawn --tool-mode`);
    /// `None`: `KernelConfig::tool_modes` decides.
    pub tool_mode: Option<aos_abi::ToolMode>,
    /// Its own approval policy, added to its parent's chain (a child can
    /// only be stricter); `None`: a root gets `KernelConfig::approvals`, a
    /// child its parent's chain alone.
    pub approvals: Option<crate::approval::Policy>,
}
