//! What every component gets, whatever its agent holds: WASI streams,
//! clocks and randomness; a CLI world with an empty environment, no stdin
//! and a captured stderr (for panic messages); and the `aos:kernel` `types`,
//! `log` and `config` interfaces (the driver's own `[drivers.NAME]` settings).

use wasmtime::component::{HasData, HasSelf, Linker, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::p2::bindings as wasi;
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::WasiView;

use crate::bindings::aos::kernel::{config, log, types};
use crate::state::DriverState;

/// Longest log line a driver may emit.
const MAX_LOG_LINE: usize = 4096;

/// Whether `iface` (a WIT interface name without version) is always provided.
pub(crate) fn provides(iface: &str) -> bool {
    matches!(iface, "aos:kernel/log" | "aos:kernel/config" | "aos:kernel/types")
        || ["wasi:io/", "wasi:clocks/", "wasi:random/", "wasi:cli/"].iter().any(|p| iface.starts_with(p))
}

struct HasIo;
impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

fn io_table(s: &mut DriverState) -> &mut ResourceTable {
    s.ctx().table
}

pub(crate) fn add_to_linker(l: &mut Linker<DriverState>) -> wasmtime::Result<()> {
    type S = DriverState;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<S, HasIo>(l, io_table)?;
    wasmtime_wasi_io::bindings::wasi::io::poll::add_to_linker::<S, HasIo>(l, io_table)?;
    wasmtime_wasi_io::bindings::wasi::io::streams::add_to_linker::<S, HasIo>(l, io_table)?;
    wasi::clocks::wall_clock::add_to_linker::<S, WasiClocks>(l, <S as WasiClocksView>::clocks)?;
    wasi::clocks::monotonic_clock::add_to_linker::<S, WasiClocks>(l, <S as WasiClocksView>::clocks)?;
    wasi::random::random::add_to_linker::<S, WasiRandom>(l, |t| t.wasi.random())?;
    wasi::random::insecure::add_to_linker::<S, WasiRandom>(l, |t| t.wasi.random())?;
    wasi::random::insecure_seed::add_to_linker::<S, WasiRandom>(l, |t| t.wasi.random())?;
    wasi::cli::exit::add_to_linker::<S, WasiCli>(l, <S as WasiCliView>::cli)?;
    wasi::cli::environment::add_to_linker::<S, WasiCli>(l, <S as WasiCliView>::cli)?;
    wasi::cli::stdin::add_to_linker::<S, WasiCli>(l, <S as WasiCliView>::cli)?;
    wasi::cli::stdout::add_to_linker::<S, WasiCli>(l, <S as WasiCliView>::cli)?;
    wasi::cli::stderr::add_to_linker::<S, WasiCli>(l, <S as WasiCliView>::cli)?;
    wasi::cli::terminal_input::add_to_linker::<S, WasiCli>(l, <S as WasiCliView>::cli)?;
    wasi::cli::terminal_output::add_to_linker::<S, WasiCli>(l, <S as WasiCliView>::cli)?;
    wasi::cli::terminal_stdin::add_to_linker::<S, WasiCli>(l, <S as WasiCliView>::cli)?;
    wasi::cli::terminal_stdout::add_to_linker::<S, WasiCli>(l, <S as WasiCliView>::cli)?;
    wasi::cli::terminal_stderr::add_to_linker::<S, WasiCli>(l, <S as WasiCliView>::cli)?;
    types::add_to_linker::<S, HasSelf<S>>(l, |s| s)?;
    log::add_to_linker::<S, HasSelf<S>>(l, |s| s)?;
    config::add_to_linker::<S, HasSelf<S>>(l, |s| s)?;
    Ok(())
}

impl types::Host for DriverState {}

impl log::Host for DriverState {
    async fn log(&mut self, level: log::Level, mut message: String) {
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" …[truncated]");
        }
        let (driver, pid) = (&*self.driver, self.pid);
        match level {
            log::Level::Trace => tracing::trace!(target: "aos::driver", driver, pid, "{message}"),
            log::Level::Debug => tracing::debug!(target: "aos::driver", driver, pid, "{message}"),
            log::Level::Info => tracing::info!(target: "aos::driver", driver, pid, "{message}"),
            log::Level::Warn => tracing::warn!(target: "aos::driver", driver, pid, "{message}"),
            log::Level::Error => tracing::error!(target: "aos::driver", driver, pid, "{message}"),
        }
    }
}

impl config::Host for DriverState {
    async fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).map(|v| v.to_string())
    }
}
