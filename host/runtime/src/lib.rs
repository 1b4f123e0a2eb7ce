//! The AgentOS driver runtime: loads driver components (built-in and
//! installed), resolves a syscall name for a caller's grants, and runs one
//! call at a time inside a wasmtime store whose imports and preopens are
//! derived from the calling agent's capabilities. It is the kernel's
//! [`SyscallSource`] for driver syscalls.
//!
//! ```ignore
//! let rt = DriverRuntime::open(RuntimeConfig::new(home)).await?;
//! let specs = rt.syscalls_for(&caps);                        // what this agent may call
//! let h = rt.resolve("FS_READ", &caps)?;                     // or a typed refusal
//! let out = h.call(&AgentContext { pid, caps, workspace }, &json!({"path": "a.txt"})).await;
//! rt.release_agent(pid);                                     // drop pooled instances
//! ```
//!
//! Module map: `engine` (engine, epoch ticker, compiled-component cache),
//! `driver` (loaded drivers: the interfaces their imports use, their
//! syscalls and what each requires), `interfaces` (one module per host
//! interface: WIT names, enabling grants, linking, per-instance set-up, host
//! functions; the linker is built from them), `state` (per-instance store
//! state, limits, the call clock the watchdog reads, what instances share),
//! `fs_guard` (the `wasi:filesystem` host: no blocking opens, no special
//! files, the workspace owner's ids), `workspace` (who owns a workspace),
//! `bindings` (WIT bindings). The
//! heavy machinery behind two interfaces lives in its own crate: the
//! outgoing HTTP policy behind `net` in `aos-egress`, the container engine
//! behind `exec` in `aos-sandbox`; long-term memory behind `memory` is
//! `aos-memory`.

mod bindings;
pub mod driver;
mod engine;
mod fs_guard;
mod interfaces;
mod state;
mod workspace;

pub use aos_abi::{
    AgentContext, CallOutcome, Capability, CapabilitySet, Effect, Missing, Refusal, SyscallError, SyscallHandle,
    SyscallSource, SyscallSpec,
};
pub use driver::{DriverLoadError, DriverSource};
pub use engine::CacheOutcome;
// The types of `RuntimeConfig`'s fields, from the crates that own them.
pub use aos_egress::{NetConfig, NetConfigError, Resolve, ResolverHook};
pub use aos_sandbox::{ContainerAgent, ContainerBackend, ExecOutput};
pub use aos_memory;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::WasiCtxBuilder;

use bindings::{Full, FullPre};
use driver::{check_spec, LoadedDriver, LoadedSyscall};
use interfaces::{InterfaceSet, Prepare};
use state::{DriverState, HostStates, Limits, Shared, STDERR_CAPTURE};

/// Directory holding every driver component built with the host (built-in
/// and examples), e.g. `aos_driver_wordcount.wasm`.
pub const BUILT_DRIVERS_DIR: &str = env!("AOS_BUILT_DRIVERS_DIR");

/// Drivers compiled into the kernel.
const BUILTIN_DRIVERS: &[(&str, &[u8])] = &[
    ("fs", include_bytes!(concat!(env!("AOS_BUILT_DRIVERS_DIR"), "/aos_driver_fs.wasm"))),
    ("timers", include_bytes!(concat!(env!("AOS_BUILT_DRIVERS_DIR"), "/aos_driver_timers.wasm"))),
    ("exec", include_bytes!(concat!(env!("AOS_BUILT_DRIVERS_DIR"), "/aos_driver_exec.wasm"))),
    ("net", include_bytes!(concat!(env!("AOS_BUILT_DRIVERS_DIR"), "/aos_driver_net.wasm"))),
    ("memory", include_bytes!(concat!(env!("AOS_BUILT_DRIVERS_DIR"), "/aos_driver_memory.wasm"))),
];

/// How long past its deadline a call suspended in a host future may run
/// before the watchdog ends it (guest code is interrupted by the epoch at
/// the deadline itself).
const WATCHDOG_GRACE: Duration = Duration::from_millis(250);

/// Names third-party drivers may not take.
const RESERVED_NAMES: &[&str] = &["fs", "timers", "net", "exec", "memory", "kernel", "all"];

