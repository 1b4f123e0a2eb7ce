//! Capabilities: what an agent may do, and how a child's rights are derived
//! from its parent's.
//!
//! A [`CapabilitySet`] is the only input from which the driver runtime builds
//! what a component may import (each host interface says which grant enables
//! it: `host/runtime/src/interfaces/`): a capability that is absent means the
//! corresponding host interface or preopen is simply not linked. Syscall
//! names used as permissions (`FS_READ`) are mapped by the kernel's
//! resolution (`host/kernel/src/resolve.rs`), not here.
//!
//! Capability names (documented in the README):
//!
//! | name                  | grants                                                         |
//! |-----------------------|----------------------------------------------------------------|
//! | `fs:ro`               | the workspace preopened read-only at `/workspace`               |
//! | `fs:rw`               | the workspace preopened read-write (implies `fs:ro`)            |
//! | `net`                 | outgoing HTTP GET to any public host                            |
//! | `net:HOST`            | outgoing HTTP GET to HOST only (repeatable)                     |
//! | `exec`                | commands in the process's sandbox container, no network        |
//! | `exec:net`            | the same, with network inside the container (implies `exec`)   |
//! | `memory`              | the process's own long-term memory space                        |
//! | `memory:shared/NAME`  | the shared memory space NAME                                    |
//! | `timers`              | `SLEEP`, `SYS_SCHEDULE`                                         |
//! | `spawn`               | `SPAWN_AGENT`                                                   |
//! | `ipc`                 | `SEND_MSG`, `RECV_MSG`, `pipe_to`, within the process's own tree |
//! | `ipc:any`             | the same to any process (implies `ipc`; not part of `all`)      |
//! | `webhook`             | `SYS_REGISTER_WEBHOOK`, `SYS_WEBHOOK_REPLY`                     |
//! | `driver:NAME`         | the syscalls of the installed third-party driver NAME           |
//! | `mcp:NAME`            | every tool of the configured MCP server NAME (not part of `all`) |
//! | `mcp:NAME/TOOL`       | the tool TOOL of MCP server NAME only (implied by `mcp:NAME`)   |
//!
//! `all` expands to every built-in capability (used for root agents by default).
//! Only these spellings are accepted (plus the original AgentOS's syscall
//! names as permissions, `FS_READ` = `fs:ro`, …); anything else, such as
//! `fs:write`, is an [`UnknownCapability`] whose message names the right one.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One capability. Ordering is only used to keep sets printable in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Capability {
    FsRead,
    FsWrite,
    /// Any public host.
    Net,
    /// One host (lower-cased, no port).
    NetHost(String),
    Exec,
    ExecNet,
    Memory,
    MemoryShared(String),
    Timers,
    Spawn,
    Ipc,
    /// `ipc` reaching processes outside the holder's own tree (never in `all`).
    IpcAny,
    /// Incoming HTTP requests on registered paths.
    Webhook,
    Driver(String),
    /// Every tool of one configured MCP server (never in `all`).
    Mcp(String),
    /// One tool of one MCP server: (server, tool as the server names it).
    McpTool(String, String),
}

/// The documented capability names, in one line (for error messages).
pub const CAPABILITY_NAMES: &str =
    "fs:ro, fs:rw, net, net:HOST, exec, exec:net, memory, memory:shared/NAME, timers, spawn, ipc, ipc:any, webhook, driver:NAME, mcp:NAME, mcp:NAME/TOOL, all";

