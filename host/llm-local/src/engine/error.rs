//! The engine's typed errors: what failed in llama.cpp or in preparing a
//! step, with messages that say what to do. [`GenError`] adds the one case
//! the caller can recover from (a prompt too long for the context).

use std::path::PathBuf;

/// A failure of the inference engine.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// `llama_backend_init` failed (once per process; the error is kept).
    #[error("cannot initialise llama.cpp: {0}")]
    Backend(String),
    /// The GGUF file could not be loaded.
    #[error("cannot load model {}: {reason} (check that the file is a complete GGUF model; `./dev setup` fetches the embedded one again)", path.display())]
    Load { path: PathBuf, reason: String },
    /// Neither the model's chat template nor llama.cpp's fallback works.
    #[error("cannot use a chat template for this model: {0}")]
    Template(String),
    /// A llama.cpp context (KV cache) could not be allocated.
    #[error("cannot create a llama.cpp context: {0} (lower `n_ctx` or `max_live_contexts` in the [local] section of aos.toml)")]
    Context(String),
    /// `llama_decode` (or adding a token to its batch) failed.
    #[error("llama.cpp decode failed: {0}")]
    Decode(String),
    /// A KV-cache sequence could not be copied for candidate scoring.
    #[error("cannot copy a KV sequence: {0}")]
    KvCopy(String),
    /// The candidates to score do not fit in the context or in one batch.
    #[error("no room to score the candidates: {0} (raise `n_ctx` or `n_batch` in the [local] section of aos.toml)")]
    NoRoom(&'static str),
    /// The GBNF grammar built from the process's syscalls was refused.
    #[error("invalid grammar: {reason}\n{grammar}")]
    Grammar { reason: String, grammar: String },
}

/// Why a step failed: the prompt does not fit the context (the caller can
/// shorten it and retry), or the engine failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// The rendered prompt is `prompt_tokens` tokens; at most `limit` fit
    /// (`n_ctx` minus [`super::MIN_REPLY_ROOM`]).
    #[error("the prompt is {prompt_tokens} tokens; at most {limit} fit in the context")]
    ContextOverflow { prompt_tokens: usize, limit: usize },
    #[error(transparent)]
    Engine(#[from] EngineError),
}
