//! `$AOS_HOME/aos.toml`: the daemon's settings, with documented defaults and
//! environment overrides. Every key is optional; an absent file means all
//! defaults. API keys never live here: a provider names the environment
//! variable holding its key (`api_key_env`).
//!
//! ```toml
//! provider = "openai"            # AOS_PROVIDER   default provider of `aos spawn`
//! model = "llama3.2"             # AOS_MODEL      default model
//! base_url = "http://127.0.0.1:11434/v1"  # AOS_BASE_URL
//! model_concurrency = 4          # AOS_MODEL_CONCURRENCY  concurrent model calls per provider
//! context_window = 8192          # AOS_CONTEXT_WINDOW     tokens, for compaction (at most the model's real context)
//! default_grants = ["fs:rw", "timers", "ipc"]  # AOS_GRANTS (comma-separated)  rights of `aos spawn`
//!                                #   and `aos run` without --grant: nothing that reaches the network
//!                                #   or runs commands (["all"]: every built-in right, exec:net included)
//!
//! [budgets]                      # of a root process, shared by it and all its descendants
//! max_steps = 50                 # AOS_MAX_STEPS
//! max_tokens = 200000            # AOS_MAX_TOKENS   (absent = unlimited)
//! max_seconds = 3600             # AOS_MAX_SECONDS  (absent = unlimited)
//! max_processes_per_tree = 64    # AOS_MAX_PROCESSES_PER_TREE  live processes of one root and its descendants
//! max_processes = 10000          # AOS_MAX_PROCESSES           live processes of the kernel
//!
//! [limits]                       # driver limits
//! call_timeout_secs = 5          # AOS_DRIVER_TIMEOUT_SECS
//! memory_mb = 64                 # AOS_DRIVER_MEMORY_MB
//!
//! [control]
//! tcp = "127.0.0.1:7878"         # AOS_CONTROL_TCP  also serve the control API on this loopback
//!                                #   address (default: Unix socket only); clients need the bearer
//!                                #   token in $AOS_HOME/control.token (see `aos help kernel`)
//!
//! [journal]                      # every kernel event, for crash recovery (see journal.rs)
//! fsync = true                   # AOS_JOURNAL_FSYNC  fsync each batch of events (group commit); off:
//!                                #   written to the OS only, so a power loss may lose the last ones
//! rotate_mib = 32                # AOS_JOURNAL_ROTATE_MIB  start a new segment (a snapshot, then the
//!                                #   events) once the tail is this large; bounds what a restart reads
//!
//! [retention]                    # ended (exited, failed, killed) processes and archived journals
//! max_ended = 256                # AOS_RETENTION_MAX_ENDED  ended processes kept for ps/logs/wait;
//!                                #   the oldest-ended beyond it are reaped
//! ended_ttl_secs = 86400         # AOS_RETENTION_ENDED_TTL_SECS  reaped this long after ending;
//!                                #   archived journals are deleted this long after their last write
//! max_archived_journals = 64     # AOS_RETENTION_MAX_ARCHIVED_JOURNALS  files kept in journal/archive/
//!                                #   (an ended process with a running descendant is never reaped)
//!
//! [net]                          # NET_FETCH policy
//! allow = ["127.0.0.1", "10.1.0.0/16", "intranet.local"]  # AOS_NET_ALLOW (comma-separated)
//!                                #   non-public hosts/ranges that may be fetched (default none)
//! max_body_bytes = 5000000       # largest response body
//! connect_timeout_secs = 10
//! read_timeout_secs = 10         # to the first byte and between bytes
//! ca_files = ["/etc/ssl/corp-ca.pem"]  # extra trusted roots for https (PEM)
//!
//! [sandbox]                      # EXEC_CMD containers (Docker)
//! image = "aos-sandbox:latest"   # AOS_SANDBOX_IMAGE  (`aos sandbox build` makes the default one)
//! docker_host = "unix:///var/run/docker.sock"  # default: $DOCKER_HOST, else this
//! memory_mb = 256                # per container, swap included
//! pids_limit = 128
//! cpus = 1.0
//! default_timeout_secs = 30      # per command, when the call gives none
//! max_timeout_secs = 600         # longest per-command timeout honoured
//! output_cap_bytes = 65536       # of stdout and of stderr, each
//! [webhooks]                     # HTTP listener for SYS_REGISTER_WEBHOOK paths
//! listen = "127.0.0.1:0"         # AOS_WEBHOOK_LISTEN  IP:PORT (port 0 = any free port; "off" = disabled)
//! allow_non_loopback = false     # AOS_WEBHOOK_ALLOW_NON_LOOPBACK  required to listen beyond 127.0.0.1/::1
//! max_body_bytes = 1048576       # AOS_WEBHOOK_MAX_BODY_BYTES  larger requests get 413
//! timeout_secs = 30              # AOS_WEBHOOK_TIMEOUT_SECS    no SYS_WEBHOOK_REPLY by then → 504
//! signature_tolerance_secs = 300 # AOS_WEBHOOK_SIGNATURE_TOLERANCE_SECS  how far X-AOS-Timestamp may be
//!                                #   from the kernel's clock; each signature is accepted once
//! allow_secret_header = false    # AOS_WEBHOOK_ALLOW_SECRET_HEADER  also accept the plain X-AOS-Secret
//!                                #   header (replayable, does not cover the body)
//!
//! [spawn]                        # what a model may choose in SPAWN_AGENT's provider and model
//! providers = ["openai"]         #   providers besides its own (default none; `script` never)
//! models = ["gpt-4o-mini"]       #   models besides its own (default none; "*" = any name)
//! model_dir = "/srv/aos/models"  #   where a chosen model file (script, GGUF) must be: a regular
//!                                #   file, no symlinks, outside workspaces (default: none may be chosen;
//!                                #   relative to $AOS_HOME)
//! max_model_file_mb = 8192       #   largest model file a model may choose
//!
//! [approvals]                    # which calls wait for the operator (`aos approvals`)
//! mode = "never"                 # AOS_APPROVE  never | ask-dangerous | ask-all (`--approve` per process)
//! timeout_secs = 600             #   unanswered approvals are denials after this
//! rules = [{ syscall = "EXEC_CMD", command_prefix = "git ", decision = "allow" }]
//!                                #   before the mode's rules; first match wins; fields: syscall
//!                                #   (NAME, PREFIX* or *), command_prefix, path (glob), hosts,
//!                                #   hosts_not, existing; decision = allow | ask | deny
//!
//! [providers.openai]             # per-provider HTTP settings
//! base_url = "https://api.openai.com/v1"
//! api_key_env = "OPENAI_API_KEY"
//! timeout_secs = 120
//! max_retries = 3
//! tool_mode = "auto"             # native | text | auto: syscalls as the API's tools (native), as
//!                                #   [SYS_CALL::NAME] text (text), or native falling back to text once
//!                                #   when the server rejects tools (auto, the default; local/script: text)
//! tool_modes = { "llama3.2" = "text" }   # per model
//! stream = false                 # server-sent events: `aos logs -f` shows replies as they are generated
//!
//! [drivers.fs]                   # per-driver configuration, passed to the driver
//! read_limit = 1048576
//!
//! [mcp.servers.everything]       # an MCP server whose tools become syscalls MCP_EVERYTHING_*
//!                                #   (granted by mcp:everything or mcp:everything/TOOL; see aos_mcp::config)
//! command = "node"               # stdio server: program (in the sandbox image) and arguments
//! args = ["/opt/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js", "stdio"]
//! mounts = [{ host = "/root/.cache/aos/mcp-node", container = "/opt/mcp" }]  # the only host paths it sees (ro; writable = true)
//! network = false                # true: Docker's bridge network (your grant); default none
//! # host = true                  # run it ON THE HOST instead, outside any sandbox (announced)
//! env_from = ["GITHUB_TOKEN"]    # kernel environment variables passed on (on the host also PATH, HOME)
//! call_timeout_secs = 30         # deadline of one tool call
//!
//! [telemetry]                    # traces over OTLP/HTTP (see aos_telemetry::config; README "Traces")
//! enabled = false                #   on also when OTEL_EXPORTER_OTLP_ENDPOINT or _TRACES_ENDPOINT is set
//! endpoint = "http://localhost:4318"  # OTEL_EXPORTER_OTLP_ENDPOINT  collector base URL (+ /v1/traces)
//! traces_endpoint = "https://collector.example/v1/traces"  # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  full URL
//! headers = { "x-tenant" = "ops" }    # OTEL_EXPORTER_OTLP_HEADERS (k=v,k2=v2)  shown masked
//! service_name = "aos"           # OTEL_SERVICE_NAME
//! capture_content = false        # prompts, replies, tool arguments/results in spans (opt-in)
//! export_timeout_secs = 10       # OTEL_EXPORTER_OTLP_TIMEOUT (ms)
//!                                #   OTEL_SDK_DISABLED=true turns export off; only http/protobuf
//! [mcp.serve]                    # `aos mcp serve`: AgentOS as an MCP server
//! max_grants = ["fs:rw", "timers", "ipc"]  # ceiling of MCP-spawned agents' rights (default: default_grants)
//! allow_remote = false           # let `--http` listen beyond loopback (the token is still required)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The rights of a process started without `--grant` (`default_grants`):
/// its workspace read-write, timers and IPC; nothing that reaches the
/// network, runs commands or starts processes. `--grant all` is explicit.
pub const DEFAULT_GRANTS: &[&str] = &["fs:rw", "timers", "ipc"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub base_url: Option<String>,
    pub model_concurrency: usize,
    /// Compaction window (estimated tokens); a provider that knows its
    /// model's real capacity (the local model: `n_ctx` minus reply room) lowers it.
    pub context_window: usize,
    pub default_grants: Vec<String>,
    pub budgets: BudgetConfig,
    pub limits: LimitConfig,
    pub journal: JournalConfig,
    pub retention: RetentionConfig,
    pub control: ControlConfig,
    pub net: NetSettings,
    pub sandbox: SandboxSettings,
    pub webhooks: WebhookConfig,
    pub spawn: SpawnSettings,
    pub approvals: ApprovalConfig,
    pub providers: BTreeMap<String, ProviderSettings>,
    pub drivers: BTreeMap<String, toml::Table>,
    /// Long-term memory: embedder and vector store (see `aos_memory::config`).
    pub memory: aos_runtime::aos_memory::MemoryConfig,
    /// MCP servers whose tools are syscalls (see `aos_mcp::config`).
    pub mcp: aos_mcp::McpConfig,
    /// Trace export over OTLP/HTTP (see `aos_telemetry::config`).
    pub telemetry: aos_telemetry::TelemetryConfig,
}

