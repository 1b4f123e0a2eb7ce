//! The kernel's settings ([`KernelConfig`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::process::Budgets;
use crate::table::Retention;
use crate::webhook::WebhookAuth;

/// Kernel settings.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    /// `$AOS_HOME`; root workspaces default to a new `{home}/workspaces/{pid}-{ms}`.
    pub home: PathBuf,
    /// Context window (tokens, estimated as characters / 4) used for
    /// compaction; a provider that knows its model's real capacity
    /// ([`aos_providers::Provider::context_window`]) lowers it.
    pub context_window: usize,
    /// Per-model overrides of `context_window`.
    pub model_context_windows: BTreeMap<String, usize>,
    /// Concurrent model calls per provider (FIFO-fair among ready processes).
    pub model_concurrency: usize,
    /// Per-provider overrides of `model_concurrency`.
    pub provider_concurrency: BTreeMap<String, usize>,
    /// Budgets used where a spawn request leaves a field `None`.
    pub default_budgets: Budgets,
    /// The same failing call (same name and arguments) this many times in a row halts the process.
    pub loop_breaker: u32,
    /// `max_tokens` of each model call.
    pub max_reply_tokens: Option<u32>,
    pub temperature: Option<f32>,
    /// Capacity of the broadcast event stream (slow subscribers lag, and are told so).
    pub event_capacity: usize,
    /// How many ended processes are kept, and how long (see [`crate::table`]).
    pub retention: Retention,
    /// The providers and models a model may choose for a child (`SPAWN_AGENT`).
    pub spawn: SpawnPolicy,
    /// Most live (not ended) processes in one process tree (a root and all
    /// its descendants); a spawn beyond it is refused.
    pub max_processes_per_tree: usize,
    /// Most live processes in the whole kernel.
    pub max_processes: usize,
    /// How webhook requests are authenticated (signature window, plain secret).
    pub webhook_auth: WebhookAuth,
    /// How syscalls reach each model (`tool_mode` in aos.toml).
    pub tool_modes: ToolModes,
    /// The approval policy of root processes whose spawn gives none
    /// (`[approvals]` in aos.toml; see [`crate::approval`]).
    pub approvals: crate::approval::Policy,
    /// An approval not answered in this time is a denial.
    pub approval_timeout: std::time::Duration,
    /// Told of every step, model call and syscall (traces; see
    /// [`crate::observe`]); does nothing by default.
    pub observer: crate::observe::Observers,
}

/// `tool_mode` per model, per provider, and the default (`auto`): the
/// first that names the process's model, then its provider, decides. A
/// spawn's own `tool_mode` (`--tool-mode`) overrides all three.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolModes {
    pub default: aos_abi::ToolMode,
    pub providers: BTreeMap<String, aos_abi::ToolMode>,
    pub models: BTreeMap<String, aos_abi::ToolMode>,
}

impl ToolModes {
    /// The mode for `model` of `provider`.
    pub fn mode_for(&self, provider: &str, model: &str) -> aos_abi::ToolMode {
        self.models.get(model).or_else(|| self.providers.get(provider)).copied().unwrap_or(self.default)
    }
}

/// What a model may choose in `SPAWN_AGENT`'s `provider` and `model`
/// (`[spawn]` in aos.toml). A child keeps its parent's provider and model
/// unless the reply names others; any other (provider, model) pair must be
/// allowed here. By default nothing else is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnPolicy {
    /// Providers a model may choose besides its own. `script` is never
    /// selectable by a model (it replays files of the host), even if listed.
    pub providers: Vec<String>,
    /// Models a model may choose besides its own; `"*"` allows any name.
    pub models: Vec<String>,
    /// For providers whose model is a file they open (`script`, `local`
    /// with a GGUF path): the directory a chosen file must be in. The file is
    /// named relative to it (or by an absolute path inside it), must be a
    /// regular file reached without symlinks, outside every workspace, and
    /// at most `max_model_file_bytes` long. `None`: a model can choose no file.
    pub model_dir: Option<PathBuf>,
    pub max_model_file_bytes: u64,
}

impl Default for SpawnPolicy {
    fn default() -> Self {
        SpawnPolicy { providers: Vec::new(), models: Vec::new(), model_dir: None, max_model_file_bytes: 8 << 30 }
    }
}

/// The longest time between two reaping passes over the table (shorter when
/// `retention.ended_ttl` is: a quarter of it, at least a second). A pass also
/// runs whenever a process ends.
pub const REAP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

impl KernelConfig {
    pub fn new(home: impl Into<PathBuf>) -> Self {
        KernelConfig {
            home: home.into(),
            context_window: 8192,
            model_context_windows: BTreeMap::new(),
            model_concurrency: 4,
            provider_concurrency: BTreeMap::new(),
            default_budgets: Budgets { max_steps: Some(100), max_tokens: None, max_wall_time: None },
            loop_breaker: 3,
            max_reply_tokens: Some(2048),
            temperature: None,
            event_capacity: 4096,
            retention: Retention::default(),
            spawn: SpawnPolicy::default(),
            max_processes_per_tree: 64,
            max_processes: 10_000,
            webhook_auth: WebhookAuth::default(),
            tool_modes: ToolModes::default(),
            approvals: crate::approval::Policy::never(),
            approval_timeout: std::time::Duration::from_secs(600),
            observer: Default::default(),
        }
    }
}
