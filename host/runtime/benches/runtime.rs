//! Driver-runtime benchmark: syscall latency (reused vs fresh instance vs a
//! native read) and runtime start-up (cold compile vs warm cache hit).
//!
//! Run with `cargo bench -p aos-runtime --bench runtime`.
//! `AOS_BENCH_QUICK=1` cuts every iteration count by 10x (CI smoke run).

#![allow(clippy::unwrap_used)] // a benchmark stops on any failure

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_runtime::{AgentContext, CacheOutcome, CapabilitySet, DriverRuntime, RuntimeConfig};
use serde_json::json;

const FILE_NAME: &str = "f.bin";
const FILE_SIZE: usize = 4096;

/// Latency summary of one case, in microseconds.
struct Stats {
    n: usize,
    median: f64,
    p90: f64,
    p99: f64,
    mean: f64,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Stats {
        assert!(!samples.is_empty());
        samples.sort_unstable();
        let us = |d: Duration| d.as_nanos() as f64 / 1000.0;
        // Nearest-rank percentile on the sorted samples.
        let pct = |p: f64| {
            let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            us(samples[rank - 1])
        };
        let total: Duration = samples.iter().sum();
        Stats {
            n: samples.len(),
            median: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
            mean: us(total) / samples.len() as f64,
        }
    }
}

fn main() {
    let quick = std::env::var("AOS_BENCH_QUICK").is_ok_and(|v| v == "1");
    let scale = |n: usize| if quick { (n / 10).max(1) } else { n };

    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot build the tokio runtime");
    tokio_rt.block_on(run(quick, scale));
}

