//! EXEC_CMD against the real Docker engine: the `exec` driver, the
//! `aos:kernel/container` host interface and `DockerBackend`.
//!
//! Needs a running Docker engine and the sandbox image (`scripts/setup-docker.sh`).
//! Without them every Docker test prints `SKIPPED: …` and passes — except
//! when `CI` is set, where it fails.


use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_runtime::{AgentContext, SyscallError};
use aos_sandbox::{DockerBackend, DockerConfig};
use bollard::query_parameters::ListContainersOptions;
use serde_json::{json, Value};

use crate::common::Env;

static LABELS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn test_config() -> DockerConfig {
    let n = LABELS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    DockerConfig { kernel_label: format!("test-{}-{n}", std::process::id()), ..Default::default() }
}

/// Whether the engine answers and has the image; otherwise SKIPPED (or a failure under CI).
async fn docker_ready(test: &str) -> bool {
    let probe = DockerBackend::connect(DockerConfig::default()).expect("default config is valid");
    let st = probe.status().await;
    let why = match (&st.server_version, st.image_present) {
        (Some(_), true) => return true,
        (None, _) => st.error.unwrap_or_else(|| format!("Docker is not reachable at {}", st.endpoint)),
        (Some(_), false) => format!("sandbox image {} missing; run scripts/build-sandbox-image.sh", st.image),
    };
    aos_test_support::skip(test, &why);
    false
}

struct DockerEnv {
    env: Env,
    backend: Arc<DockerBackend>,
}

/// The uid/gid of the operator's user that owns the test workspaces.
const USER: (u32, u32) = (1000, 1000);

