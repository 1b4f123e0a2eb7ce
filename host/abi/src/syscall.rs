//! Host-side syscall types: the Rust mirror of `aos:kernel/types` that the
//! kernel and the CLI use, independent of any one component's bindings.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The tag that opens a call in a model's reply: `[SYS_CALL::NAME] {json}`.
/// One definition for the kernel's parser and the embedded model's grammar.
pub const TAG_OPEN: &str = "[SYS_CALL::";

/// Prefixes of the messages the kernel feeds back into a process's context
/// (`aos_kernel::context` writes them; the embedded model reads them):
/// `[TASK] text`, `[RESULT NAME#id] {json}`, `[ERROR NAME#id] kind: message`.
pub const TASK_PREFIX: &str = "[TASK]";
pub const RESULT_PREFIX: &str = "[RESULT ";
pub const ERROR_PREFIX: &str = "[ERROR ";

/// One syscall offered by a driver (or by the kernel itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyscallSpec {
    /// Upper-case name, e.g. `FS_READ`.
    pub name: String,
    /// What the model is told the syscall does.
    pub description: String,
    /// JSON Schema of the argument object.
    pub args_schema: serde_json::Value,
}

/// Why a syscall failed. The `Display` form (`kind: message`) is what the
/// model sees in its context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum SyscallError {
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    #[error("denied: {0}")]
    Denied(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("i/o error: {0}")]
    Io(String),
    #[error("timeout: {0}")]
    Timeout(String),
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl SyscallError {
    /// Short machine-readable kind, e.g. `denied`.
    pub fn kind(&self) -> &'static str {
        match self {
            SyscallError::InvalidArguments(_) => "invalid_arguments",
            SyscallError::Denied(_) => "denied",
            SyscallError::NotFound(_) => "not_found",
            SyscallError::Io(_) => "io",
            SyscallError::Timeout(_) => "timeout",
            SyscallError::LimitExceeded(_) => "limit_exceeded",
            SyscallError::Internal(_) => "internal",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            SyscallError::InvalidArguments(m)
            | SyscallError::Denied(m)
            | SyscallError::NotFound(m)
            | SyscallError::Io(m)
            | SyscallError::Timeout(m)
            | SyscallError::LimitExceeded(m)
            | SyscallError::Internal(m) => m,
        }
    }
}

/// A state change a driver asked the kernel for during a call (through an
/// imported host interface). The kernel applies them after the call returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Suspend the process for `seconds`.
    Sleep { seconds: f64 },
    /// Wake the process after `seconds` with `prompt` appended to its context.
    Schedule { id: u64, seconds: f64, prompt: String },
}

/// The successful result of one driver call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallOutcome {
    /// The driver's JSON result.
    pub output: serde_json::Value,
    /// State changes requested from the kernel.
    pub effects: Vec<Effect>,
}

impl fmt::Display for SyscallSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.name, self.args_schema, self.description)
    }
}

/// A call the model made through its API's native tool calling (OpenAI
/// `tool_calls`, Anthropic `tool_use`, Gemini `functionCall`), as the
/// journal keeps it: the API's id (its result goes back under the same id),
/// the syscall name and the arguments exactly as the model wrote them
/// (JSON text, which may be malformed: the kernel reports that to the model
/// under the same id).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
    /// An opaque token the API wants back with this call when the history
    /// is sent again (Gemini's `thoughtSignature`); `None` for other APIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// How a process's syscalls reach its model: `text` (the `[SYS_CALL::NAME]
/// {json}` protocol, described in the system prompt), `native` (the API's
/// tool calling; text calls in a reply still run) or `auto` (native where
/// the provider has it, falling back to text once when a server rejects
/// the tool list).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolMode {
    Text,
    Native,
    #[default]
    Auto,
}

impl ToolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolMode::Text => "text",
            ToolMode::Native => "native",
            ToolMode::Auto => "auto",
        }
    }
}

impl std::str::FromStr for ToolMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(ToolMode::Text),
            "native" => Ok(ToolMode::Native),
            "auto" => Ok(ToolMode::Auto),
            other => Err(format!("unknown tool mode `{other}`: use native, text or auto")),
        }
    }
}

impl std::fmt::Display for ToolMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