/// `[net]`: the NET_FETCH policy (see `aos_runtime::NetConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetSettings {
    pub allow: Vec<String>,
    pub max_body_bytes: u64,
    pub connect_timeout_secs: f64,
    pub read_timeout_secs: f64,
    pub ca_files: Vec<PathBuf>,
}

/// `[sandbox]`: the EXEC_CMD containers (see `aos_sandbox::DockerConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSettings {
    pub image: String,
    pub docker_host: Option<String>,
    pub memory_mb: u64,
    pub pids_limit: i64,
    pub cpus: f64,
    pub default_timeout_secs: u64,
    pub max_timeout_secs: u64,
    pub output_cap_bytes: usize,
}

impl Default for NetSettings {
    fn default() -> Self {
        let d = aos_runtime::NetConfig::default();
        NetSettings {
            allow: d.allow,
            max_body_bytes: d.max_body_bytes,
            connect_timeout_secs: d.connect_timeout.as_secs_f64(),
            read_timeout_secs: d.read_timeout.as_secs_f64(),
            ca_files: d.ca_files,
        }
    }
}

impl NetSettings {
    pub fn to_runtime(&self) -> aos_runtime::NetConfig {
        aos_runtime::NetConfig {
            allow: self.allow.clone(),
            max_body_bytes: self.max_body_bytes,
            connect_timeout: Duration::from_secs_f64(self.connect_timeout_secs.max(0.001)),
            read_timeout: Duration::from_secs_f64(self.read_timeout_secs.max(0.001)),
            ca_files: self.ca_files.clone(),
            resolver: None,
        }
    }
}

impl Default for SandboxSettings {
    fn default() -> Self {
        let d = aos_sandbox::DockerConfig::default();
        SandboxSettings {
            image: d.image,
            docker_host: d.host,
            memory_mb: (d.memory_bytes >> 20) as u64,
            pids_limit: d.pids_limit,
            cpus: d.cpus,
            default_timeout_secs: d.default_timeout.as_secs(),
            max_timeout_secs: d.max_timeout.as_secs(),
            output_cap_bytes: d.output_cap_bytes,
        }
    }
}

