//! `Kernel::restore`: a process rebuilt from its history in a new kernel
//! (as after a daemon crash) keeps its pid, history and counters, gets the
//! recovery entries, and continues — with no completed call run again.

mod common;

use aos_kernel::{Entry, ExitStatus, RestoreRequest};
use common::*;

fn next_call_id(log: &[aos_kernel::LogEntry]) -> u64 {
    log.iter()
        .filter_map(|e| match &e.entry {
            Entry::Result { id, .. } | Entry::Error { id, .. } => Some(*id),
            _ => None,
        })
        .max()
        .unwrap_or(0)
        + 1
}

#[tokio::test]
async fn restored_process_continues_without_repeating_calls() {
    let a = harness().await;
    let pid = a
        .spawn(
            "log twice",
            &[r#"[SYS_CALL::FS_WRITE] {"path": "log.txt", "content": "one\n", "append": true}
[SYS_CALL::RECV_MSG] {}"#],
            &["fs:rw", "ipc"],
        )
        .await;
    a.wait_status(pid, "BlockedRecv").await;
    // What a journal holds at the moment of the crash.
    let mut info = a.kernel.info(pid).unwrap();
    let log = a.kernel.logs(pid).unwrap();
    let next = next_call_id(&log);
    assert_eq!(next, 2, "FS_WRITE#1 done, RECV_MSG#2 in flight: {log:#?}");
    a.kernel.kill(pid).unwrap(); // the old kernel is gone
    a.wait(pid).await;

    let b = harness().await;
    // The model's next answer (its script continues where it left off).
    info.model = b.script(
        "cont",
        &[r#"[SYS_CALL::FS_WRITE] {"path": "log.txt", "content": "two\n", "append": true}
[SYS_CALL::SYS_EXIT] {"code": 0, "result": "done"}"#],
    );
    let workspace = info.workspace.clone();
    let restored = b
        .kernel
        .restore(
            RestoreRequest {
                info,
                base_url: None,
                log: log.clone(),
                context_start: 0,
                compacted: 0,
                next_call_id: next,
                exit: None,
            },
            vec![Entry::Error {
                id: next,
                name: Some("RECV_MSG".into()),
                args: Some(serde_json::json!({})),
                error: "interrupted: the kernel restarted while this call was running; it was not retried".into(),
            }],
        )
        .await
        .unwrap();
    assert_eq!(restored, pid);
    assert!(matches!(b.wait(pid).await, ExitStatus::Exited { code: 0, .. }));
    // The side effect of the first reply happened once.
    assert_eq!(std::fs::read_to_string(workspace.join("log.txt")).unwrap(), "one\ntwo\n");
    // The model saw its whole history and the interruption.
    let seen = b.seen(pid, 0);
    assert!(seen.contains("[RESULT FS_WRITE#1]"), "{seen}");
    assert!(seen.contains("[ERROR RECV_MSG#2] interrupted"), "{seen}");
    // The history continues the old one; the next call got the next id.
    let logs = b.kernel.logs(pid).unwrap();
    assert_eq!(&logs[..log.len()], &log[..]);
    assert!(logs.iter().any(|e| matches!(&e.entry, Entry::Result { id: 3, name, .. } if name == "FS_WRITE")));
    // Counters carried over: two model calls in all.
    assert_eq!(b.kernel.info(pid).unwrap().counters.steps, 2);
    // New processes get pids above the restored one.
    let other = b.spawn("x", &["[SYS_CALL::SYS_EXIT] {}"], &[]).await;
    assert!(other > pid);
    // Restoring the same pid twice is refused.
    let again = b.kernel.info(pid).unwrap();
    let err = b
        .kernel
        .restore(
            RestoreRequest { info: again, base_url: None, log: vec![], context_start: 0, compacted: 0, next_call_id: 1, exit: None },
            vec![],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[tokio::test]
async fn exited_processes_are_restored_for_ps_and_logs_only() {
    let a = harness().await;
    let pid = a.spawn("quick", &[r#"[SYS_CALL::SYS_EXIT] {"code": 4}"#], &[]).await;
    let status = a.wait(pid).await;
    let info = a.kernel.info(pid).unwrap();
    let log = a.kernel.logs(pid).unwrap();
    let b = harness().await;
    b.kernel
        .restore(
            RestoreRequest {
                info,
                base_url: None,
                log: log.clone(),
                context_start: 0,
                compacted: 0,
                next_call_id: next_call_id(&log),
                exit: Some(status.clone()),
            },
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(b.wait(pid).await, status);
    assert_eq!(b.kernel.logs(pid).unwrap(), log);
    assert!(b.requests(pid).is_empty(), "an exited process must not call its model");
}
