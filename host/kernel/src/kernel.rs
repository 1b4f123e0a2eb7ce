//! The [`Kernel`] facade used by the CLI and the daemon: spawning, killing,
//! stdin, waiting, `ps`, `logs` and the live event stream; plus the kernel's
//! configuration, errors and events.
//!
//! Every change to a process's history goes through one function,
//! [`KernelInner::record`], which appends the [`LogEntry`] and emits a
//! [`KernelEvent`] to every [`EventSink`] and to the broadcast stream
//! ([`Kernel::subscribe`]). A journal for crash recovery is an `EventSink`.
//!
//! Ended processes are reaped from the table by [`KernelConfig::retention`]
//! (see [`crate::table`]) when a process ends and every
//! [`REAP_INTERVAL`] or less; each reaped pid is announced as
//! [`KernelEvent::Reaped`], and looking it up afterwards gives
//! [`KernelError::Reaped`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use aos_abi::{CapabilitySet, MissingCapabilities, SyscallSpec};
use aos_providers::{Provider, ProviderError};
use aos_runtime::DriverRuntime;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{broadcast, Semaphore};

pub use crate::events::{KernelEvent, RestoreRequest};
use crate::ipc;
use crate::process::{
    now_ms, Budgets, Entry, ExitStatus, LogEntry, NewProcess, Pid, Process, ProcessInfo, ProcessStatus,
};
use crate::table::{ProcessTable, Retention};
use crate::webhook::{WebhookError, WebhookRegistry, WebhookRequest, WebhookResponse};

/// Builds a provider from its name (`openai`, `script`, ...) and optional base URL.
pub type ProviderFactory =
    Arc<dyn Fn(&str, Option<&str>) -> Result<Arc<dyn Provider>, ProviderError> + Send + Sync>;

/// Kernel settings.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    /// `$AOS_HOME`; root workspaces default to `{home}/workspaces/{pid}`.
    pub home: PathBuf,
    /// Context window (tokens, estimated as characters / 4) used for
    /// compaction; a provider that knows its model's real capacity
    /// ([`Provider::context_window`]) lowers it.
    pub context_window: usize,
    /// Per-model overrides of `context_window`.
    pub model_context_windows: BTreeMap<String, usize>,
    /// Concurrent model calls per provider (FIFO-fair among ready processes).
    pub model_concurrency: usize,
    /// Per-provider overrides of `model_concurrency`.
    pub provider_concurrency: BTreeMap<String, usize>,
    /// Budgets used where a spawn request leaves a field `None`.
    pub default_budgets: Budgets,
    /// The same failing call (same name and arguments) this many times in a row halts the process.
    pub loop_breaker: u32,
    /// `max_tokens` of each model call.
    pub max_reply_tokens: Option<u32>,
    pub temperature: Option<f32>,
    /// Capacity of the broadcast event stream (slow subscribers lag, and are told so).
    pub event_capacity: usize,
    /// How many ended processes are kept, and how long (see [`crate::table`]).
    pub retention: Retention,
}

/// The longest time between two reaping passes over the table (shorter when
/// `retention.ended_ttl` is: a quarter of it, at least a second). A pass also
/// runs whenever a process ends.
pub const REAP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

