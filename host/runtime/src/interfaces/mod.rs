//! The host interfaces a driver may import, one module each — the one
//! definition of what a capability means to a component.
//!
//! Every [`HostInterface`] owns, in its module: the WIT names a component
//! imports to use it, which grants enable it for an agent, the weakest
//! capability a refusal names, how it is added to a linker, what it
//! prepares per instance (a preopen, an HTTP hook, a sandbox identity, a
//! memory scope) and the host side of its functions. The linker
//! ([`crate::linker`]), the runtime's grant check (`DriverRuntime::resolve`),
//! the prompt filter built on it, and the per-instance set-up all ask this
//! table; nothing else maps capabilities to imports.
//!
//! | interface | WIT imports                                 | enabled by                     | module       |
//! |-----------|---------------------------------------------|--------------------------------|--------------|
//! | (base)    | `wasi:io`, `wasi:clocks`, `wasi:random`, `wasi:cli`, `aos:kernel/{types,log,config}` | always | [`base`] |
//! | fs        | `wasi:filesystem/{types,preopens}`          | `fs:ro` (read-write: `fs:rw`)  | [`fs`]       |
//! | net       | `wasi:http/{types,outgoing-handler}`        | `net` or any `net:HOST`        | [`net`]      |
//! | timers    | `aos:kernel/timers`                         | `timers`                       | [`timers`]   |
//! | exec      | `aos:kernel/container`                      | `exec` (network: `exec:net`)   | [`exec`]     |
//! | memory    | `aos:kernel/{embedder,vector-store}`        | `memory` or any `memory:shared/NAME` | [`memory`] |
//!
//! Raw `wasi:sockets` and anything not listed are refused when a driver is
//! loaded.

pub(crate) mod base;
pub(crate) mod exec;
pub(crate) mod fs;
pub(crate) mod memory;
pub(crate) mod net;
pub(crate) mod timers;

use std::fmt;

use wasmtime::component::Linker;
use wasmtime_wasi::WasiCtxBuilder;

use aos_abi::{AgentContext, Capability, CapabilitySet, Missing, SyscallError};

use crate::state::{DriverState, HostStates, Shared};

/// One optional host interface.
pub(crate) trait HostInterface: Sync {
    /// WIT interfaces (without `@version`) a component imports to use it.
    fn wit_names(&self) -> &'static [&'static str];
    /// Whether an agent holding `caps` gets it.
    fn enabled_by(&self, caps: &CapabilitySet) -> bool;
    /// The weakest capability that enables it.
    fn weakest(&self) -> Capability;
    /// How a refusal names the requirement (default: the weakest capability).
    fn shown(&self) -> String {
        self.weakest().to_string()
    }
    /// Adds its functions to `linker`.
    fn add_to_linker(&self, linker: &mut Linker<DriverState>) -> wasmtime::Result<()>;
    /// Sets up a new instance for `cx.agent` (only called when enabled).
    fn prepare(&self, cx: &mut Prepare<'_>) -> Result<(), SyscallError>;
}

/// What an interface's [`HostInterface::prepare`] may touch.
pub(crate) struct Prepare<'a> {
    pub agent: &'a AgentContext,
    pub wasi: &'a mut WasiCtxBuilder,
    pub hosts: &'a mut HostStates,
    pub shared: &'a Shared,
}

impl Prepare<'_> {
    /// Works out once per instance who the workspace's files belong to
    /// (and gives a workspace the kernel made to the sandbox user first);
    /// for `fs` and `exec` (see `workspace.rs`).
    pub fn workspace_owner(&mut self) -> Option<(u32, u32)> {
        if let Some(owner) = self.hosts.fs_owner {
            return owner;
        }
        let sandbox_user = self.shared.container.as_ref().and_then(|c| c.default_user());
        let owner = crate::workspace::prepare(&self.shared.workspaces_root, &self.agent.workspace, sandbox_user);
        self.hosts.fs_owner = Some(owner);
        owner
    }
}

/// Every optional interface, in the order refusals check them.
pub(crate) const ALL: [&dyn HostInterface; 5] = [&fs::Fs, &net::Net, &timers::Timers, &exec::Exec, &memory::Memory];

/// A set of interfaces (a bit per entry of [`ALL`]): what a component
/// imports, or what an agent's grants enable (a link profile).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct InterfaceSet(u8);

