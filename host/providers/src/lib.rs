//! LLM providers: the [`Provider`] trait the kernel's loop calls once per
//! step, and its implementations, each speaking its service's real wire format.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub mod anthropic;
pub mod gemini;
pub mod http;
pub mod openai;
pub mod registry;
pub mod script;

pub use anthropic::AnthropicProvider;
pub use gemini::GeminiProvider;
pub use http::HttpSettings;
pub use openai::OpenAiProvider;
pub use registry::{
    build_provider, build_provider_with, check_provider_name, Constructor, ProviderConfig, ProviderRegistry,
    DEFAULT_STREAM, KNOWN_PROVIDERS, PROVIDER_NAMES,
};
pub use script::ScriptProvider;


pub use aos_abi::{ModelProgress, SyscallSpec, ToolCall, ToolMode};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// The result of one native tool call (`tool_call_id` names it).
    Tool,
}

impl Role {
    /// The role's name in OpenAI-style chat formats (and chat templates).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// An assistant message's native tool calls (native tool mode only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A [`Role::Tool`] message: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A [`Role::Tool`] message that reports an error (the call was
    /// malformed, denied, failed or interrupted) rather than a result:
    /// Anthropic's `is_error`, Gemini's `error` response key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
}

impl Message {
    /// A plain message (no tool calls).
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message { role, content: content.into(), tool_calls: Vec::new(), tool_call_id: None, is_error: false }
    }
}

/// A call's arguments as the JSON object APIs with structured tool input
/// (Anthropic `input`, Gemini `args`) want back in the history: the
/// arguments themselves when they are an object, `{}` when empty, and
/// otherwise (a malformed call the kernel answered with an error) the raw
/// text under `_unparsed_arguments`, so the model still sees what it sent.
pub(crate) fn arguments_object(arguments: &str) -> serde_json::Value {
    if arguments.trim().is_empty() {
        return serde_json::json!({});
    }
    match serde_json::from_str::<serde_json::Value>(arguments) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => serde_json::json!({"_unparsed_arguments": arguments}),
    }
}

/// One model call.
#[derive(Debug, Clone, Default)]
pub struct CompletionRequest {
    /// Model name as the provider knows it (for `local`: a GGUF path or name).
    pub model: String,
    /// System prompt first, then the history. Consecutive messages of the same
    /// role are allowed; providers that forbid them merge them.
    pub messages: Vec<Message>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    /// The syscalls this process may use (local providers build a grammar
    /// from them). Shared: the scheduler sends the same list every step.
    pub syscalls: std::sync::Arc<[SyscallSpec]>,
    /// Send `syscalls` as the API's native tools (each syscall one tool) (only to a provider whose
    /// [`Provider::supports_tools`] is true).
    pub tools: bool,
    /// Identifies the calling process (local providers keep a KV cache per process).
    pub pid: u64,
    /// Where a streaming provider sends the reply's text as it arrives
    /// (each piece once, in order); the whole reply is still returned.
    pub on_text: Option<TextSink>,
    /// Where a provider that can tell reports how far the call is
    /// ([`ModelProgress`]: loading the model, evaluating the prompt,
    /// generating), as often as it likes: the receiver rate-limits.
    pub on_progress: Option<ProgressSink>,
}

/// A callback receiving [`ModelProgress`] reports while a call runs.
#[derive(Clone)]
pub struct ProgressSink(pub std::sync::Arc<dyn Fn(ModelProgress) + Send + Sync>);

impl ProgressSink {
    pub fn new(f: impl Fn(ModelProgress) + Send + Sync + 'static) -> Self {
        ProgressSink(std::sync::Arc::new(f))
    }
    /// Reports `p` to `sink`, if there is one.
    pub fn send(sink: &Option<ProgressSink>, p: ModelProgress) {
        if let Some(s) = sink {
            (s.0)(p)
        }
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

/// A callback receiving pieces of a reply's text while it is generated.
#[derive(Clone)]
pub struct TextSink(pub std::sync::Arc<dyn Fn(&str) + Send + Sync>);

impl TextSink {
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        TextSink(std::sync::Arc::new(f))
    }
    /// Sends `text` to `sink`, if there is one and the text is not empty.
    pub fn send(sink: &Option<TextSink>, text: &str) {
        if let (Some(s), false) = (sink, text.is_empty()) {
            (s.0)(text)
        }
    }
}

impl std::fmt::Debug for TextSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TextSink")
    }
}

/// Token counts of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Every prompt token, including those served from the provider's
    /// prompt cache (Anthropic reports these apart; they are added here).
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// True when the provider reported no counts and these are estimates.
    pub estimated: bool,
    /// Of `prompt_tokens`, those read from the provider's prompt cache
    /// (OpenAI `prompt_tokens_details.cached_tokens`, Anthropic
    /// `cache_read_input_tokens`, Gemini `cachedContentTokenCount`); 0 when
    /// none were or the provider does not say.
    #[serde(default)]
    pub cached_prompt_tokens: u64,
    /// Of `prompt_tokens`, those written to the cache by this call
    /// (Anthropic `cache_creation_input_tokens`, billed above the base rate).
    #[serde(default)]
    pub cache_write_tokens: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    /// Native tool calls, in the order the model made them.
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    /// True when generation stopped at `max_tokens`.
    pub truncated: bool,
}

pub use error::ProviderError;

