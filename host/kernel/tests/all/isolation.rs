//! Adversarial tests of issue 12's classes 7, 4 and 3: state reused across
//! runs (workspaces), writes into unrelated process trees (`pipe_to`,
//! `SEND_MSG`), and host resources chosen by a model (`SPAWN_AGENT`'s
//! `provider` and `model`). Each attack is a scripted model reply.

use crate::support::*;

/// Class 7: every `aos run` in a home starts at pid 1; the second run's
/// pid 1 gets a new, empty workspace and cannot read the first one's files.
#[tokio::test]
async fn a_later_run_with_the_same_pid_gets_a_new_workspace() {
    let h = harness().await;
    let first = h
        .spawn(
            "keep a secret",
            &[r#"[SYS_CALL::FS_WRITE] {"path": "secret.txt", "content": "hunter2"} [SYS_CALL::SYS_EXIT] {}"#],
            &["fs:rw"],
        )
        .await;
    h.wait(first).await;
    let ws1 = h.kernel.info(first).unwrap().workspace;
    assert_eq!(std::fs::read_to_string(ws1.join("secret.txt")).unwrap(), "hunter2");

    let h = h.next_run().await;
    let second = h
        .spawn("steal it", &[r#"[SYS_CALL::FS_READ] {"path": "secret.txt"}"#, r#"[SYS_CALL::SYS_EXIT] {}"#], &["fs:ro"])
        .await;
    assert_eq!(second, first, "a new run starts at the same pid");
    h.wait(second).await;
    let ws2 = h.kernel.info(second).unwrap().workspace;
    assert_ne!(ws1, ws2);
    let seen = h.seen(second, 1);
    assert!(seen.contains("[ERROR FS_READ#1] not found"), "{seen}");
    assert!(!seen.contains("hunter2"), "{seen}");
}
