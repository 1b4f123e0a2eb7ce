//! Text a plan needs composed (a haiku, a story, a summary of what was
//! read): written by the model in a chat turn of its own — "Write a haiku
//! about the sea." as the user's message, not inside a JSON string of a
//! call — in the scratch sequence, under a grammar of plain lines (no
//! braces, brackets or quotes, so no `{1} {2}` or `);`), and streamed
//! JSON-escaped as the value of the call being made.

use super::{Engine, EngineError, SCRATCH_PID};

/// Longest composed text, in tokens.
const MAX_COMPOSE_TOKENS: u32 = 160;
/// Longest source text shown to the model, in characters.
const MAX_SOURCE_CHARS: usize = 3000;

/// The grammar of a composed text: `lines` lines (0: one to four), each
/// starting with a letter or digit.
pub(super) fn prose_grammar(lines: usize) -> String {
    let line = r#"line ::= [A-Za-z0-9] [^\n"\\{}<>\[\]`|\x00-\x1F]{2,100}"#;
    let root = match lines {
        0 => r#"root ::= line ( "\n" line ){0,3}"#.to_string(),
        1 => "root ::= line".to_string(),
        n => format!(r#"root ::= line ( "\n" line ){{{}}}"#, n - 1),
    };
    format!("{root}\n{line}\n")
}

impl Engine {
    /// Composes `what` ("a haiku about the sea") in `lines` lines, from
    /// `source` when given, in at most `budget` tokens. Returns the text, the
    /// tokens generated and whether the budget cut it short; an empty text
    /// when the request does not fit in the context.
    pub(super) fn compose(
        &mut self,
        what: &str,
        lines: usize,
        source: Option<&str>,
        budget: u32,
    ) -> Result<(String, u32, bool), EngineError> {
        let shape = match lines {
            1 => " in one line",
            3 => " in three lines",
            _ => "",
        };
        let ask = match source {
            Some(s) => {
                let s: String = s.chars().take(MAX_SOURCE_CHARS).collect();
                format!("Text:\n{s}\n\nWrite {what}{shape}. Answer with the text only.")
            }
            None => format!("Write {what}{shape}. Answer with the text only."),
        };
        let prompt = self.render(&[("user".to_string(), ask)])?;
        let tokens = self.tokenize(&prompt, true);
        if tokens.len() + MAX_COMPOSE_TOKENS as usize + 8 > self.cfg.n_ctx as usize {
            return Ok((String::new(), 0, false));
        }
        let (j, _, _) = self.acquire(SCRATCH_PID)?;
        let (_, last) = self.feed(j, &tokens, false)?;
        let escape = std::mem::replace(&mut self.report.escape_json, true);
        let r = self.sample_loop(
            j,
            &prose_grammar(lines),
            budget.clamp(1, MAX_COMPOSE_TOKENS),
            None,
            1.3,
            last,
        );
        self.report.escape_json = escape;
        let (text, n, truncated) = r?;
        Ok((text, n, truncated && budget < MAX_COMPOSE_TOKENS))
    }
}

#[cfg(test)]
mod tests {
    use super::prose_grammar;

    #[test]
    fn the_grammar_fixes_the_number_of_lines() {
        assert!(
            prose_grammar(3).starts_with("root ::= line ( \"\\n\" line ){2}"),
            "{}",
            prose_grammar(3)
        );
        assert!(prose_grammar(1).starts_with("root ::= line\n"));
        assert!(prose_grammar(0).contains("{0,3}"));
    }
}
