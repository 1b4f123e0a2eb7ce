//! The argument types of the kernel's syscalls. Each is deserialized from
//! the call's JSON after it passed its JSON Schema (generated from the same
//! type, see [`super::KernelSyscall::spec`]), so handlers get typed values.
//! Field docs are plain comments: a doc comment would become a
//! `description` in the schema the model sees.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// `SEND_MSG`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMsg {
    #[schemars(range(min = 0))]
    pub to_pid: u64,
    pub content: String,
}

/// `RECV_MSG`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecvMsg {
    // Seconds; waits forever without.
    #[schemars(range(min = 0))]
    pub timeout: Option<f64>,
}

/// `SYS_WRITE_STDOUT`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteStdout {
    pub text: String,
}

/// `SYS_READ_STDIN`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadStdin {}

/// `SYS_EXIT`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exit {
    pub code: Option<i64>,
    // Any JSON value; text is reported as is, anything else as JSON.
    pub result: Option<Value>,
}

/// `SPAWN_AGENT`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnAgent {
    #[schemars(length(min = 1))]
    pub task: String,
    pub role: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    // Capability names (or syscall names used as permissions); [] = none.
    pub permissions: Vec<String>,
    #[schemars(range(min = 1))]
    pub pipe_to: Option<u64>,
}

/// `SYS_REGISTER_WEBHOOK`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterWebhook {
    #[schemars(length(min = 2, max = 200))]
    pub path: String,
}

/// `SYS_WEBHOOK_REPLY`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookReply {
    #[schemars(range(min = 1))]
    pub request_id: u64,
    #[schemars(range(min = 100, max = 599))]
    pub status: Option<u16>,
    pub body: Option<String>,
}