/// Runtime settings.
#[derive(Clone)]
pub struct RuntimeConfig {
    /// `$AOS_HOME`: the compiled-driver cache lives in `cache/`, installed drivers in `drivers/`.
    pub home: PathBuf,
    /// Deadline of one driver call (default 5 s).
    pub call_timeout: Duration,
    /// Linear-memory cap of one driver instance (default 64 MiB).
    pub memory_limit: usize,
    /// Largest JSON result a driver may return (default 8 MiB).
    pub max_result_bytes: usize,
    /// Keep one instance per (agent, driver) between calls (default true);
    /// when false every call gets a fresh instance.
    pub reuse_instances: bool,
    /// Per-driver configuration (`[drivers.NAME]` in aos.toml), e.g. `fs.read_limit`.
    pub driver_config: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// Per-driver deadlines overriding `call_timeout` (default: `net` 60 s, as a
    /// fetch may wait on connect and read timeouts and redirects).
    pub driver_timeouts: BTreeMap<String, Duration>,
    /// Extra time a call may spend waiting in host calls that enforce their own
    /// limits (container commands); a backstop, default 15 min.
    pub host_call_allowance: Duration,
    /// Outgoing HTTP policy for `net` agents.
    pub net: NetConfig,
    /// Container engine for `exec` agents (none: EXEC_CMD explains how to set one up).
    pub container: Option<Arc<dyn ContainerBackend>>,
    /// Where compiled drivers are cached (default `$AOS_HOME/cache/drivers`).
    pub cache_dir: Option<PathBuf>,
    /// Long-term memory for `memory` agents (none: MEM_* explain how to set it up).
    pub memory: Option<aos_memory::MemoryService>,
}

impl std::fmt::Debug for RuntimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeConfig")
            .field("home", &self.home)
            .field("call_timeout", &self.call_timeout)
            .field("memory_limit", &self.memory_limit)
            .field("reuse_instances", &self.reuse_instances)
            .field("net", &self.net)
            .field("container", &self.container.is_some())
            .field("memory", &self.memory)
            .finish_non_exhaustive()
    }
}

impl RuntimeConfig {
    pub fn new(home: impl Into<PathBuf>) -> Self {
        RuntimeConfig {
            home: home.into(),
            call_timeout: Duration::from_secs(5),
            memory_limit: 64 << 20,
            max_result_bytes: 8 << 20,
            reuse_instances: true,
            driver_config: BTreeMap::new(),
            driver_timeouts: [("net".to_string(), Duration::from_secs(60))].into_iter().collect(),
            host_call_allowance: Duration::from_secs(15 * 60),
            net: NetConfig::default(),
            container: None,
            cache_dir: None,
            memory: None,
        }
    }

    /// The deadline of one call of `driver`.
    pub fn timeout_for(&self, driver: &str) -> Duration {
        self.driver_timeouts.get(driver).copied().unwrap_or(self.call_timeout)
    }

    fn cache_dir(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(|| self.home.join("cache").join("drivers"))
    }

    /// Where installed third-party drivers live.
    pub fn installed_dir(&self) -> PathBuf {
        self.home.join("drivers")
    }
}

/// A driver syscall and what it takes to call it.
#[derive(Debug, Clone)]
pub struct SyscallInfo {
    /// Name of the driver that offers it.
    pub driver: String,
    pub spec: SyscallSpec,
    /// Capabilities the agent needs.
    pub requires: Vec<Capability>,
}

/// What `aos driver ls` / `inspect` show about a driver.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DriverInfo {
    pub name: String,
    /// `built-in` or the installed file.
    pub source: String,
    pub sha256: String,
    /// Capabilities its imports require.
    pub requires: Vec<String>,
    pub syscalls: Vec<SyscallSummary>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SyscallSummary {
    pub name: String,
    pub description: String,
    pub args_schema: serde_json::Value,
    /// Every capability needed to call it.
    pub requires: Vec<String>,
}

/// Errors opening the runtime or managing drivers (not syscall errors).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Load(#[from] DriverLoadError),
    #[error("cannot read driver file {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid driver name `{0}`: use 1-32 characters of a-z, 0-9, - and _")]
    BadName(String),
    #[error("`{0}` is the name of a built-in driver; choose another with --name")]
    ReservedName(String),
    #[error("a driver named `{0}` is already installed; remove it first with `aos driver remove {0}`")]
    AlreadyInstalled(String),
    #[error("no installed driver named `{0}` (see `aos driver ls`)")]
    NotInstalled(String),
    #[error("driver `{driver}` offers `{syscall}`, which driver `{other}` already offers; syscall names must be unique")]
    Clash { driver: String, syscall: String, other: String },
    #[error("driver `{driver}` offers `{syscall}`, but syscall names starting with MCP_ are reserved for the tools of MCP servers")]
    ReservedSyscall { driver: String, syscall: String },
    #[error("wasmtime: {0}")]
    Engine(String),
    #[error(transparent)]
    Net(#[from] NetConfigError),
}

