//! The per-instance store state of a driver (`DriverState`): its WASI
//! context (workspace preopen, no env, no stdio but a captured stderr), its
//! resource limits, and the host-interface implementations (`log`, `config`,
//! `timers`, `container`; `embedder` and `vector-store` live in `memory.rs`)
//! that record effects for the kernel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::aos::kernel::{config, container, log, timers, types};
use crate::container::{no_backend, ContainerAgent, SharedBackend};
use crate::net::NetHooks;
use crate::bindings::WitSyscallError;
use aos_abi::Effect;

/// Bytes of guest stderr kept to explain a crash (panic message).
pub(crate) const STDERR_CAPTURE: usize = 16 * 1024;
/// Longest log line a driver may emit.
const MAX_LOG_LINE: usize = 4096;

/// The deadline of an instance's current call, shared with the watchdog in
/// `DriverRuntime::call`, which ends a call whose guest is suspended in a
/// host future past the deadline (the epoch only interrupts guest code).
/// Host calls that bound their own time (a container command, long-term
/// memory) are exempt while they run, and their time is added back.
#[derive(Debug)]
pub(crate) struct CallClock {
    state: Mutex<(Instant, usize)>,
}

impl Default for CallClock {
    fn default() -> Self {
        CallClock { state: Mutex::new((Instant::now(), 0)) }
    }
}

impl CallClock {
    pub fn start(&self, deadline: Instant) {
        *self.state.lock().unwrap() = (deadline, 0);
    }

    /// Marks a self-bounded host call until the guard is dropped.
    pub fn host_call(self: &Arc<Self>) -> HostCall {
        self.state.lock().unwrap().1 += 1;
        HostCall { clock: self.clone(), started: Instant::now() }
    }

    /// Resolves once the deadline plus `grace` has passed with no exempt
    /// host call running.
    pub async fn expired(&self, grace: Duration) {
        loop {
            let (deadline, exempt) = *self.state.lock().unwrap();
            let due = deadline + grace;
            if exempt > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            } else if Instant::now() >= due {
                return;
            } else {
                tokio::time::sleep_until(due.into()).await;
            }
        }
    }
}

/// A self-bounded host call in progress (see [`CallClock::host_call`]).
pub(crate) struct HostCall {
    clock: Arc<CallClock>,
    started: Instant,
}

impl Drop for HostCall {
    fn drop(&mut self) {
        let mut st = self.clock.state.lock().unwrap();
        st.0 += self.started.elapsed();
        st.1 -= 1;
    }
}

/// Memory and table caps of one instance. Remembers whether a limit was hit,
/// so a trap that follows can be reported as "limit exceeded".
pub(crate) struct Limits {
    pub max_memory: usize,
    pub max_table_elements: usize,
    pub hit: Option<String>,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit = Some(format!(
                "tried to grow its memory from {} to {} MiB, over its cap of {} MiB",
                current >> 20,
                desired.div_ceil(1 << 20),
                self.max_memory >> 20
            ));
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            self.hit = Some(format!("tried to grow a table to {desired} elements"));
            return Ok(false);
        }
        Ok(true)
    }
}

/// Everything a driver instance's host calls can reach.
pub(crate) struct DriverState {
    pub wasi: WasiCtx,
    /// uid/gid the workspace's file work runs with (`fs_guard.rs`; `None`:
    /// the kernel's own, see `workspace.rs`).
    pub fs_owner: Option<(u32, u32)>,
    pub table: ResourceTable,
    pub limits: Limits,
    pub driver: Arc<str>,
    pub pid: u64,
    pub config: Arc<serde_json::Map<String, serde_json::Value>>,
    /// State changes requested during the current call.
    pub effects: Vec<Effect>,
    pub timer_ids: Arc<AtomicU64>,
    pub stderr: MemoryOutputPipe,
    /// Set by the epoch callback when the call's deadline passed.
    pub timed_out: bool,
    /// When the current call must end. Time spent waiting in a host call
    /// (a container command) is added back: the deadline bounds the guest.
    pub deadline: std::time::Instant,
    /// The same deadline as the runtime's watchdog sees it (see [`CallClock`]).
    pub clock: Arc<CallClock>,
    /// The container engine for `exec` agents, and who they are.
    pub container: SharedBackend,
    pub container_agent: Option<ContainerAgent>,
    /// `wasi:http` state and policy for `net` agents.
    pub http: wasmtime_wasi_http::WasiHttpCtx,
    pub net: NetHooks,
    /// Long-term memory for `memory` agents, and the grants that decide
    /// which spaces this instance may touch (see `memory.rs`).
    pub memory: Option<aos_memory::MemoryService>,
    pub memory_caps: aos_abi::CapabilitySet,
}

impl WasiView for DriverState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for DriverState {}

impl wasmtime_wasi_http::WasiHttpView for DriverState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.net }
    }
}

impl container::Host for DriverState {
    async fn exec(&mut self, req: container::ExecRequest) -> Result<container::ExecOutput, WitSyscallError> {
        let Some(backend) = self.container.clone() else {
            return Err(no_backend().into());
        };
        let Some(agent) = self.container_agent.clone() else {
            return Err(WitSyscallError::Denied("capability `exec` not granted".into()));
        };
        let started = std::time::Instant::now();
        let _bounded = self.clock.host_call();
        let timeout = std::time::Duration::from_millis(u64::from(req.timeout_ms.max(1)));
        let out = backend.exec(&agent, &req.cmd, timeout).await;
        self.deadline += started.elapsed();
        let out = out.map_err(WitSyscallError::from)?;
        Ok(container::ExecOutput {
            exit_code: out.exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
            truncated: out.truncated,
            timed_out: out.timed_out,
        })
    }
}

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

impl timers::Host for DriverState {
    async fn sleep(&mut self, seconds: f64) -> Result<(), WitSyscallError> {
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err(WitSyscallError::InvalidArguments(format!(
                "sleep needs a positive number of seconds, got {seconds}"
            )));
        }
        self.effects.push(Effect::Sleep { seconds });
        Ok(())
    }

    async fn schedule(&mut self, seconds: f64, prompt: String) -> Result<u64, WitSyscallError> {
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err(WitSyscallError::InvalidArguments(format!(
                "schedule needs a positive number of seconds, got {seconds}"
            )));
        }
        let id = self.timer_ids.fetch_add(1, Ordering::Relaxed);
        self.effects.push(Effect::Schedule { id, seconds, prompt });
        Ok(id)
    }
}
