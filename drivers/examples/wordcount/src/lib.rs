//! Example third-party driver: `TEXT_STATS` counts words, lines and the most
//! frequent words of a text. It imports nothing beyond the driver baseline, so
//! an agent needs only the `driver:wordcount` grant to use it.
//!
//! Build, install and call it:
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p aos-driver-wordcount
//! aos driver install target/wasm32-wasip2/release/aos_driver_wordcount.wasm --name wordcount
//! aos driver call wordcount TEXT_STATS '{"text": "to be or not to be"}' --grant driver:wordcount
//! ```

use std::collections::BTreeMap;

use aos_guest_sdk::prelude::*;

/// Arguments of TEXT_STATS.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TextStatsArgs {
    /// The text to analyse.
    pub text: String,
    /// How many of the most frequent words to return (default 5, at most 50).
    #[serde(default)]
    pub top: Option<u32>,
}

pub fn text_stats(args: TextStatsArgs) -> SyscallResult<Value> {
    let top = args.top.unwrap_or(5);
    if top > 50 {
        return Err(SyscallError::InvalidArguments(format!("`top` is {top}; at most 50")));
    }
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut words = 0u64;
    for w in args.text.split(|c: char| !c.is_alphanumeric() && c != '\'') {
        if w.is_empty() {
            continue;
        }
        words += 1;
        *counts.entry(w.to_lowercase()).or_default() += 1;
    }
    let mut ranked: Vec<(String, u64)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.truncate(top as usize);
    Ok(json!({
        "words": words,
        "lines": args.text.lines().count(),
        "chars": args.text.chars().count(),
        "top_words": ranked.into_iter().map(|(w, n)| json!({"word": w, "count": n})).collect::<Vec<_>>(),
    }))
}

pub struct WordCount;

impl Driver for WordCount {
    fn router() -> Router {
        Router::new().syscall(
            "TEXT_STATS",
            "Count the words, lines and characters of a text and list its most frequent words.",
            text_stats,
        )
    }
}

aos_guest_sdk::export_driver!(WordCount);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        let v = text_stats(TextStatsArgs { text: "To be, or not to be.\nThat".into(), top: Some(2) }).unwrap();
        assert_eq!(v["words"], 7);
        assert_eq!(v["lines"], 2);
        assert_eq!(v["top_words"][0], json!({"word": "be", "count": 2}));
        assert_eq!(v["top_words"][1], json!({"word": "to", "count": 2}));
    }
}
