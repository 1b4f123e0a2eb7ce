//! Where syscalls come from, and how a name is resolved once per call.
//!
//! The kernel offers its own syscalls and asks every [`SyscallSource`]
//! (today the Wasm driver runtime, `aos-runtime`; later MCP servers) for the
//! rest. [`SyscallSource::resolve`] answers one question for a caller's
//! grants: a [`SyscallHandle`] that runs the call, or a typed [`Refusal`].
//! The system prompt's list, the dispatcher and the permission names of
//! `SPAWN_AGENT` all go through that one resolution, so what a process is
//! offered, what it may run and what it may delegate cannot disagree.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::caps::{Capability, CapabilitySet};
use crate::syscall::{CallOutcome, SyscallError, SyscallSpec};

/// Who is calling: the kernel passes this with every call.
#[derive(Debug, Clone)]
pub struct AgentContext {
    pub pid: u64,
    pub caps: CapabilitySet,
    /// Host directory preopened at `/workspace` when the agent holds `fs:*`.
    pub workspace: PathBuf,
}

/// What a caller lacks for a syscall: the weakest capability that would
/// grant it, and how a refusal names it (e.g. `net (or net:HOST)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub capability: Capability,
    /// The requirement as shown to the model.
    pub shown: String,
}

impl Missing {
    pub fn capability(c: Capability) -> Missing {
        Missing { shown: c.to_string(), capability: c }
    }
}

/// Why a syscall name cannot be called by this caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No source offers it. `available`: what the caller may use instead
    /// (`None` when the answer comes from one source alone).
    Unknown { name: String, available: Option<Vec<String>> },
    /// It exists, but the caller lacks a grant.
    Denied { name: String, missing: Missing },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unknown { name, available: None } => write!(f, "unknown syscall `{name}`"),
            Refusal::Unknown { name, available: Some(a) } => {
                write!(f, "unknown syscall `{name}`; available: {}", a.join(", "))
            }
            Refusal::Denied { name, missing } => {
                write!(f, "capability `{}` not granted (needed by {name})", missing.shown)
            }
        }
    }
}

impl From<Refusal> for SyscallError {
    fn from(r: Refusal) -> SyscallError {
        match r {
            Refusal::Unknown { .. } => SyscallError::NotFound(r.to_string()),
            Refusal::Denied { .. } => SyscallError::Denied(r.to_string()),
        }
    }
}

/// A resolved syscall: the caller was found to hold what it needs, and this
/// runs it. Resolution is per caller (its grants), so a handle is not reused
/// for another one.
#[async_trait]
pub trait SyscallHandle: Send + Sync {
    /// The syscall's one description (name, description, argument schema).
    fn spec(&self) -> &SyscallSpec;
    /// Who offers it (a driver's name, later an MCP server's), for logs.
    fn origin(&self) -> &str;
    /// Runs the call. `args` were validated against `spec().args_schema`.
    async fn call(&self, caller: &AgentContext, args: &serde_json::Value) -> Result<CallOutcome, SyscallError>;
}

/// A source of syscalls besides the kernel's own: the driver runtime (and
/// later MCP servers). The kernel depends on this trait only, so it can run
/// on any implementation (its tests use an in-process fake).
#[async_trait]
pub trait SyscallSource: Send + Sync {
    /// Every syscall offered, granted or not, in a stable order.
    fn offered(&self) -> Vec<SyscallSpec>;

    /// `None` when this source does not offer `name`; else the handle for a
    /// holder of `caps`, or why it is denied.
    fn resolve(&self, name: &str, caps: &CapabilitySet) -> Option<Result<Arc<dyn SyscallHandle>, Refusal>>;

    /// The capabilities that grant `name`, for a syscall name used as a
    /// permission (`FS_WRITE` → `fs:rw`); `None` when not offered here.
    fn grant_for(&self, name: &str) -> Option<Vec<Capability>>;

    /// The names of the installed drivers whose syscalls `driver:NAME`
    /// grants (a grant naming none of them is refused at spawn).
    fn driver_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// The process `pid` ended: drop what was kept for it (instances,
    /// sandboxes).
    fn release(&self, pid: u64);

    /// The kernel stops: release everything.
    async fn shutdown(&self);

    /// The highest pid that owns state kept across runs (private long-term
    /// memory), so new pids start above it.
    async fn max_owned_pid(&self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_before() {
        let r = Refusal::Denied { name: "FS_WRITE".into(), missing: Missing::capability(Capability::FsWrite) };
        assert_eq!(SyscallError::from(r).to_string(), "denied: capability `fs:rw` not granted (needed by FS_WRITE)");
        let r = Refusal::Unknown { name: "NOPE".into(), available: Some(vec!["SYS_EXIT".into()]) };
        assert_eq!(SyscallError::from(r).to_string(), "not found: unknown syscall `NOPE`; available: SYS_EXIT");
    }
}
