//! A kernel whose only syscall source is an [`McpSource`] with the
//! `everything` server, and scripted agents (the real `script` provider).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aos_kernel::{Kernel, KernelConfig, Pid};
use aos_mcp::{McpConfig, McpSource, ServerConfig};
use aos_providers::{Provider, ProviderError, ScriptProvider};

/// The `server-everything` program, if installed.
pub fn everything_bin() -> Option<PathBuf> {
    let dir = std::env::var_os("AOS_MCP_NODE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/aos/mcp-node")))?;
    let bin = dir.join("node_modules/.bin/mcp-server-everything");
    bin.exists().then_some(bin)
}

pub struct Harness {
    pub kernel: Kernel,
    pub mcp: Arc<McpSource>,
    pub dir: tempfile::TempDir,
}

/// A kernel with the `everything` server (call deadline `call_timeout`
/// seconds), or `None` after a loud skip when the server is not installed.
pub async fn harness(call_timeout: f64) -> Option<Harness> {
    let Some(bin) = everything_bin() else {
        aos_test_support::skip(
            &aos_test_support::current_test_or("mcp"),
            "@modelcontextprotocol/server-everything is not installed in ~/.cache/aos/mcp-node (run ./dev setup)",
        );
        return None;
    };
    let mut sc = ServerConfig::stdio_on_host(bin.display().to_string(), vec!["stdio".into()]);
    sc.call_timeout_secs = Some(call_timeout);
    Some(harness_on(vec![("everything".into(), sc)]).await)
}

/// A stdio server on the TypeScript SDK that server-everything installed:
/// `tests/servers/NAME.mjs`, or `None` after a loud skip.
pub fn sdk_server(script: &str) -> Option<ServerConfig> {
    let Some(bin) = everything_bin() else {
        aos_test_support::skip(
            &aos_test_support::current_test_or("mcp"),
            "@modelcontextprotocol/server-everything (and its SDK) is not installed in ~/.cache/aos/mcp-node (run ./dev setup)",
        );
        return None;
    };
    let sdk = bin.parent().unwrap().parent().unwrap().join("@modelcontextprotocol/sdk");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/servers").join(script);
    Some(ServerConfig::stdio_on_host("node", vec![path.display().to_string(), sdk.display().to_string()]))
}

/// A kernel with these MCP servers, all started.
pub async fn harness_on(servers: Vec<(String, ServerConfig)>) -> Harness {
    let mut cfg = McpConfig::default();
    cfg.servers.extend(servers);
    let mcp = Arc::new(McpSource::new(&cfg, |k| std::env::var(k).ok()).unwrap());
    for (name, r) in mcp.start_all().await {
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    harness_with(mcp)
}

/// A kernel whose only syscall source is `mcp` (its servers already started).
pub fn harness_with(mcp: Arc<McpSource>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut kc = KernelConfig::new(dir.path());
    kc.spawn.models = vec!["*".into()];
    kc.spawn.model_dir = Some(dir.path().to_path_buf());
    let script: Arc<dyn Provider> = Arc::new(ScriptProvider::new());
    let kernel = Kernel::new(
        kc,
        vec![mcp.clone()],
        Arc::new(move |name: &str, _: Option<&str>| match name {
            "script" => Ok(script.clone()),
            other => Err(ProviderError::Other(format!("unknown provider `{other}` in tests"))),
        }),
    );
    Harness { kernel, mcp, dir }
}

impl Harness {
    pub fn script(&self, replies: &[&str]) -> String {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.path().join(format!("s{n}.json"));
        std::fs::write(&path, serde_json::to_string(replies).unwrap()).unwrap();
        path.display().to_string()
    }

    pub async fn spawn(&self, replies: &[&str], caps: &[&str]) -> Pid {
        let model = self.script(replies);
        let req = aos_kernel::SpawnRequest {
            task: "test".into(),
            provider: "script".into(),
            model,
            caps: self.kernel.parse_grants(caps).unwrap(),
            ..Default::default()
        };
        self.kernel.spawn(req).await.unwrap()
    }

    pub async fn wait(&self, pid: Pid) -> aos_kernel::ExitStatus {
        tokio::time::timeout(Duration::from_secs(60), self.kernel.wait(pid))
            .await
            .unwrap_or_else(|_| panic!("process {pid} did not end; logs: {:#?}", self.kernel.logs(pid)))
            .unwrap()
    }

    /// `pid`'s log as one JSON text (results and errors as the model saw them).
    pub fn log(&self, pid: Pid) -> String {
        serde_json::to_string(&self.kernel.logs(pid).unwrap()).unwrap()
    }

    pub async fn stop(self) {
        self.kernel.shutdown().await;
    }
}
