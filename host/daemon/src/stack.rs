//! The composition root: builds the whole stack of one kernel from its
//! configuration — the driver runtime (with the Docker sandbox engine, the
//! outgoing HTTP policy and long-term memory), the provider registry (the
//! built-in providers, `[providers.NAME]` settings, and the embedded
//! `local` model), the trace exporter (`[telemetry]`, `OTEL_*`) observing
//! the kernel, and the kernel itself. The daemon (`server.rs`) and
//! `aos run` both call [`build`]; `aos run` first applies its flags to the
//! [`Config`] it loaded, so the two never wire the stack differently.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};

use aos_kernel::{Budgets, Kernel, KernelConfig, ProviderFactory};
use aos_providers::{Provider, ProviderConfig, ProviderRegistry};
use aos_runtime::{DriverRuntime, RuntimeConfig};
use aos_sandbox::DockerBackend;

use crate::config::Config;

/// A built kernel and its trace exporter.
pub struct Stack {
    pub kernel: Kernel,
    /// Exports the kernel's traces, when `[telemetry]` (or `OTEL_*`) enables it.
    pub telemetry: Option<aos_telemetry::Telemetry>,
}

impl Stack {
    /// Sends the traces still queued (at most the export timeout); call
    /// after the kernel stopped.
    pub async fn flush_traces(self) {
        if let Some(t) = self.telemetry {
            t.shutdown().await;
        }
    }
}

/// The kernel of `home`, configured by `cfg`, with its driver runtime,
/// providers and trace exporter; pids start above every pid owning
/// long-term memory.
pub async fn build(home: &Path, cfg: &Config) -> Result<Stack> {
    let telemetry = telemetry(cfg)?;
    let runtime = runtime(home, cfg).await?;
    let mut sources: Vec<Arc<dyn aos_abi::SyscallSource>> = vec![runtime];
    if !cfg.mcp.servers.is_empty() {
        sources.push(mcp(home, cfg).await?);
    }
    let mut kc = kernel_config(home, cfg);
    if let Some(t) = &telemetry {
        kc.observer = t.observer();
    }
    let kernel = Kernel::new(kc, sources, providers(cfg));
    kernel.reserve_memory_pids().await;
    Ok(Stack { kernel, telemetry })
}

/// The trace exporter of `[telemetry]` (with the `OTEL_*` variables
/// applied when the config was loaded), started and announced; `None`
/// when traces are off.
pub fn telemetry(cfg: &Config) -> Result<Option<aos_telemetry::Telemetry>> {
    let Some(t) = aos_telemetry::Telemetry::start(&cfg.telemetry).context("invalid [telemetry] settings")? else {
        return Ok(None);
    };
    let content = if t.captures_content() {
        "WITH prompts, replies, tool arguments and results (capture_content = true)"
    } else {
        "without prompts, replies, tool arguments or results"
    };
    tracing::info!(url = %t.url(), "traces go to {} (OTLP/HTTP, service.name {:?}), {content}", t.url(), cfg.telemetry.service_name);
    Ok(Some(t))
}

/// The driver runtime of `home`: `[limits]`, `[drivers.NAME]`, `[net]`,
/// `[sandbox]` (EXEC_CMD runs in Docker; without an engine it fails with an
/// explanation; containers left by a crashed kernel of this home are
/// removed) and `[memory]`.
pub async fn runtime(home: &Path, cfg: &Config) -> Result<Arc<DriverRuntime>> {
    let mut rc = RuntimeConfig::new(home);
    rc.call_timeout = Duration::from_secs_f64(cfg.limits.call_timeout_secs.max(0.001));
    rc.memory_limit = cfg.limits.memory_mb.max(1) << 20;
    for (name, table) in &cfg.drivers {
        if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(table) {
            rc.driver_config.insert(name.clone(), m);
        }
    }
    rc.net = cfg.net.to_runtime();
    rc.container = Some(Arc::new(
        DockerBackend::open(cfg.sandbox.to_runtime(home))
            .await
            .context("invalid Docker endpoint (`[sandbox] docker_host` or $DOCKER_HOST)")?,
    ));
    // MEM_*: the embedder and the vector store (embedded under $AOS_HOME/memory by default).
    rc.memory = Some(cfg.memory.build(home).context("invalid [memory] settings")?);
    DriverRuntime::open(rc).await.context("cannot start the driver runtime")
}

