//! The inference engine of one model: the loaded GGUF model, its chat
//! template, and the step that turns a conversation into one reply.
//!
//! * [`pool`] — the KV-context pool: one llama.cpp context per live
//!   process, common-prefix reuse, LRU eviction with state snapshots.
//! * [`scoring`] — log-probabilities of candidate continuations, scored as
//!   parallel sequences of a unified KV cache in one `llama_decode`.
//! * [`pmi`] — the default way to choose a step's syscall: the task's plan,
//!   each clause matched to a syscall's plain-words hints by PMI.
//! * [`compose`] — a text the plan needs composed (a haiku, a summary),
//!   written in a chat turn of its own under a grammar of plain lines.
//! * [`sample`] — grammar-constrained sampling of the reply or arguments.
//! * [`error`] — [`EngineError`] and [`GenError`].
//!
//! **Decoding.** Every reply is constrained by a GBNF grammar built from the
//! process's syscalls ([`crate::grammar`]). [`Decoding::Pmi`] (the default)
//! takes the syscall name from the plan; [`Decoding::TwoStage`] scores
//! `[SYS_CALL::NAME]` for every allowed NAME in the conversation (what Pmi
//! falls back to on steps the plan does not cover); [`Decoding::Grammar`]
//! decodes the whole reply in one pass. The arguments are then generated
//! under the chosen syscall's grammar. Strategies that measured worse and
//! were removed (contextual calibration, a few-shot classifier, the noisy
//! channel) keep their numbers in `evals/README.md`.
//!
//! **Progress.** While a step runs it reports how far it is to the
//! request's sink ([`ModelProgress`]): planning the task (per clause), the
//! prompt (per batch of `n_batch` tokens) and generating (per token, with
//! tokens/s); the reply's text goes to the text sink as it is sampled (the
//! pieces, in order, make up the whole reply).
//!
//! Not thread-safe by itself: the provider serialises use behind a mutex.

mod compose;
mod error;
mod pmi;
mod pool;
mod sample;
mod scoring;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;

use aos_abi::{ModelProgress, SyscallSpec};
use aos_providers::{ProgressSink, TextSink};

pub use error::{EngineError, GenError};

use crate::grammar::{self, GrammarOptions, TAG_OPEN};
use crate::stats::StepStats;
use pool::{Parked, Slot};

/// How replies are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decoding {
    /// One pass under the full reply grammar (optional thought line, then a call).
    Grammar,
    /// Choose the syscall name by log-probability, then generate its arguments
    /// under that syscall's grammar. No thought line.
    TwoStage,
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

/// Pseudo-pid of the scratch sequence used to score candidates outside a
/// process's conversation ([`Decoding::Pmi`]).
const SCRATCH_PID: u64 = u64::MAX;

/// Most candidate branches scored in one `llama_decode` (each branch is a
/// sequence of its own, after the context's sequence 0).
const MAX_BRANCHES: usize = 63;

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
    /// Where the step reports how far it is (planning, the prompt per batch,
    /// generating per token) and sends the reply's text as it is made.
    pub on_progress: Option<ProgressSink>,
    pub on_text: Option<TextSink>,
}

/// The reporting of the step that runs: the request's sinks and what the
/// generation reports carry. Empty between steps (and for evaluations that
/// call the engine directly).
#[derive(Default)]
struct Report {
    progress: Option<ProgressSink>,
    text: Option<TextSink>,
    /// The prompt's tokens.
    prompt_tokens: u64,
    /// Reply tokens made before sampling (a forced syscall name).
    forced: u64,
    /// Stream sampled text JSON-escaped (a composed text becoming the value
    /// of a call's string argument).
    escape_json: bool,
}

