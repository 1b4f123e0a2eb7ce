//! Approval policies as data (a leaf: serde only, also compiled into the
//! journal fuzz target): [`Decision`], [`Rule`], [`Policy`] and its
//! presets, the [`CallFacts`] a rule looks at, and a [`PendingApproval`]
//! (journalled, so a restart asks again under the same id).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What happens to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Ask,
    Deny,
}

/// One rule: which calls it covers and what happens to them. Every field
/// that is set must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A syscall name (`EXEC_CMD`), a prefix ending in `*` (`MCP_*`, `FS_*`)
    /// or `*` for every call.
    pub syscall: String,
    /// `EXEC_CMD`: the command (`cmd`) starts with this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_prefix: Option<String>,
    /// Calls with a `path` argument: the path (relative to /workspace, as
    /// written, `./` and a leading `/workspace/` removed) matches this
    /// pattern (`*` matches anything, including `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `NET_FETCH`: the URL's host is one of these (`*.example.com` matches
    /// subdomains). With `decision = "allow"` and a default of `ask`, a list
    /// of hosts that need no approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// `NET_FETCH`: the rule matches hosts *not* in `hosts` instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hosts_not: bool,
    /// `FS_WRITE`: the file exists already (an overwrite or append).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub existing: bool,
    pub decision: Decision,
}

impl Rule {
    pub fn new(syscall: &str, decision: Decision) -> Rule {
        Rule {
            syscall: syscall.to_string(),
            command_prefix: None,
            path: None,
            hosts: None,
            hosts_not: false,
            existing: false,
            decision,
        }
    }

    pub(crate) fn matches(&self, call: &CallFacts) -> bool {
        let name_ok = match self.syscall.strip_suffix('*') {
            Some(prefix) => call.name.starts_with(prefix),
            None => self.syscall == call.name,
        };
        if !name_ok {
            return false;
        }
        if let Some(prefix) = &self.command_prefix {
            match call.command() {
                Some(c) if c.trim_start().starts_with(prefix.as_str()) => {}
                _ => return false,
            }
        }
        if let Some(pattern) = &self.path {
            match call.path() {
                Some(p) if glob(pattern, &p) => {}
                _ => return false,
            }
        }
        if let Some(hosts) = &self.hosts {
            let listed = call.host().is_some_and(|h| hosts.iter().any(|pat| host_matches(pat, &h)));
            if listed == self.hosts_not {
                return false;
            }
        }
        if self.existing && !call.target_exists {
            return false;
        }
        true
    }

    /// The rule "approve always" adds for `call`: its syscall, and the
    /// command's first word, the path or the host.
    pub fn always_for(call: &CallFacts) -> Rule {
        let mut r = Rule::new(call.name, Decision::Allow);
        if let Some(c) = call.command() {
            let word = c.split_whitespace().next().unwrap_or("");
            r.command_prefix = Some(word.to_string());
        } else if let Some(p) = call.path() {
            r.path = Some(p);
        } else if let Some(h) = call.host() {
            r.hosts = Some(vec![h]);
        }
        r
    }

    /// One line for listings: `EXEC_CMD cmd^="git"`.
    pub fn describe(&self) -> String {
        let mut s = self.syscall.clone();
        if let Some(c) = &self.command_prefix {
            s.push_str(&format!(" cmd^={c:?}"));
        }
        if let Some(p) = &self.path {
            s.push_str(&format!(" path={p:?}"));
        }
        if let Some(h) = &self.hosts {
            s.push_str(&format!(" host{}{h:?}", if self.hosts_not { " not in " } else { " in " }));
        }
        if self.existing {
            s.push_str(" (existing file)");
        }
        s
    }
}

/// Rules and a default: what to do with each call of a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// First match wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// For calls no rule matches.
    pub default: Decision,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::never()
    }
}

/// The calls that act beyond the workspace's files, or destroy them.
const DANGEROUS: [&str; 4] = ["EXEC_CMD", "FS_DELETE", "SPAWN_AGENT", "SYS_REGISTER_WEBHOOK"];

impl Policy {
    /// `--approve never`: every call runs without asking.
    pub fn never() -> Policy {
        Policy { rules: Vec::new(), default: Decision::Allow }
    }

