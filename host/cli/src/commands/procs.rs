//! Process commands, all clients of the kernel daemon: `spawn`, `ps`, `logs`,
//! `kill`, `send`, `wait`; and the table and status words `top` shares.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use serde_json::{json, Value};

use aos_daemon::api::{KillReply, SpawnBody, SpawnReply, TextBody};
use aos_daemon::client::{is_not_running, Client};
use aos_kernel::{ExitStatus, KernelEvent, LogEntry, ProcessInfo, ProcessStatus};

use super::kernel::{connect, start_background};
use super::output::{age, exit_code, format_entry, parse_duration, stdout_text, EntryFormat};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    aos spawn 'summarise notes.txt'          # the embedded offline model (provider `local`)\n  \
    aos spawn --provider script --model examples/scripts/haiku.txt 'write a haiku to haiku.txt'\n  \
    aos spawn --provider openai --base-url http://127.0.0.1:11434/v1 --model llama3.2 --grant fs:rw,ipc 'tidy notes.txt'\n  \
    aos spawn --wait 'summarise notes.txt'   # provider and model from aos.toml / AOS_PROVIDER, AOS_MODEL\n\n\
    Starts the kernel in the background if it is not running.")]
pub struct SpawnArgs {
    /// What the agent should do.
    pub task: String,
    /// LLM provider: local (the embedded offline model), openai (any
    /// OpenAI-compatible server: OpenAI, Ollama, llama.cpp server, vLLM),
    /// gemini, anthropic, script (replays a file). Default: `provider` of
    /// aos.toml, else local.
    #[arg(long, env = "AOS_PROVIDER")]
    pub provider: Option<String>,
    /// Model name (for `local`: `default` or the path of a GGUF file; for `script`: the script file).
    #[arg(long, env = "AOS_MODEL")]
    pub model: Option<String>,
    /// Base URL of the provider's API (e.g. http://127.0.0.1:11434/v1 for Ollama).
    #[arg(long)]
    pub base_url: Option<String>,
    /// The agent's role, shown in its system prompt.
    #[arg(long)]
    pub role: Option<String>,
    /// How syscalls reach the model: native, text or auto (see `aos run --help`).
    #[arg(long)]
    pub tool_mode: Option<aos_abi::ToolMode>,
    #[arg(long, value_name = "MODE", help = "never | ask-dangerous | ask-all: which calls wait for `aos approve`", long_help = super::approvals::APPROVE_HELP)]
    pub approve: Option<String>,
    /// Capability to grant (repeatable; `all` = every built-in one, exec:net included).
    /// Default: `default_grants` of aos.toml, else fs:rw, timers, ipc.
    #[arg(long = "grant", short = 'g', value_delimiter = ',', long_help = aos_abi::caps::GRANT_HELP)]
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
    /// Workspace directory preopened at /workspace, created if missing
    /// (default: a new one under $AOS_HOME/workspaces).
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    /// Follow the agent's log and exit with its exit code (Ctrl-C stops following; the agent keeps running).
    #[arg(long)]
    pub wait: bool,
    /// Print `{"pid": .., "workspace": ..}` (with --wait: log entries as JSON lines).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  aos ps\n  aos ps --tree --all\n  aos ps -q --status recv     # pids of the processes waiting in RECV_MSG\n  \
    aos ps --parent 3           # the children of 3\n  aos ps --all --json | jq '.[] | .pid'")]
pub struct PsArgs {
    /// Also list processes that have ended (kept up to the `[retention]`
    /// limits of aos.toml: by default the newest 256, for 24 hours).
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Print the full process records as a JSON array.
    #[arg(long)]
    pub json: bool,
    /// Print only pids, one per line.
    #[arg(long, short = 'q', conflicts_with_all = ["json", "tree"])]
    pub quiet: bool,
    /// Only processes in these states (repeatable or comma-separated): ready,
    /// running, model, recv, stdin, sleeping, exited, killed, failed, live, ended.
    /// Asking for an ended state lists ended processes without --all.
    #[arg(long, value_delimiter = ',')]
    pub status: Vec<String>,
    /// Only the children of this pid.
    #[arg(long)]
    pub parent: Option<u64>,
    /// Show the processes as a tree (children under their parent).
    #[arg(long)]
    pub tree: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  aos logs 3\n  aos logs -f 3                 # follow until it exits\n  \
    aos logs --tail 20 -f 3       # the last 20 entries, then follow\n  aos logs --since 10m -t 3     # the last ten minutes, timestamped\n  \
    aos logs --stdout 3 > out.txt # only what the agent wrote to stdout\n  aos logs --json 3 | jq .type")]
pub struct LogsArgs {
    pub pid: u64,
    /// Follow new entries until the process exits (then exit with its exit code).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Log entries as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Only the last N entries (then new ones, with -f).
    #[arg(long, short = 'n', value_name = "N")]
    pub tail: Option<usize>,
    /// Only entries from the last DURATION (e.g. 90s, 10m, 2h, 1d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Prefix each line with its time (UTC, RFC 3339).
    #[arg(long, short = 't')]
    pub timestamps: bool,
    /// Only what the agent wrote to stdout (SYS_WRITE_STDOUT), one line per write, without prefixes.
    #[arg(long)]
    pub stdout: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  aos kill 3       # kills 3 and its descendants\n  aos kill 3 7 9\n  aos kill --json 3")]
pub struct KillArgs {
    /// The processes to kill (each with its descendants).
    #[arg(required = true)]
    pub pids: Vec<u64>,
    /// Print a JSON array with one object per pid: `{"pid", "killed": [..]}` or `{"pid", "error"}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  aos send 3 'yes, go ahead'          # a line on stdin (SYS_READ_STDIN)\n  \
    aos send 3 4 5 'stop now'           # the same line to several processes\n  \
    aos send --msg 3 'new instructions' # a mailbox message from pid 0 (RECV_MSG)")]
pub struct SendArgs {
    /// The receiving processes, then the text.
    #[arg(required = true, num_args = 1.., value_name = "PID")]
    pub pids: Vec<u64>,
    /// The text to send.
    #[arg(required = true, value_name = "TEXT")]
    pub text: String,
    /// Deliver to the mailbox (RECV_MSG) instead of stdin.
    #[arg(long)]
    pub msg: bool,
    /// Print a JSON array with one object per pid: `{"pid", "sent": "stdin"|"message"}` or `{"pid", "error"}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  aos wait 3 && echo ok   # exit code = the agent's\n  aos wait --json 3       # {\"pid\": 3, \"status\": \"exited\", \"code\": 0, \"result\": .., \"exit_code\": 0}")]
pub struct WaitArgs {
    pub pid: u64,
    /// Print how it ended as JSON, with its pid and the command's exit code.
    #[arg(long)]
    pub json: bool,
}

/// A client of a running kernel, or the "not running" error.
fn client() -> Result<Client> {
    Ok(connect()?.1)
}

pub async fn spawn(a: SpawnArgs) -> Result<i32> {
    let (paths, client) = connect()?;
    if !a.no_grants {
        super::check_grants(&a.grants)?;
    }
    if let Some(p) = &a.provider {
        aos_providers::check_provider_name(p)?;
    }
    let workspace = match &a.workspace {
        Some(w) => Some(super::workspace_dir(w)?),
        None => None,
    };
    // Relative model files (scripts, GGUF files) are relative to the caller, not to the daemon.
    let local_file = matches!(a.provider.as_deref().map(str::to_ascii_lowercase).as_deref(), None | Some("script" | "local"));
    let model = match a.model {
        Some(m) if local_file && std::path::Path::new(&m).is_file() => {
            Some(std::fs::canonicalize(&m).map(|p| p.display().to_string()).unwrap_or(m))
        }
        m => m,
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
        tool_mode: a.tool_mode,
        approve: a.approve,
    };
    let (client, reply): (Client, SpawnReply) = match client.post("/v1/spawn", &body).await {
        Err(e) if is_not_running(&e) => {
            let pid = start_background(&paths).await?;
            errln!("started the kernel (pid {pid})");
            // Connect again: over TCP the new daemon has a new token.
            let client = Client::from_env(&paths)?;
            let reply = client.post("/v1/spawn", &body).await?;
            (client, reply)
        }
        r => (client, r?),
    };
    if a.json && !a.wait {
        outln!("{}", json!({"pid": reply.pid, "workspace": reply.workspace}));
    } else if !a.json {
        outln!("{}", reply.pid);
    }
    if !a.wait {
        return Ok(0);
    }
    crate::term::exit_when_reader_leaves();
    let pid = reply.pid;
    let fmt = EntryFormat { json: a.json, timestamps: false };
    let all = LogFilter::default();
    tokio::select! {
        r = follow(&client, pid, true, &all, fmt) => {
            let status = r?;
            report_status(pid, &status);
            Ok(exit_code(&status))
        }
        _ = tokio::signal::ctrl_c() => {
            errln!(
                "\nstopped following pid {pid}; it keeps running in the kernel: `aos kill {pid}` stops it, \
                 `aos logs -f {pid}` follows it again"
            );
            Ok(130)
        }
    }
}

/// Which entries `logs` prints.
#[derive(Debug, Default)]
struct LogFilter {
    /// Skip entries older than this (Unix ms).
    since_ms: Option<u64>,
    /// Skip entries with a smaller `seq` (for `--tail`).
    from_seq: u64,
    /// Only stdout text.
    stdout_only: bool,
}

impl LogFilter {
    fn print(&self, e: &LogEntry, fmt: EntryFormat) {
        if e.seq < self.from_seq || self.since_ms.is_some_and(|t| e.at_ms < t) {
            return;
        }
        if self.stdout_only && !fmt.json {
            if let Some(t) = stdout_text(e, fmt.timestamps) {
                out!("{t}");
            }
        } else if !self.stdout_only || matches!(e.entry, aos_kernel::Entry::Stdout { .. }) {
            out!("{}", format_entry(e, fmt));
        }
    }
}

/// Prints the log of `pid` (and, with `follow`, new entries until it exits);
/// returns how it ended.
async fn follow(client: &Client, pid: u64, follow: bool, filter: &LogFilter, fmt: EntryFormat) -> Result<ExitStatus> {
    let path = format!("/v1/procs/{pid}/logs{}", if follow { "?follow=1" } else { "" });
    let mut s = client.stream(&path).await?;
    let mut exit = None;
    // Pieces of a reply being generated (streaming providers): shown live
    // (dimmed) on a terminal and as `reply_delta` lines with --json; the
    // whole reply follows as its entry once complete.
    // Likewise the model's progress (loading, prompt, generating): one
    // status line updated in place on a terminal until the reply's text or
    // entry arrives, `model_progress` lines with --json, nothing in a pipe.
    let live = !filter.stdout_only && (fmt.json || crate::term::stdout_is_terminal());
    let mut streaming = false;
    let mut status = crate::term::StatusLine::new(false);
    while let Some(ev) = s.next_json::<KernelEvent>().await? {
        match ev {
            KernelEvent::ReplyDelta { pid: p, text } if p == pid && live => {
                if fmt.json {
                    outln!("{}", serde_json::json!({"type": "reply_delta", "pid": p, "text": text}));
                } else {
                    status.clear();
                    out!("{}\x1b[2m{text}\x1b[0m", if streaming { "" } else { "… " });
                    streaming = true;
                }
            }
            KernelEvent::ModelProgress { pid: p, progress } if p == pid && live => {
                if fmt.json {
                    outln!("{}", crate::term::progress_json(p, &progress));
                } else if !streaming {
                    // While the reply's text streams, the text is the progress.
                    status.show(&crate::term::progress_line(p, &progress));
                }
            }
            KernelEvent::Entry { entry } => {
                status.clear();
                if std::mem::take(&mut streaming) {
                    outln!();
                }
                filter.print(&entry, fmt)
            }
            KernelEvent::Exited { pid: p, status: st } if p == pid => exit = Some(st),
            _ => {}
        }
    }
    status.clear();
    match exit {
        Some(e) => Ok(e),
        None if !follow => Err(anyhow!("running")),
        None => Err(anyhow!("lost the connection to the kernel before pid {pid} exited")),
    }
}

fn report_status(pid: u64, status: &ExitStatus) {
    match status {
        ExitStatus::Exited { code, result } => errln!(
            "pid {pid} exited with code {code}{}",
            result.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
        ),
        ExitStatus::Killed => errln!("pid {pid} was killed"),
        ExitStatus::Failed { reason } => errln!("pid {pid} failed: {reason}"),
    }
}

pub async fn logs(a: LogsArgs) -> Result<i32> {
    let client = client()?;
    let fmt = EntryFormat { json: a.json, timestamps: a.timestamps };
    let mut filter = LogFilter {
        since_ms: a.since.map(|d| aos_kernel::process::now_ms().saturating_sub(d.as_millis() as u64)),
        from_seq: 0,
        stdout_only: a.stdout,
    };
    if let Some(n) = a.tail {
        // The entries so far, to find where the last N begin.
        let mut s = client.stream(&format!("/v1/procs/{}/logs", a.pid)).await?;
        let mut seqs = Vec::new();
        while let Some(ev) = s.next_json::<KernelEvent>().await? {
            if let KernelEvent::Entry { entry } = ev {
                let counted = !a.stdout || matches!(entry.entry, aos_kernel::Entry::Stdout { .. });
                if counted {
                    seqs.push(entry.seq);
                }
            }
        }
        filter.from_seq = match seqs.len().checked_sub(n) {
            Some(i) if n > 0 => seqs[i],
            Some(_) => seqs.last().map(|s| s + 1).unwrap_or(0),
            None => 0,
        };
    }
    if a.follow {
        crate::term::exit_when_reader_leaves();
    }
    match follow(&client, a.pid, a.follow, &filter, fmt).await {
        Ok(status) if a.follow => Ok(exit_code(&status)),
        Ok(_) => Ok(0),
        Err(e) if !a.follow && e.to_string() == "running" => Ok(0),
        Err(e) => Err(e),
    }
}

/// One line per failed pid on stderr; the command fails if any did.
fn report_errors(errors: &[(u64, String)]) -> i32 {
    for (_, e) in errors {
        errln!("error: {e}");
    }
    i32::from(!errors.is_empty())
}

pub async fn kill(a: KillArgs) -> Result<i32> {
    let client = client()?;
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for &pid in &a.pids {
        match client.post::<_, KillReply>(&format!("/v1/procs/{pid}/kill"), &json!({})).await {
            Ok(r) => {
                if !a.json {
                    let pids: Vec<String> = r.killed.iter().map(|p| p.to_string()).collect();
                    outln!("killed {}", pids.join(" "));
                }
                results.push(json!({"pid": pid, "killed": r.killed}));
            }
            Err(e) if is_not_running(&e) => return Err(e),
            Err(e) => {
                results.push(json!({"pid": pid, "error": e.to_string()}));
                errors.push((pid, e.to_string()));
            }
        }
    }
    if a.json {
        outln!("{}", Value::Array(results));
        return Ok(i32::from(!errors.is_empty()));
    }
    Ok(report_errors(&errors))
}

pub async fn send(a: SendArgs) -> Result<i32> {
    let client = client()?;
    let what = if a.msg { "message" } else { "stdin" };
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for &pid in &a.pids {
        let body = TextBody { text: a.text.clone() };
        match client.post::<_, Value>(&format!("/v1/procs/{pid}/{what}"), &body).await {
            Ok(_) => results.push(json!({"pid": pid, "sent": what})),
            Err(e) if is_not_running(&e) => return Err(e),
            Err(e) => {
                results.push(json!({"pid": pid, "error": e.to_string()}));
                errors.push((pid, e.to_string()));
            }
        }
    }
    if a.json {
        outln!("{}", Value::Array(results));
        return Ok(i32::from(!errors.is_empty()));
    }
    Ok(report_errors(&errors))
}

pub async fn wait(a: WaitArgs) -> Result<i32> {
    let status: ExitStatus = client()?.get(&format!("/v1/procs/{}/wait", a.pid)).await?;
    let code = exit_code(&status);
    if a.json {
        let mut v = serde_json::to_value(&status)?;
        if let Value::Object(m) = &mut v {
            let mut out = serde_json::Map::new();
            out.insert("pid".into(), json!(a.pid));
            out.extend(std::mem::take(m));
            out.insert("exit_code".into(), json!(code));
            v = Value::Object(out);
        }
        outln!("{v}");
    } else {
        report_status(a.pid, &status);
    }
    Ok(code)
}

/// The `--status` words and the states they select.
const STATUS_WORDS: &[&str] =
    &["ready", "running", "model", "recv", "stdin", "sleeping", "paused", "exited", "killed", "failed", "live", "ended"];

/// Whether `p` is in the state named `word` (a [`STATUS_WORDS`] entry or a JSON state name).
fn status_matches(p: &ProcessInfo, word: &str) -> bool {
    let w = word.trim().to_ascii_lowercase();
    match w.as_str() {
        "live" => !p.status.is_terminal(),
        "ended" => p.status.is_terminal(),
        "waiting_model" => matches!(p.status, ProcessStatus::WaitingModel),
        "blocked_recv" => matches!(p.status, ProcessStatus::BlockedRecv),
        "blocked_stdin" => matches!(p.status, ProcessStatus::BlockedStdin),
        _ => status_base(&p.status) == w,
    }
}

/// The status word without details (`exited`, not `exited(3)`).
fn status_base(s: &ProcessStatus) -> &'static str {
    match s {
        ProcessStatus::Ready => "ready",
        ProcessStatus::Running => "running",
        ProcessStatus::WaitingModel => "model",
        ProcessStatus::BlockedRecv => "recv",
        ProcessStatus::BlockedStdin => "stdin",
        ProcessStatus::Sleeping { .. } => "sleeping",
        ProcessStatus::Paused { .. } => "paused",
        ProcessStatus::Approval { .. } => "approval",
        ProcessStatus::Exited { .. } => "exited",
        ProcessStatus::Killed => "killed",
        ProcessStatus::Failed { .. } => "failed",
    }
}

/// The processes `ps` (and `top`) list: live ones unless `all`, then the
/// `--status` and `--parent` filters.
pub fn select(mut procs: Vec<ProcessInfo>, all: bool, status: &[String], parent: Option<u64>) -> Result<Vec<ProcessInfo>> {
    for w in status {
        let known = STATUS_WORDS.contains(&w.trim().to_ascii_lowercase().as_str())
            || ["waiting_model", "blocked_recv", "blocked_stdin"].contains(&w.trim());
        if !known {
            let hint = aos_abi::suggest::did_you_mean(w, STATUS_WORDS.iter().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            bail!("unknown status `{w}`{hint}; the statuses are {}", STATUS_WORDS.join(", "));
        }
    }
    let wants_ended = status.iter().any(|w| matches!(w.trim(), "exited" | "killed" | "failed" | "ended"));
    if !all && !wants_ended {
        procs.retain(|p| !p.status.is_terminal());
    }
    if !status.is_empty() {
        procs.retain(|p| status.iter().any(|w| status_matches(p, w)));
    }
    if let Some(pp) = parent {
        procs.retain(|p| p.parent == Some(pp));
    }
    Ok(procs)
}

pub async fn ps(a: PsArgs) -> Result<i32> {
    let procs: Vec<ProcessInfo> = client()?.get("/v1/ps").await?;
    let procs = select(procs, a.all, &a.status, a.parent)?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&procs)?);
    } else if a.quiet {
        for p in &procs {
            outln!("{}", p.pid);
        }
    } else if a.tree {
        out!("{}", ps_table(&tree_order(&procs), true));
    } else {
        out!("{}", ps_table(&procs.iter().map(|p| (String::new(), p)).collect::<Vec<_>>(), false));
    }
    Ok(0)
}

/// The processes in tree order (each followed by its children), with the
/// tree drawing that goes before each pid. A process whose parent is not
/// listed is a root.
fn tree_order(procs: &[ProcessInfo]) -> Vec<(String, &ProcessInfo)> {
    let listed: std::collections::HashSet<u64> = procs.iter().map(|p| p.pid).collect();
    let mut children: BTreeMap<u64, Vec<&ProcessInfo>> = BTreeMap::new();
    let mut roots = Vec::new();
    for p in procs {
        match p.parent.filter(|pp| listed.contains(pp)) {
            Some(pp) => children.entry(pp).or_default().push(p),
            None => roots.push(p),
        }
    }
    fn walk<'a>(
        p: &'a ProcessInfo,
        prefix: &str,
        branch: &str,
        children: &BTreeMap<u64, Vec<&'a ProcessInfo>>,
        out: &mut Vec<(String, &'a ProcessInfo)>,
    ) {
        out.push((format!("{prefix}{branch}"), p));
        let kids = children.get(&p.pid).map(Vec::as_slice).unwrap_or(&[]);
        let next = match branch {
            "" => prefix.to_string(),
            "└─ " => format!("{prefix}   "),
            _ => format!("{prefix}│  "),
        };
        for (i, k) in kids.iter().enumerate() {
            walk(k, &next, if i + 1 == kids.len() { "└─ " } else { "├─ " }, children, out);
        }
    }
    let mut out = Vec::new();
    for r in roots {
        walk(r, "", "", &children, &mut out);
    }
    out
}

/// Short status word of a process; a sleeping one says how long until it wakes.
pub fn status_word(s: &ProcessStatus) -> String {
    match s {
        ProcessStatus::Sleeping { until_ms } => {
            let left = until_ms.saturating_sub(aos_kernel::process::now_ms()).div_ceil(1000);
            format!("sleeping({})", age(left))
        }
        ProcessStatus::Exited { code } => format!("exited({code})"),
        other => status_base(other).to_string(),
    }
}


/// provider/model, with a long model path shortened to its file name.
pub fn model_label(p: &ProcessInfo) -> String {
    let m = if p.model.contains('/') && matches!(p.provider.as_str(), "script" | "local") {
        std::path::Path::new(&p.model).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or(p.model.clone())
    } else {
        p.model.clone()
    };
    format!("{}/{}", p.provider, m)
}

/// The share of a process's prompt tokens its provider served from its
/// prompt cache (`62%`), `-` when none was reported as cached.
pub fn cached_cell(c: &aos_kernel::Counters) -> String {
    c.cached_percent().map(|p| format!("{p}%")).unwrap_or_else(|| "-".into())
}

/// The `ps` table; `tree` draws each row's tree prefix before its pid.
pub fn ps_table(procs: &[(String, &ProcessInfo)], tree: bool) -> String {
    let now = aos_kernel::process::now_ms();
    let mut rows = vec![["PID", "PARENT", "STATUS", "PROVIDER/MODEL", "STEPS", "TOKENS", "CACHED", "SYSCALLS", "AGE", "TASK"].map(String::from).to_vec()];
    for (prefix, p) in procs {
        let c = &p.counters;
        rows.push(vec![
            if tree { format!("{prefix}{}", p.pid) } else { p.pid.to_string() },
            p.parent.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
            status_word(&p.status),
            model_label(p),
            c.steps.to_string(),
            format!("{}{}", c.total_tokens(), if c.tokens_estimated { "~" } else { "" }),
            cached_cell(c),
            c.syscalls.values().sum::<u64>().to_string(),
            age(now.saturating_sub(c.started_at_ms) / 1000),
            one_line_task(&p.task, 60),
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

/// A task on one line, cut to `max` characters (with `…`).
pub fn one_line_task(task: &str, max: usize) -> String {
    let flat: String = task.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut s: String = flat.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_share_of_the_prompt() {
        let mut c = aos_kernel::Counters::default();
        assert_eq!(cached_cell(&c), "-");
        c.prompt_tokens = 4000;
        assert_eq!(cached_cell(&c), "-", "nothing reported as cached");
        c.cached_prompt_tokens = 2500;
        assert_eq!(cached_cell(&c), "62%");
    }
}
