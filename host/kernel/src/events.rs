//! Kernel events: everything that happens to a process, as one serializable
//! [`KernelEvent`] stream. Journals receive it synchronously through an
//! [`EventSink`] (crash recovery replays it); `logs -f` and `top` subscribe
//! to its broadcast. The [`EventBus`] is the one place events go out; the
//! changes that produce them are in [`crate::pcb`] (a running process) and
//! [`crate::lifecycle`] (spawn, end, reaping). A leaf module: it depends
//! only on the process vocabulary ([`crate::process`], [`crate::ipc::Queue`]).

use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::ipc;
use crate::process::{ExitStatus, LogEntry, Pid, ProcessInfo, ProcessStatus};

/// Something that happened in the kernel (serializable for journals and `logs -f`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum KernelEvent {
    Spawned { info: Box<ProcessInfo> },
    /// An entry appended to a process's history.
    Entry { entry: LogEntry },
    Status { pid: Pid, status: ProcessStatus },
    /// The oldest `entries` history entries were compacted out of the context;
    /// the context now starts at log index `context_start`.
    Compacted { pid: Pid, entries: usize, context_start: usize },
    /// The model rejected a prompt of `prompt_tokens` tokens (it accepts at
    /// most `limit`; 0 = not said), so the process's compaction window is now
    /// `window` estimated tokens (for its later steps too) and the call is
    /// retried after compacting more.
    ContextShrunk { pid: Pid, prompt_tokens: u64, limit: u64, window: usize },
    Exited { pid: Pid, status: ExitStatus },
    /// An item was put in a queue of `pid` (`from`: the sender of a mailbox message).
    Delivered { pid: Pid, queue: ipc::Queue, from: Option<Pid>, content: String, at_ms: u64 },
    /// `pid` took the oldest item of that queue.
    Consumed { pid: Pid, queue: ipc::Queue },
    /// A `SYS_SCHEDULE` wake-up was armed.
    Scheduled { pid: Pid, id: u64, due_ms: u64, prompt: String },
    /// It fired (its event was `Delivered` just before).
    Fired { pid: Pid, id: u64 },
    /// The ended process `pid` was removed from the table by the retention
    /// rules (`KernelConfig::retention`): `ps`, `logs` and `wait` no longer know it.
    Reaped { pid: Pid },
}

/// Receives every kernel event, synchronously and in order per process
/// (e.g. a journal writing them to disk).
pub trait EventSink: Send + Sync {
    fn record(&self, event: &KernelEvent);
}

/// Where events go: every sink, then the broadcast stream.
pub(crate) struct EventBus {
    tx: broadcast::Sender<KernelEvent>,
    sinks: RwLock<Vec<Arc<dyn EventSink>>>,
}

impl EventBus {
    /// A bus whose broadcast keeps `capacity` events for slow subscribers.
    pub fn new(capacity: usize) -> EventBus {
        EventBus { tx: broadcast::channel(capacity.max(16)).0, sinks: RwLock::new(Vec::new()) }
    }

    /// Whether anyone listens (events are not even built otherwise).
    pub fn wants(&self) -> bool {
        self.tx.receiver_count() > 0 || !self.sinks.read().is_empty()
    }

    pub fn emit(&self, ev: KernelEvent) {
        for s in self.sinks.read().iter() {
            s.record(&ev);
        }
        let _ = self.tx.send(ev);
    }

    /// Emits the event `f` builds, if anyone listens.
    pub fn emit_with(&self, f: impl FnOnce() -> KernelEvent) {
        if self.wants() {
            self.emit(f());
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<KernelEvent> {
        self.tx.subscribe()
    }

    pub fn add_sink(&self, sink: Arc<dyn EventSink>) {
        self.sinks.write().push(sink);
    }
}
