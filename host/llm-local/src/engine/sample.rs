//! Sampling a reply (or a call's arguments) under a GBNF grammar: greedy or
//! with a temperature, with a repetition penalty over the recent tokens.

use std::sync::Arc;

use llama_cpp_2::sampling::LlamaSampler;

use super::{Engine, EngineError};

impl Engine {
    /// Samples up to `max` tokens under `grammar`; returns (text, tokens, truncated).
    pub(super) fn sample_loop(
        &mut self,
        i: usize,
        grammar_text: &str,
        max: u32,
        temperature: Option<f32>,
        repeat_penalty: f32,
        mut idx: i32,
    ) -> Result<(String, u32, bool), EngineError> {
        let model = Arc::clone(&self.model);
        let vocab = model.vocab();
        let g = LlamaSampler::grammar(&model, grammar_text, "root").map_err(|e| EngineError::Grammar { reason: e.to_string(), grammar: grammar_text.to_string() })?;
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
            self.batch.add(tok, pos as i32, &[0], true).map_err(|e| EngineError::Decode(e.to_string()))?;
            self.slots[i].ctx.decode(&mut self.batch).map_err(|e| EngineError::Decode(e.to_string()))?;
            self.slots[i].tokens.push(tok);
            idx = 0;
            n += 1;
        }
        Ok((String::from_utf8_lossy(&bytes).into_owned(), n, false))
    }
}
