//! Bench of the `local` provider (`cargo bench -p aos-llm-local`): prints a
//! table of prompt/generation speed next to llama.cpp's own counters
//! (`llama_perf_context`), step time over a 20-step run of one process (KV
//! reuse keeps it flat), and memory per process context (RSS delta).
//!
//! Sections 1 and 3 measure the model itself, so their provider decodes
//! two-stage (the model writes every reply); section 2 runs the 20 steps
//! both with the default decoding (the plan builds most replies, see
//! `frame.rs`/`bind.rs`) and two-stage.
//!
//! llama.cpp's `llama-bench` tool is not part of the vendored sources of
//! `llama-cpp-sys-2` (only its README is), so section 0 measures the same
//! way it does — `pp512`: 512 prompt tokens decoded in one batch; `tg128`:
//! 128 tokens decoded one at a time, no sampling — directly on llama.cpp
//! through `llama-cpp-2`, same model, same thread count. That is the ceiling
//! our provider's figures are compared with.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use aos_llm_local::{Decoding, LocalConfig, LocalProvider};
use aos_providers::{Message, Role};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap()))
        .unwrap_or(0)
}

/// llama-bench's method on raw llama.cpp: (pp tok/s, tg tok/s), mean of `reps`.
fn llama_bench_method(path: &std::path::Path, threads: i32, n_prompt: usize, n_gen: usize, reps: usize) -> (f64, f64) {
    use llama_cpp_2::context::params::LlamaContextParams;
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::model::LlamaModel;
    use llama_cpp_2::token::LlamaToken;
    let backend = aos_llm_local::engine::backend().unwrap();
    let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default()).unwrap();
    let params = LlamaContextParams::default()
        .with_n_ctx(std::num::NonZeroU32::new((n_prompt + n_gen + 16) as u32))
        .with_n_batch(n_prompt as u32)
        .with_n_ubatch(n_prompt as u32)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model.new_context(backend, params).unwrap();
    let n_vocab = model.n_vocab();
    // Deterministic pseudo-random tokens, as llama-bench uses random ones.
    let mut x: u64 = 0x2545F4914F6CDD1D;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        LlamaToken((x % n_vocab as u64) as i32)
    };
    let mut batch = LlamaBatch::new(n_prompt, 1);
    let (mut pp, mut tg) = (0.0, 0.0);
    for _ in 0..reps {
        ctx.clear_kv_cache();
        batch.clear();
        for i in 0..n_prompt {
            batch.add(rnd(), i as i32, &[0], i + 1 == n_prompt).unwrap();
        }
        let t = Instant::now();
        ctx.decode(&mut batch).unwrap();
        pp += n_prompt as f64 / t.elapsed().as_secs_f64();
        ctx.clear_kv_cache();
        let t = Instant::now();
        for i in 0..n_gen {
            batch.clear();
            batch.add(rnd(), i as i32, &[0], true).unwrap();
            ctx.decode(&mut batch).unwrap();
        }
        tg += n_gen as f64 / t.elapsed().as_secs_f64();
    }
    (pp / reps as f64, tg / reps as f64)
}