impl SandboxSettings {
    /// The Docker settings of the kernel whose home is `home`.
    pub fn to_runtime(&self, home: &Path) -> aos_sandbox::DockerConfig {
        aos_sandbox::DockerConfig {
            image: self.image.clone(),
            host: self.docker_host.clone(),
            memory_bytes: (self.memory_mb.max(6) << 20) as i64,
            pids_limit: self.pids_limit.max(1),
            cpus: self.cpus,
            default_timeout: Duration::from_secs(self.default_timeout_secs.max(1)),
            max_timeout: Duration::from_secs(self.max_timeout_secs.max(1)),
            output_cap_bytes: self.output_cap_bytes,
            ..aos_sandbox::DockerConfig::for_home(home)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    pub max_steps: Option<u64>,
    pub max_tokens: Option<u64>,
    pub max_seconds: Option<u64>,
    pub max_processes_per_tree: usize,
    pub max_processes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitConfig {
    pub call_timeout_secs: f64,
    pub memory_mb: usize,
}

/// `[approvals]`: which calls wait for the operator (see
/// `aos_kernel::approval`). `mode` is the preset of processes started
/// without `--approve`; `rules` come before the preset's (first match wins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalConfig {
    /// `never`, `ask-dangerous` or `ask-all`.
    pub mode: String,
    /// An approval not answered in this time is a denial.
    pub timeout_secs: u64,
    pub rules: Vec<aos_kernel::approval::Rule>,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        ApprovalConfig { mode: "never".into(), timeout_secs: 600, rules: Vec::new() }
    }
}

impl ApprovalConfig {
    /// The policy of a process started with `--approve mode` (`None`: `mode` of aos.toml).
    pub fn policy(&self, mode: Option<&str>) -> Result<aos_kernel::approval::Policy> {
        let mut p = aos_kernel::approval::Policy::preset(mode.unwrap_or(&self.mode)).map_err(anyhow::Error::msg)?;
        let mut rules = self.rules.clone();
        rules.append(&mut p.rules);
        p.rules = rules;
        Ok(p)
    }
}

/// `[control]`: where else the control API is served.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// A loopback `IP:PORT` (port 0 = any free port; see `aos kernel status`).
    pub tcp: Option<String>,
}

impl ControlConfig {
    /// The TCP address to listen on, refusing anything but loopback.
    pub fn tcp_addr(&self) -> Result<Option<std::net::SocketAddr>> {
        let Some(t) = self.tcp.as_deref().filter(|t| !t.is_empty()) else { return Ok(None) };
        let addr: std::net::SocketAddr = t
            .parse()
            .map_err(|_| anyhow::anyhow!("`[control] tcp = {t:?}` is not an IP:PORT address (e.g. 127.0.0.1:7878)"))?;
        if !addr.ip().is_loopback() {
            anyhow::bail!(
                "`[control] tcp = {t:?}` is not a loopback address: the control API may only listen on 127.0.0.1 or ::1"
            );
        }
        Ok(Some(addr))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    pub fsync: bool,
    pub rotate_mib: u64,
}

impl JournalConfig {
    /// The file journal's options (archives kept by the `[retention]` rules).
    pub fn to_options(&self, retention: &RetentionConfig) -> crate::journal::JournalOptions {
        let mut o = crate::journal::JournalOptions::new(self.fsync);
        o.rotate_bytes = self.rotate_mib.max(1) << 20;
        o.max_archived = retention.max_archived_journals;
        o.archive_ttl = retention.ended_ttl();
        o
    }
}

/// `[retention]`: how many ended processes the kernel keeps and for how
/// long (see `aos_kernel::table`), and the same rules for the journals in
/// `journal/archive/` (see `journal::prune_archive`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    pub max_ended: usize,
    pub ended_ttl_secs: u64,
    pub max_archived_journals: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        let k = aos_kernel::Retention::default();
        RetentionConfig { max_ended: k.max_ended, ended_ttl_secs: k.ended_ttl.as_secs(), max_archived_journals: 64 }
    }
}

impl RetentionConfig {
    pub fn to_kernel(&self) -> aos_kernel::Retention {
        aos_kernel::Retention { max_ended: self.max_ended, ended_ttl: self.ended_ttl() }
    }

    pub fn ended_ttl(&self) -> Duration {
        Duration::from_secs(self.ended_ttl_secs)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// `IP:PORT`, or `off` (or empty) for no listener.
    pub listen: String,
    pub allow_non_loopback: bool,
    pub max_body_bytes: usize,
    pub timeout_secs: f64,
    pub signature_tolerance_secs: u64,
    pub allow_secret_header: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        let auth = aos_kernel::WebhookAuth::default();
        WebhookConfig {
            listen: "127.0.0.1:0".into(),
            allow_non_loopback: false,
            max_body_bytes: 1 << 20,
            timeout_secs: 30.0,
            signature_tolerance_secs: auth.tolerance.as_secs(),
            allow_secret_header: auth.allow_secret_header,
        }
    }
}

impl WebhookConfig {
    /// How the kernel authenticates requests.
    pub fn auth(&self) -> aos_kernel::WebhookAuth {
        aos_kernel::WebhookAuth {
            tolerance: Duration::from_secs(self.signature_tolerance_secs),
            allow_secret_header: self.allow_secret_header,
        }
    }

    /// The address to listen on (`None` = webhooks disabled), refusing a
    /// non-loopback address unless `allow_non_loopback` is set.
    pub fn listen_addr(&self) -> Result<Option<std::net::SocketAddr>> {
        let l = self.listen.trim();
        if l.is_empty() || l.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let addr: std::net::SocketAddr = l.parse().map_err(|_| {
            anyhow::anyhow!("webhooks.listen = {l:?} is not IP:PORT; use e.g. \"127.0.0.1:8787\" (or \"off\")")
        })?;
        if !addr.ip().is_loopback() && !self.allow_non_loopback {
            anyhow::bail!(
                "webhooks.listen = {l:?} is not a loopback address; webhooks listen on 127.0.0.1 or ::1 unless \
                 `webhooks.allow_non_loopback = true` (AOS_WEBHOOK_ALLOW_NON_LOOPBACK=1) is set"
            );
        }
        Ok(Some(addr))
    }
}

/// `[spawn]`: the providers and models a model may choose for a child
/// (`aos_kernel::SpawnPolicy`; by default only its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpawnSettings {
    pub providers: Vec<String>,
    pub models: Vec<String>,
    pub model_dir: Option<PathBuf>,
    pub max_model_file_mb: u64,
}

impl Default for SpawnSettings {
    fn default() -> Self {
        SpawnSettings { providers: Vec::new(), models: Vec::new(), model_dir: None, max_model_file_mb: 8192 }
    }
}