/// What each capability grants, for `--grant` help texts.
pub const GRANT_HELP: &str = "\
Capability to grant (repeatable, or comma-separated: --grant fs:rw,net):
  fs:ro                the workspace, read-only (FS_READ, FS_LIST)
  fs:rw                the workspace, read-write (adds FS_WRITE, FS_DELETE, FS_MKDIR)
  net                  HTTP GET to any public host (NET_FETCH)
  net:HOST             HTTP GET to HOST only
  exec                 commands in the process's sandbox container (EXEC_CMD)
  exec:net             the same, with network inside the container
  memory               its own long-term memory (MEM_WRITE, MEM_READ, MEM_DELETE)
  memory:shared/NAME   the shared memory space NAME
  timers               SLEEP, SYS_SCHEDULE
  spawn                SPAWN_AGENT
  ipc                  SEND_MSG, RECV_MSG (and pipe_to) within its own process tree
  ipc:any              the same, to any process (not part of all)
  webhook              SYS_REGISTER_WEBHOOK, SYS_WEBHOOK_REPLY
  driver:NAME          the syscalls of the installed driver NAME (see `aos driver ls`)
  mcp:NAME             every tool of the MCP server NAME (see `aos mcp ls`; not part of all)
  mcp:NAME/TOOL        the one tool TOOL of the MCP server NAME
  all                  every built-in capability above (not drivers, not MCP servers, not shared memory)
Syscall names of the original AgentOS are accepted too: FS_READ = fs:ro, FS_WRITE = fs:rw, NET_FETCH = net, ...";

/// A capability name that could not be parsed. Its message suggests the
/// documented spelling closest to what was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability `{0}`{hint}; the capabilities are {CAPABILITY_NAMES} (or syscall names such as FS_READ)", hint = spelling_hint(.0).map(|h| format!(" (did you mean `{h}`?)")).unwrap_or_default())]
pub struct UnknownCapability(pub String);

/// The documented spelling a mistyped or undocumented capability name most likely meant.
pub fn spelling_hint(name: &str) -> Option<String> {
    let t = name.trim();
    let lower = t.to_ascii_lowercase();
    // Common undocumented aliases.
    let alias = match lower.as_str() {
        "fs:read" | "fs:r" | "fs:readonly" | "fs:read-only" | "fs" | "read" | "files" | "file" | "filesystem" => Some("fs:ro"),
        "fs:write" | "fs:w" | "fs:readwrite" | "fs:read-write" | "fs:all" | "write" => Some("fs:rw"),
        "network" | "http" | "https" | "internet" | "web" | "fetch" | "net:*" => Some("net"),
        "shell" | "cmd" | "command" | "commands" | "docker" | "bash" | "sandbox" => Some("exec"),
        "timer" | "sleep" | "schedule" | "time" => Some("timers"),
        "mem" | "memories" => Some("memory"),
        "msg" | "message" | "messages" | "mailbox" | "messaging" => Some("ipc"),
        "webhooks" | "hook" | "hooks" | "http-in" => Some("webhook"),
        "spawn_agent" | "children" | "child" => Some("spawn"),
        "*" | "everything" => Some("all"),
        _ => None,
    };
    if let Some(a) = alias {
        return Some(a.to_string());
    }
    // A syscall name in the wrong case: `fs_read` is FS_READ.
    if t.chars().any(|c| c.is_ascii_lowercase()) {
        if let Some(c) = builtin_syscall_grant(t) {
            return Some(c.to_string());
        }
    }
    // The right name in the wrong case.
    if lower != t && (lower == "all" || lower.parse::<Capability>().is_ok()) {
        return Some(lower);
    }
    const FIXED: &[&str] =
        &["fs:ro", "fs:rw", "net", "exec", "exec:net", "memory", "timers", "spawn", "ipc", "ipc:any", "webhook", "all"];
    if let Some(s) = crate::suggest::did_you_mean(&lower, FIXED.iter().copied()) {
        return Some(s.to_string());
    }
    for (prefix, rest) in [("net:", "HOST"), ("memory:shared/", "NAME"), ("driver:", "NAME"), ("mcp:", "NAME")] {
        let head = prefix.trim_end_matches([':', '/']);
        if let Some((p, _)) = lower.split_once([':', '/']) {
            if p != head && crate::suggest::edit_distance(p, head) <= 2 {
                return Some(format!("{prefix}{rest}"));
            }
        }
    }
    // An uppercase syscall name with a typo.
    if t.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
        const SYSCALLS: &[&str] = &[
            "FS_READ", "FS_LIST", "FS_WRITE", "FS_DELETE", "FS_MKDIR", "NET_FETCH", "EXEC_CMD", "MEM_READ", "MEM_WRITE",
            "MEM_DELETE", "SLEEP", "SYS_SCHEDULE", "SPAWN_AGENT", "SEND_MSG", "RECV_MSG", "SYS_REGISTER_WEBHOOK",
            "SYS_WEBHOOK_REPLY",
        ];
        return crate::suggest::did_you_mean(t, SYSCALLS.iter().copied()).map(str::to_string);
    }
    None
}