impl InterfaceSet {
    /// Every interface (to describe a driver at load time, with no agent).
    pub fn everything() -> InterfaceSet {
        InterfaceSet((1 << ALL.len()) - 1)
    }

    /// What an agent holding `caps` gets.
    pub fn for_caps(caps: &CapabilitySet) -> InterfaceSet {
        let mut s = InterfaceSet::default();
        for (i, iface) in ALL.iter().enumerate() {
            if iface.enabled_by(caps) {
                s.0 |= 1 << i;
            }
        }
        s
    }

    pub fn insert(&mut self, i: usize) {
        self.0 |= 1 << i;
    }

    pub fn iter(self) -> impl Iterator<Item = &'static dyn HostInterface> {
        ALL.into_iter().enumerate().filter(move |(i, _)| self.0 & (1 << i) != 0).map(|(_, x)| x)
    }

    /// The first interface of `self` that `caps` does not enable.
    pub fn first_missing(self, caps: &CapabilitySet) -> Option<Missing> {
        self.iter()
            .find(|i| !i.enabled_by(caps))
            .map(|i| Missing { capability: i.weakest(), shown: i.shown() })
    }
}

/// What a component's import maps to.
#[derive(Debug)]
pub(crate) enum Import {
    /// Always linked.
    Base,
    /// The optional interface `ALL[i]`.
    Optional(usize),
}

/// Why an import cannot be provided.
#[derive(Debug)]
pub(crate) struct Refused(pub &'static str);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Maps an import name (`wasi:filesystem/types@0.2.12`) to its interface.
pub(crate) fn classify(import: &str) -> Result<Import, Refused> {
    let iface = import.split('@').next().unwrap_or(import);
    if base::provides(iface) {
        return Ok(Import::Base);
    }
    if let Some(i) = ALL.iter().position(|x| x.wit_names().contains(&iface)) {
        return Ok(Import::Optional(i));
    }
    if iface.starts_with("wasi:sockets/") {
        return Err(Refused(
            "raw sockets are never granted to drivers; make HTTP requests through wasi:http (capability `net`)",
        ));
    }
    Err(Refused("AgentOS provides no such interface (see wit/ for what drivers may import)"))
}

/// Builds the linker of an agent whose grants enable `profile`: the base
/// interfaces, then each enabled one. Interfaces outside the profile are
/// not linked at all, so a component importing them cannot be instantiated.
pub(crate) fn linker(engine: &wasmtime::Engine, profile: InterfaceSet) -> wasmtime::Result<Linker<DriverState>> {
    let mut l: Linker<DriverState> = Linker::new(engine);
    base::add_to_linker(&mut l)?;
    for iface in profile.iter() {
        iface.add_to_linker(&mut l)?;
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_enable_interfaces() {
        let caps = |g: &[&str]| CapabilitySet::parse(g).unwrap();
        let names =
            |c: &CapabilitySet| InterfaceSet::for_caps(c).iter().map(|i| i.weakest().to_string()).collect::<Vec<_>>();
        assert!(names(&caps(&[])).is_empty());
        assert_eq!(names(&caps(&["fs:rw"])), ["fs:ro"]);
        assert_eq!(names(&caps(&["net:example.com"])), ["net"]);
        assert_eq!(names(&caps(&["exec:net", "timers"])), ["timers", "exec"]);
        assert_eq!(names(&caps(&["memory:shared/team"])), ["memory"]);
        assert_eq!(names(&caps(&["all"])), ["fs:ro", "net", "timers", "exec", "memory"]);
        assert_eq!(InterfaceSet::everything(), InterfaceSet::for_caps(&caps(&["all"])));
        let m = InterfaceSet::everything().first_missing(&caps(&["fs:ro"])).unwrap();
        assert_eq!(m.shown, "net (or net:HOST)");
    }

    #[test]
    fn imports_are_classified() {
        assert!(matches!(classify("wasi:io/streams@0.2.12"), Ok(Import::Base)));
        assert!(matches!(classify("aos:kernel/log@0.1.0"), Ok(Import::Base)));
        assert!(matches!(classify("wasi:filesystem/preopens@0.2.12"), Ok(Import::Optional(0))));
        assert!(matches!(classify("aos:kernel/vector-store@0.1.0"), Ok(Import::Optional(4))));
        assert!(classify("wasi:sockets/tcp@0.2.12").unwrap_err().0.contains("raw sockets"));
        assert!(classify("acme:thing/x").is_err());
    }
}
