//! Types of the control API (HTTP/JSON over `$AOS_HOME/aos.sock`).
//!
//! | method | path                          | body / query            | answer |
//! |--------|-------------------------------|-------------------------|--------|
//! | GET    | `/v1/status`                  |                         | [`StatusInfo`] |
//! | POST   | `/v1/shutdown`                |                         | `{"ok": true}` (the daemon then stops) |
//! | POST   | `/v1/spawn`                   | [`SpawnBody`]           | [`SpawnReply`] |
//! | GET    | `/v1/ps`                      |                         | `[ProcessInfo]` (every process) |
//! | GET    | `/v1/procs/{pid}`             |                         | `ProcessInfo` |
//! | GET    | `/v1/procs/{pid}/logs`        | `?follow=1`             | NDJSON of `KernelEvent`s: the existing log as `entry` events, then (follow) live events until `exited` |
//! | POST   | `/v1/procs/{pid}/kill`        |                         | [`KillReply`] |
//! | POST   | `/v1/procs/{pid}/stdin`       | [`TextBody`]            | `{"ok": true}` |
//! | POST   | `/v1/procs/{pid}/message`     | [`TextBody`]            | `{"ok": true}` (mailbox, from pid 0) |
//! | GET    | `/v1/procs/{pid}/wait`        |                         | `ExitStatus` (long poll until the process ends) |
//! | GET    | `/v1/events`                  |                         | NDJSON of every `KernelEvent` from now on |
//! | GET    | `/v1/config`                  |                         | [`ConfigReply`]: the configuration the daemon runs with, secrets masked |
//! | GET    | `/v1/webhooks`                | `?secrets=1`            | `[`[`WebhookInfo`]`]`: registered paths (secrets only when asked) |
//! | GET    | `/v1/approvals`               |                         | `[PendingApproval]`: calls waiting for the operator |
//! | POST   | `/v1/approvals/{id}/approve`  | [`ApproveBody`]         | `PendingApproval` (the call now runs) |
//! | POST   | `/v1/approvals/{id}/deny`     | [`DenyBody`]            | `PendingApproval` (the model gets the reason) |
//!
//! Every route, with request and response bodies and examples, is described
//! in `docs/CONTROL_API.md`.
//!
//! Errors: a 4xx/5xx status with [`ErrorBody`] (`{"error": "one line"}`).
//!
//! The same API is served on a loopback TCP address when `[control] tcp` is
//! set; there every request must carry `Authorization: Bearer TOKEN`, the
//! token the daemon writes to `$AOS_HOME/control.token` (mode 0600) at start.
//! Webhooks are served separately, over TCP on `StatusInfo::webhooks`: any
//! method on a registered path (see `aos_kernel::webhook`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SpawnBody {
    pub task: String,
    #[serde(default)]
    pub role: Option<String>,
    /// Default: the daemon's config (`provider` in aos.toml / AOS_PROVIDER).
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    /// `None`: the config's `default_grants`; `Some([])`: no rights.
    #[serde(default)]
    pub grants: Option<Vec<String>>,
    #[serde(default)]
    pub max_steps: Option<u64>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_seconds: Option<u64>,
    /// An absolute path (the CLI resolves it).
    #[serde(default)]
    pub workspace: Option<PathBuf>,
    /// `native`, `text` or `auto`; default: `tool_mode` of aos.toml.
    #[serde(default)]
    pub tool_mode: Option<aos_abi::ToolMode>,
    /// Approval preset: `never`, `ask-dangerous`, `ask-all`; default:
    /// `[approvals] mode` of aos.toml. `[approvals] rules` apply either way.
    #[serde(default)]
    pub approve: Option<String>,
}

/// `POST /v1/approvals/{id}/approve`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ApproveBody {
    /// Also allow later calls of the same pattern in this process tree.
    #[serde(default)]
    pub always: bool,
}

/// `POST /v1/approvals/{id}/deny`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DenyBody {
    /// Given to the model: `denied: by the operator: REASON`.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpawnReply {
    pub pid: u64,
    pub workspace: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KillReply {
    pub killed: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextBody {
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusInfo {
    /// OS pid of the daemon.
    pub pid: u32,
    pub version: String,
    pub home: PathBuf,
    pub started_at_ms: u64,
    pub uptime_secs: u64,
    pub processes: ProcessCounts,
    /// Processes found unfinished in the journal at start, and what became of them.
    pub recovery: Vec<String>,
    /// Address of the TCP control listener, if one is configured.
    #[serde(default)]
    pub control_tcp: Option<String>,
    /// `http://IP:PORT` serving the paths registered with `SYS_REGISTER_WEBHOOK`
    /// (`None` when `webhooks.listen = "off"`).
    #[serde(default)]
    pub webhooks: Option<String>,
    /// The journal: segment, counters, and the fault while it cannot be written.
    #[serde(default)]
    pub journal: Option<crate::journal::JournalStatus>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessCounts {
    pub total: usize,
    pub live: usize,
    pub exited: usize,
    /// Live processes paused because the journal cannot be written.
    #[serde(default)]
    pub paused: usize,
}

/// `GET /v1/config`: what the running daemon loaded at its start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigReply {
    /// The effective configuration (defaults, aos.toml, AOS_* variables of
    /// the daemon's environment), secrets masked, default provider and model
    /// filled in, unset options `null` (see `Config::shown`).
    pub config: serde_json::Value,
    /// SHA-256 of the unmasked configuration (see `Config::digest`): a
    /// client compares it with the digest of what a restart would load.
    pub digest: String,
    /// The config file and whether it existed when the daemon started.
    pub file: PathBuf,
    pub file_present: bool,
    /// When the daemon started (Unix ms), i.e. when this was loaded.
    pub loaded_at_ms: u64,
}

/// One registered webhook path (`GET /v1/webhooks`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookInfo {
    pub path: String,
    pub pid: u64,
    /// Where callers send requests (`None` when `webhooks.listen = "off"`).
    pub url: Option<String>,
    /// Only with `?secrets=1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}
