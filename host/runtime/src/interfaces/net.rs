//! `wasi:http` (capability `net`, or `net:HOST` for one host): only the
//! `types` and `outgoing-handler` interfaces, never raw sockets. Every
//! request of the instance passes the policy hook prepared here (the
//! agent's grants plus the kernel's `NetPolicy`, from `aos-egress`): GET only, granted hosts only, public addresses only
//! unless allow-listed, size and time caps.

use wasmtime::component::Linker;

use aos_abi::{Capability, CapabilitySet, SyscallError};

use super::{HostInterface, Prepare};
use crate::state::DriverState;

pub(crate) struct Net;

impl HostInterface for Net {
    fn wit_names(&self) -> &'static [&'static str] {
        &["wasi:http/outgoing-handler", "wasi:http/types"]
    }
    fn enabled_by(&self, caps: &CapabilitySet) -> bool {
        caps.any(|c| matches!(c, Capability::Net | Capability::NetHost(_)))
    }
    fn weakest(&self) -> Capability {
        Capability::Net
    }
    fn shown(&self) -> String {
        "net (or net:HOST)".into()
    }
    fn add_to_linker(&self, l: &mut Linker<DriverState>) -> wasmtime::Result<()> {
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(l)
    }
    fn prepare(&self, cx: &mut Prepare<'_>) -> Result<(), SyscallError> {
        cx.hosts.net.caps = cx.agent.caps.clone();
        Ok(())
    }
}
