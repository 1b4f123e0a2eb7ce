//! Stdio MCP servers in the sandbox container (the default without
//! `host = true`), against the real Docker engine and the sandbox image
//! (`scripts/setup-docker.sh`; without them each test skips loudly, and
//! fails under CI): tool calls through the kernel, the container's
//! lock-down, what it cannot reach (host files outside its mounts, the
//! network unless granted — adversarial, in `ADVERSARIAL_TESTS`), a killed
//! container restarted by the next call, no container left after a stop, and
//! the error of a missing or outdated image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_kernel::ExitStatus;
use aos_mcp::{McpConfig, McpSource, MountConfig, NetConfig, NetPolicy, ServerConfig};
use aos_sandbox::{DockerBackend, DockerConfig};
use bollard::query_parameters::{KillContainerOptions, ListContainersOptions};

use crate::support::{everything_bin, harness_with, Harness};

/// Where the npm packages are mounted in the containers.
const NODE_DIR: &str = "/opt/mcp";
/// Where `tests/servers` is mounted in the containers.
const SCRIPTS: &str = "/opt/servers";

static LABELS: AtomicU64 = AtomicU64::new(0);

/// A Docker config with a kernel label of its own (to count this test's containers).
fn docker_config() -> DockerConfig {
    let n = LABELS.fetch_add(1, Ordering::Relaxed);
    DockerConfig { kernel_label: format!("mcptest-{}-{n}", std::process::id()), ..Default::default() }
}

/// `~/.cache/aos/mcp-node` (its `node_modules`), if the engine answers, the
/// image is current and the packages are installed; else a loud skip.
async fn ready() -> Option<PathBuf> {
    let test = aos_test_support::current_test_or("mcp container");
    let Some(bin) = everything_bin() else {
        aos_test_support::skip(&test, "@modelcontextprotocol/server-everything is not installed in ~/.cache/aos/mcp-node (run ./dev setup)");
        return None;
    };
    let probe = DockerBackend::connect(DockerConfig::default()).unwrap();
    let st = probe.status().await;
    if st.server_version.is_none() {
        aos_test_support::skip(&test, &st.error.unwrap_or_else(|| "Docker is not reachable (run scripts/setup-docker.sh)".into()));
        return None;
    }
    if let Err(e) = probe.check_image().await {
        aos_test_support::skip(&test, &format!("{e} (run scripts/build-sandbox-image.sh)"));
        return None;
    }
    // node_modules/.bin/mcp-server-everything -> the directory holding node_modules.
    Some(bin.parent()?.parent()?.parent()?.to_path_buf())
}

fn mount(host: &Path, container: &str) -> MountConfig {
    MountConfig { host: host.to_path_buf(), container: Some(container.into()), writable: false }
}

/// `server-everything` in a container, the npm packages mounted read-only.
fn everything(node: &Path) -> ServerConfig {
    ServerConfig {
        command: Some("node".into()),
        args: vec![format!("{NODE_DIR}/node_modules/@modelcontextprotocol/server-everything/dist/index.js"), "stdio".into()],
        mounts: vec![mount(node, NODE_DIR)],
        ..Default::default()
    }
}

/// A script of `tests/servers` on the mounted SDK, in a container.
fn sdk_script(node: &Path, script: &str) -> ServerConfig {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/servers");
    ServerConfig {
        command: Some("node".into()),
        args: vec![format!("{SCRIPTS}/{script}"), format!("{NODE_DIR}/node_modules/@modelcontextprotocol/sdk")],
        mounts: vec![mount(node, NODE_DIR), mount(&dir, SCRIPTS)],
        ..Default::default()
    }
}

fn source(servers: Vec<(&str, ServerConfig)>, docker: DockerConfig) -> Arc<McpSource> {
    let mut cfg = McpConfig::default();
    cfg.servers.extend(servers.into_iter().map(|(n, s)| (n.to_string(), s)));
    let net = NetPolicy::new(NetConfig::default()).unwrap();
    Arc::new(McpSource::open(&cfg, |k| std::env::var(k).ok(), Arc::new(net), docker).unwrap())
}

