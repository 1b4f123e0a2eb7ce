//! Scoring candidate continuations: the log-probability of each
//! `[SYS_CALL::NAME]` tag after a conversation, or of each continuation of
//! a (context, continuation) pair in the scratch sequence. Candidates are
//! scored as sequences of their own in the unified KV cache, many per
//! `llama_decode`.

use llama_cpp_2::token::LlamaToken;

use super::{Engine, EngineError, MAX_BRANCHES, SCRATCH_PID};
use crate::grammar::TAG_OPEN;
use aos_abi::SyscallSpec;

/// Scores of (context, continuation) pairs, the continuations' token
/// counts, and the tokens evaluated.
pub(super) type PairScores = (Vec<f64>, Vec<usize>, u32);

/// log-softmax of `logits` at `tok`.
fn log_softmax_at(logits: &[f32], tok: LlamaToken) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| ((l as f64) - max).exp()).sum();
    logits[tok.0 as usize] as f64 - max - sum.ln()
}

impl Engine {
    /// Tokens of `[SYS_CALL::NAME]` for each spec.
    pub(super) fn candidates(&self, specs: &[SyscallSpec]) -> Vec<Vec<LlamaToken>> {
        specs.iter().map(|s| self.tokenize(&format!("{TAG_OPEN}{}]", s.name), false)).collect()
    }

    /// Log-probability of each candidate after the slot's current tokens
    /// (`last_idx`: batch index of the last token's logits), all scored in
    /// parallel sequences ([`Engine::score_branches`]). Returns the scores and
    /// the number of tokens evaluated only for scoring. The slot's own
    /// sequence is left as it was.
    pub(super) fn score_names(&mut self, i: usize, cands: &[Vec<LlamaToken>], last_idx: i32) -> Result<(Vec<f64>, u32), EngineError> {
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
    pub(super) fn score_branches(&mut self, i: usize, last: &[f32], branches: &[Vec<LlamaToken>]) -> Result<(Vec<f64>, u32), EngineError> {
        let n_batch = self.cfg.n_batch as usize;
        let base = self.slots[i].tokens.len();
        if base + branches.iter().map(Vec::len).max().unwrap_or(0) + 1 >= self.cfg.n_ctx as usize {
            return Err(EngineError::NoRoom("the candidates do not fit in the context"));
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
                return Err(EngineError::NoRoom("a candidate does not fit in one batch"));
            }
            let ctx = &mut self.slots[i].ctx;
            self.batch.clear();
            let mut at = Vec::with_capacity(k1 - k0);
            for (s, &k) in todo[k0..k1].iter().enumerate() {
                let seq = (s + 1) as i32;
                ctx.kv_cache_seq_cp(0, seq, None, None).map_err(|e| EngineError::KvCopy(e.to_string()))?;
                at.push(self.batch.n_tokens());
                let b = &branches[k];
                for (j, &t) in b[..b.len() - 1].iter().enumerate() {
                    self.batch.add(t, (base + j) as i32, &[seq], true).map_err(|e| EngineError::Decode(e.to_string()))?;
                }
            }
            let r = ctx.decode(&mut self.batch).map_err(|e| EngineError::Decode(e.to_string()));
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

    /// Scores `[SYS_CALL::NAME]` for each spec after the prompt, keeps the
    /// best one evaluated in the cache, and returns (index, tokens forced,
    /// tokens evaluated only for scoring).
    pub(super) fn choose_name(
        &mut self,
        i: usize,
        specs: &[SyscallSpec],
        last_idx: i32,
    ) -> Result<(usize, u32, u32), EngineError> {
        let cands = self.candidates(specs);
        let base = self.slots[i].tokens.len();
        let (best, scored) = if cands.len() == 1 {
            (0, 0)
        } else {
            let (scores, scored) = self.score_names(i, &cands, last_idx)?;
            let mut best = (f64::NEG_INFINITY, 0usize);
            for (k, s) in scores.iter().enumerate() {
                if *s > best.0 {
                    best = (*s, k);
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
    pub(super) fn force_name(&mut self, i: usize, specs: &[SyscallSpec], k: usize) -> Result<u32, EngineError> {
        let toks = self.tokenize(&format!("{TAG_OPEN}{}]", specs[k].name), false);
        let base = self.slots[i].tokens.len();
        self.eval(i, &toks, base, false)?;
        self.slots[i].tokens.extend_from_slice(&toks);
        Ok(toks.len() as u32)
    }



    /// log P(continuation | context) for each (context, continuation) pair,
    /// evaluated in the scratch sequence: each run of pairs with the same
    /// context evaluates that context once (reusing what the scratch slot
    /// already holds) and scores its continuations in parallel
    /// ([`Engine::score_branches`]). Returns the scores, the continuations'
    /// token counts and the tokens evaluated; None when a pair does not fit.
    pub(super) fn score_pairs(&mut self, pairs: &[(String, String)]) -> Result<Option<PairScores>, EngineError> {
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
            let (cp, last_idx) = self.feed(j, &ctx_toks, false)?;
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

}