fn main() {
    let Some(model_path) = common::model_or_skip("bench") else {
        return;
    };
    let cfg = LocalConfig { max_live_contexts: 8, decoding: Decoding::TwoStage, ..LocalConfig::default() };
    let (pp, tg) = llama_bench_method(&model_path, cfg.n_threads, 512, 128, 3);
    println!("raw llama.cpp, llama-bench method, {} threads: pp512 {pp:.0} tok/s, tg128 {tg:.0} tok/s", cfg.n_threads);
    println!("config: n_ctx {} n_batch {} threads {} decoding {:?}", cfg.n_ctx, cfg.n_batch, cfg.n_threads, cfg.decoding);
    let p = LocalProvider::new(cfg.clone());
    let planned = LocalProvider::new(LocalConfig { decoding: Decoding::default(), ..cfg.clone() });
    let rss0 = rss_kib();
    let t = Instant::now();
    let load_ms = p.preload("default").unwrap();
    println!("model load: {load_ms:.0} ms (verify+load {:.0} ms), RSS +{} MiB", t.elapsed().as_secs_f64() * 1e3, (rss_kib() - rss0) / 1024);

    // 1. Throughput on a fresh process with every syscall (longest prompt).
    let task = common::Task { task: "Write a haiku about the sea to sea.txt, then exit".into(), caps: vec!["all".into()], expect: vec![], history: vec![] };
    let mut rows = Vec::new();
    for rep in 0..3 {
        let pid = 500 + rep;
        let rss_before = rss_kib();
        let r = common::request(pid, &task);
        p.complete_blocking(r).unwrap();
        let s = p.last_stats(pid).unwrap();
        rows.push((s, rss_kib().saturating_sub(rss_before)));
    }
    println!("\n| run | prompt tok | prompt tok/s (ours) | prompt tok/s (llama.cpp) | gen tok | gen tok/s grammar (ours, incl. sampling) | eval tok/s (llama.cpp, decode only) | choose name ms | RSS delta MiB |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, (s, rss)) in rows.iter().enumerate() {
        let llama_p = if s.llama_p_eval_ms > 0.0 { s.llama_n_p_eval as f64 * 1e3 / s.llama_p_eval_ms } else { 0.0 };
        let llama_g = if s.llama_eval_ms > 0.0 { s.llama_n_eval as f64 * 1e3 / s.llama_eval_ms } else { 0.0 };
        println!(
            "| {} | {} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {:.1} |",
            i + 1, s.prompt_evaluated, s.prompt_tps(), llama_p, s.generated_tokens, s.gen_tps(), llama_g, s.choose_ms, *rss as f64 / 1024.0
        );
    }
    let (live, parked, bytes) = p.cache_info("default").unwrap();
    println!("live contexts {live}, parked {parked} ({bytes} bytes)");

    // 2. A 20-step run of one process, with the default decoding (the plan)
    // and with the model writing every reply.
    for (label, p, pid) in [("default decoding (plan)", &planned, 600), ("two-stage (the model writes every reply)", &p, 601)] {
        let mut req = common::request(pid, &task);
        let mut steps = Vec::new();
        for step in 1..=20 {
            let t = Instant::now();
            let out = p.complete_blocking(req.clone()).unwrap();
            let wall = t.elapsed().as_secs_f64() * 1e3;
            let s = p.last_stats(pid).unwrap();
            steps.push((step, wall, s));
            req.messages.push(Message::new(Role::Assistant, out.text));
            req.messages.push(Message::new(Role::User, format!("[RESULT FS_WRITE#{step}] {{\"path\": \"sea.txt\", \"bytes\": {}}}", 40 + step)));
        }
        println!("\n20 steps, {label}:");
        println!("| step | prompt tok | evaluated | reused | generated | prompt ms | choose ms | gen ms | total ms |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for (step, wall, s) in &steps {
            if [1, 2, 3, 5, 10, 15, 20].contains(step) {
                println!(
                    "| {step} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {wall:.0} |",
                    s.prompt_tokens, s.prompt_evaluated, s.prompt_reused, s.generated_tokens, s.prompt_ms, s.choose_ms, s.gen_ms
                );
            }
        }
        let avg = |r: std::ops::Range<usize>| steps[r.clone()].iter().map(|x| x.1).sum::<f64>() / r.len() as f64;
        println!("step 1: {:.0} ms; mean of steps 2-20: {:.0} ms; step 20: {:.0} ms", steps[0].1, avg(1..20), steps[19].1);
    }

    // 3. Memory per process context: RSS delta of one more process (new
    // context + its prompt), and the size of its saved snapshot.
    let before = rss_kib();
    let r = common::request(700, &task);
    p.complete_blocking(r).unwrap();
    let after = rss_kib();
    println!("\nRSS delta of one more process context (n_ctx {}): {:.1} MiB", p.config().n_ctx, (after - before) as f64 / 1024.0);
    let p1 = LocalProvider::new(LocalConfig { max_live_contexts: 1, ..cfg });
    p1.complete_blocking(common::request(1, &task)).unwrap();
    p1.complete_blocking(common::request(2, &task)).unwrap();
    let (_, n, bytes) = p1.cache_info("default").unwrap();
    println!("saved snapshot of an evicted process ({} prompt tokens): {n} snapshot, {:.1} MiB", rows[0].0.prompt_tokens, bytes as f64 / 1048576.0);
}