fn engine_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Engine(e.to_string())
}

/// One live instance kept for an agent between its calls. It was built for
/// exactly these capabilities and this workspace; a caller presenting others
/// under the same pid gets a new instance.
struct Pooled {
    store: Store<DriverState>,
    bindings: Full,
    caps: CapabilitySet,
    workspace: PathBuf,
}

/// Why a new instance could not be made (typed by the stage that failed,
/// not by the text of wasmtime's message).
enum InstantiateError {
    /// An interface's per-instance set-up refused (e.g. the workspace is gone).
    Prepare(SyscallError),
    /// The linker of the agent's grants lacks an import of the component.
    Link(wasmtime::Error),
    /// The component's start failed.
    Start(wasmtime::Error),
}

impl InstantiateError {
    fn into_syscall_error(self, driver: &str) -> SyscallError {
        match self {
            InstantiateError::Prepare(e) => e,
            InstantiateError::Link(e) => SyscallError::Denied(format!(
                "driver `{driver}` imports an interface this agent was not granted: {e:#}"
            )),
            InstantiateError::Start(e) => SyscallError::Internal(format!("cannot start driver `{driver}`: {e:#}")),
        }
    }

    fn describe(&self) -> String {
        match self {
            InstantiateError::Prepare(e) => e.to_string(),
            InstantiateError::Link(e) | InstantiateError::Start(e) => format!("{e:#}"),
        }
    }
}

type Pre = FullPre<DriverState>;

/// Loads drivers and runs syscalls. Share it as `Arc<DriverRuntime>`.
pub struct DriverRuntime {
    config: RuntimeConfig,
    engine: Engine,
    drivers: RwLock<Vec<Arc<LoadedDriver>>>,
    /// Pre-instantiated components per (driver, interfaces linked).
    pres: Mutex<HashMap<(Arc<str>, InterfaceSet), Pre>>,
    pool: Mutex<HashMap<(u64, Arc<str>), Pooled>>,
    /// What every instance shares (policy, engines, settings).
    shared: Shared,
    /// How each driver was obtained at open (cache hit or compiled).
    load_report: Vec<(String, CacheOutcome)>,
    /// This runtime, for the handles it gives out.
    me: Weak<DriverRuntime>,
}