impl KernelConfig {
    pub fn new(home: impl Into<PathBuf>) -> Self {
        KernelConfig {
            home: home.into(),
            context_window: 8192,
            model_context_windows: BTreeMap::new(),
            model_concurrency: 4,
            provider_concurrency: BTreeMap::new(),
            default_budgets: Budgets { max_steps: Some(100), max_tokens: None, max_wall_time: None },
            loop_breaker: 3,
            max_reply_tokens: Some(2048),
            temperature: None,
            event_capacity: 4096,
            retention: Retention::default(),
        }
    }
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct SpawnRequest {
    pub task: String,
    pub role: String,
    /// Provider name given to the factory.
    pub provider: String,
    pub model: String,
    pub base_url: Option<String>,
    /// Rights of the process. For a child (`parent: Some`) they must be held by the parent.
    pub caps: CapabilitySet,
    /// `None` fields take `KernelConfig::default_budgets`; a child's are also capped by
    /// what its parent has left.
    pub budgets: Budgets,
    /// Default: `{home}/workspaces/{pid}` for a root, the parent's for a child.
    pub workspace: Option<PathBuf>,
    /// Also deliver this process's stdout to that process's stdin.
    pub pipe_to: Option<Pid>,
    pub parent: Option<Pid>,
}

/// An item for a process's input queues.
pub(crate) enum Delivery {
    Msg { from: Pid, content: String },
    Stdin(String),
    /// `durable: false` = not journalled (webhook requests).
    Event { text: String, durable: bool },
}

/// Errors of the kernel API; messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("no process with pid {0}; run `aos ps` to list processes")]
    NoSuchProcess(Pid),
    #[error(
        "no process with pid {0}: it ended and was reaped (ended processes are kept only up to the retention \
         limits, `[retention]` in aos.toml); run `aos ps --all` to list the processes still kept"
    )]
    Reaped(Pid),
    #[error("process {pid} is not running (it {status}); start a new one with `aos spawn`")]
    NotRunning { pid: Pid, status: ExitStatus },
    #[error("cannot start provider `{provider}`: {source}")]
    Provider {
        provider: String,
        #[source]
        source: ProviderError,
    },
    #[error("cannot create workspace {path}: {source}; check that the AgentOS home directory is writable")]
    Workspace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}; request only rights the parent holds")]
    Denied(#[from] MissingCapabilities),
    #[error("invalid spawn request: {0}")]
    Invalid(String),
    #[error("cannot restore process {pid}: {why}")]
    Restore { pid: Pid, why: String },
}

/// Receives every kernel event, synchronously and in order per process
/// (e.g. a journal writing them to disk).
pub trait EventSink: Send + Sync {
    fn record(&self, event: &KernelEvent);
}

/// (provider name, base URL).
type ProviderKey = (String, Option<String>);

pub(crate) struct KernelInner {
    pub config: KernelConfig,
    pub runtime: Arc<DriverRuntime>,
    factory: ProviderFactory,
    providers: Mutex<HashMap<ProviderKey, Arc<dyn Provider>>>,
    semaphores: Mutex<HashMap<String, Arc<Semaphore>>>,
    pub table: ProcessTable,
    events: broadcast::Sender<KernelEvent>,
    sinks: RwLock<Vec<Arc<dyn EventSink>>>,
    pub(crate) webhooks: WebhookRegistry,
    /// Where events are made durable (see [`crate::durability`]).
    pub(crate) journal: std::sync::OnceLock<Arc<dyn crate::durability::Journal>>,
}

/// The AgentOS kernel. Cheap to clone.
#[derive(Clone)]
pub struct Kernel {
    pub(crate) inner: Arc<KernelInner>,
}

impl KernelInner {
    pub(crate) fn wants_events(&self) -> bool {
        self.journal.get().is_some() || self.events.receiver_count() > 0 || !self.sinks.read().is_empty()
    }

    pub(crate) fn emit(&self, ev: KernelEvent) {
        if let Some(j) = self.journal.get() {
            // The process waits for this lsn before its next side effect.
            let lsn = j.append(&ev);
            if let Some(p) = self.table.get(ev.pid()) {
                p.lsn.fetch_max(lsn, std::sync::atomic::Ordering::AcqRel);
            }
        }
        for s in self.sinks.read().iter() {
            s.record(&ev);
        }
        let _ = self.events.send(ev);
    }

    /// Sends `ev` to the live stream only (not journalled: a pause).
    pub(crate) fn notify(&self, ev: KernelEvent) {
        let _ = self.events.send(ev);
    }

    /// THE function through which a process's history changes: appends the
    /// entry to its log and emits [`KernelEvent::Entry`].
    pub(crate) fn record(&self, p: &Process, entry: Entry) {
        let now = now_ms();
        let counted = matches!(entry, Entry::Reply { .. } | Entry::Result { .. } | Entry::Error { .. });
        let (le, counters) = {
            let mut st = p.state.lock();
            let le = LogEntry { pid: p.pid, seq: st.log.len() as u64, at_ms: now, entry };
            st.log.push(le.clone());
            st.counters.last_activity_ms = now;
            (le, counted.then(|| st.counters.clone()))
        };
        if self.wants_events() {
            self.emit(KernelEvent::Entry { entry: le });
            // Token, step and syscall counters change with replies and call results.
            if let Some(counters) = counters {
                self.emit(KernelEvent::Counters { pid: p.pid, counters });
            }
        }
    }

