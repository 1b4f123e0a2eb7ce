//! The [`Kernel`] facade used by the CLI and the daemon: spawning, killing,
//! stdin, waiting, `ps`, `logs`, webhooks and the live event stream. It owns
//! the kernel's [`Shared`] parts and delegates: process creation, end and
//! reaping to [`crate::lifecycle`], state changes of a process to
//! [`crate::pcb`], events to [`crate::events`].
//!
//! Every change to a process's history goes through one function,
//! `Process::record` (`pcb.rs`), which appends the [`LogEntry`] and emits a
//! [`KernelEvent`] to every [`EventSink`] and to the broadcast stream
//! ([`Kernel::subscribe`]). The journal for crash recovery is attached with
//! `Kernel::attach_journal` ([`crate::durability`]); every event is appended
//! to it first.
//!
//! Ended processes are reaped from the table by [`KernelConfig::retention`]
//! (see [`crate::table`]) when a process ends and every
//! [`crate::REAP_INTERVAL`] or less; each reaped pid is announced as
//! [`KernelEvent::Reaped`], and looking it up afterwards gives
//! [`KernelError::Reaped`].

use std::sync::Arc;

use aos_abi::{CapabilitySet, SyscallSource, SyscallSpec, UnknownCapability};
use tokio::sync::broadcast;

use crate::config::KernelConfig;
use crate::error::KernelError;
use crate::bus::EventBus;
use crate::events::{EventSink, KernelEvent};
use crate::events::RestoreRequest;
use crate::lifecycle;
use crate::models::{Models, ProviderFactory};
use crate::pcb::{Delivery, Process};
use crate::process::{Entry, ExitStatus, LogEntry, Pid, ProcessInfo, SpawnRequest};
use crate::resolve::Syscalls;
use crate::shared::Shared;
use crate::table::ProcessTable;
use crate::webhook::{WebhookError, WebhookRegistry, WebhookRequest, WebhookResponse};

