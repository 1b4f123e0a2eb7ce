//! Sampling a reply (or a call's arguments) under a GBNF grammar: greedy or
//! with a temperature, with a repetition penalty over the recent tokens;
//! each token reported as progress and its text streamed as it is made.

use std::sync::Arc;
use std::time::Instant;

use aos_abi::ModelProgress;
use aos_providers::TextSink;
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
        // Bytes of `bytes` already sent to the text sink.
        let mut sent = 0;
        let mut n = 0u32;
        let start = Instant::now();
        let truncated = loop {
            if n >= max || self.slots[i].tokens.len() + 1 >= n_ctx {
                break true;
            }
            let tok = sampler.sample(&self.slots[i].ctx, idx);
            if vocab.is_eog(tok) {
                break false;
            }
            bytes.extend(vocab.token_to_piece(tok, false, None));
            let pos = self.slots[i].tokens.len();
            self.batch.clear();
            self.batch.add(tok, pos as i32, &[0], true).map_err(|e| EngineError::Decode(e.to_string()))?;
            self.slots[i].ctx.decode(&mut self.batch).map_err(|e| EngineError::Decode(e.to_string()))?;
            self.slots[i].tokens.push(tok);
            idx = 0;
            n += 1;
            self.stream_text(&bytes, &mut sent, false);
            self.progress(ModelProgress::Generating {
                prompt_tokens: self.report.prompt_tokens,
                tokens: self.report.forced + u64::from(n),
                tokens_per_s: f64::from(n) / start.elapsed().as_secs_f64().max(1e-6),
            });
        };
        self.stream_text(&bytes, &mut sent, true);
        Ok((String::from_utf8_lossy(&bytes).into_owned(), n, truncated))
    }

    /// Sends the text of `bytes[*sent..]` to the running step's text sink:
    /// only whole UTF-8 characters (a token can end inside one) unless
    /// `end`, invalid sequences as U+FFFD like [`String::from_utf8_lossy`],
    /// so the pieces add up to the reply the step returns.
    fn stream_text(&self, bytes: &[u8], sent: &mut usize, end: bool) {
        if self.report.text.is_none() {
            *sent = bytes.len();
            return;
        }
        let (piece, used) = utf8_piece(&bytes[*sent..], end);
        *sent += used;
        if self.report.escape_json {
            TextSink::send(&self.report.text, &json_escape(&piece));
        } else {
            TextSink::send(&self.report.text, &piece);
        }
    }
}

/// `s` as the inside of a JSON string (per character, so the escaped
/// pieces of a text add up to the escaped text).
pub(crate) fn json_escape(s: &str) -> String {
    let q = serde_json::Value::String(s.to_string()).to_string();
    q[1..q.len() - 1].to_string()
}

/// The text of the longest prefix of `bytes` that is whole (every byte when
/// `end`), decoded as [`String::from_utf8_lossy`] would, and its length in bytes.
fn utf8_piece(bytes: &[u8], end: bool) -> (String, usize) {
    let mut out = String::new();
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                rest = &[];
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                match e.error_len() {
                    Some(len) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        rest = &bad[len..];
                    }
                    // An incomplete character at the end: wait for its other bytes.
                    None if !end => {
                        rest = bad;
                        break;
                    }
                    None => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        rest = &[];
                        break;
                    }
                }
            }
        }
    }
    (out, bytes.len() - rest.len())
}

#[cfg(test)]
mod tests {
    use super::utf8_piece;

    /// Streamed pieces add up to what `from_utf8_lossy` makes of the whole,
    /// whichever byte a token ends at.
    #[test]
    fn pieces_add_up_to_the_lossy_whole() {
        let whole: &[u8] = b"h\xc3\xa9llo \xe2\x82\xac \xff end \xe2\x82";
        for cut in 0..whole.len() {
            let (first, used) = utf8_piece(&whole[..cut], false);
            let (rest, _) = utf8_piece(&whole[used..], true);
            assert_eq!(first + &rest, String::from_utf8_lossy(whole), "cut at {cut}");
        }
        assert_eq!(utf8_piece(b"a\xe2\x82", false), ("a".to_string(), 1));
    }
}
