//! The journal as the kernel sees it: the [`Journal`] interface (append,
//! durable-up-to, snapshot, replay) and [`DurabilityWatch`], the progress
//! report an implementation publishes and the kernel waits on.
//!
//! The contract, which a file (the daemon's `journal.rs`, the default) or a
//! database can implement:
//!
//! * [`Journal::append`] queues an event and returns its log sequence
//!   number ([`Lsn`], increasing in append order). It never blocks on I/O:
//!   the kernel calls it from scheduler threads, under per-process locks.
//! * The implementation makes events durable in lsn order, in batches
//!   (group commit), and publishes the highest lsn below which everything
//!   is durable with [`DurabilityWatch::publish`]. When it cannot (a write
//!   or fsync failed, a database is unreachable) it publishes a
//!   [`JournalFault`], keeps the events, retries by itself, and clears the
//!   fault once they are durable.
//! * [`Journal::snapshot`] asks for a snapshot: a restart then reads the
//!   snapshot and the events after it, not the whole history.
//! * [`Journal::replay`] returns what the journal held when it was opened,
//!   folded by [`crate::replay`] into a [`Replay`].
//!
//! What the kernel does with it ([`await_durable`]): every event
//! is appended as it is emitted and its lsn remembered by its process; a
//! process waits until its own events are durable before its next side
//! effect — a model call, a syscall that acts on the world, a delivery to
//! another process, telling waiters that it exited. While the journal
//! reports a fault, a waiting process shows as
//! [`ProcessStatus::Paused`](crate::ProcessStatus::Paused) with the reason,
//! and resumes by itself when its events are durable. Scheduler threads
//! never wait on disk: waiting is an `await`.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use std::sync::Arc;

use crate::error::KernelError;
use crate::bus::EventBus;
use crate::events::{KernelEvent, Pid, ProcessStatus, RestoreRequest};
use crate::kernel::Kernel;
use crate::pcb::Process;
use crate::replay::Replay;

/// Log sequence number: the position of an event in the journal (from 1).
pub type Lsn = u64;

/// Why the journal cannot make events durable now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalFault {
    /// What failed, e.g. "fsync of /home/x/journal/run-1.jsonl failed: No space left on device (os error 28)".
    pub error: String,
    /// When it started failing (Unix ms).
    pub since_ms: u64,
}

/// How far the journal got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durability {
    /// Every event with an lsn up to this one is durable.
    pub durable: Lsn,
    /// Set while events cannot be made durable.
    pub fault: Option<JournalFault>,
}

/// An error reading a journal.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JournalError(pub String);

/// The kernel's journal; see the module documentation for the contract.
pub trait Journal: Send + Sync {
    /// Queues `event`; returns its lsn. Must not block on I/O.
    fn append(&self, event: &KernelEvent) -> Lsn;
    /// The lsn of the last event appended.
    fn appended(&self) -> Lsn;
    /// Durability progress.
    fn watch(&self) -> &DurabilityWatch;
    /// Asks for a snapshot as soon as convenient.
    fn snapshot(&self);
    /// The state the journal held when it was opened.
    fn replay(&self) -> Result<Replay, JournalError>;
}

/// Durability progress, published by a journal and awaited by the kernel:
/// waiters are woken in lsn order, only when their own lsn is durable (no
/// thundering herd with thousands of waiting processes).
pub struct DurabilityWatch {
    inner: Mutex<WatchInner>,
    /// Changes of the fault state only (not every durable lsn).
    faults: watch::Sender<Option<JournalFault>>,
}

struct WatchInner {
    durable: Lsn,
    fault: Option<JournalFault>,
    waiters: BTreeMap<Lsn, Vec<oneshot::Sender<()>>>,
}

impl Default for DurabilityWatch {
    fn default() -> Self {
        DurabilityWatch {
            inner: Mutex::new(WatchInner { durable: 0, fault: None, waiters: BTreeMap::new() }),
            faults: watch::channel(None).0,
        }
    }
}

impl DurabilityWatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Called by the journal: everything up to `durable` is durable.
    pub fn publish_durable(&self, durable: Lsn) {
        let woken = {
            let mut g = self.inner.lock();
            if durable <= g.durable {
                return;
            }
            g.durable = durable;
            let later = g.waiters.split_off(&(durable + 1));
            std::mem::replace(&mut g.waiters, later)
        };
        for tx in woken.into_values().flatten() {
            let _ = tx.send(());
        }
    }

    /// Called by the journal: events cannot be made durable now (`Some`), or can again (`None`).
    pub fn publish_fault(&self, fault: Option<JournalFault>) {
        let changed = {
            let mut g = self.inner.lock();
            if g.fault.as_ref().map(|f| &f.error) == fault.as_ref().map(|f| &f.error) {
                false
            } else {
                g.fault = fault.clone();
                true
            }
        };
        if changed {
            self.faults.send_replace(fault);
        }
    }

    /// The current state.
    pub fn current(&self) -> Durability {
        let g = self.inner.lock();
        Durability { durable: g.durable, fault: g.fault.clone() }
    }

    /// Fault changes.
    pub fn faults(&self) -> watch::Receiver<Option<JournalFault>> {
        self.faults.subscribe()
    }

    /// Resolves once `lsn` is durable.
    pub fn wait(&self, lsn: Lsn) -> impl std::future::Future<Output = ()> + Send + 'static {
        let rx = {
            let mut g = self.inner.lock();
            if g.durable >= lsn {
                None
            } else {
                let (tx, rx) = oneshot::channel();
                g.waiters.entry(lsn).or_default().push(tx);
                Some(rx)
            }
        };
        async move {
            if let Some(rx) = rx {
                // A dropped sender means the journal is gone: nothing left to wait for.
                let _ = rx.await;
            }
        }
    }

    /// Wakes every waiter (the journal is closing).
    pub fn close(&self) {
        let woken = std::mem::take(&mut self.inner.lock().waiters);
        drop(woken);
    }
}

