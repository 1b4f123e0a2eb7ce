//! AgentOS as an MCP server (`aos mcp serve`): an rmcp [`ServerHandler`]
//! whose tools spawn agents in the running kernel and drive them —
//! `spawn_agent`, `list_processes`, `read_log`, `send_input`, `wait`,
//! `kill` ([`tools`]) — served over stdio ([`serve_stdio`]) or streamable
//! HTTP behind a bearer token ([`http`]).
//!
//! It owns no kernel: every tool is a request to the daemon's control API
//! through [`aos_daemon::client::Client`] (the Unix socket, or the TCP
//! listener of `AOS_CONTROL_URL`), so an MCP host that launches `aos mcp
//! serve` as a subprocess drives the same kernel as the `aos` CLI. What an
//! agent spawned this way may be granted is capped by the operator's
//! [`ceiling::Ceiling`].

pub mod ceiling;
pub mod http;
pub mod tools;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};

use aos_daemon::Paths;

pub use ceiling::{Ceiling, CeilingError, CeilingSource};

/// Starts the kernel when a spawn finds none running (what `aos spawn`
/// does); supplied by the CLI, which knows how to start it.
pub type Starter = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send + Sync>;

/// Why `aos mcp serve` could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to serve MCP on {0}: it is not a loopback address; use 127.0.0.1:PORT, or pass --allow-remote \
         (or set `[mcp.serve] allow_remote = true` in aos.toml) to let other machines reach it with the token"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {0}: {1} (choose another --http address)")]
    Bind(SocketAddr, String),
    #[error("cannot make the bearer token: {0} (or set {var})", var = http::TOKEN_VAR)]
    Token(String),
    #[error("the MCP session on stdin/stdout failed: {0}")]
    Stdio(String),
}

/// The MCP server: the kernel of one `$AOS_HOME`, and the operator's limits.
#[derive(Clone)]
pub struct AosMcp {
    inner: Arc<Inner>,
}

struct Inner {
    paths: Paths,
    ceiling: Ceiling,
    /// `default_grants` of aos.toml: what an agent gets when the host asks for nothing particular.
    default_grants: Vec<String>,
    starter: Option<Starter>,
}

impl AosMcp {
    /// A server for the kernel of `paths`, spawning within `ceiling`;
    /// `default_grants` are the rights of a spawn that names none (those
    /// within the ceiling).
    pub fn new(paths: Paths, ceiling: Ceiling, default_grants: Vec<String>) -> AosMcp {
        AosMcp { inner: Arc::new(Inner { paths, ceiling, default_grants, starter: None }) }
    }

    /// Starts the kernel with `starter` when `spawn_agent` finds none running.
    pub fn with_starter(self, starter: Starter) -> AosMcp {
        let inner = Inner {
            paths: self.inner.paths.clone(),
            ceiling: self.inner.ceiling.clone(),
            default_grants: self.inner.default_grants.clone(),
            starter: Some(starter),
        };
        AosMcp { inner: Arc::new(inner) }
    }

    pub fn ceiling(&self) -> &Ceiling {
        &self.inner.ceiling
    }
}

impl ServerHandler for AosMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("aos", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "AgentOS: spawn LLM agents in the running kernel and drive them. `spawn_agent` gives a pid; \
                 follow it with `read_log` (pass `since_seq` = the previous `next_seq`), end with `wait` or `kill`. \
                 Agents may be granted at most: {}.",
                self.inner.ceiling.names().join(", ")
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools::list()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        Ok(tools::call(self, &request.name, args).await?.into())
    }
}

/// Serves MCP on this process's stdin and stdout until the host closes
/// them. Nothing else may write to stdout meanwhile (logs go to stderr).
pub async fn serve_stdio(server: AosMcp) -> Result<(), ServeError> {
    let running = server.serve(rmcp::transport::stdio()).await.map_err(|e| ServeError::Stdio(e.to_string()))?;
    running.waiting().await.map_err(|e| ServeError::Stdio(e.to_string()))?;
    Ok(())
}
