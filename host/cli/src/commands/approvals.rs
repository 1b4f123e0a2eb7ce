//! `aos approvals`, `aos approve`, `aos deny`: the calls that wait for the
//! operator (see `aos_kernel::approval`), and the inline question `aos run`
//! asks on a terminal.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;
use clap::Args;

use aos_daemon::api::{ApproveBody, DenyBody};
use aos_kernel::approval::{Answer, PendingApproval};
use aos_kernel::events::now_ms;

/// The help of `--approve` on `aos run` and `aos spawn`.
pub const APPROVE_HELP: &str = "Which calls wait for the operator's approval: never; \
    ask-dangerous (EXEC_CMD, FS_DELETE, FS_WRITE over an existing file, NET_FETCH, SPAWN_AGENT, \
    SYS_REGISTER_WEBHOOK, MCP tools); ask-all (every call but SYS_EXIT). Default: `[approvals] mode` \
    of aos.toml, else never. Children inherit it and can only be stricter.";

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  aos approvals\n  aos approvals --json")]
pub struct ApprovalsArgs {
    /// Print a JSON array of `{"id", "pid", "syscall", "args", "asked_at_ms", "expires_at_ms", "always_rule"}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  aos approve 3\n  aos approve 3 --always")]
pub struct ApproveArgs {
    /// The approval's id (`aos approvals`).
    pub id: u64,
    /// Also allow later calls of the same pattern (the command's first word,
    /// the path or the host) in this process tree.
    #[arg(long)]
    pub always: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  aos deny 3 --reason \"do not touch the config\"")]
pub struct DenyArgs {
    /// The approval's id (`aos approvals`).
    pub id: u64,
    /// Told to the model: `denied: by the operator: REASON`.
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub async fn list(a: ApprovalsArgs) -> Result<i32> {
    let client = super::kernel::connect()?.1;
    let pending: Vec<PendingApproval> = client.get("/v1/approvals").await?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&pending)?);
        return Ok(0);
    }
    if pending.is_empty() {
        errln!("no call waits for approval");
        return Ok(0);
    }
    outln!("{:<5} {:<6} {:<22} {:>6}  ARGUMENTS", "ID", "PID", "SYSCALL", "AGE");
    let now = now_ms();
    for p in &pending {
        let age = now.saturating_sub(p.asked_at_ms) / 1000;
        outln!("{:<5} {:<6} {:<22} {:>5}s  {}", p.id, p.pid, p.syscall, age, short(&p.args.to_string(), 100));
    }
    Ok(0)
}

pub async fn approve(a: ApproveArgs) -> Result<i32> {
    let client = super::kernel::connect()?.1;
    let p: PendingApproval = client.post(&format!("/v1/approvals/{}/approve", a.id), &ApproveBody { always: a.always }).await?;
    if a.json {
        outln!("{}", serde_json::to_string(&p)?);
    } else {
        errln!("approved {} of pid {}{}", p.syscall, p.pid, if a.always { format!("; from now on in its tree: {}", p.always_rule) } else { String::new() });
    }
    Ok(0)
}

pub async fn deny(a: DenyArgs) -> Result<i32> {
    let client = super::kernel::connect()?.1;
    let p: PendingApproval = client.post(&format!("/v1/approvals/{}/deny", a.id), &DenyBody { reason: a.reason }).await?;
    if a.json {
        outln!("{}", serde_json::to_string(&p)?);
    } else {
        errln!("denied {} of pid {}", p.syscall, p.pid);
    }
    Ok(0)
}

/// `aos run`'s answer to approval `id`: asked on the terminal (y / n /
/// always), or a denial when there is no terminal to ask on.
pub async fn ask_inline(kernel: &aos_kernel::Kernel, id: u64) {
    let Some(p) = kernel.pending_approvals().into_iter().find(|p| p.id == id) else {
        return;
    };
    if !std::io::stdin().is_terminal() {
        let reason = "no operator to ask: `aos run` is not on a terminal (use `aos spawn` and `aos approve`, or --approve never)";
        let _ = kernel.answer_approval(id, Answer::Deny { reason: Some(reason.into()) });
        errln!("[{}] {} denied: {reason}", p.pid, p.syscall);
        return;
    }
    let question = format!(
        "[{}] approve {} {}? [y]es / [n]o / [a]lways ({}): ",
        p.pid,
        p.syscall,
        short(&p.args.to_string(), 300),
        p.always_rule
    );
    let answer = tokio::task::spawn_blocking(move || {
        let mut err = std::io::stderr();
        loop {
            let _ = write!(err, "{question}");
            let _ = err.flush();
            let mut line = String::new();
            if std::io::stdin().lock().read_line(&mut line).unwrap_or(0) == 0 {
                return Answer::Deny { reason: Some("the operator closed the terminal".into()) };
            }
            match line.trim().to_ascii_lowercase().as_str() {
                "y" | "yes" => return Answer::Approve { always: false },
                "a" | "always" => return Answer::Approve { always: true },
                "n" | "no" => return Answer::Deny { reason: None },
                _ => continue,
            }
        }
    })
    .await
    .unwrap_or(Answer::Deny { reason: None });
    let _ = kernel.answer_approval(id, answer);
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}
