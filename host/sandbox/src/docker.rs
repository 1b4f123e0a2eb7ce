//! [`DockerBackend`]: the [`ContainerBackend`] that runs `EXEC_CMD` commands
//! in per-process Docker containers, through the engine's API (`bollard`,
//! local unix socket by default).
//!
//! One container per process, created on its first command from the sandbox
//! image (`aos-sandbox:latest`, built by `aos sandbox build` /
//! `scripts/build-sandbox-image.sh`) and reused for its later commands, so
//! files in `/tmp` and background state survive between them. It is removed
//! when the process is released and when the kernel shuts down; containers
//! left by a kernel that crashed are removed when the next backend for the
//! same `$AOS_HOME` connects.
//!
//! Every container gets:
//! - the process's workspace bind-mounted at `/workspace` (read-only unless the
//!   process holds `fs:rw`), which is also the working directory;
//! - network mode `none`: only a loopback interface. With `exec:net` the
//!   kernel's egress proxy (`aos_egress::proxy`) listens on that loopback and
//!   `HTTP_PROXY`/`HTTPS_PROXY` point to it: the only way out, under the
//!   process's `net` grants and the address policy of `NET_FETCH`;
//! - memory (no swap), pids and CPU limits, `cap-drop ALL`,
//!   `no-new-privileges`, no privileges, a read-only root filesystem with a
//!   tmpfs `/tmp` (also `$HOME`), and an init process that reaps zombies;
//! - a non-root user: the configured `user`, else the owner of the
//!   workspace, else (a workspace owned by root) uid/gid 1000. A workspace
//!   the kernel made is given to that user before first use, and the host's
//!   own file work in a user's workspace runs with that user's ids
//!   (`workspace.rs`, `fs_guard.rs`), so files written by `FS_WRITE` and by
//!   commands belong to the same user without any chown: the kernel never
//!   walks, chowns or chmods anything inside a workspace. An operator-named
//!   workspace owned by root is left as it is (commands then cannot write
//!   into it; give it to a user).
//!
//! Each command runs as `bash -lc CMD` (`sh -c CMD` in an image without bash)
//! under `timeout -s KILL` (whole seconds, rounded up), which kills its whole
//! process group when the timeout passes; anything that escaped the group is
//! then killed by an environment marker every process of the command
//! inherits. What a command leaves running in its process group (background
//! jobs, a fork bomb) is killed when it ends; a server meant to outlive the
//! command must be started with `setsid … >log 2>&1 &`. stdout and stderr are
//! each capped (`truncated`), and a command killed at its timeout returns
//! `timed_out: true` (exit code 137) rather than an error. A container that
//! died or can no longer start processes is replaced on the next command.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, ListContainersOptions, RemoveContainerOptions};
use bollard::Docker;
use futures_util::StreamExt;

use aos_abi::SyscallError;

use aos_egress::proxy::{self as egress, Egress, Proxy};

use crate::{ContainerAgent, ContainerBackend, ExecOutput};

/// Default sandbox image.
pub const DEFAULT_IMAGE: &str = "aos-sandbox:latest";
/// Default Docker endpoint when neither the config nor `DOCKER_HOST` names one.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
/// uid:gid commands run as when the workspace belongs to root.
pub const SANDBOX_USER: (u32, u32) = (1000, 1000);

/// Labels every sandbox container carries.
pub const LABEL_SANDBOX: &str = "aos.sandbox";
pub const LABEL_KERNEL: &str = "aos.kernel";
pub const LABEL_PID: &str = "aos.pid";
pub const LABEL_INSTANCE: &str = "aos.instance";
/// OS process id of the kernel that created the container (stale-container cleanup).
pub const LABEL_OWNER: &str = "aos.owner";
/// The sandbox image's recipe (see [`image_recipe`]).
pub const LABEL_RECIPE: &str = "aos.sandbox.recipe";

/// The image build script (`aos sandbox build` runs the same text).
const BUILD_SCRIPT: &str = include_str!("../../../scripts/build-sandbox-image.sh");