impl DriverRuntime {
    /// Opens the runtime: loads built-in and installed drivers, compiling each
    /// only if the on-disk cache has no artifact for this engine.
    pub async fn open(config: RuntimeConfig) -> Result<Arc<DriverRuntime>, RuntimeError> {
        let engine = engine::new_engine().map_err(engine_err)?;
        let shared = Shared {
            net_policy: Arc::new(aos_egress::NetPolicy::new(config.net.clone())?),
            container: config.container.clone(),
            memory: config.memory.clone(),
            timer_ids: Arc::new(AtomicU64::new(1)),
            driver_settings: config.driver_config.iter().map(|(k, v)| (k.clone(), Arc::new(v.clone()))).collect(),
            no_settings: Arc::default(),
            workspaces_root: config.home.join("workspaces"),
        };
        let mut rt = DriverRuntime {
            shared,
            config,
            engine,
            drivers: RwLock::new(Vec::new()),
            pres: Mutex::new(HashMap::new()),
            pool: Mutex::new(HashMap::new()),
            load_report: Vec::new(),
            me: Weak::new(),
        };
        for (name, bytes) in BUILTIN_DRIVERS {
            let (d, outcome) = rt.load(name, bytes, DriverSource::BuiltIn).await?;
            rt.add_driver(d)?;
            rt.load_report.push((name.to_string(), outcome));
        }
        let dir = rt.config.installed_dir();
        if dir.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|source| RuntimeError::Io { path: dir.clone(), source })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect();
            files.sort();
            for path in files {
                let name = path.file_stem().unwrap_or_default().to_string_lossy().to_string();
                let bytes = std::fs::read(&path)
                    .map_err(|source| RuntimeError::ReadFile { path: path.clone(), source })?;
                let (d, outcome) = rt.load(&name, &bytes, DriverSource::Installed(path.clone())).await?;
                rt.add_driver(d)?;
                rt.load_report.push((name, outcome));
            }
        }
        Ok(Arc::new_cyclic(|me| DriverRuntime { me: me.clone(), ..rt }))
    }

    /// How each driver was obtained when the runtime opened.
    pub fn load_report(&self) -> &[(String, CacheOutcome)] {
        &self.load_report
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    fn add_driver(&self, d: LoadedDriver) -> Result<(), RuntimeError> {
        let mut drivers = self.drivers.write();
        check_clash(&drivers, &d)?;
        drivers.push(Arc::new(d));
        Ok(())
    }

    /// Compiles (or loads from cache), analyses and describes a component.
    async fn load(
        &self,
        name: &str,
        bytes: &[u8],
        source: DriverSource,
    ) -> Result<(LoadedDriver, CacheOutcome), RuntimeError> {
        let invalid = |detail: String| DriverLoadError::Invalid { driver: name.to_string(), detail };
        let (component, outcome) =
            engine::load_component(&self.engine, &self.config.cache_dir(), bytes)
                .map_err(|e| invalid(format!("{e:#}")))?;
        let imports = driver::imports_of(&self.engine, &component, name)?;
        let mut d = LoadedDriver {
            name: Arc::from(name),
            source,
            sha256: engine::sha256_hex(bytes),
            component,
            imports,
            syscalls: Vec::new(),
        };
        let (mut store, full) = self
            .instantiate(&d, InterfaceSet::everything(), None)
            .await
            .map_err(|e| invalid(format!("cannot instantiate it: {}", e.describe())))?;
        store.data_mut().deadline = Instant::now() + self.config.timeout_for(name);
        let specs = full
            .aos_kernel_driver()
            .call_describe(&mut store)
            .await
            .map_err(|e| invalid(format!("its `describe` failed: {}", describe_trap(&e, store.data()))))?;
        if specs.is_empty() {
            return Err(invalid("it describes no syscalls".into()).into());
        }
        for s in specs {
            let (schema, requires) = check_spec(name, &s.name, &s.args_schema, &s.requires)?;
            if d.syscalls.iter().any(|x| x.spec.name == s.name) {
                return Err(invalid(format!("it describes `{}` twice", s.name)).into());
            }
            d.syscalls.push(LoadedSyscall {
                spec: SyscallSpec { name: s.name, description: s.description, args_schema: schema },
                requires,
            });
        }
        Ok((d, outcome))
    }

    fn pre(&self, d: &LoadedDriver, profile: InterfaceSet) -> wasmtime::Result<FullPre<DriverState>> {
        let key = (d.name.clone(), profile);
        if let Some(p) = self.pres.lock().get(&key) {
            return Ok(p.clone());
        }
        let linker = interfaces::linker(&self.engine, profile)?;
        let pre = FullPre::new(linker.instantiate_pre(&d.component)?)?;
        self.pres.lock().insert(key, pre.clone());
        Ok(pre)
    }

    /// A new instance of `d` for `agent` (or, with `None`, for describing
    /// it): linked with the interfaces of `profile`, each enabled interface
    /// preparing its part of the instance.
    async fn instantiate(
        &self,
        d: &LoadedDriver,
        profile: InterfaceSet,
        agent: Option<&AgentContext>,
    ) -> Result<(Store<DriverState>, Full), InstantiateError> {
        let pre = self.pre(d, profile).map_err(InstantiateError::Link)?;
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let mut wasi = WasiCtxBuilder::new();
        // File work inline: `fs_guard` makes sure none of it can block or
        // take long (non-blocking opens, listings and syncs offloaded).
        wasi.allow_blocking_current_thread(true).stderr(stderr.clone());
        let mut hosts = HostStates::new(&self.shared);
        if let Some(agent) = agent {
            for iface in profile.iter() {
                let mut cx = Prepare { agent, wasi: &mut wasi, hosts: &mut hosts, shared: &self.shared };
                iface.prepare(&mut cx).map_err(InstantiateError::Prepare)?;
            }
        }
        let state = DriverState {
            wasi: wasi.build(),
            table: Default::default(),
            limits: Limits {
                max_memory: self.config.memory_limit,
                max_table_elements: 100_000,
                hit: None,
            },
            driver: d.name.clone(),
            pid: agent.map(|a| a.pid).unwrap_or(0),
            config: self.shared.settings(&d.name),
            effects: Vec::new(),
            timer_ids: self.shared.timer_ids.clone(),
            stderr,
            timed_out: false,
            deadline: Instant::now() + self.config.timeout_for(&d.name),
            clock: Default::default(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            hosts,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            if Instant::now() >= ctx.data().deadline {
                ctx.data_mut().timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Yield to tokio every tick so a busy guest never starves the
                // scheduler thread it runs on.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let full = pre.instantiate_async(&mut store).await.map_err(InstantiateError::Start)?;
        Ok((store, full))
    }

    fn drivers(&self) -> Vec<Arc<LoadedDriver>> {
        self.drivers.read().clone()
    }

    fn find(&self, name: &str) -> Option<(Arc<LoadedDriver>, usize)> {
        for d in self.drivers.read().iter() {
            if let Some(i) = d.syscalls.iter().position(|s| s.spec.name == name) {
                return Some((d.clone(), i));
            }
        }
        None
    }

    /// Resolves `name` for a holder of `caps`: the handle that runs it, or
    /// why not (unknown, or the first requirement `caps` lacks). The one
    /// grant check of a driver call; the linker built from the same grants
    /// enforces it structurally.
    pub fn resolve(&self, name: &str, caps: &CapabilitySet) -> Result<DriverSyscall, Refusal> {
        let Some((driver, index)) = self.find(name) else {
            return Err(Refusal::Unknown { name: name.to_string(), available: None });
        };
        if let Some(missing) = driver.missing(&driver.syscalls[index], caps) {
            return Err(Refusal::Denied { name: name.to_string(), missing });
        }
        let rt = self.me.upgrade().expect("a runtime is only used through its Arc");
        Ok(DriverSyscall { rt, driver, index })
    }

    /// Driver syscalls an agent holding `caps` may call.
    pub fn syscalls_for(&self, caps: &CapabilitySet) -> Vec<SyscallSpec> {
        let mut out = Vec::new();
        for d in self.drivers() {
            for s in &d.syscalls {
                if d.missing(s, caps).is_none() {
                    out.push(s.spec.clone());
                }
            }
        }
        out
    }

    /// Looks up any driver syscall by name, granted or not.
    pub fn lookup(&self, name: &str) -> Option<SyscallInfo> {
        self.find(name).map(|(d, i)| SyscallInfo {
            driver: d.name.to_string(),
            requires: d.requirements(&d.syscalls[i]),
            spec: d.syscalls[i].spec.clone(),
        })
    }

    /// The capabilities that grant driver syscall `name` (for a syscall name
    /// used as a permission, `FS_WRITE` → `fs:rw`).
    pub fn grant_for(&self, name: &str) -> Option<Vec<Capability>> {
        self.lookup(name).map(|i| i.requires)
    }

    /// Every loaded driver.
    pub fn list(&self) -> Vec<DriverInfo> {
        self.drivers().iter().map(|d| info_of(d)).collect()
    }

    /// Resolves and runs one driver syscall for `agent`.
    pub async fn call(
        &self,
        agent: &AgentContext,
        name: &str,
        args: &serde_json::Value,
    ) -> Result<CallOutcome, SyscallError> {
        self.resolve(name, &agent.caps)?.call(agent, args).await
    }

    /// Runs syscall `index` of `d` for `agent` (already resolved for its grants).
    async fn run(
        &self,
        d: &Arc<LoadedDriver>,
        index: usize,
        agent: &AgentContext,
        args: &serde_json::Value,
    ) -> Result<CallOutcome, SyscallError> {
        let name = d.syscalls[index].spec.name.as_str();
        if !args.is_object() {
            return Err(SyscallError::InvalidArguments(format!(
                "{name} takes a JSON object, got {args}"
            )));
        }
        let args_json = args.to_string();
        let key = (agent.pid, d.name.clone());
        let pooled = if self.config.reuse_instances {
            self.pool
                .lock()
                .remove(&key)
                .filter(|p| p.caps == agent.caps && p.workspace == agent.workspace)
        } else {
            None
        };
        let mut inst = match pooled {
            Some(p) => p,
            None => {
                let (store, bindings) = self
                    .instantiate(d, InterfaceSet::for_caps(&agent.caps), Some(agent))
                    .await
                    .map_err(|e| e.into_syscall_error(&d.name))?;
                Pooled { store, bindings, caps: agent.caps.clone(), workspace: agent.workspace.clone() }
            }
        };
        let deadline = self.config.timeout_for(&d.name);
        let clock = {
            let s = inst.store.data_mut();
            s.effects.clear();
            s.hosts.net.notes.lock().clear();
            s.deadline = Instant::now() + deadline;
            s.clock.start(s.deadline);
            s.clock.clone()
        };
        // The epoch interrupts guest code at the deadline; the watchdog ends
        // a call suspended in a host future past it (host calls that bound
        // their own time are exempt while they run), and the backstop bounds
        // everything.
        let backstop = deadline + self.config.host_call_allowance;
        let result = {
            let call = inst.bindings.aos_kernel_driver().call_handle(&mut inst.store, name, &args_json);
            let mut call = std::pin::pin!(call);
            // Most calls finish in their first poll (file work is inline): no
            // timers for them. A call that waits gets the watchdog and the backstop.
            let first = std::future::poll_fn(|cx| std::task::Poll::Ready(std::future::Future::poll(call.as_mut(), cx))).await;
            match first {
                std::task::Poll::Ready(r) => Some(r),
                std::task::Poll::Pending => tokio::select! {
                    r = tokio::time::timeout(backstop, call) => r.ok(),
                    _ = clock.expired(WATCHDOG_GRACE) => None,
                },
            }
        };
        let timeout_err = || {
            SyscallError::Timeout(format!(
                "driver `{}` did not answer {name} within its {:.1} s deadline; the call was stopped",
                d.name,
                deadline.as_secs_f64()
            ))
        };
        let reply = match result {
            None => return Err(timeout_err()),
            Some(Err(trap)) => {
                let st = inst.store.data();
                if st.timed_out {
                    return Err(timeout_err());
                }
                if let Some(hit) = &st.limits.hit {
                    return Err(SyscallError::LimitExceeded(format!(
                        "driver `{}` {hit}; the call was stopped",
                        d.name
                    )));
                }
                return Err(SyscallError::Internal(format!(
                    "driver `{}` crashed during {name}: {}",
                    d.name,
                    describe_trap(&trap, st)
                )));
            }
            Some(Ok(reply)) => reply,
        };
        let effects = std::mem::take(&mut inst.store.data_mut().effects);
        let notes = std::mem::take(&mut *inst.store.data().hosts.net.notes.lock());
        if self.config.reuse_instances {
            self.pool.lock().insert(key, inst);
        }
        // The host's reason for refusing a request is more precise than the
        // `wasi:http` error code the guest saw.
        let json = reply.map_err(|e| notes.last().cloned().unwrap_or_else(|| SyscallError::from(e)))?;
        if json.len() > self.config.max_result_bytes {
            return Err(SyscallError::LimitExceeded(format!(
                "{name} returned {} bytes, more than the {}-byte result cap",
                json.len(),
                self.config.max_result_bytes
            )));
        }
        let output = serde_json::from_str(&json).map_err(|e| {
            SyscallError::Internal(format!("driver `{}` returned invalid JSON from {name}: {e}", d.name))
        })?;
        Ok(CallOutcome { output, effects })
    }

    /// Drops pooled instances of an agent that exited, and its sandbox container.
    pub fn release_agent(&self, pid: u64) {
        self.pool.lock().retain(|(p, _), _| *p != pid);
        if let Some(backend) = self.config.container.clone() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { backend.release(pid).await });
            }
        }
    }

    /// Releases every sandbox (call when the kernel stops).
    pub async fn shutdown(&self) {
        if let Some(backend) = &self.config.container {
            backend.shutdown().await;
        }
    }

    /// The long-term memory service, if configured.
    pub fn memory(&self) -> Option<&aos_memory::MemoryService> {
        self.config.memory.as_ref()
    }

    /// Number of live pooled instances (for benchmarks and `aos top`).
    pub fn live_instances(&self) -> usize {
        self.pool.lock().len()
    }

    /// Validates a component file and reports what it offers and needs,
    /// without installing it.
    pub async fn inspect(&self, path: &Path, name: Option<&str>) -> Result<DriverInfo, RuntimeError> {
        let (name, bytes) = read_driver_file(path, name)?;
        let (d, _) = self.load(&name, &bytes, DriverSource::Installed(path.to_path_buf())).await?;
        Ok(info_of(&d))
    }

    /// Validates, precompiles and registers a third-party driver under
    /// `$AOS_HOME/drivers/NAME.wasm`. Agents need `driver:NAME` to use it.
    pub async fn install(&self, path: &Path, name: Option<&str>) -> Result<DriverInfo, RuntimeError> {
        let (name, bytes) = read_driver_file(path, name)?;
        if self.drivers().iter().any(|d| *d.name == *name) {
            return Err(RuntimeError::AlreadyInstalled(name));
        }
        let dest = self.config.installed_dir().join(format!("{name}.wasm"));
        let (d, _) = self.load(&name, &bytes, DriverSource::Installed(dest.clone())).await?;
        check_clash(&self.drivers.read(), &d)?;
        let dir = self.config.installed_dir();
        std::fs::create_dir_all(&dir).map_err(|source| RuntimeError::Io { path: dir.clone(), source })?;
        let tmp = dest.with_extension("wasm.tmp");
        std::fs::write(&tmp, &bytes).map_err(|source| RuntimeError::Io { path: tmp.clone(), source })?;
        std::fs::rename(&tmp, &dest).map_err(|source| RuntimeError::Io { path: dest.clone(), source })?;
        let info = info_of(&d);
        self.add_driver(d)?;
        Ok(info)
    }

    /// Unregisters an installed driver. The name is checked like at
    /// installation, so it can only ever name a file in the drivers folder.
    pub fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        check_name(name)?;
        let path = self.config.installed_dir().join(format!("{name}.wasm"));
        if !path.exists() {
            return Err(RuntimeError::NotInstalled(name.to_string()));
        }
        std::fs::remove_file(&path).map_err(|source| RuntimeError::Io { path, source })?;
        self.drivers.write().retain(|d| *d.name != *name);
        self.pool.lock().retain(|(_, n), _| **n != *name);
        self.pres.lock().retain(|(n, _), _| **n != *name);
        Ok(())
    }
}

