//! `aos top`: a live view of the kernel's processes (ratatui + crossterm):
//! status (a sleeping process with the time until it wakes; one waiting on
//! its model with the call's phase, e.g. `model(prompt 45%)`), steps, tokens
//! (with those of the model call in progress) and syscalls with their rates
//! (TOK/S: the model's own figure while it generates), age and task, and totals.
//!
//! Keys: ↑/↓ (j/k), PgUp/PgDn, Home/End select a process; `s`/`S` change
//! the sort column, `r` reverses it; `K` (or Delete) kills the selected
//! process and its descendants after a y/n confirmation; Enter or `l` shows
//! its log (scrollable, following the end; Esc goes back); `a` toggles ended
//! processes; `?` shows the keys; `q`, Esc or Ctrl-C quits. Columns share
//! the terminal's width (the task gets what is left; on a narrow terminal
//! the least useful columns are dropped). When the kernel goes away (a
//! restart), the view stays and reconnects.
//!
//! When stdout is not a terminal it prints one snapshot with the same
//! columns (rates measured over `--interval`), live processes unless `--all`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::ExecutableCommand;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table, TableState, Wrap};

use aos_daemon::api::{KillReply, StatusInfo};
use aos_daemon::client::Client;
use aos_abi::ModelProgress;
use aos_kernel::{KernelEvent, ProcessInfo, ProcessStatus};

use super::output::{age, format_entry, EntryFormat};
use super::procs::{cached_cell, model_label, one_line_task, status_word};

#[derive(Debug, Args)]
#[command(after_help = "Keys: ↑/↓ select, s/S sort column, r reverse, K kill (asks y/n), Enter/l log, a ended processes, ? help, q quit\n\n\
    Examples:\n  aos top\n  aos top --interval 0.5\n  aos top | cat     # one snapshot, same columns\n  aos top --all | cat")]
pub struct TopArgs {
    /// Seconds between refreshes (and, for a snapshot, over which rates are measured).
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Also show processes that have ended.
    #[arg(long, short = 'a')]
    pub all: bool,
}

/// The columns, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Pid,
    Parent,
    Status,
    Model,
    Steps,
    Tokens,
    /// The share of prompt tokens the provider served from its cache.
    Cached,
    TokRate,
    Syscalls,
    CallRate,
    Age,
    Task,
}

const COLS: [Col; 12] = [
    Col::Pid, Col::Parent, Col::Status, Col::Model, Col::Steps, Col::Tokens, Col::Cached, Col::TokRate, Col::Syscalls,
    Col::CallRate, Col::Age, Col::Task,
];

/// Which columns go first when the terminal is too narrow for all.
const DROP_ORDER: [Col; 9] = [Col::Cached, Col::CallRate, Col::Parent, Col::Syscalls, Col::TokRate, Col::Age, Col::Model, Col::Steps, Col::Tokens];

/// Sortable columns, in the order `s` cycles through them.
const SORTS: [Col; 9] = [Col::Pid, Col::Status, Col::Model, Col::Steps, Col::Tokens, Col::TokRate, Col::Syscalls, Col::CallRate, Col::Age];

impl Col {
    fn title(self) -> &'static str {
        match self {
            Col::Pid => "PID",
            Col::Parent => "PARENT",
            Col::Status => "STATUS",
            Col::Model => "PROVIDER/MODEL",
            Col::Steps => "STEPS",
            Col::Tokens => "TOKENS",
            Col::Cached => "CACHED",
            Col::TokRate => "TOK/S",
            Col::Syscalls => "SYSCALLS",
            Col::CallRate => "CALL/S",
            Col::Age => "AGE",
            Col::Task => "TASK",
        }
    }
}

/// One process as displayed, with its rates.
#[derive(Debug, Clone)]
struct Proc {
    info: ProcessInfo,
    tok_rate: f64,
    call_rate: f64,
}