/// The recipe the sandbox image of this version is built from: the first 12
/// hex digits of the SHA-256 of the build script's package list (its
/// `packages="…"` line), which the script puts on the image as the label
/// `aos.sandbox.recipe`. An image with another value was built by another
/// version (e.g. before Node.js was added) and is rebuilt by the script.
pub fn image_recipe() -> &'static str {
    use sha2::Digest;
    static RECIPE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RECIPE.get_or_init(|| {
        let list = BUILD_SCRIPT
            .lines()
            .find_map(|l| l.strip_prefix("packages=\"").and_then(|r| r.strip_suffix('"')))
            .expect("scripts/build-sandbox-image.sh has a packages=\"…\" line");
        hex::encode(sha2::Sha256::digest(list.as_bytes()))[..12].to_string()
    })
}

/// Runs one command: `timeout` puts it in a process group of its own and
/// SIGKILLs the group when the timeout passes; whatever the command left
/// running in that group (background jobs, a fork bomb) is killed when it
/// ends, with the shell's builtin `kill` (no fork needed when pids are
/// exhausted). Arguments: seconds, shell, its flag, the command line.
const WRAPPER: &str = "timeout -s KILL \"$1\" \"$2\" \"$3\" \"$4\" & p=$!; wait $p; rc=$?; kill -9 -$p 2>/dev/null; exit $rc";

/// Environment marker that every process of one command inherits.
const EXEC_MARK: &str = "AOS_EXEC_ID";

/// How sandboxes are made. [`DockerConfig::default`] gives the documented
/// defaults; [`DockerConfig::for_home`] also labels the containers with the
/// kernel's `$AOS_HOME`, which the kernel and `aos run` should use.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// Image the containers run (default `aos-sandbox:latest`).
    pub image: String,
    /// Docker endpoint, e.g. `unix:///var/run/docker.sock` (default: `$DOCKER_HOST`,
    /// else `unix:///var/run/docker.sock`).
    pub host: Option<String>,
    /// Memory limit of one container, swap included (default 256 MiB).
    pub memory_bytes: i64,
    /// Most processes/threads alive at once in one container (default 128).
    pub pids_limit: i64,
    /// CPUs one container may use (default 1.0).
    pub cpus: f64,
    /// Size of the tmpfs mounted at `/tmp` (default 64 MiB; counts against memory).
    pub tmp_bytes: i64,
    /// Bytes kept of stdout and of stderr, each (default 64 KiB).
    pub output_cap_bytes: usize,
    /// Timeout used when a caller passes none (zero) (default 30 s).
    pub default_timeout: Duration,
    /// Longest timeout honoured; longer ones are cut to it (default 10 min).
    pub max_timeout: Duration,
    /// `user[:group]` commands run as (default: the workspace's owner, or
    /// 1000:1000 when it belongs to root).
    pub user: Option<String>,
    /// Value of the `aos.kernel` label; containers of a crashed kernel with the
    /// same label are removed at connect (default `default`; see [`DockerConfig::for_home`]).
    pub kernel_label: String,
    /// Timeout of one Docker API request, in seconds (default 120).
    pub api_timeout_secs: u64,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            image: DEFAULT_IMAGE.to_string(),
            host: None,
            memory_bytes: 256 << 20,
            pids_limit: 128,
            cpus: 1.0,
            tmp_bytes: 64 << 20,
            output_cap_bytes: 64 << 10,
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(600),
            user: None,
            kernel_label: "default".to_string(),
            api_timeout_secs: 120,
        }
    }
}

impl DockerConfig {
    /// The defaults, with containers labelled for the kernel whose home is `home`.
    pub fn for_home(home: &Path) -> Self {
        DockerConfig { kernel_label: kernel_label_for(home), ..Default::default() }
    }

    /// The Docker endpoint this config talks to.
    pub fn endpoint(&self) -> String {
        self.host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string())
    }
}

/// The `aos.kernel` label of a kernel home: 12 hex digits of the SHA-256 of its path.
pub fn kernel_label_for(home: &Path) -> String {
    use sha2::Digest;
    let abs = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
    let digest = sha2::Sha256::digest(abs.to_string_lossy().as_bytes());
    hex::encode(&digest[..6])
}

/// Why the backend could not be created.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("invalid Docker endpoint `{host}`: {detail}")]
    BadHost { host: String, detail: String },
}

/// What `aos sandbox status` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DockerStatus {
    pub endpoint: String,
    /// The engine's version if it answered.
    pub server_version: Option<String>,
    /// Why it did not answer.
    pub error: Option<String>,
    pub image: String,
    pub image_present: bool,
    /// Sandbox containers currently alive (any kernel).
    pub containers: usize,
}

