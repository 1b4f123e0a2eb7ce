//! The event bus: where a kernel event goes — the attached journal (see
//! [`crate::durability`]), every [`EventSink`], then the broadcast stream.
//! Kept apart from [`crate::events`] so that module stays a leaf (serde
//! only) that the fuzz targets compile on their own.

use crate::events::{EventSink, KernelEvent};

/// Where events go: the attached journal (see [`crate::durability`]), every
/// sink, then the broadcast stream. Emitting returns the event's lsn in the
/// journal (0 without one), which the process the event is about keeps
/// (`Process::announce` in `pcb.rs`): it waits for it to be durable before
/// its next side effect.
pub(crate) struct EventBus {
    tx: tokio::sync::broadcast::Sender<KernelEvent>,
    sinks: parking_lot::RwLock<Vec<std::sync::Arc<dyn EventSink>>>,
    journal: std::sync::OnceLock<std::sync::Arc<dyn crate::durability::Journal>>,
}

impl EventBus {
    /// A bus whose broadcast keeps `capacity` events for slow subscribers.
    pub fn new(capacity: usize) -> EventBus {
        EventBus {
            tx: tokio::sync::broadcast::channel(capacity.max(16)).0,
            sinks: parking_lot::RwLock::new(Vec::new()),
            journal: std::sync::OnceLock::new(),
        }
    }

    /// Whether anyone listens (events are not even built otherwise).
    pub fn wants(&self) -> bool {
        self.journal.get().is_some() || self.tx.receiver_count() > 0 || !self.sinks.read().is_empty()
    }

    /// Sends `ev` everywhere; returns its lsn in the journal (0 without one).
    pub fn emit(&self, ev: KernelEvent) -> crate::durability::Lsn {
        let lsn = self.journal.get().map_or(0, |j| j.append(&ev));
        for s in self.sinks.read().iter() {
            s.record(&ev);
        }
        let _ = self.tx.send(ev);
        lsn
    }

    /// Emits the event `f` builds, if anyone listens; its lsn (0: none).
    pub fn emit_with(&self, f: impl FnOnce() -> KernelEvent) -> crate::durability::Lsn {
        if self.wants() {
            self.emit(f())
        } else {
            0
        }
    }

    /// A sender to the live stream only, for events sent from outside the
    /// kernel's tasks (a provider's streamed reply pieces).
    pub fn live_sender(&self) -> tokio::sync::broadcast::Sender<KernelEvent> {
        self.tx.clone()
    }

    /// Sends `ev` to the live stream only (not journalled: a pause).
    pub fn notify(&self, ev: KernelEvent) {
        let _ = self.tx.send(ev);
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<KernelEvent> {
        self.tx.subscribe()
    }

    pub fn add_sink(&self, sink: std::sync::Arc<dyn EventSink>) {
        self.sinks.write().push(sink);
    }

    /// Journals every event from now on to `journal`; false if one is attached already.
    pub fn attach_journal(&self, journal: std::sync::Arc<dyn crate::durability::Journal>) -> bool {
        self.journal.set(journal).is_ok()
    }

    pub fn journal(&self) -> Option<&std::sync::Arc<dyn crate::durability::Journal>> {
        self.journal.get()
    }
}
