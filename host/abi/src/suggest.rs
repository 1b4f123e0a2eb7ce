//! "Did you mean …?": the closest known name to a mistyped one, for error
//! messages about capabilities, providers and commands.

/// Edit distance (insertions, deletions, substitutions) between `a` and `b`,
/// compared case-insensitively.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `input`, if it is close enough to be a likely
/// typo: at most a third of the longer name's length away (at least 1, at
/// most 3 edits).
pub fn did_you_mean<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let input = input.trim();
    candidates
        .into_iter()
        .map(|c| (edit_distance(input, c), c))
        .filter(|(d, c)| *d <= (input.chars().count().max(c.chars().count()) / 3).clamp(1, 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested_and_far_ones_not() {
        assert_eq!(edit_distance("openia", "openai"), 2);
        assert_eq!(did_you_mean("openia", ["local", "openai", "gemini"]), Some("openai"));
        assert_eq!(did_you_mean("antropic", ["openai", "anthropic"]), Some("anthropic"));
        assert_eq!(did_you_mean("timer", ["timers", "spawn"]), Some("timers"));
        assert_eq!(did_you_mean("zzz", ["net", "ipc"]), None);
        assert_eq!(did_you_mean("OPENAI", ["openai"]), Some("openai"));
    }
}
