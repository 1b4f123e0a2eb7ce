//! Prompts written for the original AgentOS run unchanged: every call of
//! its README, with the argument shapes it accepted (its `SPAWN_AGENT`
//! without `task`, syscall names as permissions, `pipe_to: 0`, string
//! webhook request ids, integer seconds, absolute paths in the workspace,
//! `null` for an optional field), goes through the kernel with scripted
//! replies. The rewriting is `host/kernel/src/compat.rs`; the differences
//! kept on purpose are in the README.

use std::time::Duration;

use aos_kernel::{ExitStatus, WebhookRequest, WebhookResponse};
use crate::support::*;

fn exited(code: i64, result: Option<&str>) -> ExitStatus {
    ExitStatus::Exited { code, result: result.map(str::to_string) }
}

/// The original's `SPAWN_AGENT {model, role, permissions, pipe_to}`: no
/// `task` (the role is the child's task), permissions as syscall names
/// (`SYS_WRITE_STDOUT` needs no right), its output piped to the parent.
#[tokio::test]
async fn spawn_agent_in_the_originals_shape() {
    let h = harness().await;
    let child = h.script(
        "orig-child",
        &[r#"[SYS_CALL::SYS_WRITE_STDOUT] {"text": "hello parent"}"#, r#"[SYS_CALL::SYS_EXIT] {}"#],
    );
    let parent = h.script(
        "orig-parent",
        &[
            &format!(r#"[SYS_CALL::SPAWN_AGENT] {{"model": "{child}", "role": "greet your parent", "permissions": ["SYS_WRITE_STDOUT"], "pipe_to": 1}}"#),
            r#"[SYS_CALL::SYS_READ_STDIN] {}"#,
            // Go's zero values: no pipe, the parent's model; no permissions: none.
            &format!(r#"[SYS_CALL::SPAWN_AGENT] {{"model": "", "role": "{child}", "pipe_to": 0}}"#),
            r#"[SYS_CALL::SYS_EXIT] {}"#,
        ],
    );
    let pid = h.kernel.spawn(h.req("supervise", &parent, &["spawn", "ipc"])).await.unwrap();
    assert_eq!(h.wait(pid).await, exited(0, None));
    let s = h.seen(pid, 1);
    assert!(s.contains("[RESULT SPAWN_AGENT#1] {\"pid\":2}"), "{s}");
    assert!(h.seen(pid, 2).contains("[RESULT SYS_READ_STDIN#2] {\"text\":\"hello parent\"}"));
    let c = h.kernel.info(2).unwrap();
    assert_eq!(c.task, "greet your parent");
    assert!(c.capabilities.is_empty(), "{:?}", c.capabilities);
    assert_eq!(c.pipe_to, Some(pid));
    assert!(h.seen(2, 0).contains("[TASK] greet your parent"));
    // The second child: the role (here the script's path) is its task; no pipe.
    assert!(h.seen(pid, 3).contains("[RESULT SPAWN_AGENT#3] {\"pid\":3}"), "{}", h.seen(pid, 3));
    let c3 = h.kernel.info(3).unwrap();
    assert_eq!((c3.pipe_to, c3.model.as_str()), (None, parent.as_str()));
    assert!(c3.capabilities.is_empty());
}

/// The rest of the original README's calls, in its shapes.
#[tokio::test]
async fn the_originals_other_calls_run_unchanged() {
    let h = harness().await;
    let peer = h.spawn("peer", &[r#"[SYS_CALL::RECV_MSG] {}"#, r#"[SYS_CALL::SYS_EXIT] {}"#], &["ipc"]).await;
    let pid = h
        .spawn(
            "the original's calls",
            &[
                r#"[SYS_CALL::FS_WRITE] {"path": "/test.txt", "content": "hello"}
[SYS_CALL::FS_READ] {"path": "/test.txt"}
[SYS_CALL::SEND_MSG] {"to_pid": 1, "content": "hello"}
[SYS_CALL::SYS_WRITE_STDOUT] {"text": "hello"}
[SYS_CALL::SYS_SCHEDULE] {"seconds": 1, "prompt": "Wake up"}
[SYS_CALL::SLEEP] {"seconds": 1}"#,
                r#"[SYS_CALL::SYS_EXIT] {"code": null, "result": null}"#,
            ],
            // Another tree: the original had no trees; here that needs `ipc:any`.
            &["fs:rw", "ipc:any", "timers"],
        )
        .await;
    // Pids: peer 1, this one 2 (the original's example sends to pid 1 here).
    assert_eq!((peer, pid), (1, 2));
    assert_eq!(h.wait(pid).await, exited(0, None));
    assert_eq!(h.wait(peer).await, exited(0, None));
    let s = h.seen(pid, 1);
    for call in ["FS_WRITE#1", "FS_READ#2", "SEND_MSG#3", "SYS_WRITE_STDOUT#4", "SYS_SCHEDULE#5", "SLEEP#6"] {
        assert!(s.contains(&format!("[RESULT {call}]")), "{call}: {s}");
    }
    assert!(s.contains("\"content\":\"hello\""), "{s}");
    let ws = h.kernel.info(pid).unwrap().workspace;
    assert_eq!(std::fs::read_to_string(ws.join("test.txt")).unwrap(), "hello");
    assert_eq!(h.kernel.stdout(pid).unwrap(), ["hello"]);
    assert!(h.seen(peer, 1).contains(&format!("{{\"from\":{pid},\"content\":\"hello\"}}")));
}

fn request(path: &str, secret: &str, body: &str) -> WebhookRequest {
    WebhookRequest {
        method: "POST".into(),
        path: path.into(),
        headers: vec![("X-AOS-Secret".into(), secret.into())],
        body: body.as_bytes().to_vec(),
    }
}

/// `SYS_REGISTER_WEBHOOK {path}` and `SYS_WEBHOOK_REPLY {request_id, status,
/// body}` with the original's string `request_id`.
#[tokio::test]
async fn webhook_reply_with_a_string_request_id() {
    let h = harness_with(|c| c.webhook_auth.allow_secret_header = true).await;
    let pid = h
        .spawn(
            "serve",
            &[
                r#"[SYS_CALL::SYS_REGISTER_WEBHOOK] {"path": "/api/webhook"}"#,
                r#"[SYS_CALL::RECV_MSG] {}"#,
                r#"[SYS_CALL::SYS_WEBHOOK_REPLY] {"request_id": "1", "status": 200, "body": "OK"}"#,
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
            &["webhook", "ipc"],
        )
        .await;
    h.wait_status(pid, "BlockedRecv").await;
    let secret = h
        .kernel
        .logs(pid)
        .unwrap()
        .into_iter()
        .find_map(|e| match e.entry {
            aos_kernel::Entry::Result { name, output, .. } if name == "SYS_REGISTER_WEBHOOK" => Some(output["secret"].as_str().unwrap().to_string()),
            _ => None,
        })
        .unwrap();
    let resp = h.kernel.webhook_deliver(request("/api/webhook", &secret, "ping"), Duration::from_secs(10)).await.unwrap();
    assert_eq!(resp, WebhookResponse { status: 200, body: "OK".into() });
    h.wait(pid).await;
    assert!(h.seen(pid, 3).contains("[RESULT SYS_WEBHOOK_REPLY#3] {\"replied\":1}"), "{}", h.seen(pid, 3));
}

/// Shapes the original did not take are still refused with the precise
/// error: a request id that is no number, a spawn with neither task nor role.
#[tokio::test]
async fn what_neither_accepts_is_still_explained() {
    let h = harness().await;
    let pid = h
        .spawn(
            "x",
            &[
                r#"[SYS_CALL::SYS_WEBHOOK_REPLY] {"request_id": "abc"}"#,
                r#"[SYS_CALL::SPAWN_AGENT] {"permissions": []}"#,
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
            &["webhook", "spawn"],
        )
        .await;
    h.wait(pid).await;
    let s = h.seen(pid, 1);
    assert!(s.contains("[ERROR SYS_WEBHOOK_REPLY#1] invalid arguments: SYS_WEBHOOK_REPLY: field `request_id` must be integer"), "{s}");
    let s = h.seen(pid, 2);
    assert!(s.contains("[ERROR SPAWN_AGENT#2] invalid arguments: SPAWN_AGENT: missing required field `task`"), "{s}");
}
