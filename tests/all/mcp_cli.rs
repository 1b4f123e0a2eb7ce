//! `aos mcp add / ls / remove` as an operator uses them, on the real binary
//! with server-everything from npm: a stdio server runs in a sandbox
//! container unless its table says `host = true`, and both `add` and `ls`
//! say where each server runs (the image, the network, the mounts — or ON
//! THE HOST).

use std::path::PathBuf;

use aos_tests::daemon::docker_ready;
use aos_tests::Aos;

/// The directory holding `node_modules` with server-everything
/// (`./dev setup_mcp`), or a loud skip.
fn node_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("AOS_MCP_NODE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/aos/mcp-node")))?;
    if dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js").is_file() {
        return Some(dir);
    }
    aos_tests::skip(
        &aos_test_support::current_test_or("mcp_cli"),
        "@modelcontextprotocol/server-everything is not installed in ~/.cache/aos/mcp-node (run ./dev setup)",
    );
    None
}

#[test]
fn mcp_add_and_ls_say_where_each_server_runs() {
    let Some(node) = node_dir() else { return };
    if !docker_ready("mcp_add_and_ls_say_where_each_server_runs") {
        return;
    }
    let aos = Aos::new();
    let entry = "node_modules/@modelcontextprotocol/server-everything/dist/index.js";

    // In the sandbox container (the default): the npm packages mounted read-only.
    let host_entry = node.join(entry).display().to_string();
    let mount = format!("{}:/opt/mcp", node.display());
    let container_entry = format!("/opt/mcp/{entry}");
    let (code, out, err) = aos.run(&["mcp", "add", "boxed", "--mount", &mount, "--", "node", &container_entry, "stdio"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("sandbox container (image aos-sandbox:latest, network: none, mounts:"), "{err}");
    assert!(err.contains(&format!("{} -> /opt/mcp (ro)", node.display())), "{err}");
    assert!(out.contains("echo"), "the tools are listed:\n{out}");

    // On the host only when asked, and announced.
    let (code, out, err) = aos.run(&["mcp", "add", "bare", "--host", "--", "node", &host_entry, "stdio"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("`bare` runs ON THE HOST, outside any sandbox"), "{err}");

    let (code, out, err) = aos.run(&["mcp", "ls"]);
    assert_eq!(code, 0, "{err}");
    let line = |name: &str| out.lines().find(|l| l.starts_with(&format!("{name}: "))).unwrap_or_else(|| panic!("no {name} in:\n{out}")).to_string();
    assert!(line("boxed").contains("sandbox container") && !line("boxed").contains("ON THE HOST"), "{out}");
    assert!(line("bare").contains("ON THE HOST (no sandbox)"), "{out}");

    let (code, out, _) = aos.run(&["mcp", "ls", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["boxed"]["in_container"].as_bool(), v["boxed"]["on_host"].as_bool()), (Some(true), Some(false)), "{v}");
    assert_eq!((v["bare"]["in_container"].as_bool(), v["bare"]["on_host"].as_bool()), (Some(false), Some(true)), "{v}");

    // A container server's tools are listed by starting it in its container.
    let (code, out, err) = aos.run(&["mcp", "ls", "--tools"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!out.contains("failed:") && out.matches("echo").count() >= 2, "{out}");

    let (code, _, err) = aos.run(&["mcp", "remove", "boxed"]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = aos.run(&["mcp", "ls"]);
    assert!(!out.contains("boxed:") && out.contains("bare:"), "{out}");
}
