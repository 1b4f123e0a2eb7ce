//! Journal benchmark (no harness; prints tables): the kernel with the
//! daemon's real journal (the same `Journal` sink, file and fsync setting
//! the daemon uses), driven by an instant in-process model, so the numbers
//! are the kernel + journal, not a model.
//!
//! * Steps/s and step latency (p50/p99: time between two model calls of
//!   one process) with fsync on and off, at 100 agents x `AOS_BENCH_STEPS`
//!   (40) steps and 10,000 agents x `AOS_BENCH_STEPS_10K` (4) steps. A step
//!   is one model call whose reply is one `SYS_WRITE_STDOUT`; the last
//!   reply is `SYS_EXIT`.
//! * The share of wall time spent in fsync (measured by the journal), the
//!   events one fsync made durable (the group commit's batch) and the mean
//!   time of one fsync.
//! * Restart time vs live processes and journal size: N processes blocked
//!   in `RECV_MSG` after H steps; then a new kernel recovers them from the
//!   journal directory (what `aos kernel start` does after a crash).
//!
//! Run: `cargo bench -p aos-daemon --bench journal` (add `--profile dev`
//! to reuse the dev build). `AOS_BENCH_QUICK=1` runs smaller sizes.
//! The machine's load average is printed with every row: numbers taken
//! while other builds run are noisy.

#![allow(clippy::unwrap_used)] // a failed set-up step is the run's failure

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_abi::CapabilitySet;
use aos_daemon::journal;
use aos_kernel::{Journal, Kernel, KernelConfig, ProcessStatus, SpawnRequest};
use aos_providers::{Completion, CompletionRequest, Provider, ProviderError, Usage};
use aos_runtime::{DriverRuntime, RuntimeConfig};
use async_trait::async_trait;
use std::sync::Mutex;

/// Replies at once. `model = "steps:N"`: N steps of one SYS_WRITE_STDOUT,
/// then SYS_EXIT. `model = "idle:N"`: N such steps, then RECV_MSG forever.
/// Records the time between two calls of the same pid (one step).
#[derive(Default)]
struct InstantModel {
    state: Mutex<HashMap<u64, (u64, Option<Instant>)>>,
    latencies: Mutex<Vec<Duration>>,
}