impl Proc {
    /// Its tokens so far, with those of the model call it waits on (the
    /// prompt evaluated, the reply generated) as its provider reports them.
    fn tokens(&self) -> u64 {
        tokens_now(&self.info)
    }
    /// Tokens per second: the model's own figure while it generates, else
    /// measured over the last refresh.
    fn tok_rate(&self) -> f64 {
        match &self.info.model_progress {
            Some(ModelProgress::Generating { tokens_per_s, .. }) if *tokens_per_s > 0.0 => *tokens_per_s,
            _ => self.tok_rate,
        }
    }
    fn calls(&self) -> u64 {
        self.info.counters.syscalls.values().sum()
    }
    fn cell(&self, c: Col, now_ms: u64) -> String {
        let p = &self.info;
        match c {
            Col::Pid => p.pid.to_string(),
            Col::Parent => p.parent.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
            Col::Status => match &p.model_progress {
                Some(m) => model_status(m),
                None => status_word(&p.status),
            },
            Col::Model => model_label(p),
            Col::Steps => p.counters.steps.to_string(),
            Col::Tokens => format!("{}{}", self.tokens(), if p.counters.tokens_estimated { "~" } else { "" }),
            Col::Cached => cached_cell(&p.counters),
            Col::TokRate => format!("{:.0}", self.tok_rate()),
            Col::Syscalls => self.calls().to_string(),
            Col::CallRate => format!("{:.1}", self.call_rate),
            Col::Age => age(now_ms.saturating_sub(p.counters.started_at_ms) / 1000),
            Col::Task => one_line_task(&p.task, 500),
        }
    }
    fn cmp(&self, other: &Proc, c: Col) -> std::cmp::Ordering {
        let (a, b) = (&self.info, &other.info);
        let by = match c {
            Col::Status => status_rank(&a.status).cmp(&status_rank(&b.status)),
            Col::Model => model_label(a).cmp(&model_label(b)),
            Col::Steps => a.counters.steps.cmp(&b.counters.steps),
            Col::Tokens => self.tokens().cmp(&other.tokens()),
            Col::TokRate => self.tok_rate().total_cmp(&other.tok_rate()),
            Col::Syscalls => self.calls().cmp(&other.calls()),
            Col::CallRate => self.call_rate.total_cmp(&other.call_rate),
            // Older first = smaller start time first.
            Col::Age => b.counters.started_at_ms.cmp(&a.counters.started_at_ms),
            _ => std::cmp::Ordering::Equal,
        };
        by.then(a.pid.cmp(&b.pid))
    }
}

/// A process's tokens: its counters plus those of the model call in progress.
fn tokens_now(p: &ProcessInfo) -> u64 {
    p.counters.total_tokens() + p.model_progress.as_ref().map_or(0, ModelProgress::tokens)
}

/// The status of a process waiting on its model, with the call's phase:
/// `model(loading)`, `model(plan 1/3)`, `model(prompt 45%)`, `model(gen 42)`.
fn model_status(m: &ModelProgress) -> String {
    match m {
        ModelProgress::Loading { .. } => "model(loading)".into(),
        ModelProgress::Planning { done, total } => format!("model(plan {done}/{total})"),
        ModelProgress::Prompt { done, total } => format!("model(prompt {}%)", done * 100 / (*total).max(1)),
        ModelProgress::Generating { tokens, .. } => format!("model(gen {tokens})"),
    }
}

/// Busy first when sorting by status.
fn status_rank(s: &ProcessStatus) -> u8 {
    match s {
        ProcessStatus::Running => 0,
        ProcessStatus::WaitingModel => 1,
        ProcessStatus::Ready | ProcessStatus::Paused { .. } | ProcessStatus::Approval { .. } => 2,
        ProcessStatus::Sleeping { .. } => 3,
        ProcessStatus::BlockedRecv | ProcessStatus::BlockedStdin => 4,
        ProcessStatus::Exited { .. } => 5,
        ProcessStatus::Failed { .. } => 6,
        ProcessStatus::Killed => 7,
    }
}

/// Rates from two samples of the process list (per pid: time, tokens, calls).
#[derive(Default)]
struct Rates {
    prev: HashMap<u64, (Instant, u64, u64)>,
}

