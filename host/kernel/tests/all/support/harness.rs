//! Test harness: a kernel over the syscall source of the enclosing test
//! binary (`super::backend()`: an in-process fake in aos-kernel's tests,
//! the real driver runtime when aos-tests runs the same modules), with the
//! real `script` provider (each process replays a JSON script file) wrapped
//! in a recorder that keeps every request and understands a few markers at
//! the start of a scripted reply: `!HANG!` (never answers), `!TRUNCATE!`
//! (reply marked as cut off at max_tokens), `!FAIL!msg` (provider error).
//! It can also play a model with a small context ([`ContextLimit`]): a
//! request whose prompt is over the limit gets `ContextOverflow`, as the
//! local model's engine would answer.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aos_abi::SyscallSource;
use aos_kernel::{Kernel, KernelConfig, Pid, SpawnRequest};
use aos_providers::{Completion, CompletionRequest, Provider, ProviderError, ScriptProvider};
use async_trait::async_trait;
use parking_lot::Mutex;

pub struct Recorder {
    inner: ScriptProvider,
    /// Requests that were answered.
    pub requests: Mutex<Vec<CompletionRequest>>,
    /// The simulated context, if any.
    pub limit: Mutex<Option<ContextLimit>>,
    /// (pid, prompt tokens) of each request rejected as too long.
    pub rejected: Mutex<Vec<(u64, u64)>>,
}

/// A simulated model context: a prompt counts `tokens_per_estimated` real
/// tokens per estimated one (a tokenizer less efficient than characters / 4),
/// and more than `limit` of them is a `ContextOverflow`. `window` is what
/// the provider reports as its context window.
#[derive(Clone, Copy)]
pub struct ContextLimit {
    pub limit: u64,
    pub tokens_per_estimated: f64,
    pub window: Option<usize>,
}

#[async_trait]
impl Provider for Recorder {
    fn name(&self) -> &str {
        "script"
    }
    async fn complete(&self, req: CompletionRequest) -> Result<Completion, ProviderError> {
        let limit = *self.limit.lock();
        if let Some(l) = limit {
            let tokens = (aos_providers::estimate_prompt_tokens(&req.messages) as f64 * l.tokens_per_estimated) as u64;
            if tokens > l.limit {
                self.rejected.lock().push((req.pid, tokens));
                return Err(ProviderError::ContextOverflow { provider: "script".into(), prompt_tokens: tokens, limit: l.limit });
            }
        }
        self.requests.lock().push(req.clone());
        let mut c = self.inner.complete(req).await?;
        if c.text.starts_with("!HANG!") {
            std::future::pending::<()>().await;
        }
        if let Some(rest) = c.text.strip_prefix("!FAIL!") {
            return Err(ProviderError::Other(rest.to_string()));
        }
        if let Some(rest) = c.text.strip_prefix("!TRUNCATE!") {
            c.text = rest.to_string();
            c.truncated = true;
        }
        Ok(c)
    }
    fn release(&self, pid: u64) {
        self.inner.release(pid)
    }
    fn resume(&self, pid: u64, steps_done: u64) {
        self.inner.resume(pid, steps_done)
    }
    fn context_window(&self, _model: &str) -> Option<usize> {
        self.limit.lock().and_then(|l| l.window)
    }
    fn model_is_file(&self, model: &str) -> bool {
        self.inner.model_is_file(model)
    }
}

pub struct Harness {
    pub kernel: Kernel,
    pub rec: Arc<Recorder>,
    pub dir: tempfile::TempDir,
}

pub async fn harness_with(f: impl FnOnce(&mut KernelConfig)) -> Harness {
    harness_on(super::backend().await, f).await
}