impl SpawnSettings {
    /// The kernel's policy; a relative `model_dir` is under `home`.
    pub fn to_kernel(&self, home: &Path) -> aos_kernel::SpawnPolicy {
        aos_kernel::SpawnPolicy {
            providers: self.providers.clone(),
            models: self.models.clone(),
            model_dir: self.model_dir.as_ref().map(|d| home.join(d)),
            max_model_file_bytes: self.max_model_file_mb.saturating_mul(1 << 20),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderSettings {
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub timeout_secs: Option<u64>,
    pub max_retries: Option<u32>,
    /// Stream replies (server-sent events) so `aos logs -f` shows them as
    /// they are generated (default: `aos_providers::DEFAULT_STREAM`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// How syscalls reach this provider's models: `native` (the API's tool
    /// calling), `text` (`[SYS_CALL::NAME] {json}`) or `auto` (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_mode: Option<aos_abi::ToolMode>,
    /// Per model: `tool_modes = { "llama3.2" = "text" }`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tool_modes: BTreeMap<String, aos_abi::ToolMode>,
    /// Anything else (kept so that `config show` can display it, masked).
    #[serde(flatten)]
    pub extra: toml::Table,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            provider: None,
            model: None,
            base_url: None,
            model_concurrency: 4,
            context_window: 8192,
            default_grants: DEFAULT_GRANTS.iter().map(|g| g.to_string()).collect(),
            budgets: BudgetConfig::default(),
            limits: LimitConfig::default(),
            journal: JournalConfig::default(),
            retention: RetentionConfig::default(),
            control: ControlConfig::default(),
            net: NetSettings::default(),
            sandbox: SandboxSettings::default(),
            webhooks: WebhookConfig::default(),
            spawn: SpawnSettings::default(),
            approvals: ApprovalConfig::default(),
            providers: BTreeMap::new(),
            drivers: BTreeMap::new(),
            memory: Default::default(),
            mcp: Default::default(),
            telemetry: Default::default(),
        }
    }
}

impl Default for BudgetConfig {
    fn default() -> Self {
        let k = aos_kernel::KernelConfig::new("");
        BudgetConfig {
            max_steps: Some(50),
            max_tokens: None,
            max_seconds: None,
            max_processes_per_tree: k.max_processes_per_tree,
            max_processes: k.max_processes,
        }
    }
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig { call_timeout_secs: 5.0, memory_mb: 64 }
    }
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig { fsync: true, rotate_mib: 32 }
    }
}

impl Config {
    /// Reads `{home}/aos.toml` (if present) and applies environment overrides.
    pub fn load(home: &Path) -> Result<Config> {
        Self::load_with_env(home, |k| std::env::var(k).ok())
    }

