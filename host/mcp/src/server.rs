//! One configured MCP server: its connection (started on demand and again
//! after it died), its cached tool list (refreshed on
//! `notifications/tools/list_changed`), and one tool call with a deadline
//! whose every failure is a precise syscall error.
//!
//! A stdio server runs in a container of the sandbox image by default
//! (`aos_sandbox::stdio`: attached by its stdin/stdout, removed when the
//! connection is dropped or the server stops; a container that died ends the
//! connection, and the next call starts a new one). With `host = true` it
//! runs on the host as its own process group (killed as a whole when the
//! connection is dropped), with an environment of `PATH`, `HOME` and what its
//! table names. Either way its stderr is kept (the last 4 KiB) to explain a
//! failure.
//! A streamable-HTTP server is reached under the `[net]` address policy:
//! its host is resolved and vetted at each connection and the client is
//! pinned to the vetted address (no DNS rebinding), redirects and proxies
//! are not followed, and TLS uses the policy's roots.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use aos_abi::SyscallError;
use parking_lot::{Mutex, RwLock};
use process_wrap::tokio::{CommandWrap, KillOnDrop, ProcessGroup};
use rmcp::model::CallToolRequestParams;
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, Peer, RoleClient, ServiceError, ServiceExt};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::config::{ServerConfig, Transport};

/// How much of a server's stderr is kept.
const STDERR_KEEP: usize = 4096;

/// One tool as the server describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolInfo {
    pub name: String,
    pub description: String,
    pub input_schema: serde_json::Value,
}

/// Why a server could not be started or asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StartError {
    #[error("MCP server `{name}`: cannot run `{command}`: {why}")]
    Spawn { name: String, command: String, why: String },
    #[error("MCP server `{name}` did not finish its MCP initialisation within {secs:.0} s{stderr}")]
    InitTimeout { name: String, secs: f64, stderr: String },
    #[error("MCP server `{name}` started but its MCP initialisation failed: {why}{stderr}")]
    Init { name: String, why: String, stderr: String },
    #[error("MCP server `{name}` did not list its tools: {why}{stderr}")]
    ListTools { name: String, why: String, stderr: String },
    #[error("MCP server `{name}` at {url} is not reached: {why}")]
    Refused { name: String, url: String, why: String },
    #[error("MCP server `{name}` cannot run in its sandbox container: {why}")]
    Container { name: String, why: String },
}

/// The last lines a server wrote to stderr.
#[derive(Default)]
struct StderrTail(Mutex<VecDeque<u8>>);

impl StderrTail {
    fn push(&self, bytes: &[u8]) {
        let mut q = self.0.lock();
        q.extend(bytes);
        while q.len() > STDERR_KEEP {
            q.pop_front();
        }
    }

    /// `"; its stderr ends with: …"`, or nothing.
    fn shown(&self) -> String {
        let q = self.0.lock();
        let s = String::from_utf8_lossy(&q.iter().copied().collect::<Vec<u8>>()).trim().to_string();
        if s.is_empty() {
            String::new()
        } else {
            let last: Vec<&str> = s.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
            format!("; its stderr ends with: {}", last.join(" | "))
        }
    }
}

/// The client side of one connection: picks up tool-list changes.
struct Handler {
    server: Weak<Server>,
}

impl ClientHandler for Handler {
    #[allow(clippy::manual_async_fn)]
    fn on_tool_list_changed(
        &self,
        context: NotificationContext<RoleClient>,
    ) -> impl std::future::Future<Output = ()> + Send + '_ {
        let server = self.server.clone();
        async move {
            if let Some(s) = server.upgrade() {
                // Not awaited here: this runs inside the connection's loop,
                // which must keep reading to receive the answer.
                tokio::spawn(async move {
                    if let Err(e) = s.refresh_tools(&context.peer).await {
                        tracing::warn!(server = %s.name, "re-listing tools after list_changed failed: {e}");
                    }
                });
            }
        }
    }
}

struct Conn {
    service: RunningService<RoleClient, Handler>,
    pid: Option<u32>,
    /// The server's container (removed when this is dropped).
    container: Option<aos_sandbox::ContainerGuard>,
    stderr: Arc<StderrTail>,
}

impl Conn {
    /// Whether the connection is over: closed by us, or its transport ended
    /// (the server exited, its container was killed). rmcp does not mark a
    /// service closed when its transport reaches end-of-file, so the peer's
    /// channel is asked too; the next call then starts the server again
    /// instead of failing first.
    fn ended(&self) -> bool {
        self.service.is_closed() || self.service.peer().is_transport_closed()
    }
}

