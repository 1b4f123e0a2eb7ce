//! [`LocalProvider`]: the `local` provider, implementing
//! [`aos_providers::Provider`] over the in-process [`Engine`].
//!
//! The model named by a request (`"default"`/`""` → the embedded SmolLM2 in
//! the model directory; anything else → a path to a GGUF file) is verified
//! and loaded on first use, once per provider and path, and shared by every
//! process. Inference runs on `tokio::task::spawn_blocking`; one mutex per
//! model serialises use of its contexts.
//!
//! Context size: [`Provider::context_window`] reports `n_ctx` minus room for
//! the reply, so the kernel compacts histories to fit; a prompt that still
//! does not fit (the kernel estimates tokens, this counts them) fails with
//! [`ProviderError::ContextOverflow`], on which the kernel compacts harder
//! and retries.
//!
//! Progress: loading the model is reported to the request's `on_progress`
//! sink, and so is every phase of the step (see [`crate::engine`]); the
//! reply's text streams to `on_text` as it is sampled.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aos_providers::{Completion, CompletionRequest, ModelProgress, ProgressSink, Provider, ProviderError, Usage};
use async_trait::async_trait;

use crate::engine::{Decoding, Engine, EngineConfig, GenError, GenRequest};
use crate::grammar::GrammarOptions;
use crate::model_file::{self, default_model_dir};
use crate::stats::StepStats;

/// Settings of a [`LocalProvider`]. `Default` reads `$AOS_MODEL_DIR`.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Where `"default"` is looked up: `$AOS_MODEL_DIR` or `~/.cache/aos/models`.
    pub model_dir: PathBuf,
    /// Context size of each process's llama.cpp context, in tokens. Default
    /// 8192 (SmolLM2's trained context): the system prompt of a process
    /// holding every capability (20 syscalls with schemas and examples) is
    /// ~3.5k tokens by itself. About 200 MiB of KV cache and buffers each.
    pub n_ctx: u32,
    /// Prompt evaluation batch size.
    pub n_batch: u32,
    /// CPU threads per evaluation.
    pub n_threads: i32,
    /// Contexts (KV caches) kept alive at once; beyond this the least recently
    /// used process's state is saved to memory and its context reused.
    pub max_live_contexts: usize,
    /// Memory budget for saved states of evicted processes, in bytes (0: never
    /// save, recompute instead).
    pub max_parked_bytes: usize,
    /// Reply length when a request sets no `max_tokens`.
    pub default_max_tokens: u32,
    /// How replies are decoded.
    pub decoding: Decoding,
    /// Single-pass decoding only: allow a short thought line before the call.
    pub thought: bool,
    /// Append worked examples (one per allowed syscall) to the system prompt.
    pub prompt_examples: bool,
    /// Repetition penalty over the last 64 generated tokens (1.0: none).
    pub repeat_penalty: f32,
}

impl LocalConfig {
    /// Prompt tokens a process may use: `n_ctx` minus room for the reply
    /// (`default_max_tokens`, at most a quarter of `n_ctx`).
    pub fn context_window(&self) -> usize {
        let n_ctx = self.n_ctx as usize;
        n_ctx - (self.default_max_tokens as usize).min(n_ctx / 4)
    }
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            model_dir: default_model_dir(),
            n_ctx: 8192,
            n_batch: 512,
            n_threads: 2,
            max_live_contexts: 4,
            max_parked_bytes: 512 << 20,
            default_max_tokens: 512,
            decoding: Decoding::Pmi,
            thought: false,
            prompt_examples: true,
            repeat_penalty: 1.2,
        }
    }
}

struct Inner {
    cfg: LocalConfig,
    engines: Mutex<HashMap<PathBuf, Arc<Mutex<Engine>>>>,
    stats: Mutex<HashMap<u64, StepStats>>,
    /// Releases that arrived while an engine was busy; applied on next use.
    pending_release: Mutex<Vec<u64>>,
}

/// The `local` provider. Cheap to clone; clones share models and caches.
#[derive(Clone)]
pub struct LocalProvider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvider").field("cfg", &self.inner.cfg).finish()
    }
}

impl Default for LocalProvider {
    fn default() -> Self {
        Self::new(LocalConfig::default())
    }
}

