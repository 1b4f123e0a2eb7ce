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

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::process::{now_ms, Pid};

/// A message in a mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpcMessage {
    pub from: Pid,
    pub content: String,
    pub sent_at_ms: u64,
}

/// Sending halves, held by the process control block.
pub(crate) struct IpcEnds {
    pub mailbox: mpsc::UnboundedSender<IpcMessage>,
    pub stdin: mpsc::UnboundedSender<String>,
    pub events: mpsc::UnboundedSender<String>,
}

/// Receiving halves, owned by the process's task.
pub(crate) struct IpcInbox {
    pub mailbox: mpsc::UnboundedReceiver<IpcMessage>,
    pub stdin: mpsc::UnboundedReceiver<String>,
    pub events: mpsc::UnboundedReceiver<String>,
}

pub(crate) fn channels() -> (IpcEnds, IpcInbox) {
    let (mtx, mrx) = mpsc::unbounded_channel();
    let (stx, srx) = mpsc::unbounded_channel();
    let (etx, erx) = mpsc::unbounded_channel();
    (IpcEnds { mailbox: mtx, stdin: stx, events: etx }, IpcInbox { mailbox: mrx, stdin: srx, events: erx })
}

impl IpcEnds {
    pub fn send_msg(&self, from: Pid, content: String) -> bool {
        self.mailbox.send(IpcMessage { from, content, sent_at_ms: now_ms() }).is_ok()
    }
    pub fn send_stdin(&self, text: String) -> bool {
        self.stdin.send(text).is_ok()
    }
    pub fn send_event(&self, text: String) -> bool {
        self.events.send(text).is_ok()
    }
}

/// Why a blocking receive returned.
#[derive(Debug, PartialEq)]
pub(crate) enum Woke<T> {
    Got(T),
    /// An event (timer, child exit) arrived first; it interrupts the wait so
    /// the process can react to it.
    Event(String),
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
    pub fn drain_events(&mut self) -> Vec<String> {
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
        ends.send_event("child exited".into());
        assert_eq!(inbox.recv_msg(None).await, Woke::Event("child exited".into()));
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
