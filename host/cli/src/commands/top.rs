//! `aos top`: a live view of the kernel's processes (ratatui + crossterm):
//! status, tokens and syscalls with their rates, and totals. `q` quits.
//! When stdout is not a terminal it prints one snapshot and exits.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::ExecutableCommand;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};

use aos_daemon::api::StatusInfo;
use aos_daemon::client::Client;
use aos_kernel::ProcessInfo;

use super::procs::{age, model_label, ps_table, status_word};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  aos top\n  aos top --interval 0.5\n  aos top | cat     # one snapshot")]
pub struct TopArgs {
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Also show processes that have ended.
    #[arg(long, short = 'a')]
    pub all: bool,
}

fn totals(procs: &[ProcessInfo]) -> String {
    let live = procs.iter().filter(|p| !p.status.is_terminal()).count();
    let tokens: u64 = procs.iter().map(|p| p.counters.total_tokens()).sum();
    let calls: u64 = procs.iter().map(|p| p.counters.syscalls.values().sum::<u64>()).sum();
    let steps: u64 = procs.iter().map(|p| p.counters.steps).sum();
    format!("{} processes ({live} live), {steps} steps, {tokens} tokens, {calls} syscalls", procs.len())
}

/// The journal's fault, when it cannot be written (processes are paused).
fn journal_warning(st: &StatusInfo) -> Option<String> {
    let f = st.journal.as_ref()?.fault.as_ref()?;
    Some(format!("JOURNAL FAILING ({} paused): {}", st.processes.paused, f.error))
}

pub async fn run(a: TopArgs) -> Result<i32> {
    let client = super::kernel::connect()?.1;
    let status: StatusInfo = client.get("/v1/status").await?;
    if !std::io::stdout().is_terminal() {
        let procs: Vec<ProcessInfo> = client.get("/v1/ps").await?;
        println!("kernel pid {}, up {}: {}", status.pid, age(status.uptime_secs), totals(&procs));
        if let Some(w) = journal_warning(&status) {
            println!("{w}");
        }
        print!("{}", ps_table(&procs));
        return Ok(0);
    }
    enable_raw_mode()?;
    std::io::stdout().execute(EnterAlternateScreen)?;
    let res = live(&client, &a).await;
    let _ = disable_raw_mode();
    let _ = std::io::stdout().execute(LeaveAlternateScreen);
    res.map(|_| 0)
}

async fn live(client: &Client, a: &TopArgs) -> Result<()> {
    let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
    let mut term = ratatui::Terminal::new(backend)?;
    let interval = Duration::from_secs_f64(a.interval.clamp(0.1, 60.0));
    // (time, tokens, syscalls) at the previous refresh, per pid.
    let mut prev: HashMap<u64, (Instant, u64, u64)> = HashMap::new();
    loop {
        let status: StatusInfo = client.get("/v1/status").await?;
        let mut procs: Vec<ProcessInfo> = client.get("/v1/ps").await?;
        let header = format!(
            " aos top — kernel pid {}, up {} — {}{} — q quits",
            status.pid,
            age(status.uptime_secs),
            totals(&procs),
            journal_warning(&status).map(|w| format!(" — {w}")).unwrap_or_default()
        );
        if !a.all {
            procs.retain(|p| !p.status.is_terminal());
        }
        let now = Instant::now();
        let now_ms = aos_kernel::process::now_ms();
        let rows: Vec<Row> = procs
            .iter()
            .map(|p| {
                let tokens = p.counters.total_tokens();
                let calls: u64 = p.counters.syscalls.values().sum();
                let (tr, cr) = match prev.get(&p.pid) {
                    Some((t, tk, c)) => {
                        let dt = now.duration_since(*t).as_secs_f64().max(0.001);
                        ((tokens.saturating_sub(*tk)) as f64 / dt, (calls.saturating_sub(*c)) as f64 / dt)
                    }
                    None => (0.0, 0.0),
                };
                prev.insert(p.pid, (now, tokens, calls));
                Row::new(vec![
                    p.pid.to_string(),
                    p.parent.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
                    status_word(&p.status),
                    model_label(p),
                    p.counters.steps.to_string(),
                    tokens.to_string(),
                    format!("{tr:.0}"),
                    calls.to_string(),
                    format!("{cr:.1}"),
                    age(now_ms.saturating_sub(p.counters.started_at_ms) / 1000),
                    p.task.chars().take(60).collect::<String>(),
                ])
            })
            .collect();
        term.draw(|f| {
            let [top, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(f.area());
            f.render_widget(Paragraph::new(header.clone()).style(Style::default().add_modifier(Modifier::REVERSED)), top);
            let widths = [
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(10),
                Constraint::Length(24),
                Constraint::Length(6),
                Constraint::Length(8),
                Constraint::Length(6),
                Constraint::Length(8),
                Constraint::Length(6),
                Constraint::Length(7),
                Constraint::Min(10),
            ];
            let t = Table::new(rows.clone(), widths)
                .header(
                    Row::new(["PID", "PARENT", "STATUS", "PROVIDER/MODEL", "STEPS", "TOKENS", "TOK/S", "SYSCALLS", "CALL/S", "AGE", "TASK"])
                        .style(Style::default().add_modifier(Modifier::BOLD)),
                )
                .block(Block::default().borders(Borders::NONE));
            f.render_widget(t, body);
        })?;
        // Wait for the next refresh, watching for q / Esc / Ctrl-C.
        let deadline = Instant::now() + interval;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let ev = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Event>> {
                if event::poll(left.min(Duration::from_millis(200)))? {
                    Ok(Some(event::read()?))
                } else {
                    Ok(None)
                }
            })
            .await??;
            if let Some(Event::Key(k)) = ev {
                if k.kind == KeyEventKind::Press
                    && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
                        || (k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL)))
                {
                    return Ok(());
                }
            }
        }
    }
}
