//! `wasi:filesystem` (capability `fs:ro`; `fs:rw` for writes): the agent's
//! workspace preopened at `/workspace`, read-only unless the agent holds
//! `fs:rw`, and nothing else. WASI path resolution refuses `..`, absolute
//! paths and symlinks leading out of the preopen; a read-only preopen
//! refuses writes whatever the driver declares. The host is wasmtime-wasi's
//! behind `fs_guard.rs` (non-blocking opens, FIFOs, sockets and devices
//! refused, long work off the calling thread, the workspace owner's ids:
//! `workspace.rs`).

use wasmtime::component::Linker;
use wasmtime_wasi::p2::bindings as wasi;
use wasmtime_wasi::FsPerms;

use aos_abi::{Capability, CapabilitySet, SyscallError};

use super::{HostInterface, Prepare};
use crate::fs_guard::{self, GuardedFs};
use crate::state::DriverState;

/// Where the workspace appears inside the component.
pub(crate) const GUEST_DIR: &str = "/workspace";

pub(crate) struct Fs;

impl HostInterface for Fs {
    fn wit_names(&self) -> &'static [&'static str] {
        &["wasi:filesystem/types", "wasi:filesystem/preopens"]
    }
    fn enabled_by(&self, caps: &CapabilitySet) -> bool {
        caps.grants(&Capability::FsRead)
    }
    fn weakest(&self) -> Capability {
        Capability::FsRead
    }
    fn add_to_linker(&self, l: &mut Linker<DriverState>) -> wasmtime::Result<()> {
        type S = DriverState;
        // wasmtime-wasi's filesystem behind `fs_guard` (non-blocking opens,
        // special files refused, long work off the calling thread, the
        // workspace owner's ids).
        wasi::filesystem::types::add_to_linker::<S, GuardedFs>(l, fs_guard::view)?;
        wasi::filesystem::preopens::add_to_linker::<S, GuardedFs>(l, fs_guard::view)?;
        Ok(())
    }
    fn prepare(&self, cx: &mut Prepare<'_>) -> Result<(), SyscallError> {
        cx.workspace_owner();
        let agent = cx.agent;
        let perms = if agent.caps.grants(&Capability::FsWrite) { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
        if !agent.workspace.is_dir() {
            return Err(SyscallError::Io(format!("the workspace {} does not exist", agent.workspace.display())));
        }
        cx.wasi.preopened_dir(&agent.workspace, GUEST_DIR, perms).map_err(|e| {
            SyscallError::Io(format!("cannot open the workspace {}: {e:#}", agent.workspace.display()))
        })?;
        Ok(())
    }
}
