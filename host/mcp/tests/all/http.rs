//! A streamable-HTTP MCP server (the PyPI `mcp` SDK, `tests/servers/http_server.py`)
//! through the kernel: results, argument errors fed back, `isError`, the
//! bearer token, the host grant a process needs besides `mcp:NAME`, the
//! `[net]` address policy at connection, a call's deadline, and a server
//! that went away and came back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_kernel::ExitStatus;
use aos_mcp::{McpConfig, McpSource, NetConfig, NetPolicy, ServerConfig};

use crate::support::harness_with;

const TOKEN_VAR: &str = "AOS_TEST_WEB_MCP_TOKEN";

/// The venv's python with PyPI `mcp`, or `None` after a loud skip.
fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("AOS_MCP_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/aos/mcp-venv")));
    let py = venv.map(|v| v.join("bin/python")).filter(|p| p.exists());
    if py.is_none() {
        aos_test_support::skip(
            &aos_test_support::current_test_or("mcp http"),
            "the PyPI `mcp` SDK is not installed in ~/.cache/aos/mcp-venv (run ./dev setup)",
        );
    }
    py
}

/// The Python server, killed when dropped.
struct PyServer {
    child: tokio::process::Child,
    port: u16,
}

impl PyServer {
    /// Starts the server on `port` (a free one when `None`) and waits until it listens.
    async fn start(py: &PathBuf, token: Option<&str>, port: Option<u16>) -> PyServer {
        let port = port.unwrap_or_else(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/servers/http_server.py");
        let mut cmd = tokio::process::Command::new(py);
        cmd.arg(script).arg(port.to_string()).args(token).kill_on_drop(true).stdout(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return PyServer { child, port };
            }
            if let Some(st) = child.try_wait().unwrap() {
                panic!("the Python MCP server exited ({st}) before listening on {port}");
            }
            assert!(Instant::now() < deadline, "the Python MCP server did not listen on {port} within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn kill(mut self) -> u16 {
        self.child.kill().await.unwrap();
        self.port
    }
}

fn server_config(port: u16, token: bool, call_timeout: f64) -> ServerConfig {
    ServerConfig {
        url: Some(format!("http://127.0.0.1:{port}/mcp")),
        token_env: token.then(|| TOKEN_VAR.to_string()),
        call_timeout_secs: Some(call_timeout),
        start_timeout_secs: Some(20.0),
        ..Default::default()
    }
}

/// An MCP source with the server `web`, under a `[net]` policy that
/// allow-lists 127.0.0.1 when `allow_loopback`; `token` is what the
/// kernel's environment holds in `TOKEN_VAR`.
fn source(sc: ServerConfig, allow_loopback: bool, token: &str) -> Arc<McpSource> {
    let mut cfg = McpConfig::default();
    cfg.servers.insert("web".into(), sc);
    let net = NetConfig { allow: if allow_loopback { vec!["127.0.0.1".into()] } else { vec![] }, ..Default::default() };
    let token = token.to_string();
    let env = move |k: &str| (k == TOKEN_VAR).then(|| token.clone());
    Arc::new(McpSource::with_net(&cfg, env, Arc::new(NetPolicy::new(net).unwrap())).unwrap())
}

async fn started(mcp: &Arc<McpSource>) {
    for (name, r) in mcp.start_all().await {
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_servers_tools_are_called_with_its_token() {
    let Some(py) = python() else { return };
    let srv = PyServer::start(&py, Some("t0ken"), None).await;
    let mcp = source(server_config(srv.port, true, 30.0), true, "t0ken");
    started(&mcp).await;
    let h = harness_with(mcp);
    let pid = h
        .spawn(
            &[
                r#"[SYS_CALL::MCP_WEB_ADD] {"a": 2, "b": 40}"#,
                r#"[SYS_CALL::MCP_WEB_ADD] {"a": "two", "b": 1}"#,
                r#"[SYS_CALL::MCP_WEB_ADD] {"a": 2, "b": 1}"#,
                r#"[SYS_CALL::MCP_WEB_FAIL] {"why": "boom"}"#,
                r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#,
            ],
            &["mcp:web", "net:127.0.0.1"],
        )
        .await;
    assert!(matches!(h.wait(pid).await, ExitStatus::Exited { code: 0, .. }));
    let entries = h.kernel.logs(pid).unwrap();
    let shown: Vec<String> = entries.iter().map(|e| serde_json::to_string(&e.entry).unwrap()).collect();
    let at = |needle: &str| shown.iter().position(|s| s.contains(needle)).unwrap_or_else(|| panic!("no `{needle}` in {shown:#?}"));
    // Result, argument error (from the tool's inputSchema), corrected call, tool error.
    assert!(shown[at(r#""text":"42""#)].contains(r#""type":"result""#), "{shown:#?}");
    let bad = at("field `a`");
    assert!(shown[bad].contains(r#""type":"error""#) && shown[bad].contains("must be integer"), "{}", shown[bad]);
    assert!(shown[at(r#""text":"3""#)].contains(r#""type":"result""#), "{shown:#?}");
    assert!(at("failed on purpose: boom") > bad);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_servers_tools_need_the_host_grant_as_well() {
    let Some(py) = python() else { return };
    let srv = PyServer::start(&py, None, None).await;
    let mcp = source(server_config(srv.port, false, 30.0), true, "");
    started(&mcp).await;
    let h = harness_with(mcp);
    let offered = |caps: &[&str]| {
        h.kernel.available_syscalls(&h.kernel.parse_grants(caps).unwrap()).iter().any(|s| s.name == "MCP_WEB_ADD")
    };
    assert!(offered(&["mcp:web", "net:127.0.0.1"]) && offered(&["mcp:web/add", "net"]));
    assert!(!offered(&["mcp:web"]) && !offered(&["mcp:web", "net:example.com"]) && !offered(&["net"]));
    let pid = h
        .spawn(&[r#"[SYS_CALL::MCP_WEB_ADD] {"a": 1, "b": 1}"#, r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#], &["mcp:web", "net:example.com"])
        .await;
    h.wait(pid).await;
    let log = h.log(pid);
    assert!(log.contains("net:127.0.0.1"), "the denial does not name the host grant: {log}");
    assert!(!log.contains(r#""type":"result","id":1"#), "the call ran: {log}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_policy_and_the_token_are_enforced_when_connecting() {
    let Some(py) = python() else { return };
    let srv = PyServer::start(&py, Some("t0ken"), None).await;
    // 127.0.0.1 is not public: refused unless `[net] allow` lists it.
    let e = source(server_config(srv.port, true, 30.0), false, "t0ken").start_all().await.remove(0).1.unwrap_err().to_string();
    assert!(e.contains("not public") && e.contains("[net] allow"), "{e}");
    // A wrong token, and none.
    let e = source(server_config(srv.port, true, 30.0), true, "wrong").start_all().await.remove(0).1.unwrap_err().to_string();
    assert!(e.contains(TOKEN_VAR), "{e}");
    let e = source(server_config(srv.port, false, 30.0), true, "").start_all().await.remove(0).1.unwrap_err().to_string();
    assert!(e.contains("token_env"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_and_a_server_that_went_away_and_came_back() {
    let Some(py) = python() else { return };
    let srv = PyServer::start(&py, None, None).await;
    let mcp = source(server_config(srv.port, false, 1.0), true, "");
    started(&mcp).await;
    let web = mcp.server("web").unwrap().clone();
    let t0 = Instant::now();
    let e = web.call("slow", &serde_json::json!({"secs": 10})).await.unwrap_err().to_string();
    assert!(e.contains("did not answer within 1.0 s") && t0.elapsed() < Duration::from_secs(5), "{e}");
    assert_eq!(web.call("add", &serde_json::json!({"a": 1, "b": 2})).await.unwrap()["structured"]["result"], 3);

    let port = srv.kill().await;
    let e = web.call("add", &serde_json::json!({"a": 1, "b": 2})).await.unwrap_err().to_string();
    assert!(e.contains("MCP server `web`"), "{e}");
    let _srv = PyServer::start(&py, None, Some(port)).await;
    // The session of the old process is gone: the client starts a new one.
    let mut last = String::new();
    for _ in 0..3 {
        match web.call("add", &serde_json::json!({"a": 1, "b": 2})).await {
            Ok(v) => {
                assert_eq!(v["structured"]["result"], 3);
                return;
            }
            Err(e) => last = e.to_string(),
        }
    }
    panic!("no call succeeded after the server came back; last error: {last}");
}
