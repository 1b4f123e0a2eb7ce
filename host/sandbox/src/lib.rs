//! aos-sandbox: where `EXEC_CMD` commands run. The [`ContainerBackend`]
//! trait the driver runtime's `exec` host interface calls, and its Docker
//! implementation ([`DockerBackend`], through `bollard`): one locked-down
//! container per process (see the README for what it enforces). Without a
//! configured backend the interface is still linked for `exec` agents, and
//! every call fails with [`no_backend`]'s explanation — never a silent
//! fallback to the host shell. [`stdio`]: the same lock-down for one
//! long-running program attached by its stdin/stdout (stdio MCP servers).

pub mod docker;
pub mod stdio;

pub use docker::{image_recipe, DockerBackend, DockerConfig, DockerError, DockerStatus};
pub use stdio::{BindMount, ContainerGuard, StdioContainer, StdioSpec};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use aos_abi::SyscallError;

pub use aos_egress::Egress;

/// Who runs a command, and with what rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerAgent {
    pub pid: u64,
    /// Host directory mounted at `/workspace` (read-write only with `fs:rw`).
    pub workspace: PathBuf,
    pub workspace_writable: bool,
    /// `exec:net`: network through the egress proxy, under the process's
    /// `net`/`net:HOST` grants and the address policy (`aos_egress::proxy`).
    pub egress: Option<Egress>,
}

/// The result of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    pub timed_out: bool,
}

/// Runs commands in per-process sandboxes.
#[async_trait]
pub trait ContainerBackend: Send + Sync {
    /// Runs `cmd` in `agent`'s sandbox (created on first use), killing it after `timeout`.
    async fn exec(&self, agent: &ContainerAgent, cmd: &str, timeout: Duration) -> Result<ExecOutput, SyscallError>;
    /// Removes `pid`'s sandbox, if any (the process ended).
    async fn release(&self, pid: u64);
    /// Removes every sandbox (the kernel stops).
    async fn shutdown(&self);
    /// The uid/gid commands run as in a workspace that belongs to root (a
    /// workspace the kernel made is given to this user before first use;
    /// see `workspace.rs`). `None`: the backend has no such user.
    fn default_user(&self) -> Option<(u32, u32)> {
        None
    }
}

/// Error text when `exec` is granted but no container engine is configured.
pub fn no_backend() -> SyscallError {
    SyscallError::Internal(
        "EXEC_CMD needs a container engine, and none is configured: start Docker (`dockerd`) and \
         build the sandbox image with `aos sandbox build`; commands never run on the host"
            .into(),
    )
}

/// The backend an instance may call, if one is configured.
pub type SharedBackend = Option<Arc<dyn ContainerBackend>>;