/// The AgentOS kernel. Cheap to clone.
#[derive(Clone)]
pub struct Kernel {
    pub(crate) inner: Arc<Shared>,
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
        lifecycle::restore(&self.inner, req, entries)
    }

    /// Creates a kernel whose syscalls besides its own come from `sources`
    /// (the driver runtime; none for a kernel with only its own syscalls),
    /// looked up in that order. `providers` builds a provider from its name
    /// and base URL (results are cached per pair).
    pub fn new(config: KernelConfig, sources: Vec<Arc<dyn SyscallSource>>, providers: ProviderFactory) -> Kernel {
        let inner = Arc::new(Shared {
            events: Arc::new(EventBus::new(config.event_capacity)),
            table: ProcessTable::new(),
            models: Models::new(providers, &config),
            syscalls: Syscalls::new(sources),
            webhooks: WebhookRegistry::new(config.webhook_auth.clone()),
            live: Default::default(),
            approvals: Default::default(),
            config,
        });
        lifecycle::start_reaper(&inner);
        Kernel { inner }
    }

    /// Reaps now the ended processes that the retention rules
    /// ([`KernelConfig::retention`]) no longer keep; returns their pids.
    /// (This also happens whenever a process ends, and periodically.)
    pub fn reap(&self) -> Vec<Pid> {
        lifecycle::reap(&self.inner)
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

    /// Reserves pids above every pid that owns state kept across runs
    /// (private long-term memory spaces; see [`SyscallSource::max_owned_pid`]).
    pub async fn reserve_memory_pids(&self) {
        for source in self.inner.syscalls.sources() {
            if let Some(max) = source.max_owned_pid().await {
                self.reserve_pids_up_to(max);
            }
        }
    }

    /// Releases what every syscall source holds (sandbox containers); call
    /// when the kernel stops.
    pub async fn shutdown(&self) {
        for source in self.inner.syscalls.sources() {
            source.shutdown().await;
        }
    }

    /// Parses grants as `SPAWN_AGENT` does: capability names, `all`, and
    /// syscall names used as permissions (`FS_WRITE` → `fs:rw`).
    pub fn parse_grants<S: AsRef<str>>(&self, grants: &[S]) -> Result<CapabilitySet, UnknownCapability> {
        self.inner.syscalls.parse_grants(grants)
    }

    /// Every syscall a holder of `caps` may use, as its system prompt lists
    /// them and as its native tool list offers them (one resolution).
    pub fn available_syscalls(&self, caps: &CapabilitySet) -> Vec<aos_abi::SyscallSpec> {
        self.inner.syscalls.available(caps)
    }

    pub fn config(&self) -> &KernelConfig {
        &self.inner.config
    }

    /// Starts a process and returns its pid. Must be called inside a tokio runtime.
    pub async fn spawn(&self, req: SpawnRequest) -> Result<Pid, KernelError> {
        lifecycle::spawn(&self.inner, req)
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
        lifecycle::kill(&self.inner, pid)
    }

    /// Queues a line on `pid`'s stdin (read by `SYS_READ_STDIN`).
    pub fn send_stdin(&self, pid: Pid, text: impl Into<String>) -> Result<(), KernelError> {
        let p = self.running(pid)?;
        p.deliver(&self.inner.events, Delivery::Stdin(text.into()));
        Ok(())
    }

    /// Puts a message from the user (pid 0) in `pid`'s mailbox (read by `RECV_MSG`).
    pub fn send_message(&self, pid: Pid, content: impl Into<String>) -> Result<(), KernelError> {
        let p = self.running(pid)?;
        p.deliver(&self.inner.events, Delivery::Msg { from: 0, content: content.into() });
        Ok(())
    }

    fn running(&self, pid: Pid) -> Result<Arc<Process>, KernelError> {
        let p = self.inner.lookup(pid)?;
        if let Some(status) = p.exit_status() {
            return Err(KernelError::NotRunning { pid, status });
        }
        Ok(p)
    }

    /// Waits until `pid` ends and returns how it ended.
    pub async fn wait(&self, pid: Pid) -> Result<ExitStatus, KernelError> {
        let p = self.inner.lookup(pid)?;
        let mut rx = p.exit_watch();
        let status = rx.wait_for(|s| s.is_some()).await.expect("sender lives in the process").clone();
        Ok(status.expect("checked by wait_for"))
    }

    /// How `pid` ended, or `None` while it runs.
    pub fn exit_status(&self, pid: Pid) -> Result<Option<ExitStatus>, KernelError> {
        Ok(self.inner.lookup(pid)?.exit_status())
    }

    pub fn info(&self, pid: Pid) -> Result<ProcessInfo, KernelError> {
        Ok(self.inner.lookup(pid)?.info())
    }

    /// Every process (running, or ended and not reaped yet), ordered by pid.
    /// Calls waiting for the operator, oldest first.
    pub fn pending_approvals(&self) -> Vec<crate::approval::PendingApproval> {
        self.inner.approvals.list()
    }

    /// The operator's answer to approval `id` (see [`crate::approval`]).
    pub fn answer_approval(
        &self,
        id: u64,
        answer: crate::approval::Answer,
    ) -> Result<crate::approval::PendingApproval, crate::approval::AnswerError> {
        self.inner.approvals.answer(id, answer)
    }

    pub fn ps(&self) -> Vec<ProcessInfo> {
        self.inner.table.snapshot()
    }

    /// The full history of `pid` (kept after exit until the process is reaped, never compacted).
    pub fn logs(&self, pid: Pid) -> Result<Vec<LogEntry>, KernelError> {
        Ok(self.inner.lookup(pid)?.log())
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
        self.inner.events.add_sink(sink);
    }

    /// Every syscall (kernel and driver) a process holding `caps` may use.
    pub fn syscalls_for(&self, caps: &CapabilitySet) -> Vec<SyscallSpec> {
        self.inner.syscalls.available(caps)
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
        let alive = self.inner.table.get(pid).filter(|p| p.is_running());
        let Some(p) = alive else {
            return Err(WebhookError::ProcessEnded(pid));
        };
        if !p.deliver(&self.inner.events, Delivery::Event { text, durable: false }) {
            return Err(WebhookError::ProcessEnded(pid));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(WebhookError::ProcessEnded(pid)),
            Err(_) => Err(WebhookError::Timeout(timeout)),
        }
    }
}
