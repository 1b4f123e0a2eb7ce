//! Round-trips adversarial model replies through record → journal → replay,
//! with the kernel's own modules compiled in (`events`, `replay`, `codec`,
//! `parser`: the leaf modules the journal depends on, without wasmtime).
//!
//! For any reply text: the events the kernel records for it (the reply, a
//! result or error per parsed call with its arguments, queued input,
//! stdout, a webhook, the exit) are encoded as journal lines and read back
//! equal; replaying the lines gives the same state as applying the events;
//! a snapshot line of that state reads back equal; the recovery of the
//! interrupted process works on it. Any failure here is a reply that would
//! make `aos logs` fail or a restart drop the process.
#![no_main]

#[path = "../../src/parser.rs"]
#[allow(dead_code)]
mod parser;
#[path = "../../src/approval/policy.rs"]
#[allow(dead_code)]
mod policy;
/// `events` and `replay` name `crate::approval::{Policy, PendingApproval, Rule}`.
mod approval {
    pub use super::policy::{PendingApproval, Policy, Rule};
}
#[path = "../../src/events.rs"]
#[allow(dead_code)]
mod events;
#[path = "../../src/replay.rs"]
#[allow(dead_code)]
mod replay;
#[path = "../../src/codec.rs"]
#[allow(dead_code)]
mod codec;

use events::*;
use libfuzzer_sys::fuzz_target;

fn info(pid: Pid) -> ProcessInfo {
    ProcessInfo {
        pid,
        parent: None,
        children: vec![],
        status: ProcessStatus::Ready,
        role: "r".into(),
        task: "t".into(),
        provider: "script".into(),
        model: "m".into(),
        capabilities: vec!["ipc".into()],
        budgets: Budgets::default(),
        remaining: Budgets::default(),
        counters: Counters::default(),
        workspace: "/w".into(),
        pipe_to: None,
        base_url: None,
        tool_mode: aos_abi::ToolMode::Text,
        approvals: vec![approval::Policy::ask_dangerous()],
        model_progress: None,
    }
}

/// Writes `events` as journal lines and reads them back.
fn round_trip(events: &[KernelEvent]) -> Vec<KernelEvent> {
    let mut file = Vec::new();
    for ev in events {
        codec::encode_into(ev, &mut file).expect("every event encodes");
    }
    let lines: Vec<&[u8]> = file.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), events.len(), "one line per event (no raw newline inside a line)");
    lines
        .iter()
        .map(|l| codec::decode::<KernelEvent>(l).unwrap_or_else(|e| panic!("the reader refuses a line the writer wrote: {e}")))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(reply) = std::str::from_utf8(data) else { return };
    let pid = 7;
    // Record: what the scheduler journals for this reply.
    let mut events = vec![KernelEvent::Spawned { info: Box::new(info(pid)) }];
    let mut seq = 0;
    let mut entry = |events: &mut Vec<KernelEvent>, entry: Entry| {
        events.push(KernelEvent::Entry { entry: LogEntry { pid, seq, at_ms: seq, entry } });
        seq += 1;
    };
    entry(&mut events, Entry::Reply { text: reply.to_string(), truncated: false, tool_calls: vec![] });
    let interrupted_at = events.len();
    let mut id = 1;
    for call in parser::parse_reply(reply) {
        match call {
            Ok(c) => {
                assert!(c.span.end <= reply.len());
                entry(&mut events, Entry::Error {
                    id,
                    name: Some(c.name.clone()),
                    args: Some(c.args.clone()),
                    error: format!("unknown syscall `{}`", c.name),
                    call_id: None,
                });
                id += 1;
                entry(&mut events, Entry::Result { id, name: c.name.clone(), args: c.args.clone(), output: c.args, call_id: None });
            }
            Err(e) => entry(&mut events, Entry::Error { id, name: e.name, args: None, error: e.message, call_id: None }),
        }
        id += 1;
    }
    let text = reply.to_string();
    events.push(KernelEvent::Delivered { pid, queue: Queue::Mailbox, from: Some(1), content: text.clone(), at_ms: 1 });
    events.push(KernelEvent::Scheduled { pid, id: 1, due_ms: 5, prompt: text.clone() });
    events.push(KernelEvent::WebhookRegistered { pid, path: text.clone(), secret: text.clone() });
    events.push(KernelEvent::Status { pid, status: ProcessStatus::Paused { reason: text.clone() } });
    entry(&mut events, Entry::Stdout { text: text.clone() });
    entry(&mut events, Entry::Event { text: text.clone() });
    events.push(KernelEvent::Exiting { pid, code: -1, result: Some(text.clone()) });
    events.push(KernelEvent::Exited { pid, status: ExitStatus::Failed { reason: text } });

    // Journal: every line reads back as the event it was.
    let back = round_trip(&events);
    assert_eq!(back, events);

    // Replay: the lines give the same state as the events, at every cut.
    for cut in [interrupted_at, events.len()] {
        let mut live = replay::Replay::new();
        let mut replayed = replay::Replay::new();
        for (ev, b) in events[..cut].iter().zip(&back) {
            live.apply(ev);
            replayed.apply(b);
        }
        assert_eq!(replayed, live);
        let state = &replayed.procs[&pid];
        assert!(state.is_complete());
        // A snapshot of the process is one line that reads back equal.
        let line = codec::encode(state).expect("a snapshot encodes");
        let snap: RestoreRequest = codec::decode(&line).expect("a snapshot line reads back");
        assert_eq!(&snap, state);
        // Recovery of the process cut after its reply: one interrupted call at most, ids fresh.
        let rec = state.recovery_entries();
        assert!(matches!(rec.last(), Some(Entry::Notice { .. })));
        if let Some(Entry::Error { id, .. }) = rec.first() {
            assert!(*id >= state.next_call_id);
        }
    }
});