    pub fn load_with_env(home: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let path = home.join("aos.toml");
        let mut cfg = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<Config>(&text)
                .with_context(|| format!("invalid config {}; see `aos config show` for the keys", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        cfg.apply_env(env)?;
        cfg.validate().with_context(|| format!("invalid configuration ({} and AOS_* variables)", path.display()))?;
        Ok(cfg)
    }

    /// Names that every spawn would trip over are refused when the config
    /// is loaded: the default provider and the default grants.
    fn validate(&self) -> Result<()> {
        self.approvals.policy(None).context("`[approvals] mode` (AOS_APPROVE)")?;
        if let Some(p) = &self.provider {
            aos_providers::check_provider_name(p).context("`provider` (AOS_PROVIDER)")?;
        }
        // Syscall names used as permissions (`FS_READ`) are known only to the
        // syscall sources: they pass here and are resolved at spawn.
        let syscall_like = |g: &str| g.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        aos_abi::CapabilitySet::parse_with(&self.default_grants, &|g| syscall_like(g).then(Vec::new))
            .context("`default_grants` (AOS_GRANTS)")?;
        if let Some(g) = &self.mcp.serve.max_grants {
            aos_abi::CapabilitySet::parse(g).context("`[mcp.serve] max_grants`")?;
        }
        Ok(())
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<()> {
        fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T> {
            v.trim().parse::<T>().map_err(|_| anyhow::anyhow!("environment variable {name}={v:?} is not a valid number"))
        }
        // The standard OTEL_* variables override `[telemetry]`.
        self.telemetry.apply_env(&env).context("[telemetry] (OTEL_* environment variables)")?;
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        if let Some(v) = get("AOS_APPROVE") {
            self.approvals.mode = v;
        }
        if let Some(v) = get("AOS_PROVIDER") {
            self.provider = Some(v);
        }
        if let Some(v) = get("AOS_MODEL") {
            self.model = Some(v);
        }
        if let Some(v) = get("AOS_BASE_URL") {
            self.base_url = Some(v);
        }
        if let Some(v) = get("AOS_MODEL_CONCURRENCY") {
            self.model_concurrency = num("AOS_MODEL_CONCURRENCY", &v)?;
        }
        if let Some(v) = get("AOS_CONTEXT_WINDOW") {
            self.context_window = num("AOS_CONTEXT_WINDOW", &v)?;
        }
        if let Some(v) = get("AOS_GRANTS") {
            self.default_grants = v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        }
        if let Some(v) = get("AOS_MAX_STEPS") {
            self.budgets.max_steps = Some(num("AOS_MAX_STEPS", &v)?);
        }
        if let Some(v) = get("AOS_MAX_TOKENS") {
            self.budgets.max_tokens = Some(num("AOS_MAX_TOKENS", &v)?);
        }
        if let Some(v) = get("AOS_MAX_SECONDS") {
            self.budgets.max_seconds = Some(num("AOS_MAX_SECONDS", &v)?);
        }
        if let Some(v) = get("AOS_MAX_PROCESSES_PER_TREE") {
            self.budgets.max_processes_per_tree = num("AOS_MAX_PROCESSES_PER_TREE", &v)?;
        }
        if let Some(v) = get("AOS_MAX_PROCESSES") {
            self.budgets.max_processes = num("AOS_MAX_PROCESSES", &v)?;
        }
        if let Some(v) = get("AOS_DRIVER_TIMEOUT_SECS") {
            self.limits.call_timeout_secs = num("AOS_DRIVER_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = get("AOS_DRIVER_MEMORY_MB") {
            self.limits.memory_mb = num("AOS_DRIVER_MEMORY_MB", &v)?;
        }
        if let Some(v) = get("AOS_CONTROL_TCP") {
            self.control.tcp = Some(v);
        }
        if let Some(v) = get("AOS_NET_ALLOW") {
            self.net.allow = v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        }
        if let Some(v) = get("AOS_SANDBOX_IMAGE") {
            self.sandbox.image = v;
        }
        self.memory.apply_env(get);
        if let Some(v) = get("AOS_JOURNAL_FSYNC") {
            self.journal.fsync = !matches!(v.as_str(), "0" | "false" | "no" | "off");
        }
        if let Some(v) = get("AOS_JOURNAL_ROTATE_MIB") {
            self.journal.rotate_mib = num("AOS_JOURNAL_ROTATE_MIB", &v)?;
        }
        if let Some(v) = get("AOS_RETENTION_MAX_ENDED") {
            self.retention.max_ended = num("AOS_RETENTION_MAX_ENDED", &v)?;
        }
        if let Some(v) = get("AOS_RETENTION_ENDED_TTL_SECS") {
            self.retention.ended_ttl_secs = num("AOS_RETENTION_ENDED_TTL_SECS", &v)?;
        }
        if let Some(v) = get("AOS_RETENTION_MAX_ARCHIVED_JOURNALS") {
            self.retention.max_archived_journals = num("AOS_RETENTION_MAX_ARCHIVED_JOURNALS", &v)?;
        }
        if let Some(v) = get("AOS_WEBHOOK_LISTEN") {
            self.webhooks.listen = v;
        }
        if let Some(v) = get("AOS_WEBHOOK_ALLOW_NON_LOOPBACK") {
            self.webhooks.allow_non_loopback = matches!(v.as_str(), "1" | "true" | "yes" | "on");
        }
        if let Some(v) = get("AOS_WEBHOOK_MAX_BODY_BYTES") {
            self.webhooks.max_body_bytes = num("AOS_WEBHOOK_MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = get("AOS_WEBHOOK_TIMEOUT_SECS") {
            self.webhooks.timeout_secs = num("AOS_WEBHOOK_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = get("AOS_WEBHOOK_SIGNATURE_TOLERANCE_SECS") {
            self.webhooks.signature_tolerance_secs = num("AOS_WEBHOOK_SIGNATURE_TOLERANCE_SECS", &v)?;
        }
        if let Some(v) = get("AOS_WEBHOOK_ALLOW_SECRET_HEADER") {
            self.webhooks.allow_secret_header = matches!(v.as_str(), "1" | "true" | "yes" | "on");
        }
        Ok(())
    }

    /// The provider of a spawn that names none: `provider`, else `local`
    /// (the embedded offline model).
    pub fn effective_provider(&self) -> String {
        self.provider.clone().filter(|p| !p.trim().is_empty()).unwrap_or_else(|| "local".to_string())
    }

    /// The model of a spawn that names none for `provider`: `model`, else
    /// `default` for `local`; `None` when the spawn must name one.
    pub fn effective_model(&self, provider: &str) -> Option<String> {
        self.model
            .clone()
            .filter(|m| !m.trim().is_empty())
            .or_else(|| (provider == "local").then(|| "default".to_string()))
    }

    /// The provider, model and base URL of a new root process, from what
    /// the request names (`aos spawn`/`aos run` flags, a `/v1/spawn` body)
    /// and this configuration: `provider` (else `local`), `model` (else
    /// `default` for `local`), the base URL of `[providers.NAME]`, else the
    /// top-level `base_url` when it is that provider's. The provider name
    /// is checked first, so a misspelt one is the error, not the model.
    pub fn resolve_model(
        &self,
        provider: Option<&str>,
        model: Option<&str>,
        base_url: Option<&str>,
    ) -> Result<(String, String, Option<String>), aos_providers::ProviderError> {
        let given = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
        let provider = given(provider).unwrap_or_else(|| self.effective_provider());
        aos_providers::check_provider_name(&provider)?;
        let provider = provider.to_ascii_lowercase();
        let Some(model) = given(model).or_else(|| self.effective_model(&provider)) else {
            return Err(aos_providers::ProviderError::Other(format!(
                "no model given for provider `{provider}`: pass --model or set `model` in aos.toml (AOS_MODEL)"
            )));
        };
        let base_url = given(base_url).or_else(|| {
            self.providers.get(&provider).and_then(|p| p.base_url.clone()).or_else(|| {
                let own = self.provider.as_deref().is_some_and(|p| p.trim().eq_ignore_ascii_case(&provider));
                if own { self.base_url.clone() } else { None }
            })
        });
        Ok((provider, model, base_url))
    }

    /// The effective config as JSON, secrets masked (see [`mask_json`]),
    /// with the default provider and model filled in and unset options as
    /// `null`. What `GET /v1/config` and `aos config show --json` give.
    pub fn shown(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        mask_json(&mut v, "");
        let provider = self.effective_provider();
        v["provider"] = serde_json::Value::String(provider.clone());
        v["model"] = self.effective_model(&provider).map(serde_json::Value::String).unwrap_or_default();
        v
    }

    /// SHA-256 of the whole effective config, secrets included: two configs
    /// with the same digest behave the same (the daemon reports the digest
    /// of what it loaded; secrets themselves never leave it).
    pub fn digest(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(serde_json::to_vec(self).unwrap_or_default()))
    }

    /// The effective config as TOML, with secrets masked: every string value
    /// whose key contains `key`, `token` or `secret` is shown as `********`
    /// (except `*_env` keys, which only name an environment variable);
    /// defaults included, unset options as comments saying what unset means.
    pub fn show(&self) -> String {
        let mut s = String::from("# effective configuration (defaults, aos.toml, AOS_* environment overrides)\n");
        s.push_str(&render_toml(&self.shown()));
        s
    }
}

/// Adds (or replaces) `[mcp.servers.NAME]` in `{home}/aos.toml`, keeping
/// the rest of the file as written (comments included).
pub fn set_mcp_server(home: &Path, name: &str, server: &aos_mcp::ServerConfig) -> Result<()> {
    edit_toml(home, |doc| {
        let table: toml_edit::DocumentMut = toml::to_string(server)
            .context("cannot write the server's table")?
            .parse()
            .context("cannot write the server's table")?;
        let mcp = doc.entry("mcp").or_insert_with(|| toml_edit::Item::Table(implicit_table()));
        let mcp = mcp.as_table_mut().context("`mcp` in aos.toml is not a table")?;
        let servers = mcp.entry("servers").or_insert_with(|| toml_edit::Item::Table(implicit_table()));
        let servers = servers.as_table_mut().context("`mcp.servers` in aos.toml is not a table")?;
        servers.insert(name, toml_edit::Item::Table(table.as_table().clone()));
        Ok(())
    })
}

/// Removes `[mcp.servers.NAME]` from `{home}/aos.toml`; whether it was there.
pub fn remove_mcp_server(home: &Path, name: &str) -> Result<bool> {
    let mut removed = false;
    edit_toml(home, |doc| {
        if let Some(servers) = doc.get_mut("mcp").and_then(|m| m.get_mut("servers")).and_then(|s| s.as_table_like_mut()) {
            removed = servers.remove(name).is_some();
        }
        Ok(())
    })?;
    Ok(removed)
}

fn implicit_table() -> toml_edit::Table {
    let mut t = toml_edit::Table::new();
    t.set_implicit(true);
    t
}

/// Reads `{home}/aos.toml` (or an empty document), applies `f`, checks the
/// result still loads as a [`Config`], and writes it atomically.
fn edit_toml(home: &Path, f: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<()>) -> Result<()> {
    let path = home.join("aos.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut doc: toml_edit::DocumentMut = text.parse().with_context(|| format!("{} is not valid TOML", path.display()))?;
    f(&mut doc)?;
    let out = doc.to_string();
    toml::from_str::<Config>(&out).with_context(|| format!("the edited {} would not load", path.display()))?;
    std::fs::create_dir_all(home).with_context(|| format!("cannot create {}", home.display()))?;
    let tmp = home.join(".aos.toml.tmp");
    std::fs::write(&tmp, out).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// What an unset option means, by its dotted key (for [`render_toml`]).
fn unset_meaning(key: &str) -> &'static str {
    match key {
        "model" => "each spawn must give --model",
        "base_url" => "the provider's own default",
        "budgets.max_steps" | "budgets.max_tokens" | "budgets.max_seconds" => "unlimited",
        "control.tcp" => "the Unix socket only",
        "sandbox.docker_host" => "$DOCKER_HOST, else unix:///var/run/docker.sock",
        k if k.ends_with(".timeout_secs") => "120",
        k if k.ends_with(".max_retries") => "3",
        k if k.ends_with(".api_key_env") => "the provider's usual variable, e.g. OPENAI_API_KEY",
        k if k.ends_with(".base_url") => "the provider's own default",
        _ => "default",
    }
}

/// Renders a JSON config (as [`Config::shown`] makes it) as TOML: scalars
/// and arrays of each table under its `[header]`, then its sub-tables;
/// `null` (unset) options as `# key = (unset: meaning)` comments.
pub fn render_toml(v: &serde_json::Value) -> String {
    fn scalar(v: &serde_json::Value) -> Option<String> {
        let t: toml::Value = toml::Value::try_from(v).ok()?;
        Some(t.to_string())
    }
    fn table(out: &mut String, path: &str, map: &serde_json::Map<String, serde_json::Value>) {
        let mut lines = String::new();
        for (k, v) in map {
            let key = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            match v {
                serde_json::Value::Object(_) => {}
                serde_json::Value::Null => lines.push_str(&format!("# {k} = (unset: {})\n", unset_meaning(&key))),
                other => match scalar(other) {
                    Some(s) => lines.push_str(&format!("{} = {s}\n", toml_key(k))),
                    None => lines.push_str(&format!("# {k} = {other}\n")),
                },
            }
        }
        if !path.is_empty() && (!lines.is_empty() || map.is_empty()) {
            out.push_str(&format!("\n[{path}]\n"));
        }
        out.push_str(&lines);
        for (k, v) in map {
            if let serde_json::Value::Object(m) = v {
                let sub = if path.is_empty() { toml_key(k) } else { format!("{path}.{}", toml_key(k)) };
                table(out, &sub, m);
            }
        }
    }
    fn toml_key(k: &str) -> String {
        if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            k.to_string()
        } else {
            format!("{k:?}")
        }
    }
    let mut out = String::new();
    if let serde_json::Value::Object(m) = v {
        table(&mut out, "", m);
    }
    out
}

/// Masks secret-looking values of a JSON config in place (the rule of [`mask`]).
pub fn mask_json(v: &mut serde_json::Value, key: &str) {
    let k = key.to_ascii_lowercase();
    let secret = (k.contains("key") || k.contains("token") || k.contains("secret")) && !k.ends_with("_env");
    match v {
        serde_json::Value::String(s) if secret => *s = "********".into(),
        serde_json::Value::Object(t) => {
            for (name, v) in t.iter_mut() {
                mask_json(v, child_key(&k, name));
            }
        }
        serde_json::Value::Array(a) if secret => {
            for x in a.iter_mut() {
                if let serde_json::Value::String(s) = x {
                    *s = "********".into();
                }
            }
        }
        _ => {}
    }
}

/// The dotted keys whose values differ between two JSON configs, with both
/// values (`old`, `new`), in key order.
pub fn diff(old: &serde_json::Value, new: &serde_json::Value) -> Vec<(String, serde_json::Value, serde_json::Value)> {
    fn flat(v: &serde_json::Value, path: String, out: &mut std::collections::BTreeMap<String, serde_json::Value>) {
        match v {
            serde_json::Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    flat(v, if path.is_empty() { k.clone() } else { format!("{path}.{k}") }, out);
                }
            }
            other => {
                out.insert(path, other.clone());
            }
        }
    }
    let (mut a, mut b) = (Default::default(), Default::default());
    flat(old, String::new(), &mut a);
    flat(new, String::new(), &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(k).cloned().unwrap_or_default(), b.get(k).cloned().unwrap_or_default());
            (x != y).then(|| (k.clone(), x, y))
        })
        .collect()
}

/// The key a value of table `parent` is masked by: its own name, except
/// in a `headers` table (`[telemetry] headers`), whose values are
/// credentials whatever the header is called (`authorization`).
fn child_key<'a>(parent: &str, name: &'a str) -> &'a str {
    if parent == "headers" {
        "secret"
    } else {
        name
    }
}

