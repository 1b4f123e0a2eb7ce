//! An in-process syscall source for the kernel's tests, so they need no
//! Wasm build: a few syscalls named, gated and shaped like the built-in
//! drivers' (`FS_READ`, `FS_WRITE` in the caller's workspace; `SLEEP` and
//! `SYS_SCHEDULE` as timer effects; `NET_FETCH` offered but never fetching),
//! implemented natively. The same test modules also run on the real driver
//! runtime (aos-tests, `tests/all/main.rs`), which is the integration proof.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aos_abi::{
    AgentContext, CallOutcome, Capability, CapabilitySet, Effect, Missing, Refusal, SyscallError, SyscallHandle,
    SyscallSource, SyscallSpec,
};
use async_trait::async_trait;
use serde_json::{json, Value};

const NAMES: [&str; 5] = ["FS_READ", "FS_WRITE", "SLEEP", "SYS_SCHEDULE", "NET_FETCH"];

#[derive(Default)]
pub struct FakeSource {
    timer_ids: Arc<AtomicU64>,
    /// Third-party drivers it says are installed (they offer no syscalls
    /// here; enough for grants of `driver:NAME` to be accepted).
    drivers: Vec<String>,
}

impl FakeSource {
    pub fn with_drivers(names: &[&str]) -> FakeSource {
        FakeSource { drivers: names.iter().map(|n| n.to_string()).collect(), ..Default::default() }
    }
}

fn spec(name: &str) -> SyscallSpec {
    let (description, schema) = match name {
        "FS_READ" => (
            "Read a text file of your workspace.",
            json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"], "additionalProperties": false}),
        ),
        "FS_WRITE" => (
            "Write (or append to) a text file of your workspace.",
            json!({"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}, "append": {"type": "boolean"}}, "required": ["path", "content"], "additionalProperties": false}),
        ),
        "SLEEP" => (
            "Sleep for `seconds`.",
            json!({"type": "object", "properties": {"seconds": {"type": "number", "minimum": 0}}, "required": ["seconds"], "additionalProperties": false}),
        ),
        "SYS_SCHEDULE" => (
            "Be woken after `seconds` with `prompt`.",
            json!({"type": "object", "properties": {"seconds": {"type": "number", "minimum": 0}, "prompt": {"type": "string"}}, "required": ["seconds", "prompt"], "additionalProperties": false}),
        ),
        _ => (
            "Fetch a URL (never fetches in this test source).",
            json!({"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"], "additionalProperties": false}),
        ),
    };
    SyscallSpec { name: name.into(), description: description.into(), args_schema: schema }
}

/// The first requirement of `name` that `caps` lacks, as the drivers' host
/// interfaces and declared requirements would say.
fn missing(name: &str, caps: &CapabilitySet) -> Option<Missing> {
    let need = |c: Capability| (!caps.grants(&c)).then(|| Missing::capability(c));
    match name {
        "FS_READ" => need(Capability::FsRead),
        "FS_WRITE" => need(Capability::FsRead).or_else(|| need(Capability::FsWrite)),
        "SLEEP" | "SYS_SCHEDULE" => need(Capability::Timers),
        _ => (!caps.any(|c| matches!(c, Capability::Net | Capability::NetHost(_))))
            .then(|| Missing { capability: Capability::Net, shown: "net (or net:HOST)".into() }),
    }
}

#[async_trait]
impl SyscallSource for FakeSource {
    fn offered(&self) -> Vec<SyscallSpec> {
        NAMES.iter().map(|n| spec(n)).collect()
    }

    fn resolve(&self, name: &str, caps: &CapabilitySet) -> Option<Result<Arc<dyn SyscallHandle>, Refusal>> {
        let name = *NAMES.iter().find(|n| **n == name)?;
        Some(match missing(name, caps) {
            Some(missing) => Err(Refusal::Denied { name: name.into(), missing }),
            None => Ok(Arc::new(FakeCall { spec: spec(name), timer_ids: self.timer_ids.clone() })),
        })
    }

    fn grant_for(&self, name: &str) -> Option<Vec<Capability>> {
        Some(vec![match name {
            "FS_READ" => Capability::FsRead,
            "FS_WRITE" => Capability::FsWrite,
            "SLEEP" | "SYS_SCHEDULE" => Capability::Timers,
            "NET_FETCH" => Capability::Net,
            _ => return None,
        }])
    }

    fn driver_names(&self) -> Vec<String> {
        self.drivers.clone()
    }

    fn release(&self, _pid: u64) {}

    async fn shutdown(&self) {}
}

struct FakeCall {
    spec: SyscallSpec,
    timer_ids: Arc<AtomicU64>,
}

/// `rel` inside `workspace`, refusing anything that could leave it. An
/// absolute path is read inside the workspace (`/workspace/a` and `/a` are
/// both `a`), as the fs driver does.
fn in_workspace(workspace: &Path, rel: &str) -> Result<PathBuf, SyscallError> {
    let inner = rel.strip_prefix("/workspace/").or_else(|| rel.strip_prefix('/')).unwrap_or(rel);
    let p = Path::new(inner);
    if p.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(SyscallError::Denied(format!("`{rel}` is outside the workspace")));
    }
    Ok(workspace.join(p))
}

fn io(e: std::io::Error, path: &str) -> SyscallError {
    match e.kind() {
        std::io::ErrorKind::NotFound => SyscallError::NotFound(format!("no file `{path}`")),
        _ => SyscallError::Io(format!("{path}: {e}")),
    }
}

#[async_trait]
impl SyscallHandle for FakeCall {
    fn spec(&self) -> &SyscallSpec {
        &self.spec
    }

    fn origin(&self) -> &str {
        "fake"
    }

    async fn call(&self, caller: &AgentContext, args: &Value) -> Result<CallOutcome, SyscallError> {
        let done = |output: Value, effects: Vec<Effect>| Ok(CallOutcome { output, effects });
        let text = |k: &str| args[k].as_str().unwrap_or_default().to_string();
        match self.spec.name.as_str() {
            "FS_READ" => {
                let path = text("path");
                let content = std::fs::read_to_string(in_workspace(&caller.workspace, &path)?).map_err(|e| io(e, &path))?;
                done(json!({"path": path, "content": content}), vec![])
            }
            "FS_WRITE" => {
                let path = text("path");
                let content = text("content");
                let file = in_workspace(&caller.workspace, &path)?;
                let append = args["append"].as_bool().unwrap_or(false);
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(append)
                    .truncate(!append)
                    .open(&file)
                    .map_err(|e| io(e, &path))?;
                std::io::Write::write_all(&mut f, content.as_bytes()).map_err(|e| io(e, &path))?;
                done(json!({"path": path, "bytes": content.len()}), vec![])
            }
            "SLEEP" => {
                let seconds = args["seconds"].as_f64().unwrap_or(0.0);
                done(json!({"sleeping": seconds}), vec![Effect::Sleep { seconds }])
            }
            "SYS_SCHEDULE" => {
                let seconds = args["seconds"].as_f64().unwrap_or(0.0);
                let id = self.timer_ids.fetch_add(1, Ordering::Relaxed) + 1;
                done(json!({"id": id}), vec![Effect::Schedule { id, seconds, prompt: text("prompt") }])
            }
            _ => Err(SyscallError::Io("this test source does not reach the network".into())),
        }
    }
}
