//! [`McpSource`]: the configured MCP servers as one [`SyscallSource`].
//!
//! Each tool of each server is one syscall (named by [`crate::naming`]),
//! whose argument schema is the tool's `inputSchema` (the kernel validates
//! arguments against it before the call) and whose right is
//! `mcp:SERVER/TOOL`, granted by `mcp:SERVER` too. `all` grants none of
//! them. One server process serves every agent process of the kernel (see
//! docs/THREAT_MODEL.md, "MCP servers"). Stdio servers without `host = true`
//! run in containers of the sandbox image, made by the source's own
//! `DockerBackend` (labelled with the kernel home, so a crashed kernel's
//! are removed by the next one); [`SyscallSource::shutdown`] removes them all.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aos_abi::{
    AgentContext, CallOutcome, Capability, CapabilitySet, Missing, Refusal, SyscallError, SyscallHandle, SyscallSource,
    SyscallSpec,
};
use async_trait::async_trait;
use parking_lot::RwLock;

use crate::config::{ConfigError, McpConfig};
use crate::naming::syscall_names;
use crate::server::{Server, StartError};

/// How much of a tool's description the model is shown.
const MAX_DESCRIPTION: usize = 1024;

/// One tool as a syscall.
struct Entry {
    spec: SyscallSpec,
    server: usize,
    tool: String,
}

#[derive(Default)]
struct Table {
    /// The value of `changes` it was built from.
    version: u64,
    entries: Vec<Arc<Entry>>,
    by_name: BTreeMap<String, Arc<Entry>>,
}

/// The configured MCP servers.
pub struct McpSource {
    servers: Vec<Arc<Server>>,
    sandbox: Arc<aos_sandbox::DockerBackend>,
    changes: Arc<AtomicU64>,
    table: RwLock<Arc<Table>>,
}

impl McpSource {
    /// Checks every server's table (nothing is started). `env` reads the
    /// kernel's environment (for `env_from`).
    /// Streamable-HTTP servers are reached under the default `[net]`
    /// policy (public addresses only); see [`McpSource::with_net`].
    pub fn new(config: &McpConfig, env: impl Fn(&str) -> Option<String>) -> Result<McpSource, ConfigError> {
        let net = aos_egress::NetPolicy::new(aos_egress::NetConfig::default()).expect("the default [net] policy has no CA file to fail");
        McpSource::with_net(config, env, Arc::new(net))
    }

    /// [`McpSource::new`] with the kernel's `[net]` policy, under which
    /// streamable-HTTP servers are reached (the `NET_FETCH` address rules).
    /// Sandboxed stdio servers run under the default `[sandbox]` settings
    /// (image `aos-sandbox:latest`, label `default`); see [`McpSource::open`].
    pub fn with_net(
        config: &McpConfig,
        env: impl Fn(&str) -> Option<String>,
        net: Arc<aos_egress::NetPolicy>,
    ) -> Result<McpSource, ConfigError> {
        McpSource::open(config, env, net, aos_sandbox::DockerConfig::default())
    }

    /// [`McpSource::with_net`] with the kernel's `[sandbox]` settings
    /// (`DockerConfig::for_home` and `[sandbox]` in `aos.toml`): the image,
    /// limits and Docker endpoint of the stdio servers' containers, and the
    /// kernel label that lets the next kernel of the same home remove
    /// containers a crashed one left. Nothing is started or connected here.
    pub fn open(
        config: &McpConfig,
        env: impl Fn(&str) -> Option<String>,
        net: Arc<aos_egress::NetPolicy>,
        sandbox: aos_sandbox::DockerConfig,
    ) -> Result<McpSource, ConfigError> {
        let changes = Arc::new(AtomicU64::new(1));
        let sandbox = Arc::new(aos_sandbox::DockerBackend::connect(sandbox).map_err(|e| ConfigError::Sandbox(e.to_string()))?);
        let mut servers = Vec::new();
        for (name, sc) in &config.servers {
            let transport = sc.transport(name, &env)?;
            servers.push(Arc::new(Server::new(
                name.clone(),
                sc.clone(),
                transport,
                net.clone(),
                sandbox.clone(),
                changes.clone(),
            )));
        }
        Ok(McpSource { servers, sandbox, changes, table: RwLock::new(Arc::new(Table::default())) })
    }

    /// The backend the stdio servers' containers are made by.
    pub fn sandbox(&self) -> &aos_sandbox::DockerBackend {
        &self.sandbox
    }

    /// Starts every server (in parallel) and lists its tools; the answer is
    /// one result per server, in name order. A server that failed offers no
    /// tools until it is started again ([`McpSource::start`]).
    pub async fn start_all(&self) -> Vec<(String, Result<usize, StartError>)> {
        let handles: Vec<_> = self
            .servers
            .iter()
            .map(|s| {
                let s = s.clone();
                tokio::spawn(async move {
                    let r = s.ensure_started().await.map(|()| s.tools().len());
                    (s.name.clone(), r)
                })
            })
            .collect();
        let mut out = Vec::new();
        for (h, s) in handles.into_iter().zip(&self.servers) {
            out.push(h.await.unwrap_or_else(|e| {
                (s.name.clone(), Err(StartError::Init { name: s.name.clone(), why: format!("start task failed: {e}"), stderr: String::new() }))
            }));
        }
        out
    }