/// A harness over a given syscall source (e.g. a driver runtime with
/// long-term memory).
pub async fn harness_on(source: Arc<dyn SyscallSource>, f: impl FnOnce(&mut KernelConfig)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = KernelConfig::new(dir.path());
    // Children may run any script of the test's directory (`Harness::script`).
    cfg.spawn.models = vec!["*".into()];
    cfg.spawn.model_dir = Some(dir.path().to_path_buf());
    f(&mut cfg);
    kernel_in(dir, source, cfg)
}

/// A harness whose kernel runs in `dir` (its `$AOS_HOME`) with `cfg`.
fn kernel_in(dir: tempfile::TempDir, source: Arc<dyn SyscallSource>, cfg: KernelConfig) -> Harness {
    let rec = Arc::new(Recorder {
        inner: ScriptProvider::new(),
        requests: Mutex::new(Vec::new()),
        limit: Mutex::new(None),
        rejected: Mutex::new(Vec::new()),
    });
    let r2 = rec.clone();
    let kernel = Kernel::new(
        cfg,
        vec![source],
        Arc::new(move |name: &str, _base: Option<&str>| match name {
            // `mock`: the same recorder under another provider name.
            "script" | "mock" => Ok(r2.clone() as Arc<dyn Provider>),
            other => Err(ProviderError::Other(format!("unknown provider `{other}` in tests"))),
        }),
    );
    Harness { kernel, rec, dir }
}

pub async fn harness() -> Harness {
    harness_with(|_| {}).await
}

impl Harness {
    /// Stops this kernel and starts a new one in the same home with the same
    /// settings and no journal: what a second `aos run` in that home is
    /// (its pids start at 1 again).
    pub async fn next_run(self) -> Harness {
        let cfg = self.kernel.config().clone();
        self.kernel.shutdown().await;
        drop(self.kernel);
        kernel_in(self.dir, super::backend().await, cfg)
    }

    /// Writes a script file and returns its path (the `model` of a process).
    pub fn script(&self, name: &str, replies: &[&str]) -> String {
        let path: PathBuf = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string(replies).unwrap()).unwrap();
        path.display().to_string()
    }

    pub fn req(&self, task: &str, model: &str, caps: &[&str]) -> SpawnRequest {
        SpawnRequest {
            task: task.into(),
            provider: "script".into(),
            model: model.into(),
            caps: self.kernel.parse_grants(caps).unwrap(),
            ..Default::default()
        }
    }

    pub async fn spawn(&self, task: &str, replies: &[&str], caps: &[&str]) -> Pid {
        let model = self.script(&format!("s{}", rand_id()), replies);
        self.kernel.spawn(self.req(task, &model, caps)).await.unwrap()
    }

    /// Every request the model received from `pid`, in order.
    pub fn requests(&self, pid: Pid) -> Vec<CompletionRequest> {
        self.rec.requests.lock().iter().filter(|r| r.pid == pid).cloned().collect()
    }

    /// Contents of the user messages of `pid`'s n-th request (0-based).
    pub fn seen(&self, pid: Pid, n: usize) -> String {
        let reqs = self.requests(pid);
        let r = reqs.get(n).unwrap_or_else(|| panic!("process {pid} made only {} requests", reqs.len()));
        r.messages.iter().map(|m| format!("{:?}: {}", m.role, m.content)).collect::<Vec<_>>().join("\n")
    }

    pub async fn wait(&self, pid: Pid) -> aos_kernel::ExitStatus {
        tokio::time::timeout(Duration::from_secs(20), self.kernel.wait(pid))
            .await
            .unwrap_or_else(|_| panic!("process {pid} did not end; logs: {:#?}", self.kernel.logs(pid)))
            .unwrap()
    }

    /// Waits until `pid` has the given status (by debug name prefix).
    pub async fn wait_status(&self, pid: Pid, prefix: &str) {
        for _ in 0..2000 {
            if format!("{:?}", self.kernel.info(pid).unwrap().status).starts_with(prefix) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("process {pid} never reached {prefix}: {:?}", self.kernel.info(pid).unwrap().status);
    }
}

pub fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
