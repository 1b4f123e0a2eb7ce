//! The outcome evaluation of the embedded model (see `evals/README.md`).
//!
//! `cargo run -p aos-tests --example outcome -- [--set outcome|extra|heldout|heldout2|both|all] [--only ID[,ID...]] [--json FILE]`
//!
//! Runs every task of `evals/outcome.jsonl`, `evals/outcome-extra.jsonl`,
//! `evals/outcome-heldout.jsonl` and/or `evals/outcome-heldout2.jsonl`
//! (`both`: the first and the third)
//! end to end through the kernel on the default model, prints one line per
//! task (verdict, calls, exit result, what was wrong) and the counts: right
//! outcome, wrong outcome with exit 0, wrong outcome with a non-zero exit,
//! inputs damaged.

#![allow(clippy::unwrap_used)] // a failed set-up step is the run's failure

#[path = "../outcome/mod.rs"]
mod outcome;

use std::sync::Arc;

use aos_llm_local::{LocalConfig, LocalProvider};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut set = "both".to_string();
    let mut only: Vec<String> = Vec::new();
    let mut json_out: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--set" => set = args.next().expect("--set outcome|extra|heldout|heldout2|both|all"),
            "--only" => only = args.next().expect("--only ID,...").split(',').map(String::from).collect(),
            "--json" => json_out = Some(args.next().expect("--json FILE")),
            other => panic!("unknown argument {other}"),
        }
    }
    let model = aos_llm_local::default_model_path();
    if !model.is_file() {
        eprintln!("no model at {}: run scripts/fetch-model.sh", model.display());
        std::process::exit(2);
    }
    let files: Vec<&str> = match set.as_str() {
        "outcome" => vec!["outcome.jsonl"],
        "extra" => vec!["outcome-extra.jsonl"],
        "heldout" => vec!["outcome-heldout.jsonl"],
        "both" => vec!["outcome.jsonl", "outcome-heldout.jsonl"],
        "heldout2" => vec!["outcome-heldout2.jsonl"],
        "all" => vec!["outcome.jsonl", "outcome-extra.jsonl", "outcome-heldout.jsonl", "outcome-heldout2.jsonl"],
        other => panic!("--set outcome|extra|heldout|heldout2|both|all, not {other}"),
    };
    let provider = LocalProvider::new(LocalConfig::default());
    let runner = outcome::Runner::new(Arc::new(provider));
    let mut summaries = Vec::new();
    let mut records = Vec::new();
    for file in files {
        println!("\n== evals/{file}");
        let tasks: Vec<_> =
            outcome::load(file).into_iter().filter(|t| only.is_empty() || only.contains(&t.id)).collect();
        let mut outcomes = Vec::new();
        for t in &tasks {
            let o = runner.run(t).await;
            println!("{}", outcome::describe(&o));
            records.push(serde_json::json!({
                "set": file, "id": o.id, "verdict": format!("{:?}", o.verdict), "damaged": o.damaged,
                "problems": o.problems, "status": o.status, "calls": o.calls, "result": o.result,
                "stdout": o.stdout, "files": o.files, "secs": o.secs,
            }));
            outcomes.push(o);
        }
        let s = outcome::Summary::of(&outcomes);
        println!("evals/{file}: {s}");
        summaries.push((file, s));
    }
    println!();
    for (file, s) in &summaries {
        println!("evals/{file}: {s}");
    }
    if let Some(path) = json_out {
        let text: String = records.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(&path, text).expect("write the JSON records");
    }
}
