//! `aos run`: start a kernel in this process, run one root agent to the end
//! while printing its log (replies, syscalls with results or errors, events,
//! stdout), and exit with the agent's exit code. The kernel is built like
//! the daemon's (`aos_daemon::stack::build`, from `aos.toml` and `AOS_*`),
//! with this command's flags applied on top; `run` needs no daemon.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use aos_abi::CapabilitySet;
use aos_kernel::{Budgets, ExitStatus, KernelEvent, SpawnRequest};

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
    /// Model name (for `local`: `default` or a GGUF file; for `script`: the script file).
    #[arg(long, env = "AOS_MODEL", default_value = "default")]
    pub model: String,
    /// Base URL of the provider's API (e.g. http://127.0.0.1:11434/v1 for Ollama).
    #[arg(long)]
    pub base_url: Option<String>,
    /// The agent's role, shown in its system prompt.
    #[arg(long, default_value = "a careful, autonomous assistant")]
    pub role: String,
    /// Capability to grant (repeatable; `all` = every built-in one, exec:net included).
    /// Default: `default_grants` of aos.toml, else fs:rw, timers, ipc (nothing that
    /// reaches the network or runs commands).
    #[arg(long = "grant", short = 'g')]
    pub grants: Vec<String>,
    /// Grant nothing (not even the default fs:rw, timers, ipc).
    #[arg(long, conflicts_with = "grants")]
    pub no_grants: bool,
    /// Workspace directory preopened at /workspace (default: a new one under $AOS_HOME/workspaces).
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    #[arg(long, default_value_t = 50)]
    pub max_steps: u64,
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Wall-time budget in seconds.
    #[arg(long)]
    pub max_seconds: Option<u64>,
    /// Print log entries as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Let NET_FETCH reach this non-public host, IP or CIDR range (repeatable).
    #[arg(long = "net-allow")]
    pub net_allow: Vec<String>,
    /// Also trust the root certificates in this PEM file for https (repeatable).
    #[arg(long = "ca-file")]
    pub ca_files: Vec<PathBuf>,
    /// Docker image EXEC_CMD runs in (default: `[sandbox] image` in aos.toml,
    /// $AOS_SANDBOX_IMAGE, else aos-sandbox:latest; build it with `aos sandbox build`).
    #[arg(long)]
    pub sandbox_image: Option<String>,
}

use super::output::print_entry;

pub async fn run(a: RunArgs) -> Result<i32> {
    let home = crate::home::aos_home()?;
    // The same stack as the daemon's, with this command's flags on top.
    let mut cfg = aos_daemon::config::Config::load(&home)?;
    cfg.net.allow.extend(a.net_allow.iter().cloned());
    cfg.net.ca_files.extend(a.ca_files.iter().cloned());
    if let Some(image) = &a.sandbox_image {
        cfg.sandbox.image = image.clone();
    }
    let kernel = aos_daemon::stack::build(&home, &cfg).await?;
    let caps = if a.no_grants {
        CapabilitySet::empty()
    } else if a.grants.is_empty() {
        kernel.parse_grants(&cfg.default_grants).context("invalid `default_grants` in aos.toml")?
    } else {
        kernel.parse_grants(&a.grants)?
    };
    let mut events = kernel.subscribe();
    let workspace = match a.workspace {
        Some(w) => Some(w.canonicalize().with_context(|| format!("the workspace {} does not exist", w.display()))?),
        None => None,
    };
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
        eprintln!(
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
    // Stream the log of every process of this run until the root exits.
    let status = loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(KernelEvent::Entry { entry }) => print_entry(&entry, a.json),
                Ok(KernelEvent::Exited { pid: p, status }) if !a.json => {
                    if p != pid { println!("[{p}] exited: {status:?}"); }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => eprintln!("({n} log entries skipped; see `aos logs`)"),
                Err(_) => {}
            },
            st = &mut waiter => break st.context("the kernel task failed")??,
        }
    };
    // Drain what is already queued.
    while let Ok(ev) = events.try_recv() {
        if let KernelEvent::Entry { entry } = ev {
            print_entry(&entry, a.json);
        }
    }
    // Remove this run's sandbox containers.
    kernel.shutdown().await;
    let code = match &status {
        ExitStatus::Exited { code, result } => {
            eprintln!("pid {pid} exited with code {code}{}", result.as_ref().map(|r| format!(": {r}")).unwrap_or_default());
            (*code).clamp(0, 255) as i32
        }
        ExitStatus::Killed => {
            eprintln!("pid {pid} was killed");
            137
        }
        ExitStatus::Failed { reason } => {
            eprintln!("pid {pid} failed: {reason}");
            1
        }
    };
    Ok(code)
}