    /// `--approve ask-dangerous`: asks before a command runs (`EXEC_CMD`),
    /// a file or folder is deleted (`FS_DELETE`), an existing file is
    /// overwritten or appended to (`FS_WRITE`), anything is fetched from
    /// the network (`NET_FETCH`), a child is started (`SPAWN_AGENT`), a
    /// webhook is opened (`SYS_REGISTER_WEBHOOK`) and before any MCP tool
    /// (`MCP_*`); the rest runs.
    pub fn ask_dangerous() -> Policy {
        let mut rules: Vec<Rule> = DANGEROUS.iter().map(|n| Rule::new(n, Decision::Ask)).collect();
        rules.push(Rule { existing: true, ..Rule::new("FS_WRITE", Decision::Ask) });
        rules.push(Rule::new("NET_FETCH", Decision::Ask));
        rules.push(Rule::new("MCP_*", Decision::Ask));
        Policy { rules, default: Decision::Allow }
    }

    /// `--approve ask-all`: every call asks, except ending the process.
    pub fn ask_all() -> Policy {
        Policy { rules: vec![Rule::new("SYS_EXIT", Decision::Allow)], default: Decision::Ask }
    }

    /// The preset called `name` (`never`, `ask-dangerous`, `ask-all`).
    pub fn preset(name: &str) -> Result<Policy, String> {
        match name {
            "never" => Ok(Policy::never()),
            "ask-dangerous" => Ok(Policy::ask_dangerous()),
            "ask-all" => Ok(Policy::ask_all()),
            other => Err(format!("unknown approval mode `{other}`: use never, ask-dangerous or ask-all")),
        }
    }

    pub fn decide(&self, call: &CallFacts) -> Decision {
        self.rules.iter().find(|r| r.matches(call)).map(|r| r.decision).unwrap_or(self.default)
    }

    /// Whether it never asks nor denies.
    pub fn is_never(&self) -> bool {
        self.default == Decision::Allow && self.rules.iter().all(|r| r.decision == Decision::Allow)
    }
}

/// What the policies look at in one call.
pub struct CallFacts<'a> {
    pub name: &'a str,
    pub args: &'a Value,
    /// `FS_WRITE`: the target is an existing file of the workspace.
    pub target_exists: bool,
}

impl<'a> CallFacts<'a> {
    /// The facts of `name(args)` for a process whose workspace is `workspace`.
    pub fn new(name: &'a str, args: &'a Value, workspace: &std::path::Path) -> CallFacts<'a> {
        let mut facts = CallFacts { name, args, target_exists: false };
        if name == "FS_WRITE" {
            if let Some(p) = facts.path() {
                // Read-only look (no follow of a final symlink matters here:
                // a link counts as existing).
                facts.target_exists = !p.split('/').any(|c| c == "..") && workspace.join(&p).symlink_metadata().is_ok();
            }
        }
        facts
    }

    fn command(&self) -> Option<&str> {
        if self.name != "EXEC_CMD" {
            return None;
        }
        self.args.get("cmd").or_else(|| self.args.get("command")).and_then(Value::as_str)
    }

    /// The `path` argument, relative to the workspace.
    fn path(&self) -> Option<String> {
        let p = self.args.get("path").and_then(Value::as_str)?;
        let p = p.strip_prefix("/workspace").map(|r| r.trim_start_matches('/')).unwrap_or(p);
        let p = p.trim_start_matches("./").trim_start_matches('/');
        Some(p.to_string())
    }

    fn host(&self) -> Option<String> {
        if self.name != "NET_FETCH" {
            return None;
        }
        let url = self.args.get("url").and_then(Value::as_str)?;
        let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
        let host = if host.starts_with('[') {
            host.split_inclusive(']').next().unwrap_or(host)
        } else {
            host.split(':').next().unwrap_or(host)
        };
        Some(host.to_ascii_lowercase())
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.ends_with(&format!(".{suffix}")),
        None => pattern == host,
    }
}

/// `*` matches any run of characters (`/` included); everything else is literal.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// A call waiting for the operator (`aos approvals`, `GET /v1/approvals`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingApproval {
    pub id: u64,
    pub pid: u64,
    pub syscall: String,
    pub args: Value,
    /// When it was asked (Unix ms).
    pub asked_at_ms: u64,
    /// When it times out as a denial (Unix ms).
    pub expires_at_ms: u64,
    /// The rule "approve always" would add.
    pub always_rule: String,
}