/// A driver syscall resolved for one caller's grants (see
/// [`DriverRuntime::resolve`]); calling it runs the driver.
pub struct DriverSyscall {
    rt: Arc<DriverRuntime>,
    driver: Arc<LoadedDriver>,
    index: usize,
}

impl DriverSyscall {
    /// The driver that offers it.
    pub fn driver(&self) -> &str {
        &self.driver.name
    }

    pub fn spec(&self) -> &SyscallSpec {
        &self.driver.syscalls[self.index].spec
    }

    /// Runs it for `agent` (the caller it was resolved for).
    pub async fn call(&self, agent: &AgentContext, args: &serde_json::Value) -> Result<CallOutcome, SyscallError> {
        self.rt.run(&self.driver, self.index, agent, args).await
    }
}

#[async_trait]
impl SyscallHandle for DriverSyscall {
    fn spec(&self) -> &SyscallSpec {
        DriverSyscall::spec(self)
    }
    fn origin(&self) -> &str {
        &self.driver.name
    }
    async fn call(&self, caller: &AgentContext, args: &serde_json::Value) -> Result<CallOutcome, SyscallError> {
        DriverSyscall::call(self, caller, args).await
    }
}

#[async_trait]
impl SyscallSource for DriverRuntime {
    fn offered(&self) -> Vec<SyscallSpec> {
        self.drivers().iter().flat_map(|d| d.syscalls.iter().map(|s| s.spec.clone())).collect()
    }

