//! The AgentOS daemon: one [`aos_kernel::Kernel`] per `$AOS_HOME`, served
//! over an HTTP/JSON control API on the Unix socket `$AOS_HOME/aos.sock`
//! (mode 0600), its client, the `aos.toml` config, the journal, and the
//! composition root that builds a kernel's whole stack from its config
//! ([`stack`], also used by `aos run`).
//!
//! Layout of `$AOS_HOME` (see [`Paths`]): `aos.toml`, `aos.sock`, `aos.pid`,
//! `logs/daemon.log`, `journal/*.jsonl`, `workspaces/`, `cache/`, `drivers/`.

pub mod api;
pub mod client;
pub mod config;
mod introspect;
pub mod journal;
pub mod server;
pub mod stack;

use std::path::{Path, PathBuf};

/// Where the daemon keeps its files.
#[derive(Debug, Clone)]
pub struct Paths {
    pub home: PathBuf,
}

impl Paths {
    pub fn new(home: impl Into<PathBuf>) -> Paths {
        Paths { home: home.into() }
    }
    pub fn socket(&self) -> PathBuf {
        self.home.join("aos.sock")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.home.join("aos.pid")
    }
    pub fn config(&self) -> PathBuf {
        self.home.join("aos.toml")
    }
    pub fn logs(&self) -> PathBuf {
        self.home.join("logs")
    }
    pub fn daemon_log(&self) -> PathBuf {
        self.logs().join("daemon.log")
    }
    pub fn journal(&self) -> PathBuf {
        self.home.join("journal")
    }
    /// Port the webhook listener had last time (reused when `listen` has port 0).
    pub fn webhook_port(&self) -> PathBuf {
        self.home.join("webhooks.port")
    }
    /// Bearer token of the optional TCP control listener (0600, new at each start).
    pub fn control_token(&self) -> PathBuf {
        self.home.join("control.token")
    }
    pub fn home(&self) -> &Path {
        &self.home
    }
}

/// The one-line error of every command that needs a daemon when none runs.
pub const NOT_RUNNING: &str = "kernel not running — start it with `aos kernel start`";
