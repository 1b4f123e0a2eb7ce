//! EXEC_CMD against the real Docker engine: the `exec` driver, the
//! `aos:kernel/container` host interface and `DockerBackend`.
//!
//! Needs a running Docker engine and the sandbox image (`scripts/setup-docker.sh`).
//! Without them every Docker test prints `SKIPPED: …` and passes — except
//! when `CI` is set, where it fails.


use std::collections::HashMap;
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
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {why} (CI is set, so this is a failure, not a skip)");
    }
    // Straight to the process's stderr: the test harness does not capture it.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!! SKIPPED: `{test}` did not run: {why} !!!!!!!!\n");
    false
}

struct DockerEnv {
    env: Env,
    backend: Arc<DockerBackend>,
}

impl DockerEnv {
    async fn new(f: impl FnOnce(&mut DockerConfig)) -> DockerEnv {
        let mut cfg = test_config();
        f(&mut cfg);
        let backend = Arc::new(DockerBackend::connect(cfg).expect("backend"));
        let b: Arc<dyn aos_runtime::ContainerBackend> = backend.clone();
        let env = Env::with(move |c| c.container = Some(b)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_bomb_and_memory_hog_are_held_by_the_limits() {
    if !docker_ready("fork_bomb_and_memory_hog_are_held_by_the_limits").await {
        return;
    }
    let de = DockerEnv::new(|_| {}).await;
    let a = de.agent(3, &["exec"]);

    let t = Instant::now();
    let r = de.exec(&a, ":(){ :|:& };:", Some(4)).await;
    assert!(t.elapsed() < Duration::from_secs(20), "the call returns: {:?}", t.elapsed());
    eprintln!("fork bomb: {r:?}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_is_off_unless_exec_net() {
    if !docker_ready("network_is_off_unless_exec_net").await {
        return;
    }
    let de = DockerEnv::new(|_| {}).await;
    // No traffic leaves the machine here: the sandbox has no interface but
    // loopback, so the lookup fails before sending anything.
    let a = de.agent(4, &["exec"]);
    let r = de.ok(&a, "ls /sys/class/net; getent hosts example.com && echo RESOLVED || echo failed").await;
    assert_eq!(stdout(&r), "lo\nfailed\n", "{r}");

    // With exec:net the container is on a network (checked by inspection only).
    let n = de.agent(5, &["exec:net"]);
    de.ok(&n, "true").await;
    let c = de.containers(Some(5)).await;
    assert_eq!(c.len(), 1);
    let mode = c[0].host_config.as_ref().and_then(|h| h.network_mode.clone()).unwrap_or_default();
    assert_ne!(mode, "none", "exec:net has a network");
    let c = de.containers(Some(4)).await;
    let mode = c[0].host_config.as_ref().and_then(|h| h.network_mode.clone()).unwrap_or_default();
    assert_eq!(mode, "none");
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
