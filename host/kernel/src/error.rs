//! The errors of the kernel's API ([`KernelError`]); their messages say what to do.

use std::path::PathBuf;

use aos_abi::MissingCapabilities;
use aos_providers::ProviderError;

use crate::process::{ExitStatus, Pid};

/// Errors of the kernel API; messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("no process with pid {0}; run `aos ps` to list processes")]
    NoSuchProcess(Pid),
    #[error(
        "no process with pid {0}: it ended and was reaped (ended processes are kept only up to the retention \
         limits, `[retention]` in aos.toml); run `aos ps --all` to list the processes still kept"
    )]
    Reaped(Pid),
    #[error("process {pid} is not running (it {status}); start a new one with `aos spawn`")]
    NotRunning { pid: Pid, status: ExitStatus },
    #[error("cannot start provider `{provider}`: {source}")]
    Provider {
        provider: String,
        #[source]
        source: ProviderError,
    },
    #[error("cannot create workspace {path}: {source}; check that the AgentOS home directory is writable")]
    Workspace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}; request only rights the parent holds")]
    Denied(#[from] MissingCapabilities),
    /// A budget or process cap; the message says which.
    #[error("{0}")]
    Limit(#[from] crate::budget::Limit),
    #[error("invalid spawn request: {0}")]
    Invalid(String),
    /// A child's provider or model that the operator's `[spawn]` policy does not allow.
    #[error("{0}")]
    NotAllowed(String),
    #[error("cannot restore process {pid}: {why}")]
    Restore { pid: Pid, why: String },
}
