//! Adversarial: MCP tools are reachable only through `mcp:NAME` or
//! `mcp:NAME/TOOL` (never through `all`), and delegation narrows them like
//! every other right. In `ADVERSARIAL_TESTS` (`./dev`) and
//! docs/THREAT_MODEL.md.

use aos_kernel::ExitStatus;

use crate::support::harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_grants_no_mcp_tool_and_a_denied_call_says_which_right_is_missing() {
    let Some(h) = harness(30.0).await else { return };
    let all = h.kernel.parse_grants(&["all"]).unwrap();
    assert!(h.kernel.available_syscalls(&all).iter().all(|s| !s.name.starts_with("MCP_")));
    let pid = h.spawn(&[r#"[SYS_CALL::MCP_EVERYTHING_ECHO] {"message": "x"}"#, r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#], &["all"]).await;
    h.wait(pid).await;
    let log = h.log(pid);
    assert!(
        log.contains("denied: capability `mcp:everything/echo` or `mcp:everything` not granted (needed by MCP_EVERYTHING_ECHO)"),
        "{log}"
    );
    assert!(!log.contains("Echo: x"), "{log}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tool_grants_that_tool_only_in_the_prompt_and_in_calls() {
    let Some(h) = harness(30.0).await else { return };
    let one = h.kernel.parse_grants(&["mcp:everything/echo"]).unwrap();
    let names: Vec<String> = h.kernel.available_syscalls(&one).into_iter().map(|s| s.name).filter(|n| n.starts_with("MCP_")).collect();
    assert_eq!(names, ["MCP_EVERYTHING_ECHO"]);
    // A syscall name used as a permission grants that one tool.
    assert_eq!(h.kernel.parse_grants(&["MCP_EVERYTHING_ECHO"]).unwrap(), one);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_narrowed_to_one_tool_cannot_call_another() {
    let Some(h) = harness(30.0).await else { return };
    let child = h.script(&[
        r#"[SYS_CALL::MCP_EVERYTHING_GET_SUM] {"a": 1, "b": 2}"#,
        r#"[SYS_CALL::MCP_EVERYTHING_ECHO] {"message": "child echo"}"#,
        r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#,
    ]);
    let spawn = format!(
        r#"[SYS_CALL::SPAWN_AGENT] {{"task": "t", "model": "{child}", "permissions": ["mcp:everything/echo"]}}"#
    );
    let parent = h.spawn(&[&spawn, r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#], &["mcp:everything", "spawn"]).await;
    h.wait(parent).await;
    let child_pid = parent + 1;
    h.wait(child_pid).await;
    let log = h.log(child_pid);
    assert!(log.contains("denied: capability `mcp:everything/get-sum` or `mcp:everything` not granted"), "{log}");
    assert!(!log.contains("The sum of"), "{log}");
    assert!(log.contains("Echo: child echo"), "{log}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_cannot_get_a_server_or_tool_its_parent_lacks() {
    let Some(h) = harness(30.0).await else { return };
    let child = h.script(&[r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#]);
    let wider = format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "t", "model": "{child}", "permissions": ["mcp:everything"]}}"#);
    let other = format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "t", "model": "{child}", "permissions": ["mcp:everything/get-sum"]}}"#);
    let parent = h
        .spawn(&[&wider, &other, r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#], &["mcp:everything/echo", "spawn"])
        .await;
    assert!(matches!(h.wait(parent).await, ExitStatus::Exited { .. }));
    let log = h.log(parent);
    assert!(log.contains("cannot grant `mcp:everything` to a child: this process does not hold it"), "{log}");
    assert!(log.contains("cannot grant `mcp:everything/get-sum` to a child: this process does not hold it"), "{log}");
    assert_eq!(h.kernel.ps().len(), 1, "a child was started: {:?}", h.kernel.ps());
    h.stop().await;
}
