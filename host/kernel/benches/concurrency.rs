//! Scheduler throughput and fairness against a model that takes 200 ms:
//! a loopback HTTP server speaking the OpenAI chat-completions format answers
//! every request after exactly 200 ms, the kernel's real `openai` provider
//! talks to it, and N processes (each replying forever with one
//! SYS_WRITE_STDOUT) share a concurrency limit C. The ideal is C / 0.2 s
//! steps per second; the spread of steps between processes shows fairness.
//!
//! Run: `cargo bench -p aos-kernel --bench concurrency` (add `--profile dev`
//! to reuse the dev build). Prints a table.

#![allow(clippy::unwrap_used)] // a benchmark stops on any failure

use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_abi::CapabilitySet;
use aos_kernel::{Kernel, KernelConfig, SpawnRequest};
use aos_providers::{build_provider, ProviderConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const DELAY: Duration = Duration::from_millis(200);

/// Answers every POST after DELAY with one chat completion.
async fn model_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 16384];
                loop {
                    // Read one request (headers + Content-Length body); keep-alive.
                    let (head_end, len) = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                                .unwrap_or(0);
                            break (i + 4, len);
                        }
                        match sock.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    };
                    while buf.len() < head_end + len {
                        match sock.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    tokio::time::sleep(DELAY).await;
                    let body = serde_json::json!({
                        "id": "x", "object": "chat.completion", "created": 0, "model": "bench",
                        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                            "content": "[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"tick\"}"}}],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
                    })
                    .to_string();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

async fn run(c: usize, n: usize, secs: u64, port: u16) -> (f64, u64, u64, f64) {
    let home = tempfile::tempdir().unwrap();
    let mut cfg = KernelConfig::new(home.path());
    cfg.model_concurrency = c;
    cfg.default_budgets.max_steps = None;
    let base = format!("http://127.0.0.1:{port}/v1");
    // The kernel's own syscalls only (the agents only think).
    let kernel = Kernel::new(
        cfg,
        Vec::new(),
        Arc::new(move |p: &str, _b: Option<&str>| {
            let mut pc = ProviderConfig::new(p);
            pc.base_url = Some(base.clone());
            build_provider(&pc)
        }),
    );
    let started = Instant::now();
    let mut pids = Vec::new();
    for i in 0..n {
        let pid = kernel
            .spawn(SpawnRequest {
                task: format!("tick {i}"),
                provider: "openai".into(),
                model: "bench".into(),
                caps: CapabilitySet::empty(),
                ..Default::default()
            })
            .await
            .unwrap();
        pids.push(pid);
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let steps: Vec<u64> = pids.iter().map(|p| kernel.info(*p).unwrap().counters.steps).collect();
    let elapsed = started.elapsed().as_secs_f64();
    for p in &pids {
        let _ = kernel.kill(*p);
    }
    let total: u64 = steps.iter().sum();
    let mean = total as f64 / n as f64;
    let sd = (steps.iter().map(|s| (*s as f64 - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
    (total as f64 / elapsed, *steps.iter().min().unwrap(), *steps.iter().max().unwrap(), sd)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let port = model_server().await;
        let secs = if std::env::var_os("AOS_BENCH_QUICK").is_some() { 3 } else { 10 };
        println!("## kernel scheduling against a model that answers in 200 ms ({secs} s per row)\n");
        println!("| C | processes | steps/s | ideal C/0.2 s | efficiency | steps per process min / max | stddev |");
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        for (c, n) in [(1, 4), (4, 16), (8, 64), (16, 256)] {
            let (sps, min, max, sd) = run(c, n, secs, port).await;
            let ideal = c as f64 / DELAY.as_secs_f64();
            println!(
                "| {c} | {n} | {sps:.1} | {ideal:.1} | {:.0}% | {min} / {max} | {sd:.2} |",
                100.0 * sps / ideal
            );
        }
    });
}
