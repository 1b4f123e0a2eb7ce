//! Right-first-call eval of the `local` provider.
//!
//! `cargo run -p aos-llm-local --example eval --release -- [--decoding grammar|two-stage|calibrated|few-shot]
//!     [--thought] [--no-examples] [--model PATH] [--limit N] [-v]`
//!
//! For every task in `evals/tasks.jsonl` it builds the kernel's system prompt
//! for the task's capabilities, asks the model for one reply, parses it with
//! the kernel's parser and validator, and counts replies whose first call is
//! one of the task's `expect` names.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use aos_llm_local::{Decoding, LocalConfig, LocalProvider};

fn main() {
    let mut cfg = LocalConfig::default();
    let mut model = "default".to_string();
    let mut limit = usize::MAX;
    let mut verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--decoding" => {
                cfg.decoding = match args.next().as_deref() {
                    Some("grammar") => Decoding::Grammar,
                    Some("two-stage") => Decoding::TwoStage,
                    Some("calibrated") => Decoding::TwoStageCalibrated,
                    Some("few-shot") => Decoding::FewShot,
                    other => panic!("--decoding grammar|two-stage|calibrated|few-shot, not {other:?}"),
                }
            }
            "--thought" => cfg.thought = true,
            "--no-examples" => cfg.prompt_examples = false,
            "--model" => model = args.next().expect("--model PATH"),
            "--limit" => limit = args.next().expect("--limit N").parse().unwrap(),
            "-v" | "--verbose" => verbose = true,
            other => panic!("unknown argument {other}"),
        }
    }
    if model == "default" && common::model_or_skip("eval").is_none() {
        std::process::exit(2);
    }
    let provider = LocalProvider::new(cfg.clone());
    let tasks = common::load_tasks();
    let t0 = Instant::now();
    let (mut n, mut wf, mut valid, mut right, mut trunc) = (0, 0, 0, 0, 0);
    let mut gen_tokens = 0u64;
    // One pid per capability set: tasks with the same system prompt reuse its
    // KV cache (exact: only the differing tail is evaluated).
    let mut pids: std::collections::HashMap<Vec<String>, u64> = Default::default();
    for task in tasks.iter().take(limit) {
        let next = 1000 + pids.len() as u64;
        let pid = *pids.entry(task.caps.clone()).or_insert(next);
        let mut req = common::request(pid, task);
        req.model = model.clone();
        let out = provider.complete_blocking(req.clone()).expect("completion");
        let c = common::check(&out.text, &req.syscalls);
        let ok = c.valid && c.name.as_ref().is_some_and(|nm| task.expect.contains(nm));
        n += 1;
        wf += c.well_formed as u32;
        valid += c.valid as u32;
        right += ok as u32;
        trunc += out.truncated as u32;
        gen_tokens += out.usage.completion_tokens;
        if verbose {
            println!("     stats {:?}", provider.last_stats(pid));
        }
        if verbose || !ok {
            println!(
                "{} {:<70} expect {:<20} got {:<18} | {}{}",
                if ok { "ok  " } else { "MISS" },
                task.task,
                task.expect.join("|"),
                c.name.as_deref().unwrap_or("-"),
                out.text.replace('\n', "\\n").chars().take(110).collect::<String>(),
                c.problem.map(|p| format!("  [{p}]")).unwrap_or_default()
            );
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "\nconfig: decoding={:?} thought={} examples={} model={model}",
        cfg.decoding, cfg.thought, cfg.prompt_examples
    );
    println!(
        "tasks {n}: well-formed {wf}/{n}, valid (allowed name + schema) {valid}/{n}, truncated {trunc}, RIGHT FIRST CALL {right}/{n} = {:.1}%",
        100.0 * right as f64 / n as f64
    );
    println!("time {secs:.1} s ({:.2} s/task), {gen_tokens} tokens generated", secs / n as f64);
}