fn chown(p: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

impl DockerEnv {
    /// A backend and a runtime whose workspace belongs to a regular user
    /// ([`USER`]), as an operator's would.
    async fn new(f: impl FnOnce(&mut DockerConfig)) -> DockerEnv {
        Self::with(f, |_| {}).await
    }

    async fn with(f: impl FnOnce(&mut DockerConfig), g: impl FnOnce(&mut aos_runtime::RuntimeConfig)) -> DockerEnv {
        let mut cfg = test_config();
        f(&mut cfg);
        let backend = Arc::new(DockerBackend::connect(cfg).expect("backend"));
        let b: Arc<dyn aos_runtime::ContainerBackend> = backend.clone();
        let env = Env::with(move |c| {
            c.container = Some(b);
            g(c);
        })
        .await;
        chown(&env.ws(), USER);
        DockerEnv { env, backend }
    }

    fn agent(&self, pid: u64, grants: &[&str]) -> AgentContext {
        self.env.agent(pid, grants)
    }

    async fn exec(&self, agent: &AgentContext, cmd: &str, timeout: Option<u32>) -> Result<Value, SyscallError> {
        let mut args = json!({ "cmd": cmd });
        if let Some(t) = timeout {
            args["timeout"] = json!(t);
        }
        self.env.rt.call(agent, "EXEC_CMD", &args).await.map(|o| o.output)
    }

    async fn ok(&self, agent: &AgentContext, cmd: &str) -> Value {
        self.exec(agent, cmd, Some(20)).await.unwrap_or_else(|e| panic!("{cmd}: {e}"))
    }

    /// Containers of this backend, optionally of one pid.
    async fn containers(&self, pid: Option<u64>) -> Vec<bollard::models::ContainerSummary> {
        let d = bollard::Docker::connect_with_local_defaults().unwrap();
        let mut labels = vec![format!("aos.kernel={}", self.backend.config().kernel_label)];
        if let Some(p) = pid {
            labels.push(format!("aos.pid={p}"));
        }
        let filters: HashMap<String, Vec<String>> = [("label".to_string(), labels)].into_iter().collect();
        d.list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
            .await
            .unwrap()
    }

    async fn close(self) {
        self.env.rt.shutdown().await;
        assert!(self.containers(None).await.is_empty(), "shutdown removes every sandbox");
    }
}

fn stdout(v: &Value) -> &str {
    v["stdout"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_output_and_confinement() {
    if !docker_ready("exit_codes_output_and_confinement").await {
        return;
    }
    let de = DockerEnv::new(|_| {}).await;
    let a = de.agent(1, &["exec", "fs:rw"]);

    let r = de.ok(&a, "echo hello; echo oops >&2; exit 3").await;
    assert_eq!(r["exit_code"], 3, "{r}");
    assert_eq!(stdout(&r), "hello\n");
    assert_eq!(r["stderr"], "oops\n");
    assert_eq!(r["timed_out"], false);
    assert_eq!(r["truncated"], false);

    let r = de.ok(&a, "pwd; echo $BASH_VERSION | cut -c1; id -u; test -w /workspace && echo rw").await;
    assert_eq!(r["exit_code"], 0, "{r}");
    let lines: Vec<&str> = stdout(&r).lines().collect();
    assert_eq!(lines[0], "/workspace");
    assert!(!lines[1].is_empty(), "runs under bash: {r}");
    assert_ne!(lines[2], "0", "never root: {r}");
    assert_eq!(lines[3], "rw");

    // One container per process, reused: /tmp survives between commands.
    de.ok(&a, "echo kept > /tmp/state").await;
    assert_eq!(stdout(&de.ok(&a, "cat /tmp/state").await), "kept\n");
    assert_eq!(de.containers(Some(1)).await.len(), 1);

    // Read-only root, no privileges.
    let r = de.ok(&a, "touch /etc/x || echo refused; grep CapEff /proc/self/status").await;
    assert!(stdout(&r).contains("refused"), "{r}");
    assert!(stdout(&r).contains("0000000000000000"), "no capabilities: {r}");

    // Output is capped per stream.
    let r = de.ok(&a, "head -c 200000 /dev/zero | tr '\\0' a; echo done >&2").await;
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["truncated"], true);
    assert_eq!(stdout(&r).len(), 64 << 10);
    assert_eq!(r["stderr"], "done\n");

    // Arguments are validated by the driver.
    let e = de.exec(&a, "   ", None).await.unwrap_err();
    assert!(matches!(e, SyscallError::InvalidArguments(_)), "{e}");
    let e = de.exec(&a, "ls", Some(100_000)).await.unwrap_err();
    assert!(matches!(e, SyscallError::InvalidArguments(_)), "{e}");
    de.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_command_and_what_it_started() {
    if !docker_ready("timeout_kills_the_command_and_what_it_started").await {
        return;
    }
    let de = DockerEnv::new(|_| {}).await;
    let a = de.agent(2, &["exec"]);
    de.ok(&a, "true").await; // container created outside the timing

    let t = Instant::now();
    let r = de.exec(&a, "echo started; sleep 30", Some(2)).await.unwrap();
    let took = t.elapsed();
    assert_eq!(r["timed_out"], true, "{r}");
    assert_eq!(stdout(&r), "started\n");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(8), "took {took:?}");
    let r = de.ok(&a, "pgrep -fx 'sleep 30' || echo gone").await;
    assert_eq!(stdout(&r), "gone\n", "{r}");

    // What a command leaves running in the background ends with it.
    let t = Instant::now();
    let r = de.ok(&a, "sleep 33 & echo bg").await;
    assert_eq!(stdout(&r), "bg\n");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(stdout(&de.ok(&a, "pgrep -fx 'sleep 33' || echo gone").await), "gone\n");

    // A process that left the process group (setsid) and keeps stdout open.
    let t = Instant::now();
    let r = de.exec(&a, "setsid sleep 31 & sleep 32", Some(2)).await.unwrap();
    let took = t.elapsed();
    assert_eq!(r["timed_out"], true, "{r}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let r = de.ok(&a, "pgrep -f 'sleep 3[12]' || echo gone").await;
    assert_eq!(stdout(&r), "gone\n", "{r}");
    de.close().await;
}

/// Forks until the kernel refuses: the count is the pids limit at work.
const FORK_COUNTER: &str = "python3 -c '\nimport os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(60)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print(\"refused after\", n, \"errno\", e.errno)\n'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_bomb_and_memory_hog_are_held_by_the_limits() {
    if !docker_ready("fork_bomb_and_memory_hog_are_held_by_the_limits").await {
        return;
    }
    let de = DockerEnv::new(|c| c.pids_limit = 64).await;
    let a = de.agent(3, &["exec"]);

    // Forking stops at the pids limit (64 tasks for the whole container,
    // its init and shell included) with EAGAIN.
    let r = de.ok(&a, FORK_COUNTER).await;
    let out = stdout(&r).trim().to_string();
    let n: u32 = out
        .strip_prefix("refused after ")
        .and_then(|x| x.split(' ').next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("the fork loop must be refused: {r}"));
    assert!(out.ends_with("errno 11"), "EAGAIN: {out}");
    assert!((40..64).contains(&n), "forks allowed before the limit: {n} ({out})");
    // The children ended with the command.
    let procs: u32 = stdout(&de.ok(&a, "ps -e --no-headers | wc -l").await).trim().parse().unwrap();
    assert!(procs < 10, "the children are gone: {procs} left");

    let t = Instant::now();
    let r = de.exec(&a, ":(){ :|:& };:", Some(4)).await;
    assert!(t.elapsed() < Duration::from_secs(20), "the call returns: {:?}", t.elapsed());
    assert!(r.is_ok(), "a fork bomb is the command's problem, not the call's: {r:?}");
    // The sandbox (and the host) keep working.
    let mut alive = false;
    for _ in 0..20 {
        if let Ok(r) = de.exec(&a, "echo alive", Some(5)).await {
            if stdout(&r) == "alive\n" {
                alive = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(alive, "the sandbox works again after the fork bomb");
    let r = de.ok(&a, "ps -e --no-headers | wc -l").await;
    let procs: u32 = stdout(&r).trim().parse().unwrap();
    assert!(procs < 10, "the bomb's processes are gone: {procs} left");

    let t = Instant::now();
    let r = de.exec(&a, "head -c 1G /dev/zero | tail > /dev/null", Some(30)).await.unwrap();
    assert_eq!(r["exit_code"], 137, "killed by the memory limit: {r}");
    assert_eq!(r["timed_out"], false, "{r}");
    assert!(t.elapsed() < Duration::from_secs(25));
    assert_eq!(stdout(&de.ok(&a, "echo alive").await), "alive\n");
    de.close().await;
}

/// Every limit the backend sets, seen from inside the container (the
/// process status and the cgroup files) and in the container's
/// configuration as the engine reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_limits_hold_inside_and_in_the_configuration() {
    if !docker_ready("sandbox_limits_hold_inside_and_in_the_configuration").await {
        return;
    }
    let de = DockerEnv::new(|c| {
        c.pids_limit = 77;
        c.cpus = 0.5;
        c.memory_bytes = 200 << 20;
    })
    .await;
    let a = de.agent(21, &["exec"]);
    let r = de
        .ok(
            &a,
            "grep -E '^(NoNewPrivs|CapEff|CapPrm|CapBnd|Uid)' /proc/self/status; \
             for f in pids/pids.max cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us memory/memory.limit_in_bytes \
                      pids.max cpu.max memory.max; do \
               [ -r /sys/fs/cgroup/$f ] && echo \"$f=$(cat /sys/fs/cgroup/$f)\"; done; true",
        )
        .await;
    let out = stdout(&r).to_string();
    let field = |k: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim_start_matches([':', '=']).trim().to_string())
            .unwrap_or_else(|| panic!("no {k} in {out}"))
    };
    assert_eq!(field("NoNewPrivs"), "1", "{out}");
    for cap in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(field(cap), "0000000000000000", "{cap}: {out}");
    }
    assert!(field("Uid").split_whitespace().all(|u| u == "1000"), "never root: {out}");
    if out.contains("pids/pids.max=") {
        // cgroup v1
        assert_eq!(field("pids/pids.max"), "77", "{out}");
        let quota: f64 = field("cpu/cpu.cfs_quota_us").parse().unwrap();
        let period: f64 = field("cpu/cpu.cfs_period_us").parse().unwrap();
        assert!((quota / period - 0.5).abs() < 1e-6, "cpu quota {quota}/{period}: {out}");
        assert_eq!(field("memory/memory.limit_in_bytes"), (200u64 << 20).to_string(), "{out}");
    } else {
        // cgroup v2
        assert_eq!(field("pids.max"), "77", "{out}");
        let max = field("cpu.max");
        let mut it = max.split_whitespace().map(|x| x.parse::<f64>().unwrap());
        let (q, p) = (it.next().unwrap(), it.next().unwrap());
        assert!((q / p - 0.5).abs() < 1e-6, "cpu.max {max}");
        assert_eq!(field("memory.max"), (200u64 << 20).to_string(), "{out}");
    }

    // The configuration, as `docker inspect` shows it.
    let c = de.containers(Some(21)).await;
    let id = c[0].id.clone().unwrap();
    let d = bollard::Docker::connect_with_local_defaults().unwrap();
    let info = d.inspect_container(&id, None).await.unwrap();
    let hc = info.host_config.unwrap();
    assert_eq!(hc.pids_limit, Some(77));
    assert_eq!(hc.nano_cpus, Some(500_000_000));
    assert_eq!(hc.memory, Some(200 << 20));
    assert_eq!(hc.memory_swap, Some(200 << 20), "no swap beyond the memory limit");
    assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
    assert!(hc.cap_add.unwrap_or_default().is_empty());
    assert_eq!(hc.security_opt, Some(vec!["no-new-privileges".to_string()]));
    assert_eq!(hc.privileged, Some(false));
    assert_eq!(hc.readonly_rootfs, Some(true));
    assert_eq!(hc.network_mode.as_deref(), Some("none"));
    assert_eq!(hc.init, Some(true));
    let binds = hc.binds.unwrap_or_default();
    assert_eq!(binds.len(), 1, "only the workspace is mounted: {binds:?}");
    assert!(binds[0].ends_with(":/workspace:ro"), "read-only without fs:rw: {binds:?}");
    let cfg = info.config.unwrap();
    assert_eq!(cfg.user.as_deref(), Some("1000:1000"));
    de.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_is_off_unless_exec_net() {
    if !docker_ready("network_is_off_unless_exec_net").await {
        return;
    }
    let de = DockerEnv::new(|_| {}).await;
    // No traffic leaves the machine here: the sandbox has no interface but
    // loopback, so the lookup fails before sending anything.
    let a = de.agent(4, &["exec"]);
    let r = de.ok(&a, "ls /sys/class/net; getent hosts example.com && echo RESOLVED || echo failed; env | grep -ci proxy || true").await;
    assert_eq!(stdout(&r), "lo\nfailed\n0\n", "{r}");
    let c = de.containers(Some(4)).await;
    let mode = c[0].host_config.as_ref().and_then(|h| h.network_mode.clone()).unwrap_or_default();
    assert_eq!(mode, "none");
    de.close().await;
}

// ---- exec:net: the egress proxy ----

/// A one-route HTTP server answering `name` to every request, on `ip`.
async fn named_server(ip: &str, name: &'static str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{name}", name.len());
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

/// Test names: `allowed.test` and `other.test` → 127.0.0.3 (allow-listed);
/// `public.test` → a public address;
/// `rebind.test` → 127.0.0.3 the first time, 127.0.0.1 after that.
struct TestResolver(std::sync::atomic::AtomicU32);

impl aos_runtime::Resolve for TestResolver {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<std::net::SocketAddr>>> + Send>> {
        let ip = match host {
            "allowed.test" | "other.test" => Some("127.0.0.3"),
            // Public; never connected to (refused before connecting).
            "public.test" => Some("93.184.215.14"),
            "rebind.test" => Some(if self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                "127.0.0.3"
            } else {
                "127.0.0.1"
            }),
            _ => None,
        };
        let r = match ip {
            Some(ip) => Ok(vec![std::net::SocketAddr::new(ip.parse().unwrap(), port)]),
            None => Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no test name {host}"))),
        };
        Box::pin(async move { r })
    }
}

/// The docker0 bridge's address on the host (the route a bridged container
/// would have to the host's services).
fn bridge_gateway() -> Option<String> {
    let out = std::process::Command::new("ip").args(["-4", "-o", "addr", "show", "docker0"]).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    s.split_whitespace().skip_while(|w| *w != "inet").nth(1).map(|c| c.split('/').next().unwrap().to_string())
}

/// Every way out a command in an `exec:net` sandbox might try: only the
/// proxy answers, and it applies the process's grants and the address
/// policy of NET_FETCH; the refusals reach the command's stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_net_goes_only_through_the_egress_proxy() {
    if !docker_ready("exec_net_goes_only_through_the_egress_proxy").await {
        return;
    }
    let allowed = named_server("127.0.0.3", "allowed-server").await;
    // A host service on every interface: the docker0 gateway and loopback.
    let host_any = named_server("0.0.0.0", "host-service").await;
    let de = DockerEnv::with(
        |_| {},
        |c| {
            c.net.allow = vec!["127.0.0.3".into()];
            c.net.connect_timeout = Duration::from_secs(2);
            c.net.resolver = Some(aos_runtime::ResolverHook(Arc::new(TestResolver(Default::default()))));
        },
    )
    .await;
    let curl = |url: String| format!("curl -sS -m 5 {url} 2>&1; echo \" rc=$?\"");

    // Any host (`net`): the allow-listed server through the proxy, plain
    // (absolute form) and tunnelled (CONNECT).
    let a = de.agent(30, &["exec:net", "net"]);
    let r = de.ok(&a, &curl(format!("http://allowed.test:{allowed}/"))).await;
    assert_eq!(stdout(&r), "allowed-server rc=0\n", "{r}");
    let r = de.ok(&a, &curl(format!("-p http://allowed.test:{allowed}/"))).await;
    assert_eq!(stdout(&r), "allowed-server rc=0\n", "CONNECT: {r}");
    // The proxy connects to the address it checked (the test resolver
    // answers loopback to any later lookup).
    let r = de.ok(&a, &curl(format!("http://rebind.test:{allowed}/"))).await;
    assert_eq!(stdout(&r), "allowed-server rc=0\n", "{r}");

    // Refused by the address policy, through the proxy, plain and CONNECT.
    let gw = bridge_gateway();
    let mut refused = vec![
        (format!("http://127.0.0.1:{host_any}/"), "loopback"),
        (format!("-p http://127.0.0.1:{host_any}/"), "loopback"),
        (format!("http://[::1]:{host_any}/"), "loopback"),
        (format!("http://2130706433:{host_any}/"), "loopback"),
        (format!("http://0x7f000001:{host_any}/"), "loopback"),
        ("http://10.1.2.3/".to_string(), "private-use"),
        ("http://192.168.1.1/".to_string(), "private-use"),
        ("http://169.254.169.254/latest/meta-data/".to_string(), "cloud metadata"),
        ("-p http://169.254.169.254:80/".to_string(), "cloud metadata"),
        ("http://[::ffff:169.254.169.254]/".to_string(), "cloud metadata"),
        // A tunnel to a public host goes to 443 only.
        ("-p http://public.test:25/".to_string(), "port 25"),
    ];
    if let Some(gw) = &gw {
        refused.push((format!("http://{gw}:{host_any}/"), "private-use"));
    }
    for (url, why) in &refused {
        let r = de.ok(&a, &curl(url.clone())).await;
        let out = stdout(&r);
        let err = r["stderr"].as_str().unwrap();
        assert!(!out.contains("host-service"), "{url} reached the host: {r}");
        assert!(out.contains("403") || out.contains("aos egress proxy"), "{url} is refused by the proxy: {r}");
        assert!(err.contains("[aos] the egress proxy refused") && err.contains(why), "{url}: the reason ({why}) reaches stderr: {r}");
    }

    // Around the proxy: no route anywhere; loopback is the container's own.
    let mut direct = vec![
        format!("--noproxy '*' http://127.0.0.1:{host_any}/"),
        format!("--noproxy '*' http://127.0.0.3:{allowed}/"),
        "--noproxy '*' http://169.254.169.254/".to_string(),
        "--noproxy '*' http://10.1.2.3/".to_string(),
        "--noproxy '*' http://93.184.215.14/".to_string(),
    ];
    if let Some(gw) = &gw {
        direct.push(format!("--noproxy '*' http://{gw}:{host_any}/"));
    }
    for url in &direct {
        let r = de.ok(&a, &curl(url.clone())).await;
        let out = stdout(&r);
        assert!(!out.contains("host-service") && !out.contains("allowed-server"), "{url} got through: {r}");
        assert!(!out.ends_with(" rc=0\n"), "{url}: {r}");
    }
    let r = de
        .ok(
            &a,
            "ls /sys/class/net; python3 -c 'import socket\nfor t in [(\"8.8.8.8\", 53), (\"127.0.0.1\", 22)]:\n  try:\n    socket.create_connection(t, 2); print(\"connected\", t)\n  except OSError as e: print(\"no\", e.errno)'",
        )
        .await;
    assert!(stdout(&r).starts_with("lo\n") && !stdout(&r).contains("connected"), "{r}");

    // `net:HOST`: only that host.
    let b = de.agent(31, &["exec:net", "net:allowed.test"]);
    let r = de.ok(&b, &curl(format!("http://allowed.test:{allowed}/"))).await;
    assert_eq!(stdout(&r), "allowed-server rc=0\n", "{r}");
    let r = de.ok(&b, &curl(format!("http://other.test:{allowed}/"))).await;
    assert!(!stdout(&r).contains("allowed-server"), "{r}");
    assert!(r["stderr"].as_str().unwrap().contains("`net:other.test` not granted"), "{r}");

    // `exec:net` alone: no host is granted.
    let c = de.agent(32, &["exec:net"]);
    let r = de.ok(&c, &curl(format!("http://allowed.test:{allowed}/"))).await;
    assert!(!stdout(&r).contains("allowed-server"), "{r}");
    assert!(r["stderr"].as_str().unwrap().contains("`net:allowed.test` not granted"), "{r}");

    // The containers themselves have no network.
    for pid in [30, 31, 32] {
        let c = de.containers(Some(pid)).await;
        let mode = c[0].host_config.as_ref().and_then(|h| h.network_mode.clone()).unwrap_or_default();
        assert_eq!(mode, "none", "pid {pid}");
    }
    de.close().await;
}

// ---- ownership: the kernel never acts on a tree the agent controls ----

/// A command swaps a directory and a symlink to a directory outside the
/// workspace as fast as it can (`renameat2(RENAME_EXCHANGE)`) while the
/// kernel runs commands and file syscalls in that workspace: nothing
/// outside changes owner, mode or content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_swap_race_never_reaches_outside_the_workspace() {
    if !docker_ready("a_symlink_swap_race_never_reaches_outside_the_workspace").await {
        return;
    }
    let de = DockerEnv::new(|_| {}).await;
    let outside = de.env.dir.path().join("outside");
    std::fs::create_dir_all(outside.join("canary-dir")).unwrap();
    std::fs::write(outside.join("canary.txt"), "CANARY").unwrap();
    std::fs::set_permissions(outside.join("canary.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(outside.join("canary-dir"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let snapshot = |p: &Path| -> Vec<(String, u32, u32, u32)> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let m = e.metadata().unwrap();
            v.push((e.file_name().to_string_lossy().to_string(), m.uid(), m.gid(), m.mode()));
        }
        let m = std::fs::metadata(p).unwrap();
        v.push((".".into(), m.uid(), m.gid(), m.mode()));
        v.sort();
        v
    };
    let before = snapshot(&outside);

    let a = de.agent(40, &["exec", "fs:rw"]);
    // `d` is a directory, `l` a symlink to the host path outside; the
    // command exchanges them in a loop that outlives it (setsid).
    let setup = format!(
        "mkdir -p d/sub && touch d/f1 d/f2 d/sub/f3 && ln -s {} l && \
         setsid python3 -c 'import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nos.chdir(\"/workspace\")\nwhile True:\n    libc.renameat2(-100, b\"d\", -100, b\"l\", 2)' >/dev/null 2>&1 < /dev/null & \
         sleep 0.5; echo started",
        outside.display()
    );
    let r = de.ok(&a, &setup).await;
    assert_eq!(stdout(&r), "started\n", "{r}");
    let rt = &de.env.rt;
    for i in 0..40 {
        de.ok(&a, "true").await;
        let _ = rt.call(&a, "FS_WRITE", &json!({"path": format!("d/w{i}"), "content": "x"})).await;
        let _ = rt.call(&a, "FS_MKDIR", &json!({"path": format!("d/m{i}")})).await;
        let _ = rt.call(&a, "FS_LIST", &json!({"path": "d"})).await;
        let _ = rt.call(&a, "FS_READ", &json!({"path": "d/canary.txt"})).await.map(|r| {
            assert_ne!(r.output["content"], "CANARY", "read outside through the swapped link");
        });
        let _ = rt.call(&a, "FS_DELETE", &json!({"path": "d/canary-dir", "recursive": true})).await;
    }
    let r = de.ok(&a, "pgrep -f renameat2 >/dev/null && echo racing").await;
    assert_eq!(stdout(&r), "racing\n", "the swapper ran throughout: {r}");
    assert_eq!(snapshot(&outside), before, "something outside the workspace changed owner or mode");
    assert_eq!(std::fs::read_to_string(outside.join("canary.txt")).unwrap(), "CANARY");
    assert!(outside.join("canary-dir").is_dir());
    de.close().await;
}

