//! The inference engine of one model: the loaded GGUF model, its chat
//! template, and a small pool of llama.cpp contexts, each holding the KV
//! cache of one process.
//!
//! * **KV reuse.** Each live context remembers the tokens it has evaluated.
//!   A step renders the whole conversation, finds the common prefix with
//!   those tokens, removes the KV entries beyond it and evaluates only the
//!   rest (at least the last token, whose logits start the reply).
//! * **Eviction.** At most `max_live_contexts` contexts exist. When another
//!   process needs one, the least recently used process's sequence state is
//!   saved with `llama_state_seq_get_data` (a byte snapshot of its KV cells,
//!   in memory, bounded by `max_parked_bytes`) and its context is reused;
//!   the snapshot is restored with `llama_state_seq_set_data` on that
//!   process's next step instead of recomputing its prompt. Snapshots beyond
//!   the byte budget are dropped oldest first; such a process recomputes.
//! * **Decoding.** Every reply is constrained by a GBNF grammar built from
//!   the process's syscalls ([`crate::grammar`]). In [`Decoding::TwoStage`]
//!   the syscall name is chosen first by scoring the log-probability of
//!   `[SYS_CALL::NAME]` for every allowed NAME, then the arguments are
//!   generated under that syscall's grammar. [`Decoding::Pmi`] (the
//!   default) takes the name from the task's plan ([`crate::plan`]): each
//!   clause's syscall is the one whose plain-words hints fit it best,
//!   scored in a scratch sequence and calibrated against a content-free
//!   request; after the last clause, `SYS_EXIT`.
//! * **Parallel scoring.** Candidates (hints or `[SYS_CALL::NAME]` tags)
//!   are scored as sequences of their own in a unified KV cache, all in one
//!   `llama_decode`, instead of one decode per candidate.
//!
//! Not thread-safe by itself: the provider serialises use behind a mutex.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use aos_abi::SyscallSpec;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{LlamaStateSeqFlags, SeqState};

use crate::grammar::{self, GrammarOptions, TAG_OPEN};
use crate::stats::{CacheSource, StepStats};

/// How replies are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decoding {
    /// One pass under the full reply grammar (optional thought line, then a call).
    Grammar,
    /// Choose the syscall name by log-probability, then generate its arguments
    /// under that syscall's grammar. No thought line.
    TwoStage,
    /// [`Decoding::TwoStage`] with contextual calibration: each name's score
    /// minus its score when the last message is content-free (`[TASK] N/A`),
    /// which removes the model's bias towards some names (e.g. `SYS_EXIT`).
    /// The prior is cached per conversation prefix. (Measured worse than
    /// plain two-stage on `evals/`: it over-corrects towards rare names.)
    TwoStageCalibrated,
    /// Like [`Decoding::TwoStage`], but on a process's first step (last
    /// message `[TASK] ...`) the name is chosen by scoring
    /// `[SYS_CALL::NAME]` after a plain-text few-shot prompt (worked examples
    /// for the allowed syscalls, then `Task: <task>\nCall:`) evaluated in a
    /// separate scratch sequence; later steps score in the conversation.
    FewShot,
    /// Like [`Decoding::TwoStage`], but on a process's first step (last
    /// message `[TASK] ...`) the name is chosen "noisy-channel" style: for
    /// each allowed syscall, the log-probability of the *task text* after a
    /// one-line description of that syscall ([`crate::examples::hint_for`]),
    /// scored in a scratch sequence. Later steps score the names in the
    /// conversation. (Measured below [`Decoding::Pmi`] on `evals/`.)
    Channel,
    /// Like [`Decoding::TwoStage`], but the name comes from the task's plan
    /// ([`crate::plan`]): the task is split into clauses, and each clause's
    /// syscall is chosen by the pointwise mutual information of the clause
    /// (the whole task for the first) and each syscall's plain-words hints:
    /// log P(" hint." | "Request: <text>\nThis request asks to") minus the
    /// same after the content-free request "N/A", and likewise with the text
    /// as the user's message in the model's chat template followed by "I
    /// will"; two phrasings of every hint; the four vectors standardised and
    /// summed. Plain words are easier for a small model than syscall names,
    /// and the subtraction removes its preference for some hints. A clause
    /// is done once a call of its syscall succeeded; after the last one the
    /// name is `SYS_EXIT`. Steps after an event, a message or a stdin line
    /// score the names in the conversation.
    #[default]
    Pmi,
}

/// Scores of (context, continuation) pairs, the continuations' token
/// counts, and the tokens evaluated.
type PairScores = (Vec<f64>, Vec<usize>, u32);

/// Pseudo-pid of the scratch sequence used to score the first step's
/// candidates ([`Decoding::Pmi`], [`Decoding::Channel`], [`Decoding::FewShot`]).
const SCRATCH_PID: u64 = u64::MAX;

/// Most candidate branches scored in one `llama_decode` (each branch is a
/// sequence of its own, after the context's sequence 0).
const MAX_BRANCHES: usize = 63;

/// The content-free message used for calibration.
const NEUTRAL_TASK: &str = "[TASK] N/A";

/// Engine settings (a subset of [`crate::LocalConfig`]).
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    pub n_ctx: u32,
    pub n_batch: u32,
    pub n_threads: i32,
    pub max_live_contexts: usize,
    pub max_parked_bytes: usize,
}

