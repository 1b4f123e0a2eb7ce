//! Process commands, all clients of the kernel daemon: `spawn`, `ps`, `logs`,
//! `kill`, `send`, `wait`.

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use serde_json::json;

use aos_daemon::api::{KillReply, SpawnBody, SpawnReply, TextBody};
use aos_daemon::client::{is_not_running, Client};
use aos_kernel::{ExitStatus, KernelEvent, ProcessInfo, ProcessStatus};

use super::kernel::{connect, start_background};
use super::output::{age, exit_code, print_entry};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    aos spawn --provider script --model examples/scripts/haiku.txt 'write a haiku to haiku.txt'\n  \
    aos spawn --provider openai --base-url http://127.0.0.1:11434/v1 --model llama3.2 --grant fs:rw 'tidy notes.txt'\n  \
    aos spawn --wait 'summarise notes.txt'   # provider and model from aos.toml / AOS_PROVIDER, AOS_MODEL\n\n\
    Starts the kernel in the background if it is not running.")]
pub struct SpawnArgs {
    /// What the agent should do.
    pub task: String,
    /// LLM provider: openai, gemini, anthropic, script (default: from aos.toml).
    #[arg(long, env = "AOS_PROVIDER")]
    pub provider: Option<String>,
    /// Model name (for `script`: the path of the script file).
    #[arg(long, env = "AOS_MODEL")]
    pub model: Option<String>,
    /// Base URL of the provider's API.
    #[arg(long)]
    pub base_url: Option<String>,
    /// The agent's role, shown in its system prompt.
    #[arg(long)]
    pub role: Option<String>,
    /// Capability to grant (repeatable; `all` = every built-in one, exec:net included).
    /// Default: `default_grants` of aos.toml, else fs:rw, timers, ipc.
    #[arg(long = "grant", short = 'g')]
    pub grants: Vec<String>,
    /// Grant nothing.
    #[arg(long, conflicts_with = "grants")]
    pub no_grants: bool,
    #[arg(long)]
    pub max_steps: Option<u64>,
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Wall-time budget in seconds.
    #[arg(long)]
    pub max_seconds: Option<u64>,
    /// Workspace directory preopened at /workspace (default: a new one under $AOS_HOME/workspaces).
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    /// Follow the agent's log and exit with its exit code.
    #[arg(long)]
    pub wait: bool,
    /// Print `{"pid": .., "workspace": ..}` (with --wait: log entries as JSON lines).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  aos ps\n  aos ps --all --json | jq '.[] | .pid'")]
pub struct PsArgs {
    /// Also list processes that have ended (kept up to the `[retention]`
    /// limits of aos.toml: by default the newest 256, for 24 hours).
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Print the full process records as a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  aos logs 3\n  aos logs -f 3          # follow until it exits\n  aos logs --json 3 | jq .type")]
pub struct LogsArgs {
    pub pid: u64,
    /// Follow new entries until the process exits.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Log entries as JSON lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  aos kill 3   # kills 3 and its descendants")]
pub struct KillArgs {
    pub pid: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  aos send 3 'yes, go ahead'          # a line on stdin (SYS_READ_STDIN)\n  aos send --msg 3 'new instructions' # a mailbox message from pid 0 (RECV_MSG)")]
pub struct SendArgs {
    pub pid: u64,
    pub text: String,
    /// Deliver to the mailbox (RECV_MSG) instead of stdin.
    #[arg(long)]
    pub msg: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  aos wait 3 && echo ok   # exit code = the agent's")]
pub struct WaitArgs {
    pub pid: u64,
    #[arg(long)]
    pub json: bool,
}

/// A client of a running kernel, or the "not running" error.
fn client() -> Result<Client> {
    Ok(connect()?.1)
}

pub async fn spawn(a: SpawnArgs) -> Result<i32> {
    let (paths, client) = connect()?;
    let workspace = match &a.workspace {
        Some(w) => Some(w.canonicalize().with_context(|| format!("the workspace {} does not exist", w.display()))?),
        None => None,
    };
    // Relative script paths are relative to the caller, not to the daemon.
    let model = match (&a.provider, a.model) {
        (Some(p), Some(m)) if p == "script" && std::path::Path::new(&m).exists() => {
            Some(std::fs::canonicalize(&m).map(|p| p.display().to_string()).unwrap_or(m))
        }
        (_, m) => m,
    };
    let body = SpawnBody {
        task: a.task,
        role: a.role,
        provider: a.provider,
        model,
        base_url: a.base_url,
        grants: if a.no_grants { Some(vec![]) } else if a.grants.is_empty() { None } else { Some(a.grants) },
        max_steps: a.max_steps,
        max_tokens: a.max_tokens,
        max_seconds: a.max_seconds,
        workspace,
    };
    let reply: SpawnReply = match client.post("/v1/spawn", &body).await {
        Err(e) if is_not_running(&e) => {
            let pid = start_background(&paths).await?;
            eprintln!("started the kernel (pid {pid})");
            // Connect again: over TCP the new daemon has a new token.
            let client = Client::from_env(&paths)?;
            client.post("/v1/spawn", &body).await?
        }
        r => r?,
    };
    if a.json && !a.wait {
        println!("{}", json!({"pid": reply.pid, "workspace": reply.workspace}));
    } else if !a.json {
        println!("{}", reply.pid);
    }
    if !a.wait {
        return Ok(0);
    }
    let status = follow(&client, reply.pid, true, a.json).await?;
    report_status(reply.pid, &status);
    Ok(exit_code(&status))
}

/// Prints the log of `pid` (and, with `follow`, new entries until it exits);
/// returns how it ended.
async fn follow(client: &Client, pid: u64, follow: bool, json: bool) -> Result<ExitStatus> {
    let path = format!("/v1/procs/{pid}/logs{}", if follow { "?follow=1" } else { "" });
    let mut s = client.stream(&path).await?;
    let mut exit = None;
    while let Some(ev) = s.next_json::<KernelEvent>().await? {
        match ev {
            KernelEvent::Entry { entry } => print_entry(&entry, json),
            KernelEvent::Exited { pid: p, status } if p == pid => exit = Some(status),
            _ => {}
        }
    }
    match exit {
        Some(e) => Ok(e),
        None if !follow => Err(anyhow!("running")),
        None => Err(anyhow!("lost the connection to the kernel before pid {pid} exited")),
    }
}

fn report_status(pid: u64, status: &ExitStatus) {
    match status {
        ExitStatus::Exited { code, result } => eprintln!(
            "pid {pid} exited with code {code}{}",
            result.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
        ),
        ExitStatus::Killed => eprintln!("pid {pid} was killed"),
        ExitStatus::Failed { reason } => eprintln!("pid {pid} failed: {reason}"),
    }
}

pub async fn logs(a: LogsArgs) -> Result<i32> {
    let client = client()?;
    match follow(&client, a.pid, a.follow, a.json).await {
        Ok(status) if a.follow => Ok(exit_code(&status)),
        Ok(_) => Ok(0),
        Err(e) if !a.follow && e.to_string() == "running" => Ok(0),
        Err(e) => Err(e),
    }
}

pub async fn kill(a: KillArgs) -> Result<i32> {
    let r: KillReply = client()?.post(&format!("/v1/procs/{}/kill", a.pid), &json!({})).await?;
    if a.json {
        println!("{}", json!({"killed": r.killed}));
    } else if r.killed.is_empty() {
        println!("pid {} had already ended; nothing killed", a.pid);
    } else {
        let pids: Vec<String> = r.killed.iter().map(|p| p.to_string()).collect();
        println!("killed {}", pids.join(" "));
    }
    Ok(0)
}

pub async fn send(a: SendArgs) -> Result<i32> {
    let what = if a.msg { "message" } else { "stdin" };
    let _: serde_json::Value = client()?.post(&format!("/v1/procs/{}/{what}", a.pid), &TextBody { text: a.text }).await?;
    Ok(0)
}

pub async fn wait(a: WaitArgs) -> Result<i32> {
    let status: ExitStatus = client()?.get(&format!("/v1/procs/{}/wait", a.pid)).await?;
    if a.json {
        println!("{}", serde_json::to_string(&status)?);
    } else {
        report_status(a.pid, &status);
    }
    Ok(exit_code(&status))
}

pub async fn ps(a: PsArgs) -> Result<i32> {
    let mut procs: Vec<ProcessInfo> = client()?.get("/v1/ps").await?;
    if !a.all {
        procs.retain(|p| !p.status.is_terminal());
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&procs)?);
        return Ok(0);
    }
    print!("{}", ps_table(&procs));
    Ok(0)
}

/// Short status word of a process.
pub fn status_word(s: &ProcessStatus) -> String {
    match s {
        ProcessStatus::Ready => "ready".into(),
        ProcessStatus::Running => "running".into(),
        ProcessStatus::WaitingModel => "model".into(),
        ProcessStatus::BlockedRecv => "recv".into(),
        ProcessStatus::BlockedStdin => "stdin".into(),
        ProcessStatus::Sleeping { .. } => "sleeping".into(),
        ProcessStatus::Exited { code } => format!("exited({code})"),
        ProcessStatus::Killed => "killed".into(),
        ProcessStatus::Failed { .. } => "failed".into(),
    }
}


/// provider/model, with a long model path shortened to its file name.
pub fn model_label(p: &ProcessInfo) -> String {
    let m = if p.model.contains('/') && p.provider == "script" {
        std::path::Path::new(&p.model).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or(p.model.clone())
    } else {
        p.model.clone()
    };
    format!("{}/{}", p.provider, m)
}

pub fn ps_table(procs: &[ProcessInfo]) -> String {
    let now = aos_kernel::process::now_ms();
    let mut rows = vec![["PID", "PARENT", "STATUS", "PROVIDER/MODEL", "STEPS", "TOKENS", "SYSCALLS", "AGE"].map(String::from).to_vec()];
    for p in procs {
        let c = &p.counters;
        rows.push(vec![
            p.pid.to_string(),
            p.parent.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
            status_word(&p.status),
            model_label(p),
            c.steps.to_string(),
            format!("{}{}", c.total_tokens(), if c.tokens_estimated { "~" } else { "" }),
            c.syscalls.values().sum::<u64>().to_string(),
            age(now.saturating_sub(c.started_at_ms) / 1000),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