/// A started connection: the service, the host pid or the container, the stderr tail.
type Started = (RunningService<RoleClient, Handler>, Option<u32>, Option<aos_sandbox::ContainerGuard>, Arc<StderrTail>);

/// One configured server.
pub struct Server {
    pub name: String,
    pub config: ServerConfig,
    transport: Transport,
    net: Arc<aos_egress::NetPolicy>,
    /// Where stdio servers without `host = true` run.
    sandbox: Arc<aos_sandbox::DockerBackend>,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    tools: RwLock<Vec<ToolInfo>>,
    /// Bumped whenever any server's tool list changes (shared by a source).
    changes: Arc<AtomicU64>,
    /// How many times a connection was started.
    starts: AtomicU64,
}

impl Server {
    pub(crate) fn new(
        name: String,
        config: ServerConfig,
        transport: Transport,
        net: Arc<aos_egress::NetPolicy>,
        sandbox: Arc<aos_sandbox::DockerBackend>,
        changes: Arc<AtomicU64>,
    ) -> Server {
        Server {
            name,
            config,
            transport,
            net,
            sandbox,
            conn: tokio::sync::Mutex::new(None),
            tools: RwLock::new(Vec::new()),
            changes,
            starts: AtomicU64::new(0),
        }
    }

    /// The tools last listed.
    pub fn tools(&self) -> Vec<ToolInfo> {
        self.tools.read().clone()
    }

    /// The server process's pid, while connected (stdio).
    pub async fn pid(&self) -> Option<u32> {
        self.conn.lock().await.as_ref().filter(|c| !c.ended()).and_then(|c| c.pid)
    }

    /// The id of the server's container, while connected (a stdio server in
    /// the sandbox).
    pub async fn container_id(&self) -> Option<String> {
        let slot = self.conn.lock().await;
        slot.as_ref().filter(|c| !c.ended()).and_then(|c| c.container.as_ref().map(|g| g.id().to_string()))
    }

    /// One line saying where the server runs (the start announcement).
    pub fn describe(&self) -> String {
        self.config.describe_in(&self.sandbox.config().image)
    }

    /// How many times the server was started.
    pub fn starts(&self) -> u64 {
        self.starts.load(Ordering::Relaxed)
    }

    /// Starts the server if it is not running, and lists its tools on a start.
    pub async fn ensure_started(self: &Arc<Self>) -> Result<(), StartError> {
        self.connection().await.map(|_| ())
    }

