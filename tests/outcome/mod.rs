//! The outcome evaluation of the embedded model (`evals/outcome.jsonl`,
//! `evals/outcome-heldout.jsonl`; see `evals/README.md`): each task runs end
//! to end through the real kernel and drivers — a fresh `$AOS_HOME` and
//! workspace holding the task's given files, every built-in capability (what
//! `aos run` grants by default), the default 50-step budget — and a checker
//! looks at the final workspace, the agent's stdout, its `SYS_EXIT` result
//! and its exit code.
//!
//! Verdicts: **right** (every check holds), **wrong with exit 0**, **wrong
//! with a non-zero exit** (killed and failed processes count as non-zero),
//! and, counted on their own, **inputs damaged**: a given file that the task
//! did not name in its checks was changed or removed.
//!
//! One [`LocalProvider`](aos_llm_local::LocalProvider) serves every task of
//! a run (as one daemon serves every process), so the model is loaded once.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_abi::CapabilitySet;
use aos_kernel::{Budgets, Entry, ExitStatus, Kernel, KernelConfig, SpawnRequest};
use aos_providers::{Provider, ProviderError};
use aos_runtime::{DriverRuntime, RuntimeConfig};
use serde::Deserialize;

/// One task of an outcome set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub id: String,
    pub task: String,
    /// Files in the workspace before the run (path → content).
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Capabilities (default: every built-in one, as `aos run`).
    #[serde(default)]
    pub caps: Option<Vec<String>>,
    pub expect: Expect,
}

/// What a right outcome looks like.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Checks of workspace paths. The given files named here are the task's
    /// targets; every other given file must be left as it was.
    #[serde(default)]
    pub files: BTreeMap<String, FileCheck>,
    /// Texts the agent's stdout must contain.
    #[serde(default)]
    pub stdout: Vec<String>,
    /// Texts its stdout or its `SYS_EXIT` result must contain.
    #[serde(default)]
    pub output: Vec<String>,
    /// Least number of characters of stdout (a summary was shown).
    #[serde(default)]
    pub stdout_min_chars: Option<usize>,
    /// `0` (default) or `"nonzero"`.
    #[serde(default)]
    pub exit: ExitExpect,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExitExpect {
    #[default]
    Zero,
    NonZero,
}

impl<'de> Deserialize<'de> for ExitExpect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) if n.as_i64() == Some(0) => Ok(ExitExpect::Zero),
            serde_json::Value::String(s) if s == "nonzero" => Ok(ExitExpect::NonZero),
            other => Err(serde::de::Error::custom(format!("exit: 0 or \"nonzero\", not {other}"))),
        }
    }
}

/// Checks of one path. Texts are compared with trailing whitespace trimmed
/// (`equals`); lines are non-empty lines.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCheck {
    pub equals: Option<String>,
    pub starts_with: Option<String>,
    #[serde(default)]
    pub contains: Vec<String>,
    #[serde(default)]
    pub nonempty: bool,
    pub lines: Option<usize>,
    pub min_lines: Option<usize>,
    pub max_lines: Option<usize>,
    #[serde(default)]
    pub absent: bool,
    #[serde(default)]
    pub dir: bool,
}

/// The tasks of `evals/<name>`.
pub fn load(name: &str) -> Vec<Task> {
    let p = crate_root().join("../evals").join(name);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad task line {l}: {e}")))
        .collect()
}

fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Right,
    WrongExit0,
    WrongNonZero,
}

/// How one task went.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: String,
    pub verdict: Verdict,
    /// Given files changed or removed though the task did not name them.
    pub damaged: Vec<String>,
    /// Why the outcome is wrong (empty when right).
    pub problems: Vec<String>,
    /// Exit code (1 for a process the kernel ended, 137 when killed).
    pub code: i64,
    pub status: String,
    pub stdout: String,
    pub result: Option<String>,
    /// `NAME args` of every call made, `!` before failed ones.
    pub calls: Vec<String>,
    /// Text files of the final workspace (path → content, cut at 2 KiB).
    pub files: BTreeMap<String, String>,
    pub secs: f64,
}

/// Runs tasks against one shared provider.
pub struct Runner {
    provider: Arc<dyn Provider>,
    /// Compiled drivers, shared by the runs (each run has its own home).
    cache: tempfile::TempDir,
    /// Longest wall time of one task before it is killed.
    pub timeout: Duration,
}

impl Runner {
    pub fn new(provider: Arc<dyn Provider>) -> Runner {
        Runner { provider, cache: tempfile::tempdir().unwrap(), timeout: Duration::from_secs(600) }
    }

