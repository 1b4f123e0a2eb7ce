//! `aos run`: start a kernel in this process, run one root agent to the end
//! and exit with the agent's exit code. Its log (replies, syscalls with
//! results or errors, events) goes to stderr; stdout gets the agent's answer
//! (what it wrote with `SYS_WRITE_STDOUT`, then its `SYS_EXIT` result), so
//! `aos run … > out` keeps the answer. With `--json`, log entries go to stdout
//! as JSON lines. Ctrl-C (or SIGTERM) kills the agent and removes its sandbox
//! containers before the command exits (130). The daemon-backed `aos spawn`
//! shares the same kernel; `run` needs no daemon.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio::signal::unix::{signal, SignalKind};

use aos_abi::CapabilitySet;
use aos_kernel::{Budgets, ExitStatus, Kernel, KernelConfig, KernelEvent, SpawnRequest};
use aos_runtime::{DriverRuntime, RuntimeConfig};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    aos run 'write a haiku about the sea to haiku.txt, then exit'          (embedded offline model)\n  \
    aos run --provider script --model examples/scripts/haiku.txt 'write a haiku about the sea to haiku.txt'\n  \
    aos run --provider openai --base-url http://127.0.0.1:11434/v1 --model llama3.2 --grant fs:rw 'list the files'\n  \
    OPENAI_API_KEY=... aos run --provider openai --model gpt-4o-mini 'summarise notes.txt'")]
pub struct RunArgs {
    /// What the agent should do.
    pub task: String,
    /// LLM provider: local (the embedded offline model, default), openai (any
    /// OpenAI-compatible server), gemini, anthropic, script.
    #[arg(long, env = "AOS_PROVIDER", default_value = "local")]
    pub provider: String,
    /// Model name (for `local`: `default` or the path of a GGUF file; for
    /// `script`: the script file; for `openai`: the server's model name).
    #[arg(long, env = "AOS_MODEL", default_value = "default")]
    pub model: String,
    /// Base URL of the provider's API (e.g. http://127.0.0.1:11434/v1 for Ollama).
    #[arg(long)]
    pub base_url: Option<String>,
    /// The agent's role, shown in its system prompt.
    #[arg(long, default_value = "a careful, autonomous assistant")]
    pub role: String,
    /// Capability to grant. Default: all built-in capabilities.
    #[arg(long = "grant", short = 'g', value_delimiter = ',', long_help = aos_abi::caps::GRANT_HELP)]
    pub grants: Vec<String>,
    /// Grant nothing (overrides the default of all built-in capabilities).
    #[arg(long, conflicts_with = "grants")]
    pub no_grants: bool,
    /// Workspace directory preopened at /workspace, created if missing
    /// (default: a new one under $AOS_HOME/workspaces).
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    #[arg(long, default_value_t = 50)]
    pub max_steps: u64,
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Wall-time budget in seconds.
    #[arg(long)]
    pub max_seconds: Option<u64>,
    /// Print log entries as JSON lines on stdout (instead of the log on stderr and the answer on stdout).
    #[arg(long)]
    pub json: bool,
    /// Let NET_FETCH reach this non-public host, IP or CIDR range (repeatable).
    #[arg(long = "net-allow")]
    pub net_allow: Vec<String>,
    /// Also trust the root certificates in this PEM file for https (repeatable).
    #[arg(long = "ca-file")]
    pub ca_files: Vec<PathBuf>,
    /// Docker image EXEC_CMD runs in (build the default with `aos sandbox build`).
    #[arg(long, env = "AOS_SANDBOX_IMAGE", default_value = aos_runtime::docker::DEFAULT_IMAGE)]
    pub sandbox_image: String,
}

use super::output::{format_entry, EntryFormat};