/// One process's container.
#[derive(Clone)]
struct Sandbox {
    id: String,
    workspace: PathBuf,
    writable: bool,
    egress: Option<Egress>,
    /// The egress proxy serving this container (`exec:net`).
    proxy: Option<Arc<Proxy>>,
    /// Whether `bash` exists in the image (else `sh`).
    bash: bool,
}

/// Runs commands in per-process Docker containers. See the module docs.
pub struct DockerBackend {
    config: DockerConfig,
    endpoint: String,
    /// Connected lazily, so a kernel starts without Docker and `EXEC_CMD` says why it cannot run.
    docker: tokio::sync::Mutex<Option<Docker>>,
    /// One lock per pid: a process's container is created once.
    sandboxes: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<Option<Sandbox>>>>>,
    instance: String,
    exec_ids: AtomicU64,
    cleaned: tokio::sync::OnceCell<()>,
}

static INSTANCES: AtomicU64 = AtomicU64::new(0);

impl DockerBackend {
    /// Creates the backend. Does not need the engine to be up: connecting
    /// happens on first use (and is retried on every command until it works),
    /// so without Docker `EXEC_CMD` fails with an error saying how to start it.
    /// Only a malformed endpoint is refused here.
    pub fn connect(config: DockerConfig) -> Result<DockerBackend, DockerError> {
        let endpoint = config.endpoint();
        if !(endpoint.starts_with("unix://")
            || endpoint.starts_with("tcp://")
            || endpoint.starts_with("http://")
            || endpoint.starts_with('/'))
        {
            return Err(DockerError::BadHost {
                host: endpoint,
                detail: "use unix:///path/to/docker.sock or tcp://HOST:PORT".into(),
            });
        }
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        Ok(DockerBackend {
            instance: format!("{}-{}", std::process::id(), n),
            config,
            endpoint,
            docker: tokio::sync::Mutex::new(None),
            sandboxes: Mutex::new(HashMap::new()),
            exec_ids: AtomicU64::new(1),
            cleaned: tokio::sync::OnceCell::new(),
        })
    }

    /// [`DockerBackend::connect`] with [`DockerConfig::for_home`], removing
    /// containers left by a crashed kernel of the same home right away if the
    /// engine answers. What the daemon and `aos run` use.
    pub async fn for_home(home: &Path) -> Result<DockerBackend, DockerError> {
        Self::open(DockerConfig::for_home(home)).await
    }

    /// [`DockerBackend::connect`], then removes containers left by a crashed
    /// kernel with the same `kernel_label` right away if the engine answers.
    pub async fn open(config: DockerConfig) -> Result<DockerBackend, DockerError> {
        let b = DockerBackend::connect(config)?;
        if let Ok(d) = b.client().await {
            b.cleaned.get_or_init(|| async { b.clean_stale(&d).await }).await;
        }
        Ok(b)
    }

    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// Whether the engine answers and the image exists (for `aos sandbox status`).
    pub async fn status(&self) -> DockerStatus {
        let mut st = DockerStatus {
            endpoint: self.endpoint.clone(),
            server_version: None,
            error: None,
            image: self.config.image.clone(),
            image_present: false,
            containers: 0,
        };
        let d = match self.client().await {
            Ok(d) => d,
            Err(e) => {
                st.error = Some(plain(e));
                return st;
            }
        };
        match d.version().await {
            Ok(v) => st.server_version = Some(v.version.unwrap_or_else(|| "?".into())),
            Err(e) => {
                st.error = Some(plain(self.unreachable(&e)));
                return st;
            }
        }
        st.image_present = d.inspect_image(&self.config.image).await.is_ok();
        st.containers = list_with_label(&d, &format!("{LABEL_SANDBOX}=1")).await.map(|v| v.len()).unwrap_or(0);
        st
    }