    /// Runs `task` on a fresh home and workspace and checks the result.
    pub async fn run(&self, task: &Task) -> Outcome {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&ws).unwrap();
        for (path, content) in &task.files {
            let p = ws.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
        }
        let t = Instant::now();
        let (status, log) = self.run_kernel(task, &home, &ws).await;
        let secs = t.elapsed().as_secs_f64();
        judge(task, &ws, status, &log, secs)
    }

    async fn run_kernel(&self, task: &Task, home: &Path, ws: &Path) -> (ExitStatus, Vec<Entry>) {
        let mut rc = RuntimeConfig::new(home);
        rc.cache_dir = Some(self.cache.path().to_path_buf());
        rc.memory = Some(aos_runtime::aos_memory::MemoryConfig::default().build(home).expect("memory service"));
        let runtime = DriverRuntime::open(rc).await.expect("driver runtime");
        let provider = Arc::clone(&self.provider);
        let factory: aos_kernel::ProviderFactory = Arc::new(move |name: &str, _| {
            if name == "local" {
                Ok(Arc::clone(&provider))
            } else {
                Err(ProviderError::Other(format!("the outcome eval only runs `local`, not {name}")))
            }
        });
        let kernel = Kernel::new(KernelConfig::new(home), vec![runtime.clone()], factory);
        let caps = match &task.caps {
            Some(c) => CapabilitySet::parse(c).expect("capabilities"),
            None => CapabilitySet::all_builtin(),
        };
        let pid = kernel
            .spawn(SpawnRequest {
                task: task.task.clone(),
                role: "a careful, autonomous assistant".into(),
                provider: "local".into(),
                model: "default".into(),
                base_url: None,
                caps,
                budgets: Budgets { max_steps: Some(50), max_tokens: None, max_wall_time: None },
                workspace: Some(ws.canonicalize().unwrap()),
                pipe_to: None,
                parent: None,
                tool_mode: None,
                // Unattended: nothing is asked.
                approvals: Some(aos_kernel::approval::Policy::never()),
            })
            .await
            .expect("spawn");
        let status = match tokio::time::timeout(self.timeout, kernel.wait(pid)).await {
            Ok(s) => s.expect("wait"),
            Err(_) => {
                let _ = kernel.kill(pid);
                kernel.wait(pid).await.expect("wait after kill")
            }
        };
        let log = kernel.logs(pid).expect("logs").into_iter().map(|e| e.entry).collect();
        runtime.shutdown().await;
        (status, log)
    }
}

/// The checker: verdict, problems and damaged inputs of a finished run.
pub fn judge(task: &Task, ws: &Path, status: ExitStatus, log: &[Entry], secs: f64) -> Outcome {
    let (code, result, status_text) = match &status {
        ExitStatus::Exited { code, result } => (*code, result.clone(), format!("exited {code}")),
        ExitStatus::Killed => (137, None, "killed".to_string()),
        ExitStatus::Failed { reason } => (1, None, format!("failed: {reason}")),
    };
    let mut stdout = String::new();
    let mut calls = Vec::new();
    for e in log {
        match e {
            Entry::Stdout { text } => stdout.push_str(text),
            Entry::Result { name, args, .. } => calls.push(format!("{name} {}", short(&args.to_string()))),
            Entry::Error { name, args, error, .. } => calls.push(format!(
                "!{} {} -> {}",
                name.as_deref().unwrap_or("?"),
                args.as_ref().map(|a| short(&a.to_string())).unwrap_or_default(),
                short(error)
            )),
            _ => {}
        }
    }
    let mut problems = Vec::new();
    let e = &task.expect;
    match (e.exit, code) {
        (ExitExpect::Zero, 0) | (ExitExpect::NonZero, 1..) | (ExitExpect::NonZero, ..=-1) => {}
        (ExitExpect::Zero, _) => problems.push(format!("expected exit 0, got {status_text}")),
        (ExitExpect::NonZero, _) => problems.push("expected a non-zero exit, got 0".to_string()),
    }
    for (path, check) in &e.files {
        problems.extend(check_file(&ws.join(path), path, check));
    }
    for want in &e.stdout {
        if !stdout.contains(want.as_str()) {
            problems.push(format!("stdout lacks {want:?}"));
        }
    }
    let output = format!("{stdout}\n{}", result.as_deref().unwrap_or(""));
    for want in &e.output {
        if !output.contains(want.as_str()) {
            problems.push(format!("stdout and result lack {want:?}"));
        }
    }
    if let Some(n) = e.stdout_min_chars {
        if stdout.trim().chars().count() < n {
            problems.push(format!("stdout has fewer than {n} characters"));
        }
    }
    let mut damaged = Vec::new();
    for (path, content) in &task.files {
        let named = e.files.keys().any(|t| path == t || Path::new(path).starts_with(t));
        if named {
            continue;
        }
        match std::fs::read_to_string(ws.join(path)) {
            Ok(now) if now == *content => {}
            Ok(_) => damaged.push(format!("{path} changed")),
            Err(_) => damaged.push(format!("{path} removed")),
        }
    }
    let verdict = if problems.is_empty() {
        Verdict::Right
    } else if code == 0 {
        Verdict::WrongExit0
    } else {
        Verdict::WrongNonZero
    };
    let files = workspace_files(ws);
    Outcome { id: task.id.clone(), verdict, damaged, problems, code, status: status_text, stdout, result, calls, files, secs }
}