impl Rates {
    fn apply(&mut self, procs: Vec<ProcessInfo>) -> Vec<Proc> {
        let now = Instant::now();
        let mut next = HashMap::new();
        let out = procs
            .into_iter()
            .map(|info| {
                let tokens = tokens_now(&info);
                let calls: u64 = info.counters.syscalls.values().sum();
                let (tok_rate, call_rate) = match self.prev.get(&info.pid) {
                    Some((t, tk, c)) => {
                        let dt = now.duration_since(*t).as_secs_f64().max(0.001);
                        (tokens.saturating_sub(*tk) as f64 / dt, calls.saturating_sub(*c) as f64 / dt)
                    }
                    None => (0.0, 0.0),
                };
                next.insert(info.pid, (now, tokens, calls));
                Proc { info, tok_rate, call_rate }
            })
            .collect();
        self.prev = next;
        out
    }
}

fn totals(procs: &[Proc]) -> String {
    let live = procs.iter().filter(|p| !p.info.status.is_terminal()).count();
    let tokens: u64 = procs.iter().map(Proc::tokens).sum();
    let calls: u64 = procs.iter().map(Proc::calls).sum();
    let steps: u64 = procs.iter().map(|p| p.info.counters.steps).sum();
    format!("{} processes ({live} live), {steps} steps, {tokens} tokens, {calls} syscalls", procs.len())
}

/// The journal's fault, when it cannot be written (processes are paused).
fn journal_warning(st: &StatusInfo) -> Option<String> {
    let f = st.journal.as_ref()?.fault.as_ref()?;
    Some(format!("JOURNAL FAILING ({} paused): {}", st.processes.paused, f.error))
}

/// The columns that fit in `width` and their widths (the task gets the
/// rest, up to its longest value); `marked` is the column whose title
/// carries the sort mark.
fn layout(rows: &[Vec<String>], width: usize, marked: Option<Col>) -> Vec<(usize, usize)> {
    let natural: Vec<usize> = (0..COLS.len())
        .map(|i| {
            let title = COLS[i].title().len() + usize::from(marked == Some(COLS[i]));
            rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).max(title)
        })
        .collect();
    let mut shown: Vec<usize> = (0..COLS.len()).collect();
    let fixed = |shown: &[usize]| -> usize {
        shown.iter().filter(|&&i| COLS[i] != Col::Task).map(|&i| natural[i].min(24) + 2).sum()
    };
    // Keep at least 12 columns of task text; drop columns until that fits.
    for drop in DROP_ORDER {
        if fixed(&shown) + 12 <= width {
            break;
        }
        shown.retain(|&i| COLS[i] != drop);
    }
    let used = fixed(&shown);
    shown
        .into_iter()
        .map(|i| {
            let w = if COLS[i] == Col::Task { width.saturating_sub(used).clamp(4, natural[i].max(4)) } else { natural[i].min(24) };
            (i, w)
        })
        .collect()
}

/// Cuts `s` to `w` characters (with `…`), padded to `w`.
fn fit(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        return format!("{s:<w$}");
    }
    let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
    t.push('…');
    t
}

pub async fn run(a: TopArgs) -> Result<i32> {
    let client = super::kernel::connect()?.1;
    let interval = Duration::from_secs_f64(a.interval.clamp(0.1, 60.0));
    if !std::io::stdout().is_terminal() {
        return snapshot(&client, &a, interval).await;
    }
    // Fail before taking over the screen when no kernel runs.
    let _: StatusInfo = client.get("/v1/status").await?;
    enable_raw_mode()?;
    std::io::stdout().execute(EnterAlternateScreen)?;
    let res = live(client, &a, interval).await;
    let _ = disable_raw_mode();
    let _ = std::io::stdout().execute(LeaveAlternateScreen);
    res.map(|_| 0)
}