/// The capability that grants a syscall of the kernel or of a built-in
/// driver, by name (any case) — for spelling hints only: grants of syscall
/// names are resolved by the syscall sources (`CapabilitySet::parse_with`).
fn builtin_syscall_grant(name: &str) -> Option<Capability> {
    Some(match name.trim().to_ascii_uppercase().as_str() {
        "FS_READ" | "FS_LIST" => Capability::FsRead,
        "FS_WRITE" | "FS_DELETE" | "FS_MKDIR" => Capability::FsWrite,
        "NET_FETCH" => Capability::Net,
        "EXEC_CMD" => Capability::Exec,
        "MEM_READ" | "MEM_WRITE" | "MEM_DELETE" => Capability::Memory,
        "SLEEP" | "SYS_SCHEDULE" => Capability::Timers,
        "SPAWN_AGENT" => Capability::Spawn,
        "SEND_MSG" | "RECV_MSG" => Capability::Ipc,
        "SYS_REGISTER_WEBHOOK" | "SYS_WEBHOOK_REPLY" => Capability::Webhook,
        _ => return None,
    })
}

/// An MCP server's name: 1-32 of `a-z`, `0-9`, `-`, `_` (the rule of
/// `aos mcp add`; `/` separates a tool in `mcp:NAME/TOOL`).
pub fn valid_mcp_server(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl FromStr for Capability {
    type Err = UnknownCapability;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || UnknownCapability(s.to_string());
        let t = s.trim();
        Ok(match t {
            "fs:ro" => Capability::FsRead,
            "fs:rw" => Capability::FsWrite,
            "net" => Capability::Net,
            "exec" => Capability::Exec,
            "exec:net" => Capability::ExecNet,
            "memory" => Capability::Memory,
            "timers" => Capability::Timers,
            "spawn" => Capability::Spawn,
            "ipc" => Capability::Ipc,
            "ipc:any" => Capability::IpcAny,
            "webhook" => Capability::Webhook,
            _ => {
                if let Some(host) = t.strip_prefix("net:") {
                    let host = host.to_ascii_lowercase();
                    if !valid_name(&host) {
                        return Err(err());
                    }
                    Capability::NetHost(host)
                } else if let Some(name) = t.strip_prefix("memory:shared/") {
                    if !valid_name(name) {
                        return Err(err());
                    }
                    Capability::MemoryShared(name.to_string())
                } else if let Some(name) = t.strip_prefix("driver:") {
                    if !valid_name(name) {
                        return Err(err());
                    }
                    Capability::Driver(name.to_string())
                } else if let Some(rest) = t.strip_prefix("mcp:") {
                    match rest.split_once('/') {
                        None if valid_mcp_server(rest) => Capability::Mcp(rest.to_string()),
                        Some((server, tool)) if valid_mcp_server(server) && valid_name(tool) => {
                            Capability::McpTool(server.to_string(), tool.to_string())
                        }
                        _ => return Err(err()),
                    }
                } else {
                    return Err(err());
                }
            }
        })
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::FsRead => f.write_str("fs:ro"),
            Capability::FsWrite => f.write_str("fs:rw"),
            Capability::Net => f.write_str("net"),
            Capability::NetHost(h) => write!(f, "net:{h}"),
            Capability::Exec => f.write_str("exec"),
            Capability::ExecNet => f.write_str("exec:net"),
            Capability::Memory => f.write_str("memory"),
            Capability::MemoryShared(n) => write!(f, "memory:shared/{n}"),
            Capability::Timers => f.write_str("timers"),
            Capability::Spawn => f.write_str("spawn"),
            Capability::Ipc => f.write_str("ipc"),
            Capability::IpcAny => f.write_str("ipc:any"),
            Capability::Webhook => f.write_str("webhook"),
            Capability::Driver(n) => write!(f, "driver:{n}"),
            Capability::Mcp(n) => write!(f, "mcp:{n}"),
            Capability::McpTool(n, t) => write!(f, "mcp:{n}/{t}"),
        }
    }
}

