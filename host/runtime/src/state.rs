//! The per-instance store state of a driver (`DriverState`): its WASI
//! context (no env, no stdio but a captured stderr; the workspace preopen
//! when the `fs` interface is enabled), its resource limits and deadline,
//! the effects recorded for the kernel, and the state each enabled host
//! interface prepared (see [`crate::interfaces`], where their host
//! functions live). [`Shared`] is what every instance of a runtime shares.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use aos_egress::{NetHooks, NetPolicy};
use aos_sandbox::{ContainerAgent, SharedBackend};
use aos_abi::Effect;

/// Bytes of guest stderr kept to explain a crash (panic message).
pub(crate) const STDERR_CAPTURE: usize = 16 * 1024;

/// Runtime-wide state handed to every instance: the outgoing HTTP policy,
/// the container engine, long-term memory, timer ids and driver settings.
pub(crate) struct Shared {
    pub net_policy: Arc<NetPolicy>,
    pub container: SharedBackend,
    pub memory: Option<aos_memory::MemoryService>,
    pub timer_ids: Arc<AtomicU64>,
    pub driver_settings: HashMap<String, Arc<serde_json::Map<String, serde_json::Value>>>,
    pub no_settings: Arc<serde_json::Map<String, serde_json::Value>>,
    /// `$AOS_HOME/workspaces`: workspaces under it were made by the kernel
    /// (see `workspace.rs`).
    pub workspaces_root: PathBuf,
}

impl Shared {
    /// The `[drivers.NAME]` settings of `driver`.
    pub fn settings(&self, driver: &str) -> Arc<serde_json::Map<String, serde_json::Value>> {
        self.driver_settings.get(driver).unwrap_or(&self.no_settings).clone()
    }
}

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
        *self.state.lock() = (deadline, 0);
    }

    /// Marks a self-bounded host call until the guard is dropped.
    pub fn host_call(self: &Arc<Self>) -> HostCall {
        self.state.lock().1 += 1;
        HostCall { clock: self.clone(), started: Instant::now() }
    }

    /// Resolves once the deadline plus `grace` has passed with no exempt
    /// host call running.
    pub async fn expired(&self, grace: Duration) {
        loop {
            let (deadline, exempt) = *self.state.lock();
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
        let mut st = self.clock.state.lock();
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
    /// `wasi:http` state (its policy hook is in `hosts.net`).
    pub http: wasmtime_wasi_http::WasiHttpCtx,
    /// What the enabled host interfaces prepared.
    pub hosts: HostStates,
}

/// Per-instance state of the optional host interfaces, filled by their
/// `prepare` (see [`crate::interfaces`]); empty for interfaces not enabled.
pub(crate) struct HostStates {
    /// `fs` and `exec`: uid/gid the workspace's file work runs with
    /// (`fs_guard.rs`; `None`: the kernel's own, see `workspace.rs`), once
    /// worked out for this instance.
    pub fs_owner: Option<Option<(u32, u32)>>,
    /// `exec`: the container engine, and who the commands run for.
    pub container: SharedBackend,
    pub container_agent: Option<ContainerAgent>,
    /// `net`: the policy hook every outgoing request passes.
    pub net: NetHooks,
    /// `memory`: the service, and the grants that decide which spaces this
    /// instance may touch.
    pub memory: Option<aos_memory::MemoryService>,
    pub memory_caps: aos_abi::CapabilitySet,
}

impl HostStates {
    /// Nothing enabled yet; the net hook has the runtime's policy and no grants.
    pub fn new(shared: &Shared) -> HostStates {
        HostStates {
            fs_owner: None,
            container: None,
            container_agent: None,
            net: NetHooks { caps: Default::default(), policy: shared.net_policy.clone(), notes: Default::default() },
            memory: None,
            memory_caps: Default::default(),
        }
    }
}

impl WasiView for DriverState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl wasmtime_wasi_http::WasiHttpView for DriverState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hosts.net }
    }
}