/// What the plan says the step is ([`Engine::plan_choice`]).
pub(super) enum Planned {
    /// The whole reply, built by the plan: `evaluated` scoring tokens,
    /// `generated` tokens composed; `streamed` when its text already went
    /// to the text sink.
    /// `truncated` when the request's `max_tokens` cut the composed text.
    Reply {
        text: String,
        evaluated: u32,
        generated: u32,
        streamed: bool,
        truncated: bool,
    },
    /// The syscall (index into the specs) whose arguments the model writes,
    /// the scoring tokens, and the only paths it may name (a syscall that
    /// changes files: the names the task gives).
    Name(usize, u32, Option<Vec<String>>),
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
pub fn backend() -> Result<&'static LlamaBackend, EngineError> {
    BACKEND
        .get_or_init(|| {
            let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
            if std::env::var_os("AOS_LLAMA_LOG").is_none() {
                b.void_logs();
            }
            Ok(b)
        })
        .as_ref()
        .map_err(|e| EngineError::Backend(e.clone()))
}

pub(crate) struct Engine {
    // Field order matters: slots (contexts) must drop before `model`.
    slots: Vec<Slot>,
    parked: HashMap<u64, Parked>,
    parked_bytes: usize,
    seen: HashMap<u64, ()>,
    /// Content-free PMI scores per (neutral context, hints) ([`pmi`]).
    priors: HashMap<u64, Vec<f64>>,
    /// Per (task, syscall names): the steps of the plan ([`crate::plan`], [`crate::frame`]).
    plans: HashMap<u64, Vec<crate::bind::PlanStep>>,
    clock: u64,
    batch: LlamaBatch<'static>,
    template: LlamaChatTemplate,
    cfg: EngineConfig,
    report: Report,
    pub load_ms: f64,
    model: Arc<LlamaModel>,
}