impl TryFrom<String> for Capability {
    type Error = UnknownCapability;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Capability> for String {
    fn from(c: Capability) -> String {
        c.to_string()
    }
}

impl Capability {
    /// The capabilities this one implies, itself included (`fs:rw` ⇒
    /// `fs:ro`, `exec:net` ⇒ `exec`). The only implication table.
    pub fn implied(&self) -> Vec<Capability> {
        match self {
            Capability::FsWrite => vec![Capability::FsWrite, Capability::FsRead],
            Capability::ExecNet => vec![Capability::ExecNet, Capability::Exec],
            Capability::IpcAny => vec![Capability::IpcAny, Capability::Ipc],
            other => vec![other.clone()],
        }
    }

    /// Whether holding `self` also grants `other` (`net` grants every
    /// `net:HOST`; `fs:rw` grants `fs:ro`).
    pub fn implies(&self, other: &Capability) -> bool {
        match (self, other) {
            (Capability::Net, Capability::NetHost(_)) => true,
            (Capability::Mcp(s), Capability::McpTool(server, _)) => s == server,
            _ => self.implied().contains(other),
        }
    }

    /// Parses one grant: a capability name or `all`. A name made of
    /// upper-case letters and `_` is first offered to `syscall_grant`, which
    /// maps a syscall name used as a permission by prompts written for the
    /// original AgentOS (`permissions: ["FS_READ"]`) to the capabilities that
    /// grant that syscall (the kernel answers it from its syscall resolution,
    /// see `aos_kernel::resolve`).
    pub fn parse_grant_with(
        s: &str,
        syscall_grant: &dyn Fn(&str) -> Option<Vec<Capability>>,
    ) -> Result<Vec<Capability>, UnknownCapability> {
        let t = s.trim();
        if t == "all" {
            return Ok(CapabilitySet::all_builtin().iter().cloned().collect());
        }
        if !t.is_empty() && t.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            if let Some(caps) = syscall_grant(t) {
                return Ok(caps);
            }
        }
        s.parse().map(|c| vec![c])
    }

    /// Parses a capability name or `all` (no syscall names: see
    /// [`Capability::parse_grant_with`]).
    pub fn parse_grant(s: &str) -> Result<Vec<Capability>, UnknownCapability> {
        Self::parse_grant_with(s, &|_| None)
    }
}

/// A set of capabilities, closed under implication (`fs:rw` ⇒ `fs:ro`).
/// The empty set grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CapabilitySet(BTreeSet<Capability>);

impl CapabilitySet {
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every built-in capability (not third-party drivers, not shared memory
    /// spaces, not `ipc:any`).
    pub fn all_builtin() -> Self {
        use Capability::*;
        [FsWrite, Net, ExecNet, Memory, Timers, Spawn, Ipc, Webhook].into_iter().collect()
    }

    /// Parses grants such as `["fs:ro", "net:example.com", "all"]`.
    pub fn parse<I, S>(grants: I) -> Result<Self, UnknownCapability>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::parse_with(grants, &|_| None)
    }