async fn run(quick: bool, scale: impl Fn(usize) -> usize) {
    let warmup = scale(100);
    let n_reused = scale(5_000);
    let n_fresh = scale(2_000);
    let n_native = scale(20_000);
    let n_warm_start = scale(5);

    let home = tempfile::tempdir().expect("tempdir");
    let home_path = home.path().to_path_buf();

    // --- start-up: cold (empty $AOS_HOME, components compiled) -------------
    let t = Instant::now();
    let cold = DriverRuntime::open(RuntimeConfig::new(&home_path)).await.expect("cold open");
    let cold_ms = ms(t.elapsed());
    let cold_report = report_str(cold.load_report());
    assert!(
        cold.load_report().iter().all(|(_, o)| *o == CacheOutcome::Compiled),
        "cold start should compile every driver, got {cold_report}"
    );
    drop(cold);

    // --- start-up: warm (same home, cache hit) -----------------------------
    let mut warm_ms = Vec::with_capacity(n_warm_start);
    let mut warm_report = String::new();
    for _ in 0..n_warm_start {
        let t = Instant::now();
        let warm = DriverRuntime::open(RuntimeConfig::new(&home_path)).await.expect("warm open");
        warm_ms.push(ms(t.elapsed()));
        warm_report = report_str(warm.load_report());
        assert!(
            warm.load_report().iter().all(|(_, o)| *o == CacheOutcome::Hit),
            "warm start should hit the cache for every driver, got {warm_report}"
        );
    }
    warm_ms.sort_by(f64::total_cmp);
    let warm_median = warm_ms[warm_ms.len() / 2];

    // --- workspace with a 4 KiB UTF-8 text file ----------------------------
    let ws = home_path.join("ws");
    std::fs::create_dir_all(&ws).expect("create workspace");
    let line = b"the quick brown fox jumps over the lazy dog 0123456789\n";
    let content: Vec<u8> = line.iter().copied().cycle().take(FILE_SIZE).collect();
    let file = ws.join(FILE_NAME);
    std::fs::write(&file, &content).expect("write bench file");

    let agent = AgentContext {
        pid: 1,
        caps: CapabilitySet::parse(["fs:ro"]).expect("caps"),
        workspace: ws.clone(),
    };

    // --- FS_READ through the runtime, reused instance ----------------------
    let rt = DriverRuntime::open(RuntimeConfig { reuse_instances: true, ..RuntimeConfig::new(&home_path) })
        .await
        .expect("open (reuse)");
    let reused = bench_calls(&rt, &agent, warmup, n_reused).await;
    assert_eq!(rt.live_instances(), 1, "reused mode should keep exactly one pooled instance");
    rt.release_agent(agent.pid);
    drop(rt);

    // --- FS_READ through the runtime, fresh instance per call --------------
    let rt = DriverRuntime::open(RuntimeConfig { reuse_instances: false, ..RuntimeConfig::new(&home_path) })
        .await
        .expect("open (fresh)");
    let fresh = bench_calls(&rt, &agent, warmup, n_fresh).await;
    assert_eq!(rt.live_instances(), 0, "fresh mode should pool nothing");
    drop(rt);

    // --- native std::fs::read of the same file -----------------------------
    let native = bench_native(&file, warmup, n_native);

    // --- report ------------------------------------------------------------
    println!();
    println!(
        "## aos-runtime bench ({}; 4 KiB FS_READ, {} warm-up calls per case)",
        if quick { "AOS_BENCH_QUICK=1: 10x fewer iterations" } else { "full run" },
        warmup
    );
    println!();
    println!("| case | n | median (µs) | p90 (µs) | p99 (µs) | mean (µs) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, s) in [
        ("FS_READ, reused instance", &reused),
        ("FS_READ, fresh instance per call", &fresh),
        ("native std::fs::read", &native),
    ] {
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            s.n, s.median, s.p90, s.p99, s.mean
        );
    }
    println!();
    println!(
        "Overhead vs native (median): reused {:.1}x, fresh {:.1}x; fresh/reused {:.1}x",
        reused.median / native.median,
        fresh.median / native.median,
        fresh.median / reused.median
    );
    println!();
    println!("| start-up | runs | time (ms) | load_report |");
    println!("|---|---:|---:|---|");
    println!("| cold (empty $AOS_HOME) | 1 | {cold_ms:.1} | {cold_report} |");
    println!("| warm (same home, median) | {} | {warm_median:.1} | {warm_report} |", warm_ms.len());
    println!();
    println!(
        "cold start compiled every driver: yes; warm start hit the cache for every driver: yes \
         (warm runs ms: {})",
        warm_ms.iter().map(|m| format!("{m:.1}")).collect::<Vec<_>>().join(", ")
    );
}

async fn bench_calls(rt: &Arc<DriverRuntime>, agent: &AgentContext, warmup: usize, n: usize) -> Stats {
    let args = json!({ "path": FILE_NAME });
    // Check once that the call does what we think it does.
    let out = rt.call(agent, "FS_READ", &args).await.expect("FS_READ failed");
    let text = out.output["content"].as_str().expect("FS_READ returned no text content");
    assert_eq!(text.len(), FILE_SIZE, "FS_READ returned {} bytes", text.len());
    assert!(out.output.get("encoding_notice").is_none(), "file was not read as UTF-8 text");
    for _ in 0..warmup {
        rt.call(agent, "FS_READ", &args).await.expect("FS_READ failed");
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let out = rt.call(agent, "FS_READ", &args).await;
        samples.push(t.elapsed());
        std::hint::black_box(out.expect("FS_READ failed"));
    }
    Stats::of(samples)
}

fn bench_native(file: &Path, warmup: usize, n: usize) -> Stats {
    for _ in 0..warmup {
        std::hint::black_box(std::fs::read(file).expect("read"));
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let bytes = std::fs::read(std::hint::black_box(file));
        samples.push(t.elapsed());
        assert_eq!(std::hint::black_box(bytes.expect("read")).len(), FILE_SIZE);
    }
    Stats::of(samples)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report_str(report: &[(String, CacheOutcome)]) -> String {
    report.iter().map(|(name, o)| format!("{name}: {o:?}")).collect::<Vec<_>>().join(", ")
}