impl Engine {
    /// Reports `p` to the running step's progress sink, if any.
    fn progress(&self, p: ModelProgress) {
        ProgressSink::send(&self.report.progress, p)
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

impl Engine {
    /// Loads the model at `path` (already verified) and its chat template.
    pub fn load(path: PathBuf, cfg: EngineConfig) -> Result<Self, EngineError> {
        let backend = backend()?;
        let t = Instant::now();
        let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default())
            .map_err(|e| EngineError::Load {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let load_ms = ms(t);
        let template = match model.chat_template(None) {
            Ok(t) => t,
            Err(e) => {
                // Base models ship without a template; use llama.cpp's
                // built-in one for the architecture when it has one.
                let arch = model
                    .meta_val_str("general.architecture")
                    .unwrap_or_default();
                let name = if arch.starts_with("gemma") {
                    "gemma"
                } else {
                    "chatml"
                };
                tracing::warn!(
                    "model {} has no usable chat template ({e}); using llama.cpp's `{name}`",
                    path.display()
                );
                LlamaChatTemplate::new(name).map_err(|e| EngineError::Template(e.to_string()))?
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
            report: Report::default(),
            load_ms,
            model: Arc::new(model),
        })
    }

    /// Renders the conversation with the model's chat template, ending with
    /// an open assistant turn.
    pub fn render(&self, messages: &[(String, String)]) -> Result<String, EngineError> {
        let chat = messages
            .iter()
            .map(|(r, c)| {
                LlamaChatMessage::new(r.clone(), c.clone())
                    .map_err(|e| EngineError::Template(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.model
            .apply_chat_template(&self.template, &chat, true)
            .map_err(|e| EngineError::Template(e.to_string()))
    }

    pub fn tokenize(&self, text: &str, special: bool) -> Vec<LlamaToken> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), special, special)
    }

    /// Runs one step for `req.pid`. On error the process's cache is reset.
    pub(crate) fn generate(&mut self, req: &GenRequest) -> Result<GenOutput, GenError> {
        let pid = req.pid;
        self.report = Report {
            progress: req.on_progress.clone(),
            text: req.on_text.clone(),
            ..Report::default()
        };
        let r = self.generate_inner(req);
        self.report = Report::default();
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
        let two_stage = req.decoding != Decoding::Grammar && !req.specs.is_empty();

        // The plan first: when it builds the whole reply (the arguments come
        // from the task and the results), the prompt is not evaluated at all.
        let t = Instant::now();
        self.report.prompt_tokens = prompt.len() as u64;
        let planned = match req.decoding {
            Decoding::Pmi if two_stage => self.plan_choice(req)?,
            _ => None,
        };
        let plan_ms = ms(t);
        if let Some(Planned::Reply {
            text,
            evaluated,
            generated,
            streamed,
            truncated,
        }) = planned
        {
            if !streamed {
                TextSink::send(&self.report.text, &text);
            }
            let stats = StepStats {
                prompt_tokens: prompt.len() as u32,
                prompt_evaluated: 0,
                prompt_reused: 0,
                generated_tokens: generated,
                scoring_tokens: evaluated,
                cache: crate::stats::CacheSource::Unused,
                restore_ms: 0.0,
                prompt_ms: 0.0,
                choose_ms: plan_ms,
                gen_ms: 0.0,
                total_ms: ms(t_all),
                truncated,
                llama_p_eval_ms: 0.0,
                llama_n_p_eval: 0,
                llama_eval_ms: 0.0,
                llama_n_eval: 0,
            };
            return Ok(GenOutput { text, stats });
        }

        let (mut i, cache, restore_ms) = self.acquire(req.pid)?;
        self.seen.insert(req.pid, ());
        self.slots[i].ctx.reset_timings();

        // Reuse the common prefix; always evaluate at least the last token.
        let t = Instant::now();
        self.report.prompt_tokens = prompt.len() as u64;
        let (cp, mut last_idx) = self.feed(i, &prompt, true)?;
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
        let mut only_paths: Option<Vec<String>> = None;
        if two_stage {
            let t = Instant::now();
            let planned = match planned {
                Some(Planned::Name(k, n, paths)) => {
                    only_paths = paths;
                    Some((k, n))
                }
                Some(Planned::Reply { .. }) | None => None,
            };
            // The scratch sequence may have taken this process's context: get
            // it back (restored from its snapshot when there is one) and
            // evaluate the prompt again only if it is not all there. The
            // name is forced next, so no logits of the prompt are needed.
            if planned.is_some() {
                let (j, _, _) = self.acquire(req.pid)?;
                if self.slots[j].tokens != prompt {
                    self.feed(j, &prompt, true)?;
                }
                i = j;
            }
            let (chosen, forced, scored) = match planned {
                Some((k, n)) => (k, self.force_name(i, &req.specs, k)?, n),
                None => self.choose_name(i, &req.specs, last_idx)?,
            };
            stats.choose_ms = ms(t) + plan_ms;
            stats.scoring_tokens = scored;
            stats.generated_tokens = forced;
            // Whichever way the name was chosen (the plan, or scoring after
            // an event, a message or a line on stdin), a call that changes
            // files may only name a file the task names; with none named the
            // process exits instead ([`crate::bind::CHANGES_FILES`]).
            let name = req.specs[chosen].name.as_str();
            if only_paths.is_none() && crate::bind::CHANGES_FILES.contains(&name) {
                let named = crate::bind::task_text(&req.messages)
                    .map(|task| crate::frame::task_names(&task))
                    .unwrap_or_default();
                if named.is_empty() {
                    let text = crate::bind::refusal_exit(name, &crate::bind::history(&req.messages));
                    TextSink::send(&self.report.text, &text);
                    stats.total_ms = ms(t_all);
                    return Ok(GenOutput { text, stats });
                }
                only_paths = Some(named);
            }
            budget = budget.saturating_sub(forced);
            let name = format!("{TAG_OPEN}{}]", req.specs[chosen].name);
            self.report.forced = forced as u64;
            TextSink::send(&self.report.text, &name);
            text.push_str(&name);
            last_idx = self.batch.n_tokens() - 1;
            grammar_text = match &only_paths {
                Some(paths) => {
                    grammar::args_grammar(&grammar::with_enum(&req.specs[chosen], "path", paths))
                }
                None => grammar::args_grammar(&req.specs[chosen]),
            };
        } else {
            grammar_text = grammar::reply_grammar(&req.specs, req.grammar);
        }

        let t = Instant::now();
        let (gen, n, truncated) = if budget == 0 {
            (String::new(), 0, true)
        } else {
            self.sample_loop(
                i,
                &grammar_text,
                budget,
                req.temperature,
                req.repeat_penalty,
                last_idx,
            )?
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
}
