//! [`ModelProgress`]: how far a model call is, as a provider reports it
//! while it works. Here (not in the providers crate) because the kernel's
//! event record, which the journal fuzz target compiles on its own, carries
//! it in its live-only `ModelProgress` event.

use serde::{Deserialize, Serialize};

/// How far a model call is, as a provider reports it while it works (the
/// `local` provider: loading the model on first use, choosing the task's
/// syscalls, evaluating the prompt per batch, generating per token). A live
/// view only: nothing depends on it and nothing keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum ModelProgress {
    /// Verifying and loading the model (`what`: its file or name).
    Loading { what: String },
    /// Planning the task: the syscall of `done` of its `total` clauses is chosen.
    Planning { done: u64, total: u64 },
    /// Evaluating the prompt: `done` of its `total` tokens (reused cached ones included).
    Prompt { done: u64, total: u64 },
    /// Generating the reply: `tokens` so far, at `tokens_per_s`, after a
    /// prompt of `prompt_tokens` (0: not said).
    Generating { prompt_tokens: u64, tokens: u64, tokens_per_s: f64 },
}

impl ModelProgress {
    /// The phase's name (`loading`, `planning`, `prompt`, `generating`),
    /// as in its JSON `phase` field.
    pub fn phase(&self) -> &'static str {
        match self {
            ModelProgress::Loading { .. } => "loading",
            ModelProgress::Planning { .. } => "planning",
            ModelProgress::Prompt { .. } => "prompt",
            ModelProgress::Generating { .. } => "generating",
        }
    }

    /// Tokens of this call so far (prompt tokens evaluated, then the prompt
    /// and the reply's tokens), for live counters; 0 before the prompt.
    pub fn tokens(&self) -> u64 {
        match self {
            ModelProgress::Loading { .. } | ModelProgress::Planning { .. } => 0,
            ModelProgress::Prompt { done, .. } => *done,
            ModelProgress::Generating { prompt_tokens, tokens, .. } => prompt_tokens + tokens,
        }
    }
}

impl std::fmt::Display for ModelProgress {
    /// One short line: `loading SmolLM2.gguf`, `evaluating prompt 1536/3410
    /// tokens`, `generating: 42 tokens, 18.3 tok/s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelProgress::Loading { what } => write!(f, "loading {what}"),
            ModelProgress::Planning { done, total } => write!(f, "planning the task: {done}/{total} clauses"),
            ModelProgress::Prompt { done, total } => write!(f, "evaluating prompt {done}/{total} tokens"),
            ModelProgress::Generating { tokens, tokens_per_s, .. } => {
                write!(f, "generating: {tokens} tokens, {tokens_per_s:.1} tok/s")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON shape `aos logs -f --json` prints, and the status line.
    #[test]
    fn json_and_line() {
        let p = ModelProgress::Prompt { done: 1536, total: 3410 };
        assert_eq!(serde_json::to_value(&p).unwrap(), serde_json::json!({"phase": "prompt", "done": 1536, "total": 3410}));
        assert_eq!(p.to_string(), "evaluating prompt 1536/3410 tokens");
        assert_eq!(p.tokens(), 1536);
        let g = ModelProgress::Generating { prompt_tokens: 100, tokens: 42, tokens_per_s: 18.25 };
        assert_eq!(g.to_string(), "generating: 42 tokens, 18.2 tok/s");
        assert_eq!((g.phase(), g.tokens()), ("generating", 142));
        let back: ModelProgress = serde_json::from_value(serde_json::to_value(&g).unwrap()).unwrap();
        assert_eq!(back, g);
        assert_eq!(ModelProgress::Loading { what: "m.gguf".into() }.to_string(), "loading m.gguf");
    }
}