/// One snapshot on stdout: the interactive view's columns, at the
/// terminal's width when `COLUMNS` says it, else at full width.
async fn snapshot(client: &Client, a: &TopArgs, interval: Duration) -> Result<i32> {
    let mut rates = Rates::default();
    let status: StatusInfo = client.get("/v1/status").await?;
    rates.apply(client.get("/v1/ps").await?);
    tokio::time::sleep(interval).await;
    let all = rates.apply(client.get("/v1/ps").await?);
    let mut procs: Vec<Proc> = all.iter().filter(|p| a.all || !p.info.status.is_terminal()).cloned().collect();
    procs.sort_by(|x, y| x.cmp(y, Col::Pid));
    let now_ms = aos_kernel::process::now_ms();
    let rows: Vec<Vec<String>> = procs.iter().map(|p| COLS.iter().map(|&c| p.cell(c, now_ms)).collect()).collect();
    let width = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(usize::MAX / 4);
    let cols = layout(&rows, width, None);
    outln!("kernel pid {}, up {}: {}", status.pid, age(status.uptime_secs), totals(&all));
    if let Some(w) = journal_warning(&status) {
        outln!("{w}");
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cols.iter().map(|&(i, w)| fit(&cells[i], w)).collect();
        outln!("{}", parts.join("  ").trim_end());
    };
    line(COLS.iter().map(|c| c.title().to_string()).collect());
    for r in rows {
        line(r);
    }
    Ok(0)
}

/// What the screen shows.
enum Mode {
    List,
    Help,
    /// Waiting for y/n to kill this pid.
    ConfirmKill(u64),
    /// The log of this pid; `scroll` lines from the end (0 = following the end).
    Log { pid: u64, scroll: usize },
}

struct App {
    client: Client,
    all: bool,
    sort: usize,
    reverse: bool,
    selected: Option<u64>,
    mode: Mode,
    procs: Vec<Proc>,
    status: Option<StatusInfo>,
    /// The kernel could not be reached: why, and since when.
    down: Option<(String, Instant)>,
    message: Option<(String, Instant)>,
    rates: Rates,
    log_lines: Vec<String>,
    page: usize,
}

impl App {
    /// Fetches status and processes; on failure keeps the last view and
    /// reconnects (a new client, so a restarted daemon's new token is used).
    async fn refresh(&mut self) {
        let r: Result<(StatusInfo, Vec<ProcessInfo>)> = async {
            let st: StatusInfo = self.client.get("/v1/status").await?;
            let ps: Vec<ProcessInfo> = self.client.get("/v1/ps").await?;
            Ok((st, ps))
        }
        .await;
        match r {
            Ok((st, ps)) => {
                if self.status.as_ref().is_some_and(|old| old.pid != st.pid) {
                    self.rates = Rates::default();
                    if self.down.is_some() {
                        self.note(format!("reconnected to the kernel (pid {})", st.pid));
                    }
                }
                self.down = None;
                self.status = Some(st);
                self.procs = self.rates.apply(ps);
            }
            Err(e) => {
                let why = if aos_daemon::client::is_not_running(&e) { "not running".to_string() } else { e.to_string() };
                let since = self.down.as_ref().map(|(_, t)| *t).unwrap_or_else(Instant::now);
                self.down = Some((why, since));
                if let Ok((_, c)) = super::kernel::connect() {
                    self.client = c;
                }
            }
        }
        if let Mode::Log { pid, .. } = self.mode {
            self.load_log(pid).await;
        }
    }

    async fn load_log(&mut self, pid: u64) {
        let r: Result<Vec<String>> = async {
            let mut s = self.client.stream(&format!("/v1/procs/{pid}/logs")).await?;
            let mut lines = Vec::new();
            while let Some(ev) = s.next_json::<KernelEvent>().await? {
                match ev {
                    KernelEvent::Entry { entry } => {
                        lines.extend(format_entry(&entry, EntryFormat::default()).lines().map(str::to_string))
                    }
                    KernelEvent::Exited { status, .. } => lines.push(format!("[{pid}] {status}")),
                    _ => {}
                }
            }
            Ok(lines)
        }
        .await;
        match r {
            Ok(l) => self.log_lines = l,
            Err(e) if self.down.is_none() => self.log_lines = vec![format!("cannot read the log of pid {pid}: {e}")],
            Err(_) => {}
        }
    }