// ---- The kernel's side: waiting, pausing, attaching, recovering. ----

/// Waits until every journalled event of `p` is durable (at once
/// without a journal, or when they already are). While the journal
/// reports a fault, `p` shows as [`ProcessStatus::Paused`] with the
/// reason; it goes back to its status when its events are durable.
pub(crate) async fn await_durable(bus: &EventBus, p: &Process) {
    let Some(j) = bus.journal() else { return };
    let lsn = p.lsn();
    let w = j.watch();
    let mut faults = w.faults();
    let done = w.wait(lsn);
    tokio::pin!(done);
    let mut paused = false;
    let mut fault = w.current().fault;
    loop {
        if let Some(f) = &fault {
            if !paused {
                let status = ProcessStatus::Paused {
                    reason: format!("{}; it continues by itself once its events are written", f.error),
                };
                paused = p.pause(status.clone());
                if paused {
                    // The live stream only: a pause is not journalled.
                    bus.notify(KernelEvent::Status { pid: p.pid, status });
                }
            }
        }
        tokio::select! {
            biased;
            _ = &mut done => break,
            changed = faults.changed() => {
                if changed.is_err() {
                    // The journal is gone (shutdown): nothing more will become durable.
                    break;
                }
                fault = faults.borrow_and_update().clone();
            }
        }
    }
    if paused {
        if let Some(status) = p.unpause() {
            bus.notify(KernelEvent::Status { pid: p.pid, status });
        }
    }
}

impl Kernel {
    /// Journals every event from now on to `journal`, and makes each
    /// process wait for its own events to be durable before its side
    /// effects. Attach before recovering or spawning anything. A second
    /// journal is refused (returns false).
    pub fn attach_journal(&self, journal: Arc<dyn Journal>) -> bool {
        self.inner.events.attach_journal(journal)
    }

    /// Durability of the attached journal (`None` without one).
    pub fn durability(&self) -> Option<Durability> {
        self.inner.events.journal().map(|j| j.watch().current())
    }

    /// Waits until every event appended so far is durable, at most
    /// `timeout`; returns whether it is (at once without a journal).
    pub async fn sync(&self, timeout: std::time::Duration) -> bool {
        let Some(j) = self.inner.events.journal() else { return true };
        let lsn = j.appended();
        tokio::time::timeout(timeout, j.watch().wait(lsn)).await.is_ok()
    }

    /// Rebuilds every process of `replay` (what a journal held): parents
    /// before children; unfinished ones resume after their recovery
    /// entries (the call that was running reported as interrupted, never
    /// re-run), ended ones are kept for `ps --all`, `logs` and `wait`;
    /// reaped pids are remembered as reaped and never reused. Then reaps by
    /// the retention rules. Returns one line per process that was resumed
    /// or could not be.
    pub async fn recover(&self, replay: Replay) -> Vec<String> {
        let mut report = Vec::new();
        for &pid in &replay.reaped {
            self.note_reaped(pid);
            self.inner.table.reserve_up_to(pid);
        }
        // Pids grow with spawn order: parents come first.
        for (pid, req) in replay.procs {
            if !req.is_complete() {
                report.push(format!("pid {pid} was not resumed: its journal has a gap"));
                continue;
            }
            let unfinished = req.exit.is_none();
            let entries = if unfinished { req.recovery_entries() } else { Vec::new() };
            let doing = match req.waits_for_approval() {
                Some(a) => Some(format!(" (its {} call waits for approval {} again)", a.syscall, a.id)),
                None => req.pending_calls().first().map(|c| format!(" (it was in {}; reported as interrupted)", c.name)),
            };
            match self.restore(req, entries).await {
                Ok(pid) if unfinished => {
                    report.push(format!("pid {pid} resumed from the journal{}", doing.unwrap_or_default()))
                }
                Ok(_) => {}
                Err(e) => report.push(format!("pid {pid} was not resumed: {e}")),
            }
        }
        // Ended processes of earlier runs count against the retention limits.
        self.reap();
        report
    }

    /// The state of `pid` as a restore would need it, taken from the live
    /// process: what replaying its journalled events must give back.
    /// Queued input is known to the journal only (`pending` is empty here);
    /// `next_call_id` follows the calls in the log (a call in flight has
    /// no entry yet: a restore reports it as interrupted under that id).
    pub fn checkpoint(&self, pid: Pid) -> Result<RestoreRequest, KernelError> {
        let p = self.inner.lookup(pid)?;
        let mut r = p.checkpoint();
        if r.exit.is_none() {
            r.webhooks = self.inner.webhooks.routes_of(pid);
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_in_lsn_order_only_when_durable() {
        let w = DurabilityWatch::new();
        let a = tokio::spawn(w.wait(3));
        let b = tokio::spawn(w.wait(5));
        tokio::task::yield_now().await;
        w.publish_durable(4);
        a.await.unwrap();
        assert!(!b.is_finished());
        assert_eq!(w.current().durable, 4);
        w.publish_durable(2); // never goes back
        assert_eq!(w.current().durable, 4);
        let mut faults = w.faults();
        w.publish_fault(Some(JournalFault { error: "disk full".into(), since_ms: 1 }));
        faults.changed().await.unwrap();
        assert_eq!(faults.borrow().as_ref().unwrap().error, "disk full");
        w.publish_durable(5);
        b.await.unwrap();
        w.wait(1).await;
        w.publish_fault(None);
        assert!(w.current().fault.is_none());
    }
}
