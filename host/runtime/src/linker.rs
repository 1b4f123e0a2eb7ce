//! Capability-derived linkers: the structural half of RBAC.
//!
//! A [`LinkProfile`] says which host interfaces exist for an agent; it is
//! computed from the agent's [`CapabilitySet`] alone. Interfaces outside the
//! profile are not linked at all, so a component importing them cannot be
//! instantiated for that agent, whatever it asks for. The filesystem is doubly
//! gated: `wasi:filesystem` is only linked with an `fs:*` grant, and the only
//! preopen is the agent's workspace, read-only or read-write; its host is
//! wasmtime-wasi's behind `fs_guard.rs`.
//! `wasi:http` is linked only with `net`/`net:HOST` (its requests then pass
//! the policy in `net.rs`), `aos:kernel/container` only with `exec`, `aos:kernel/embedder` and
//! `aos:kernel/vector-store` only with `memory` or `memory:shared/NAME`. Raw
//! sockets are never linked.

use wasmtime::component::{HasData, HasSelf, Linker, ResourceTable};
use wasmtime::Engine;
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::p2::bindings as wasi;
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::WasiView;

use aos_abi::{Capability, CapabilitySet};

use crate::bindings::aos::kernel as aos;
use crate::fs_guard::{self, GuardedFs};
use crate::state::DriverState;

/// Which optional host interfaces are linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct LinkProfile {
    pub fs: bool,
    pub timers: bool,
    pub net: bool,
    pub exec: bool,
    pub memory: bool,
}

impl LinkProfile {
    /// What an agent holding `caps` gets.
    pub fn for_caps(caps: &CapabilitySet) -> Self {
        LinkProfile {
            fs: caps.contains(&Capability::FsRead),
            timers: caps.contains(&Capability::Timers),
            net: caps.has_any_net(),
            exec: caps.contains(&Capability::Exec),
            memory: caps.contains(&Capability::Memory)
                || caps.iter().any(|c| matches!(c, Capability::MemoryShared(_))),
        }
    }

    /// Everything this build can link (used to describe drivers at load time,
    /// with no preopens and no agent behind the calls).
    pub fn everything() -> Self {
        LinkProfile { fs: true, timers: true, net: true, exec: true, memory: true }
    }
}

struct HasIo;
impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

fn io_table(s: &mut DriverState) -> &mut ResourceTable {
    s.ctx().table
}

/// Builds the linker for `profile`.
pub(crate) fn build(engine: &Engine, profile: LinkProfile) -> wasmtime::Result<Linker<DriverState>> {
    let mut l: Linker<DriverState> = Linker::new(engine);
    type S = DriverState;

    // Baseline every component gets: streams, clocks, randomness, and a CLI
    // world with an empty environment, no stdin and a captured stderr.
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<S, HasIo>(&mut l, io_table)?;
    wasmtime_wasi_io::bindings::wasi::io::poll::add_to_linker::<S, HasIo>(&mut l, io_table)?;
    wasmtime_wasi_io::bindings::wasi::io::streams::add_to_linker::<S, HasIo>(&mut l, io_table)?;
    wasi::clocks::wall_clock::add_to_linker::<S, WasiClocks>(&mut l, <S as WasiClocksView>::clocks)?;
    wasi::clocks::monotonic_clock::add_to_linker::<S, WasiClocks>(&mut l, <S as WasiClocksView>::clocks)?;
    wasi::random::random::add_to_linker::<S, WasiRandom>(&mut l, |t| t.wasi.random())?;
    wasi::random::insecure::add_to_linker::<S, WasiRandom>(&mut l, |t| t.wasi.random())?;
    wasi::random::insecure_seed::add_to_linker::<S, WasiRandom>(&mut l, |t| t.wasi.random())?;
    wasi::cli::exit::add_to_linker::<S, WasiCli>(&mut l, <S as WasiCliView>::cli)?;
    wasi::cli::environment::add_to_linker::<S, WasiCli>(&mut l, <S as WasiCliView>::cli)?;
    wasi::cli::stdin::add_to_linker::<S, WasiCli>(&mut l, <S as WasiCliView>::cli)?;
    wasi::cli::stdout::add_to_linker::<S, WasiCli>(&mut l, <S as WasiCliView>::cli)?;
    wasi::cli::stderr::add_to_linker::<S, WasiCli>(&mut l, <S as WasiCliView>::cli)?;
    wasi::cli::terminal_input::add_to_linker::<S, WasiCli>(&mut l, <S as WasiCliView>::cli)?;
    wasi::cli::terminal_output::add_to_linker::<S, WasiCli>(&mut l, <S as WasiCliView>::cli)?;
    wasi::cli::terminal_stdin::add_to_linker::<S, WasiCli>(&mut l, <S as WasiCliView>::cli)?;
    wasi::cli::terminal_stdout::add_to_linker::<S, WasiCli>(&mut l, <S as WasiCliView>::cli)?;
    wasi::cli::terminal_stderr::add_to_linker::<S, WasiCli>(&mut l, <S as WasiCliView>::cli)?;
    aos::types::add_to_linker::<S, HasSelf<S>>(&mut l, |s| s)?;
    aos::log::add_to_linker::<S, HasSelf<S>>(&mut l, |s| s)?;
    aos::config::add_to_linker::<S, HasSelf<S>>(&mut l, |s| s)?;

    if profile.fs {
        // wasmtime-wasi's filesystem behind `fs_guard` (non-blocking opens,
        // special files refused, long work off the calling thread, the
        // workspace owner's ids).
        wasi::filesystem::types::add_to_linker::<S, GuardedFs>(&mut l, fs_guard::view)?;
        wasi::filesystem::preopens::add_to_linker::<S, GuardedFs>(&mut l, fs_guard::view)?;
    }
    if profile.timers {
        aos::timers::add_to_linker::<S, HasSelf<S>>(&mut l, |s| s)?;
    }
    if profile.exec {
        aos::container::add_to_linker::<S, HasSelf<S>>(&mut l, |s| s)?;
    }
    if profile.memory {
        aos::embedder::add_to_linker::<S, HasSelf<S>>(&mut l, |s| s)?;
        aos::vector_store::add_to_linker::<S, HasSelf<S>>(&mut l, |s| s)?;
    }
    if profile.net {
        // Only `wasi:http` (types + outgoing-handler); every request passes
        // the agent's policy in `net.rs`.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut l)?;
    }
    Ok(l)
}