    fn note(&mut self, m: String) {
        self.message = Some((m, Instant::now()));
    }

    /// The processes shown, in display order.
    fn visible(&self) -> Vec<&Proc> {
        let mut v: Vec<&Proc> = self.procs.iter().filter(|p| self.all || !p.info.status.is_terminal()).collect();
        let col = SORTS[self.sort];
        v.sort_by(|a, b| a.cmp(b, col));
        // Numbers read best largest first; pid and model ascending.
        let descending = !matches!(col, Col::Pid | Col::Model | Col::Status);
        if descending != self.reverse {
            v.reverse();
        }
        v
    }

    fn move_selection(&mut self, delta: isize) {
        let v = self.visible();
        if v.is_empty() {
            self.selected = None;
            return;
        }
        let cur = self.selected.and_then(|s| v.iter().position(|p| p.info.pid == s));
        let i = match cur {
            None => 0,
            Some(i) => (i as isize + delta).clamp(0, v.len() as isize - 1) as usize,
        };
        self.selected = Some(v[i].info.pid);
    }

    /// Handles a key; `true` means quit.
    async fn key(&mut self, k: KeyEvent) -> bool {
        if k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL) {
            return true;
        }
        match &mut self.mode {
            Mode::Help => self.mode = Mode::List,
            Mode::ConfirmKill(pid) => {
                let pid = *pid;
                self.mode = Mode::List;
                if matches!(k.code, KeyCode::Char('y' | 'Y')) {
                    match self.client.post::<_, KillReply>(&format!("/v1/procs/{pid}/kill"), &serde_json::json!({})).await {
                        Ok(r) => {
                            let pids: Vec<String> = r.killed.iter().map(|p| p.to_string()).collect();
                            self.note(format!("killed {}", pids.join(" ")));
                        }
                        Err(e) => self.note(format!("kill {pid}: {e}")),
                    }
                    self.refresh().await;
                } else {
                    self.note(format!("pid {pid} not killed"));
                }
            }
            Mode::Log { pid, scroll } => match k.code {
                KeyCode::Esc | KeyCode::Char('l' | 'q') | KeyCode::Left => self.mode = Mode::List,
                KeyCode::Up | KeyCode::Char('k') => *scroll += 1,
                KeyCode::Down | KeyCode::Char('j') => *scroll = scroll.saturating_sub(1),
                KeyCode::PageUp => *scroll += self.page.max(1),
                KeyCode::PageDown => *scroll = scroll.saturating_sub(self.page.max(1)),
                KeyCode::Home | KeyCode::Char('g') => *scroll = self.log_lines.len(),
                KeyCode::End | KeyCode::Char('G' | 'f') => *scroll = 0,
                KeyCode::Char('K') | KeyCode::Delete => self.mode = Mode::ConfirmKill(*pid),
                _ => {}
            },
            Mode::List => match k.code {
                KeyCode::Char('q') | KeyCode::Esc => return true,
                KeyCode::Char('?' | 'h') | KeyCode::F(1) => self.mode = Mode::Help,
                KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
                KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
                KeyCode::PageUp => self.move_selection(-(self.page.max(1) as isize)),
                KeyCode::PageDown => self.move_selection(self.page.max(1) as isize),
                KeyCode::Home => self.move_selection(isize::MIN / 2),
                KeyCode::End => self.move_selection(isize::MAX / 2),
                KeyCode::Char('s') | KeyCode::Char('>') => self.sort = (self.sort + 1) % SORTS.len(),
                KeyCode::Char('S') | KeyCode::Char('<') => self.sort = (self.sort + SORTS.len() - 1) % SORTS.len(),
                KeyCode::Char('r') => self.reverse = !self.reverse,
                KeyCode::Char('a') => self.all = !self.all,
                KeyCode::Char('K') | KeyCode::Delete => match self.selected {
                    Some(pid) => self.mode = Mode::ConfirmKill(pid),
                    None => self.note("no process selected (↑/↓ select one)".into()),
                },
                KeyCode::Enter | KeyCode::Char('l') => match self.selected {
                    Some(pid) => {
                        self.mode = Mode::Log { pid, scroll: 0 };
                        self.load_log(pid).await;
                    }
                    None => self.note("no process selected (↑/↓ select one)".into()),
                },
                _ => {}
            },
        }
        false
    }

    fn header(&self) -> String {
        let col = SORTS[self.sort];
        let sort = format!("sort: {}{}", col.title(), if self.reverse { " (reversed)" } else { "" });
        match (&self.status, &self.down) {
            (_, Some((why, since))) => format!(
                " aos top — kernel {why}: reconnecting ({}s) — {} — ? help, q quits",
                since.elapsed().as_secs(),
                if self.procs.is_empty() { "no data".to_string() } else { "last known processes".to_string() }
            ),
            (Some(st), None) => format!(
                " aos top — kernel pid {}, up {} — {}{} — {sort} — ? help, q quits",
                st.pid,
                age(st.uptime_secs),
                totals(&self.procs),
                journal_warning(st).map(|w| format!(" — {w}")).unwrap_or_default()
            ),
            (None, None) => " aos top — connecting…".into(),
        }
    }

    fn draw(&mut self, f: &mut ratatui::Frame) {
        let [top, body, foot] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(1), Constraint::Length(1)]).areas(f.area());
        let reversed = Style::default().add_modifier(Modifier::REVERSED);
        f.render_widget(Paragraph::new(self.header()).style(reversed), top);
        self.page = body.height.saturating_sub(1) as usize;
        match &self.mode {
            Mode::Log { pid, scroll } => self.draw_log(f, body, *pid, *scroll),
            _ => self.draw_list(f, body),
        }
        let footer = match &self.mode {
            Mode::ConfirmKill(pid) => format!(" kill pid {pid} and its descendants? (y/n)"),
            Mode::Log { pid, .. } => format!(" log of pid {pid}: ↑/↓ PgUp/PgDn scroll, End follows, K kill, Esc back"),
            _ => match &self.message {
                Some((m, t)) if t.elapsed() < Duration::from_secs(5) => format!(" {m}"),
                _ => " ↑/↓ select  Enter log  K kill  s/S sort  r reverse  a ended  ? help  q quit".into(),
            },
        };
        f.render_widget(Paragraph::new(footer), foot);
        if matches!(self.mode, Mode::Help) {
            let area = centered(f.area(), 64, 20);
            f.render_widget(Clear, area);
            f.render_widget(
                Paragraph::new(HELP).wrap(Wrap { trim: false }).block(Block::default().borders(Borders::ALL).title(" aos top: keys ")),
                area,
            );
        }
    }

    fn draw_list(&mut self, f: &mut ratatui::Frame, body: Rect) {
        let now_ms = aos_kernel::process::now_ms();
        let color = crate::term::color(false);
        let (rows, statuses, pids): (Vec<Vec<String>>, Vec<ProcessStatus>, Vec<u64>) = {
            let v = self.visible();
            (
                v.iter().map(|p| COLS.iter().map(|&c| p.cell(c, now_ms)).collect()).collect(),
                v.iter().map(|p| p.info.status.clone()).collect(),
                v.iter().map(|p| p.info.pid).collect(),
            )
        };
        if self.selected.is_none_or(|s| !pids.contains(&s)) {
            self.selected = pids.first().copied();
        }
        let sort_col = SORTS[self.sort];
        let cols = layout(&rows, body.width as usize, Some(sort_col));
        let header = Row::new(cols.iter().map(|&(i, w)| {
            let mark = if COLS[i] == sort_col { if self.reverse { "▲" } else { "▼" } } else { "" };
            fit(&format!("{}{mark}", COLS[i].title()), w)
        }))
        .style(Style::default().add_modifier(Modifier::BOLD));
        let table_rows: Vec<Row> = rows
            .iter()
            .zip(&statuses)
            .map(|(r, st)| {
                let row = Row::new(cols.iter().map(|&(i, w)| fit(&r[i], w)).collect::<Vec<_>>());
                match (color, st) {
                    (true, ProcessStatus::Failed { .. }) => row.style(Style::default().fg(Color::Red)),
                    (true, ProcessStatus::Running | ProcessStatus::WaitingModel) => row.style(Style::default().fg(Color::Green)),
                    (_, s) if s.is_terminal() => row.style(Style::default().add_modifier(Modifier::DIM)),
                    _ => row,
                }
            })
            .collect();
        let widths: Vec<Constraint> = cols.iter().map(|&(_, w)| Constraint::Length(w as u16)).collect();
        let table = Table::new(table_rows, widths)
            .header(header)
            .column_spacing(2)
            .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
        let mut state = TableState::default();
        state.select(self.selected.and_then(|s| pids.iter().position(|p| *p == s)));
        f.render_stateful_widget(table, body, &mut state);
        if rows.is_empty() {
            let msg = if self.all { "no processes" } else { "no live processes (a shows ended ones)" };
            f.render_widget(Paragraph::new(msg), Rect { y: body.y + 1, height: 1, ..body });
        }
    }

    fn draw_log(&self, f: &mut ratatui::Frame, body: Rect, pid: u64, scroll: usize) {
        let h = body.height.saturating_sub(1) as usize;
        let n = self.log_lines.len();
        let scroll = scroll.min(n.saturating_sub(h));
        let end = n - scroll;
        let start = end.saturating_sub(h);
        let lines: Vec<Line> = self.log_lines[start..end].iter().map(|l| Line::raw(l.clone())).collect();
        let title = format!(
            "─ log of pid {pid} ({n} lines{}) ",
            if scroll == 0 { ", following" } else { "" }
        );
        f.render_widget(Paragraph::new(title).style(Style::default().add_modifier(Modifier::BOLD)), Rect { height: 1, ..body });
        f.render_widget(Paragraph::new(lines), Rect { y: body.y + 1, height: body.height.saturating_sub(1), ..body });
    }
}

