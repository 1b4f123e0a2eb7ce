//! `aos run`: start a kernel in this process, run one root agent to the end
//! and exit with the agent's exit code. Its log (replies, syscalls with
//! results or errors, events) goes to stderr; stdout gets the agent's answer
//! (what it wrote with `SYS_WRITE_STDOUT`, then its `SYS_EXIT` result), so
//! `aos run … > out` keeps the answer. With `--json`, log entries go to stdout
//! as JSON lines. On a terminal, the model's progress (loading, evaluating
//! the prompt, generating with tokens/s) is one status line on stderr,
//! updated in place and erased by the next log line. Ctrl-C (or SIGTERM) kills the agent and removes its sandbox
//! containers before the command exits (130). The kernel is built like the daemon's
//! (`aos_daemon::stack::build`, from `aos.toml` and `AOS_*`), with this
//! command's flags applied on top; `run` needs no daemon.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio::signal::unix::{signal, SignalKind};

use aos_abi::CapabilitySet;
use aos_kernel::{Budgets, ExitStatus, Kernel, KernelEvent, SpawnRequest};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    aos run 'write a haiku about the sea to haiku.txt, then exit'          (embedded offline model)\n  \
    aos run --provider script --model examples/scripts/haiku.txt 'write a haiku about the sea to haiku.txt'\n  \
    aos run --provider openai --base-url http://127.0.0.1:11434/v1 --model llama3.2 --grant fs:rw 'list the files'\n  \
    OPENAI_API_KEY=... aos run --provider openai --model gpt-4o-mini 'summarise notes.txt'")]