/// One generation request, already mapped from the provider's types.
pub(crate) struct GenRequest {
    pub pid: u64,
    /// (role, content) pairs: "system" | "user" | "assistant".
    pub messages: Vec<(String, String)>,
    pub specs: Vec<SyscallSpec>,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    pub repeat_penalty: f32,
    pub decoding: Decoding,
    pub grammar: GrammarOptions,
}

/// Why a step failed: the prompt does not fit the context (the caller can
/// shorten it and retry), or anything else.
#[derive(Debug)]
pub(crate) enum GenError {
    /// The rendered prompt is `prompt_tokens` tokens; at most `limit` fit
    /// (`n_ctx` minus [`MIN_REPLY_ROOM`]).
    ContextOverflow { prompt_tokens: usize, limit: usize },
    Other(String),
}

impl From<String> for GenError {
    fn from(e: String) -> Self {
        GenError::Other(e)
    }
}

/// Context tokens a prompt must leave free for the reply.
pub(crate) const MIN_REPLY_ROOM: usize = 16;

pub(crate) struct GenOutput {
    pub text: String,
    pub stats: StepStats,
}

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// The process-wide llama.cpp backend (`llama_backend_init` runs once).
/// llama.cpp's own logging is silenced unless `AOS_LLAMA_LOG` is set.
pub fn backend() -> Result<&'static LlamaBackend, String> {
    BACKEND
        .get_or_init(|| {
            let mut b = LlamaBackend::init().map_err(|e| format!("cannot initialise llama.cpp: {e}"))?;
            if std::env::var_os("AOS_LLAMA_LOG").is_none() {
                b.void_logs();
            }
            Ok(b)
        })
        .as_ref()
        .map_err(Clone::clone)
}

struct Slot {
    pid: Option<u64>,
    /// Borrows `Engine::model`; declared (and so dropped) before it. The
    /// model lives in an `Arc` that the engine keeps until after every slot
    /// is gone, so the `'static` here never outlives the real borrow.
    ctx: LlamaContext<'static>,
    tokens: Vec<LlamaToken>,
    last_used: u64,
}

struct Parked {
    state: SeqState,
    tokens: Vec<LlamaToken>,
    last_used: u64,
}

pub(crate) struct Engine {
    // Field order matters: slots (contexts) must drop before `model`.
    slots: Vec<Slot>,
    parked: HashMap<u64, Parked>,
    parked_bytes: usize,
    seen: HashMap<u64, ()>,
    priors: HashMap<u64, Vec<f64>>,
    /// Per (task, syscall names): the syscall of each clause ([`crate::plan`]).
    plans: HashMap<u64, Vec<String>>,
    clock: u64,
    batch: LlamaBatch<'static>,
    template: LlamaChatTemplate,
    cfg: EngineConfig,
    pub load_ms: f64,
    model: Arc<LlamaModel>,
}

fn lcp(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn log_softmax_at(logits: &[f32], tok: LlamaToken) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| ((l as f64) - max).exp()).sum();
    logits[tok.0 as usize] as f64 - max - sum.ln()
}

/// The text before a hint in [`Decoding::Pmi`] scoring (plain-text form;
/// the chat form is [`Engine::pmi_chat_context`]).
fn pmi_context(task: &str) -> String {
    format!("Request: {task}\nThis request asks to")
}

/// Weight of the content-free prior subtracted when scoring a later clause
/// of a task (1 for the first call). Short clauses carry little evidence,
/// so the hints' own prior weighs more; on `evals/plans.jsonl` 1.25 made 15
/// of 20 later clauses right where 1.0 made 12, 0.75 made 5 and 1.5 made 10
/// (chosen on that set: see `evals/README.md`).
const LATER_CLAUSE_PRIOR_WEIGHT: f64 = 1.25;

