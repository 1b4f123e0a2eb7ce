//! Tool calls through the kernel: results, argument errors, `isError`,
//! deadlines, a server killed mid-call.

use std::time::{Duration, Instant};

use aos_kernel::ExitStatus;

use crate::support::{everything_bin, harness, harness_on, sdk_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_are_listed_as_syscalls_with_their_input_schema() {
    let Some(h) = harness(30.0).await else { return };
    let specs = h.kernel.available_syscalls(&h.kernel.parse_grants(&["mcp:everything"]).unwrap());
    let echo = specs.iter().find(|s| s.name == "MCP_EVERYTHING_ECHO").expect("echo offered");
    assert!(echo.description.contains("tool `echo`") && echo.description.contains("Echoes back"), "{}", echo.description);
    assert_eq!(echo.args_schema["properties"]["message"]["type"], "string");
    assert!(specs.iter().any(|s| s.name == "MCP_EVERYTHING_GET_SUM"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_call_returns_the_tools_result_to_the_model() {
    let Some(h) = harness(30.0).await else { return };
    let pid = h
        .spawn(
            &[
                r#"[SYS_CALL::MCP_EVERYTHING_ECHO] {"message": "hello from aos"}"#,
                r#"[SYS_CALL::MCP_EVERYTHING_GET_TINY_IMAGE] {}"#,
                r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#,
            ],
            &["mcp:everything"],
        )
        .await;
    assert!(matches!(h.wait(pid).await, ExitStatus::Exited { code: 0, .. }));
    let log = h.log(pid);
    assert!(log.contains("Echo: hello from aos"), "{log}");
    // An image is summarised, never dumped.
    assert!(log.contains("image (image/png,") && log.contains("not shown"), "{log}");
    assert!(!log.contains("iVBORw0KGgo"), "raw image data reached the model: {log}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argument_error_is_fed_back_and_the_corrected_call_runs() {
    let Some(h) = harness(30.0).await else { return };
    let pid = h
        .spawn(
            &[
                r#"[SYS_CALL::MCP_EVERYTHING_GET_SUM] {"a": "one", "b": 2}"#,
                r#"[SYS_CALL::MCP_EVERYTHING_GET_SUM] {"a": 1, "b": 2}"#,
                r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#,
            ],
            &["mcp:everything"],
        )
        .await;
    assert!(matches!(h.wait(pid).await, ExitStatus::Exited { code: 0, .. }));
    let log = h.log(pid);
    assert!(log.contains("invalid_arguments") || log.contains("invalid arguments"), "{log}");
    assert!(log.contains("The sum of 1 and 2 is 3."), "{log}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_reporting_is_error_is_a_syscall_error_with_its_words() {
    let Some(h) = harness(30.0).await else { return };
    let pid = h
        .spawn(
            &[
                r#"[SYS_CALL::MCP_EVERYTHING_GET_RESOURCE_REFERENCE] {"resourceType": "Text", "resourceId": -1}"#,
                r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#,
            ],
            &["mcp:everything"],
        )
        .await;
    h.wait(pid).await;
    let log = h.log(pid);
    assert!(log.contains("MCP tool `get-resource-reference` of server `everything` failed"), "{log}");
    assert!(log.contains("Invalid resourceId: -1"), "{log}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_times_out_and_the_server_keeps_serving() {
    let Some(h) = harness(1.0).await else { return };
    let t0 = Instant::now();
    let pid = h
        .spawn(
            &[
                r#"[SYS_CALL::MCP_EVERYTHING_TRIGGER_LONG_RUNNING_OPERATION] {"duration": 20, "steps": 2}"#,
                r#"[SYS_CALL::MCP_EVERYTHING_ECHO] {"message": "still here"}"#,
                r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#,
            ],
            &["mcp:everything"],
        )
        .await;
    h.wait(pid).await;
    let log = h.log(pid);
    assert!(log.contains("did not answer within 1.0 s"), "{log}");
    assert!(log.contains("Echo: still here"), "{log}");
    assert!(t0.elapsed() < Duration::from_secs(15), "the deadline did not cut the call: {:?}", t0.elapsed());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_call_fails_that_call_and_restarts_on_the_next() {
    let Some(h) = harness(30.0).await else { return };
    let server = h.mcp.server("everything").unwrap().clone();
    let first = server.pid().await.unwrap();
    assert_eq!(server.starts(), 1);
    let pid = h
        .spawn(
            &[
                r#"[SYS_CALL::MCP_EVERYTHING_TRIGGER_LONG_RUNNING_OPERATION] {"duration": 20, "steps": 2}"#,
                r#"[SYS_CALL::MCP_EVERYTHING_ECHO] {"message": "after the crash"}"#,
                r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#,
            ],
            &["mcp:everything"],
        )
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    // SAFETY-free: kill(2) on the server's pid, which this test's source started.
    let status = std::process::Command::new("kill").arg("-KILL").arg(first.to_string()).status().unwrap();
    assert!(status.success());
    h.wait(pid).await;
    let log = h.log(pid);
    assert!(log.contains("MCP server `everything` stopped during the call to `trigger-long-running-operation`"), "{log}");
    assert!(log.contains("the next call starts it again"), "{log}");
    assert!(log.contains("Echo: after the crash"), "{log}");
    assert_eq!(server.starts(), 2);
    assert_ne!(server.pid().await.unwrap(), first);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_added_at_run_time_is_offered_after_list_changed() {
    let Some(sc) = sdk_server("dynamic.mjs") else { return };
    let h = harness_on(vec![("dyn".into(), sc)]).await;
    let caps = h.kernel.parse_grants(&["mcp:dyn"]).unwrap();
    let offered = |h: &crate::support::Harness| {
        h.kernel.available_syscalls(&caps).into_iter().map(|s| s.name).filter(|n| n.starts_with("MCP_")).collect::<Vec<_>>()
    };
    assert_eq!(offered(&h), ["MCP_DYN_GROW"]);
    let pid = h.spawn(&[r#"[SYS_CALL::MCP_DYN_GROW] {}"#, r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#], &["mcp:dyn"]).await;
    h.wait(pid).await;
    assert!(h.log(pid).contains("grown"), "{}", h.log(pid));
    let t0 = Instant::now();
    while !offered(&h).contains(&"MCP_DYN_LATE".to_string()) {
        assert!(t0.elapsed() < Duration::from_secs(10), "the new tool was never offered: {:?}", offered(&h));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = h.spawn(&[r#"[SYS_CALL::MCP_DYN_LATE] {"n": 21}"#, r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#], &["mcp:dyn"]).await;
    h.wait(pid).await;
    assert!(h.log(pid).contains("late 42"), "{}", h.log(pid));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_fails_to_start_says_why() {
    let mut cfg = aos_mcp::McpConfig::default();
    cfg.servers.insert("missing".into(), aos_mcp::ServerConfig::stdio_on_host("/nonexistent/mcp-server", vec![]));
    cfg.servers.insert(
        "dies".into(),
        aos_mcp::ServerConfig::stdio_on_host("sh", vec!["-c".into(), "echo 'fatal: GITHUB_TOKEN is not set' >&2; exit 3".into()]),
    );
    let source = aos_mcp::McpSource::new(&cfg, |k| std::env::var(k).ok()).unwrap();
    let results = source.start_all().await;
    let why = |name: &str| results.iter().find(|(n, _)| n == name).unwrap().1.clone().unwrap_err().to_string();
    let dies = why("dies");
    assert!(dies.contains("MCP server `dies` started but its MCP initialisation failed"), "{dies}");
    assert!(dies.contains("fatal: GITHUB_TOKEN is not set"), "{dies}");
    let missing = why("missing");
    assert_eq!(missing, "MCP server `missing`: cannot run `/nonexistent/mcp-server`: no such program (not found on PATH)");
    assert!(aos_abi::SyscallSource::offered(&source).is_empty());
}

/// A server that fails at the kernel's start (here: until a file exists,
/// as when a program is installed or a service comes up later) is started
/// again in the background, and its tools are offered once it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_failing_at_start_is_retried_until_it_starts() {
    let Some(bin) = everything_bin() else {
        aos_test_support::skip("a_server_failing_at_start_is_retried_until_it_starts", "server-everything is not installed (run ./dev setup)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let script = format!("test -e '{}' || {{ echo 'not ready yet' >&2; exit 1; }}; exec '{}' stdio", ready.display(), bin.display());
    let mut cfg = aos_mcp::McpConfig::default();
    cfg.servers.insert("late".into(), aos_mcp::ServerConfig::stdio_on_host("sh", vec!["-c".into(), script]));
    let source = std::sync::Arc::new(aos_mcp::McpSource::new(&cfg, |k| std::env::var(k).ok()).unwrap());
    let results = source.start_all().await;
    assert!(results[0].1.as_ref().unwrap_err().to_string().contains("not ready yet"), "{results:?}");
    source.retry_in_background("late", Duration::from_millis(100), Duration::from_millis(400));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(aos_abi::SyscallSource::offered(&*source).is_empty(), "still failing: nothing offered");
    std::fs::write(&ready, "").unwrap();
    let t0 = std::time::Instant::now();
    while aos_abi::SyscallSource::offered(&*source).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(30), "the server was never started again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(aos_abi::SyscallSource::offered(&*source).iter().any(|s| s.name == "MCP_LATE_ECHO"));
}
