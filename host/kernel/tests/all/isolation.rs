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

/// Class 4: a process cannot write into the stdin (`pipe_to`) or mailbox
/// (`SEND_MSG`) of a process of another tree; within its own tree it can;
/// the operator (`aos send`, the control API: `Kernel::send_stdin`,
/// `Kernel::send_message`) reaches every process.
#[tokio::test]
async fn no_writes_into_another_process_tree() {
    let h = harness().await;
    let victim = h
        .spawn(
            "wait for input",
            &[r#"[SYS_CALL::SYS_READ_STDIN] {}"#, r#"[SYS_CALL::RECV_MSG] {}"#, r#"[SYS_CALL::SYS_EXIT] {}"#],
            &["ipc"],
        )
        .await;
    h.wait_status(victim, "BlockedStdin").await;

    // Holding only `spawn`: no `pipe_to` at all.
    let a = h
        .spawn(
            "inject",
            &[
                &format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "say hi", "permissions": [], "pipe_to": {victim}}}"#),
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
            &["spawn"],
        )
        .await;
    h.wait(a).await;
    let s = h.seen(a, 1);
    assert!(s.contains("[ERROR SPAWN_AGENT#1] denied: capability `ipc` not granted (needed by SPAWN_AGENT `pipe_to`)"), "{s}");

    // Holding `spawn` and `ipc`: not into another tree; within its own, yes.
    let child = h.script(
        "child",
        &[
            r#"[SYS_CALL::SEND_MSG] {"to_pid": 3, "content": "hi parent"} [SYS_CALL::SYS_WRITE_STDOUT] {"text": "piped"}"#,
            r#"[SYS_CALL::SYS_EXIT] {}"#,
        ],
    );
    let b_model = h.script(
        "b",
        &[
            &format!(
                r#"[SYS_CALL::SPAWN_AGENT] {{"task": "say hi", "permissions": [], "pipe_to": {victim}}} [SYS_CALL::SEND_MSG] {{"to_pid": {victim}, "content": "injected"}}"#
            ),
            &format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "say hi", "model": "{child}", "permissions": ["ipc"], "pipe_to": 3}}"#),
            r#"[SYS_CALL::RECV_MSG] {"timeout": 5}"#,
            r#"[SYS_CALL::RECV_MSG] {"timeout": 5}"#,
            r#"[SYS_CALL::SYS_EXIT] {}"#,
        ],
    );
    let b = h.kernel.spawn(h.req("inject", &b_model, &["spawn", "ipc"])).await.unwrap();
    assert_eq!(b, 3);
    h.wait(b).await;
    let s = h.seen(b, 1);
    let rule = "is not in your process tree (root 3); a process may only write to the stdin or mailbox of processes descending from its own root, unless the operator grants `ipc:any`";
    assert!(s.contains(&format!("[ERROR SPAWN_AGENT#1] denied: SPAWN_AGENT `pipe_to`: process {victim} {rule}")), "{s}");
    assert!(s.contains(&format!("[ERROR SEND_MSG#2] denied: SEND_MSG: process {victim} {rule}")), "{s}");
    assert!(h.seen(b, 2).contains("[RESULT SPAWN_AGENT#3] {\"pid\":4}"), "{}", h.seen(b, 2));
    h.wait(4).await;
    let c = h.seen(4, 1);
    assert!(c.contains("[RESULT SEND_MSG#1] {\"delivered\":true}") && c.contains("\"piped_to\":3"), "{c}");

    // The victim got nothing; the operator reaches it.
    assert_eq!(format!("{:?}", h.kernel.info(victim).unwrap().status), "BlockedStdin");
    h.kernel.send_stdin(victim, "from the operator").unwrap();
    h.kernel.send_message(victim, "operator message").unwrap();
    h.wait(victim).await;
    let v = format!("{}\n{}", h.seen(victim, 1), h.seen(victim, 2));
    assert!(v.contains("from the operator") && v.contains("operator message"), "{v}");
    assert!(!v.contains("injected") && !v.contains("\"text\":\"piped\""), "{v}");
}

/// Class 4: `ipc:any`, granted explicitly by the operator (never by `all`),
/// reaches other trees.
#[tokio::test]
async fn ipc_any_is_explicit_and_reaches_other_trees() {
    let h = harness().await;
    assert!(!h.kernel.parse_grants(&["all"]).unwrap().iter().any(|c| c.to_string() == "ipc:any"));
    let victim = h.spawn("wait", &[r#"[SYS_CALL::RECV_MSG] {}"#, r#"[SYS_CALL::SYS_EXIT] {}"#], &["ipc"]).await;
    let broad = h
        .spawn("send", &[&format!(r#"[SYS_CALL::SEND_MSG] {{"to_pid": {victim}, "content": "hello"}}"#), r#"[SYS_CALL::SYS_EXIT] {}"#], &["all"])
        .await;
    h.wait(broad).await;
    assert!(h.seen(broad, 1).contains("[ERROR SEND_MSG#1] denied"), "{}", h.seen(broad, 1));
    let any = h
        .spawn("send", &[&format!(r#"[SYS_CALL::SEND_MSG] {{"to_pid": {victim}, "content": "hello"}}"#), r#"[SYS_CALL::SYS_EXIT] {}"#], &["ipc:any"])
        .await;
    h.wait(any).await;
    assert!(h.seen(any, 1).contains("[RESULT SEND_MSG#1] {\"delivered\":true}"), "{}", h.seen(any, 1));
    h.wait(victim).await;
    assert!(h.seen(victim, 1).contains("hello"));
}
