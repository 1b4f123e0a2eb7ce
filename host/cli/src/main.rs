//! `aos`: the AgentOS command line.
//!
//! Output goes through `term`'s `outln!`/`errln!`, never `println!` (which
//! panics on a closed pipe): the lints below keep it that way.

#![deny(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
mod term;
mod commands;
mod home;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "aos", version, about = "AgentOS: run LLM agents as processes", long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Work with driver components: list, inspect, install, remove, call.
    #[command(subcommand)]
    Driver(commands::driver::DriverCmd),
    /// MCP servers whose tools agents call as syscalls: add, ls, remove.
    #[command(subcommand)]
    Mcp(commands::mcp::McpCmd),
    /// Run one agent to completion in this process, printing its log.
    Run(commands::run::RunArgs),
    /// The kernel daemon: start, stop, status.
    #[command(subcommand)]
    Kernel(commands::kernel::KernelCmd),
    /// Start an agent process in the kernel (starting the kernel if needed); prints its PID.
    Spawn(commands::procs::SpawnArgs),
    /// List processes: PID, parent, status, provider/model, steps, tokens, syscalls, age.
    Ps(commands::procs::PsArgs),
    /// Print a process's log (replies, syscalls, stdout, events); -f follows it.
    Logs(commands::procs::LogsArgs),
    /// Kill a process and its descendants.
    Kill(commands::procs::KillArgs),
    /// Send a line to a process's stdin (or, with --msg, a message to its mailbox).
    Send(commands::procs::SendArgs),
    /// Wait for a process to end; exits with its exit code.
    Wait(commands::procs::WaitArgs),
    /// Live view of the processes (q quits); one snapshot when not on a terminal.
    Top(commands::top::TopArgs),
    /// The Docker sandbox EXEC_CMD runs commands in: build its image, check its status.
    #[command(subcommand)]
    Sandbox(commands::sandbox::SandboxCmd),
    /// Show the effective configuration (of the running kernel, if one runs).
    #[command(subcommand)]
    Config(commands::config::ConfigCmd),
    /// List the webhook paths processes registered: path, pid, URL (secret with --show-secret).
    Webhooks(commands::webhooks::WebhooksArgs),
    /// List the calls waiting for the operator's approval: id, pid, syscall, age, arguments.
    Approvals(commands::approvals::ApprovalsArgs),
    /// Approve a waiting call (--always: and later calls of its pattern in its process tree).
    Approve(commands::approvals::ApproveArgs),
    /// Deny a waiting call; the model is told `denied: by the operator: REASON`.
    Deny(commands::approvals::DenyArgs),
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  aos completions bash > ~/.local/share/bash-completion/completions/aos\n  aos completions zsh > ~/.zfunc/_aos")]
    Completions {
        shell: clap_complete::Shell,
    },
}

/// An error and its causes on one line, each cause only once (a message
/// that already contains its cause's text does not repeat it).
fn one_line(e: &anyhow::Error) -> String {
    let mut s = String::new();
    for cause in e.chain() {
        let t = cause.to_string();
        if s.contains(t.trim()) {
            continue;
        }
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(t.trim());
    }
    s.replace('\n', " ")
}

fn main() {
    let cli = Cli::parse();
    // The daemon logs what it does (timestamped lines in logs/daemon.log);
    // other commands only warnings.
    let daemon = matches!(cli.cmd, Cmd::Kernel(commands::kernel::KernelCmd::Start { foreground: true }));
    let default_filter = if daemon { "warn,aos_daemon=info,aos_kernel=info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AOS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_ansi(term::color(true))
        .with_writer(|| term::StderrWriter)
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async {
        match cli.cmd {
            Cmd::Driver(c) => commands::driver::run(c).await,
            Cmd::Mcp(c) => commands::mcp::run(c).await,
            Cmd::Run(a) => commands::run::run(a).await,
            Cmd::Kernel(c) => commands::kernel::run(c).await,
            Cmd::Spawn(a) => commands::procs::spawn(a).await,
            Cmd::Ps(a) => commands::procs::ps(a).await,
            Cmd::Logs(a) => commands::procs::logs(a).await,
            Cmd::Kill(a) => commands::procs::kill(a).await,
            Cmd::Send(a) => commands::procs::send(a).await,
            Cmd::Wait(a) => commands::procs::wait(a).await,
            Cmd::Top(a) => commands::top::run(a).await,
            Cmd::Sandbox(c) => commands::sandbox::run(c).await,
            Cmd::Config(c) => commands::config::run(c).await,
            Cmd::Webhooks(a) => commands::webhooks::run(a).await,
            Cmd::Approvals(a) => commands::approvals::list(a).await,
            Cmd::Approve(a) => commands::approvals::approve(a).await,
            Cmd::Deny(a) => commands::approvals::deny(a).await,
            Cmd::Completions { shell } => {
                let mut buf = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "aos", &mut buf);
                out!("{}", String::from_utf8_lossy(&buf));
                Ok(0)
            }
        }
    });
    match code {
        Ok(c) => std::process::exit(c),
        Err(e) if aos_daemon::client::is_not_running(&e) => {
            errln!("{}", aos_daemon::NOT_RUNNING);
            std::process::exit(1);
        }
        Err(e) if daemon => {
            tracing::error!("{}", one_line(&e));
            std::process::exit(1);
        }
        Err(e) => {
            errln!("error: {}", one_line(&e));
            std::process::exit(1);
        }
    }
}