    /// The engine's client, connecting if needed; the error says how to start Docker.
    async fn client(&self) -> Result<Docker, SyscallError> {
        let mut guard = self.docker.lock().await;
        if let Some(d) = guard.as_ref() {
            return Ok(d.clone());
        }
        let ep = &self.endpoint;
        let timeout = self.config.api_timeout_secs;
        let res = if let Some(path) = ep.strip_prefix("unix://").or_else(|| ep.starts_with('/').then_some(ep.as_str())) {
            Docker::connect_with_unix(path, timeout, bollard::API_DEFAULT_VERSION)
        } else {
            Docker::connect_with_http(ep, timeout, bollard::API_DEFAULT_VERSION)
        };
        let d = res.map_err(|e| self.unreachable(&e))?;
        d.ping().await.map_err(|e| self.unreachable(&e))?;
        *guard = Some(d.clone());
        Ok(d)
    }

    fn unreachable(&self, e: &bollard::errors::Error) -> SyscallError {
        SyscallError::Internal(format!(
            "Docker is not reachable at {} ({e}), so EXEC_CMD commands and sandboxed MCP servers cannot \
             run (they never run on the host). Start the Docker engine (as root: `scripts/setup-docker.sh`, or `dockerd &`), \
             then build the sandbox image with `aos sandbox build`",
            self.endpoint
        ))
    }

    pub(crate) fn image_missing(&self) -> SyscallError {
        SyscallError::Internal(format!(
            "the sandbox image `{}` does not exist in the Docker engine at {}; build it with \
             `aos sandbox build` (or `scripts/build-sandbox-image.sh {}`)",
            self.config.image, self.endpoint, self.config.image
        ))
    }

    /// Maps an API error; a lost connection means the engine went away.
    pub(crate) fn api_err(&self, what: &str, e: bollard::errors::Error) -> SyscallError {
        use bollard::errors::Error as E;
        match e {
            E::HyperLegacyError { .. } | E::SocketNotFoundError(_) | E::IOError { .. } => self.unreachable(&e),
            E::RequestTimeoutError => SyscallError::Timeout(format!("Docker did not answer ({what})")),
            e => SyscallError::Internal(format!("Docker failed to {what}: {e}")),
        }
    }

    /// What every container of this backend gets (EXEC_CMD's sandboxes and
    /// stdio MCP servers alike): network mode `none`, memory (no swap), pids
    /// and CPU limits, `cap-drop ALL`, `no-new-privileges`, no privileges, a
    /// read-only root filesystem with a size-capped tmpfs `/tmp`, and an init
    /// process that reaps zombies. Callers add their mounts.
    pub(crate) fn locked_down(&self) -> HostConfig {
        HostConfig {
            network_mode: Some("none".to_string()),
            memory: Some(self.config.memory_bytes),
            memory_swap: Some(self.config.memory_bytes),
            pids_limit: Some(self.config.pids_limit),
            nano_cpus: Some((self.config.cpus * 1e9) as i64),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            privileged: Some(false),
            readonly_rootfs: Some(true),
            tmpfs: Some(
                [("/tmp".to_string(), format!("rw,nosuid,nodev,size={},mode=1777", self.config.tmp_bytes))]
                    .into_iter()
                    .collect(),
            ),
            init: Some(true),
            ..Default::default()
        }
    }