fn err(msg: impl Into<String>) -> ProviderError {
    ProviderError::Other(msg.into())
}

impl LocalProvider {
    /// A provider with `cfg`. Nothing is loaded until the first call.
    pub fn new(cfg: LocalConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                cfg,
                engines: Mutex::new(HashMap::new()),
                stats: Mutex::new(HashMap::new()),
                pending_release: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn config(&self) -> &LocalConfig {
        &self.inner.cfg
    }

    /// Statistics of the last call made for `pid`.
    pub fn last_stats(&self, pid: u64) -> Option<StepStats> {
        self.inner.stats.lock().unwrap().get(&pid).copied()
    }

    /// Verifies and loads `model` now (normally done by the first call).
    /// Returns the model load time in ms (0 when already loaded).
    pub fn preload(&self, model: &str) -> Result<f64, ProviderError> {
        let (engine, fresh) = self.inner.engine(model, &None)?;
        let e = engine.lock().unwrap();
        Ok(if fresh { e.load_ms } else { 0.0 })
    }

    /// Live contexts and saved snapshots (count, bytes) of `model`'s engine.
    pub fn cache_info(&self, model: &str) -> Option<(usize, usize, usize)> {
        let path = model_file::resolve_model(model, &self.inner.cfg.model_dir).path;
        let engines = self.inner.engines.lock().unwrap();
        let e = engines.get(&path)?.lock().unwrap();
        let (n, bytes) = e.parked();
        Some((e.live_contexts(), n, bytes))
    }

    /// Same as [`Provider::release`].
    pub fn release_pid(&self, pid: u64) {
        self.inner.release(pid);
    }

    /// The plan the engine follows for `task` with `specs` ([`crate::plan`],
    /// [`crate::frame`]): the syscalls it calls in order when every step
    /// succeeds, ending with `SYS_EXIT`. For evaluations and tests.
    pub fn plan(&self, model: &str, task: &str, specs: &[aos_abi::SyscallSpec]) -> Result<Vec<String>, ProviderError> {
        let (engine, _) = self.inner.engine(model, &None)?;
        let mut e = engine.lock().unwrap();
        match e.plan_for(task, specs).map_err(|e| err(format!("local model: {e}")))? {
            Some((plan, _)) => {
                let mut calls: Vec<String> = plan.into_iter().map(|s| s.syscall).collect();
                if calls.last().map(String::as_str) != Some("SYS_EXIT") {
                    calls.push("SYS_EXIT".into());
                }
                Ok(calls)
            }
            None => Err(err("the plan's scoring prompts do not fit in the context")),
        }
    }

    /// [`Provider::complete`] without an async runtime (blocks the thread).
    pub fn complete_blocking(&self, req: CompletionRequest) -> Result<Completion, ProviderError> {
        self.inner.complete(req)
    }
}

impl Inner {
    /// The engine of `model`, loading it (after verification) on first use.
    /// Loading is reported to `progress` ([`ModelProgress::Loading`]).
    fn engine(&self, model: &str, progress: &Option<ProgressSink>) -> Result<(Arc<Mutex<Engine>>, bool), ProviderError> {
        let mref = model_file::resolve_model(model, &self.cfg.model_dir);
        let mut engines = self.engines.lock().unwrap();
        if let Some(e) = engines.get(&mref.path) {
            return Ok((Arc::clone(e), false));
        }
        let what = mref.path.file_name().map_or_else(|| mref.path.display().to_string(), |f| f.to_string_lossy().into_owned());
        ProgressSink::send(progress, ModelProgress::Loading { what });
        model_file::verify(&mref).map_err(|e| err(e.to_string()))?;
        let cfg = EngineConfig {
            n_ctx: self.cfg.n_ctx,
            n_batch: self.cfg.n_batch,
            n_threads: self.cfg.n_threads,
            max_live_contexts: self.cfg.max_live_contexts,
            max_parked_bytes: self.cfg.max_parked_bytes,
        };
        let engine = Arc::new(Mutex::new(Engine::load(mref.path.clone(), cfg).map_err(|e| err(e.to_string()))?));
        engines.insert(mref.path, Arc::clone(&engine));
        Ok((engine, true))
    }

