//! Approvals (`aos_kernel::approval`): a call a process's policy asks about
//! does not run until the operator approves it; a denial or a timeout is
//! the call's error, with the reason; "always" allows the pattern in the
//! tree; a child can never loosen its parent's policy; a kill withdraws
//! the pending approval; a restart (the journal's events replayed into a
//! new kernel) asks a pending approval again under its id and runs the call
//! once, reports an approved call it cut as interrupted (never run twice),
//! and keeps "always" rules.

use std::time::Duration;

use aos_kernel::approval::{Answer, Decision, Policy, Rule};
use aos_kernel::ExitStatus;

use crate::support::*;

/// Overwriting an existing file asks; everything else runs.
fn ask_overwrites() -> Policy {
    Policy { rules: vec![Rule { existing: true, ..Rule::new("FS_WRITE", Decision::Ask) }], default: Decision::Allow }
}

const WRITE_NEW: &str = r#"[SYS_CALL::FS_WRITE] {"path": "notes.txt", "content": "first"}"#;
const OVERWRITE: &str = r#"[SYS_CALL::FS_WRITE] {"path": "notes.txt", "content": "second"}"#;
const EXIT: &str = r#"[SYS_CALL::SYS_EXIT] {}"#;

/// The only pending approval, once it is there.
async fn pending(h: &Harness) -> aos_kernel::approval::PendingApproval {
    for _ in 0..2000 {
        if let Some(p) = h.kernel.pending_approvals().into_iter().next() {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no approval was asked for; processes: {:#?}", h.kernel.ps());
}

fn notes(h: &Harness, pid: u64) -> String {
    std::fs::read_to_string(h.kernel.info(pid).unwrap().workspace.join("notes.txt")).unwrap()
}

#[tokio::test]
async fn an_asked_call_waits_for_the_operator_and_runs_once_approved() {
    let h = harness_with(|c| c.approvals = ask_overwrites()).await;
    let pid = h.spawn("write twice", &[WRITE_NEW, OVERWRITE, EXIT], &["fs:rw"]).await;
    let p = pending(&h).await;
    assert_eq!((p.pid, p.syscall.as_str()), (pid, "FS_WRITE"));
    assert_eq!(p.args["content"], "second");
    h.wait_status(pid, "Approval").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(notes(&h, pid), "first", "the asked call must not run before it is approved");
    assert_eq!(h.requests(pid).len(), 2, "the process waits: no model call while it is asked");

    h.kernel.answer_approval(p.id, Answer::Approve { always: false }).unwrap();
    assert!(matches!(h.wait(pid).await, ExitStatus::Exited { code: 0, .. }));
    assert_eq!(notes(&h, pid), "second");
    assert!(h.seen(pid, 2).contains("[RESULT FS_WRITE#2]"), "{}", h.seen(pid, 2));
    assert!(h.kernel.pending_approvals().is_empty());
    assert!(h.kernel.answer_approval(p.id, Answer::Approve { always: false }).is_err(), "answered once only");
}

#[tokio::test]
async fn a_denied_call_does_not_run_and_the_model_gets_the_reason() {
    let h = harness_with(|c| c.approvals = ask_overwrites()).await;
    let pid = h.spawn("write twice", &[WRITE_NEW, OVERWRITE, EXIT], &["fs:rw"]).await;
    let p = pending(&h).await;
    h.kernel.answer_approval(p.id, Answer::Deny { reason: Some("keep the first version".into()) }).unwrap();
    h.wait(pid).await;
    assert_eq!(notes(&h, pid), "first");
    let seen = h.seen(pid, 2);
    assert!(seen.contains("[ERROR FS_WRITE#2] denied: by the operator: keep the first version"), "{seen}");
}

#[tokio::test]
async fn approve_always_allows_the_same_pattern_in_the_tree_only() {
    let h = harness_with(|c| c.approvals = ask_overwrites()).await;
    let other = r#"[SYS_CALL::FS_WRITE] {"path": "other.txt", "content": "x"}"#;
    let pid = h.spawn("write", &[WRITE_NEW, other, OVERWRITE, OVERWRITE, other, EXIT], &["fs:rw"]).await;
    let first = pending(&h).await;
    assert_eq!(first.args["path"], "notes.txt");
    h.kernel.answer_approval(first.id, Answer::Approve { always: true }).unwrap();
    // The second overwrite of notes.txt runs unasked; other.txt still asks.
    let second = pending(&h).await;
    assert_eq!(second.args["path"], "other.txt", "{second:?}");
    h.kernel.answer_approval(second.id, Answer::Approve { always: false }).unwrap();
    assert!(matches!(h.wait(pid).await, ExitStatus::Exited { code: 0, .. }));

    // Another tree does not inherit the rule.
    let again = h.spawn("write", &[WRITE_NEW, OVERWRITE, EXIT], &["fs:rw"]).await;
    let p = pending(&h).await;
    assert_eq!(p.pid, again);
    h.kernel.kill(again).unwrap();
}

#[tokio::test]
async fn an_unanswered_approval_is_a_denial() {
    let h = harness_with(|c| {
        c.approvals = ask_overwrites();
        c.approval_timeout = Duration::from_millis(300);
    })
    .await;
    let pid = h.spawn("write twice", &[WRITE_NEW, OVERWRITE, EXIT], &["fs:rw"]).await;
    h.wait(pid).await;
    assert_eq!(notes(&h, pid), "first");
    let seen = h.seen(pid, 2);
    assert!(seen.contains("[ERROR FS_WRITE#2] denied: the operator did not answer approval"), "{seen}");
    assert!(h.kernel.pending_approvals().is_empty());
}

/// A child started by `SPAWN_AGENT`, or by the operator with a looser
/// policy of its own, still asks where its parent asks.
#[tokio::test]
async fn a_child_cannot_loosen_its_parents_policy() {
    let h = harness_with(|c| c.approvals = ask_overwrites()).await;
    let child = h.script("child", &[OVERWRITE, EXIT]);
    let spawn = format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "overwrite", "permissions": ["fs:rw"], "model": "{child}"}}"#);
    let parent = h
        .spawn("start a child", &[WRITE_NEW, &spawn, r#"[SYS_CALL::SLEEP] {"seconds": 30}"#], &["fs:rw", "spawn", "timers"])
        .await;
    let p = pending(&h).await;
    assert_ne!(p.pid, parent, "the child asks");
    assert_eq!(h.kernel.info(p.pid).unwrap().parent, Some(parent));
    h.kernel.kill(parent).unwrap();

    // The operator's own spawn of a child with `never` adds, never replaces.
    let h = harness_with(|c| c.approvals = ask_overwrites()).await;
    let parent = h.spawn("wait", &[WRITE_NEW, r#"[SYS_CALL::SLEEP] {"seconds": 30}"#], &["fs:rw", "timers"]).await;
    h.wait_status(parent, "Sleeping").await;
    let mut req = h.req("overwrite", &h.script("child2", &[OVERWRITE, EXIT]), &["fs:rw"]);
    req.parent = Some(parent);
    req.approvals = Some(Policy::never());
    let kid = h.kernel.spawn(req).await.unwrap();
    let p = pending(&h).await;
    assert_eq!(p.pid, kid);
    assert_eq!(h.kernel.info(kid).unwrap().approvals.len(), 2, "its parent's policy and its own");
    h.kernel.kill(parent).unwrap();
}

#[tokio::test]
async fn a_policy_deny_is_an_error_without_asking() {
    let h = harness_with(|c| {
        c.approvals = Policy { rules: vec![Rule::new("FS_WRITE", Decision::Deny)], default: Decision::Allow };
    })
    .await;
    let pid = h.spawn("write", &[WRITE_NEW, EXIT], &["fs:rw"]).await;
    h.wait(pid).await;
    assert!(h.seen(pid, 1).contains("[ERROR FS_WRITE#1] denied: FS_WRITE with these arguments is denied by this process's approval policy"), "{}", h.seen(pid, 1));
}

#[tokio::test]
async fn killing_a_process_withdraws_its_pending_approval() {
    let h = harness_with(|c| c.approvals = ask_overwrites()).await;
    let pid = h.spawn("write twice", &[WRITE_NEW, OVERWRITE, EXIT], &["fs:rw"]).await;
    let p = pending(&h).await;
    h.kernel.kill(pid).unwrap();
    assert_eq!(h.wait(pid).await, ExitStatus::Killed);
    assert!(h.kernel.pending_approvals().is_empty());
    assert!(h.kernel.answer_approval(p.id, Answer::Approve { always: false }).is_err());
    assert_eq!(notes(&h, pid), "first");
}

/// A process rebuilt from its journal (a daemon restart) keeps its
/// policies, whatever the new kernel's default.
#[tokio::test]
async fn a_restored_process_keeps_its_policies() {
    let a = harness_with(|c| c.approvals = ask_overwrites()).await;
    let pid = a.spawn("write", &[WRITE_NEW, EXIT], &["fs:rw"]).await;
    a.wait(pid).await;
    let mut info = a.kernel.info(pid).unwrap();
    assert_eq!(info.approvals, vec![ask_overwrites()]);
    info.status = aos_kernel::ProcessStatus::Ready;
    info.counters.steps = 0;

    // The new kernel asks nothing by default; the restored process still asks
    // before its write, now an overwrite.
    let b = harness().await;
    b.kernel.restore(aos_kernel::RestoreRequest::new(info), vec![]).await.unwrap();
    let p = pending(&b).await;
    assert_eq!((p.pid, p.syscall.as_str()), (pid, "FS_WRITE"));
    b.kernel.kill(pid).unwrap();
}

/// Collects every kernel event (what a journal would hold).
#[derive(Default)]
struct Events(parking_lot::Mutex<Vec<aos_kernel::KernelEvent>>);

impl aos_kernel::EventSink for Events {
    fn record(&self, e: &aos_kernel::KernelEvent) {
        self.0.lock().push(e.clone());
    }
}

impl Events {
    fn attach(h: &Harness) -> std::sync::Arc<Events> {
        let e = std::sync::Arc::new(Events::default());
        h.kernel.add_sink(e.clone());
        e
    }

    /// What a journal cut after the first event `upto` matches (all of them
    /// without one) replays to.
    fn replay(&self, upto: impl Fn(&aos_kernel::KernelEvent) -> bool) -> aos_kernel::Replay {
        let evs = self.0.lock().clone();
        let end = evs.iter().position(upto).map_or(evs.len(), |i| i + 1);
        let mut r = aos_kernel::Replay::new();
        for ev in &evs[..end] {
            // As the journal stores it: through the line codec.
            let line = aos_kernel::codec::encode(ev).unwrap();
            r.apply(&aos_kernel::codec::decode(&line).unwrap());
        }
        r
    }
}

fn errors_and_results(h: &Harness, pid: u64) -> Vec<String> {
    h.kernel
        .logs(pid)
        .unwrap()
        .iter()
        .filter(|e| matches!(e.entry, aos_kernel::Entry::Result { .. } | aos_kernel::Entry::Error { .. }))
        .map(|e| serde_json::to_string(&e.entry).unwrap())
        .collect()
}

#[tokio::test]
async fn a_pending_approval_survives_a_restart_under_its_id_and_runs_once() {
    let a = harness_with(|c| c.approvals = ask_overwrites()).await;
    let journal = Events::attach(&a);
    let after = r#"[SYS_CALL::FS_WRITE] {"path": "after.txt", "content": "rest of the reply"}"#;
    let reply = format!("{OVERWRITE}\n{after}");
    let pid = a.spawn("write twice", &[WRITE_NEW, &reply, EXIT], &["fs:rw"]).await;
    let asked = pending(&a).await;
    // The daemon dies while the call waits: the new kernel gets the journal.
    let replay = journal.replay(|_| false);
    assert_eq!(replay.procs[&pid].awaiting_approval.as_ref().map(|p| p.id), Some(asked.id));
    a.kernel.kill(pid).unwrap();
    a.wait(pid).await;
    // The new kernel counts ids from 1 again: it must not hand out the restored one.
    let b = harness_with(|c| c.approvals = ask_overwrites()).await;
    let report = b.kernel.recover(replay).await;
    assert!(report.iter().any(|l| l.contains(&format!("waits for approval {} again", asked.id))), "{report:?}");
    let again = pending(&b).await;
    assert_eq!((again.id, again.pid, &again.args, again.expires_at_ms), (asked.id, pid, &asked.args, asked.expires_at_ms));
    b.wait_status(pid, "Approval").await;
    let other = b.spawn("write twice", &[WRITE_NEW, OVERWRITE, EXIT], &["fs:rw"]).await;
    let fresh = loop {
        if let Some(p) = b.kernel.pending_approvals().into_iter().find(|p| p.pid == other) {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(fresh.id > asked.id, "a restored approval's id is never reused: {fresh:?} vs {asked:?}");
    b.kernel.kill(other).unwrap();
    assert_eq!(notes(&b, pid), "first", "the asked call did not run before the restart nor before the answer");

    b.kernel.answer_approval(asked.id, Answer::Approve { always: false }).unwrap();
    assert!(matches!(b.wait(pid).await, ExitStatus::Exited { code: 0, .. }), "{:#?}", b.kernel.logs(pid));
    assert_eq!(notes(&b, pid), "second");
    let ws = b.kernel.info(pid).unwrap().workspace;
    assert_eq!(std::fs::read_to_string(ws.join("after.txt")).unwrap(), "rest of the reply", "the rest of the reply ran");
    let calls = errors_and_results(&b, pid);
    assert_eq!(calls.len(), 4, "write, overwrite, the rest of the reply, exit: {calls:#?}");
    assert!(!calls.iter().any(|c| c.contains("interrupted") || c.contains("not run")), "{calls:#?}");
    let logs = serde_json::to_string(&b.kernel.logs(pid).unwrap()).unwrap();
    assert!(logs.contains(&format!("still waits for the operator's approval ({})", asked.id)), "{logs}");
}

#[tokio::test]
async fn an_approved_call_cut_by_a_restart_is_interrupted_not_run_again() {
    let a = harness_with(|c| c.approvals = ask_overwrites()).await;
    let journal = Events::attach(&a);
    let pid = a.spawn("write twice", &[WRITE_NEW, OVERWRITE, EXIT], &["fs:rw"]).await;
    let asked = pending(&a).await;
    a.kernel.answer_approval(asked.id, Answer::Approve { always: false }).unwrap();
    a.wait(pid).await;
    // The crash came right after the go-ahead was durable.
    let replay = journal.replay(|e| matches!(e, aos_kernel::KernelEvent::ApprovalGranted { .. }));
    assert!(replay.procs[&pid].awaiting_approval.is_none());
    std::fs::write(a.kernel.info(pid).unwrap().workspace.join("notes.txt"), "changed after the crash").unwrap();

    let b = harness_with(|c| c.approvals = ask_overwrites()).await;
    b.kernel.recover(replay).await;
    assert!(matches!(b.wait(pid).await, ExitStatus::Exited { code: 0, .. }), "{:#?}", b.kernel.logs(pid));
    assert!(b.kernel.pending_approvals().is_empty());
    assert_eq!(notes(&b, pid), "changed after the crash", "the approved call is not run again");
    let calls = errors_and_results(&b, pid);
    assert!(calls[1].contains("interrupted") && calls[1].contains("FS_WRITE"), "{calls:#?}");
}

#[tokio::test]
async fn approve_always_rules_survive_a_restart() {
    let a = harness_with(|c| c.approvals = ask_overwrites()).await;
    let journal = Events::attach(&a);
    let pid = a.spawn("write", &[WRITE_NEW, OVERWRITE, "[SYS_CALL::RECV_MSG] {}", OVERWRITE, EXIT], &["fs:rw", "ipc"]).await;
    let asked = pending(&a).await;
    a.kernel.answer_approval(asked.id, Answer::Approve { always: true }).unwrap();
    a.wait_status(pid, "BlockedRecv").await;
    let replay = journal.replay(|_| false);
    assert_eq!(replay.procs[&pid].approval_rules.len(), 1, "{:?}", replay.procs[&pid].approval_rules);
    a.kernel.kill(pid).unwrap();
    a.wait(pid).await;

    let b = harness_with(|c| {
        c.approvals = ask_overwrites();
        c.approval_timeout = Duration::from_millis(500);
    })
    .await;
    b.kernel.recover(replay).await;
    b.kernel.send_message(pid, "go on").unwrap();
    assert!(matches!(b.wait(pid).await, ExitStatus::Exited { code: 0, .. }));
    let calls = errors_and_results(&b, pid);
    assert!(!calls.iter().any(|c| c.contains("denied")), "the restored rule allows the overwrite unasked: {calls:#?}");
}