/// Masks secret-looking string values in place.
pub fn mask(v: &mut toml::Value, key: &str) {
    let k = key.to_ascii_lowercase();
    let secret = (k.contains("key") || k.contains("token") || k.contains("secret")) && !k.ends_with("_env");
    match v {
        toml::Value::String(s) if secret => *s = "********".into(),
        toml::Value::Table(t) => {
            for (name, v) in t.iter_mut() {
                mask(v, child_key(&k, name));
            }
        }
        toml::Value::Array(a) if secret => {
            for x in a.iter_mut() {
                if let toml::Value::String(s) = x {
                    *s = "********".into();
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_env_overrides() {
        let d = tempfile::tempdir().unwrap();
        let c = Config::load_with_env(d.path(), |_| None).unwrap();
        assert_eq!(c, Config::default());
        std::fs::write(
            d.path().join("aos.toml"),
            "provider = \"openai\"\nmodel = \"m\"\n[budgets]\nmax_steps = 7\n[providers.openai]\napi_key_env = \"MY_KEY\"\napi_key = \"sk-secret\"\n",
        )
        .unwrap();
        let c = Config::load_with_env(d.path(), |k| (k == "AOS_MODEL").then(|| "m2".to_string())).unwrap();
        assert_eq!(c.provider.as_deref(), Some("openai"));
        assert_eq!(c.model.as_deref(), Some("m2"));
        assert_eq!(c.budgets.max_steps, Some(7));
        assert_eq!((c.budgets.max_processes_per_tree, c.budgets.max_processes), (64, 10_000));
        // The default grant reaches neither the network nor a shell.
        assert_eq!(c.default_grants, ["fs:rw", "timers", "ipc"]);
        assert_eq!(c.net, NetSettings::default());
        let c = Config::load_with_env(d.path(), |k| (k == "AOS_MAX_PROCESSES_PER_TREE").then(|| "8".to_string())).unwrap();
        let kc = crate::stack::kernel_config(d.path(), &c);
        assert_eq!((kc.max_processes_per_tree, kc.max_processes), (8, 10_000));
        let shown = c.show();
        assert!(!shown.contains("sk-secret"), "{shown}");
        assert!(shown.contains("MY_KEY"), "{shown}");
        assert!(shown.contains("********"), "{shown}");
    }

    #[test]
    fn telemetry_is_shown_with_headers_masked_and_otel_variables_win() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("aos.toml"),
            "[telemetry]\nenabled = true\nendpoint = \"http://file:4318\"\nheaders = { authorization = \"Bearer file-secret\" }\n",
        )
        .unwrap();
        let env = |k: &str| match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://env:4318".to_string()),
            "OTEL_EXPORTER_OTLP_HEADERS" => Some("x-api=env-secret".to_string()),
            "OTEL_SERVICE_NAME" => Some("agents".to_string()),
            _ => None,
        };
        let c = Config::load_with_env(d.path(), env).unwrap();
        assert_eq!(c.telemetry.traces_url(), "http://env:4318/v1/traces");
        assert_eq!(c.telemetry.service_name, "agents");
        let shown = c.show();
        assert!(shown.contains("[telemetry]") && shown.contains("http://env:4318"), "{shown}");
        assert!(!shown.contains("file-secret") && !shown.contains("env-secret"), "{shown}");
        let json = c.shown().to_string();
        assert!(!json.contains("file-secret") && !json.contains("env-secret"), "{json}");
        // gRPC is refused with what to do.
        let e = Config::load_with_env(d.path(), |k| (k == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| "grpc".to_string()))
            .unwrap_err();
        assert!(format!("{e:#}").contains("http/protobuf"), "{e:#}");
    }

    #[test]
    fn show_names_the_defaults_and_unset_options() {
        let d = tempfile::tempdir().unwrap();
        let c = Config::load_with_env(d.path(), |_| None).unwrap();
        let shown = c.show();
        assert!(shown.contains("provider = \"local\"\nmodel = \"default\"\n"), "{shown}");
        assert!(shown.contains("# max_tokens = (unset: unlimited)"), "{shown}");
        assert!(shown.contains("[budgets]\nmax_steps = 50"), "{shown}");
        // What is shown is valid TOML that loads back to the same configuration.
        std::fs::write(d.path().join("aos.toml"), shown.replace("model = \"default\"\n", "")).unwrap();
        assert_eq!(Config::load_with_env(d.path(), |_| None).unwrap().digest(), Config { provider: Some("local".into()), ..c.clone() }.digest());
        let c = Config { provider: Some("openai".into()), ..Config::default() };
        assert!(c.show().contains("# model = (unset: each spawn must give --model)"), "{}", c.show());
        let changes = diff(&Config::default().shown(), &c.shown());
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[0].0, "model");
        assert_eq!((changes[1].0.as_str(), changes[1].2.as_str()), ("provider", Some("openai")));
        assert_ne!(c.digest(), Config::default().digest());
    }

    #[test]
    fn net_and_sandbox_sections_reach_the_runtime() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("aos.toml"),
            "[net]\nallow = [\"10.0.0.0/8\"]\nread_timeout_secs = 2.5\nca_files = [\"/etc/ca.pem\"]\n\
             [sandbox]\nimage = \"mine:1\"\nmemory_mb = 512\npids_limit = 64\n",
        )
        .unwrap();
        let c = Config::load_with_env(d.path(), |k| (k == "AOS_SANDBOX_IMAGE").then(|| "theirs:2".to_string())).unwrap();
        let net = c.net.to_runtime();
        assert_eq!(net.allow, vec!["10.0.0.0/8".to_string()]);
        assert_eq!(net.read_timeout, Duration::from_millis(2500));
        assert_eq!(net.ca_files, vec![PathBuf::from("/etc/ca.pem")]);
        assert_eq!(net.max_body_bytes, 5_000_000);
        let sb = c.sandbox.to_runtime(d.path());
        assert_eq!(sb.image, "theirs:2");
        assert_eq!(sb.memory_bytes, 512 << 20);
        assert_eq!(sb.pids_limit, 64);
        assert_eq!(sb.kernel_label, aos_sandbox::docker::kernel_label_for(d.path()));
        let c = Config::load_with_env(d.path(), |k| (k == "AOS_NET_ALLOW").then(|| "127.0.0.1, ::1".to_string())).unwrap();
        assert_eq!(c.net.allow, vec!["127.0.0.1".to_string(), "::1".to_string()]);
    }

    #[test]
    fn control_tcp_must_be_loopback() {
        let c = |t: &str| ControlConfig { tcp: Some(t.into()) }.tcp_addr();
        assert_eq!(c("127.0.0.1:7878").unwrap(), Some("127.0.0.1:7878".parse().unwrap()));
        assert!(c("[::1]:0").unwrap().is_some());
        assert!(c("0.0.0.0:7878").unwrap_err().to_string().contains("not a loopback address"));
        assert!(c("localhost").unwrap_err().to_string().contains("IP:PORT"));
        assert_eq!(ControlConfig::default().tcp_addr().unwrap(), None);
    }

    #[test]
    fn tool_modes_per_provider_and_model_reach_the_kernel() {
        use aos_abi::ToolMode;
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("aos.toml"),
            "[providers.openai]\ntool_mode = \"native\"\ntool_modes = { \"llama3.2\" = \"text\" }\n",
        )
        .unwrap();
        let c = Config::load_with_env(d.path(), |_| None).unwrap();
        let kc = crate::stack::kernel_config(d.path(), &c);
        assert_eq!(kc.tool_modes.mode_for("openai", "gpt-4o"), ToolMode::Native);
        assert_eq!(kc.tool_modes.mode_for("openai", "llama3.2"), ToolMode::Text);
        assert_eq!(kc.tool_modes.mode_for("anthropic", "claude"), ToolMode::Auto);
        std::fs::write(d.path().join("aos.toml"), "[providers.openai]\ntool_mode = \"tools\"\n").unwrap();
        let e = format!("{:#}", Config::load_with_env(d.path(), |_| None).unwrap_err());
        assert!(e.contains("tool_mode") || e.contains("unknown variant"), "{e}");
    }

    #[test]
    fn webhook_listen_address_is_loopback_unless_allowed() {
        let mut w = WebhookConfig::default();
        assert!(w.listen_addr().unwrap().unwrap().ip().is_loopback());
        w.listen = "[::1]:8787".into();
        assert_eq!(w.listen_addr().unwrap().unwrap().port(), 8787);
        w.listen = "off".into();
        assert!(w.listen_addr().unwrap().is_none());
        w.listen = "0.0.0.0:8787".into();
        assert!(w.listen_addr().unwrap_err().to_string().contains("allow_non_loopback"));
        w.allow_non_loopback = true;
        assert!(w.listen_addr().unwrap().is_some());
        w.listen = "localhost:80".into();
        assert!(w.listen_addr().unwrap_err().to_string().contains("IP:PORT"));
        let d = tempfile::tempdir().unwrap();
        let c = Config::load_with_env(d.path(), |k| (k == "AOS_WEBHOOK_TIMEOUT_SECS").then(|| "2.5".to_string())).unwrap();
        assert_eq!(c.webhooks.timeout_secs, 2.5);
        assert_eq!(c.webhooks.auth(), aos_kernel::WebhookAuth::default());
        std::fs::write(d.path().join("aos.toml"), "[webhooks]\nsignature_tolerance_secs = 60\nallow_secret_header = true\n").unwrap();
        let c = Config::load_with_env(d.path(), |_| None).unwrap();
        let kc = crate::stack::kernel_config(d.path(), &c);
        assert_eq!(kc.webhook_auth, aos_kernel::WebhookAuth { tolerance: Duration::from_secs(60), allow_secret_header: true });
    }

    #[test]
    fn retention_section_and_env_overrides() {
        let d = tempfile::tempdir().unwrap();
        let c = Config::load_with_env(d.path(), |_| None).unwrap();
        assert_eq!(c.retention.to_kernel(), aos_kernel::Retention::default());
        assert_eq!((c.retention.max_ended, c.retention.ended_ttl_secs, c.retention.max_archived_journals), (256, 86400, 64));
        std::fs::write(d.path().join("aos.toml"), "[retention]\nmax_ended = 10\nended_ttl_secs = 3600\nmax_archived_journals = 5\n")
            .unwrap();
        let c = Config::load_with_env(d.path(), |_| None).unwrap();
        assert_eq!(c.retention.to_kernel(), aos_kernel::Retention { max_ended: 10, ended_ttl: Duration::from_secs(3600) });
        assert_eq!(c.retention.max_archived_journals, 5);
        let env = |k: &str| match k {
            "AOS_RETENTION_MAX_ENDED" => Some("3".to_string()),
            "AOS_RETENTION_ENDED_TTL_SECS" => Some("0".to_string()),
            "AOS_RETENTION_MAX_ARCHIVED_JOURNALS" => Some("2".to_string()),
            _ => None,
        };
        let c = Config::load_with_env(d.path(), env).unwrap();
        assert_eq!(c.retention, RetentionConfig { max_ended: 3, ended_ttl_secs: 0, max_archived_journals: 2 });
        assert!(c.show().contains("[retention]"), "{}", c.show());
        let e = Config::load_with_env(d.path(), |k| (k == "AOS_RETENTION_MAX_ENDED").then(|| "many".to_string()))
            .unwrap_err();
        assert!(e.to_string().contains("AOS_RETENTION_MAX_ENDED"), "{e}");
        std::fs::write(d.path().join("aos.toml"), "[retention]\nmax_processes = 1\n").unwrap();
        assert!(Config::load_with_env(d.path(), |_| None).is_err());
    }

    #[test]
    fn bad_values_are_reported() {
        let d = tempfile::tempdir().unwrap();
        let e = Config::load_with_env(d.path(), |k| (k == "AOS_GRANTS").then(|| "fs:rw,fs:write".to_string())).unwrap_err();
        assert!(format!("{e:#}").contains("`default_grants` (AOS_GRANTS): unknown capability `fs:write` (did you mean `fs:rw`?)"), "{e:#}");
        let e = Config::load_with_env(d.path(), |k| (k == "AOS_PROVIDER").then(|| "openia".to_string())).unwrap_err();
        assert!(format!("{e:#}").contains("did you mean `openai`?"), "{e:#}");
        std::fs::write(d.path().join("aos.toml"), "[mcp.serve]\nmax_grants = [\"fs:rw\", \"nett\"]\n").unwrap();
        let e = Config::load_with_env(d.path(), |_| None).unwrap_err();
        assert!(format!("{e:#}").contains("`[mcp.serve] max_grants`: unknown capability `nett`"), "{e:#}");
        std::fs::write(d.path().join("aos.toml"), "[mcp.serve]\nmax_grants = [\"net\"]\nallow_remote = true\n").unwrap();
        let c = Config::load_with_env(d.path(), |_| None).unwrap();
        assert_eq!((c.mcp.serve.max_grants.as_deref(), c.mcp.serve.allow_remote), (Some(&["net".to_string()][..]), true));
        std::fs::write(d.path().join("aos.toml"), "nope = 1\n").unwrap();
        assert!(Config::load_with_env(d.path(), |_| None).is_err());
        std::fs::remove_file(d.path().join("aos.toml")).unwrap();
        let e = Config::load_with_env(d.path(), |k| (k == "AOS_MAX_STEPS").then(|| "x".to_string())).unwrap_err();
        assert!(e.to_string().contains("AOS_MAX_STEPS"));
    }

    #[test]
    fn mcp_servers_are_added_and_removed_keeping_the_rest_of_the_file() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("aos.toml"), "# my settings\nmodel_concurrency = 2\n").unwrap();
        let server = aos_mcp::ServerConfig::stdio_on_host("npx", vec!["-y".into(), "@modelcontextprotocol/server-everything".into()]);
        set_mcp_server(home.path(), "everything", &server).unwrap();
        let text = std::fs::read_to_string(home.path().join("aos.toml")).unwrap();
        assert!(text.starts_with("# my settings\nmodel_concurrency = 2\n"), "{text}");
        assert!(text.contains("[mcp.servers.everything]") && text.contains("host = true"), "{text}");
        let cfg = Config::load_with_env(home.path(), |_| None).unwrap();
        assert_eq!(cfg.mcp.servers["everything"], server);
        assert_eq!(cfg.model_concurrency, 2);
        assert!(remove_mcp_server(home.path(), "everything").unwrap());
        assert!(!remove_mcp_server(home.path(), "everything").unwrap());
        let cfg = Config::load_with_env(home.path(), |_| None).unwrap();
        assert!(cfg.mcp.servers.is_empty());
        // A stdio server without `host = true` runs in a container; a mount that does not exist
        // loads (so `aos mcp ls` can say why) but cannot start.
        std::fs::write(home.path().join("aos.toml"), "[mcp.servers.x]\ncommand = \"x\"\nmounts = [{ host = \"/nonexistent/aos\" }]\n").unwrap();
        let cfg = Config::load_with_env(home.path(), |_| None).unwrap();
        let e = cfg.mcp.servers["x"].transport("x", |_| None).unwrap_err().to_string();
        assert!(e.contains("mount `/nonexistent/aos`") && e.contains("does not exist"), "{e}");
        std::fs::write(home.path().join("aos.toml"), "[mcp.servers.x]\ncommand = \"x\"\n").unwrap();
        let cfg = Config::load_with_env(home.path(), |_| None).unwrap();
        assert!(matches!(cfg.mcp.servers["x"].transport("x", |_| None), Ok(aos_mcp::config::Transport::StdioInContainer { .. })));
    }

}