    /// Parses grants that may also name syscalls (`["FS_WRITE", "net"]`),
    /// mapped to capabilities by `syscall_grant` (see [`Capability::parse_grant_with`]).
    pub fn parse_with<I, S>(
        grants: I,
        syscall_grant: &dyn Fn(&str) -> Option<Vec<Capability>>,
    ) -> Result<Self, UnknownCapability>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = Self::empty();
        for g in grants {
            for c in Capability::parse_grant_with(g.as_ref(), syscall_grant)? {
                set.insert(c);
            }
        }
        Ok(set)
    }

    pub fn insert(&mut self, c: Capability) {
        for c in c.implied() {
            self.0.insert(c);
        }
    }

    pub fn contains(&self, c: &Capability) -> bool {
        self.0.contains(c)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Capability> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `host` may be fetched: `net` allows any host, `net:HOST` that one.
    pub fn allows_net_host(&self, host: &str) -> bool {
        self.contains(&Capability::Net)
            || self.contains(&Capability::NetHost(host.to_ascii_lowercase()))
    }

    /// Whether any network capability is present.
    pub fn has_any_net(&self) -> bool {
        self.0.iter().any(|c| matches!(c, Capability::Net | Capability::NetHost(_)))
    }

    /// Whether `self` grants `c`, taking `net` ⊇ `net:HOST` into account.
    pub fn grants(&self, c: &Capability) -> bool {
        self.0.iter().any(|held| held.implies(c))
    }

    /// Whether any held capability satisfies `pred` (e.g. any `memory:shared/NAME`).
    pub fn any(&self, pred: impl Fn(&Capability) -> bool) -> bool {
        self.0.iter().any(pred)
    }

    /// The rights of a child that asked for `requested`: each requested
    /// capability must be held by `self` (the parent), otherwise the request is
    /// refused with the names of the missing rights. An empty request yields an
    /// empty set.
    pub fn delegate(&self, requested: &CapabilitySet) -> Result<CapabilitySet, MissingCapabilities> {
        let missing: Vec<Capability> =
            requested.iter().filter(|c| !self.grants(c)).cloned().collect();
        if missing.is_empty() {
            Ok(requested.clone())
        } else {
            Err(MissingCapabilities(missing))
        }
    }

    /// Whether the tool `tool` of MCP server `server` is granted (`mcp:NAME`
    /// or `mcp:NAME/TOOL`).
    pub fn allows_mcp_tool(&self, server: &str, tool: &str) -> bool {
        self.grants(&Capability::McpTool(server.to_string(), tool.to_string()))
    }

    /// Set intersection, respecting `net` ⊇ `net:HOST`.
    pub fn intersect(&self, other: &CapabilitySet) -> CapabilitySet {
        let mut out = CapabilitySet::empty();
        for c in self.iter() {
            if other.grants(c) {
                out.0.insert(c.clone());
            }
        }
        for c in other.iter() {
            if self.grants(c) {
                out.0.insert(c.clone());
            }
        }
        out
    }

    /// Whether every right in `self` is also granted by `other`.
    pub fn is_subset_of(&self, other: &CapabilitySet) -> bool {
        self.iter().all(|c| other.grants(c))
    }

    /// Stable, printable list of names.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|c| c.to_string()).collect()
    }
}

impl FromIterator<Capability> for CapabilitySet {
    fn from_iter<T: IntoIterator<Item = Capability>>(iter: T) -> Self {
        let mut s = CapabilitySet::empty();
        for c in iter {
            s.insert(c);
        }
        s
    }
}

impl fmt::Display for CapabilitySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(none)");
        }
        f.write_str(&self.names().join(", "))
    }
}

