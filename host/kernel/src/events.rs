//! The kernel's record, a leaf module (serde only): the serializable types
//! that describe a process and its history ([`ProcessStatus`],
//! [`ExitStatus`], [`Budgets`], [`Counters`], [`Entry`], [`LogEntry`],
//! [`ProcessInfo`], queued input), the [`KernelEvent`]s that change them —
//! what the journal stores, `logs -f` streams and [`crate::replay`] folds —
//! and [`RestoreRequest`], the state a restore needs; and [`EventSink`], what
//! receives them (journals). The bus that sends them there is `crate::bus`;
//! this module stays a leaf (serde only) so the fuzz targets compile it alone.
//!
//! Every event says which process it is about ([`KernelEvent::pid`]).
//! Facts that recovery needs are events of their own (a webhook
//! registered, `SYS_EXIT` called, the counters), so nothing has to be
//! recovered by reading syscall results by name.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// Waiting until its journalled events are durable before its next
    /// side effect, while the journal cannot be written (`reason` says why);
    /// it resumes by itself once they are (see [`crate::durability`]).
    Paused { reason: String },
    /// Waiting for the operator to approve or deny call `syscall`
    /// (`aos approvals`; see [`crate::approval`]).
    Approval { id: u64, syscall: String },
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
    /// Of `prompt_tokens`, those the provider served from its prompt cache
    /// (as each API reports them; see `aos_providers::Usage`).
    #[serde(default)]
    pub cached_prompt_tokens: u64,
    /// Of `prompt_tokens`, those written to the provider's prompt cache.
    #[serde(default)]
    pub cache_write_tokens: u64,
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

    /// The share of prompt tokens read from the provider's cache, in
    /// percent (`None` when no prompt token was reported as cached).
    pub fn cached_percent(&self) -> Option<u64> {
        (self.cached_prompt_tokens > 0 && self.prompt_tokens > 0)
            .then(|| (self.cached_prompt_tokens.min(self.prompt_tokens) * 100) / self.prompt_tokens)
    }
}

/// One history entry. Everything except [`Entry::Stdout`] is shown to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// A model reply: its text and, in native tool mode, the tool calls it
    /// made (with the API's ids, typed: a restore answers each of them).
    Reply {
        text: String,
        truncated: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<aos_abi::ToolCall>,
    },
    /// A syscall that succeeded; `id` numbers the process's calls from 1;
    /// `call_id` is the API's id of a native tool call.
    Result {
        id: u64,
        name: String,
        args: Value,
        output: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
    },
    /// A call that failed to parse, validate or run.
    Error {
        id: u64,
        name: Option<String>,
        args: Option<Value>,
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
    },
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
    /// How its syscalls reach its model (`text` for journals from before
    /// tool modes existed).
    #[serde(default = "text_mode")]
    pub tool_mode: aos_abi::ToolMode,
    /// Its approval policies: its ancestors' and its own; the strictest
    /// decides (see [`crate::approval`]). Empty: every call is allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<crate::approval::Policy>,
    /// While it waits on its model: how far the call is, as last reported
    /// ([`KernelEvent::ModelProgress`]; `None` when its provider reports
    /// nothing). Live state for `aos top`, never in a journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_progress: Option<aos_abi::ModelProgress>,
}

fn text_mode() -> aos_abi::ToolMode {
    aos_abi::ToolMode::Text
}

/// A message in a mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpcMessage {
    pub from: Pid,
    pub content: String,
    pub sent_at_ms: u64,
}

/// One of a process's input queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Queue {
    Mailbox,
    Stdin,
    Events,
}

/// A `SYS_SCHEDULE` wake-up that has not fired yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingTimer {
    pub id: u64,
    /// When it fires (Unix ms).
    pub due_ms: u64,
    pub prompt: String,
}

/// Input queued for a process but not yet received, as journalled; put back by a restore.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingInput {
    #[serde(default)]
    pub mailbox: Vec<IpcMessage>,
    #[serde(default)]
    pub stdin: Vec<String>,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub timers: Vec<PendingTimer>,
}

impl PendingInput {
    pub fn is_empty(&self) -> bool {
        self.mailbox.is_empty() && self.stdin.is_empty() && self.events.is_empty() && self.timers.is_empty()
    }
}