const HELP: &str = "\
↑/↓ j/k     select a process (PgUp/PgDn, Home/End)
Enter, l    show its log (↑/↓ scroll, End follows, Esc back)
K, Delete   kill it and its descendants (asks y/n)
s / S       sort by the next / previous column
r           reverse the sort order
a           show or hide ended processes
?, h        this help
q, Esc      quit (Ctrl-C too)

STATUS: ready, model (waiting for the model; its phase:
loading, plan, prompt %, gen tokens), running (syscalls),
recv (RECV_MSG), stdin (SYS_READ_STDIN), sleeping(T)
(wakes in T), paused (journal failing), exited(code),
killed, failed. TOK/S: the model's own while it generates,
else over the last refresh, like CALL/S.

any key closes this help";

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

async fn live(client: Client, a: &TopArgs, interval: Duration) -> Result<()> {
    let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
    let mut term = ratatui::Terminal::new(backend)?;
    let mut app = App {
        client,
        all: a.all,
        sort: 0,
        reverse: false,
        selected: None,
        mode: Mode::List,
        procs: Vec::new(),
        status: None,
        down: None,
        message: None,
        rates: Rates::default(),
        log_lines: Vec::new(),
        page: 10,
    };
    loop {
        app.refresh().await;
        term.draw(|f| app.draw(f))?;
        // Until the next refresh: keys (redrawn at once) and resizes.
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
            match ev {
                Some(Event::Key(k)) if k.kind == KeyEventKind::Press => {
                    if app.key(k).await {
                        return Ok(());
                    }
                    term.draw(|f| app.draw(f))?;
                }
                Some(Event::Resize(..)) => {
                    term.autoresize()?;
                    term.draw(|f| app.draw(f))?;
                }
                _ => {}
            }
        }
    }
}