/// A child asked for rights its parent does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("denied: the parent does not hold {}", .0.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "))]
pub struct MissingCapabilities(pub Vec<Capability>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for s in [
            "fs:ro", "fs:rw", "net", "net:example.com", "exec", "exec:net", "memory",
            "memory:shared/team", "timers", "spawn", "ipc", "webhook", "driver:wordcount",
        ] {
            let c: Capability = s.parse().unwrap();
            assert_eq!(c.to_string(), s);
        }
        assert!("fs".parse::<Capability>().is_err());
        for (alias, right) in [("fs:write", "fs:rw"), ("fs:read", "fs:ro"), ("FS:RO", "fs:ro"), ("timer", "timers"), ("fs_read", "fs:ro"), ("network", "net")] {
            let e = CapabilitySet::parse([alias]).unwrap_err().to_string();
            assert!(e.contains(&format!("unknown capability `{alias}` (did you mean `{right}`?)")), "{e}");
            assert!(e.contains("fs:ro, fs:rw, net"), "{e}");
        }
        let e = CapabilitySet::parse(["FS_REED"]).unwrap_err().to_string();
        assert!(e.contains("did you mean `FS_READ`?"), "{e}");
        assert!(!CapabilitySet::parse(["zzz"]).unwrap_err().to_string().contains("did you mean"));
        assert!("net:".parse::<Capability>().is_err());
        assert!("driver:../x".parse::<Capability>().is_err());
    }

    #[test]
    fn syscall_names_are_mapped_by_the_caller_and_refused_without_it() {
        let grant = |name: &str| (name == "FS_WRITE").then(|| vec![Capability::FsWrite]);
        let w = CapabilitySet::parse_with(["FS_WRITE", "net"], &grant).unwrap();
        assert!(w.contains(&Capability::FsRead) && w.contains(&Capability::FsWrite) && w.contains(&Capability::Net));
        assert!(CapabilitySet::parse_with(["FS_READ"], &grant).is_err());
        assert!(CapabilitySet::parse(["FS_WRITE"]).is_err());
    }

    #[test]
    fn webhook_is_in_all_and_delegated_only_if_held() {
        assert!(CapabilitySet::parse(["all"]).unwrap().contains(&Capability::Webhook));
        let parent = CapabilitySet::parse(["ipc"]).unwrap();
        let err = parent.delegate(&CapabilitySet::parse(["webhook"]).unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "denied: the parent does not hold `webhook`");
        let parent = CapabilitySet::parse(["webhook", "ipc"]).unwrap();
        let child = parent.delegate(&CapabilitySet::parse(["ipc"]).unwrap()).unwrap();
        assert!(!child.contains(&Capability::Webhook));
    }

    #[test]
    fn mcp_grants_parse_narrow_and_are_not_in_all() {
        for s in ["mcp:everything", "mcp:everything/echo", "mcp:my-srv/get.thing"] {
            assert_eq!(s.parse::<Capability>().unwrap().to_string(), s);
        }
        for bad in ["mcp:", "mcp:/echo", "mcp:Everything", "mcp:a/", "mcp:a/b/c", "mcp:../x"] {
            assert!(bad.parse::<Capability>().is_err(), "{bad}");
        }
        let all = CapabilitySet::parse(["all"]).unwrap();
        assert!(!all.allows_mcp_tool("everything", "echo"));
        let server = CapabilitySet::parse(["mcp:everything"]).unwrap();
        assert!(server.allows_mcp_tool("everything", "echo") && !server.allows_mcp_tool("other", "echo"));
        let one = CapabilitySet::parse(["mcp:everything/echo"]).unwrap();
        assert!(one.allows_mcp_tool("everything", "echo") && !one.allows_mcp_tool("everything", "add"));
        // Delegation narrows: the server's grant yields one tool; one tool never yields the server or another tool.
        assert!(server.delegate(&one).is_ok());
        let err = one.delegate(&server).unwrap_err();
        assert_eq!(err.to_string(), "denied: the parent does not hold `mcp:everything`");
        assert!(one.delegate(&CapabilitySet::parse(["mcp:everything/add"]).unwrap()).is_err());
        assert!(all.delegate(&server).is_err());
    }

    #[test]
    fn empty_grant_means_nothing() {
        let parent = CapabilitySet::all_builtin();
        let child = parent.delegate(&CapabilitySet::empty()).unwrap();
        assert!(child.is_empty());
    }

    #[test]
    fn child_cannot_exceed_parent() {
        let parent = CapabilitySet::parse(["fs:ro", "net:a.example"]).unwrap();
        let err = parent.delegate(&CapabilitySet::parse(["fs:rw"]).unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "denied: the parent does not hold `fs:rw`");
        assert!(parent.delegate(&CapabilitySet::parse(["net"]).unwrap()).is_err());
        assert!(parent.delegate(&CapabilitySet::parse(["net:b.example"]).unwrap()).is_err());
        let ok = parent.delegate(&CapabilitySet::parse(["net:A.example"]).unwrap()).unwrap();
        assert!(ok.allows_net_host("a.example"));
        let any = CapabilitySet::parse(["net"]).unwrap();
        assert!(any.delegate(&CapabilitySet::parse(["net:b.example"]).unwrap()).is_ok());
    }
}