/// An operator-named workspace that belongs to root is used as it is:
/// commands run as the unprivileged sandbox user and cannot write into it,
/// and nothing in it is ever handed to that user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_owned_operator_workspace_is_never_chowned() {
    if !docker_ready("a_root_owned_operator_workspace_is_never_chowned").await {
        return;
    }
    let de = DockerEnv::new(|_| {}).await;
    let ws = de.env.ws();
    chown(&ws, (0, 0));
    std::fs::create_dir_all(ws.join("dir/deeper")).unwrap();
    std::fs::write(ws.join("file.txt"), "root's").unwrap();
    std::fs::write(ws.join("dir/deeper/f"), "root's").unwrap();
    let a = de.agent(41, &["exec", "fs:rw"]);
    let r = de.ok(&a, "id -u; touch new 2>/dev/null && echo wrote || echo refused; cat file.txt").await;
    assert_eq!(stdout(&r), "1000\nrefused\nroot's", "{r}");
    // The kernel's own file work is unchanged (as root, like the workspace).
    de.env.rt.call(&a, "FS_WRITE", &json!({"path": "dir/k.txt", "content": "k"})).await.unwrap();
    de.ok(&a, "true").await;
    for p in [".", "dir", "dir/deeper", "dir/deeper/f", "file.txt", "dir/k.txt"] {
        assert_eq!(owner(&ws.join(p)), (0, 0), "{p} changed owner");
    }
    de.close().await;
}