/// A kernel with these servers, all started in containers labelled `docker.kernel_label`.
async fn harness(servers: Vec<(&str, ServerConfig)>, docker: DockerConfig) -> Harness {
    let mcp = source(servers, docker);
    for (name, r) in mcp.start_all().await {
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    harness_with(mcp)
}

fn docker() -> bollard::Docker {
    bollard::Docker::connect_with_local_defaults().unwrap()
}

/// The containers (running or not) carrying all of these labels.
async fn containers(labels: &[String]) -> Vec<bollard::models::ContainerSummary> {
    let filters: HashMap<String, Vec<String>> = [("label".to_string(), labels.to_vec())].into_iter().collect();
    docker().list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() })).await.unwrap()
}

fn kernel_label(l: &str) -> String {
    format!("aos.kernel={l}")
}

/// Waits (up to 20 s) until no container carries `label`: removal is
/// asynchronous in the engine (`auto_remove`, a guard's removal task).
async fn assert_none_left(label: &str) {
    let t0 = Instant::now();
    loop {
        let left = containers(&[kernel_label(label)]).await;
        if left.is_empty() {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "containers left behind: {:?}", left.iter().map(|c| &c.names).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_in_a_locked_down_container_answers_through_the_kernel() {
    let Some(node) = ready().await else { return };
    let cfg = docker_config();
    let label = cfg.kernel_label.clone();
    let h = harness(vec![("everything", everything(&node))], cfg).await;
    let server = h.mcp.server("everything").unwrap().clone();
    assert_eq!(server.pid().await, None, "no host process");
    let id = server.container_id().await.expect("a container");
    assert!(server.describe().contains("sandbox container (image aos-sandbox:latest, network: none"), "{}", server.describe());

    let pid = h
        .spawn(
            &[r#"[SYS_CALL::MCP_EVERYTHING_ECHO] {"message": "hello from a box"}"#, r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#],
            &["mcp:everything"],
        )
        .await;
    assert!(matches!(h.wait(pid).await, ExitStatus::Exited { code: 0, .. }));
    assert!(h.log(pid).contains("Echo: hello from a box"), "{}", h.log(pid));

    // The EXEC_CMD lock-down, and the labels the kernel's cleanup uses.
    let info = docker().inspect_container(&id, None).await.unwrap();
    let hc = info.host_config.unwrap();
    assert_eq!(hc.network_mode.as_deref(), Some("none"));
    assert_eq!(hc.readonly_rootfs, Some(true));
    assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
    assert_eq!(hc.security_opt, Some(vec!["no-new-privileges".to_string()]));
    assert_eq!(hc.privileged, Some(false));
    assert!(hc.memory.unwrap_or(0) > 0 && hc.pids_limit.unwrap_or(0) > 0);
    assert_eq!(hc.auto_remove, Some(true));
    let mounts = hc.mounts.unwrap_or_default();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!((mounts[0].target.as_deref(), mounts[0].read_only), (Some(NODE_DIR), Some(true)));
    let c = info.config.unwrap();
    assert_eq!(c.user.as_deref(), Some("1000:1000"));
    let env = c.env.unwrap_or_default();
    assert!(!env.iter().any(|e| e.starts_with("AOS_") || e.starts_with("CARGO")), "the kernel's environment leaked: {env:?}");
    let labels = c.labels.unwrap_or_default();
    assert_eq!(labels.get("aos.mcp").map(String::as_str), Some("everything"));
    assert_eq!(labels.get("aos.kernel"), Some(&label));
    assert_eq!(labels.get("aos.owner"), Some(&std::process::id().to_string()));
    h.stop().await;
    assert_none_left(&label).await;
}

/// Adversarial: server-filesystem allowed everything (`/`) inside its
/// container reads its mount, and nothing else of the host: a secret file
/// next to the mounted directory (readable on the host) does not exist there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_mcp_server_reads_no_host_file_outside_its_mounts() {
    let Some(node) = ready().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    std::fs::write(docs.join("notes.txt"), "meeting at noon").unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "the launch code").unwrap();
    let cfg = docker_config();
    let label = cfg.kernel_label.clone();
    let files = ServerConfig {
        command: Some("node".into()),
        // Its own policy allows the whole container: only the container stops it.
        args: vec![format!("{NODE_DIR}/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"), "/".into()],
        mounts: vec![mount(&node, NODE_DIR), MountConfig { host: docs.clone(), container: None, writable: false }],
        ..Default::default()
    };
    let h = harness(vec![("files", files)], cfg).await;
    let notes = docs.join("notes.txt").display().to_string();
    let secret = secret.display().to_string();
    let pid = h
        .spawn(
            &[
                &format!(r#"[SYS_CALL::MCP_FILES_READ_TEXT_FILE] {{"path": "{notes}"}}"#),
                &format!(r#"[SYS_CALL::MCP_FILES_READ_TEXT_FILE] {{"path": "{secret}"}}"#),
                &format!(r#"[SYS_CALL::MCP_FILES_LIST_DIRECTORY] {{"path": "{}"}}"#, docs.display()),
                &format!(r#"[SYS_CALL::MCP_FILES_LIST_DIRECTORY] {{"path": "{}"}}"#, dir.path().display()),
                &format!(r#"[SYS_CALL::MCP_FILES_WRITE_FILE] {{"path": "{notes}", "content": "overwritten"}}"#),
                r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#,
            ],
            &["mcp:files"],
        )
        .await;
    assert!(matches!(h.wait(pid).await, ExitStatus::Exited { code: 0, .. }));
    let log = h.log(pid);
    assert!(!log.contains("the launch code"), "a host file outside the mounts reached the model: {log}");
    // Listing the mount and the directory around it shows the mount only.
    assert!(!log.contains("[FILE] secret.txt"), "a host file outside the mounts is visible: {log}");
    assert!(log.contains("ENOENT") || log.contains("no such file"), "{log}");
    assert!(log.contains("meeting at noon"), "the mount is not readable: {log}");
    assert!(log.contains("[FILE] notes.txt") && log.contains("[DIR] docs"), "{log}");
    // The mount is read-only.
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "meeting at noon");
    h.stop().await;
    assert_none_left(&label).await;
}

/// The address of the Docker bridge on the host (the default network's gateway).
async fn bridge_gateway() -> String {
    let net = docker().inspect_network("bridge", None).await.unwrap();
    net.ipam.and_then(|i| i.config).unwrap_or_default().into_iter().find_map(|c| c.gateway).expect("the bridge network has a gateway")
}

/// A one-answer HTTP listener on `addr`; counts the connections it accepted.
async fn listener(addr: &str) -> (String, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind((addr, 0)).await.unwrap();
    let url = format!("http://{addr}:{}/", l.local_addr().unwrap().port());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = l.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhost secret").await;
        }
    });
    (url, seen)
}

/// Adversarial: a stdio server in its container has no network unless its
/// table says `network = true`: a fetch of a listener on the host's Docker
/// bridge fails and the listener sees no connection; the same server with
/// `network = true` reaches it (the control: the listener is reachable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_mcp_server_has_no_network_unless_its_table_grants_it() {
    let Some(node) = ready().await else { return };
    let (url, seen) = listener(&bridge_gateway().await).await;
    let cfg = docker_config();
    let label = cfg.kernel_label.clone();
    let online = ServerConfig { network: true, ..sdk_script(&node, "fetcher.mjs") };
    let h = harness(vec![("offline", sdk_script(&node, "fetcher.mjs")), ("online", online)], cfg).await;
    let call = |server: &str| format!(r#"[SYS_CALL::MCP_{server}_FETCH_URL] {{"url": "{url}"}}"#);
    let pid = h.spawn(&[&call("OFFLINE"), r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#], &["mcp:offline"]).await;
    h.wait(pid).await;
    let log = h.log(pid);
    assert!(log.contains("fetch failed"), "{log}");
    assert!(!log.contains("host secret"), "a server without network reached the host: {log}");
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the listener saw a connection from a server without network");

    let pid = h.spawn(&[&call("ONLINE"), r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#], &["mcp:online"]).await;
    h.wait(pid).await;
    let log = h.log(pid);
    assert!(log.contains("fetched: status 200, body host secret"), "the granted network does not work: {log}");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    h.stop().await;
    assert_none_left(&label).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_container_is_started_again_by_the_next_call() {
    let Some(node) = ready().await else { return };
    let cfg = docker_config();
    let label = cfg.kernel_label.clone();
    let h = harness(vec![("everything", everything(&node))], cfg).await;
    let server = h.mcp.server("everything").unwrap().clone();
    let first = server.container_id().await.unwrap();
    assert_eq!(server.starts(), 1);
    // `docker kill`, by label, as an operator (or the OOM killer) would.
    let mine = containers(&[kernel_label(&label), "aos.mcp=everything".into()]).await;
    assert_eq!(mine.len(), 1);
    docker().kill_container(mine[0].id.as_deref().unwrap(), None::<KillContainerOptions>).await.unwrap();
    // The connection ends with the container's output.
    let t0 = Instant::now();
    while server.container_id().await.is_some() {
        assert!(t0.elapsed() < Duration::from_secs(10), "the connection did not notice the killed container");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = h
        .spawn(&[r#"[SYS_CALL::MCP_EVERYTHING_ECHO] {"message": "after the kill"}"#, r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#], &["mcp:everything"])
        .await;
    assert!(matches!(h.wait(pid).await, ExitStatus::Exited { code: 0, .. }));
    assert!(h.log(pid).contains("Echo: after the kill"), "{}", h.log(pid));
    assert_eq!(server.starts(), 2);
    let second = server.container_id().await.unwrap();
    assert_ne!(second, first);
    // The killed one is gone (auto_remove); only the new one runs.
    let t0 = Instant::now();
    loop {
        let ids: Vec<String> = containers(&[kernel_label(&label)]).await.into_iter().filter_map(|c| c.id).collect();
        if ids == [second.clone()] {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "containers: {ids:?}, expected only {second}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.stop().await;
    assert_none_left(&label).await;
}

/// Stopping the source (the kernel's shutdown) removes every container,
/// also one whose connection a call still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_container_is_left_after_the_source_stops() {
    let Some(node) = ready().await else { return };
    let cfg = docker_config();
    let label = cfg.kernel_label.clone();
    let mcp = source(vec![("one", everything(&node)), ("two", everything(&node))], cfg);
    for (name, r) in mcp.start_all().await {
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert_eq!(containers(&[kernel_label(&label)]).await.len(), 2);
    // A call in flight while the source stops.
    let two = mcp.server("two").unwrap().clone();
    let busy = tokio::spawn(async move {
        two.call("trigger-long-running-operation", &serde_json::json!({"duration": 30, "steps": 2})).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    aos_abi::SyscallSource::shutdown(mcp.as_ref()).await;
    assert!(containers(&[kernel_label(&label)]).await.is_empty(), "shutdown returned with containers left");
    let r = tokio::time::timeout(Duration::from_secs(10), busy).await.expect("the call in flight ended").unwrap();
    assert!(r.is_err(), "{r:?}");
    assert_none_left(&label).await;
}

/// A missing image, or one built by an older version of the build script
/// (another `aos.sandbox.recipe`), is an error saying what to run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_outdated_image_says_how_to_build_it() {
    let Some(node) = ready().await else { return };
    let missing = DockerConfig { image: "aos-no-such-image:0".into(), ..docker_config() };
    let s = source(vec![("everything", everything(&node))], missing);
    let e = s.start_all().await.remove(0).1.unwrap_err().to_string();
    assert!(e.contains("cannot run in its sandbox container") && e.contains("aos sandbox build"), "{e}");

    // An image labelled as the script's, with another recipe.
    let d = docker();
    let tag = format!("aos-sandbox-outdated-{}", std::process::id());
    let body = bollard::models::ContainerCreateBody { image: Some("aos-sandbox:latest".into()), ..Default::default() };
    let c = d.create_container(None::<bollard::query_parameters::CreateContainerOptions>, body).await.unwrap();
    let opts = bollard::query_parameters::CommitContainerOptions {
        container: Some(c.id.clone()),
        repo: Some(tag.clone()),
        tag: Some("1".into()),
        changes: Some("LABEL aos.sandbox.recipe=0ld0ld0ld0ld".into()),
        ..Default::default()
    };
    d.commit_container(opts, bollard::models::ContainerConfig::default()).await.unwrap();
    d.remove_container(&c.id, None::<bollard::query_parameters::RemoveContainerOptions>).await.unwrap();
    let old = DockerConfig { image: format!("{tag}:1"), ..docker_config() };
    let s = source(vec![("everything", everything(&node))], old);
    let e = s.start_all().await.remove(0).1.unwrap_err().to_string();
    let _ = d.remove_image(&format!("{tag}:1"), None::<bollard::query_parameters::RemoveImageOptions>, None).await;
    assert!(e.contains("built by an older version") && e.contains("0ld0ld0ld0ld"), "{e}");
    assert!(e.contains("aos sandbox build") && e.contains("scripts/build-sandbox-image.sh"), "{e}");
}