#[async_trait]
impl Provider for InstantModel {
    fn name(&self) -> &str {
        "instant"
    }
    async fn complete(&self, req: CompletionRequest) -> Result<Completion, ProviderError> {
        let now = Instant::now();
        let n = {
            let mut m = self.state.lock().unwrap();
            let e = m.entry(req.pid).or_insert((0, None));
            e.0 += 1;
            if let Some(prev) = e.1.replace(now) {
                self.latencies.lock().unwrap().push(now - prev);
            }
            e.0
        };
        let (kind, steps) = req.model.split_once(':').unwrap_or(("steps", "1"));
        let steps: u64 = steps.parse().unwrap_or(1);
        let text = if n <= steps {
            format!("[SYS_CALL::SYS_WRITE_STDOUT] {{\"text\": \"step {n}\"}}")
        } else if kind == "idle" {
            "[SYS_CALL::RECV_MSG] {}".to_string()
        } else {
            "[SYS_CALL::SYS_EXIT] {}".to_string()
        };
        Ok(Completion { text, tool_calls: Vec::new(), usage: Usage { prompt_tokens: 10, completion_tokens: 5, estimated: false, ..Default::default() }, truncated: false })
    }
    fn resume(&self, pid: u64, steps_done: u64) {
        self.state.lock().unwrap().insert(pid, (steps_done, None));
    }
    fn release(&self, pid: u64) {
        self.state.lock().unwrap().remove(&pid);
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

/// A kernel configured like the daemon's defaults, with `model` as its only provider.
async fn kernel(home: &Path, cache: &Path, model: Arc<InstantModel>) -> Kernel {
    let mut rc = RuntimeConfig::new(home);
    rc.cache_dir = Some(cache.to_path_buf());
    let rt = DriverRuntime::open(rc).await.expect("driver runtime");
    let cfg = aos_daemon::config::Config::default();
    let mut kc = KernelConfig::new(home);
    kc.model_concurrency = cfg.model_concurrency;
    kc.context_window = cfg.context_window;
    kc.retention = cfg.retention.to_kernel();
    let provider: Arc<dyn Provider> = model;
    Kernel::new(kc, vec![rt], Arc::new(move |_: &str, _: Option<&str>| Ok(provider.clone())))
}

fn req(model: String, ws: &Path) -> SpawnRequest {
    SpawnRequest {
        task: "bench".into(),
        provider: "instant".into(),
        model,
        caps: CapabilitySet::parse(["ipc"]).unwrap(),
        workspace: Some(ws.to_path_buf()),
        ..Default::default()
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

struct Run {
    steps: u64,
    wall: Duration,
    p50: Duration,
    p99: Duration,
    fsync_share: Option<f64>,
    /// Events per fsync (batch size) and mean time of one fsync.
    per_fsync: Option<(f64, Duration)>,
}

async fn throughput(base: &Path, cache: &Path, agents: usize, steps: u64, fsync: bool) -> Run {
    let home = base.join(format!("tp-{agents}-{fsync}"));
    let ws = home.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let model = Arc::new(InstantModel::default());
    let k = kernel(&home, cache, model.clone()).await;
    let j = journal::FileJournal::open(&home.join("journal"), journal::JournalOptions::new(fsync)).unwrap();
    k.attach_journal(j.clone());
    let t = Instant::now();
    let mut pids = Vec::with_capacity(agents);
    for _ in 0..agents {
        pids.push(k.spawn(req(format!("steps:{steps}"), &ws)).await.unwrap());
    }
    for &p in &pids {
        // Err(Reaped): it ended and the retention rules already removed it.
        let _ = k.wait(p).await;
    }
    let wall = t.elapsed();
    let mut lat = std::mem::take(&mut *model.latencies.lock().unwrap());
    let fsync_share = fsync_share(&j, wall);
    let st = j.status();
    let per_fsync = (st.fsyncs > 0).then(|| (st.events as f64 / st.fsyncs as f64, j.fsync_time() / st.fsyncs as u32));
    Run { steps: agents as u64 * (steps + 1), wall, p50: pct(&mut lat, 0.5), p99: pct(&mut lat, 0.99), fsync_share, per_fsync }
}

fn fsync_share(j: &journal::FileJournal, wall: Duration) -> Option<f64> {
    Some(j.fsync_time().as_secs_f64() / wall.as_secs_f64())
}

/// N processes blocked in RECV_MSG after `hist` steps; then the time a new
/// kernel takes to recover them from the journal directory.
async fn restart(base: &Path, cache: &Path, live: usize, hist: u64) -> (Duration, u64, usize) {
    let home = base.join(format!("rs-{live}-{hist}"));
    let ws = home.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let jdir = home.join("journal");
    {
        let k = kernel(&home, cache, Arc::new(InstantModel::default())).await;
        // fsync off to fill the journal fast: the restart is what is measured.
        let j = journal::FileJournal::open(&jdir, journal::JournalOptions::new(false)).unwrap();
        k.attach_journal(j.clone());
        for _ in 0..live {
            k.spawn(req(format!("idle:{hist}"), &ws)).await.unwrap();
        }
        loop {
            let blocked = k.ps().iter().filter(|i| i.status == ProcessStatus::BlockedRecv).count();
            if blocked == live {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(k.sync(Duration::from_secs(60)).await, "journal written");
        // Left blocked, as a crash leaves them (their tasks stay parked
        // in this runtime; the old kernel writes nothing more).
        std::mem::forget(k);
        std::mem::forget(j);
    }
    let bytes = dir_bytes(&jdir);
    // A second "run": recover into a fresh kernel.
    let k = kernel(&home, cache, Arc::new(InstantModel::default())).await;
    let t = Instant::now();
    let j = journal::FileJournal::open(&jdir, journal::JournalOptions::new(true)).unwrap();
    k.attach_journal(j.clone());
    let replay = j.replay().unwrap();
    let report = k.recover(replay).await;
    let took = t.elapsed();
    let resumed = report.iter().filter(|l| l.contains("resumed")).count();
    (took, bytes, resumed)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let quick = std::env::var_os("AOS_BENCH_QUICK").is_some();
    let env_u64 = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let steps_100 = env_u64("AOS_BENCH_STEPS", 40);
    let steps_10k = env_u64("AOS_BENCH_STEPS_10K", 4);
    let big = if quick { 1_000 } else { 10_000 };
    let base = tempfile::tempdir().unwrap();
    // One compiled-driver cache for every kernel of the bench.
    let cache = std::env::temp_dir().join("aos-journal-bench-cache");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        println!("journal bench: kernel + daemon journal, instant model ({} cores)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
        println!();
        println!(
            "{:<28} {:>6} {:>10} {:>10} {:>10} {:>10} {:>8} {:>12} {:>10}  load",
            "run", "fsync", "steps", "steps/s", "p50", "p99", "fsync%", "events/fsync", "per fsync"
        );
        println!("{}", "-".repeat(124));
        for (agents, steps) in [(100usize, steps_100), (big, steps_10k)] {
            for fsync in [true, false] {
                let r = throughput(base.path(), &cache, agents, steps, fsync).await;
                let (batch, per) = match r.per_fsync {
                    Some((b, d)) => (format!("{b:.0}"), ms(d)),
                    None => ("n/a".into(), "n/a".into()),
                };
                println!(
                    "{:<28} {:>6} {:>10} {:>10.0} {:>10} {:>10} {:>8} {:>12} {:>10}  {}",
                    format!("{agents} agents x {} steps", steps + 1),
                    if fsync { "on" } else { "off" },
                    r.steps,
                    r.steps as f64 / r.wall.as_secs_f64(),
                    ms(r.p50),
                    ms(r.p99),
                    r.fsync_share.map(|s| format!("{:.0}%", s * 100.0)).unwrap_or_else(|| "n/a".into()),
                    batch,
                    per,
                    loadavg()
                );
            }
        }
        println!();
        println!("{:<36} {:>12} {:>10} {:>12}  load", "restart (recover live processes)", "journal", "resumed", "time");
        println!("{}", "-".repeat(90));
        let sizes: &[(usize, u64)] = if quick { &[(100, 4), (1_000, 4), (1_000, 40)] } else { &[(100, 4), (1_000, 4), (1_000, 40), (10_000, 4)] };
        for &(live, hist) in sizes {
            let (took, bytes, resumed) = restart(base.path(), &cache, live, hist).await;
            println!(
                "{:<36} {:>12} {:>10} {:>12}  {}",
                format!("{live} live x {hist} steps of history"),
                format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64),
                resumed,
                ms(took),
                loadavg()
            );
        }
    });
    let _ = std::fs::remove_dir_all(PathBuf::from(base.path()));
}