/// A workspace the kernel made (under `$AOS_HOME/workspaces`) is given to
/// the sandbox user before first use, and what `FS_WRITE` creates in it is
/// born that user's: commands modify it in place, no chown involved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_made_workspace_belongs_to_the_sandbox_user() {
    if !docker_ready("a_kernel_made_workspace_belongs_to_the_sandbox_user").await {
        return;
    }
    let de = DockerEnv::new(|_| {}).await;
    let home = de.env.dir.path().join("home");
    let ws = home.join("workspaces").join("42");
    std::fs::create_dir_all(&ws).unwrap();
    assert_eq!(owner(&ws), (0, 0));
    let a = AgentContext { workspace: ws.clone(), ..de.agent(42, &["exec", "fs:rw"]) };
    // File syscalls first, before any command.
    let rt = &de.env.rt;
    rt.call(&a, "FS_WRITE", &json!({"path": "notes/a.txt", "content": "from FS_WRITE\n"})).await.unwrap();
    rt.call(&a, "FS_MKDIR", &json!({"path": "made"})).await.unwrap();
    for p in [".", "notes", "notes/a.txt", "made"] {
        assert_eq!(owner(&ws.join(p)), USER, "{p}");
    }
    let r = de.ok(&a, "id -u && echo more >> notes/a.txt && touch made/b top.txt && echo ok").await;
    assert_eq!(stdout(&r), "1000\nok\n", "{r}");
    let read = rt.call(&a, "FS_READ", &json!({"path": "notes/a.txt"})).await.unwrap();
    assert_eq!(read.output["content"], "from FS_WRITE\nmore\n");
    de.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_is_shared_with_the_fs_driver() {
    if !docker_ready("workspace_is_shared_with_the_fs_driver").await {
        return;
    }
    let de = DockerEnv::new(|_| {}).await;
    let a = de.agent(6, &["exec", "fs:rw"]);
    let rt = &de.env.rt;

    let r = de.ok(&a, "mkdir -p out && echo from-container > out/made.txt").await;
    assert_eq!(r["exit_code"], 0, "{r}");
    let read = rt.call(&a, "FS_READ", &json!({"path": "out/made.txt"})).await.unwrap();
    assert_eq!(read.output["content"], "from-container\n");

    rt.call(&a, "FS_MKDIR", &json!({"path": "src"})).await.unwrap();
    rt.call(&a, "FS_WRITE", &json!({"path": "src/host.txt", "content": "from-host\n"})).await.unwrap();
    let r = de.ok(&a, "cat src/host.txt && echo appended >> src/host.txt && touch src/new").await;
    assert_eq!(r["exit_code"], 0, "{r}");
    assert_eq!(stdout(&r), "from-host\n");
    let read = rt.call(&a, "FS_READ", &json!({"path": "src/host.txt"})).await.unwrap();
    assert_eq!(read.output["content"], "from-host\nappended\n");

    // Without fs:rw the workspace is read-only inside too.
    let ro = de.agent(7, &["exec", "fs:ro"]);
    let r = de.ok(&ro, "cat out/made.txt; touch nope 2>/dev/null || echo read-only").await;
    assert_eq!(stdout(&r), "from-container\nread-only\n", "{r}");
    de.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_removes_the_container() {
    if !docker_ready("release_removes_the_container").await {
        return;
    }
    let de = DockerEnv::new(|_| {}).await;
    let a = de.agent(8, &["exec"]);
    de.ok(&a, "true").await;
    let c = de.containers(Some(8)).await;
    assert_eq!(c.len(), 1);
    let labels = c[0].labels.clone().unwrap_or_default();
    assert_eq!(labels.get("aos.pid").map(String::as_str), Some("8"));
    de.env.rt.release_agent(8);
    let t = Instant::now();
    while !de.containers(Some(8)).await.is_empty() {
        assert!(t.elapsed() < Duration::from_secs(15), "container still there after release_agent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The next command of that pid gets a fresh container.
    assert_eq!(stdout(&de.ok(&a, "cat /tmp/state 2>/dev/null || echo fresh").await), "fresh\n");
    de.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_crashed_kernel_are_removed() {
    if !docker_ready("leftovers_of_a_crashed_kernel_are_removed").await {
        return;
    }
    let de = DockerEnv::new(|_| {}).await;
    let label = de.backend.config().kernel_label.clone();
    // A sandbox whose kernel process (an impossible pid) is gone.
    let d = bollard::Docker::connect_with_local_defaults().unwrap();
    let labels: HashMap<String, String> = [
        ("aos.sandbox", "1"),
        ("aos.kernel", label.as_str()),
        ("aos.pid", "99"),
        ("aos.owner", "4294967295"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let body = bollard::models::ContainerCreateBody {
        image: Some(DockerConfig::default().image),
        cmd: Some(vec!["sleep".into(), "600".into()]),
        labels: Some(labels),
        network_disabled: Some(true),
        ..Default::default()
    };
    d.create_container(None, body).await.unwrap();
    assert_eq!(de.containers(Some(99)).await.len(), 1);
    de.ok(&de.agent(13, &["exec"]), "true").await;
    assert!(de.containers(Some(99)).await.is_empty(), "the stale sandbox was removed");
    assert_eq!(de.containers(Some(13)).await.len(), 1, "this kernel's own sandbox stays");
    de.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_is_explained() {
    if !docker_ready("missing_image_is_explained").await {
        return;
    }
    let de = DockerEnv::new(|c| c.image = "aos-sandbox-missing:none".into()).await;
    let e = de.exec(&de.agent(9, &["exec"]), "true", None).await.unwrap_err();
    let m = e.to_string();
    assert!(m.contains("aos-sandbox-missing:none") && m.contains("aos sandbox build"), "{m}");
    de.close().await;
}

// ---- no Docker needed ----

#[tokio::test]
async fn without_the_exec_grant_exec_cmd_is_denied() {
    let de = DockerEnv::new(|_| {}).await;
    let a = de.agent(10, &["fs:rw"]);
    let e = de.exec(&a, "echo hi", None).await.unwrap_err();
    assert!(matches!(e, SyscallError::Denied(ref m) if m.contains("exec")), "{e}");
    assert!(!de.env.rt.syscalls_for(&a.caps).iter().any(|s| s.name == "EXEC_CMD"));
    let granted = de.agent(10, &["exec"]);
    assert!(de.env.rt.syscalls_for(&granted.caps).iter().any(|s| s.name == "EXEC_CMD"));
}

#[tokio::test]
async fn unreachable_docker_is_explained() {
    let de = DockerEnv::new(|c| c.host = Some("unix:///nonexistent/aos-test/docker.sock".into())).await;
    let e = de.exec(&de.agent(11, &["exec"]), "echo hi", None).await.unwrap_err();
    let m = e.to_string();
    assert!(m.contains("Docker is not reachable") && m.contains("/nonexistent/aos-test/docker.sock"), "{m}");
    assert!(m.contains("aos sandbox build") && m.contains("dockerd"), "{m}");
    let st = de.backend.status().await;
    assert!(st.server_version.is_none() && st.error.is_some());
}

#[tokio::test]
async fn no_backend_is_explained() {
    let env = Env::new().await;
    let e = env.rt.call(&env.agent(12, &["exec"]), "EXEC_CMD", &json!({"cmd": "echo hi"})).await.unwrap_err();
    assert!(e.to_string().contains("aos sandbox build"), "{e}");
}