    /// The labels of a container of this backend (`aos.sandbox`, `aos.kernel`,
    /// `aos.instance`, `aos.owner`), so that [`ContainerBackend::shutdown`]
    /// and the stale-container cleanup of the next kernel find it.
    pub(crate) fn labels(&self) -> HashMap<String, String> {
        [
            (LABEL_SANDBOX, "1".to_string()),
            (LABEL_KERNEL, self.config.kernel_label.clone()),
            (LABEL_INSTANCE, self.instance.clone()),
            (LABEL_OWNER, std::process::id().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The Docker client, connected (and this home's stale containers
    /// removed) on first use.
    pub(crate) async fn ready_client(&self) -> Result<Docker, SyscallError> {
        let d = self.client().await?;
        self.cleaned.get_or_init(|| async { self.clean_stale(&d).await }).await;
        Ok(d)
    }

    /// A unique suffix for a container name.
    pub(crate) fn next_serial(&self) -> u64 {
        self.exec_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// This backend's instance label (every container it made carries it).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Whether the configured image exists and, when it was built by
    /// `scripts/build-sandbox-image.sh` (label `aos.sandbox=1`), is of the
    /// current recipe ([`image_recipe`]); `Err` says what to run. An image
    /// not built by the script (an operator's own) is taken as it is.
    pub async fn check_image(&self) -> Result<(), SyscallError> {
        let d = self.client().await?;
        let info = match d.inspect_image(&self.config.image).await {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return Err(self.image_missing()),
            Err(e) => return Err(self.api_err("inspect the sandbox image", e)),
        };
        let labels = info.config.and_then(|c| c.labels).unwrap_or_default();
        if labels.get(LABEL_SANDBOX).map(String::as_str) != Some("1") {
            return Ok(());
        }
        let have = labels.get(LABEL_RECIPE).map(String::as_str).unwrap_or("none");
        if have != image_recipe() {
            return Err(SyscallError::Internal(format!(
                "the sandbox image `{}` was built by an older version of AgentOS (recipe `{have}`, this version needs \
                 `{}`: its packages differ, e.g. no Node.js for MCP servers); rebuild it with `aos sandbox build` \
                 (or `scripts/build-sandbox-image.sh {}`, which rebuilds an outdated image)",
                self.config.image,
                image_recipe(),
                self.config.image
            )));
        }
        Ok(())
    }

    /// Removes containers of this kernel home whose owning kernel process is gone.
    async fn clean_stale(&self, d: &Docker) {
        let Ok(list) = list_with_label(d, &format!("{LABEL_KERNEL}={}", self.config.kernel_label)).await else {
            return;
        };
        for c in list {
            let labels = c.labels.unwrap_or_default();
            let owner_alive = labels
                .get(LABEL_OWNER)
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|p| p == std::process::id() || Path::new(&format!("/proc/{p}")).exists());
            if owner_alive {
                continue;
            }
            if let Some(id) = c.id {
                tracing::info!(target: "aos::exec", container = %id, "removing a sandbox left by a kernel that stopped");
                let _ = d.remove_container(&id, Some(force_remove())).await;
            }
        }
    }

    fn slot(&self, pid: u64) -> Arc<tokio::sync::Mutex<Option<Sandbox>>> {
        self.sandboxes.lock().entry(pid).or_default().clone()
    }

    /// The configured `user`, as uid/gid.
    fn configured_user(&self) -> Option<(u32, u32)> {
        let u = self.config.user.as_ref()?;
        let mut it = u.split(':');
        let uid = it.next().and_then(|x| x.parse().ok()).unwrap_or(SANDBOX_USER.0);
        let gid = it.next().and_then(|x| x.parse().ok()).unwrap_or(uid);
        Some((uid, gid))
    }

    /// The `user[:group]` commands for `agent` run as: the configured
    /// user, else the workspace's owner, else (a root-owned workspace) 1000:1000.
    fn user_for(&self, agent: &ContainerAgent) -> String {
        if let Some(u) = &self.config.user {
            return u.clone();
        }
        use std::os::unix::fs::MetadataExt;
        let (uid, gid) = match std::fs::metadata(&agent.workspace) {
            Ok(m) if m.uid() != 0 => (m.uid(), m.gid()),
            _ => SANDBOX_USER,
        };
        format!("{uid}:{gid}")
    }

    async fn create(&self, d: &Docker, agent: &ContainerAgent) -> Result<Sandbox, SyscallError> {
        if !agent.workspace.is_dir() {
            return Err(SyscallError::Io(format!("the workspace {} does not exist", agent.workspace.display())));
        }
        let workspace = std::fs::canonicalize(&agent.workspace).unwrap_or_else(|_| agent.workspace.clone());
        let user = self.user_for(agent);
        let name = format!("aos-{}-{}-{}", self.config.kernel_label, self.instance, agent.pid);
        // A leftover with this name (an earlier sandbox of this pid whose removal failed).
        let _ = d.remove_container(&name, Some(force_remove())).await;
        let mut labels = self.labels();
        labels.insert(LABEL_PID.to_string(), agent.pid.to_string());
        let mode = if agent.workspace_writable { "rw" } else { "ro" };
        let mut env: Vec<String> = vec!["HOME=/tmp".into(), "LANG=C.UTF-8".into(), "TERM=dumb".into()];
        if agent.egress.is_some() {
            if !(self.endpoint.starts_with("unix://") || self.endpoint.starts_with('/')) {
                return Err(egress::unavailable(&format!("the Docker engine at {} is not local", self.endpoint)));
            }
            env.extend(egress::proxy_env());
        }
        // No network of its own, ever: `exec:net` goes through the egress proxy.
        let host_config = HostConfig {
            binds: Some(vec![format!("{}:/workspace:{mode}", workspace.display())]),
            ..self.locked_down()
        };
        let body = ContainerCreateBody {
            image: Some(self.config.image.clone()),
            cmd: Some(vec!["sleep".into(), "2147483647".into()]),
            entrypoint: Some(vec![]),
            user: Some(user),
            working_dir: Some("/workspace".into()),
            env: Some(env),
            labels: Some(labels),
            host_config: Some(host_config),
            ..Default::default()
        };
        let opts = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
        let created = match d.create_container(Some(opts), body).await {
            Ok(c) => c,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, message })
                if message.to_lowercase().contains("image") =>
            {
                return Err(self.image_missing())
            }
            Err(e) => return Err(self.api_err("create the sandbox container", e)),
        };
        if let Err(e) = d.start_container(&created.id, None).await {
            let _ = d.remove_container(&created.id, Some(force_remove())).await;
            return Err(self.api_err("start the sandbox container", e));
        }
        tracing::debug!(target: "aos::exec", pid = agent.pid, container = %created.id, "sandbox created");
        let proxy = match &agent.egress {
            None => None,
            Some(e) => match self.start_proxy(d, &created.id, e.clone(), agent.pid).await {
                Ok(p) => Some(Arc::new(p)),
                Err(err) => {
                    let _ = d.remove_container(&created.id, Some(force_remove())).await;
                    return Err(err);
                }
            },
        };
        let mut sb = Sandbox {
            id: created.id,
            workspace: agent.workspace.clone(),
            writable: agent.workspace_writable,
            egress: agent.egress.clone(),
            proxy,
            bash: true,
        };
        // Which shell the image has.
        let probe = self
            .run(d, &sb, vec!["/bin/sh".into(), "-c".into(), "command -v bash >/dev/null".into()], Duration::from_secs(20), 0)
            .await?;
        sb.bash = probe.0 == 0;
        if !sb.bash {
            tracing::warn!(target: "aos::exec", image = %self.config.image, "the sandbox image has no bash; commands run with sh -c");
        }
        Ok(sb)
    }

    /// Opens the egress proxy's listener in container `id`'s network
    /// namespace and serves it for `pid`.
    async fn start_proxy(&self, d: &Docker, id: &str, e: Egress, pid: u64) -> Result<Proxy, SyscallError> {
        let info = d.inspect_container(id, None).await.map_err(|e| self.api_err("inspect the sandbox", e))?;
        let host_pid = info.state.and_then(|s| s.pid).filter(|p| *p > 0).ok_or_else(|| {
            egress::unavailable("Docker did not report the sandbox's process id")
        })?;
        let cid = id.to_string();
        let listener = tokio::task::spawn_blocking(move || egress::listen_in(host_pid, &cid))
            .await
            .map_err(|e| SyscallError::Internal(format!("the egress set-up task failed: {e}")))??;
        egress::serve(listener, e, pid).map_err(|e| egress::unavailable(&format!("cannot serve the egress proxy: {e}")))
    }

    /// Runs `argv` in `sb` and collects its output until it ends or `limit`
    /// passes. Returns (exit code, stdout, stderr, truncated, ended).
    async fn run(
        &self,
        d: &Docker,
        sb: &Sandbox,
        argv: Vec<String>,
        limit: Duration,
        mark: u64,
    ) -> Result<(i32, Vec<u8>, Vec<u8>, bool, bool), SyscallError> {
        let exec = d
            .create_exec(
                &sb.id,
                CreateExecOptions {
                    cmd: Some(argv),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    attach_stdin: Some(false),
                    tty: Some(false),
                    env: Some(vec![format!("{EXEC_MARK}={mark}")]),
                    working_dir: Some("/workspace".to_string()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.api_err("start the command", e))?;
        let started = d
            .start_exec(&exec.id, Some(StartExecOptions { detach: false, tty: false, output_capacity: Some(64 << 10) }))
            .await
            .map_err(|e| self.api_err("start the command", e))?;
        let StartExecResults::Attached { mut output, .. } = started else {
            return Err(SyscallError::Internal("Docker started the command detached".into()));
        };
        let cap = self.config.output_cap_bytes;
        let (mut out, mut err, mut truncated) = (Vec::new(), Vec::new(), false);
        let deadline = tokio::time::Instant::now() + limit;
        let mut ended = false;
        loop {
            match tokio::time::timeout_at(deadline, output.next()).await {
                Err(_) => break,
                Ok(None) => {
                    ended = true;
                    break;
                }
                Ok(Some(Err(e))) => {
                    tracing::debug!(target: "aos::exec", "output stream error: {e}");
                    ended = true;
                    break;
                }
                Ok(Some(Ok(chunk))) => {
                    use bollard::container::LogOutput as L;
                    let (buf, msg) = match chunk {
                        L::StdOut { message } | L::Console { message } => (&mut out, message),
                        L::StdErr { message } => (&mut err, message),
                        L::StdIn { .. } => continue,
                    };
                    let room = cap.saturating_sub(buf.len());
                    if msg.len() > room {
                        truncated = true;
                    }
                    buf.extend_from_slice(&msg[..msg.len().min(room)]);
                }
            }
        }
        drop(output);
        let mut code = -1;
        if ended {
            // The stream closes a moment before the engine records the exit code.
            for _ in 0..50 {
                match d.inspect_exec(&exec.id).await {
                    Ok(i) if i.running == Some(false) => {
                        code = i.exit_code.unwrap_or(-1) as i32;
                        break;
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    Err(e) => return Err(self.api_err("read the command's exit code", e)),
                }
            }
        }
        Ok((code, out, err, truncated, ended))
    }

    /// Kills every process of command `mark` (they all inherit its marker).
    async fn kill_marked(&self, d: &Docker, sb: &Sandbox, mark: u64) {
        let script = format!(
            "for p in /proc/[0-9]*; do \
               [ \"$p\" = /proc/$$ ] && continue; \
               tr '\\000' '\\n' < \"$p/environ\" 2>/dev/null | grep -qx '{EXEC_MARK}={mark}' && kill -9 \"${{p#/proc/}}\" 2>/dev/null; \
             done; true"
        );
        let _ = self
            .run(d, sb, vec!["/bin/sh".into(), "-c".into(), script], Duration::from_secs(10), 0)
            .await;
    }

    async fn remove(&self, d: &Docker, id: &str) {
        if let Err(e) = d.remove_container(id, Some(force_remove())).await {
            tracing::warn!(target: "aos::exec", container = %id, "cannot remove sandbox: {e}");
        }
    }
}

fn force_remove() -> RemoveContainerOptions {
    RemoveContainerOptions { force: true, v: true, ..Default::default() }
}

async fn list_with_label(d: &Docker, label: &str) -> Result<Vec<bollard::models::ContainerSummary>, bollard::errors::Error> {
    let filters: HashMap<String, Vec<String>> = [("label".to_string(), vec![label.to_string()])].into_iter().collect();
    d.list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() })).await
}

/// An error's message without its kind prefix.
fn plain(e: SyscallError) -> String {
    match e {
        SyscallError::Internal(m) | SyscallError::Timeout(m) | SyscallError::Io(m) => m,
        e => e.to_string(),
    }
}

fn lossy(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[async_trait]
impl ContainerBackend for DockerBackend {
    async fn exec(&self, agent: &ContainerAgent, cmd: &str, timeout: Duration) -> Result<ExecOutput, SyscallError> {
        let timeout = if timeout.is_zero() { self.config.default_timeout } else { timeout }.min(self.config.max_timeout);
        let d = self.client().await?;
        self.cleaned.get_or_init(|| async { self.clean_stale(&d).await }).await;

        let slot = self.slot(agent.pid);
        let mut guard = slot.lock().await;
        let stale = guard.as_ref().is_some_and(|sb| {
            sb.workspace != agent.workspace || sb.writable != agent.workspace_writable || sb.egress != agent.egress
        });
        if stale {
            if let Some(old) = guard.take() {
                self.remove(&d, &old.id).await;
            }
        }
        if guard.is_none() {
            *guard = Some(self.create(&d, agent).await?);
        }
        let mut sb = guard.clone().expect("sandbox exists");

        let mark = self.exec_ids.fetch_add(1, Ordering::Relaxed);
        // In-container kill: `timeout` signals the command's whole process group.
        let secs = timeout.as_secs_f64().ceil().max(1.0) as u64;
        let argv = |sb: &Sandbox| -> Vec<String> {
            let (shell, flag) = if sb.bash { ("bash", "-lc") } else { ("sh", "-c") };
            [
                "/bin/sh",
                "-c",
                WRAPPER,
                "aos-exec",
                &secs.to_string(),
                shell,
                flag,
                cmd,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let started = Instant::now();
        let grace = Duration::from_secs(2);
        let limit = Duration::from_secs(secs) + grace;
        let mut res = self.run(&d, &sb, argv(&sb), limit, mark).await;
        // The container died (removed by hand, its init killed) or cannot
        // start processes any more: replace it, once.
        let broken = match &res {
            Err(SyscallError::Internal(m)) => m.contains("is not running") || m.contains("No such container"),
            Ok((126, _, err, _, _)) => String::from_utf8_lossy(err).contains("OCI runtime exec failed"),
            _ => false,
        };
        if broken {
            tracing::warn!(target: "aos::exec", pid = agent.pid, "the sandbox is broken; replacing it");
            self.remove(&d, &sb.id).await;
            *guard = None;
            sb = self.create(&d, agent).await?;
            *guard = Some(sb.clone());
            res = self.run(&d, &sb, argv(&sb), limit, mark).await;
        }
        let res = res?;
        let (mut code, out, mut err, truncated, ended) = res;
        // What the egress proxy refused during the command, so the model sees why.
        if let Some(p) = &sb.proxy {
            for line in p.take_refusals() {
                if err.len() < self.config.output_cap_bytes {
                    err.extend_from_slice(format!("[aos] the egress proxy refused {line}\n").as_bytes());
                }
            }
        }
        let elapsed = started.elapsed();
        let timed_out = !ended || (elapsed + Duration::from_millis(50) >= timeout && (code == 137 || code == 124));
        if timed_out {
            // Whatever escaped the process group (setsid, daemons) goes too.
            self.kill_marked(&d, &sb, mark).await;
            code = 137;
        }
        Ok(ExecOutput {
            exit_code: code,
            stdout: lossy(out),
            stderr: lossy(err),
            truncated,
            timed_out,
        })
    }

    fn default_user(&self) -> Option<(u32, u32)> {
        Some(self.configured_user().unwrap_or(SANDBOX_USER))
    }

    async fn release(&self, pid: u64) {
        let slot = self.sandboxes.lock().remove(&pid);
        let Some(slot) = slot else { return };
        let sb = slot.lock().await.take();
        if let Some(sb) = sb {
            if let Ok(d) = self.client().await {
                self.remove(&d, &sb.id).await;
            }
        }
    }

    async fn shutdown(&self) {
        let slots: Vec<_> = self.sandboxes.lock().drain().map(|(_, s)| s).collect();
        let Ok(d) = self.client().await else { return };
        for slot in slots {
            if let Some(sb) = slot.lock().await.take() {
                self.remove(&d, &sb.id).await;
            }
        }
        // Anything else of this backend (e.g. a creation that raced with shutdown).
        let label = format!("{LABEL_INSTANCE}={}", self.instance);
        if let Ok(list) = list_with_label(&d, &label).await {
            for c in list {
                if let Some(id) = c.id {
                    self.remove(&d, &id).await;
                }
            }
        }
        // A removal started elsewhere (a process's `release`) may still be in
        // progress (Docker answers 409 to a second one): return only once the
        // containers are gone, so nothing outlives the kernel (bounded wait).
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            match list_with_label(&d, &label).await {
                Ok(list) if !list.is_empty() => tokio::time::sleep(Duration::from_millis(100)).await,
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's recipe is the one the build script computes and puts on
    /// the image (the script's own lines, run by bash).
    #[test]
    fn the_image_recipe_is_the_build_scripts() {
        let lines: Vec<&str> = BUILD_SCRIPT
            .lines()
            .filter(|l| l.starts_with("packages=\"") || l.starts_with("recipe=\""))
            .collect();
        assert_eq!(lines.len(), 2, "the script's packages= and recipe= lines: {lines:?}");
        let script = format!("{}\n{}\nprintf %s \"$recipe\"", lines[0], lines[1]);
        let out = std::process::Command::new("bash").arg("-c").arg(&script).output().expect("bash runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), image_recipe());
        assert_eq!(image_recipe().len(), 12);
        assert!(lines[0].contains("nodejs") && lines[0].contains("python3"), "MCP servers need Node.js and Python: {}", lines[0]);
    }
}
