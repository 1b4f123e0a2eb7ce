//! Inter-process communication: each process has a mailbox (`SEND_MSG` /
//! `RECV_MSG`), a stdin queue (`SYS_READ_STDIN`, fed by `Kernel::send_stdin`
//! and by processes piping their stdout here) and an event queue (timer
//! wake-ups, child exits). Stdout is recorded in the process's log.
//!
//! A blocking receive (`RECV_MSG`, `SYS_READ_STDIN`) is also interrupted
//! by an event, so a parent waiting for messages learns that its child exited
//! and a scheduled wake-up reaches a waiting process.
//!
//! All queues are unbounded tokio mpsc channels: messages between any two
//! processes arrive exactly once and in send order, and a blocked receiver
//! is parked on the channel's waker (no polling, no CPU). The sending halves
//! ([`IpcEnds`]) live in the process control block; the receiving halves
//! ([`IpcInbox`]) are owned by the process's task.
//!
//! Durability: every item put in a queue is announced as a
//! `KernelEvent::Delivered` and every item taken as a `KernelEvent::Consumed`
//! (see `Process::deliver`/`consumed` in `pcb.rs`), so a journal knows what was queued
//! but not yet received and a restore puts it back ([`PendingInput`]).
//! Webhook events are not durable (their HTTP caller cannot be answered after
//! a restart). Taking counts as consumed at once: a message taken by a call
//! that the crash interrupted is not delivered again (at most once).

use std::time::Duration;

use tokio::sync::mpsc;

pub use crate::events::{IpcMessage, PendingInput, PendingTimer, Queue};
use crate::process::{now_ms, Pid};

/// An item of the event queue.
#[derive(Debug, Clone, PartialEq)]
pub struct IpcEvent {
    pub text: String,
    /// Journalled (and restored after a crash).
    pub durable: bool,
}

/// Sending halves, held by the process control block.
pub(crate) struct IpcEnds {
    pub mailbox: mpsc::UnboundedSender<IpcMessage>,
    pub stdin: mpsc::UnboundedSender<String>,
    pub events: mpsc::UnboundedSender<IpcEvent>,
    /// Held while announcing and enqueueing one item, so the journal sees
    /// items in queue order.
    pub order: parking_lot::Mutex<()>,
}

/// Receiving halves, owned by the process's task.
pub(crate) struct IpcInbox {
    pub mailbox: mpsc::UnboundedReceiver<IpcMessage>,
    pub stdin: mpsc::UnboundedReceiver<String>,
    pub events: mpsc::UnboundedReceiver<IpcEvent>,
}

pub(crate) fn channels() -> (IpcEnds, IpcInbox) {
    let (mtx, mrx) = mpsc::unbounded_channel();
    let (stx, srx) = mpsc::unbounded_channel();
    let (etx, erx) = mpsc::unbounded_channel();
    (
        IpcEnds { mailbox: mtx, stdin: stx, events: etx, order: parking_lot::Mutex::new(()) },
        IpcInbox { mailbox: mrx, stdin: srx, events: erx },
    )
}

impl IpcEnds {
    pub fn send_msg(&self, from: Pid, content: String) -> bool {
        self.mailbox.send(IpcMessage { from, content, sent_at_ms: now_ms() }).is_ok()
    }
    /// Puts back a message as it was queued (restore).
    pub fn requeue_msg(&self, m: IpcMessage) -> bool {
        self.mailbox.send(m).is_ok()
    }
    pub fn send_stdin(&self, text: String) -> bool {
        self.stdin.send(text).is_ok()
    }
    pub fn send_event(&self, text: String, durable: bool) -> bool {
        self.events.send(IpcEvent { text, durable }).is_ok()
    }
}

/// Why a blocking receive returned.
#[derive(Debug, PartialEq)]
pub(crate) enum Woke<T> {
    Got(T),
    /// An event (timer, child exit) arrived first; it interrupts the wait so
    /// the process can react to it.
    Event(IpcEvent),
    TimedOut,
}

impl IpcInbox {
    /// Next message, or an event, waiting up to `timeout` (forever if `None`).
    pub async fn recv_msg(&mut self, timeout: Option<Duration>) -> Woke<IpcMessage> {
        let IpcInbox { mailbox, events, .. } = self;
        let fut = async {
            tokio::select! {
                biased;
                Some(m) = mailbox.recv() => Woke::Got(m),
                Some(e) = events.recv() => Woke::Event(e),
                else => std::future::pending().await,
            }
        };
        match timeout {
            None => fut.await,
            Some(t) => tokio::time::timeout(t, fut).await.unwrap_or(Woke::TimedOut),
        }
    }

    /// Next event only (the mailbox is left alone), waiting up to `timeout`:
    /// `RECV_MSG` of a process that holds `webhook` but not `ipc`.
    pub async fn wait_event(&mut self, timeout: Option<Duration>) -> Woke<IpcMessage> {
        let events = &mut self.events;
        let fut = async {
            match events.recv().await {
                Some(e) => Woke::Event(e),
                None => std::future::pending().await,
            }
        };
        match timeout {
            None => fut.await,
            Some(t) => tokio::time::timeout(t, fut).await.unwrap_or(Woke::TimedOut),
        }
    }

    /// Next stdin line, or an event; waits forever.
    pub async fn read_stdin(&mut self) -> Woke<String> {
        let IpcInbox { stdin, events, .. } = self;
        tokio::select! {
            biased;
            Some(l) = stdin.recv() => Woke::Got(l),
            Some(e) = events.recv() => Woke::Event(e),
            else => std::future::pending().await,
        }
    }

    /// Events that arrived so far, without waiting.
    pub fn drain_events(&mut self) -> Vec<IpcEvent> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_arrive_once_in_order() {
        let (ends, mut inbox) = channels();
        for i in 0..100 {
            assert!(ends.send_msg(1, format!("m{i}")));
        }
        for i in 0..100 {
            match inbox.recv_msg(None).await {
                Woke::Got(m) => assert_eq!(m.content, format!("m{i}")),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(inbox.recv_msg(Some(Duration::from_millis(10))).await, Woke::TimedOut);
        ends.send_event("child exited".into(), true);
        assert_eq!(inbox.recv_msg(None).await, Woke::Event(IpcEvent { text: "child exited".into(), durable: true }));
    }

    #[tokio::test]
    async fn waiting_for_events_leaves_the_mailbox_alone() {
        let (ends, mut inbox) = channels();
        ends.send_msg(2, "not for a webhook-only process".into());
        assert_eq!(inbox.wait_event(Some(Duration::from_millis(10))).await, Woke::TimedOut);
        ends.send_event("webhook request #1".into(), false);
        assert_eq!(inbox.wait_event(None).await, Woke::Event(IpcEvent { text: "webhook request #1".into(), durable: false }));
        // The message is still there for a reader that holds `ipc`.
        assert!(matches!(inbox.recv_msg(None).await, Woke::Got(m) if m.from == 2));
    }

    #[tokio::test]
    async fn blocked_receiver_is_woken() {
        let (ends, mut inbox) = channels();
        let h = tokio::spawn(async move { inbox.read_stdin().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        ends.send_stdin("hello".into());
        assert_eq!(h.await.unwrap(), Woke::Got("hello".to_string()));
    }
}
