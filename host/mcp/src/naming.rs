//! The syscall name of an MCP tool.
//!
//! Rule: `MCP_` + the server name + `_` + the tool name, upper-cased, every
//! character other than `A-Z`/`0-9` replaced by `_`. When that name is
//! longer than 64 characters, or two tools (of any servers) would get the
//! same name, each of them is cut to 55 characters and given `_` + the first
//! 8 hex digits of SHA-256(`server/tool`). So every name matches
//! `^[A-Z0-9_]{1,64}$` — a name of the text protocol (`[SYS_CALL::NAME]`,
//! whose parser upper-cases) and of native tool calling
//! (`^[a-zA-Z0-9_-]{1,64}$`) — and the prefix `MCP_` is reserved: no
//! kernel syscall starts with it and the driver runtime refuses a driver
//! offering one, so a tool can never shadow a built-in or installed driver.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// The prefix of every MCP syscall name.
pub const PREFIX: &str = "MCP_";
/// The longest syscall name.
pub const MAX_LEN: usize = 64;

fn upper(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

fn plain(server: &str, tool: &str) -> String {
    format!("{PREFIX}{}_{}", upper(server), upper(tool))
}

fn hashed(server: &str, tool: &str) -> String {
    let mut base = plain(server, tool);
    base.truncate(MAX_LEN - 9);
    let digest = Sha256::digest(format!("{server}/{tool}").as_bytes());
    format!("{base}_{}", &hex::encode_upper(digest)[..8])
}

/// The syscall names of `tools` ((server, tool) pairs), in the same order.
/// The result depends on the set of tools only, not on their order.
pub fn syscall_names(tools: &[(&str, &str)]) -> Vec<String> {
    let mut count: HashMap<String, usize> = HashMap::new();
    for (s, t) in tools {
        *count.entry(plain(s, t)).or_default() += 1;
    }
    tools
        .iter()
        .map(|(s, t)| {
            let p = plain(s, t);
            if p.len() > MAX_LEN || count[&p] > 1 {
                hashed(s, t)
            } else {
                p
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(n: &str) -> bool {
        !n.is_empty() && n.len() <= MAX_LEN && n.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    }

    #[test]
    fn names_are_valid_unique_and_readable() {
        let long = "x".repeat(200);
        let tools = [
            ("everything", "echo"),
            ("everything", "get-tiny-image"),
            ("a_b", "c"),
            ("a", "b_c"),
            ("a", "b.c"),
            ("everything", long.as_str()),
            ("srv", "ünïcode/tool"),
        ];
        let names = syscall_names(&tools);
        assert_eq!(names[0], "MCP_EVERYTHING_ECHO");
        assert_eq!(names[1], "MCP_EVERYTHING_GET_TINY_IMAGE");
        for n in &names {
            assert!(valid(n), "{n}");
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        // Order does not matter.
        let mut rev = tools;
        rev.reverse();
        let mut back = syscall_names(&rev);
        back.reverse();
        assert_eq!(back, names);
    }
}