/// Something that happened in the kernel (serializable for journals and `logs -f`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum KernelEvent {
    Spawned { info: Box<ProcessInfo> },
    /// An entry appended to a process's history.
    Entry { entry: LogEntry },
    Status { pid: Pid, status: ProcessStatus },
    /// The oldest `entries` history entries were compacted out of the context;
    /// the context now starts at log index `context_start`.
    Compacted { pid: Pid, entries: usize, context_start: usize },
    /// The model rejected a prompt of `prompt_tokens` tokens (it accepts at
    /// most `limit`; 0 = not said), so the process's compaction window is now
    /// `window` estimated tokens (for its later steps too) and the call is
    /// retried after compacting more.
    ContextShrunk { pid: Pid, prompt_tokens: u64, limit: u64, window: usize },
    /// The process called `SYS_EXIT` (its result entry follows): it has
    /// ended, even if the kernel stops before its `Exited` event.
    Exiting { pid: Pid, code: i64, result: Option<String> },
    Exited { pid: Pid, status: ExitStatus },
    /// Its token, step and syscall counters, after a reply, a call result or its exit.
    Counters { pid: Pid, counters: Counters },
    /// It registered a webhook path (`SYS_REGISTER_WEBHOOK`); a restore registers it again.
    WebhookRegistered { pid: Pid, path: String, secret: String },
    /// An item was put in a queue of `pid` (`from`: the sender of a mailbox message).
    Delivered { pid: Pid, queue: Queue, from: Option<Pid>, content: String, at_ms: u64 },
    /// `pid` took the oldest item of that queue.
    Consumed { pid: Pid, queue: Queue },
    /// A `SYS_SCHEDULE` wake-up was armed.
    Scheduled { pid: Pid, id: u64, due_ms: u64, prompt: String },
    /// It fired (its event was `Delivered` just before).
    Fired { pid: Pid, id: u64 },
    /// The ended process `pid` was removed from the table by the retention
    /// rules (`KernelConfig::retention`): `ps`, `logs` and `wait` no longer know it.
    Reaped { pid: Pid },
    /// A piece of the reply `pid`'s model is generating (streaming
    /// providers only), in order. Sent to live followers (`aos logs -f`)
    /// and never journalled: the whole reply is journalled once, as an
    /// [`Entry::Reply`], when it is complete — a restore never sees half a
    /// reply, a cut stream leaves nothing to undo, and the journal is not
    /// written (and fsynced) once per token.
    ReplyDelta { pid: Pid, text: String },
    /// A call of `pid` waits for the operator (its process shows as
    /// `approval`); a restore asks again under the same id and expiry.
    ApprovalAsked { pid: Pid, approval: crate::approval::PendingApproval },
    /// The operator approved approval `id`: the call may run now (this is
    /// durable before it does; a restore then reports it as interrupted,
    /// never runs it again). A denial or a timeout is the call's error entry.
    ApprovalGranted { pid: Pid, id: u64 },
    /// "Approve always" added `rule` to the process tree of `pid`.
    ApprovalRule { pid: Pid, rule: crate::approval::Rule },
    /// How far `pid`'s model call is (loading the model, planning,
    /// evaluating the prompt, generating: [`aos_abi::ModelProgress`]), as
    /// its provider reports it, at most ten a second per process (every
    /// change of phase is sent). Live only, like [`KernelEvent::ReplyDelta`]:
    /// never journalled, ignored by a replay; the reply's entry ends it.
    ModelProgress { pid: Pid, progress: aos_abi::ModelProgress },
}

impl KernelEvent {
    /// The process the event is about.
    pub fn pid(&self) -> Pid {
        match self {
            KernelEvent::Spawned { info } => info.pid,
            KernelEvent::Entry { entry } => entry.pid,
            KernelEvent::Status { pid, .. }
            | KernelEvent::Compacted { pid, .. }
            | KernelEvent::ContextShrunk { pid, .. }
            | KernelEvent::Exiting { pid, .. }
            | KernelEvent::Exited { pid, .. }
            | KernelEvent::Counters { pid, .. }
            | KernelEvent::WebhookRegistered { pid, .. }
            | KernelEvent::Delivered { pid, .. }
            | KernelEvent::Consumed { pid, .. }
            | KernelEvent::Scheduled { pid, .. }
            | KernelEvent::Fired { pid, .. }
            | KernelEvent::ReplyDelta { pid, .. }
            | KernelEvent::ApprovalAsked { pid, .. }
            | KernelEvent::ApprovalGranted { pid, .. }
            | KernelEvent::ApprovalRule { pid, .. }
            | KernelEvent::ModelProgress { pid, .. }
            | KernelEvent::Reaped { pid } => *pid,
        }
    }
}

/// A process as rebuilt from a journal, for `Kernel::restore`
/// (serializable: the daemon's journal stores it as is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRequest {
    /// Identity, lineage, rights (`capabilities`), budgets, workspace,
    /// `pipe_to`, provider base URL, status and counters as they were last journalled.
    pub info: ProcessInfo,
    /// The full history, in order.
    pub log: Vec<LogEntry>,
    /// Log index where the model's context starts (after compaction).
    pub context_start: usize,
    /// How many in-context entries were compacted.
    pub compacted: usize,
    /// The process's shrunk compaction window ([`KernelEvent::ContextShrunk`]), if any.
    #[serde(default)]
    pub context_window: Option<usize>,
    /// The id the next call gets.
    pub next_call_id: u64,
    /// Set for a process that had ended: it is kept for `ps`/`logs` only.
    pub exit: Option<ExitStatus>,
    /// Messages, stdin lines and events queued but not received, and
    /// `SYS_SCHEDULE` wake-ups not yet fired.
    #[serde(default)]
    pub pending: PendingInput,
    /// Webhook paths it registered ([`KernelEvent::WebhookRegistered`]), registered again on restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookRoute>,
    /// The call of its last reply that was waiting for the operator
    /// ([`KernelEvent::ApprovalAsked`], not yet granted or answered): a
    /// restore asks again under the same id, then runs the rest of the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_approval: Option<crate::approval::PendingApproval>,
    /// "Approve always" rules it added to its tree ([`KernelEvent::ApprovalRule`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approval_rules: Vec<crate::approval::Rule>,
}

/// A webhook path and its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRoute {
    pub path: String,
    pub secret: String,
}

impl RestoreRequest {
    /// A request with an empty history.
    pub fn new(info: ProcessInfo) -> Self {
        RestoreRequest {
            info,
            log: Vec::new(),
            context_start: 0,
            compacted: 0,
            context_window: None,
            next_call_id: 1,
            exit: None,
            pending: PendingInput::default(),
            webhooks: Vec::new(),
            awaiting_approval: None,
            approval_rules: Vec::new(),
        }
    }
}

// ---- Where events go ----

/// Receives every kernel event, synchronously and in order per process
/// (e.g. a journal writing them to disk).
pub trait EventSink: Send + Sync {
    fn record(&self, event: &KernelEvent);
}
