//! `aos mcp serve` end to end: the PyPI `mcp` client SDK
//! (`tests/mcp/serve_client.py`, in the venv of `AOS_MCP_VENV`, default
//! `$HOME/.cache/aos/mcp-venv`) connects over stdio (launching `aos mcp
//! serve` itself, which starts the kernel at the first spawn) and over streamable HTTP (with the right token; a wrong
//! or missing one is refused), spawns scripted agents, follows a log, waits
//! for exit codes, sends a message, and is refused a spawn beyond the
//! grant ceiling.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use aos_tests::daemon::*;
use aos_tests::{repo_root, Aos};

/// The venv's python, or `None` after a loud skip.
fn python(test: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("AOS_MCP_VENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/aos/mcp-venv")))?;
    let py = venv.join("bin/python");
    let ok = Command::new(&py).args(["-c", "import mcp.client.client, httpx2"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        aos_tests::skip(test, &format!("no Python venv with the PyPI `mcp` package at {} (run ./dev setup, or set AOS_MCP_VENV)", venv.display()));
        return None;
    }
    Some(py)
}

fn scripts(aos: &Aos) -> (String, String) {
    let hello = script(
        aos,
        "hello.txt",
        "[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"hello from mcp\"}\n---\n[SYS_CALL::SYS_EXIT] {\"code\": 3, \"result\": \"done\"}\n",
    );
    (hello, blocking_script(aos))
}

/// Runs the client script; panics with its output unless it passed.
fn client(py: &PathBuf, args: &[&str]) -> String {
    let out = Command::new(py)
        .arg(repo_root().join("tests/mcp/serve_client.py"))
        .args(args)
        .env_remove("AOS_CONTROL_URL")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("\"ok\": true"), "the MCP client failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

#[test]
fn the_mcp_sdk_drives_agents_over_stdio() {
    let Some(py) = python("mcp_serve::the_mcp_sdk_drives_agents_over_stdio") else { return };
    let aos = new_aos();
    // No kernel yet: the first spawn_agent starts it, as `aos spawn` does.
    let _d = Daemon::guard(&aos);
    assert_eq!(aos.run(&["kernel", "status"]).0, 1);
    let (hello, block) = scripts(&aos);
    let bin = aos_tests::aos_bin();
    let out = client(&py, &["stdio", bin.to_str().unwrap(), aos.home().to_str().unwrap(), &hello, &block]);
    // The agent is the kernel's: the CLI sees how it ended.
    let pid = serde_json::from_str::<serde_json::Value>(out.lines().last().unwrap()).unwrap()["pid"].as_u64().unwrap();
    let (code, _, _) = aos.run(&["wait", &pid.to_string()]);
    assert_eq!(code, 3);
}

#[test]
fn the_mcp_sdk_drives_agents_over_http_with_the_token() {
    let Some(py) = python("mcp_serve::the_mcp_sdk_drives_agents_over_http_with_the_token") else { return };
    let aos = new_aos();
    let _d = Daemon::start(&aos);
    let (hello, block) = scripts(&aos);
    // Not loopback: refused without --allow-remote.
    let (code, _, err) = aos.run(&["mcp", "serve", "--http", "0.0.0.0:0"]);
    assert_eq!(code, 1);
    assert!(err.contains("it is not a loopback address") && err.contains("--allow-remote"), "{err}");

    let mut server = aos
        .cmd()
        .args(["mcp", "serve", "--http", "127.0.0.1:0"])
        .env("AOS_MCP_TOKEN", "s3cret-token")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(server.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("aos mcp serve ended before it listened").unwrap();
        if let Some(rest) = line.split("MCP on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"), "{url}");
    let result = std::panic::catch_unwind(|| client(&py, &["http", &url, "s3cret-token", &hello, &block]));
    let _ = server.kill();
    let _ = server.wait();
    let out = result.unwrap();
    assert!(out.contains("wrong token refused"), "{out}");
}