    /// Puts an item in `target`'s queue, announcing it first
    /// ([`KernelEvent::Delivered`]) so a journal can restore it. False when
    /// the process has ended.
    pub(crate) fn deliver(&self, target: &Process, item: Delivery) -> bool {
        let _order = target.ipc.order.lock();
        let (queue, from, content, durable) = match &item {
            Delivery::Msg { from, content } => (ipc::Queue::Mailbox, Some(*from), content, true),
            Delivery::Stdin(t) => (ipc::Queue::Stdin, None, t, true),
            Delivery::Event { text, durable } => (ipc::Queue::Events, None, text, *durable),
        };
        if durable && target.state.lock().exit.is_none() && self.wants_events() {
            self.emit(KernelEvent::Delivered { pid: target.pid, queue, from, content: content.clone(), at_ms: now_ms() });
        }
        match item {
            Delivery::Msg { from, content } => target.ipc.send_msg(from, content),
            Delivery::Stdin(t) => target.ipc.send_stdin(t),
            Delivery::Event { text, durable } => target.ipc.send_event(text, durable),
        }
    }

    /// `p` took the oldest item of `queue` (not announced for non-durable events).
    pub(crate) fn consumed(&self, p: &Process, queue: ipc::Queue) {
        if self.wants_events() {
            self.emit(KernelEvent::Consumed { pid: p.pid, queue });
        }
    }

    /// Records a received event in the history (and its consumption).
    pub(crate) fn take_event(&self, p: &Process, ev: ipc::IpcEvent) {
        if ev.durable {
            self.consumed(p, ipc::Queue::Events);
        }
        self.record(p, Entry::Event { text: ev.text });
    }

    pub(crate) fn set_status(&self, p: &Process, status: ProcessStatus) {
        {
            let mut st = p.state.lock();
            if st.status == status || st.status.is_terminal() {
                return;
            }
            st.status = status.clone();
        }
        if self.wants_events() {
            self.emit(KernelEvent::Status { pid: p.pid, status });
        }
    }

    /// The process `pid`, or the error saying it never existed or was reaped.
    pub(crate) fn lookup(&self, pid: Pid) -> Result<Arc<Process>, KernelError> {
        self.table.get(pid).ok_or_else(|| self.missing(pid))
    }

    /// The error for a pid that is not in the table.
    pub(crate) fn missing(&self, pid: Pid) -> KernelError {
        if self.table.was_reaped(pid) {
            KernelError::Reaped(pid)
        } else {
            KernelError::NoSuchProcess(pid)
        }
    }

    /// Reaps the ended processes the retention rules no longer keep and
    /// announces each ([`KernelEvent::Reaped`]).
    pub(crate) fn reap(&self) -> Vec<Pid> {
        let reaped = self.table.reap(&self.config.retention, now_ms());
        if !reaped.is_empty() {
            tracing::debug!(target: "aos::kernel", ?reaped, "reaped ended processes");
            if self.wants_events() {
                for &pid in &reaped {
                    self.emit(KernelEvent::Reaped { pid });
                }
            }
        }
        reaped
    }

    pub(crate) fn semaphore(&self, provider: &str) -> Arc<Semaphore> {
        let mut m = self.semaphores.lock();
        m.entry(provider.to_string())
            .or_insert_with(|| {
                let n = self.config.provider_concurrency.get(provider).copied().unwrap_or(self.config.model_concurrency);
                Arc::new(Semaphore::new(n.max(1)))
            })
            .clone()
    }

    /// The configured compaction window of `model`.
    pub(crate) fn context_window(&self, model: &str) -> usize {
        self.config.model_context_windows.get(model).copied().unwrap_or(self.config.context_window)
    }

    /// The compaction window of `p` before any shrinking: the configured one,
    /// or the provider's real capacity if smaller.
    pub(crate) fn base_window(&self, p: &Process) -> usize {
        let configured = self.context_window(&p.model);
        match p.provider.context_window(&p.model) {
            Some(w) => configured.min(w),
            None => configured,
        }
    }