/// The key of a cache entry (plans, priors) computed from `parts`.
fn cache_key(parts: &impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// Index of the largest value (the first of equals; 0 when empty).
fn argmax(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

/// `v` shifted and scaled to mean 0 and standard deviation 1 (PMI vectors of
/// different prompt forms have different spreads; this weighs them alike).
fn standardise(v: &[f64]) -> Vec<f64> {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let sd = if sd > 1e-9 { sd } else { 1.0 };
    v.iter().map(|x| (x - mean) / sd).collect()
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

impl Engine {
    /// Loads the model at `path` (already verified) and its chat template.
    pub fn load(path: PathBuf, cfg: EngineConfig) -> Result<Self, String> {
        let backend = backend()?;
        let t = Instant::now();
        let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default())
            .map_err(|e| format!("cannot load model {}: {e}", path.display()))?;
        let load_ms = ms(t);
        let template = match model.chat_template(None) {
            Ok(t) => t,
            Err(e) => {
                // Base models ship without a template; use llama.cpp's
                // built-in one for the architecture when it has one.
                let arch = model.meta_val_str("general.architecture").unwrap_or_default();
                let name = if arch.starts_with("gemma") { "gemma" } else { "chatml" };
                tracing::warn!("model {} has no usable chat template ({e}); using llama.cpp's `{name}`", path.display());
                LlamaChatTemplate::new(name).map_err(|e| e.to_string())?
            }
        };
        let n_batch = cfg.n_batch.max(16);
        Ok(Self {
            slots: Vec::new(),
            parked: HashMap::new(),
            parked_bytes: 0,
            seen: HashMap::new(),
            priors: HashMap::new(),
            plans: HashMap::new(),
            clock: 0,
            batch: LlamaBatch::new(n_batch as usize, 1),
            template,
            cfg: EngineConfig { n_batch, ..cfg },
            load_ms,
            model: Arc::new(model),
        })
    }

    /// Number of contexts currently allocated.
    pub fn live_contexts(&self) -> usize {
        self.slots.len()
    }

    /// Number of saved (parked) sequence snapshots and their total size.
    pub fn parked(&self) -> (usize, usize) {
        (self.parked.len(), self.parked_bytes)
    }

    /// Drops everything kept for `pid`.
    pub fn release(&mut self, pid: u64) {
        for s in &mut self.slots {
            if s.pid == Some(pid) {
                s.pid = None;
                s.tokens.clear();
                s.ctx.clear_kv_cache();
            }
        }
        if let Some(p) = self.parked.remove(&pid) {
            self.parked_bytes -= p.state.byte_len();
        }
        self.seen.remove(&pid);
    }

    fn new_slot(&self) -> Result<Slot, String> {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.cfg.n_ctx))
            .with_n_batch(self.cfg.n_batch)
            .with_n_ubatch(self.cfg.n_batch)
            .with_n_threads(self.cfg.n_threads)
            .with_n_threads_batch(self.cfg.n_threads)
            // Candidate scoring runs branches as extra sequences over the
            // same cells: one unified KV cache (else each sequence would get
            // only n_ctx / n_seq_max cells).
            .with_n_seq_max(MAX_BRANCHES as u32 + 1)
            .with_kv_unified(true)
            .with_no_perf(false);
        let ctx = self.model.new_context(backend()?, params).map_err(|e| format!("cannot create a llama.cpp context: {e}"))?;
        // SAFETY: see `Slot::ctx`: the model is kept alive (and not moved:
        // it is behind an `Arc`) until after every context is dropped.
        let ctx: LlamaContext<'static> = unsafe { std::mem::transmute::<LlamaContext<'_>, LlamaContext<'static>>(ctx) };
        Ok(Slot { pid: None, ctx, tokens: Vec::new(), last_used: 0 })
    }

    /// Saves slot `i`'s sequence (if it has one) and frees the slot.
    fn park(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let Some(pid) = slot.pid.take() else { return };
        // The scratch sequence is disposable: never saved.
        if pid != SCRATCH_PID && self.cfg.max_parked_bytes > 0 && !slot.tokens.is_empty() {
            match slot.ctx.state_seq_get(0, LlamaStateSeqFlags::empty()) {
                Ok(state) if state.byte_len() <= self.cfg.max_parked_bytes => {
                    self.parked_bytes += state.byte_len();
                    let tokens = std::mem::take(&mut slot.tokens);
                    self.parked.insert(pid, Parked { state, tokens, last_used: slot.last_used });
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot save the KV state of process {pid}: {e}; it will be recomputed"),
            }
        }
        slot.ctx.clear_kv_cache();
        slot.tokens.clear();
        while self.parked_bytes > self.cfg.max_parked_bytes {
            let Some((&oldest, _)) = self.parked.iter().min_by_key(|(_, p)| p.last_used) else { break };
            let p = self.parked.remove(&oldest).unwrap();
            self.parked_bytes -= p.state.byte_len();
        }
    }

    /// The slot for `pid`: its live context, or a free/new/evicted one with
    /// its saved state restored.
    fn acquire(&mut self, pid: u64) -> Result<(usize, CacheSource, f64), String> {
        self.clock += 1;
        let clock = self.clock;
        if let Some(i) = self.slots.iter().position(|s| s.pid == Some(pid)) {
            self.slots[i].last_used = clock;
            return Ok((i, CacheSource::Live, 0.0));
        }
        let i = if let Some(i) = self.slots.iter().position(|s| s.pid.is_none()) {
            i
        } else if self.slots.len() < self.cfg.max_live_contexts.max(1) {
            let s = self.new_slot()?;
            self.slots.push(s);
            self.slots.len() - 1
        } else {
            let i = (0..self.slots.len()).min_by_key(|&i| self.slots[i].last_used).unwrap();
            self.park(i);
            i
        };
        let t = Instant::now();
        let parked = self.parked.remove(&pid);
        let seen = self.seen.contains_key(&pid);
        let slot = &mut self.slots[i];
        slot.pid = Some(pid);
        slot.last_used = clock;
        slot.tokens.clear();
        slot.ctx.clear_kv_cache();
        let source = match parked {
            Some(p) => {
                self.parked_bytes -= p.state.byte_len();
                match slot.ctx.state_seq_set(&p.state, 0) {
                    Ok(()) => {
                        slot.tokens = p.tokens;
                        CacheSource::Restored
                    }
                    Err(e) => {
                        tracing::warn!("cannot restore the KV state of process {pid}: {e}; recomputing");
                        slot.ctx.clear_kv_cache();
                        CacheSource::Recomputed
                    }
                }
            }
            None if seen => CacheSource::Recomputed,
            None => CacheSource::Fresh,
        };
        Ok((i, source, ms(t)))
    }

    /// Evaluates `tokens` at positions `start..` in slot `i`. Logits are kept
    /// for every token when `all_logits`, else for the last one only.
    fn eval(&mut self, i: usize, tokens: &[LlamaToken], start: usize, all_logits: bool) -> Result<(), String> {
        let n_batch = self.cfg.n_batch as usize;
        let n = tokens.len();
        for (c, chunk) in tokens.chunks(n_batch).enumerate() {
            self.batch.clear();
            for (j, &t) in chunk.iter().enumerate() {
                let k = c * n_batch + j;
                self.batch
                    .add(t, (start + k) as i32, &[0], all_logits || k + 1 == n)
                    .map_err(|e| e.to_string())?;
            }
            self.slots[i].ctx.decode(&mut self.batch).map_err(|e| format!("llama.cpp decode failed: {e}"))?;
        }
        Ok(())
    }

    /// Renders the conversation with the model's chat template, ending with
    /// an open assistant turn.
    pub fn render(&self, messages: &[(String, String)]) -> Result<String, String> {
        let chat = messages
            .iter()
            .map(|(r, c)| LlamaChatMessage::new(r.clone(), c.clone()).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        self.model
            .apply_chat_template(&self.template, &chat, true)
            .map_err(|e| format!("cannot apply the chat template: {e}"))
    }

    pub fn tokenize(&self, text: &str, special: bool) -> Vec<LlamaToken> {
        self.model.vocab().tokenize(text.as_bytes(), special, special)
    }

    /// Runs one step for `req.pid`. On error the process's cache is reset.
    pub(crate) fn generate(&mut self, req: &GenRequest) -> Result<GenOutput, GenError> {
        let pid = req.pid;
        let r = self.generate_inner(req);
        if r.is_err() {
            if let Some(s) = self.slots.iter_mut().find(|s| s.pid == Some(pid)) {
                s.tokens.clear();
                s.ctx.clear_kv_cache();
            }
        }
        r
    }

    fn generate_inner(&mut self, req: &GenRequest) -> Result<GenOutput, GenError> {
        let t_all = Instant::now();
        let prompt_text = self.render(&req.messages)?;
        let prompt = self.tokenize(&prompt_text, true);
        let n_ctx = self.cfg.n_ctx as usize;
        if prompt.len() + MIN_REPLY_ROOM > n_ctx {
            return Err(GenError::ContextOverflow {
                prompt_tokens: prompt.len(),
                limit: n_ctx.saturating_sub(MIN_REPLY_ROOM),
            });
        }
        let (mut i, cache, restore_ms) = self.acquire(req.pid)?;
        self.seen.insert(req.pid, ());
        self.slots[i].ctx.reset_timings();

        let two_stage = req.decoding != Decoding::Grammar && !req.specs.is_empty();
        let t = Instant::now();
        let prior = if two_stage && req.decoding == Decoding::TwoStageCalibrated { self.prior(i, req)? } else { None };
        let calib_ms = ms(t);

        // Reuse the common prefix; always evaluate at least the last token.
        let t = Instant::now();
        let (cp, mut last_idx) = self.feed(i, &prompt)?;
        let prompt_ms = ms(t);

        let mut stats = StepStats {
            prompt_tokens: prompt.len() as u32,
            prompt_evaluated: (prompt.len() - cp) as u32,
            prompt_reused: cp as u32,
            generated_tokens: 0,
            scoring_tokens: 0,
            cache,
            restore_ms,
            prompt_ms,
            choose_ms: 0.0,
            gen_ms: 0.0,
            total_ms: 0.0,
            truncated: false,
            llama_p_eval_ms: 0.0,
            llama_n_p_eval: 0,
            llama_eval_ms: 0.0,
            llama_n_eval: 0,
        };

        let room = n_ctx.saturating_sub(prompt.len() + 1) as u32;
        let mut budget = req.max_tokens.min(room).max(1);
        let mut text = String::new();
        let grammar_text;
        if two_stage {
            let t = Instant::now();
            let fewshot = match req.decoding {
                Decoding::FewShot => self.fewshot_choice(req)?,
                Decoding::Channel => self.task_choice(req)?,
                Decoding::Pmi => self.plan_choice(req)?,
                _ => None,
            };
            // The scratch sequence may have taken this process's context: get
            // it back (restored from its snapshot when there is one) and
            // evaluate the prompt again only if it is not all there. The
            // name is forced next, so no logits of the prompt are needed.
            i = match fewshot {
                Some(_) => {
                    let (j, _, _) = self.acquire(req.pid)?;
                    if self.slots[j].tokens != prompt {
                        self.feed(j, &prompt)?;
                    }
                    j
                }
                None => i,
            };
            let (chosen, forced, scored) = match fewshot {
                Some((k, n)) => {
                    let (forced, _) = self.force_name(i, &req.specs, k)?;
                    (k, forced, n)
                }
                None => self.choose_name(i, &req.specs, last_idx, prior.as_ref().map(|(p, _)| p.as_slice()))?,
            };
            stats.choose_ms = ms(t) + calib_ms;
            stats.scoring_tokens = scored + prior.as_ref().map_or(0, |(_, n)| *n);
            stats.generated_tokens = forced;
            budget = budget.saturating_sub(forced);
            text.push_str(&format!("{TAG_OPEN}{}]", req.specs[chosen].name));
            last_idx = self.batch.n_tokens() - 1;
            grammar_text = grammar::args_grammar(&req.specs[chosen]);
        } else {
            grammar_text = grammar::reply_grammar(&req.specs, req.grammar);
        }

        let t = Instant::now();
        let (gen, n, truncated) = if budget == 0 {
            (String::new(), 0, true)
        } else {
            self.sample_loop(i, &grammar_text, budget, req.temperature, req.repeat_penalty, last_idx)?
        };
        stats.gen_ms = ms(t);
        stats.generated_tokens += n;
        stats.truncated = truncated;
        text.push_str(&gen);
        let tm = self.slots[i].ctx.timings();
        stats.llama_p_eval_ms = tm.t_p_eval_ms();
        stats.llama_n_p_eval = tm.n_p_eval() as u32;
        stats.llama_eval_ms = tm.t_eval_ms();
        stats.llama_n_eval = tm.n_eval() as u32;
        stats.total_ms = ms(t_all);
        Ok(GenOutput { text, stats })
    }

    /// Tokens of `[SYS_CALL::NAME]` for each spec.
    fn candidates(&self, specs: &[SyscallSpec]) -> Vec<Vec<LlamaToken>> {
        specs.iter().map(|s| self.tokenize(&format!("{TAG_OPEN}{}]", s.name), false)).collect()
    }

    /// Log-probability of each candidate after the slot's current tokens
    /// (`last_idx`: batch index of the last token's logits), all scored in
    /// parallel sequences ([`Engine::score_branches`]). Returns the scores and
    /// the number of tokens evaluated only for scoring. The slot's own
    /// sequence is left as it was.
    fn score_names(&mut self, i: usize, cands: &[Vec<LlamaToken>], last_idx: i32) -> Result<(Vec<f64>, u32), String> {
        let last = self.slots[i].ctx.get_logits_ith(last_idx).to_vec();
        self.score_branches(i, &last, cands)
    }

    /// log P(branch | the slot's tokens) for each branch. `last` are the
    /// logits after the slot's last token. Every branch longer than one
    /// token is evaluated in its own sequence (a copy of sequence 0, which
    /// costs no computation in the unified KV cache), as many branches per
    /// `llama_decode` as fit in a batch, so scoring N candidates costs about
    /// one forward pass over all their tokens instead of N passes that each
    /// attend over the whole context. The branch sequences are removed
    /// afterwards. Returns the scores and the tokens evaluated.
    fn score_branches(&mut self, i: usize, last: &[f32], branches: &[Vec<LlamaToken>]) -> Result<(Vec<f64>, u32), String> {
        let n_batch = self.cfg.n_batch as usize;
        let base = self.slots[i].tokens.len();
        if base + branches.iter().map(Vec::len).max().unwrap_or(0) + 1 >= self.cfg.n_ctx as usize {
            return Err("no room in the context to score the candidates".into());
        }
        let mut scores: Vec<f64> = branches.iter().map(|b| b.first().map_or(0.0, |&t| log_softmax_at(last, t))).collect();
        let mut evaluated = 0u32;
        // Branches that need evaluation (all but their last token are fed).
        let todo: Vec<usize> = (0..branches.len()).filter(|&k| branches[k].len() > 1).collect();
        let mut k0 = 0;
        while k0 < todo.len() {
            // One chunk: as many branches as fit in a batch and in the sequence ids.
            let mut k1 = k0;
            let mut n = 0;
            while k1 < todo.len() && k1 - k0 < MAX_BRANCHES && n + branches[todo[k1]].len() - 1 <= n_batch {
                n += branches[todo[k1]].len() - 1;
                k1 += 1;
            }
            if k1 == k0 {
                return Err("a scoring candidate does not fit in one batch".into());
            }
            let ctx = &mut self.slots[i].ctx;
            self.batch.clear();
            let mut at = Vec::with_capacity(k1 - k0);
            for (s, &k) in todo[k0..k1].iter().enumerate() {
                let seq = (s + 1) as i32;
                ctx.kv_cache_seq_cp(0, seq, None, None).map_err(|e| format!("cannot copy a KV sequence: {e}"))?;
                at.push(self.batch.n_tokens());
                let b = &branches[k];
                for (j, &t) in b[..b.len() - 1].iter().enumerate() {
                    self.batch.add(t, (base + j) as i32, &[seq], true).map_err(|e| e.to_string())?;
                }
            }
            let r = ctx.decode(&mut self.batch).map_err(|e| format!("llama.cpp decode failed: {e}"));
            if r.is_ok() {
                for (s, &k) in todo[k0..k1].iter().enumerate() {
                    let b = &branches[k];
                    // Batch item `at[s] + j - 1` (token j - 1) predicts token j.
                    for (j, &t) in b.iter().enumerate().skip(1) {
                        scores[k] += log_softmax_at(ctx.get_logits_ith(at[s] + (j - 1) as i32), t);
                    }
                }
            }
            for s in 0..(k1 - k0) {
                let _ = ctx.kv_cache_seq_rm((s + 1) as i32, None, None);
            }
            r?;
            evaluated += n as u32;
            k0 = k1;
        }
        Ok((scores, evaluated))
    }

    /// Scores `[SYS_CALL::NAME]` for each spec after the prompt (minus the
    /// calibration `prior` when given), keeps the best one evaluated in the
    /// cache, and returns (index, tokens forced, tokens evaluated only for scoring).
    fn choose_name(
        &mut self,
        i: usize,
        specs: &[SyscallSpec],
        last_idx: i32,
        prior: Option<&[f64]>,
    ) -> Result<(usize, u32, u32), String> {
        let cands = self.candidates(specs);
        let base = self.slots[i].tokens.len();
        let (best, scored) = if cands.len() == 1 {
            (0, 0)
        } else {
            let (scores, scored) = self.score_names(i, &cands, last_idx)?;
            let mut best = (f64::NEG_INFINITY, 0usize);
            for (k, s) in scores.iter().enumerate() {
                let s = s - prior.map_or(0.0, |p| p[k]);
                if s > best.0 {
                    best = (s, k);
                }
            }
            (best.1, scored)
        };
        // Evaluate the chosen tag so generation continues after it.
        let done = self.slots[i].tokens.len() - base;
        let rest = cands[best][done..].to_vec();
        self.eval(i, &rest, base + done, false)?;
        self.slots[i].tokens.extend_from_slice(&rest);
        Ok((best, cands[best].len() as u32, scored))
    }

    /// Evaluates `[SYS_CALL::NAME]` of spec `k` after the slot's tokens.
    fn force_name(&mut self, i: usize, specs: &[SyscallSpec], k: usize) -> Result<(u32, ()), String> {
        let toks = self.tokenize(&format!("{TAG_OPEN}{}]", specs[k].name), false);
        let base = self.slots[i].tokens.len();
        self.eval(i, &toks, base, false)?;
        self.slots[i].tokens.extend_from_slice(&toks);
        Ok((toks.len() as u32, ()))
    }

    /// [`Decoding::FewShot`]: the chosen spec index and the tokens evaluated
    /// for it, or None when the step is not a first step.
    fn fewshot_choice(&mut self, req: &GenRequest) -> Result<Option<(usize, u32)>, String> {
        let Some((role, last)) = req.messages.last() else { return Ok(None) };
        let Some(task) = last.strip_prefix("[TASK]").map(str::trim) else { return Ok(None) };
        if role != "user" || req.specs.len() < 2 {
            return Ok(None);
        }
        let names: Vec<&str> = req.specs.iter().map(|s| s.name.as_str()).collect();
        let mut text = format!(
            "Each task below is started with one system call.\nSystem calls: {}\n\n",
            names.join(", ")
        );
        for (name, t, _) in crate::examples::EXAMPLES {
            if names.contains(name) {
                text.push_str(&format!("Task: {t}\nCall: {TAG_OPEN}{name}]\n\n"));
            }
        }
        text.push_str(&format!("Task: {}\nCall:", task.replace('\n', " ")));
        let toks = self.tokenize(&text, true);
        if toks.len() + 64 > self.cfg.n_ctx as usize {
            return Ok(None);
        }
        let (j, _, _) = self.acquire(SCRATCH_PID)?;
        let (cp, last_idx) = self.feed(j, &toks)?;
        let cands: Vec<Vec<LlamaToken>> =
            req.specs.iter().map(|s| self.tokenize(&format!(" {TAG_OPEN}{}]", s.name), false)).collect();
        let (scores, scored) = self.score_names(j, &cands, last_idx)?;
        let best = (0..scores.len()).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap_or(0);
        Ok(Some((best, scored + (toks.len() - cp) as u32)))
    }

    /// [`Decoding::Channel`]: the chosen spec index and the tokens evaluated
    /// for it, or None when the step is not a first step.
    fn task_choice(&mut self, req: &GenRequest) -> Result<Option<(usize, u32)>, String> {
        let Some((role, last)) = req.messages.last() else { return Ok(None) };
        if role != "user" || req.specs.len() < 2 {
            return Ok(None);
        }
        let Some(task) = last.strip_prefix("[TASK]").map(str::trim) else { return Ok(None) };
        let task = task.replace('\n', " ");
        if task.is_empty() {
            return Ok(None);
        }
        let hints: Vec<String> = req.specs.iter().map(|s| crate::examples::hint_for(s, 0)).collect();
        let pairs: Vec<(String, String)> = hints.iter().map(|h| (format!("A request to {h}:\n"), format!(" {task}"))).collect();
        let Some((scores, _, evaluated)) = self.score_pairs(&pairs)? else { return Ok(None) };
        let best = (0..scores.len()).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap_or(0);
        Ok(Some((best, evaluated)))
    }

    /// [`Decoding::Pmi`]: the syscall of the next clause of the task's plan
    /// ([`crate::plan`]), or `SYS_EXIT` when every clause is done. None (the
    /// names are then scored in the conversation) when the last message is
    /// neither the task nor the kernel's answer to a call (an event, a
    /// message, a line on stdin), or the plan cannot be made.
    fn plan_choice(&mut self, req: &GenRequest) -> Result<Option<(usize, u32)>, String> {
        if req.specs.len() < 2 {
            return Ok(None);
        }
        let Some((role, last)) = req.messages.last() else { return Ok(None) };
        if role != "user" || !["[TASK]", "[RESULT ", "[ERROR "].iter().any(|p| last.starts_with(p)) {
            return Ok(None);
        }
        let Some(at) = req.messages.iter().position(|(r, c)| r == "user" && c.starts_with("[TASK]")) else { return Ok(None) };
        let task = req.messages[at].1["[TASK]".len()..].trim().replace('\n', " ");
        let Some((plan, evaluated)) = self.plan_for(&task, &req.specs)? else { return Ok(None) };
        let names: Vec<&str> = req.specs.iter().map(|s| s.name.as_str()).collect();
        let done = crate::plan::succeeded_calls(req.messages[at + 1..].iter().filter(|(r, _)| r == "user").map(|(_, c)| c.as_str()));
        let next = match crate::plan::progress(&plan, &done) {
            crate::plan::Progress::Next(p) => plan[p].as_str(),
            crate::plan::Progress::Done => "SYS_EXIT",
        };
        Ok(names.iter().position(|n| *n == next).map(|k| (k, evaluated)))
    }

    /// The plan of `task` for a process with `specs`: one syscall name per
    /// clause ([`crate::plan::clauses`]), cached per (task, names); and the
    /// tokens evaluated to make it (0 when cached). None when a scoring
    /// prompt does not fit.
    pub fn plan_for(&mut self, task: &str, specs: &[SyscallSpec]) -> Result<Option<(Vec<String>, u32)>, String> {
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let key = cache_key(&(task, &names));
        if let Some(p) = self.plans.get(&key) {
            return Ok(Some((p.clone(), 0)));
        }
        // The first call is chosen from the whole task (measured better than
        // from its first clause alone: "compute 17 * 3 and show the result"
        // starts with printing), the later ones from their clauses.
        let mut evaluated = 0;
        let mut plan = Vec::new();
        let clauses = crate::plan::clauses(task);
        for (c, clause) in clauses.iter().enumerate() {
            // Later clauses are short ("print it", "exit"): their hints'
            // content-free prior is subtracted with more weight (see
            // `LATER_CLAUSE_PRIOR_WEIGHT`).
            let (text, weight) = if c == 0 { (task, 1.0) } else { (clause.as_str(), LATER_CLAUSE_PRIOR_WEIGHT) };
            let Some((total, n)) = self.pmi_scores(text, specs, weight)? else { return Ok(None) };
            evaluated += n;
            plan.push(specs[argmax(&total)].name.clone());
        }
        if plan.is_empty() {
            return Ok(None);
        }
        tracing::debug!("plan for {task:?}: {plan:?}");
        if self.plans.len() > 256 {
            self.plans.clear();
        }
        self.plans.insert(key, plan.clone());
        Ok(Some((plan, evaluated)))
    }

    /// How well each spec's hints fit `text`: two prompt forms × two
    /// phrasings of every hint, each PMI vector standardised over the
    /// candidates, then summed. Returns the sums and the tokens evaluated.
    fn pmi_scores(&mut self, text: &str, specs: &[SyscallSpec], prior_weight: f64) -> Result<Option<(Vec<f64>, u32)>, String> {
        let mut total = vec![0.0; specs.len()];
        let mut evaluated = 0;
        let forms = [
            (pmi_context(text), pmi_context("N/A")),
            (self.pmi_chat_context(text)?, self.pmi_chat_context("N/A")?),
        ];
        for k in 0..2 {
            let hints: Vec<String> = specs.iter().map(|s| crate::examples::hint_for(s, k)).collect();
            for (context, neutral) in &forms {
                let Some((sc, n)) = self.pmi(context, neutral, &hints, prior_weight)? else { return Ok(None) };
                evaluated += n;
                for (t, z) in total.iter_mut().zip(standardise(&sc)) {
                    *t += z;
                }
            }
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let v: Vec<_> = specs.iter().zip(&total).map(|(s, x)| format!("{}={x:.1}", s.name)).collect();
            tracing::debug!("PMI for {text:?}: {} [{}]", specs[argmax(&total)].name, v.join(" "));
        }
        Ok(Some((total, evaluated)))
    }

    /// The chat form of the text before a hint: the task as the user's
    /// message in the model's own chat template, and the assistant's answer
    /// starting "I will".
    fn pmi_chat_context(&self, task: &str) -> Result<String, String> {
        Ok(format!("{}I will", self.render(&[("user".to_string(), task.to_string())])?))
    }

    /// PMI of each hint: log P(" hint." | context) − `prior_weight` ·
    /// log P(" hint." | neutral), the neutral scores cached per (neutral,
    /// hints).
    fn pmi(&mut self, context: &str, neutral: &str, hints: &[String], prior_weight: f64) -> Result<Option<(Vec<f64>, u32)>, String> {
        let pairs: Vec<(String, String)> = hints.iter().map(|h| (context.to_string(), format!(" {h}."))).collect();
        let Some((sc, _, n)) = self.score_pairs(&pairs)? else { return Ok(None) };
        let key = cache_key(&(hints, &neutral));
        let (prior, n2) = match self.priors.get(&key) {
            Some(p) => (p.clone(), 0),
            None => {
                let npairs: Vec<(String, String)> = hints.iter().map(|h| (neutral.to_string(), format!(" {h}."))).collect();
                let Some((p, _, n2)) = self.score_pairs(&npairs)? else { return Ok(None) };
                if self.priors.len() > 256 {
                    self.priors.clear();
                }
                self.priors.insert(key, p.clone());
                (p, n2)
            }
        };
        Ok(Some((sc.iter().zip(&prior).map(|(s, p)| s - prior_weight * p).collect(), n + n2)))
    }

    /// log P(continuation | context) for each (context, continuation) pair,
    /// evaluated in the scratch sequence: each run of pairs with the same
    /// context evaluates that context once (reusing what the scratch slot
    /// already holds) and scores its continuations in parallel
    /// ([`Engine::score_branches`]). Returns the scores, the continuations'
    /// token counts and the tokens evaluated; None when a pair does not fit.
    fn score_pairs(&mut self, pairs: &[(String, String)]) -> Result<Option<PairScores>, String> {
        let (j, _, _) = self.acquire(SCRATCH_PID)?;
        let mut scores = Vec::with_capacity(pairs.len());
        let mut lens = Vec::with_capacity(pairs.len());
        let mut evaluated = 0u32;
        let mut a = 0;
        while a < pairs.len() {
            let context = &pairs[a].0;
            let b = a + pairs[a..].iter().take_while(|(c, _)| c == context).count();
            let ctx_toks = self.tokenize(context, true);
            let conts: Vec<Vec<LlamaToken>> = pairs[a..b].iter().map(|(_, c)| self.tokenize(c, false)).collect();
            let longest = conts.iter().map(Vec::len).max().unwrap_or(0);
            if ctx_toks.is_empty() || ctx_toks.len() + longest + 8 > self.cfg.n_ctx as usize || longest > self.cfg.n_batch as usize {
                return Ok(None);
            }
            let (cp, last_idx) = self.feed(j, &ctx_toks)?;
            evaluated += (ctx_toks.len() - cp) as u32;
            let last = self.slots[j].ctx.get_logits_ith(last_idx).to_vec();
            let (sc, n) = self.score_branches(j, &last, &conts)?;
            evaluated += n;
            scores.extend(sc);
            lens.extend(conts.iter().map(Vec::len));
            a = b;
        }
        Ok(Some((scores, lens, evaluated)))
    }

    /// Evaluates `prompt` in slot `i`, reusing the common prefix with what
    /// the slot holds. Returns (tokens reused, batch index of the last logits).
    fn feed(&mut self, i: usize, prompt: &[LlamaToken]) -> Result<(usize, i32), String> {
        let mut cp = lcp(&self.slots[i].tokens, prompt).min(prompt.len() - 1);
        if cp < self.slots[i].tokens.len() && self.slots[i].ctx.kv_cache_seq_rm(0, Some(cp as u32), None).is_err() {
            self.slots[i].ctx.clear_kv_cache();
            cp = 0;
        }
        self.slots[i].tokens.truncate(cp);
        self.eval(i, &prompt[cp..], cp, false)?;
        self.slots[i].tokens.extend_from_slice(&prompt[cp..]);
        Ok((cp, self.batch.n_tokens() - 1))
    }

    /// Contextual calibration: the names' scores for the same conversation
    /// with a content-free last message, cached per conversation prefix.
    fn prior(&mut self, i: usize, req: &GenRequest) -> Result<Option<(Vec<f64>, u32)>, String> {
        let n = req.messages.len();
        if n == 0 || req.messages[n - 1].0 != "user" || req.specs.len() < 2 {
            return Ok(None);
        }
        let mut neutral = req.messages[..n - 1].to_vec();
        neutral.push(("user".into(), NEUTRAL_TASK.into()));
        let text = self.render(&neutral)?;
        let names: Vec<&str> = req.specs.iter().map(|s| s.name.as_str()).collect();
        let key = cache_key(&(&text, &names));
        if let Some(p) = self.priors.get(&key) {
            return Ok(Some((p.clone(), 0)));
        }
        let toks = self.tokenize(&text, true);
        let (cp, last_idx) = self.feed(i, &toks)?;
        let cands = self.candidates(&req.specs);
        let (scores, scored) = self.score_names(i, &cands, last_idx)?;
        if self.priors.len() > 256 {
            self.priors.clear();
        }
        self.priors.insert(key, scores.clone());
        Ok(Some((scores, scored + (toks.len() - cp) as u32)))
    }

    /// Samples up to `max` tokens under `grammar`; returns (text, tokens, truncated).
    fn sample_loop(
        &mut self,
        i: usize,
        grammar_text: &str,
        max: u32,
        temperature: Option<f32>,
        repeat_penalty: f32,
        mut idx: i32,
    ) -> Result<(String, u32, bool), String> {
        let model = Arc::clone(&self.model);
        let vocab = model.vocab();
        let g = LlamaSampler::grammar(&model, grammar_text, "root").map_err(|e| format!("invalid grammar: {e}\n{grammar_text}"))?;
        // Greedy decoding of a small model loops inside strings ("This is a
        // test. This is a test. ..."); a repetition penalty over the recent
        // tokens breaks most loops (1.0 disables it).
        let pen = LlamaSampler::penalties(model.n_vocab(), 64, repeat_penalty.max(0.01), 0.0, 0.0);
        let mut sampler = match temperature {
            Some(t) if t > 0.0 => LlamaSampler::chain_simple([g, pen, LlamaSampler::temp(t), LlamaSampler::dist(0x5eed)]),
            _ => LlamaSampler::chain_simple([g, pen, LlamaSampler::greedy()]),
        };
        let n_ctx = self.cfg.n_ctx as usize;
        let mut bytes = Vec::new();
        let mut n = 0u32;
        loop {
            if n >= max || self.slots[i].tokens.len() + 1 >= n_ctx {
                return Ok((String::from_utf8_lossy(&bytes).into_owned(), n, true));
            }
            let tok = sampler.sample(&self.slots[i].ctx, idx);
            if vocab.is_eog(tok) {
                break;
            }
            bytes.extend(vocab.token_to_piece(tok, false, None));
            let pos = self.slots[i].tokens.len();
            self.batch.clear();
            self.batch.add(tok, pos as i32, &[0], true).map_err(|e| e.to_string())?;
            self.slots[i].ctx.decode(&mut self.batch).map_err(|e| format!("llama.cpp decode failed: {e}"))?;
            self.slots[i].tokens.push(tok);
            idx = 0;
            n += 1;
        }
        Ok((String::from_utf8_lossy(&bytes).into_owned(), n, false))
    }
}
