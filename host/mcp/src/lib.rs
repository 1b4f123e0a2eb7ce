//! The MCP client of AgentOS: the tools of configured MCP servers
//! (`[mcp.servers.NAME]` in `aos.toml`) as capability-gated syscalls.
//!
//! - [`config`]: a server's table and the checks that make it startable
//!   (stdio servers run in a sandbox container, `aos_sandbox::stdio`, with
//!   only the network and mounts their table grants, or on the host with an
//!   explicit `host = true`; streamable-HTTP servers are reached under the
//!   `[net]` policy of `NET_FETCH`).
//! - [`server`]: one server's connection (through `rmcp`), restarted after
//!   it died, its tool list (refreshed on `tools/list_changed`), and one
//!   call with a deadline.
//! - [`naming`]: the syscall name of a tool (`MCP_SERVER_TOOL`).
//! - [`result`]: a `tools/call` result as a syscall result or error.
//! - [`source`]: [`McpSource`], the kernel's `SyscallSource` for all of them.

pub mod config;
pub mod naming;
pub mod result;
pub mod server;
pub mod source;

pub use config::{ConfigError, McpConfig, MountConfig, ServeConfig, ServerConfig};
pub use server::{Server, StartError, ToolInfo};
pub use source::McpSource;
/// The `[net]` policy streamable-HTTP servers are reached under.
pub use aos_egress::{NetConfig, NetPolicy};
