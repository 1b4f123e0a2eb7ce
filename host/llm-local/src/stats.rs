//! Per-call statistics: how much of the prompt was evaluated or reused from
//! the process's KV cache, how many tokens were generated, and timings.

use serde::Serialize;

/// Where the KV state of a step's sequence came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheSource {
    /// First step of the process (nothing cached).
    Fresh,
    /// The process's live context.
    Live,
    /// Restored from a state snapshot saved when its context was evicted.
    Restored,
    /// Its state had been dropped (snapshot budget exceeded): recomputed.
    Recomputed,
    /// Not used: the plan built the whole reply ([`crate::bind`]), so the
    /// prompt was not evaluated.
    Unused,
}

/// Statistics of one completion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepStats {
    /// Tokens in the rendered prompt.
    pub prompt_tokens: u32,
    /// Prompt tokens evaluated in this call.
    pub prompt_evaluated: u32,
    /// Prompt tokens whose KV entries were reused from earlier calls.
    pub prompt_reused: u32,
    /// Tokens generated (the reply), including tokens forced by the decoder.
    pub generated_tokens: u32,
    /// Extra tokens evaluated to score candidate syscall names (two-stage decoding).
    pub scoring_tokens: u32,
    pub cache: CacheSource,
    /// Time restoring a saved state, ms.
    pub restore_ms: f64,
    /// Time evaluating the prompt, ms.
    pub prompt_ms: f64,
    /// Time choosing the syscall name (two-stage decoding), ms.
    pub choose_ms: f64,
    /// Time generating, ms.
    pub gen_ms: f64,
    /// Wall time of the whole call inside the engine (excluding waiting for the lock), ms.
    pub total_ms: f64,
    /// Whether the reply stopped at `max_tokens`.
    pub truncated: bool,
    /// llama.cpp's own figures for this call (`llama_perf_context`): prompt
    /// evaluation time and tokens (batches of more than one token), and
    /// single-token evaluation time and tokens.
    pub llama_p_eval_ms: f64,
    pub llama_n_p_eval: u32,
    pub llama_eval_ms: f64,
    pub llama_n_eval: u32,
}

impl StepStats {
    /// Prompt tokens per second of this call (evaluated tokens only).
    pub fn prompt_tps(&self) -> f64 {
        if self.prompt_ms > 0.0 { self.prompt_evaluated as f64 * 1000.0 / self.prompt_ms } else { 0.0 }
    }
    /// Generated tokens per second of this call.
    pub fn gen_tps(&self) -> f64 {
        if self.gen_ms > 0.0 { self.generated_tokens as f64 * 1000.0 / self.gen_ms } else { 0.0 }
    }
}
