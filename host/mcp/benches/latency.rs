//! MCP tool call latency next to a built-in Wasm driver call, in the same
//! run: the `echo` tool of a warm `server-everything` (stdio, on the host;
//! and in a sandbox container when Docker and the current sandbox image are
//! there) and the `add` tool of a streamable-HTTP server on the PyPI `mcp` SDK
//! (`tests/servers/http_server.py`, loopback; when `./dev setup`'s
//! `~/.cache/aos/mcp-venv` exists) vs `FS_READ` of a 4 KiB file through the
//! `fs` driver (pooled instance).
//!
//! The start of a stdio server (spawn, initialise, list tools) on the host
//! and in a container: 5 stops and starts each, median and range.
//!
//! Two measurements of each: (1) the syscall handle alone (resolve + call,
//! what `dispatch` runs after validation), per call; (2) through the kernel:
//! one scripted agent whose single reply makes N calls (parse, resolve,
//! validate, run, record), minus an agent that only exits, divided by N.
//!
//! Run with `cargo bench --profile dev -p aos-mcp --bench latency` (needs
//! `./dev setup`'s `~/.cache/aos/mcp-node`). `AOS_BENCH_QUICK=1` cuts the
//! iteration counts by 10x.

#![allow(clippy::unwrap_used)] // a benchmark stops on any failure

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_abi::{AgentContext, CapabilitySet, SyscallSource};
use aos_kernel::{ExitStatus, Kernel, KernelConfig, SpawnRequest};
use aos_mcp::{McpConfig, McpSource, NetConfig, NetPolicy, ServerConfig};
use aos_providers::{Provider, ProviderError, ScriptProvider};
use aos_runtime::{DriverRuntime, RuntimeConfig};
use serde_json::json;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_nanos() as f64 / 1000.0
}

async fn direct(source: &dyn SyscallSource, name: &str, args: &serde_json::Value, ctx: &AgentContext, n: usize) -> Vec<Duration> {
    for _ in 0..20 {
        source.resolve(name, &ctx.caps).unwrap().unwrap().call(ctx, args).await.unwrap();
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let h = source.resolve(name, &ctx.caps).unwrap().unwrap();
        h.call(ctx, args).await.unwrap();
        v.push(t.elapsed());
    }
    v.sort_unstable();
    v
}

