//! The KV-context pool: at most `max_live_contexts` llama.cpp contexts,
//! each holding one process's sequence; the least recently used one is
//! parked (its KV cells saved with `llama_state_seq_get_data`, within
//! `max_parked_bytes`) when another process needs a context, and restored
//! on that process's next step. Also the two primitives every decoding
//! strategy builds on: evaluating tokens in a slot, and feeding a prompt
//! with reuse of the common prefix.

use std::num::NonZeroU32;
use std::time::Instant;

use aos_abi::ModelProgress;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{LlamaStateSeqFlags, SeqState};

use super::{backend, ms, Engine, EngineError, MAX_BRANCHES, SCRATCH_PID};
use crate::stats::CacheSource;

pub(super) struct Slot {
    pub(super) pid: Option<u64>,
    /// Borrows `Engine::model`; declared (and so dropped) before it. The
    /// model lives in an `Arc` that the engine keeps until after every slot
    /// is gone, so the `'static` here never outlives the real borrow.
    pub(super) ctx: LlamaContext<'static>,
    pub(super) tokens: Vec<LlamaToken>,
    pub(super) last_used: u64,
}

pub(super) struct Parked {
    state: SeqState,
    tokens: Vec<LlamaToken>,
    last_used: u64,
}

/// Length of the common prefix of two token sequences.
fn lcp(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Engine {
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

    pub(super) fn new_slot(&self) -> Result<Slot, EngineError> {
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
        let ctx = self.model.new_context(backend()?, params).map_err(|e| EngineError::Context(e.to_string()))?;
        // SAFETY: see `Slot::ctx`: the model is kept alive (and not moved:
        // it is behind an `Arc`) until after every context is dropped.
        let ctx: LlamaContext<'static> = unsafe { std::mem::transmute::<LlamaContext<'_>, LlamaContext<'static>>(ctx) };
        Ok(Slot { pid: None, ctx, tokens: Vec::new(), last_used: 0 })
    }

    /// Saves slot `i`'s sequence (if it has one) and frees the slot.
    pub(super) fn park(&mut self, i: usize) {
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
    pub(super) fn acquire(&mut self, pid: u64) -> Result<(usize, CacheSource, f64), EngineError> {
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
    pub(super) fn eval(&mut self, i: usize, tokens: &[LlamaToken], start: usize, all_logits: bool) -> Result<(), EngineError> {
        let n_batch = self.cfg.n_batch as usize;
        let n = tokens.len();
        for (c, chunk) in tokens.chunks(n_batch).enumerate() {
            self.batch.clear();
            for (j, &t) in chunk.iter().enumerate() {
                let k = c * n_batch + j;
                self.batch
                    .add(t, (start + k) as i32, &[0], all_logits || k + 1 == n)
                    .map_err(|e| EngineError::Decode(e.to_string()))?;
            }
            self.slots[i].ctx.decode(&mut self.batch).map_err(|e| EngineError::Decode(e.to_string()))?;
        }
        Ok(())
    }

    /// Evaluates `prompt` in slot `i`, reusing the common prefix with what
    /// the slot holds; with `report`, reports [`ModelProgress::Prompt`]
    /// before the first batch and after each. Returns (tokens reused, batch
    /// index of the last logits).
    pub(super) fn feed(&mut self, i: usize, prompt: &[LlamaToken], report: bool) -> Result<(usize, i32), EngineError> {
        let mut cp = lcp(&self.slots[i].tokens, prompt).min(prompt.len() - 1);
        if cp < self.slots[i].tokens.len() && self.slots[i].ctx.kv_cache_seq_rm(0, Some(cp as u32), None).is_err() {
            self.slots[i].ctx.clear_kv_cache();
            cp = 0;
        }
        self.slots[i].tokens.truncate(cp);
        if report {
            let total = prompt.len() as u64;
            self.progress(ModelProgress::Prompt { done: cp as u64, total });
            let mut at = cp;
            for chunk in prompt[cp..].chunks(self.cfg.n_batch as usize) {
                self.eval(i, chunk, at, false)?;
                at += chunk.len();
                self.progress(ModelProgress::Prompt { done: at as u64, total });
            }
        } else {
            self.eval(i, &prompt[cp..], cp, false)?;
        }
        self.slots[i].tokens.extend_from_slice(&prompt[cp..]);
        Ok((cp, self.batch.n_tokens() - 1))
    }
}