    async fn connection(self: &Arc<Self>) -> Result<Arc<Conn>, StartError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            if !c.ended() {
                return Ok(c.clone());
            }
            tracing::warn!(server = %self.name, "MCP server stopped; starting it again");
        }
        *slot = None;
        let conn = Arc::new(self.start().await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// How the server is reached.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    async fn start(self: &Arc<Self>) -> Result<Conn, StartError> {
        let (service, pid, container, tail) = match &self.transport {
            Transport::StdioOnHost { command, args, env, cwd } => self.start_stdio(command, args, env, cwd.as_deref()).await?,
            Transport::StdioInContainer { command, args, env, cwd, mounts, network } => {
                let spec = aos_sandbox::StdioSpec {
                    label: self.name.clone(),
                    argv: std::iter::once(command.clone()).chain(args.iter().cloned()).collect(),
                    env: env.clone(),
                    workdir: cwd.clone(),
                    mounts: mounts.clone(),
                    network: *network,
                };
                self.start_container(&spec).await?
            }
            Transport::Http { url, host, port, token } => self.start_http(url, host, *port, token.as_deref()).await?,
        };
        let limit = self.config.start_timeout();
        let conn = Conn { service, pid, container, stderr: tail };
        match tokio::time::timeout(limit, self.refresh_tools(conn.service.peer())).await {
            Ok(Ok(())) => Ok(conn),
            Ok(Err(e)) => Err(StartError::ListTools { name: self.name.clone(), why: e.to_string(), stderr: conn.stderr.shown() }),
            Err(_) => Err(StartError::ListTools {
                name: self.name.clone(),
                why: format!("no answer within {:.0} s", limit.as_secs_f64()),
                stderr: conn.stderr.shown(),
            }),
        }
    }

    /// Connects to a streamable-HTTP server at the address the `[net]`
    /// policy vetted, and initialises the session.
    async fn start_http(
        self: &Arc<Self>,
        url: &str,
        host: &str,
        port: u16,
        token: Option<&str>,
    ) -> Result<Started, StartError> {
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        use rmcp::transport::StreamableHttpClientTransport;
        let refused = |why: String| StartError::Refused { name: self.name.clone(), url: url.to_string(), why };
        let net = &self.net.config;
        let addr = aos_egress::vet_destination(host, port, net).await.map_err(refused)?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(net.connect_timeout)
            .tls_backend_preconfigured((*self.net.tls).clone());
        if !aos_egress::is_literal_ip(host) {
            builder = builder.resolve(host, addr);
        }
        let client = builder.build().map_err(|e| refused(format!("cannot build its HTTP client: {e}")))?;
        let mut cfg = StreamableHttpClientTransportConfig::with_uri(url.to_string());
        if let Some(t) = token {
            cfg = cfg.auth_header(t.to_string());
        }
        let transport = StreamableHttpClientTransport::with_client(client, cfg);
        self.starts.fetch_add(1, Ordering::Relaxed);
        let limit = self.config.start_timeout();
        let handler = Handler { server: Arc::downgrade(self) };
        let service = match tokio::time::timeout(limit, handler.serve(transport)).await {
            Err(_) => return Err(StartError::InitTimeout { name: self.name.clone(), secs: limit.as_secs_f64(), stderr: String::new() }),
            Ok(Err(e)) => {
                let mut why = e.to_string();
                if why.contains("401") || why.to_ascii_lowercase().contains("unauthorized") {
                    why.push_str(&match &self.config.token_env {
                        Some(v) => format!("; the server refused the token: check ${v}"),
                        None => "; the server wants a token: name the environment variable holding it with `token_env`".to_string(),
                    });
                }
                return Err(StartError::Init { name: self.name.clone(), why, stderr: String::new() });
            }
            Ok(Ok(s)) => s,
        };
        Ok((service, None, None, Arc::new(StderrTail::default())))
    }

    async fn start_stdio(
        self: &Arc<Self>,
        command: &String,
        args: &[String],
        env: &std::collections::BTreeMap<String, String>,
        cwd: Option<&std::path::Path>,
    ) -> Result<Started, StartError> {
        let mut cmd = tokio::process::Command::new(command);
        cmd.args(args).env_clear().envs(env);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let mut wrapped = CommandWrap::from(cmd);
        wrapped.wrap(ProcessGroup::leader()).wrap(KillOnDrop);
        let spawn_err = |why: String| StartError::Spawn { name: self.name.clone(), command: command.clone(), why };
        let (proc, stderr) = TokioChildProcess::builder(wrapped).stderr(Stdio::piped()).spawn().map_err(|e| {
            spawn_err(match e.kind() {
                std::io::ErrorKind::NotFound => "no such program (not found on PATH)".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied (not executable?)".to_string(),
                _ => e.to_string(),
            })
        })?;
        self.starts.fetch_add(1, Ordering::Relaxed);
        let pid = proc.id();
        let tail = self.keep_stderr(stderr);
        let service = self.initialise(proc, &tail).await?;
        Ok((service, pid, None, tail))
    }

    /// Runs the server in a container of the sandbox image (see
    /// `aos_sandbox::stdio`): its stdout and stdin are the MCP transport.
    async fn start_container(self: &Arc<Self>, spec: &aos_sandbox::StdioSpec) -> Result<Started, StartError> {
        let c = self.sandbox.spawn_stdio(spec).await.map_err(|e| StartError::Container {
            name: self.name.clone(),
            why: match e {
                SyscallError::Internal(m) | SyscallError::Io(m) | SyscallError::Timeout(m) => m,
                e => e.to_string(),
            },
        })?;
        self.starts.fetch_add(1, Ordering::Relaxed);
        let tail = self.keep_stderr(Some(c.stderr));
        // On a failed initialisation the guard is dropped: the container goes.
        let service = self.initialise((c.stdout, c.stdin), &tail).await?;
        Ok((service, None, Some(c.guard), tail))
    }

    /// Keeps the last of what `stderr` says, until it ends.
    fn keep_stderr(&self, stderr: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>) -> Arc<StderrTail> {
        let tail = Arc::new(StderrTail::default());
        if let Some(mut err) = stderr {
            let tail = tail.clone();
            let name = self.name.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    tracing::debug!(server = %name, "stderr: {}", String::from_utf8_lossy(&buf[..n]).trim_end());
                    tail.push(&buf[..n]);
                }
            });
        }
        tail
    }

    /// The MCP initialisation over `transport`, within the start deadline.
    async fn initialise<T, E, A>(self: &Arc<Self>, transport: T, tail: &StderrTail) -> Result<RunningService<RoleClient, Handler>, StartError>
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let limit = self.config.start_timeout();
        let handler = Handler { server: Arc::downgrade(self) };
        match tokio::time::timeout(limit, handler.serve(transport)).await {
            Err(_) => Err(StartError::InitTimeout { name: self.name.clone(), secs: limit.as_secs_f64(), stderr: tail.shown() }),
            Ok(Err(e)) => {
                // Let the stderr reader catch the last words of a dying server.
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(StartError::Init { name: self.name.clone(), why: e.to_string(), stderr: tail.shown() })
            }
            Ok(Ok(s)) => Ok(s),
        }
    }

    async fn refresh_tools(&self, peer: &Peer<RoleClient>) -> Result<(), ServiceError> {
        let listed = peer.list_all_tools().await?;
        let tools: Vec<ToolInfo> = listed
            .into_iter()
            .map(|t| ToolInfo {
                name: t.name.to_string(),
                description: t.description.map(|d| d.to_string()).unwrap_or_default(),
                input_schema: serde_json::Value::Object((*t.input_schema).clone()),
            })
            .collect();
        let changed = *self.tools.read() != tools;
        if changed {
            tracing::info!(server = %self.name, tools = tools.len(), "MCP tools listed");
            *self.tools.write() = tools;
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Calls `tool` with `args` within the server's call deadline; a server
    /// that is not running (never started, or died) is started first.
    pub async fn call(self: &Arc<Self>, tool: &str, args: &serde_json::Value) -> Result<serde_json::Value, SyscallError> {
        let conn = self.connection().await.map_err(|e| SyscallError::Io(format!("{e}; the next call tries again")))?;
        let mut params = CallToolRequestParams::new(tool.to_string());
        params.arguments = args.as_object().cloned();
        let limit = self.config.call_timeout();
        let answer = tokio::time::timeout(limit, conn.service.peer().call_tool(params)).await;
        let gone = |conn: &Conn| {
            format!(
                "MCP server `{}` stopped during the call to `{tool}`{}; the next call starts it again",
                self.name,
                conn.stderr.shown()
            )
        };
        match answer {
            Err(_) => Err(SyscallError::Timeout(format!(
                "MCP tool `{tool}` of server `{}` did not answer within {:.1} s (the call's deadline); it was cancelled",
                self.name,
                limit.as_secs_f64()
            ))),
            Ok(Ok(result)) => {
                let v = serde_json::to_value(&result)
                    .map_err(|e| SyscallError::Internal(format!("cannot read the result of `{tool}`: {e}")))?;
                crate::result::to_outcome(&self.name, tool, &v)
            }
            Ok(Err(ServiceError::McpError(e))) => {
                let code = e.code.0;
                let msg = format!("MCP server `{}` refused the call to `{tool}`: {} (JSON-RPC error {code})", self.name, e.message);
                Err(if code == -32602 { SyscallError::InvalidArguments(msg) } else { SyscallError::Io(msg) })
            }
            Ok(Err(ServiceError::TransportClosed | ServiceError::TransportSend(_))) => {
                self.forget(&conn).await;
                Err(SyscallError::Io(gone(&conn)))
            }
            Ok(Err(e)) if conn.ended() => {
                self.forget(&conn).await;
                Err(SyscallError::Io(format!("{} ({e})", gone(&conn))))
            }
            Ok(Err(e)) => Err(SyscallError::Io(format!("MCP server `{}`: the call to `{tool}` failed: {e}", self.name))),
        }
    }

    /// Drops `conn` if it is still the current connection (the next call
    /// starts a new one).
    async fn forget(&self, conn: &Arc<Conn>) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *slot = None;
        }
    }

    /// Stops the server (its container is removed; a connection still in
    /// use by a call is dropped, and its container removed, when that call ends).
    pub async fn stop(&self) {
        let conn = self.conn.lock().await.take();
        if let Some(conn) = conn {
            if let Ok(mut c) = Arc::try_unwrap(conn) {
                let _ = c.service.close_with_timeout(Duration::from_secs(2)).await;
                if let Some(g) = c.container.take() {
                    g.remove().await;
                }
            }
        }
    }
}