async fn through_kernel(kernel: &Kernel, dir: &std::path::Path, ws: &std::path::Path, call: &str, n: usize, caps: &[&str]) -> Duration {
    let mut reply = String::new();
    for _ in 0..n {
        reply.push_str(call);
        reply.push('\n');
    }
    reply.push_str(r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#);
    static K: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let path = dir.join(format!("b{}.json", K.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    std::fs::write(&path, serde_json::to_string(&[reply]).unwrap()).unwrap();
    let req = SpawnRequest {
        task: "bench".into(),
        provider: "script".into(),
        model: path.display().to_string(),
        caps: kernel.parse_grants(caps).unwrap(),
        workspace: Some(ws.to_path_buf()),
        ..Default::default()
    };
    let t = Instant::now();
    let pid = kernel.spawn(req).await.unwrap();
    let st = kernel.wait(pid).await.unwrap();
    let took = t.elapsed();
    assert!(matches!(st, ExitStatus::Exited { code: 0, .. }), "{st:?}: {:?}", kernel.logs(pid));
    took
}

fn main() {
    let quick = std::env::var("AOS_BENCH_QUICK").is_ok_and(|v| v == "1");
    let scale = |n: usize| if quick { (n / 10).max(1) } else { n };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let node = std::env::var_os("AOS_MCP_NODE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/aos/mcp-node"));
        let bin = node.join("node_modules/.bin/mcp-server-everything");
        assert!(bin.exists(), "{} is missing: run ./dev setup", bin.display());
        let home = tempfile::tempdir().unwrap();
        let ws = home.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(ws.join("f.txt"), "x".repeat(4096)).unwrap();

        let mut cfg = McpConfig::default();
        cfg.servers.insert("everything".into(), ServerConfig::stdio_on_host(bin.display().to_string(), vec!["stdio".into()]));
        // The HTTP server, when the Python SDK is installed.
        let venv = std::env::var_os("AOS_MCP_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/aos/mcp-venv"));
        let mut _py = None;
        if venv.join("bin/python").exists() {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/servers/http_server.py");
            _py = Some(
                tokio::process::Command::new(venv.join("bin/python"))
                    .arg(script)
                    .arg(port.to_string())
                    .kill_on_drop(true)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            cfg.servers.insert("web".into(), ServerConfig { url: Some(format!("http://127.0.0.1:{port}/mcp")), ..Default::default() });
        } else {
            eprintln!("NOTE: {} is missing (./dev setup): the HTTP server is left out", venv.display());
        }
        // The same server in a sandbox container, the npm packages mounted read-only.
        let probe = aos_sandbox::DockerBackend::connect(aos_sandbox::DockerConfig::default()).unwrap();
        let boxed = probe.status().await.server_version.is_some() && probe.check_image().await.is_ok();
        if boxed {
            cfg.servers.insert(
                "boxed".into(),
                ServerConfig {
                    command: Some("node".into()),
                    args: vec!["/opt/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js".into(), "stdio".into()],
                    mounts: vec![aos_mcp::MountConfig { host: node.clone(), container: Some("/opt/mcp".into()), writable: false }],
                    ..Default::default()
                },
            );
        } else {
            eprintln!("NOTE: Docker or the current sandbox image is missing (scripts/setup-docker.sh): the container server is left out");
        }
        let net = NetPolicy::new(NetConfig { allow: vec!["127.0.0.1".into()], ..Default::default() }).unwrap();
        let mcp = Arc::new(McpSource::with_net(&cfg, |k| std::env::var(k).ok(), Arc::new(net)).unwrap());
        let mut starts = Vec::new();
        for name in cfg.servers.keys() {
            let t = Instant::now();
            mcp.server(name).unwrap().ensure_started().await.unwrap();
            starts.push((name.clone(), t.elapsed()));
        }
        // Stops and starts of the stdio servers, on the host and in a container.
        let mut restarts = Vec::new();
        for name in ["everything", "boxed"].into_iter().filter(|n| cfg.servers.contains_key(*n)) {
            let s = mcp.server(name).unwrap();
            let mut v = Vec::new();
            for _ in 0..5 {
                s.stop().await;
                let t = Instant::now();
                s.ensure_started().await.unwrap();
                v.push(t.elapsed());
            }
            v.sort_unstable();
            restarts.push((name, v));
        }
        let http = cfg.servers.contains_key("web");
        let runtime = DriverRuntime::open(RuntimeConfig::new(home.path())).await.unwrap();

        let caps = ["fs:ro", "mcp:everything", "mcp:web", "mcp:boxed", "net:127.0.0.1"];
        let ctx = AgentContext { pid: 1, caps: CapabilitySet::parse(caps).unwrap(), workspace: ws.clone() };
        let n = scale(2000);
        let m = direct(mcp.as_ref(), "MCP_EVERYTHING_ECHO", &json!({"message": "hi"}), &ctx, n).await;
        let b = if boxed { Some(direct(mcp.as_ref(), "MCP_BOXED_ECHO", &json!({"message": "hi"}), &ctx, n).await) } else { None };
        let h = if http { Some(direct(mcp.as_ref(), "MCP_WEB_ADD", &json!({"a": 1, "b": 2}), &ctx, n).await) } else { None };
        let f = direct(runtime.as_ref(), "FS_READ", &json!({"path": "f.txt"}), &ctx, n).await;

        let mut kc = KernelConfig::new(home.path());
        kc.default_budgets.max_steps = Some(10);
        let script: Arc<dyn Provider> = Arc::new(ScriptProvider::new());
        let kernel = Kernel::new(
            kc,
            vec![runtime.clone(), mcp.clone()],
            Arc::new(move |name: &str, _: Option<&str>| match name {
                "script" => Ok(script.clone()),
                o => Err(ProviderError::Other(o.to_string())),
            }),
        );
        let k = scale(500);
        let mut calls = vec![
            ("MCP_EVERYTHING_ECHO (stdio)", r#"[SYS_CALL::MCP_EVERYTHING_ECHO] {"message": "hi"}"#),
            ("FS_READ 4 KiB (Wasm driver)", r#"[SYS_CALL::FS_READ] {"path": "f.txt"}"#),
        ];
        if http {
            calls.insert(1, ("MCP_WEB_ADD (streamable HTTP)", r#"[SYS_CALL::MCP_WEB_ADD] {"a": 1, "b": 2}"#));
        }
        let mut per_call: Vec<Vec<f64>> = vec![Vec::new(); calls.len()];
        for _ in 0..3 {
            let base = through_kernel(&kernel, home.path(), &ws, "", 0, &caps).await;
            for (i, (_, call)) in calls.iter().enumerate() {
                let d = through_kernel(&kernel, home.path(), &ws, call, k, &caps).await;
                per_call[i].push((d.saturating_sub(base)).as_nanos() as f64 / 1000.0 / k as f64);
            }
        }

        for (name, d) in &starts {
            let what = match name.as_str() {
                "web" => "connect + initialize + tools/list, Python server already running",
                "boxed" => "create + attach + start a container, node + initialize + tools/list",
                _ => "spawn node + initialize + tools/list, on the host",
            };
            println!("MCP server `{name}` first start ({what}): {:.0} ms", d.as_secs_f64() * 1000.0);
        }
        for (name, v) in &restarts {
            let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
            let place = if *name == "boxed" { "in a sandbox container" } else { "on the host" };
            println!(
                "MCP server `{name}` ({place}) stop + start, 5 times: median {:.0} ms (min {:.0}, max {:.0})",
                ms(&v[2]),
                ms(&v[0]),
                ms(&v[4])
            );
        }
        println!();
        println!("| one syscall ({n} calls; µs) | p50 | p90 | p99 |");
        println!("|---|---:|---:|---:|");
        println!("| MCP_EVERYTHING_ECHO (stdio MCP on the host, warm) | {:.0} | {:.0} | {:.0} |", pct(&m, 0.5), pct(&m, 0.9), pct(&m, 0.99));
        if let Some(b) = &b {
            println!("| MCP_BOXED_ECHO (stdio MCP in a sandbox container, warm) | {:.0} | {:.0} | {:.0} |", pct(b, 0.5), pct(b, 0.9), pct(b, 0.99));
        }
        if let Some(h) = &h {
            println!("| MCP_WEB_ADD (streamable-HTTP MCP, loopback, warm) | {:.0} | {:.0} | {:.0} |", pct(h, 0.5), pct(h, 0.9), pct(h, 0.99));
        }
        println!("| FS_READ 4 KiB (Wasm driver, pooled) | {:.0} | {:.0} | {:.0} |", pct(&f, 0.5), pct(&f, 0.9), pct(&f, 0.99));
        println!();
        println!("| through the kernel ({k} calls in one reply, median of 3; µs per call) | |");
        println!("|---|---:|");
        for ((name, _), mut v) in calls.iter().zip(per_call) {
            v.sort_by(f64::total_cmp);
            println!("| {name} | {:.0} |", v[v.len() / 2]);
        }
        kernel.shutdown().await;
    });
}