    fn resolve(&self, name: &str, caps: &CapabilitySet) -> Option<Result<Arc<dyn SyscallHandle>, Refusal>> {
        match DriverRuntime::resolve(self, name, caps) {
            Ok(h) => Some(Ok(Arc::new(h))),
            Err(Refusal::Unknown { .. }) => None,
            Err(r) => Some(Err(r)),
        }
    }

    fn driver_names(&self) -> Vec<String> {
        self.list().into_iter().map(|d| d.name).collect()
    }

    fn grant_for(&self, name: &str) -> Option<Vec<Capability>> {
        DriverRuntime::grant_for(self, name)
    }

    fn release(&self, pid: u64) {
        self.release_agent(pid)
    }

    async fn shutdown(&self) {
        DriverRuntime::shutdown(self).await
    }

    async fn max_owned_pid(&self) -> Option<u64> {
        let m = self.memory()?;
        match m.store.max_private_pid().await {
            Ok(max) => Some(max),
            Err(e) => {
                tracing::warn!(target: "aos::memory", "cannot list memory spaces to reserve their pids: {e}");
                None
            }
        }
    }
}

fn info_of(d: &LoadedDriver) -> DriverInfo {
    DriverInfo {
        name: d.name.to_string(),
        source: match &d.source {
            DriverSource::BuiltIn => "built-in".into(),
            DriverSource::Installed(p) => p.display().to_string(),
        },
        sha256: d.sha256.clone(),
        requires: d.needs_shown(),
        syscalls: d
            .syscalls
            .iter()
            .map(|s| SyscallSummary {
                name: s.spec.name.clone(),
                description: s.spec.description.clone(),
                args_schema: s.spec.args_schema.clone(),
                requires: d.requirements(s).iter().map(|c| c.to_string()).collect(),
            })
            .collect(),
    }
}

