//! Kernel + real Wasm drivers (fs, timers): driver syscalls are listed,
//! validated, capability-checked and dispatched; timer effects are applied.


use std::time::{Duration, Instant};

use aos_kernel::{ExitStatus, ProcessStatus};
use crate::support::*;

#[tokio::test]
async fn fs_calls_run_in_the_workspace() {
    let h = harness().await;
    let pid = h
        .spawn(
            "files",
            &[
                r#"[SYS_CALL::FS_WRITE] {"path": "notes.txt", "content": "hello"} [SYS_CALL::FS_READ] {"path": "notes.txt"}"#,
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
            &["fs:rw"],
        )
        .await;
    assert!(matches!(h.wait(pid).await, ExitStatus::Exited { code: 0, .. }));
    let first = h.seen(pid, 0);
    assert!(first.contains("- FS_READ:") && first.contains("- FS_WRITE:"), "{first}");
    let s = h.seen(pid, 1);
    assert!(s.contains("[RESULT FS_WRITE#1]"), "{s}");
    assert!(s.contains("[RESULT FS_READ#2]") && s.contains("hello"), "{s}");
    let ws = h.kernel.info(pid).unwrap().workspace;
    assert_eq!(std::fs::read_to_string(ws.join("notes.txt")).unwrap(), "hello");
}

#[tokio::test]
async fn driver_calls_are_checked_before_running() {
    let h = harness().await;
    let pid = h
        .spawn(
            "files",
            &[
                "[SYS_CALL::FS_WRITE] {\"path\": \"a\", \"content\": \"x\"}\n[SYS_CALL::FS_READ] {}\n[SYS_CALL::FS_READ] {\"path\": 7}\n[SYS_CALL::SLEEP] {\"seconds\": 1}",
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
            &["fs:ro"],
        )
        .await;
    h.wait(pid).await;
    let first = h.seen(pid, 0);
    assert!(first.contains("- FS_READ:") && !first.contains("- FS_WRITE:"), "{first}");
    let s = h.seen(pid, 1);
    for needle in [
        "[ERROR FS_WRITE#1] denied: capability `fs:rw` not granted (needed by FS_WRITE)",
        "[ERROR FS_READ#2] invalid arguments: FS_READ: missing required field `path` (string); expected arguments: {",
        "[ERROR FS_READ#3] invalid arguments: FS_READ: field `path` must be string, got integer `7`",
        "[ERROR SLEEP#4] denied: capability `timers` not granted (needed by SLEEP)",
    ] {
        assert!(s.contains(needle), "missing {needle:?} in\n{s}");
    }
    assert!(!h.kernel.info(pid).unwrap().workspace.join("a").exists());
}

#[tokio::test]
async fn child_shares_the_parent_workspace_with_narrower_rights() {
    let h = harness().await;
    let child = h.script(
        "reader",
        &[
            r#"[SYS_CALL::FS_READ] {"path": "plan.txt"} [SYS_CALL::FS_WRITE] {"path": "x", "content": "y"}"#,
            r#"[SYS_CALL::SYS_EXIT] {}"#,
        ],
    );
    let parent = h.script(
        "writer",
        &[
            &format!(r#"[SYS_CALL::FS_WRITE] {{"path": "plan.txt", "content": "the plan"}} [SYS_CALL::SPAWN_AGENT] {{"task": "read", "model": "{child}", "permissions": ["FS_READ"]}}"#),
            r#"[SYS_CALL::RECV_MSG] {}"#,
            r#"[SYS_CALL::SYS_EXIT] {}"#,
        ],
    );
    let p = h.kernel.spawn(h.req("t", &parent, &["fs:rw", "spawn", "ipc"])).await.unwrap();
    h.wait(p).await;
    h.wait(2).await;
    let s = h.seen(2, 1);
    assert!(s.contains("[RESULT FS_READ#1]") && s.contains("the plan"), "{s}");
    assert!(s.contains("[ERROR FS_WRITE#2] denied: capability `fs:rw` not granted (needed by FS_WRITE)"), "{s}");
}

#[tokio::test]
async fn sleep_suspends_after_the_reply() {
    let h = harness().await;
    let pid = h
        .spawn(
            "nap",
            &[
                r#"[SYS_CALL::SLEEP] {"seconds": 0.3} [SYS_CALL::SYS_WRITE_STDOUT] {"text": "before sleeping"}"#,
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
            &["timers"],
        )
        .await;
    let t = Instant::now();
    h.wait_status(pid, "Sleeping").await;
    // The calls after SLEEP in the same reply ran before the process slept.
    assert_eq!(h.kernel.stdout(pid).unwrap(), ["before sleeping"]);
    h.wait(pid).await;
    assert!(t.elapsed() >= Duration::from_millis(250), "{:?}", t.elapsed());
    assert!(h.seen(pid, 1).contains("[RESULT SLEEP#1]"));
}

#[tokio::test]
async fn scheduled_wake_up_reaches_a_waiting_process() {
    let h = harness().await;
    let pid = h
        .spawn(
            "remind me",
            &[
                r#"[SYS_CALL::SYS_SCHEDULE] {"seconds": 0.2, "prompt": "check the oven"} [SYS_CALL::RECV_MSG] {}"#,
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
            &["timers", "ipc"],
        )
        .await;
    h.wait_status(pid, "BlockedRecv").await;
    assert_eq!(h.kernel.info(pid).unwrap().status, ProcessStatus::BlockedRecv);
    h.wait(pid).await;
    let s = h.seen(pid, 1);
    assert!(s.contains("[RESULT SYS_SCHEDULE#1]"), "{s}");
    assert!(s.contains("check the oven") && s.contains("[EVENT] scheduled wake-up"), "{s}");
    assert!(s.contains("[RESULT RECV_MSG#2] {\"interrupted\""), "{s}");
}

/// A process holding only `net:HOST` (no plain `net`) is offered NET_FETCH
/// and may call it for that host: the dispatcher resolves the grant exactly
/// as the prompt filter does (it used to require `net` and refuse with
/// "capability `net` not granted").
#[tokio::test]
async fn a_net_host_grant_reaches_net_fetch_for_that_host() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello").await;
            let _ = sock.shutdown().await;
        }
    });
    let home = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("aos-kernel-runtime");
    let mut rc = aos_runtime::RuntimeConfig::new(home);
    rc.net.allow = vec!["127.0.0.1".into()];
    let rt = aos_runtime::DriverRuntime::open(rc).await.unwrap();
    let h = harness_on(rt, |_| {}).await;
    let url = format!("http://127.0.0.1:{port}/");
    let pid = h
        .spawn(
            "fetch",
            &[
                &format!(r#"[SYS_CALL::NET_FETCH] {{"url": "{url}"}}"#),
                r#"[SYS_CALL::NET_FETCH] {"url": "http://example.com/"}"#,
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
            &["net:127.0.0.1"],
        )
        .await;
    assert!(matches!(h.wait(pid).await, ExitStatus::Exited { code: 0, .. }));
    assert!(h.seen(pid, 0).contains("- NET_FETCH:"));
    let s = h.seen(pid, 1);
    assert!(s.contains("[RESULT NET_FETCH#1]") && s.contains("hello"), "{s}");
    // Another host is refused by the policy, with the precise reason.
    let s = h.seen(pid, 2);
    assert!(s.contains("[ERROR NET_FETCH#2] denied: capability `net:example.com` not granted"), "{s}");
}