    fn complete(&self, req: CompletionRequest) -> Result<Completion, ProviderError> {
        let (engine, _) = self.engine(&req.model, &req.on_progress)?;
        let mut messages: Vec<(String, String)> = req
            .messages
            .iter()
            .map(|m| (m.role.as_str().to_string(), m.content.clone()))
            .collect();
        if self.cfg.prompt_examples && !req.syscalls.is_empty() {
            let ex = crate::examples::examples_for(&req.syscalls);
            match messages.first_mut() {
                Some((r, c)) if r == "system" => {
                    c.push_str("\n\n");
                    c.push_str(&ex);
                }
                _ => messages.insert(0, ("system".into(), ex)),
            }
        }
        let gen = GenRequest {
            pid: req.pid,
            messages,
            specs: req.syscalls.to_vec(),
            max_tokens: req.max_tokens.unwrap_or(self.cfg.default_max_tokens).max(1),
            temperature: req.temperature,
            repeat_penalty: self.cfg.repeat_penalty,
            decoding: self.cfg.decoding,
            grammar: GrammarOptions { thought: self.cfg.thought, ..GrammarOptions::default() },
            on_progress: req.on_progress.clone(),
            on_text: req.on_text.clone(),
        };
        let out = {
            let mut e = engine.lock().unwrap_or_else(|p| p.into_inner());
            for pid in std::mem::take(&mut *self.pending_release.lock().unwrap()) {
                e.release(pid);
            }
            e.generate(&gen).map_err(|e| match e {
                GenError::ContextOverflow { prompt_tokens, limit } => ProviderError::ContextOverflow {
                    provider: "local".into(),
                    prompt_tokens: prompt_tokens as u64,
                    limit: limit as u64,
                },
                GenError::Engine(e) => err(format!("local model: {e}")),
            })?
        };
        self.stats.lock().unwrap().insert(req.pid, out.stats);
        Ok(Completion {
        tool_calls: Vec::new(),
            text: out.text,
            usage: Usage {
                prompt_tokens: out.stats.prompt_tokens as u64,
                completion_tokens: out.stats.generated_tokens as u64,
                estimated: false,
                ..Usage::default()
            },
            truncated: out.stats.truncated,
        })
    }

    fn release(&self, pid: u64) {
        self.stats.lock().unwrap().remove(&pid);
        let engines: Vec<_> = self.engines.lock().unwrap().values().cloned().collect();
        for e in engines {
            match e.try_lock() {
                Ok(mut e) => e.release(pid),
                Err(_) => self.pending_release.lock().unwrap().push(pid),
            }
        }
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }

    async fn complete(&self, req: CompletionRequest) -> Result<Completion, ProviderError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.complete(req))
            .await
            .map_err(|e| err(format!("local model: inference task failed: {e}")))?
    }

    fn release(&self, pid: u64) {
        self.inner.release(pid);
    }

    /// At spawn: the model names an existing file (the full check, size,
    /// checksum or GGUF magic, runs when it is loaded).
    fn check_model(&self, model: &str) -> Result<(), ProviderError> {
        let mref = model_file::resolve_model(model, &self.inner.cfg.model_dir);
        model_file::precheck(model, &mref).map_err(|e| err(e.to_string()))
    }

    /// `n_ctx` minus room for a reply (`default_max_tokens`, at most a
    /// quarter of `n_ctx`), whatever the model. A prompt beyond the whole
    /// `n_ctx` (less a few tokens) fails with [`ProviderError::ContextOverflow`].
    fn model_is_file(&self, model: &str) -> bool {
        model_file::resolve_model(model, &self.inner.cfg.model_dir).expected.is_none()
    }

    fn context_window(&self, _model: &str) -> Option<usize> {
        Some(self.inner.cfg.context_window())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel lets a model choose a GGUF path for a child only inside
    /// `[spawn] model_dir`; the embedded default model is a name, not a file.
    #[test]
    fn paths_are_model_files_and_the_default_model_is_not() {
        let p = LocalProvider::new(LocalConfig::default());
        for name in ["", "default", model_file::MODEL_FILE_NAME] {
            assert!(!p.model_is_file(name), "{name}");
        }
        for name in ["/workspace/evil.gguf", "x.gguf", "../m.gguf"] {
            assert!(p.model_is_file(name), "{name}");
        }
    }
}