mod error {
    /// Why a model call failed; messages say what to do about it.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum ProviderError {
        #[error("missing API key: set the environment variable {var}")]
        MissingApiKey { var: String },
        #[error("unknown model `{model}` at {provider}: {detail}")]
        UnknownModel {
            provider: String,
            model: String,
            detail: String,
        },
        #[error("cannot reach {provider} at {url}: {detail} (is the server running and the base URL right?)")]
        Unreachable {
            provider: String,
            url: String,
            detail: String,
        },
        #[error("{provider} rejected the credentials ({status}): {detail}")]
        Unauthorized {
            provider: String,
            status: u16,
            detail: String,
        },
        #[error("{provider} is rate limiting or overloaded ({status}) after {attempts} attempts: {detail}")]
        Overloaded {
            provider: String,
            status: u16,
            attempts: u32,
            detail: String,
        },
        #[error(
            "{provider} timed out after {secs} s without an answer: a slow model or a long reply needs a longer \
             timeout, `timeout_secs` under `[providers.{provider}]` in aos.toml (read by `aos run` and at kernel start)"
        )]
        Timeout { provider: String, secs: u64 },
        /// A provider name that is not one of [`crate::PROVIDER_NAMES`].
        #[error(
            "unknown provider `{name}`{hint}; the providers are {known}",
            hint = suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(),
            known = crate::PROVIDER_NAMES.join(", ")
        )]
        UnknownProvider { name: String, suggestion: Option<String> },
        #[error("{provider} returned an error ({status}): {detail}")]
        Api {
            provider: String,
            status: u16,
            detail: String,
        },
        /// The prompt does not fit the model's context. The kernel reacts by
        /// compacting the process's history harder and retrying.
        #[error(
            "the prompt is {prompt_tokens} tokens but {provider}'s model accepts at most {limit}: \
             shorten the history (a smaller context_window compacts it sooner), give the process fewer \
             capabilities (a shorter system prompt), or use a model with a larger context (local: a larger n_ctx)"
        )]
        ContextOverflow {
            provider: String,
            /// The prompt's size in the model's tokens (0 when the provider did not say).
            prompt_tokens: u64,
            /// The most prompt tokens the model accepts (0 when the provider did not say).
            limit: u64,
        },
        /// The server refused a request because of its tool list (a model
        /// or server without tool calling). In `auto` tool mode the kernel
        /// falls back to the text protocol.
        #[error("{provider} rejected native tool calls: {detail} (use tool_mode = \"text\" for this model)")]
        ToolsRejected { provider: String, detail: String },
        #[error("{provider} returned a response that could not be understood: {detail}")]
        BadResponse { provider: String, detail: String },
        #[error("{0}")]
        Other(String),
    }
}

/// An LLM backend. Implementations must be cheap to share (`Arc<dyn Provider>`).
#[async_trait]
pub trait Provider: Send + Sync {
    /// Short name, e.g. `openai`, `gemini`, `anthropic`, `script`, `local`.
    fn name(&self) -> &str;
    async fn complete(&self, req: CompletionRequest) -> Result<Completion, ProviderError>;
    /// Checked when a process is spawned, before its first model call: can
    /// `model` be used at all (e.g. `local`: the GGUF file exists)? The
    /// error reaches the spawner (`aos spawn`, `SPAWN_AGENT`). Default: yes.
    fn check_model(&self, _model: &str) -> Result<(), ProviderError> {
        Ok(())
    }
    /// Called when a process exits, so per-process state (caches) can be dropped.
    fn release(&self, _pid: u64) {}
    /// Called when process `pid` is restored after a restart, having already
    /// made `steps_done` model calls, so per-process state (the `script`
    /// provider's position) continues where it was. Default: nothing.
    fn resume(&self, _pid: u64, _steps_done: u64) {}
    /// The most prompt tokens `model` really holds (its context minus room
    /// for the reply), when the provider knows it. The kernel compacts
    /// histories to the smaller of this and its configured window.
    /// Default: unknown (`None`).
    fn context_window(&self, _model: &str) -> Option<usize> {
        None
    }
    /// Whether `model` names a file the provider opens on the host (a
    /// script, a GGUF path) rather than a model of a service. The kernel
    /// lets an agent choose such a model for a child only inside the
    /// operator's `[spawn] model_dir`. Default: no.
    fn model_is_file(&self, _model: &str) -> bool {
        false
    }
    /// Whether it can send syscalls as the API's native tools
    /// ([`CompletionRequest::tools`]). Default: no (the text protocol).
    fn supports_tools(&self) -> bool {
        false
    }
}

/// Rough token estimate (≈4 characters per token) for providers that report none.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// Estimated prompt size of a request's messages (for responses without usage).
pub fn estimate_prompt_tokens(messages: &[Message]) -> u64 {
    messages
        .iter()
        .map(|m| estimate_tokens(&m.content) + m.tool_calls.iter().map(|c| estimate_tokens(&c.arguments) + 4).sum::<u64>())
        .sum()
}

/// Usage estimated from the request's messages and the reply text.
pub(crate) fn estimated_usage(messages: &[Message], text: &str) -> Usage {
    Usage {
        prompt_tokens: estimate_prompt_tokens(messages),
        completion_tokens: estimate_tokens(text),
        estimated: true,
        ..Usage::default()
    }
}

/// The integer right after the first `prefix` in `text` (0 when absent):
/// reads token counts out of providers' "context length exceeded" messages.
pub(crate) fn number_after(text: &str, prefix: &str) -> u64 {
    text.find(prefix)
        .map(|i| {
            text[i + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ',')
                .filter(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

/// Splits messages into the leading system prompt (leading `System` messages
/// joined by blank lines) and the rest. Later `System` messages are returned
/// in place; providers without a mid-conversation system role send them as
/// user turns.
pub(crate) fn split_system(messages: &[Message]) -> (Option<String>, &[Message]) {
    let n = messages
        .iter()
        .take_while(|m| m.role == Role::System)
        .count();
    if n == 0 {
        return (None, messages);
    }
    let system = messages[..n]
        .iter()
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n\n");
    (Some(system), &messages[n..])
}
