//! Kernel benchmark (no harness; prints a table). Uses an instant in-process
//! provider, so it measures the kernel itself:
//!
//! * syscalls/s: 200 processes, each doing 25 steps of 10 `SYS_WRITE_STDOUT` calls;
//! * RSS per idle process: 1,000 and 10,000 processes blocked in `RECV_MSG`
//!   (VmRSS from /proc/self/status before spawning and once all are blocked),
//!   then the time to wake them all with a message and let them exit.
//!
//! Run: `cargo bench -p aos-kernel --bench kernel` (or with `--profile dev`
//! to reuse the dev build of the dependencies).

#![allow(clippy::unwrap_used)] // a benchmark stops on any failure

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_abi::CapabilitySet;
use aos_kernel::{Kernel, KernelConfig, ProcessStatus, SpawnRequest};
use aos_providers::{Completion, CompletionRequest, Provider, ProviderError, Usage};
use async_trait::async_trait;
use parking_lot::Mutex;

const WRITES_PER_STEP: usize = 10;
const STEPS: u64 = 25;

/// Replies instantly. `model = "writer"`: 10 stdout writes per step, then exit
/// after STEPS steps. `model = "idle"`: RECV_MSG, then exit.
#[derive(Default)]
struct Instant_ {
    steps: Mutex<HashMap<u64, u64>>,
}

#[async_trait]
impl Provider for Instant_ {
    fn name(&self) -> &str {
        "instant"
    }
    async fn complete(&self, req: CompletionRequest) -> Result<Completion, ProviderError> {
        let n = {
            let mut m = self.steps.lock();
            let e = m.entry(req.pid).or_default();
            *e += 1;
            *e
        };
        let text = match (req.model.as_str(), n) {
            ("writer", n) if n <= STEPS => {
                "[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"tick\"}\n".repeat(WRITES_PER_STEP)
            }
            ("idle", 1) => "[SYS_CALL::RECV_MSG] {}".to_string(),
            _ => "[SYS_CALL::SYS_EXIT] {}".to_string(),
        };
        Ok(Completion { text, tool_calls: Vec::new(), usage: Usage { prompt_tokens: 1, completion_tokens: 1, estimated: false, ..Default::default() }, truncated: false })
    }
    fn release(&self, pid: u64) {
        self.steps.lock().remove(&pid);
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

async fn kernel(home: &std::path::Path) -> Kernel {
    let provider: Arc<dyn Provider> = Arc::new(Instant_::default());
    let mut cfg = KernelConfig::new(home);
    cfg.model_concurrency = 64;
    // The kernel's own syscalls only: the bench measures the kernel.
    Kernel::new(cfg, Vec::new(), Arc::new(move |_: &str, _: Option<&str>| Ok(provider.clone())))
}

fn req(model: &str, home: &std::path::Path, caps: &[&str]) -> SpawnRequest {
    SpawnRequest {
        task: "bench".into(),
        provider: "instant".into(),
        model: model.into(),
        caps: CapabilitySet::parse(caps).unwrap(),
        // Share one workspace so the bench measures the kernel, not mkdir.
        workspace: Some(home.join("ws")),
        ..Default::default()
    }
}

async fn throughput(procs: usize) -> (u64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let k = kernel(dir.path()).await;
    let t = Instant::now();
    let mut pids = Vec::new();
    for _ in 0..procs {
        pids.push(k.spawn(req("writer", dir.path(), &[])).await.unwrap());
    }
    for &p in &pids {
        k.wait(p).await.unwrap();
    }
    let elapsed = t.elapsed();
    let calls: u64 = pids.iter().map(|&p| k.info(p).unwrap().counters.syscalls.values().sum::<u64>()).sum();
    (calls, elapsed)
}

async fn idle(n: usize) -> (f64, Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let k = kernel(dir.path()).await;
    // Warm up allocator/runtime so the baseline is fair.
    let before = rss_kib();
    let t = Instant::now();
    let mut pids = Vec::with_capacity(n);
    for _ in 0..n {
        pids.push(k.spawn(req("idle", dir.path(), &["ipc"])).await.unwrap());
    }
    loop {
        let blocked = k.ps().iter().filter(|i| i.status == ProcessStatus::BlockedRecv).count();
        if blocked == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let to_blocked = t.elapsed();
    let after = rss_kib();
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    let t = Instant::now();
    for &p in &pids {
        k.send_message(p, "wake").unwrap();
    }
    for &p in &pids {
        k.wait(p).await.unwrap();
    }
    (per, to_blocked, t.elapsed())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        println!("{:<44} {:>14}", "measurement", "value");
        println!("{}", "-".repeat(60));
        let (calls, el) = throughput(200).await;
        println!(
            "{:<44} {:>14.0}",
            format!("syscalls/s (200 procs x {STEPS} steps x {WRITES_PER_STEP})"),
            calls as f64 / el.as_secs_f64()
        );
        println!("{:<44} {:>14}", "  total syscalls / wall", format!("{calls} / {:.2}s", el.as_secs_f64()));
        for n in [1_000usize, 10_000] {
            let (per, to_blocked, wake) = idle(n).await;
            println!("{:<44} {:>14}", format!("RSS per idle process ({n} in RECV_MSG)"), format!("{:.1} KiB", per / 1024.0));
            println!("{:<44} {:>14}", format!("  spawn -> all blocked ({n})"), format!("{:.2}s", to_blocked.as_secs_f64()));
            println!("{:<44} {:>14}", format!("  wake all + exit ({n})"), format!("{:.2}s", wake.as_secs_f64()));
        }
    });
}