/// The MCP servers of `[mcp.servers.NAME]`, started and their tools listed.
/// Stdio servers run in containers of the `[sandbox]` image (labelled with
/// this home, like EXEC_CMD's); each server's place is announced: a
/// container (image, network, mounts) in the log, a server that runs on the
/// host as a warning (in the daemon's log and on `aos run`'s stderr); one
/// that fails to start is reported,
/// offers no tools (the kernel still starts) and is started again in the
/// background until it starts ([`aos_mcp::McpSource::retry_in_background`]); a table that cannot be used
/// (e.g. a mount that does not exist) stops the kernel's start.
pub async fn mcp(home: &Path, cfg: &Config) -> Result<Arc<aos_mcp::McpSource>> {
    let net = aos_mcp::NetPolicy::new(cfg.net.to_runtime()).context("invalid [net] settings")?;
    let source = aos_mcp::McpSource::open(&cfg.mcp, |k| std::env::var(k).ok(), Arc::new(net), cfg.sandbox.to_runtime(home))
        .context("invalid [mcp.servers] settings")?;
    for s in source.servers() {
        if s.config.host {
            tracing::warn!(server = %s.name, "MCP server `{}` runs ON THE HOST, outside any sandbox: {}", s.name, s.describe());
        } else if s.config.command.is_some() {
            tracing::info!(server = %s.name, "MCP server `{}` runs in a sandbox container: {}", s.name, s.describe());
        }
    }
    for (name, r) in source.start_all().await {
        match r {
            Ok(n) => tracing::info!(server = %name, "MCP server `{name}` started: {n} tools"),
            Err(e) => {
                tracing::warn!(server = %name, "{e}; its tools are not offered until it starts (trying again in 5 s, then less often, up to every 5 min)");
                source.retry_in_background(&name, Duration::from_secs(5), Duration::from_secs(300));
            }
        }
    }
    Ok(Arc::new(source))
}

/// The kernel's settings: concurrency, compaction window, default budgets,
/// process caps, retention of ended processes, webhook authentication, what a
/// model may choose for a child.
pub fn kernel_config(home: &Path, cfg: &Config) -> KernelConfig {
    let mut kc = KernelConfig::new(home);
    kc.model_concurrency = cfg.model_concurrency.max(1);
    kc.context_window = cfg.context_window.max(256);
    kc.default_budgets = Budgets {
        max_steps: cfg.budgets.max_steps,
        max_tokens: cfg.budgets.max_tokens,
        max_wall_time: cfg.budgets.max_seconds.map(Duration::from_secs),
    };
    kc.retention = cfg.retention.to_kernel();
    kc.spawn = cfg.spawn.to_kernel(home);
    kc.max_processes_per_tree = cfg.budgets.max_processes_per_tree.max(1);
    kc.max_processes = cfg.budgets.max_processes.max(1);
    kc.webhook_auth = cfg.webhooks.auth();
    // Checked when the config was loaded; were it not, nothing runs unasked.
    kc.approvals = cfg.approvals.policy(None).unwrap_or_else(|_| aos_kernel::approval::Policy::ask_all());
    kc.approval_timeout = Duration::from_secs(cfg.approvals.timeout_secs.max(1));
    for (name, ps) in &cfg.providers {
        if let Some(m) = ps.tool_mode {
            kc.tool_modes.providers.insert(name.clone(), m);
        }
        kc.tool_modes.models.extend(ps.tool_modes.iter().map(|(k, v)| (k.clone(), *v)));
    }
    kc
}

/// Every provider this kernel can use: the built-in ones and `local` (one
/// embedded model per kernel, shared by every `local` process).
pub fn registry() -> ProviderRegistry {
    let mut r = ProviderRegistry::builtin();
    let local: Arc<OnceLock<Arc<dyn Provider>>> = Arc::new(OnceLock::new());
    r.register("local", move |_, _| {
        Ok(local
            .get_or_init(|| Arc::new(aos_llm_local::LocalProvider::new(aos_llm_local::LocalConfig::default())))
            .clone())
    });
    r
}

/// Builds providers from their name and base URL with the per-provider
/// settings of the config (`[providers.NAME]`).
pub fn providers(cfg: &Config) -> ProviderFactory {
    let settings = cfg.providers.clone();
    let registry = registry();
    Arc::new(move |provider: &str, base_url: Option<&str>| {
        // A misspelt name is refused with the closest known one.
        aos_providers::check_provider_name(provider)?;
        let s = settings.get(provider).cloned().unwrap_or_default();
        let mut pc = ProviderConfig::new(provider);
        pc.base_url = base_url.map(str::to_string).or(s.base_url);
        pc.api_key_env = s.api_key_env;
        pc.timeout = s.timeout_secs.map(Duration::from_secs);
        pc.max_retries = s.max_retries;
        pc.stream = s.stream;
        registry.build(&pc)
    })
}
