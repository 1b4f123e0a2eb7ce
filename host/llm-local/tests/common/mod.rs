//! Shared by the tests, the eval runner (`examples/eval.rs`) and the bench:
//! the eval task set, syscall specs per capability set, the kernel's system
//! prompt wording, reply checking with the kernel's own parser and schema
//! validator, and the loud skip when the model is absent.
#![allow(dead_code)]

use std::path::PathBuf;

use aos_abi::{Capability, CapabilitySet, SyscallSpec};
use aos_providers::{CompletionRequest, Message, Role};
use serde_json::Value;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The default model's path, or None after a loud skip
/// (`aos_test_support::skip`: a failure under CI, which fetches the model first).
pub fn model_or_skip(what: &str) -> Option<PathBuf> {
    let path = aos_llm_local::default_model_path();
    if path.is_file() {
        return Some(path);
    }
    aos_test_support::skip(
        &aos_test_support::current_test_or(what),
        &format!("the local model is not at {}; run scripts/fetch-model.sh", path.display()),
    );
    None
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Task {
    pub task: String,
    pub caps: Vec<String>,
    pub expect: Vec<String>,
    /// Earlier turns (`evals/next.jsonl`): the model's reply, the kernel's
    /// answer, alternately; `expect` is then the call that should come next.
    #[serde(default)]
    pub history: Vec<String>,
}

pub fn load_tasks() -> Vec<Task> {
    load_task_file("tasks.jsonl")
}

/// The tasks of `evals/<name>` (`tasks.jsonl`, `heldout.jsonl`).
pub fn load_task_file(name: &str) -> Vec<Task> {
    let p = repo_root().join("evals").join(name);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad task line {l}: {e}")))
        .collect()
}

#[derive(serde::Deserialize)]
struct DriverSpec {
    name: String,
    requires: String,
    description: String,
    args_schema: Value,
}

/// Kernel syscalls (from `aos_kernel`) then driver syscalls (the fs and
/// timers drivers' specs as `aos_runtime` reports them, recorded in
/// `evals/driver_specs.json`) that `caps` allows, in the kernel's order.
pub fn specs_for(caps: &[String]) -> (CapabilitySet, Vec<SyscallSpec>) {
    let set = CapabilitySet::parse(caps).expect("capabilities");
    let mut v = aos_kernel::syscalls::kernel_specs_for(&set);
    let p = repo_root().join("evals/driver_specs.json");
    let drivers: Vec<DriverSpec> = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    for d in drivers {
        let c: Capability = d.requires.parse().unwrap();
        if set.grants(&c) {
            v.push(SyscallSpec { name: d.name, description: d.description, args_schema: d.args_schema });
        }
    }
    (set, v)
}

/// The kernel's system prompt for a root process with the default 50-step budget.
pub fn system_prompt(pid: u64, caps: &CapabilitySet, specs: &[SyscallSpec]) -> String {
    let budgets = aos_kernel::Budgets { max_steps: Some(50), max_tokens: None, max_wall_time: None };
    aos_kernel::context::render_system_prompt(
        &aos_kernel::context::PromptFacts { pid, parent: None, caps, budgets: &budgets, role: "" },
        specs,
    )
}

pub fn request(pid: u64, task: &Task) -> CompletionRequest {
    let (caps, specs) = specs_for(&task.caps);
    CompletionRequest {
        model: "default".into(),
        messages: vec![
            Message::new(Role::System, system_prompt(pid, &caps, &specs)),
            Message::new(Role::User, format!("[TASK] {}", task.task)),
        ]
        .into_iter()
        .chain(task.history.iter().enumerate().map(|(k, text)| {
            Message::new(if k % 2 == 0 { Role::Assistant } else { Role::User }, text.clone())
        }))
        .collect(),
        max_tokens: Some(96),
        temperature: None,
        syscalls: specs.into(),
        tools: false,
        pid,
        on_text: None,
        on_progress: None,
    }
}

/// How a reply fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Exactly one call, parsed without error.
    pub well_formed: bool,
    /// ...whose name is allowed and whose arguments validate.
    pub valid: bool,
    pub name: Option<String>,
    pub problem: Option<String>,
}

pub fn check(reply: &str, specs: &[SyscallSpec]) -> Checked {
    let calls = aos_kernel::parse_reply(reply);
    let mut c = Checked { well_formed: false, valid: false, name: None, problem: None };
    match calls.as_slice() {
        [Ok(call)] => {
            c.well_formed = true;
            c.name = Some(call.name.clone());
            match specs.iter().find(|s| s.name == call.name) {
                None => c.problem = Some(format!("{} is not allowed", call.name)),
                Some(s) => match aos_kernel::schema::validate(&s.args_schema, &call.args) {
                    Ok(()) => c.valid = true,
                    Err(e) => c.problem = Some(format!("invalid arguments: {e}")),
                },
            }
        }
        [] => c.problem = Some("no call".into()),
        [Err(e), ..] => c.problem = Some(e.message.clone()),
        _ => c.problem = Some(format!("{} calls", calls.len())),
    }
    c
}