pub struct RunArgs {
    /// What the agent should do.
    pub task: String,
    /// LLM provider: local (the embedded offline model), openai (any
    /// OpenAI-compatible server), gemini, anthropic, script. Default:
    /// `provider` of aos.toml, else local.
    #[arg(long, env = "AOS_PROVIDER")]
    pub provider: Option<String>,
    /// Model name (for `local`: `default` or the path of a GGUF file; for
    /// `script`: the script file; for `openai`: the server's model name).
    /// Default: `model` of aos.toml, else `default` for local.
    #[arg(long, env = "AOS_MODEL")]
    pub model: Option<String>,
    /// Base URL of the provider's API (e.g. http://127.0.0.1:11434/v1 for Ollama).
    #[arg(long)]
    pub base_url: Option<String>,
    /// The agent's role, shown in its system prompt.
    #[arg(long, default_value = "a careful, autonomous assistant")]
    pub role: String,
    /// How syscalls reach the model: native (the API's tool calling), text
    /// ([SYS_CALL::NAME] {json} in the reply) or auto (native where the
    /// provider has it, text once a server rejects tools). Default:
    /// `tool_mode` of aos.toml, else auto; local and script always use text.
    #[arg(long)]
    pub tool_mode: Option<aos_abi::ToolMode>,
    #[arg(long, value_name = "MODE", help = "never | ask-dangerous | ask-all: which calls are asked on the terminal (y / n / always)", long_help = super::approvals::APPROVE_HELP)]
    pub approve: Option<String>,
    /// Capability to grant (repeatable; `all` = every built-in one, exec:net included).
    /// Default: `default_grants` of aos.toml, else fs:rw, timers, ipc (nothing that
    /// reaches the network or runs commands).
    #[arg(long = "grant", short = 'g', value_delimiter = ',', long_help = aos_abi::caps::GRANT_HELP)]
    pub grants: Vec<String>,
    /// Grant nothing (not even the default fs:rw, timers, ipc).
    #[arg(long, conflicts_with = "grants")]
    pub no_grants: bool,
    /// Workspace directory preopened at /workspace, created if missing
    /// (default: a new one under $AOS_HOME/workspaces).
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    /// Step budget (model calls). Default: `[budgets] max_steps` of aos.toml, else 50.
    #[arg(long)]
    pub max_steps: Option<u64>,
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
    /// Docker image EXEC_CMD runs in (default: `[sandbox] image` in aos.toml,
    /// $AOS_SANDBOX_IMAGE, else aos-sandbox:latest; build it with `aos sandbox build`).
    #[arg(long)]
    pub sandbox_image: Option<String>,
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
    if let Some(p) = &a.provider {
        aos_providers::check_provider_name(p)?;
    }
    let home = crate::home::aos_home()?;
    let workspace = match &a.workspace {
        Some(w) => Some(super::workspace_dir(w)?),
        None => None,
    };
    // The same stack as the daemon's, with this command's flags on top.
    let mut cfg = aos_daemon::config::Config::load(&home)?;
    cfg.net.allow.extend(a.net_allow.iter().cloned());
    cfg.net.ca_files.extend(a.ca_files.iter().cloned());
    if let Some(image) = &a.sandbox_image {
        cfg.sandbox.image = image.clone();
    }
    // Provider, model and base URL: the flags, else aos.toml's (as `aos spawn`).
    let (provider, model, base_url) = cfg.resolve_model(a.provider.as_deref(), a.model.as_deref(), a.base_url.as_deref())?;
    let stack = aos_daemon::stack::build(&home, &cfg).await?;
    let kernel = stack.kernel.clone();
    let caps = if a.no_grants {
        CapabilitySet::empty()
    } else if a.grants.is_empty() {
        kernel.parse_grants(&cfg.default_grants).context("invalid `default_grants` in aos.toml")?
    } else {
        kernel.parse_grants(&a.grants)?
    };
    let mut events = kernel.subscribe();
    let pid = kernel
        .spawn(SpawnRequest {
            task: a.task,
            role: a.role,
            provider,
            model,
            base_url,
            caps,
            budgets: Budgets {
                max_steps: a.max_steps,
                max_tokens: a.max_tokens,
                max_wall_time: a.max_seconds.map(Duration::from_secs),
            },
            workspace,
            pipe_to: None,
            parent: None,
            tool_mode: a.tool_mode,
            approvals: Some(cfg.approvals.policy(a.approve.as_deref())?),
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
    // The model's progress (loading, prompt, generating) as one status line
    // on stderr, updated in place and erased before the next log line; only
    // when both streams are terminals, so piped output stays clean.
    let progress = !a.json && crate::term::stdout_is_terminal() && std::io::stderr().is_terminal();
    let mut line = crate::term::StatusLine::new(true);
    // Stream the log of every process of this run until the root exits.
    let status = loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(KernelEvent::ModelProgress { pid: p, progress: m }) if progress => {
                    line.show(&crate::term::progress_line(p, &m));
                }
                Ok(KernelEvent::Entry { entry }) => {
                    line.clear();
                    show(&entry)
                }
                Ok(KernelEvent::Status { status: aos_kernel::ProcessStatus::Approval { id, .. }, .. }) => {
                    line.clear();
                    super::approvals::ask_inline(&kernel, id).await;
                }
                Ok(KernelEvent::Exited { pid: p, status }) if !a.json => {
                    line.clear();
                    if p != pid { errln!("[{p}] exited: {status}"); }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    line.clear();
                    errln!("({n} log entries skipped)")
                }
                Err(_) => {}
            },
            st = &mut waiter => {
                line.clear();
                break st.context("the kernel task failed")??
            }
            _ = sigint.recv() => return interrupted(&kernel, pid, "Ctrl-C", &mut sigint).await,
            _ = sigterm.recv() => return interrupted(&kernel, pid, "SIGTERM", &mut sigint).await,
        }
    };
    // Drain what is already queued.
    while let Ok(ev) = events.try_recv() {
        if let KernelEvent::Entry { entry } = ev {
            show(&entry);
        }
    }
    // Remove this run's sandbox containers; send the traces still queued.
    kernel.shutdown().await;
    stack.flush_traces().await;
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
    pid: u64,
    why: &str,
    sigint: &mut tokio::signal::unix::Signal,
) -> Result<i32> {
    errln!("\n{why}: killing pid {pid} and removing its sandbox (Ctrl-C again to exit at once)");
    let _ = kernel.kill(pid);
    let cleanup = async {
        let _ = tokio::time::timeout(Duration::from_secs(10), kernel.wait(pid)).await;
        kernel.shutdown().await;
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
