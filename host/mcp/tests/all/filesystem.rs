//! The npm `@modelcontextprotocol/server-filesystem` (stdio) through the
//! kernel: a process granted one tool reads inside the server's root, is
//! refused by the server outside it (`isError`, fed back), and cannot call
//! the tools it was not granted; a process granted the server writes and
//! lists.

use std::path::Path;

use aos_kernel::ExitStatus;
use aos_mcp::ServerConfig;

use crate::support::{everything_bin, harness_on, Harness};

/// A kernel with server-filesystem rooted at `root`, or `None` after a loud skip.
async fn files(root: &Path) -> Option<Harness> {
    let bin = everything_bin().map(|b| b.with_file_name("mcp-server-filesystem")).filter(|b| b.exists());
    let Some(bin) = bin else {
        aos_test_support::skip(
            &aos_test_support::current_test_or("mcp filesystem"),
            "@modelcontextprotocol/server-filesystem is not installed in ~/.cache/aos/mcp-node (run ./dev setup)",
        );
        return None;
    };
    let sc = ServerConfig::stdio_on_host(bin.display().to_string(), vec![root.display().to_string()]);
    Some(harness_on(vec![("files".into(), sc)]).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_granted_tool_reads_inside_the_root_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("docs");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("notes.txt"), "meeting at noon").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "the launch code").unwrap();
    let Some(h) = files(&root).await else { return };
    let notes = root.join("notes.txt").display().to_string();
    let secret = dir.path().join("secret.txt").display().to_string();
    let pid = h
        .spawn(
            &[
                &format!(r#"[SYS_CALL::MCP_FILES_READ_TEXT_FILE] {{"path": "{notes}"}}"#),
                &format!(r#"[SYS_CALL::MCP_FILES_READ_TEXT_FILE] {{"path": "{secret}"}}"#),
                &format!(r#"[SYS_CALL::MCP_FILES_WRITE_FILE] {{"path": "{notes}", "content": "gone"}}"#),
                r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#,
            ],
            &["mcp:files/read_text_file"],
        )
        .await;
    assert!(matches!(h.wait(pid).await, ExitStatus::Exited { code: 0, .. }));
    let log = h.log(pid);
    assert!(log.contains("meeting at noon"), "{log}");
    assert!(log.contains("Access denied - path outside allowed directories"), "{log}");
    assert!(!log.contains("the launch code"), "a file outside the root reached the model: {log}");
    assert!(log.contains("mcp:files/write_file"), "the denial does not name the right: {log}");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "meeting at noon");
    // Only the granted tool is offered.
    let offered = h.kernel.available_syscalls(&h.kernel.parse_grants(&["mcp:files/read_text_file"]).unwrap());
    let names: Vec<&str> = offered.iter().map(|s| s.name.as_str()).filter(|n| n.starts_with("MCP_")).collect();
    assert_eq!(names, ["MCP_FILES_READ_TEXT_FILE"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_server_writes_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    let Some(h) = files(dir.path()).await else { return };
    let new = dir.path().join("new.txt").display().to_string();
    let root = dir.path().display().to_string();
    let pid = h
        .spawn(
            &[
                &format!(r#"[SYS_CALL::MCP_FILES_WRITE_FILE] {{"path": "{new}", "content": "written through MCP"}}"#),
                &format!(r#"[SYS_CALL::MCP_FILES_LIST_DIRECTORY] {{"path": "{root}"}}"#),
                r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#,
            ],
            &["mcp:files"],
        )
        .await;
    assert!(matches!(h.wait(pid).await, ExitStatus::Exited { code: 0, .. }));
    assert_eq!(std::fs::read_to_string(&new).unwrap(), "written through MCP");
    let log = h.log(pid);
    assert!(log.contains("[FILE] new.txt"), "{log}");
    h.stop().await;
}
