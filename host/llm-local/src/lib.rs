//! `aos-llm-local`: the `local` provider — in-process inference over a GGUF
//! model with llama.cpp (via `llama-cpp-2`), constrained by a grammar so that
//! every reply is a valid `[SYS_CALL::NAME] {json}` for one of the calling
//! process's syscalls.
//!
//! * [`model_file`] — the embedded model's identity (name, size, SHA-256, shared
//!   with `scripts/fetch-model.sh`), its location and verification.
//! * [`grammar`] — GBNF generation from syscall specs.
//! * [`engine`] — model, chat template and one step's decoding; its
//!   submodules hold the KV-context pool (per-process contexts with KV reuse,
//!   LRU eviction with state snapshots), candidate scoring, the PMI plan
//!   choice, grammar-constrained sampling and the typed [`engine::EngineError`].
//! * [`provider`] — [`LocalProvider`], the [`aos_providers::Provider`].
//! * [`stats`] — per-call statistics ([`LocalProvider::last_stats`]).
//! * [`examples`] — worked examples added to the system prompt, and the
//!   plain-words hints the first call is chosen by.
//! * [`plan`] — a task's clauses and the process's progress through them
//!   (which syscall comes next, and when to exit).
//! * [`frame`] — what each clause asks for, read from its words: the
//!   operation, the names it works on (only names the task gives are ever
//!   written or deleted), the text it writes.
//! * [`bind`] — the next call's arguments from the frame and the results so
//!   far, and the honest `SYS_EXIT` (what was done; non-zero and which part
//!   failed when the plan could not be completed).
//!
//! ```no_run
//! use std::sync::Arc;
//! use aos_llm_local::{LocalConfig, LocalProvider};
//! let p: Arc<dyn aos_providers::Provider> = Arc::new(LocalProvider::new(LocalConfig::default()));
//! ```

pub mod bind;
pub mod engine;
pub mod examples;
pub mod frame;
pub mod grammar;
pub mod model_file;
pub mod plan;
pub mod provider;
pub mod stats;

pub use engine::{Decoding, EngineError};
pub use model_file::{
    default_model_dir, default_model_path, MODEL_FILE_NAME, MODEL_SHA256, MODEL_SIZE,
};
pub use provider::{LocalConfig, LocalProvider};
pub use stats::{CacheSource, StepStats};
