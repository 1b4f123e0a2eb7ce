//! Right-first-call eval of the `local` provider.
//!
//! `cargo run -p aos-llm-local --example eval --release -- [--decoding grammar|two-stage|pmi]
//!     [--thought] [--no-examples] [--model PATH] [--set tasks|heldout|both|next|plans|all] [--names-only] [--threads N] [--limit N] [-v]`
//!
//! For every task in `evals/tasks.jsonl` (and/or the held-out
//! `evals/heldout.jsonl`; default: both, reported separately) it builds the kernel's system prompt
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
    let mut set = "both".to_string();
    let mut names_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--decoding" => {
                cfg.decoding = match args.next().as_deref() {
                    Some("grammar") => Decoding::Grammar,
                    Some("two-stage") => Decoding::TwoStage,
                    Some("pmi") => Decoding::Pmi,
                    other => panic!("--decoding grammar|two-stage|pmi, not {other:?} (calibrated, few-shot and channel were removed: their numbers are in evals/README.md)"),
                }
            }
            "--thought" => cfg.thought = true,
            "--no-examples" => cfg.prompt_examples = false,
            "--model" => model = args.next().expect("--model PATH"),
            "--set" => set = args.next().expect("--set tasks|heldout|both|next|plans|all"),
            "--names-only" => names_only = true,
            "--threads" => cfg.n_threads = args.next().expect("--threads N").parse().unwrap(),
            "--limit" => limit = args.next().expect("--limit N").parse().unwrap(),
            "-v" | "--verbose" => verbose = true,
            other => panic!("unknown argument {other}"),
        }
    }
    if model == "default" && common::model_or_skip("eval").is_none() {
        std::process::exit(2);
    }
    let provider = LocalProvider::new(cfg.clone());
    let files: Vec<&str> = match set.as_str() {
        "tasks" => vec!["tasks.jsonl"],
        "heldout" => vec!["heldout.jsonl"],
        "both" => vec!["tasks.jsonl", "heldout.jsonl"],
        "next" => vec!["next.jsonl"],
        "plans" => vec![],
        "all" => vec!["tasks.jsonl", "heldout.jsonl", "next.jsonl"],
        other => panic!("--set tasks|heldout|both|next|plans|all, not {other}"),
    };
    println!(
        "config: decoding={:?} thought={} examples={} model={model}",
        cfg.decoding, cfg.thought, cfg.prompt_examples
    );
    // One pid per capability set: tasks with the same system prompt reuse its
    // KV cache (exact: only the differing tail is evaluated).
    let mut pids: std::collections::HashMap<Vec<String>, u64> = Default::default();
    if set == "plans" {
        run_plans(&provider, &model);
        return;
    }
    for file in files {
        println!("\n== evals/{file}");
        run_set(&provider, &model, &common::load_task_file(file), limit, verbose, names_only, &mut pids);
    }
}

fn run_set(
    provider: &LocalProvider,
    model: &str,
    tasks: &[common::Task],
    limit: usize,
    verbose: bool,
    names_only: bool,
    pids: &mut std::collections::HashMap<Vec<String>, u64>,
) {
    let t0 = Instant::now();
    let (mut n, mut wf, mut valid, mut right, mut trunc) = (0, 0, 0, 0, 0);
    let mut gen_tokens = 0u64;
    for task in tasks.iter().take(limit) {
        let next = 1000 + pids.len() as u64;
        let pid = *pids.entry(task.caps.clone()).or_insert(next);
        let mut req = common::request(pid, task);
        req.model = model.to_string();
        if names_only {
            req.max_tokens = Some(1);
        }
        let out = provider.complete_blocking(req.clone()).expect("completion");
        let mut c = common::check(&out.text, &req.syscalls);
        if names_only {
            // Only the chosen name: the tag `[SYS_CALL::NAME]` the reply starts with.
            c.name = out.text.strip_prefix("[SYS_CALL::").and_then(|r| r.split(']').next()).map(str::to_string);
            c.valid = c.name.is_some();
            c.problem = None;
        }
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
        "tasks {n}: well-formed {wf}/{n}, valid (allowed name + schema) {valid}/{n}, truncated {trunc}, RIGHT FIRST CALL {right}/{n} = {:.1}%",
        100.0 * right as f64 / n as f64
    );
    println!("time {secs:.1} s ({:.2} s/task), {gen_tokens} tokens generated", secs / n as f64);
}

/// `--set plans`: the plan (one syscall per clause) for each task of
/// `evals/plans.jsonl`, compared with the expected one.
fn run_plans(provider: &LocalProvider, model: &str) {
    #[derive(serde::Deserialize)]
    struct Line {
        task: String,
        caps: Vec<String>,
        plan: Vec<String>,
    }
    let p = common::repo_root().join("evals/plans.jsonl");
    let lines: Vec<Line> = std::fs::read_to_string(&p)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let t0 = Instant::now();
    let (mut whole, mut later, mut later_n, mut first) = (0, 0, 0, 0);
    for l in &lines {
        let (_, specs) = common::specs_for(&l.caps);
        let got = provider.plan(model, &l.task, &specs).expect("plan");
        let clauses = aos_llm_local::plan::clauses(&l.task);
        let ok = got == l.plan;
        whole += ok as u32;
        first += (got.first() == l.plan.first()) as u32;
        for k in 1..l.plan.len() {
            later_n += 1;
            later += (got.get(k) == l.plan.get(k)) as u32;
        }
        println!(
            "{} {:<70} clauses {:?}\n     expect {:?} got {:?}",
            if ok { "ok  " } else { "MISS" },
            l.task,
            clauses,
            l.plan,
            got
        );
    }
    let n = lines.len();
    println!(
        "plans {n}: whole plan right {whole}/{n} = {:.1}%, first call {first}/{n}, later clauses {later}/{later_n} = {:.1}%",
        100.0 * whole as f64 / n as f64,
        100.0 * later as f64 / later_n.max(1) as f64
    );
    println!("time {:.1} s", t0.elapsed().as_secs_f64());
}
