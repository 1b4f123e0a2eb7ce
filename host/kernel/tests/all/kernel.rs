//! End-to-end kernel runs with scripted model replies.


use std::time::Duration;

use aos_kernel::{Entry, ExitStatus, KernelEvent, ProcessStatus};
use crate::support::*;

fn exited(code: i64, result: Option<&str>) -> ExitStatus {
    ExitStatus::Exited { code, result: result.map(str::to_string) }
}

#[tokio::test]
async fn exit_with_code_and_result() {
    let h = harness().await;
    let pid = h.spawn("say bye", &[r#"Done. [SYS_CALL::SYS_EXIT] {"code": 3, "result": "bye"}"#], &[]).await;
    assert_eq!(pid, 1);
    assert_eq!(h.wait(pid).await, exited(3, Some("bye")));
    let info = h.kernel.info(pid).unwrap();
    assert_eq!(info.status, ProcessStatus::Exited { code: 3 });
    assert_eq!(info.counters.steps, 1);
    assert_eq!(info.counters.syscalls.get("SYS_EXIT"), Some(&1));
    let name = info.workspace.file_name().unwrap().to_string_lossy().into_owned();
    assert!(info.workspace.parent().unwrap().ends_with("workspaces") && name.starts_with("1-") && info.workspace.is_dir(), "{name}");
    // System prompt lists exactly the allowed syscalls; the task is there.
    let first = h.seen(pid, 0);
    assert!(first.contains("[SYS_CALL::NAME]"));
    assert!(first.contains("- SYS_EXIT:") && first.contains("- SYS_WRITE_STDOUT:"));
    assert!(!first.contains("- SEND_MSG:") && !first.contains("- SPAWN_AGENT:"), "{first}");
    assert!(first.contains("[TASK] say bye"));
}

#[tokio::test]
async fn stdout_and_multiple_calls_in_order() {
    let h = harness().await;
    let pid = h
        .spawn(
            "print",
            &[
                "[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"one\"}\nthen\n```json\n[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"two\"}\n```\n[SYS_CALL::SYS_WRITE_STDOUT]\n{\"text\": \"three\"}",
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
            &[],
        )
        .await;
    assert_eq!(h.wait(pid).await, exited(0, None));
    assert_eq!(h.kernel.stdout(pid).unwrap(), ["one", "two", "three"]);
    let second = h.seen(pid, 1);
    let a = second.find("[RESULT SYS_WRITE_STDOUT#1] {\"written\":3}").expect(&second);
    let b = second.find("[RESULT SYS_WRITE_STDOUT#2] {\"written\":3}").unwrap();
    let c = second.find("[RESULT SYS_WRITE_STDOUT#3] {\"written\":5}").unwrap();
    assert!(a < b && b < c);
    // Logs keep replies, results and stdout.
    let logs = h.kernel.logs(pid).unwrap();
    assert!(matches!(logs[0].entry, Entry::Reply { .. }));
    assert_eq!(logs.iter().filter(|e| matches!(e.entry, Entry::Result { .. })).count(), 4);
}

#[tokio::test]
async fn calls_after_exit_are_not_run() {
    let h = harness().await;
    let pid = h
        .spawn("x", &["[SYS_CALL::SYS_EXIT] {\"code\": 0}\n[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"late\"}"], &[])
        .await;
    h.wait(pid).await;
    assert!(h.kernel.stdout(pid).unwrap().is_empty());
    assert!(h.kernel.logs(pid).unwrap().iter().any(|e| matches!(&e.entry, Entry::Notice { text } if text.contains("1 call(s) after SYS_EXIT"))));
}

#[tokio::test]
async fn error_feedback_loop() {
    let h = harness().await;
    let pid = h
        .spawn(
            "write",
            &[
                r#"[SYS_CALL::SYS_WRITE_STDOUT] {"txt": "oops"}"#,
                r#"[SYS_CALL::SYS_WRITE_STDOUT] {"text": "fixed"}"#,
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
            &[],
        )
        .await;
    assert_eq!(h.wait(pid).await, exited(0, None));
    let second = h.seen(pid, 1);
    assert!(
        second.contains("[ERROR SYS_WRITE_STDOUT#1] invalid arguments: SYS_WRITE_STDOUT: missing required field `text` (string); expected arguments: {\"type\":\"object\""),
        "{second}"
    );
    let third = h.seen(pid, 2);
    assert!(third.contains("[RESULT SYS_WRITE_STDOUT#2]"), "{third}");
    assert_eq!(h.kernel.info(pid).unwrap().counters.errors, 1);
}

#[tokio::test]
async fn parse_errors_unknown_and_denied_reach_the_model() {
    let h = harness().await;
    let pid = h
        .spawn(
            "x",
            &[
                "[SYS_CALL::SYS_WRITE_STDOUT] text=hi\n[SYS_CALL::FROB] {}\n[SYS_CALL::SEND_MSG] {\"to_pid\": 1, \"content\": \"x\"}\n[SYS_CALL::SYS_EXIT] {\"code\": \"zero\"}\n[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"unterminated}",
                "Just thinking, no calls.",
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
            &[],
        )
        .await;
    assert_eq!(h.wait(pid).await, exited(0, None));
    let s = h.seen(pid, 1);
    for needle in [
        "[ERROR SYS_WRITE_STDOUT#1] invalid call: [SYS_CALL::SYS_WRITE_STDOUT] at line 1: expected a JSON object after the tag, found `text=hi`",
        "[ERROR FROB#2] not found: unknown syscall `FROB`; available: SYS_WRITE_STDOUT, SYS_READ_STDIN, SYS_EXIT",
        "[ERROR SEND_MSG#3] denied: capability `ipc` not granted (needed by SEND_MSG)",
        "[ERROR SYS_EXIT#4] invalid arguments: SYS_EXIT: field `code` must be integer, got string `\"zero\"`",
        "[ERROR SYS_WRITE_STDOUT#5] invalid call: [SYS_CALL::SYS_WRITE_STDOUT] at line 5: invalid JSON at line 5 column 39: EOF while parsing a string",
    ] {
        assert!(s.contains(needle), "missing {needle:?} in\n{s}");
    }
    // The thought is kept and the process continued.
    assert!(h.seen(pid, 2).contains("Assistant: Just thinking, no calls."));
}

#[tokio::test]
async fn recv_blocks_until_send() {
    let h = harness().await;
    let receiver = h
        .spawn(
            "wait for a message",
            &[r#"[SYS_CALL::RECV_MSG] {}"#, r#"[SYS_CALL::SYS_EXIT] {"result": "got it"}"#],
            &["ipc"],
        )
        .await;
    h.wait_status(receiver, "BlockedRecv").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.kernel.info(receiver).unwrap().status, ProcessStatus::BlockedRecv);
    let sender = h
        .spawn(
            "send",
            &[&format!(r#"[SYS_CALL::SEND_MSG] {{"to_pid": {receiver}, "content": "hello {{there}}"}}"#), r#"[SYS_CALL::SYS_EXIT] {}"#],
            // Another tree: only with `ipc:any` (see isolation.rs).
            &["ipc:any"],
        )
        .await;
    assert_eq!(h.wait(receiver).await, exited(0, Some("got it")));
    h.wait(sender).await;
    assert!(h.seen(sender, 1).contains("[RESULT SEND_MSG#1] {\"delivered\":true}"));
    assert!(h.seen(receiver, 1).contains(&format!("[RESULT RECV_MSG#1] {{\"from\":{sender},\"content\":\"hello {{there}}\"}}")));
}

#[tokio::test]
async fn recv_timeout_and_messages_in_order() {
    let h = harness().await;
    let pid = h
        .spawn(
            "x",
            &[
                r#"[SYS_CALL::RECV_MSG] {"timeout": 0.05}"#,
                r#"[SYS_CALL::RECV_MSG] {} [SYS_CALL::RECV_MSG] {} [SYS_CALL::RECV_MSG] {}"#,
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
            &["ipc"],
        )
        .await;
    h.wait_status(pid, "BlockedRecv").await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    for i in 0..3 {
        h.kernel.send_message(pid, format!("m{i}")).unwrap();
    }
    h.wait(pid).await;
    assert!(h.seen(pid, 1).contains("[RESULT RECV_MSG#1] {\"timed_out\":true}"));
    let s = h.seen(pid, 2);
    let i0 = s.find("[RESULT RECV_MSG#2] {\"from\":0,\"content\":\"m0\"}").expect(&s);
    let i1 = s.find("[RESULT RECV_MSG#3] {\"from\":0,\"content\":\"m1\"}").unwrap();
    let i2 = s.find("[RESULT RECV_MSG#4] {\"from\":0,\"content\":\"m2\"}").unwrap();
    assert!(i0 < i1 && i1 < i2);
}

#[tokio::test]
async fn send_to_missing_process_is_an_error() {
    let h = harness().await;
    let pid = h
        .spawn("x", &[r#"[SYS_CALL::SEND_MSG] {"to_pid": 99, "content": "x"}"#, r#"[SYS_CALL::SYS_EXIT] {}"#], &["ipc"])
        .await;
    h.wait(pid).await;
    assert!(h.seen(pid, 1).contains("[ERROR SEND_MSG#1] not found: no process with pid 99"));
}

#[tokio::test]
async fn stdin_blocks_until_send_stdin() {
    let h = harness().await;
    let pid = h
        .spawn("echo", &[r#"[SYS_CALL::SYS_READ_STDIN] {}"#, r#"[SYS_CALL::SYS_EXIT] {}"#], &[])
        .await;
    h.wait_status(pid, "BlockedStdin").await;
    h.kernel.send_stdin(pid, "line one").unwrap();
    h.wait(pid).await;
    assert!(h.seen(pid, 1).contains("[RESULT SYS_READ_STDIN#1] {\"text\":\"line one\"}"));
    assert!(h.kernel.send_stdin(pid, "late").unwrap_err().to_string().contains("not running"));
    assert!(h.kernel.send_stdin(999, "x").unwrap_err().to_string().contains("no process with pid 999"));
}

#[tokio::test]
async fn spawn_child_pipe_to_parent_and_exit_event() {
    let h = harness().await;
    let child_model = h.script(
        "child",
        &[r#"[SYS_CALL::SYS_WRITE_STDOUT] {"text": "from child"}"#, r#"[SYS_CALL::SYS_EXIT] {"code": 0, "result": "child done"}"#],
    );
    let parent_model = h.script(
        "parent",
        &[
            &format!(
                r#"[SYS_CALL::SPAWN_AGENT] {{"task": "help", "role": "helper", "model": "{child_model}", "permissions": ["FS_READ", "ipc"], "pipe_to": 1}}"#
            ),
            r#"[SYS_CALL::SYS_READ_STDIN] {}"#,
            r#"Waiting for my child to exit. [SYS_CALL::RECV_MSG] {"timeout": 1}"#,
            r#"[SYS_CALL::SYS_EXIT] {}"#,
        ],
    );
    let parent = h.kernel.spawn(h.req("supervise", &parent_model, &["fs:rw", "spawn", "ipc"])).await.unwrap();
    assert_eq!(h.wait(parent).await, exited(0, None));
    let child = 2;
    assert_eq!(h.wait(child).await, exited(0, Some("child done")));
    let ci = h.kernel.info(child).unwrap();
    assert_eq!(ci.parent, Some(parent));
    assert_eq!(ci.capabilities, ["fs:ro", "ipc"]);
    assert_eq!(ci.role, "helper");
    assert_eq!(ci.workspace, h.kernel.info(parent).unwrap().workspace);
    assert_eq!(h.kernel.info(parent).unwrap().children, [child]);
    assert!(h.seen(parent, 1).contains("[RESULT SPAWN_AGENT#1] {\"pid\":2}"));
    assert!(h.seen(parent, 2).contains("[RESULT SYS_READ_STDIN#2] {\"text\":\"from child\"}"));
    // The child's exit event reaches the parent (at the latest on its last step).
    let all: String = (1..4).map(|n| h.seen(parent, n)).collect();
    assert!(all.contains("[EVENT] child 2 exited with code 0: child done"), "{all}");
    // The child's prompt shows its role and narrower syscalls.
    let c0 = h.seen(child, 0);
    assert!(c0.contains("Your role: helper") && c0.contains("- SEND_MSG:") && !c0.contains("- SPAWN_AGENT:"));
}

#[tokio::test]
async fn spawn_refused_for_rights_the_parent_lacks() {
    let h = harness().await;
    let pid = h
        .spawn(
            "x",
            &[
                r#"[SYS_CALL::SPAWN_AGENT] {"task": "t", "permissions": ["fs:rw", "net"]}"#,
                r#"[SYS_CALL::SPAWN_AGENT] {"task": "t", "permissions": ["bogus"]}"#,
                r#"[SYS_CALL::SPAWN_AGENT] {"task": "t", "permissions": [], "provider": "nope"}"#,
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
            &["fs:ro", "spawn"],
        )
        .await;
    h.wait(pid).await;
    let s3 = h.seen(pid, 3);
    // A provider the operator did not allow (see isolation.rs) is refused before it is started.
    assert!(s3.contains("[ERROR SPAWN_AGENT#3] denied: SPAWN_AGENT: provider `nope` is not allowed for a child"), "{s3}");
    let s = h.seen(pid, 1);
    assert!(s.contains("[ERROR SPAWN_AGENT#1] denied: cannot grant `fs:rw`, `net` to a child: this process does not hold it"), "{s}");
    assert!(h.seen(pid, 2).contains("[ERROR SPAWN_AGENT#2] invalid arguments: SPAWN_AGENT: field `permissions`: unknown capability `bogus`"));
    assert_eq!(h.kernel.ps().len(), 1);
}

/// `Kernel::spawn` (the control API's and `aos spawn --parent`'s way in)
/// refuses rights the parent lacks with the same rule, for a parent that is
/// still running (a parent that has ended is refused for that reason alone).
#[tokio::test]
async fn the_api_refuses_rights_a_live_parent_lacks() {
    let h = harness().await;
    let model = h.script("idle", &[r#"[SYS_CALL::SYS_READ_STDIN] {}"#]);
    let parent = h.kernel.spawn(h.req("parent", &model, &["fs:ro", "net:a.example", "spawn"])).await.unwrap();
    h.wait_status(parent, "BlockedStdin").await;
    let child = |caps: &[&str]| {
        let mut req = h.req("child", &model, caps);
        req.parent = Some(parent);
        req
    };
    for (caps, denial) in [
        (&["net"][..], "denied: the parent does not hold `net`; request only rights the parent holds"),
        (&["fs:rw", "net:b.example"][..], "denied: the parent does not hold `fs:rw`, `net:b.example`; request only rights the parent holds"),
        (&["fs:ro", "exec"][..], "denied: the parent does not hold `exec`; request only rights the parent holds"),
    ] {
        let err = h.kernel.spawn(child(caps)).await.unwrap_err().to_string();
        assert_eq!(err, denial, "requested {caps:?}");
        assert_eq!(h.kernel.info(parent).unwrap().status, aos_kernel::ProcessStatus::BlockedStdin);
    }
    assert_eq!(h.kernel.ps().len(), 1, "a refused spawn left a process behind");
    // What it holds, it can give: the parent was live and able to delegate.
    let ok = h.kernel.spawn(child(&["fs:ro", "net:A.example"])).await.unwrap();
    assert_eq!(h.kernel.info(ok).unwrap().capabilities, ["fs:ro", "net:a.example"]);
    h.kernel.kill(parent).unwrap();
}

#[tokio::test]
async fn step_budget() {
    let h = harness().await;
    let mut req = h.req("think forever", &h.script("thinker", &["hmm", "hmm", "hmm", "hmm"]), &[]);
    req.budgets.max_steps = Some(3);
    let pid = h.kernel.spawn(req).await.unwrap();
    match h.wait(pid).await {
        ExitStatus::Failed { reason } => assert!(reason.contains("step budget exhausted: 3 model calls"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.requests(pid).len(), 3);
}

#[tokio::test]
async fn token_budget() {
    let h = harness().await;
    let mut req = h.req("t", &h.script("tok", &["a", "b", "c", "d"]), &[]);
    req.budgets.max_tokens = Some(10);
    let pid = h.kernel.spawn(req).await.unwrap();
    match h.wait(pid).await {
        ExitStatus::Failed { reason } => assert!(reason.starts_with("token budget exhausted"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let info = h.kernel.info(pid).unwrap();
    assert_eq!(info.counters.steps, 1);
    assert!(info.counters.tokens_estimated);
    assert_eq!(info.remaining.max_tokens, Some(0));
}

#[tokio::test]
async fn wall_time_budget() {
    let h = harness().await;
    let mut req = h.req("t", &h.script("w", &[r#"[SYS_CALL::SYS_READ_STDIN] {}"#]), &[]);
    req.budgets.max_wall_time = Some(Duration::from_millis(100));
    let pid = h.kernel.spawn(req).await.unwrap();
    match h.wait(pid).await {
        ExitStatus::Failed { reason } => assert!(reason.starts_with("wall-time budget exhausted"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn child_budget_never_exceeds_parent_remaining() {
    let h = harness().await;
    let child_model = h.script("c", &[r#"[SYS_CALL::SYS_EXIT] {}"#]);
    let parent_model = h.script(
        "p",
        &["thinking", &format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "t", "model": "{child_model}", "permissions": []}}"#), r#"[SYS_CALL::SYS_EXIT] {}"#],
    );
    let mut req = h.req("t", &parent_model, &["spawn"]);
    req.budgets.max_steps = Some(10);
    let parent = h.kernel.spawn(req).await.unwrap();
    h.wait(parent).await;
    let child = h.kernel.info(2).unwrap();
    assert_eq!(child.budgets.max_steps, Some(8));
    assert!(child.capabilities.is_empty());
}

#[tokio::test]
async fn loop_breaker_halts_repeated_failures() {
    let h = harness().await;
    let bad = r#"[SYS_CALL::SYS_WRITE_STDOUT] {"txt": 1}"#;
    let pid = h.spawn("x", &[bad, bad, bad, bad, bad], &[]).await;
    match h.wait(pid).await {
        ExitStatus::Failed { reason } => {
            assert!(reason.starts_with("loop breaker: `SYS_WRITE_STDOUT` with the same arguments failed 3 times in a row; last error: invalid arguments"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.requests(pid).len(), 3);
}

#[tokio::test]
async fn loop_breaker_resets_on_different_calls() {
    let h = harness().await;
    let bad = r#"[SYS_CALL::SYS_WRITE_STDOUT] {"txt": 1}"#;
    let good = r#"[SYS_CALL::SYS_WRITE_STDOUT] {"text": "ok"}"#;
    let pid = h.spawn("x", &[bad, bad, good, bad, bad, r#"[SYS_CALL::SYS_EXIT] {}"#], &[]).await;
    assert_eq!(h.wait(pid).await, exited(0, None));
}

#[tokio::test]
async fn truncated_reply_is_fed_back() {
    let h = harness().await;
    let pid = h
        .spawn("x", &["!TRUNCATE![SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"a very long", r#"[SYS_CALL::SYS_EXIT] {}"#], &[])
        .await;
    assert_eq!(h.wait(pid).await, exited(0, None));
    let s = h.seen(pid, 1);
    assert!(s.contains("[ERROR SYS_CALL#1] limit exceeded: your reply was cut off at the max_tokens limit"), "{s}");
    assert!(h.kernel.stdout(pid).unwrap().is_empty());
}

#[tokio::test]
async fn provider_failure_fails_the_process() {
    let h = harness().await;
    let pid = h.spawn("x", &["!FAIL!service unavailable"], &[]).await;
    match h.wait(pid).await {
        ExitStatus::Failed { reason } => assert_eq!(reason, "model call failed: service unavailable"),
        other => panic!("{other:?}"),
    }
    // An exhausted script is a provider error too.
    let pid = h.spawn("x", &["thinking"], &[]).await;
    match h.wait(pid).await {
        ExitStatus::Failed { reason } => assert!(reason.contains("is exhausted"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn kill_tree_kills_all_descendants() {
    let h = harness().await;
    let leaf = h.script("leaf", &["!HANG!"]);
    let mid = h.script(
        "mid",
        &[
            &format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "leaf", "model": "{leaf}", "permissions": []}} [SYS_CALL::SPAWN_AGENT] {{"task": "leaf", "model": "{leaf}", "permissions": []}}"#),
            r#"[SYS_CALL::RECV_MSG] {}"#,
        ],
    );
    let root = h.script(
        "root",
        &[
            &format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "mid", "model": "{mid}", "permissions": ["spawn", "ipc"]}}"#),
            r#"[SYS_CALL::SYS_READ_STDIN] {}"#,
        ],
    );
    let other = h.spawn("bystander", &[r#"[SYS_CALL::SYS_READ_STDIN] {}"#], &[]).await;
    let root_pid = h.kernel.spawn(h.req("root", &root, &["spawn", "ipc"])).await.unwrap();
    // Wait for the whole tree: root(2) -> mid(3) -> leaves(4, 5).
    h.wait_status(root_pid, "BlockedStdin").await;
    h.wait_status(3, "BlockedRecv").await;
    h.wait_status(4, "WaitingModel").await;
    h.wait_status(5, "WaitingModel").await;
    let mut killed = h.kernel.kill(root_pid).unwrap();
    killed.sort();
    assert_eq!(killed, [2, 3, 4, 5]);
    for pid in [2, 3, 4, 5] {
        assert_eq!(h.wait(pid).await, ExitStatus::Killed);
        assert_eq!(h.kernel.info(pid).unwrap().status, ProcessStatus::Killed);
    }
    assert_eq!(h.kernel.info(other).unwrap().status, ProcessStatus::BlockedStdin);
    assert!(h.kernel.kill(root_pid).unwrap().is_empty());
    h.kernel.kill(other).unwrap();
    assert_eq!(h.wait(other).await, ExitStatus::Killed);
}

#[tokio::test]
async fn compaction_keeps_long_runs_alive() {
    let h = harness_with(|c| c.context_window = 1500).await;
    let mut replies: Vec<String> = (0..40)
        .map(|i| format!("step {i}: [SYS_CALL::SYS_WRITE_STDOUT] {{\"text\": \"{}\"}}", "x".repeat(200)))
        .collect();
    replies.push(r#"[SYS_CALL::SYS_EXIT] {}"#.into());
    let refs: Vec<&str> = replies.iter().map(String::as_str).collect();
    let mut events = h.kernel.subscribe();
    let pid = h.spawn("long", &refs, &[]).await;
    assert_eq!(h.wait(pid).await, exited(0, None));
    let last = h.seen(pid, 40);
    assert!(last.contains("earlier entries compacted ...]"), "{last}");
    assert!(last.contains("oldest are omitted"), "{last}");
    assert!(last.contains("- you: step 30:"), "{last}");
    assert!(last.contains("[TASK] long"));
    // The newest result is always present.
    assert!(last.contains("[RESULT SYS_WRITE_STDOUT#40]"), "{last}");
    let total: usize = h.requests(pid)[40].messages.iter().map(|m| m.content.len()).sum();
    assert!(total / 4 <= 1500 + 200, "context too big: {total} chars");
    // Logs are never compacted.
    assert_eq!(h.kernel.stdout(pid).unwrap().len(), 40);
    let mut compacted = false;
    while let Ok(ev) = events.try_recv() {
        compacted |= matches!(ev, KernelEvent::Compacted { .. });
    }
    assert!(compacted);
}

/// 40 steps that each add about 120 estimated tokens of history.
fn long_run_replies() -> Vec<String> {
    let mut replies: Vec<String> = (0..40)
        .map(|i| format!("step {i}: [SYS_CALL::SYS_WRITE_STDOUT] {{\"text\": \"{}\"}}", "x".repeat(200)))
        .collect();
    replies.push(r#"[SYS_CALL::SYS_EXIT] {}"#.into());
    replies
}

#[tokio::test]
async fn context_overflow_shrinks_the_window_and_the_process_lives_on() {
    // The configured window (8192 estimated tokens) is far above what the
    // model holds: 1500 real tokens, at 1.5 real tokens per estimated one.
    let h = harness().await;
    *h.rec.limit.lock() = Some(ContextLimit { limit: 1500, tokens_per_estimated: 1.5, window: None });
    let replies = long_run_replies();
    let refs: Vec<&str> = replies.iter().map(String::as_str).collect();
    let mut events = h.kernel.subscribe();
    let pid = h.spawn("long", &refs, &[]).await;
    assert_eq!(h.wait(pid).await, exited(0, None), "{:#?}", h.kernel.logs(pid));
    let rejected = h.rec.rejected.lock().clone();
    assert!(!rejected.is_empty(), "the run never reached the model's limit");
    // The shrunk window is kept: later steps do not overflow again.
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    // Every step was answered once; its history was compacted to fit.
    assert_eq!(h.requests(pid).len(), 41);
    let last = h.seen(pid, 40);
    assert!(last.contains("earlier entries compacted ...]"), "{last}");
    assert!(last.contains("[RESULT SYS_WRITE_STDOUT#40]"), "{last}");
    assert_eq!(h.kernel.stdout(pid).unwrap().len(), 40);
    let (mut shrunk, mut compacted) = (Vec::new(), 0);
    while let Ok(ev) = events.try_recv() {
        match ev {
            KernelEvent::ContextShrunk { pid: p, prompt_tokens, limit, window } if p == pid => {
                shrunk.push((prompt_tokens, limit, window))
            }
            KernelEvent::Compacted { pid: p, .. } if p == pid => compacted += 1,
            _ => {}
        }
    }
    assert_eq!(shrunk.len(), 1, "{shrunk:?}");
    let (prompt_tokens, limit, window) = shrunk[0];
    assert_eq!(limit, 1500);
    assert!(prompt_tokens > 1500);
    // 90 % of what fits: 1500 / 1.5 * 0.9 estimated tokens, give or take rounding.
    assert!((880..=905).contains(&window), "window {window}");
    assert!(compacted > 10, "compacted {compacted} times");
}

#[tokio::test]
async fn prompt_that_overflows_without_history_fails_with_what_to_do() {
    let h = harness().await;
    // Less than the system prompt alone.
    *h.rec.limit.lock() = Some(ContextLimit { limit: 50, tokens_per_estimated: 1.0, window: None });
    let pid = h.spawn("anything", &[r#"[SYS_CALL::SYS_EXIT] {}"#], &["fs:rw"]).await;
    let reason = match h.wait(pid).await {
        ExitStatus::Failed { reason } => reason,
        other => panic!("expected a failure, got {other:?}"),
    };
    assert!(reason.starts_with("context overflow:"), "{reason}");
    assert!(reason.contains("at most 50"), "{reason}");
    assert!(reason.contains("fewer capabilities"), "{reason}");
    assert!(reason.contains("larger n_ctx"), "{reason}");
    assert!(reason.contains("system prompt"), "{reason}");
    // Nothing left to compact: the same prompt is not sent again.
    assert_eq!(h.rec.rejected.lock().len(), 1);
    assert!(h.requests(pid).is_empty());
}

#[tokio::test]
async fn the_providers_context_window_caps_compaction() {
    // The provider says its model holds 700 tokens; the configured window is 8192.
    let h = harness().await;
    *h.rec.limit.lock() = Some(ContextLimit { limit: 800, tokens_per_estimated: 1.0, window: Some(700) });
    let replies = long_run_replies();
    let refs: Vec<&str> = replies.iter().map(String::as_str).collect();
    let pid = h.spawn("long", &refs, &[]).await;
    assert_eq!(h.wait(pid).await, exited(0, None), "{:#?}", h.kernel.logs(pid));
    // No prompt ever reached the model's limit: compaction used the provider's window.
    assert!(h.rec.rejected.lock().is_empty(), "{:?}", h.rec.rejected.lock());
    for r in h.requests(pid) {
        let est = aos_providers::estimate_prompt_tokens(&r.messages);
        assert!(est <= 700, "prompt of {est} estimated tokens");
    }
    assert!(h.seen(pid, 40).contains("earlier entries compacted ...]"));
}

#[tokio::test]
async fn events_stream_and_ps() {
    let h = harness().await;
    let mut rx = h.kernel.subscribe();
    let pid = h.spawn("x", &[r#"[SYS_CALL::SYS_WRITE_STDOUT] {"text": "hi"} [SYS_CALL::SYS_EXIT] {}"#], &[]).await;
    h.wait(pid).await;
    let mut kinds = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        // Every event is serializable (for journals and `logs -f`).
        let json = serde_json::to_string(&ev).unwrap();
        let back: KernelEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ev);
        kinds.push(json.split('"').nth(3).unwrap().to_string());
    }
    assert_eq!(kinds.first().map(String::as_str), Some("spawned"));
    assert_eq!(kinds.last().map(String::as_str), Some("exited"));
    assert!(kinds.iter().filter(|k| *k == "entry").count() >= 4);
    let ps = h.kernel.ps();
    assert_eq!(ps.len(), 1);
    serde_json::to_string(&ps).unwrap();
}

#[tokio::test]
async fn spawn_errors_are_actionable() {
    let h = harness().await;
    let e = h.kernel.spawn(h.req(" ", "m", &[])).await.unwrap_err();
    assert!(e.to_string().contains("the task is empty"));
    let mut r = h.req("t", "m", &[]);
    r.provider = "nope".into();
    let e = h.kernel.spawn(r).await.unwrap_err();
    assert!(e.to_string().starts_with("cannot start provider `nope`"), "{e}");
    let mut r = h.req("t", "m", &[]);
    r.pipe_to = Some(42);
    assert!(h.kernel.spawn(r).await.unwrap_err().to_string().contains("pipe_to: no process with pid 42"));
}

#[tokio::test]
async fn child_exit_interrupts_a_waiting_parent() {
    let h = harness().await;
    let child_model = h.script("c", &[r#"[SYS_CALL::SYS_EXIT] {"code": 2, "result": "partial"}"#]);
    let parent_model = h.script(
        "p",
        &[
            &format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "t", "model": "{child_model}", "permissions": []}} [SYS_CALL::RECV_MSG] {{}}"#),
            r#"[SYS_CALL::SYS_EXIT] {}"#,
        ],
    );
    let parent = h.kernel.spawn(h.req("t", &parent_model, &["spawn", "ipc"])).await.unwrap();
    assert_eq!(h.wait(parent).await, exited(0, None));
    let s = h.seen(parent, 1);
    let ev = s.find("[EVENT] child 2 exited with code 2: partial").expect(&s);
    let res = s.find("[RESULT RECV_MSG#2] {\"interrupted\"").expect(&s);
    assert!(ev < res);
}

#[tokio::test]
async fn model_slots_are_shared_fairly() {
    // One model call at a time; three always-ready processes take turns.
    let h = harness_with(|c| c.model_concurrency = 1).await;
    let mut pids = Vec::new();
    for _ in 0..3 {
        pids.push(h.spawn("t", &["a", "b", "c", r#"[SYS_CALL::SYS_EXIT] {}"#], &[]).await);
    }
    for &p in &pids {
        h.wait(p).await;
    }
    let order: Vec<u64> = h.rec.requests.lock().iter().map(|r| r.pid).collect();
    assert_eq!(order, [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_blocked_processes() {
    const N: usize = 10_000;
    // All of them are waited for after they end: keep them.
    let h = harness_with(|c| c.retention.max_ended = N).await;
    let model = h.script("idle", &[r#"[SYS_CALL::RECV_MSG] {}"#, r#"[SYS_CALL::SYS_EXIT] {}"#]);
    let ws = h.dir.path().join("shared");
    let mut pids = Vec::with_capacity(N);
    for _ in 0..N {
        let mut r = h.req("idle", &model, &["ipc"]);
        r.workspace = Some(ws.clone());
        pids.push(h.kernel.spawn(r).await.unwrap());
    }
    let t = std::time::Instant::now();
    loop {
        let blocked = h.kernel.ps().iter().filter(|i| i.status == ProcessStatus::BlockedRecv).count();
        if blocked == N {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "only {blocked} of {N} blocked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for &p in &pids {
        h.kernel.send_message(p, "go").unwrap();
    }
    for &p in &pids {
        assert_eq!(h.wait(p).await, exited(0, None));
    }
}

#[tokio::test]
async fn event_sinks_see_every_history_change_in_order() {
    use aos_kernel::EventSink;
    use std::sync::Arc;
    #[derive(Default)]
    struct Journal(parking_lot::Mutex<Vec<String>>);
    impl EventSink for Journal {
        fn record(&self, event: &KernelEvent) {
            self.0.lock().push(serde_json::to_string(event).unwrap());
        }
    }
    let h = harness().await;
    let j = Arc::new(Journal::default());
    h.kernel.add_sink(j.clone());
    let pid = h.spawn("x", &[r#"[SYS_CALL::SYS_WRITE_STDOUT] {"text": "hi"}"#, r#"[SYS_CALL::SYS_EXIT] {}"#], &[]).await;
    h.wait(pid).await;
    let lines = j.0.lock().clone();
    // Replaying the journal's entry events reproduces the log exactly.
    let replayed: Vec<aos_kernel::LogEntry> = lines
        .iter()
        .filter_map(|l| match serde_json::from_str::<KernelEvent>(l).unwrap() {
            KernelEvent::Entry { entry } => Some(entry),
            _ => None,
        })
        .collect();
    assert_eq!(replayed, h.kernel.logs(pid).unwrap());
    assert!(lines.last().unwrap().contains("\"event\":\"exited\""));
}

#[tokio::test]
async fn retention_keeps_only_the_newest_ended_processes() {
    let h = harness_with(|c| c.retention.max_ended = 2).await;
    let mut events = h.kernel.subscribe();
    // A running process is not counted and never reaped.
    let running = h.spawn("wait", &[r#"[SYS_CALL::SYS_READ_STDIN] {}"#], &[]).await;
    let mut ended = Vec::new();
    for i in 0..5 {
        let pid = h.spawn(&format!("job {i}"), &[&format!(r#"[SYS_CALL::SYS_EXIT] {{"code": {i}}}"#)], &[]).await;
        assert_eq!(h.wait(pid).await, exited(i, None));
        ended.push(pid);
    }
    let pids: Vec<u64> = h.kernel.ps().iter().map(|p| p.pid).collect();
    assert_eq!(pids, [running, ended[3], ended[4]]);
    assert_eq!(h.kernel.info(ended[4]).unwrap().status, ProcessStatus::Exited { code: 4 });
    assert_eq!(h.kernel.logs(ended[3]).unwrap().len(), 3, "reply, result, exit notice");
    for &pid in &ended[..3] {
        let e = h.kernel.logs(pid).unwrap_err().to_string();
        assert!(e.contains(&format!("no process with pid {pid}: it ended and was reaped")), "{e}");
        assert!(h.kernel.wait(pid).await.unwrap_err().to_string().contains("reaped"));
        assert!(h.kernel.kill(pid).is_err());
    }
    assert!(!h.kernel.info(99).unwrap_err().to_string().contains("reaped"));
    let mut reaped = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if let KernelEvent::Reaped { pid } = ev {
            reaped.push(pid);
        }
    }
    assert_eq!(reaped, ended[..3]);
    assert_eq!(h.kernel.info(running).unwrap().status, ProcessStatus::BlockedStdin);
    h.kernel.kill(running).unwrap();
    assert_eq!(h.wait(running).await, ExitStatus::Killed);
    // The killed one is now the newest ended process: the oldest kept one goes.
    let pids: Vec<u64> = h.kernel.ps().iter().map(|p| p.pid).collect();
    assert_eq!(pids, [running, ended[4]]);
}

#[tokio::test]
async fn zero_ttl_reaps_at_exit_but_never_a_running_process() {
    let h = harness_with(|c| c.retention.ended_ttl = Duration::ZERO).await;
    let sender = h
        .spawn(
            "send",
            &[
                r#"[SYS_CALL::SYS_READ_STDIN] {}"#,
                r#"[SYS_CALL::SEND_MSG] {"to_pid": 2, "content": "late"}"#,
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
            &["ipc"],
        )
        .await;
    let quick = h.spawn("quick", &[r#"[SYS_CALL::SYS_EXIT] {"code": 7}"#], &[]).await;
    assert_eq!(quick, 2);
    // A waiter that asked before the end still learns how it ended.
    assert_eq!(h.wait(quick).await, exited(7, None));
    let e = h.kernel.info(quick).unwrap_err().to_string();
    assert!(e.contains("it ended and was reaped"), "{e}");
    let e = h.kernel.send_message(quick, "hi").unwrap_err().to_string();
    assert!(e.contains("reaped"), "{e}");
    // The periodic reaper (every second with a zero TTL) leaves running processes alone.
    h.wait_status(sender, "BlockedStdin").await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(h.kernel.info(sender).unwrap().status, ProcessStatus::BlockedStdin);
    assert_eq!(h.kernel.ps().len(), 1);
    h.kernel.send_stdin(sender, "go").unwrap();
    assert_eq!(h.wait(sender).await, exited(0, None));
    let seen = h.seen(sender, 2);
    assert!(seen.contains("[ERROR SEND_MSG#2] not found: no process with pid 2 (it ended and was reaped)"), "{seen}");
    assert!(h.kernel.ps().is_empty());
}

#[tokio::test]
async fn an_ended_parent_is_kept_while_a_descendant_runs() {
    let h = harness_with(|c| c.retention.ended_ttl = Duration::ZERO).await;
    let child = h.script("child", &[r#"[SYS_CALL::SYS_READ_STDIN] {}"#]);
    let parent = h.script(
        "parent",
        &[
            &format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "work", "model": "{child}", "permissions": []}}"#),
            r#"[SYS_CALL::SYS_EXIT] {}"#,
        ],
    );
    let parent = h.kernel.spawn(h.req("supervise", &parent, &["spawn"])).await.unwrap();
    assert_eq!(h.wait(parent).await, exited(0, None));
    let child = 2;
    h.wait_status(child, "BlockedStdin").await;
    // Still listed (and killable as a tree) although its TTL is over.
    h.kernel.reap();
    assert_eq!(h.kernel.info(parent).unwrap().children, [child]);
    assert_eq!(h.kernel.kill(parent).unwrap(), [child]);
    assert_eq!(h.wait(child).await, ExitStatus::Killed);
    // With the subtree ended, both go.
    assert!(h.kernel.ps().is_empty(), "{:?}", h.kernel.ps());
    assert!(h.kernel.logs(parent).unwrap_err().to_string().contains("reaped"));
}
