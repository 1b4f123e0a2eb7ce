//! Syscall resolution: the one place a name becomes something a process may
//! run. [`Syscalls::resolve`] looks a name up among the kernel's own
//! syscalls, then in every [`SyscallSource`] (the Wasm driver runtime;
//! later MCP servers), and answers with a [`Resolved`] handle or one typed
//! [`Refusal`] (unknown, with what is available; denied, with the missing
//! capability). The system prompt's list ([`Syscalls::available`]), the
//! dispatcher, and syscall names used as permissions
//! ([`Syscalls::parse_grants`]: `FS_WRITE` → `fs:rw`) all use it, so what a
//! process is offered, what it may run and what it may delegate agree.

use std::sync::Arc;

use aos_abi::{
    Capability, CapabilitySet, Missing, Refusal, SyscallHandle, SyscallSource, SyscallSpec, UnknownCapability,
};

use crate::error::KernelError;
use crate::syscalls::KernelSyscall;

/// A syscall resolved for one process's grants.
#[derive(Clone)]
pub(crate) enum Resolved {
    /// Implemented by the kernel itself.
    Kernel(KernelSyscall),
    /// Offered by a source (a driver's syscall); the handle runs it.
    Source(Arc<dyn SyscallHandle>),
}

impl Resolved {
    /// The syscall's one description.
    pub fn spec(&self) -> &SyscallSpec {
        match self {
            Resolved::Kernel(k) => k.spec(),
            Resolved::Source(h) => h.spec(),
        }
    }
}

/// The kernel's syscalls and every other source, in lookup order.
pub(crate) struct Syscalls {
    sources: Vec<Arc<dyn SyscallSource>>,
}

impl Syscalls {
    pub fn new(sources: Vec<Arc<dyn SyscallSource>>) -> Syscalls {
        Syscalls { sources }
    }

    pub fn sources(&self) -> &[Arc<dyn SyscallSource>] {
        &self.sources
    }

    /// Resolves `name` for a holder of `caps`.
    pub fn resolve(&self, name: &str, caps: &CapabilitySet) -> Result<Resolved, Refusal> {
        if let Some(k) = KernelSyscall::from_name(name) {
            return match k.capability() {
                Some(c) if !k.granted_to(caps) => {
                    Err(Refusal::Denied { name: name.to_string(), missing: Missing::capability(c) })
                }
                _ => Ok(Resolved::Kernel(k)),
            };
        }
        for source in &self.sources {
            if let Some(r) = source.resolve(name, caps) {
                return r.map(Resolved::Source);
            }
        }
        let available = self.available(caps).into_iter().map(|s| s.name).collect();
        Err(Refusal::Unknown { name: name.to_string(), available: Some(available) })
    }

    /// Every syscall a holder of `caps` may use: those [`Syscalls::resolve`]
    /// grants, kernel syscalls first.
    pub fn available(&self, caps: &CapabilitySet) -> Vec<SyscallSpec> {
        let mut v = crate::syscalls::kernel_specs_for(caps);
        for source in &self.sources {
            v.extend(source.offered().into_iter().filter(|s| matches!(source.resolve(&s.name, caps), Some(Ok(_)))));
        }
        v
    }

    /// The capabilities that grant the syscall `name`, when it is used as a
    /// permission (prompts written for the original AgentOS grant
    /// `permissions: ["FS_READ"]`). A syscall every process has
    /// (`SYS_WRITE_STDOUT`, `SYS_EXIT`, ...) grants nothing more.
    pub fn grant_for(&self, name: &str) -> Option<Vec<Capability>> {
        if let Some(k) = KernelSyscall::from_name(name) {
            return Some(k.capability().into_iter().collect());
        }
        self.sources.iter().find_map(|s| s.grant_for(name))
    }

    /// Parses grants: capability names, `all`, and syscall names used as
    /// permissions.
    pub fn parse_grants<S: AsRef<str>>(&self, grants: &[S]) -> Result<CapabilitySet, UnknownCapability> {
        CapabilitySet::parse_with(grants, &|name| self.grant_for(name))
    }

    /// Every `driver:NAME` in `caps` names an installed driver (a grant of
    /// a driver that does not exist is a mistake, not an empty right).
    pub fn check_drivers(&self, caps: &CapabilitySet) -> Result<(), KernelError> {
        let wanted: Vec<&str> = caps
            .iter()
            .filter_map(|c| match c {
                Capability::Driver(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let installed: Vec<String> = self.sources.iter().flat_map(|s| s.driver_names()).collect();
        for name in wanted {
            // A built-in driver's calls are granted by its own capabilities
            // (its name is reserved: no installed driver can take it).
            if let Some(caps) = builtin_driver_caps(name) {
                return Err(KernelError::Invalid(format!(
                    "`{name}` is a built-in driver: `driver:{name}` grants nothing; grant {caps} instead \
                     (`driver:NAME` is for installed third-party drivers)"
                )));
            }
            if !installed.iter().any(|d| d == name) {
                let hint = aos_abi::suggest::did_you_mean(name, installed.iter().map(String::as_str))
                    .map(|s| format!(" (did you mean `driver:{s}`?)"))
                    .unwrap_or_default();
                return Err(KernelError::Invalid(format!(
                    "no driver `{name}` is installed, so `driver:{name}` would grant nothing{hint}; \
                     `aos driver ls` lists the drivers, `aos driver install FILE` adds one"
                )));
            }
        }
        Ok(())
    }
}

/// The capabilities that grant a built-in driver's calls, by driver name.
fn builtin_driver_caps(name: &str) -> Option<&'static str> {
    Some(match name {
        "fs" => "`fs:ro` or `fs:rw`",
        "timers" => "`timers`",
        "exec" => "`exec` or `exec:net`",
        "net" => "`net` or `net:HOST`",
        "memory" => "`memory` or `memory:shared/NAME`",
        _ => return None,
    })
}
