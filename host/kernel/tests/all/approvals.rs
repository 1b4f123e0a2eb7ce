//! Approvals (`aos_kernel::approval`): a call a process's policy asks about
//! does not run until the operator approves it; a denial or a timeout is
//! the call's error, with the reason; "always" allows the pattern in the
//! tree; a child can never loosen its parent's policy; a kill withdraws
//! the pending approval.

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