    /// Starts `server` again in the background until it starts: after
    /// `first`, then twice as long each time up to `max`. For a server that
    /// failed at [`McpSource::start_all`] (its program was not installed
    /// yet, a service it needs was down): its tools are offered as soon as
    /// it starts. Each failed attempt is logged with the next delay.
    pub fn retry_in_background(&self, server: &str, first: std::time::Duration, max: std::time::Duration) {
        let Some(s) = self.server(server).cloned() else { return };
        tokio::spawn(async move {
            let mut delay = first;
            for attempt in 2u32.. {
                tokio::time::sleep(delay).await;
                match s.ensure_started().await {
                    Ok(()) => {
                        tracing::info!(server = %s.name, attempt, "MCP server `{}` started: {} tools", s.name, s.tools().len());
                        return;
                    }
                    Err(e) => {
                        delay = (delay * 2).min(max);
                        tracing::warn!(server = %s.name, attempt, "{e}; trying again in {} s", delay.as_secs());
                    }
                }
            }
        });
    }

    /// The server `name`.
    pub fn server(&self, name: &str) -> Option<&Arc<Server>> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// Every server, in name order.
    pub fn servers(&self) -> &[Arc<Server>] {
        &self.servers
    }

    /// The syscall name of `tool` of `server`, if that tool is listed.
    pub fn syscall_name(&self, server: &str, tool: &str) -> Option<String> {
        let t = self.table();
        t.entries.iter().find(|e| self.servers[e.server].name == server && e.tool == tool).map(|e| e.spec.name.clone())
    }

    fn table(&self) -> Arc<Table> {
        let version = self.changes.load(Ordering::Relaxed);
        {
            let t = self.table.read();
            if t.version == version {
                return t.clone();
            }
        }
        let mut pairs: Vec<(usize, crate::server::ToolInfo)> = Vec::new();
        for (i, s) in self.servers.iter().enumerate() {
            pairs.extend(s.tools().into_iter().map(|t| (i, t)));
        }
        let keys: Vec<(&str, &str)> = pairs.iter().map(|(i, t)| (self.servers[*i].name.as_str(), t.name.as_str())).collect();
        let names = syscall_names(&keys);
        let mut table = Table { version, ..Default::default() };
        for ((i, tool), name) in pairs.iter().zip(names) {
            let server = &self.servers[*i].name;
            let mut d: String = tool.description.chars().take(MAX_DESCRIPTION).collect();
            if d.len() < tool.description.len() {
                d.push('…');
            }
            let spec = SyscallSpec {
                name: name.clone(),
                description: format!("[MCP server `{server}`, tool `{}`] {d}", tool.name),
                args_schema: tool.input_schema.clone(),
            };
            let e = Arc::new(Entry { spec, server: *i, tool: tool.name.clone() });
            table.by_name.insert(name, e.clone());
            table.entries.push(e);
        }
        let table = Arc::new(table);
        *self.table.write() = table.clone();
        table
    }

    fn right(&self, e: &Entry) -> Capability {
        Capability::McpTool(self.servers[e.server].name.clone(), e.tool.clone())
    }
}

/// A resolved MCP tool.
struct ToolHandle {
    entry: Arc<Entry>,
    server: Arc<Server>,
}

#[async_trait]
impl SyscallHandle for ToolHandle {
    fn spec(&self) -> &SyscallSpec {
        &self.entry.spec
    }

    fn origin(&self) -> &str {
        &self.server.name
    }

    async fn call(&self, _caller: &AgentContext, args: &serde_json::Value) -> Result<CallOutcome, SyscallError> {
        let output = self.server.call(&self.entry.tool, args).await?;
        Ok(CallOutcome { output, effects: Vec::new() })
    }
}

#[async_trait]
impl SyscallSource for McpSource {
    fn offered(&self) -> Vec<SyscallSpec> {
        self.table().entries.iter().map(|e| e.spec.clone()).collect()
    }

    fn resolve(&self, name: &str, caps: &CapabilitySet) -> Option<Result<Arc<dyn SyscallHandle>, Refusal>> {
        let t = self.table();
        let e = t.by_name.get(name)?;
        let server = &self.servers[e.server];
        if !caps.allows_mcp_tool(&server.name, &e.tool) {
            let capability = self.right(e);
            let shown = format!("{capability}` or `mcp:{}", server.name);
            return Some(Err(Refusal::Denied { name: name.to_string(), missing: Missing { capability, shown } }));
        }
        // A remote server's tools reach its host: the process needs the
        // host grant NET_FETCH would need too.
        if let Some(host) = server.transport().http_host() {
            if !caps.allows_net_host(host) {
                let capability = Capability::NetHost(host.to_string());
                let shown = format!("net:{host}` or `net");
                return Some(Err(Refusal::Denied { name: name.to_string(), missing: Missing { capability, shown } }));
            }
        }
        Some(Ok(Arc::new(ToolHandle { entry: e.clone(), server: server.clone() })))
    }

    fn grant_for(&self, name: &str) -> Option<Vec<Capability>> {
        let t = self.table();
        t.by_name.get(name).map(|e| vec![self.right(e)])
    }

    fn release(&self, _pid: u64) {}

    async fn shutdown(&self) {
        for s in &self.servers {
            s.stop().await;
        }
        // Containers of connections still held by a call, or of a start
        // that raced with this: every container of this source goes.
        if self.servers.iter().any(|s| matches!(s.transport(), crate::config::Transport::StdioInContainer { .. })) {
            aos_sandbox::ContainerBackend::shutdown(self.sandbox.as_ref()).await;
        }
    }
}