fn check_clash(drivers: &[Arc<LoadedDriver>], d: &LoadedDriver) -> Result<(), RuntimeError> {
    // `MCP_` names the tools of MCP servers (aos-mcp's naming rule): a
    // driver cannot shadow one, nor an MCP tool a driver.
    if let Some(s) = d.syscalls.iter().find(|s| s.spec.name.to_ascii_uppercase().starts_with("MCP_")) {
        return Err(RuntimeError::ReservedSyscall { driver: d.name.to_string(), syscall: s.spec.name.clone() });
    }
    for other in drivers {
        if other.name == d.name {
            return Err(RuntimeError::AlreadyInstalled(d.name.to_string()));
        }
        for s in &d.syscalls {
            if other.syscalls.iter().any(|o| o.spec.name == s.spec.name) {
                return Err(RuntimeError::Clash {
                    driver: d.name.to_string(),
                    syscall: s.spec.name.clone(),
                    other: other.name.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Reads a component file and settles the driver's name: `name` if given,
/// else the file stem without an `aos_driver_` prefix.
fn read_driver_file(path: &Path, name: Option<&str>) -> Result<(String, Vec<u8>), RuntimeError> {
    let bytes = std::fs::read(path).map_err(|source| RuntimeError::ReadFile { path: path.to_path_buf(), source })?;
    let name = match name {
        Some(n) => n.to_string(),
        None => {
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            stem.strip_prefix("aos_driver_").unwrap_or(&stem).replace('_', "-")
        }
    };
    check_name(&name)?;
    Ok((name, bytes))
}

/// A third-party driver's name: 1-32 characters of `a-z`, `0-9`, `-`, `_`
/// (so never a path), and not a built-in driver's.
fn check_name(name: &str) -> Result<(), RuntimeError> {
    if name.is_empty()
        || name.len() > 32
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(RuntimeError::BadName(name.to_string()));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(RuntimeError::ReservedName(name.to_string()));
    }
    Ok(())
}

/// A short explanation of a trap: its code, plus the guest's panic message if
/// it printed one. Host backtraces are never included.
fn describe_trap(e: &wasmtime::Error, st: &DriverState) -> String {
    let what = match e.downcast_ref::<Trap>() {
        Some(t) => t.to_string(),
        None => e.to_string().lines().next().unwrap_or("unknown error").to_string(),
    };
    let stderr = String::from_utf8_lossy(&st.stderr.contents()).to_string();
    let panic_line = stderr
        .lines()
        .skip_while(|l| !l.contains("panicked at"))
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    if panic_line.is_empty() {
        what
    } else {
        format!("{what} ({})", panic_line.trim())
    }
}

/// Host bytes of a built example driver, e.g. `example_driver("wordcount")`.
pub fn example_driver_path(name: &str) -> PathBuf {
    Path::new(BUILT_DRIVERS_DIR).join(format!("aos_driver_{}.wasm", name.replace('-', "_")))
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<DriverRuntime>();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The structural half of RBAC: without the grant, the interface is not in
    /// the linker, and the component cannot be instantiated at all.
    #[test]
    fn withheld_interfaces_make_instantiation_impossible() {
        let engine = engine::new_engine().unwrap();
        let fs = wasmtime::component::Component::new(&engine, BUILTIN_DRIVERS[0].1).unwrap();
        let timers = wasmtime::component::Component::new(&engine, BUILTIN_DRIVERS[1].1).unwrap();
        let none = interfaces::linker(&engine, InterfaceSet::for_caps(&CapabilitySet::empty())).unwrap();
        for c in [&fs, &timers] {
            let err = none.instantiate_pre(c).err().expect("must not link").to_string();
            assert!(err.contains("matching implementation was not found"), "{err}");
        }
        let caps = CapabilitySet::parse(["fs:ro"]).unwrap();
        let with_fs = interfaces::linker(&engine, InterfaceSet::for_caps(&caps)).unwrap();
        assert!(with_fs.instantiate_pre(&fs).is_ok());
        assert!(with_fs.instantiate_pre(&timers).is_err());
    }
}