    fn provider(&self, name: &str, base_url: Option<&str>) -> Result<Arc<dyn Provider>, KernelError> {
        let key = (name.to_string(), base_url.map(str::to_string));
        if let Some(p) = self.providers.lock().get(&key) {
            return Ok(p.clone());
        }
        let p = (self.factory)(name, base_url)
            .map_err(|source| KernelError::Provider { provider: name.to_string(), source })?;
        Ok(self.providers.lock().entry(key).or_insert(p).clone())
    }

    /// Every syscall (kernel and driver) a holder of `caps` may use.
    pub(crate) fn syscalls_for(&self, caps: &CapabilitySet) -> Vec<SyscallSpec> {
        let mut v = crate::syscalls::kernel_specs_for(caps);
        v.extend(self.runtime.syscalls_for(caps));
        v
    }

    /// Every `driver:NAME` in `caps` names an installed driver (a grant of
    /// a driver that does not exist is a mistake, not an empty right).
    fn check_drivers(&self, caps: &CapabilitySet) -> Result<(), KernelError> {
        let wanted: Vec<&str> = caps
            .iter()
            .filter_map(|c| match c {
                aos_abi::Capability::Driver(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let installed: Vec<String> = self.runtime.list().into_iter().map(|d| d.name).collect();
        for name in wanted {
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

    pub(crate) fn spawn(self: &Arc<Self>, req: SpawnRequest) -> Result<Pid, KernelError> {
        if req.task.trim().is_empty() {
            return Err(KernelError::Invalid("the task is empty; say what the agent should do".into()));
        }
        let parent = match req.parent {
            Some(ppid) => {
                let pp = self.lookup(ppid)?;
                if let Some(exit) = pp.state.lock().exit.clone() {
                    return Err(KernelError::NotRunning { pid: ppid, status: exit });
                }
                Some(pp)
            }
            None => None,
        };
        if let Some(t) = req.pipe_to {
            self.lookup(t).map_err(|e| KernelError::Invalid(format!("pipe_to: {e}")))?;
        }
        let (caps, mut budgets) = match &parent {
            Some(pp) => (pp.caps.delegate(&req.caps)?, req.budgets.capped_by(&pp.remaining())),
            None => (req.caps.clone(), req.budgets.clone()),
        };
        let d = &self.config.default_budgets;
        budgets.max_steps = budgets.max_steps.or(d.max_steps);
        budgets.max_tokens = budgets.max_tokens.or(d.max_tokens);
        budgets.max_wall_time = budgets.max_wall_time.or(d.max_wall_time);
        self.check_drivers(&caps)?;
        let provider = self.provider(&req.provider, req.base_url.as_deref())?;
        provider
            .check_model(&req.model)
            .map_err(|source| KernelError::Provider { provider: req.provider.clone(), source })?;

        let pid = self.table.allocate_pid();
        let workspace = match (&req.workspace, &parent) {
            (Some(w), _) => w.clone(),
            (None, Some(pp)) => pp.workspace.clone(),
            (None, None) => self.config.home.join("workspaces").join(pid.to_string()),
        };
        std::fs::create_dir_all(&workspace)
            .map_err(|source| KernelError::Workspace { path: workspace.clone(), source })?;

        let (ends, inbox) = ipc::channels();
        let p = Arc::new(Process::new(NewProcess {
            pid,
            parent: req.parent,
            role: req.role,
            task: req.task,
            provider_name: req.provider,
            base_url: req.base_url,
            model: req.model,
            caps,
            budgets,
            workspace,
            pipe_to: req.pipe_to,
            provider,
            ipc: ends,
        }));
        self.table.insert(p.clone());
        if let Some(pp) = &parent {
            pp.state.lock().children.push(pid);
            // A kill of the parent's subtree may have raced with this spawn.
            if pp.is_killed() {
                p.signal_kill();
            }
        }
        if self.wants_events() {
            self.emit(KernelEvent::Spawned { info: Box::new(p.info()) });
        }
        crate::scheduler::start(self.clone(), p, inbox);
        Ok(pid)
    }

    /// Final bookkeeping of a process that ended (called once, by its task).
    pub(crate) fn finish(&self, p: &Process, status: ExitStatus) {
        self.record(p, Entry::Notice { text: format!("process {} {status}", p.pid) });
        let ended_at = now_ms();
        let seq = self.table.mark_ended(p.pid, ended_at);
        {
            let mut st = p.state.lock();
            st.exit = Some(status.clone());
            st.status = status.as_status();
            st.ended_at_ms = Some(ended_at);
            st.end_seq = seq;
        }
        // Stops pending timers of this process.
        p.cancel.cancel();
        p.provider.release(p.pid);
        self.runtime.release_agent(p.pid);
        self.webhooks.forget(p.pid);
        if let Some(parent) = p.parent.and_then(|pp| self.table.get(pp)) {
            self.deliver(&parent, Delivery::Event { text: format!("child {} {status}", p.pid), durable: true });
        }
        if self.wants_events() {
            let counters = p.state.lock().counters.clone();
            self.emit(KernelEvent::Counters { pid: p.pid, counters });
            self.emit(KernelEvent::Status { pid: p.pid, status: status.as_status() });
            self.emit(KernelEvent::Exited { pid: p.pid, status: status.clone() });
        }
        // Whoever waits already holds the process, so it may go at once
        // (with `max_ended = 0` or a zero TTL).
        self.reap();
    }

    /// Tells the waiters of `p` how it ended (after [`Self::finish`], once
    /// its end is durable: an exit code is never reported that a restart
    /// could take back).
    pub(crate) fn publish_exit(&self, p: &Process, status: ExitStatus) {
        p.exit_tx.send_replace(Some(status));
    }
}

impl KernelInner {
    fn restore(self: &Arc<Self>, r: RestoreRequest, entries: Vec<Entry>) -> Result<Pid, KernelError> {
        let info = r.info;
        let pid = info.pid;
        let bad = |why: String| KernelError::Restore { pid, why };
        if self.table.get(pid).is_some() {
            return Err(bad("a process with this pid already exists".into()));
        }
        let caps = CapabilitySet::parse(&info.capabilities).map_err(|e| bad(e.to_string()))?;
        let provider = self.provider(&info.provider, info.base_url.as_deref())?;
        std::fs::create_dir_all(&info.workspace)
            .map_err(|source| KernelError::Workspace { path: info.workspace.clone(), source })?;
        let (ends, inbox) = ipc::channels();
        // Input that was queued when the kernel stopped (already journalled in the snapshot).
        if r.exit.is_none() {
            for m in &r.pending.mailbox {
                ends.mailbox.send(m.clone()).expect("receiver held here");
            }
            for l in &r.pending.stdin {
                ends.send_stdin(l.clone());
            }
            for e in &r.pending.events {
                ends.send_event(e.clone(), true);
            }
        }
        let mut p = Process::new(NewProcess {
            pid,
            parent: info.parent,
            role: info.role,
            task: info.task,
            provider_name: info.provider,
            base_url: info.base_url,
            model: info.model,
            caps,
            budgets: info.budgets,
            workspace: info.workspace,
            pipe_to: info.pipe_to,
            provider,
            ipc: ends,
        });
        // The wall-time budget counts from the original start.
        let age = std::time::Duration::from_millis(now_ms().saturating_sub(info.counters.started_at_ms));
        p.started = std::time::Instant::now().checked_sub(age).unwrap_or_else(std::time::Instant::now);
        {
            let st = p.state.get_mut();
            st.children = info.children;
            st.counters = info.counters;
            st.log = r.log;
            st.context_start = r.context_start.min(st.log.len());
            st.compacted = r.compacted;
            st.context_window = r.context_window;
            st.next_call_id = r.next_call_id.max(1);
            // Every model call left exactly one reply in the log.
            let replies = st.log.iter().filter(|e| matches!(e.entry, Entry::Reply { .. })).count() as u64;
            st.counters.steps = st.counters.steps.max(replies);
            if let ProcessStatus::Sleeping { until_ms } = info.status {
                st.sleep_until_ms = Some(until_ms);
            }
            if let Some(exit) = &r.exit {
                st.exit = Some(exit.clone());
                st.status = exit.as_status();
                // Its last entry is the notice written when it ended.
                let last = st.log.last().map_or(0, |e| e.at_ms);
                let at = last.max(st.counters.last_activity_ms).max(st.counters.started_at_ms);
                st.ended_at_ms = Some(at);
                st.end_seq = self.table.mark_ended(pid, at);
            }
        }
        let p = Arc::new(p);
        self.table.reserve_up_to(pid);
        self.table.insert(p.clone());
        if let Some(pp) = p.parent.and_then(|pp| self.table.get(pp)) {
            let mut st = pp.state.lock();
            if !st.children.contains(&pid) {
                st.children.push(pid);
            }
        }
        if let Some(exit) = r.exit {
            p.exit_tx.send_replace(Some(exit));
            return Ok(pid);
        }
        // Per-process provider state (e.g. the script's position) continues.
        p.provider.resume(pid, p.state.lock().counters.steps);
        for t in r.pending.timers {
            crate::scheduler::arm_timer(self.clone(), &p, t.id, t.due_ms, t.prompt);
        }
        // Webhook routes the process registered keep their paths and secrets.
        for route in r.webhooks {
            let (path, secret) = (route.path, Some(route.secret));
            if let Err(e) = self.webhooks.register(pid, &path, secret) {
                self.record(&p, Entry::Notice { text: format!("webhook {path} could not be registered again: {e}") });
            }
        }
        for e in entries {
            if let Entry::Result { id, .. } | Entry::Error { id, .. } = &e {
                let mut st = p.state.lock();
                st.next_call_id = st.next_call_id.max(id + 1);
            }
            self.record(&p, e);
        }
        crate::scheduler::start(self.clone(), p, inbox);
        Ok(pid)
    }
}

impl Kernel {
    /// Rebuilds a process from its journal (see `aos-daemon`): same pid,
    /// identity, rights, budgets (wall time counted from its original start),
    /// counters and full history. `entries` are recorded first (e.g. "this
    /// call was interrupted by the restart"), then its loop resumes with its
    /// next step; nothing in the history is executed again. A process that
    /// had exited is kept for `ps` and `logs` only. Restore parents before
    /// children; later spawns get pids above every restored one. Input that
    /// was queued but not yet received (`req.pending`: mailbox, stdin,
    /// events) is queued again and unfired `SYS_SCHEDULE` wake-ups are
    /// re-armed for their original time; a process that was sleeping sleeps
    /// until its original wake-up time; the provider is told how many model
    /// calls were made (`Provider::resume`), so a script continues where it
    /// was; webhook paths it registered are registered again with their secrets.
    pub async fn restore(&self, req: RestoreRequest, entries: Vec<Entry>) -> Result<Pid, KernelError> {
        self.inner.restore(req, entries)
    }

    /// Creates a kernel. `providers` builds a provider from its name and base URL
    /// (results are cached per pair).
    pub fn new(config: KernelConfig, runtime: Arc<DriverRuntime>, providers: ProviderFactory) -> Kernel {
        let (events, _) = broadcast::channel(config.event_capacity.max(16));
        let kernel = Kernel {
            inner: Arc::new(KernelInner {
                config,
                runtime,
                factory: providers,
                providers: Mutex::new(HashMap::new()),
                semaphores: Mutex::new(HashMap::new()),
                table: ProcessTable::new(),
                events,
                sinks: RwLock::new(Vec::new()),
                webhooks: WebhookRegistry::default(),
                journal: std::sync::OnceLock::new(),
            }),
        };
        kernel.start_reaper();
        kernel
    }

    /// Reaps ended processes periodically (TTL expiry of an idle kernel),
    /// when created inside a tokio runtime; the task ends with the kernel.
    fn start_reaper(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let period = (self.inner.config.retention.ended_ttl / 4)
            .clamp(std::time::Duration::from_secs(1), REAP_INTERVAL);
        let weak = Arc::downgrade(&self.inner);
        rt.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.reap();
            }
        });
    }

    /// Reaps now the ended processes that the retention rules
    /// ([`KernelConfig::retention`]) no longer keep; returns their pids.
    /// (This also happens whenever a process ends, and periodically.)
    pub fn reap(&self) -> Vec<Pid> {
        self.inner.reap()
    }

    /// Records that `pid` was reaped (by an earlier run of the kernel, as its
    /// journal says), so looking it up says so rather than "no such process".
    pub fn note_reaped(&self, pid: Pid) {
        if self.inner.table.get(pid).is_none() {
            self.inner.table.mark_reaped(pid);
        }
    }

    /// Makes later pids start above `pid`. Called at start with the highest
    /// pid that owns long-term memory, so a new process never inherits the
    /// private memory of an old one.
    pub fn reserve_pids_up_to(&self, pid: Pid) {
        self.inner.table.reserve_up_to(pid);
    }

    /// Reserves pids above every private memory space of the memory store
    /// (a warning, not an error, when the store cannot be asked).
    pub async fn reserve_memory_pids(&self) {
        let Some(m) = self.inner.runtime.memory() else { return };
        match m.store.max_private_pid().await {
            Ok(max) => self.reserve_pids_up_to(max),
            Err(e) => tracing::warn!(target: "aos::memory", "cannot list memory spaces to reserve their pids: {e}"),
        }
    }

    /// The driver runtime this kernel dispatches to.
    pub fn runtime(&self) -> &Arc<DriverRuntime> {
        &self.inner.runtime
    }

    pub fn config(&self) -> &KernelConfig {
        &self.inner.config
    }

    /// Starts a process and returns its pid. Must be called inside a tokio runtime.
    pub async fn spawn(&self, req: SpawnRequest) -> Result<Pid, KernelError> {
        self.inner.spawn(req)
    }

    /// Kills `pid` and its whole subtree (every descendant, found through the
    /// children lists, which survive an intermediate process's exit, and its
    /// reaping too: an ended ancestor of a running process is never reaped):
    /// killing a supervisor means its workers are no longer wanted, and no
    /// process is left running without an accountable ancestor. (A parent that merely *exits*
    /// leaves its children running, like Unix orphans.)
    ///
    /// Each process is marked killed and its cancellation token fired: its task
    /// drops the in-flight model call or blocking syscall at the next await that
    /// yields, and the step loop also checks the mark before every model call and
    /// every syscall, so a killed process never starts another one. Provider and
    /// runtime state of the process is then released and it ends as `Killed`.
    /// Returns the pids that were signalled (those still running); processes
    /// that already ended are left as they were.
    pub fn kill(&self, pid: Pid) -> Result<Vec<Pid>, KernelError> {
        self.inner.lookup(pid)?;
        let mut killed = Vec::new();
        for p in self.inner.table.subtree(pid) {
            if let Some(proc_) = self.inner.table.get(p) {
                if proc_.state.lock().exit.is_none() && !proc_.is_killed() {
                    proc_.signal_kill();
                    killed.push(p);
                }
            }
        }
        Ok(killed)
    }

    /// Queues a line on `pid`'s stdin (read by `SYS_READ_STDIN`).
    pub fn send_stdin(&self, pid: Pid, text: impl Into<String>) -> Result<(), KernelError> {
        let p = self.running(pid)?;
        self.inner.deliver(&p, Delivery::Stdin(text.into()));
        Ok(())
    }

    /// Puts a message from the user (pid 0) in `pid`'s mailbox (read by `RECV_MSG`).
    pub fn send_message(&self, pid: Pid, content: impl Into<String>) -> Result<(), KernelError> {
        let p = self.running(pid)?;
        self.inner.deliver(&p, Delivery::Msg { from: 0, content: content.into() });
        Ok(())
    }

    fn running(&self, pid: Pid) -> Result<Arc<Process>, KernelError> {
        let p = self.inner.lookup(pid)?;
        if let Some(status) = p.state.lock().exit.clone() {
            return Err(KernelError::NotRunning { pid, status });
        }
        Ok(p)
    }

    /// Waits until `pid` ends and returns how it ended.
    pub async fn wait(&self, pid: Pid) -> Result<ExitStatus, KernelError> {
        let p = self.inner.lookup(pid)?;
        let mut rx = p.exit_tx.subscribe();
        let status = rx.wait_for(|s| s.is_some()).await.expect("sender lives in the process").clone();
        Ok(status.expect("checked by wait_for"))
    }

    /// How `pid` ended, or `None` while it runs.
    pub fn exit_status(&self, pid: Pid) -> Result<Option<ExitStatus>, KernelError> {
        let p = self.inner.lookup(pid)?;
        let e = p.state.lock().exit.clone();
        Ok(e)
    }

    pub fn info(&self, pid: Pid) -> Result<ProcessInfo, KernelError> {
        Ok(self.inner.lookup(pid)?.info())
    }

    /// Every process (running, or ended and not reaped yet), ordered by pid.
    pub fn ps(&self) -> Vec<ProcessInfo> {
        self.inner.table.snapshot()
    }

    /// The full history of `pid` (kept after exit until the process is reaped, never compacted).
    pub fn logs(&self, pid: Pid) -> Result<Vec<LogEntry>, KernelError> {
        let p = self.inner.lookup(pid)?;
        let log = p.state.lock().log.clone();
        Ok(log)
    }

    /// What `pid` wrote with `SYS_WRITE_STDOUT`, in order.
    pub fn stdout(&self, pid: Pid) -> Result<Vec<String>, KernelError> {
        Ok(self
            .logs(pid)?
            .into_iter()
            .filter_map(|e| match e.entry {
                Entry::Stdout { text } => Some(text),
                _ => None,
            })
            .collect())
    }

    /// Live stream of kernel events (for `logs -f` and `top`).
    pub fn subscribe(&self) -> broadcast::Receiver<KernelEvent> {
        self.inner.events.subscribe()
    }

    /// Adds a synchronous event sink (e.g. a journal).
    pub fn add_sink(&self, sink: Arc<dyn EventSink>) {
        self.inner.sinks.write().push(sink);
    }

    /// Every syscall (kernel and driver) a process holding `caps` may use.
    pub fn syscalls_for(&self, caps: &CapabilitySet) -> Vec<SyscallSpec> {
        self.inner.syscalls_for(caps)
    }

    /// Sets the `http://HOST:PORT` under which a front end serves webhook
    /// paths (shown to processes as the `url` of `SYS_REGISTER_WEBHOOK`).
    pub fn set_webhook_base_url(&self, url: Option<String>) {
        self.inner.webhooks.set_base_url(url);
    }

    pub fn webhook_base_url(&self) -> Option<String> {
        self.inner.webhooks.base_url()
    }

    /// Webhook paths registered by `pid`.
    pub fn webhooks_of(&self, pid: Pid) -> Vec<String> {
        self.inner.webhooks.paths_of(pid)
    }

    /// Every registered webhook path with its owner, URL and secret.
    pub fn webhook_routes(&self) -> Vec<crate::webhook::RegisteredWebhook> {
        self.inner.webhooks.routes()
    }

    /// Delivers an HTTP request for a registered path: checks its secret
    /// (see [`crate::webhook`]), puts it in the owning process's events
    /// (waking it from `RECV_MSG`, `SYS_READ_STDIN` or a sleep) and waits up
    /// to `timeout` for the process's `SYS_WEBHOOK_REPLY`.
    pub async fn webhook_deliver(&self, req: WebhookRequest, timeout: std::time::Duration) -> Result<WebhookResponse, WebhookError> {
        let reg = &self.inner.webhooks;
        let (pid, id, rx, text) = reg.accept(&req)?;
        /// Forgets the request however this future ends (answered, timed out, dropped).
        struct Expire<'a>(&'a WebhookRegistry, u64);
        impl Drop for Expire<'_> {
            fn drop(&mut self) {
                self.0.expire(self.1);
            }
        }
        let _guard = Expire(reg, id);
        let alive = self.inner.table.get(pid).filter(|p| p.state.lock().exit.is_none());
        let Some(p) = alive else {
            return Err(WebhookError::ProcessEnded(pid));
        };
        if !self.inner.deliver(&p, Delivery::Event { text, durable: false }) {
            return Err(WebhookError::ProcessEnded(pid));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(WebhookError::ProcessEnded(pid)),
            Err(_) => Err(WebhookError::Timeout(timeout)),
        }
    }
}