/// Text files under `ws` (relative path → content, cut at 2 KiB).
fn workspace_files(ws: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![ws.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if let Ok(text) = std::fs::read_to_string(&p) {
                let rel = p.strip_prefix(ws).unwrap_or(&p).display().to_string();
                out.insert(rel, text.chars().take(2048).collect());
            }
        }
    }
    out
}

fn short(s: &str) -> String {
    let one: String = s.replace('\n', "\\n");
    if one.chars().count() > 90 {
        format!("{}...", one.chars().take(90).collect::<String>())
    } else {
        one
    }
}

fn nonempty_lines(s: &str) -> usize {
    s.lines().filter(|l| !l.trim().is_empty()).count()
}

fn check_file(p: &Path, path: &str, c: &FileCheck) -> Vec<String> {
    let mut out = Vec::new();
    if c.absent {
        if p.exists() {
            out.push(format!("{path} still exists"));
        }
        return out;
    }
    if c.dir {
        if !p.is_dir() {
            out.push(format!("{path} is not a directory"));
        }
        return out;
    }
    let text = match std::fs::read_to_string(p) {
        Ok(t) => t,
        Err(e) => return vec![format!("{path}: {e}")],
    };
    let shown = short(&text);
    if let Some(want) = &c.equals {
        if text.trim_end() != want.trim_end() {
            out.push(format!("{path} is {shown:?}, not {want:?}"));
        }
    }
    if let Some(want) = &c.starts_with {
        if !text.starts_with(want.as_str()) {
            out.push(format!("{path} ({shown:?}) does not start with {want:?}"));
        }
    }
    for want in &c.contains {
        if !text.contains(want.as_str()) {
            out.push(format!("{path} ({shown:?}) lacks {want:?}"));
        }
    }
    if c.nonempty && text.trim().is_empty() {
        out.push(format!("{path} is empty"));
    }
    let n = nonempty_lines(&text);
    if c.lines.is_some_and(|want| n != want) {
        out.push(format!("{path} has {n} lines, not {}", c.lines.unwrap()));
    }
    if c.min_lines.is_some_and(|want| n < want) {
        out.push(format!("{path} has {n} lines, fewer than {}", c.min_lines.unwrap()));
    }
    if c.max_lines.is_some_and(|want| n > want) {
        out.push(format!("{path} has {n} lines, more than {}", c.max_lines.unwrap()));
    }
    out
}

/// Counts of a set's outcomes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub n: usize,
    pub right: usize,
    pub wrong_exit0: usize,
    pub wrong_nonzero: usize,
    pub damaged: usize,
}

impl Summary {
    pub fn of(outcomes: &[Outcome]) -> Summary {
        let mut s = Summary { n: outcomes.len(), ..Summary::default() };
        for o in outcomes {
            match o.verdict {
                Verdict::Right => s.right += 1,
                Verdict::WrongExit0 => s.wrong_exit0 += 1,
                Verdict::WrongNonZero => s.wrong_nonzero += 1,
            }
            if !o.damaged.is_empty() {
                s.damaged += 1;
            }
        }
        s
    }

    pub fn pct(&self, k: usize) -> f64 {
        if self.n == 0 { 0.0 } else { 100.0 * k as f64 / self.n as f64 }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "right {}/{} = {:.1} % | wrong, exit 0: {} = {:.1} % | wrong, non-zero exit: {} = {:.1} % | inputs damaged: {}",
            self.right,
            self.n,
            self.pct(self.right),
            self.wrong_exit0,
            self.pct(self.wrong_exit0),
            self.wrong_nonzero,
            self.pct(self.wrong_nonzero),
            self.damaged
        )
    }
}

/// One line per task for the report.
pub fn describe(o: &Outcome) -> String {
    let v = match o.verdict {
        Verdict::Right => "RIGHT",
        Verdict::WrongExit0 => "WRONG exit 0",
        Verdict::WrongNonZero => "WRONG non-zero",
    };
    let mut s = format!("{v:<15} {:<20} {:>5.1}s {} | calls: {}", o.id, o.secs, o.status, o.calls.join("; "));
    if let Some(r) = &o.result {
        s.push_str(&format!(" | result: {}", short(r)));
    }
    if !o.problems.is_empty() {
        s.push_str(&format!(" | {}", o.problems.join("; ")));
    }
    if !o.damaged.is_empty() {
        s.push_str(&format!(" | DAMAGED: {}", o.damaged.join(", ")));
    }
    s
}