pub async fn run(a: RunArgs) -> Result<i32> {
    // Ctrl-C and SIGTERM are handled from here on: the agent is killed and
    // its sandbox removed before the command exits.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle Ctrl-C")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    // The agent's work matters more than a reader that went away: keep running.
    crate::term::keep_going_on_closed_stdout();
    if !a.no_grants {
        super::check_grants(&a.grants)?;
    }
    aos_providers::check_provider_name(&a.provider)?;
    let home = crate::home::aos_home()?;
    let workspace = match &a.workspace {
        Some(w) => Some(super::workspace_dir(w)?),
        None => None,
    };
    let mut rt_config = RuntimeConfig::new(&home);
    rt_config.net.allow = a.net_allow.clone();
    rt_config.net.ca_files = a.ca_files.clone();
    // EXEC_CMD runs in Docker; without an engine it fails with an explanation.
    let docker = aos_runtime::DockerConfig { image: a.sandbox_image.clone(), ..aos_runtime::DockerConfig::for_home(&home) };
    rt_config.container =
        Some(Arc::new(aos_runtime::DockerBackend::open(docker).await.context("invalid Docker endpoint")?));
    // MEM_* and [providers.*]: the same settings as the daemon (aos.toml + AOS_* overrides).
    let cfg = aos_daemon::config::Config::load(&home)?;
    rt_config.memory = Some(cfg.memory.build(&home).context("invalid [memory] settings")?);
    let runtime = DriverRuntime::open(rt_config).await.context("cannot start the driver runtime")?;
    let factory = aos_daemon::server::provider_factory(&cfg);
    let kernel_runtime = runtime.clone();
    let kernel = Kernel::new(KernelConfig::new(&home), runtime, factory);
    kernel.reserve_memory_pids().await;
    let caps = if a.no_grants {
        CapabilitySet::empty()
    } else if a.grants.is_empty() {
        CapabilitySet::all_builtin()
    } else {
        CapabilitySet::parse(&a.grants)?
    };
    let mut events = kernel.subscribe();
    let pid = kernel
        .spawn(SpawnRequest {
            task: a.task,
            role: a.role,
            provider: a.provider,
            model: a.model,
            base_url: a.base_url,
            caps,
            budgets: Budgets {
                max_steps: Some(a.max_steps),
                max_tokens: a.max_tokens,
                max_wall_time: a.max_seconds.map(Duration::from_secs),
            },
            workspace,
            pipe_to: None,
            parent: None,
        })
        .await?;
    if !a.json {
        let info = kernel.info(pid)?;
        errln!(
            "started pid {pid} ({} / {}), workspace {}, capabilities: {}",
            info.provider,
            info.model,
            info.workspace.display(),
            if info.capabilities.is_empty() { "(none)".into() } else { info.capabilities.join(", ") }
        );
    }
    let k = kernel.clone();
    let waiter = tokio::spawn(async move { k.wait(pid).await });
    tokio::pin!(waiter);
    let fmt = EntryFormat { json: a.json, timestamps: false };
    // The log on stderr, the root agent's stdout on stdout (or JSON lines on stdout).
    let show = |entry: &aos_kernel::LogEntry| {
        if a.json {
            out!("{}", format_entry(entry, fmt));
            return;
        }
        errln!("{}", format_entry(entry, fmt).trim_end_matches('\n'));
        if entry.pid == pid {
            if let Some(t) = super::output::stdout_text(entry, false) {
                out!("{t}");
            }
        }
    };
    // Stream the log of every process of this run until the root exits.
    let status = loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(KernelEvent::Entry { entry }) => show(&entry),
                Ok(KernelEvent::Exited { pid: p, status }) if !a.json => {
                    if p != pid { errln!("[{p}] exited: {status}"); }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => errln!("({n} log entries skipped)"),
                Err(_) => {}
            },
            st = &mut waiter => break st.context("the kernel task failed")??,
            _ = sigint.recv() => return interrupted(&kernel, &kernel_runtime, pid, "Ctrl-C", &mut sigint).await,
            _ = sigterm.recv() => return interrupted(&kernel, &kernel_runtime, pid, "SIGTERM", &mut sigint).await,
        }
    };
    // Drain what is already queued.
    while let Ok(ev) = events.try_recv() {
        if let KernelEvent::Entry { entry } = ev {
            show(&entry);
        }
    }
    // Remove this run's sandbox containers.
    kernel_runtime.shutdown().await;
    let code = match &status {
        ExitStatus::Exited { code, result } => {
            if let (Some(r), false) = (result, a.json) {
                outln!("{r}");
            }
            errln!("pid {pid} exited with code {code}{}", result.as_ref().map(|r| format!(": {r}")).unwrap_or_default());
            (*code).clamp(0, 255) as i32
        }
        ExitStatus::Killed => {
            errln!("pid {pid} was killed");
            137
        }
        ExitStatus::Failed { reason } => {
            errln!("pid {pid} failed: {reason}");
            1
        }
    };
    Ok(code)
}

/// After Ctrl-C or SIGTERM: kill the agent (and its children), wait for it
/// to end, remove the sandbox containers, exit 130. A second Ctrl-C exits
/// at once, saying what may be left.
async fn interrupted(
    kernel: &Kernel,
    runtime: &Arc<DriverRuntime>,
    pid: u64,
    why: &str,
    sigint: &mut tokio::signal::unix::Signal,
) -> Result<i32> {
    errln!("\n{why}: killing pid {pid} and removing its sandbox (Ctrl-C again to exit at once)");
    let _ = kernel.kill(pid);
    let cleanup = async {
        let _ = tokio::time::timeout(Duration::from_secs(10), kernel.wait(pid)).await;
        runtime.shutdown().await;
    };
    tokio::select! {
        _ = cleanup => errln!("pid {pid} was killed; its sandbox containers are removed"),
        _ = sigint.recv() => errln!(
            "exiting without cleaning up: sandbox containers of pid {pid} may remain \
             (`docker ps --filter label=aos.pid={pid}`); the next `aos run` or `aos kernel start` of this home removes them"
        ),
    }
    Ok(130)
}
