//! Anthropic Messages API (`POST {base}/v1/messages`): owns the request body
//! (top-level `system`, strictly alternating user/assistant turns starting
//! with user, required `max_tokens`; native tools as `tools` with
//! `input_schema`, calls and results as `tool_use`/`tool_result` blocks;
//! `cache_control` breakpoints on the system prompt and the tool list), the
//! response and error-body parsing, and the `x-api-key` /
//! `anthropic-version` headers.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{normalize_base, read_api_key, snippet, HttpClient, HttpSettings, Streamed, WireErrors};
use crate::{
    arguments_object, estimate_prompt_tokens, estimate_tokens, split_system, Completion,
    CompletionRequest, Message, Provider, ProviderError, Role, SyscallSpec, ToolCall, Usage,
};

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_API_KEY_ENV: &str = "ANTHROPIC_API_KEY";
pub const API_VERSION: &str = "2023-06-01";
/// `max_tokens` sent when the request has none (the API requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 1024;
/// The user turn inserted when a conversation would otherwise start with the
/// assistant or have no turns at all (the API requires a leading user turn).
pub const PLACEHOLDER_USER_TURN: &str = "(continue)";
const NAME: &str = "anthropic";

/// Talks to the Anthropic Messages API.
pub struct AnthropicProvider {
    http: HttpClient,
    base_url: String,
    api_key_env: String,
    stream: bool,
}

impl AnthropicProvider {
    /// `base_url` defaults to [`DEFAULT_BASE_URL`], `api_key_env` to
    /// [`DEFAULT_API_KEY_ENV`]. The key is read (and required) at each call.
    pub fn new(
        base_url: Option<&str>,
        api_key_env: Option<&str>,
        settings: HttpSettings,
    ) -> Result<Self, ProviderError> {
        Ok(AnthropicProvider {
            http: HttpClient::new(NAME, settings)?,
            base_url: normalize_base(base_url.unwrap_or(DEFAULT_BASE_URL)),
            api_key_env: api_key_env.unwrap_or(DEFAULT_API_KEY_ENV).to_string(),
            stream: false,
        })
    }

    /// Streams replies (`stream: true`, server-sent Messages events).
    pub fn with_stream(mut self, stream: bool) -> Self {
        self.stream = stream;
        self
    }

    /// The endpoint this provider posts to.
    pub fn endpoint(&self) -> String {
        format!("{}/v1/messages", self.base_url)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WireRole {
    User,
    Assistant,
}

/// One message's content blocks: its text (when not empty; the API
/// refuses empty text blocks), an assistant message's native calls as
/// `tool_use` blocks, a tool message as a `tool_result` block under the
/// call's id (`is_error` when it reports an error).
fn blocks(m: &Message) -> Vec<Value> {
    if m.role == Role::Tool {
        if let Some(id) = &m.tool_call_id {
            let mut b = json!({"type": "tool_result", "tool_use_id": id, "content": m.content});
            if m.is_error {
                b["is_error"] = json!(true);
            }
            return vec![b];
        }
    }
    let mut out = Vec::new();
    if !m.content.is_empty() {
        out.push(json!({"type": "text", "text": m.content}));
    }
    for c in &m.tool_calls {
        out.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": arguments_object(&c.arguments)}));
    }
    out
}

/// The syscalls as Messages API `tools` (`name`, `description`,
/// `input_schema`). The API takes JSON Schema as it is, so no keyword is
/// dropped. The last tool carries a `cache_control` breakpoint, so the
/// tool list (and the system prompt before it) is cached across steps.
pub fn tools(specs: &[SyscallSpec]) -> Vec<Value> {
    let mut tools: Vec<Value> = specs
        .iter()
        .map(|s| json!({"name": s.name, "description": s.description, "input_schema": s.args_schema}))
        .collect();
    if let Some(last) = tools.last_mut() {
        last["cache_control"] = json!({"type": "ephemeral"});
    }
    tools
}

/// Leading system messages become `system` (one text block with a
/// `cache_control` breakpoint: the prompt is the same every step); later
/// ones are sent as user turns. Messages of the same wire role are merged
/// into one turn (`tool_result` blocks first, as the API requires after a
/// `tool_use` turn), and a placeholder user turn is put first when needed,
/// so turns alternate starting with user. A turn of text only is sent as a
/// plain string.
pub(crate) fn request_body(req: &CompletionRequest) -> Value {
    let (system, rest) = split_system(&req.messages);
    let mut turns: Vec<(WireRole, Vec<Value>)> = Vec::new();
    for m in rest {
        let role = match m.role {
            Role::Assistant => WireRole::Assistant,
            Role::User | Role::System | Role::Tool => WireRole::User,
        };
        let mut b = blocks(m);
        if b.is_empty() {
            // An empty message still takes its turn (as an empty text).
            b.push(json!({"type": "text", "text": ""}));
        }
        match turns.last_mut() {
            Some((last, blocks)) if *last == role => blocks.extend(b),
            _ => turns.push((role, b)),
        }
    }
    if turns.first().is_none_or(|(r, _)| *r != WireRole::User) {
        turns.insert(0, (WireRole::User, vec![json!({"type": "text", "text": PLACEHOLDER_USER_TURN})]));
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, mut blocks)| {
            let role = match role {
                WireRole::User => "user",
                WireRole::Assistant => "assistant",
            };
            let is_text = |b: &Value| b["type"] == "text";
            if blocks.iter().all(is_text) {
                let texts: Vec<&str> = blocks
                    .iter()
                    .filter_map(|b| b["text"].as_str())
                    .filter(|t| !t.is_empty())
                    .collect();
                return json!({"role": role, "content": texts.join("\n\n")});
            }
            blocks.retain(|b| !(is_text(b) && b["text"] == ""));
            // Stable: tool results first, in their order, then the rest.
            blocks.sort_by_key(|b| b["type"] != "tool_result");
            json!({"role": role, "content": blocks})
        })
        .collect();
    let mut body = json!({
        "model": req.model,
        "max_tokens": req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": messages,
    });
    if let Some(system) = system {
        body["system"] = json!([{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]);
    }
    if req.tools && !req.syscalls.is_empty() {
        body["tools"] = Value::Array(tools(&req.syscalls));
    }
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    body
}

#[derive(Deserialize)]
struct MessagesResponse {
    #[serde(default)]
    content: Vec<Block>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    /// A `tool_use` block's id, name and input object.
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Value>,
}

#[derive(Deserialize)]
struct WireUsage {
    /// The prompt tokens after the last cache breakpoint (not read from or
    /// written to the cache).
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

pub(crate) fn parse_response(
    value: Value,
    req: &CompletionRequest,
) -> Result<Completion, ProviderError> {
    let bad = |detail: String| ProviderError::BadResponse {
        provider: NAME.to_string(),
        detail,
    };
    let snip = snippet(&value.to_string());
    if value.get("type").and_then(Value::as_str) == Some("error") {
        return Err(ProviderError::Api {
            provider: NAME.to_string(),
            status: 200,
            detail: AnthropicErrors.detail(200, &value.to_string()),
        });
    }
    let resp: MessagesResponse = serde_json::from_value(value)
        .map_err(|e| bad(format!("unexpected JSON shape ({e}): {snip}")))?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in resp.content {
        match b.kind.as_str() {
            "text" => text.push_str(b.text.as_deref().unwrap_or("")),
            "tool_use" => calls.push(ToolCall {
                id: b.id.filter(|s| !s.is_empty()).unwrap_or_else(|| format!("toolu_{}", calls.len())),
                name: b.name.unwrap_or_default(),
                arguments: match b.input {
                    None | Some(Value::Null) => String::new(),
                    // A streamed input that was not valid JSON, as it came.
                    Some(Value::String(s)) => s,
                    Some(v) => v.to_string(),
                },
                signature: None,
            }),
            _ => {}
        }
    }
    let truncated = resp.stop_reason.as_deref() == Some("max_tokens");
    // The whole prompt is input + cache reads + cache writes.
    let (read, written) = resp
        .usage
        .as_ref()
        .map(|u| (u.cache_read_input_tokens.unwrap_or(0), u.cache_creation_input_tokens.unwrap_or(0)))
        .unwrap_or((0, 0));
    let usage = match resp.usage {
        Some(WireUsage {
            input_tokens: Some(i),
            output_tokens: Some(o),
            ..
        }) => Usage {
            prompt_tokens: i + read + written,
            completion_tokens: o,
            estimated: false,
            cached_prompt_tokens: read,
            cache_write_tokens: written,
        },
        Some(WireUsage {
            input_tokens,
            output_tokens,
            ..
        }) if input_tokens.is_some() || output_tokens.is_some() => Usage {
            prompt_tokens: input_tokens.map(|i| i + read + written).unwrap_or_else(|| estimate_prompt_tokens(&req.messages)),
            completion_tokens: output_tokens.unwrap_or_else(|| estimate_tokens(&text)),
            estimated: true,
            cached_prompt_tokens: read,
            cache_write_tokens: written,
        },
        _ => crate::estimated_usage(&req.messages, &text),
    };
    Ok(Completion {
        tool_calls: calls,
        text,
        usage,
        truncated,
    })
}

/// A streamed reply being put together from its events: `message_start`
/// (the usage of the prompt), `content_block_start` (a `text` or
/// `tool_use` block), `content_block_delta` (`text_delta` text,
/// `input_json_delta` pieces of a tool's input JSON), `content_block_stop`,
/// `message_delta` (`stop_reason`, output tokens), `message_stop` (the last
/// one); `ping` is ignored and `error` ends the call with that error.
#[derive(Default)]
struct StreamState {
    blocks: Vec<Value>,
    /// The input JSON text of each block (by position in `blocks`).
    partial: Vec<String>,
    stop_reason: Option<Value>,
    usage: serde_json::Map<String, Value>,
}

impl StreamState {
    fn feed(&mut self, event: &str, data: &str, sink: &Option<crate::TextSink>, model: &str) -> Result<bool, ProviderError> {
        let v: Value = serde_json::from_str(data).map_err(|e| ProviderError::BadResponse {
            provider: NAME.to_string(),
            detail: format!("invalid JSON in a stream event ({e}): {}", snippet(data)),
        })?;
        let kind = if event.is_empty() { v["type"].as_str().unwrap_or("") } else { event };
        let index = v["index"].as_u64().unwrap_or(0) as usize;
        match kind {
            "message_start" => {
                if let Some(u) = v["message"]["usage"].as_object() {
                    self.usage.extend(u.clone());
                }
            }
            "content_block_start" => {
                while self.blocks.len() <= index {
                    self.blocks.push(json!({"type": "text", "text": ""}));
                    self.partial.push(String::new());
                }
                self.blocks[index] = v["content_block"].clone();
            }
            "content_block_delta" if index < self.blocks.len() => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => {
                        let t = d["text"].as_str().unwrap_or("");
                        let old = self.blocks[index]["text"].as_str().unwrap_or("").to_string();
                        self.blocks[index]["text"] = json!(old + t);
                        crate::TextSink::send(sink, t);
                    }
                    Some("input_json_delta") => self.partial[index].push_str(d["partial_json"].as_str().unwrap_or("")),
                    _ => {}
                }
            }
            "content_block_stop" if index < self.blocks.len() => {
                let text = std::mem::take(&mut self.partial[index]);
                if self.blocks[index]["type"] == "tool_use" && !text.trim().is_empty() {
                    // Malformed input is kept as its text (the kernel answers it as such).
                    self.blocks[index]["input"] = serde_json::from_str(&text).unwrap_or(Value::String(text));
                }
            }
            "message_delta" => {
                if let Some(r) = v["delta"].get("stop_reason").filter(|r| !r.is_null()) {
                    self.stop_reason = Some(r.clone());
                }
                if let Some(u) = v["usage"].as_object() {
                    self.usage.extend(u.iter().filter(|(_, x)| !x.is_null()).map(|(k, x)| (k.clone(), x.clone())));
                }
            }
            "message_stop" => return Ok(true),
            "error" => {
                let status = if v["error"]["type"] == "overloaded_error" { 529 } else { 500 };
                return Err(match AnthropicErrors.classify(status, data, model) {
                    ProviderError::Api { provider, detail, .. } => ProviderError::Api {
                        provider,
                        status: 200,
                        detail: format!("{detail} (an error event in the stream)"),
                    },
                    other => other,
                });
            }
            _ => {}
        }
        Ok(false)
    }

    /// The reply as a non-streamed Message, for [`parse_response`].
    fn into_response(self) -> Value {
        json!({"type": "message", "role": "assistant", "content": self.blocks, "stop_reason": self.stop_reason, "usage": self.usage})
    }
}

/// `{"type":"error","error":{"type","message"}}`.
struct AnthropicErrors;

fn error_fields(body: &str) -> Option<(String, Option<String>)> {
    let v: Value = serde_json::from_str(body).ok()?;
    let err = v.get("error")?;
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ty = err.get("type").and_then(Value::as_str).map(str::to_string);
    Some((message, ty))
}

impl WireErrors for AnthropicErrors {
    fn detail(&self, status: u16, body: &str) -> String {
        match error_fields(body) {
            Some((msg, ty)) if !msg.is_empty() => match ty {
                Some(ty) => format!("{msg} [{ty}]"),
                None => msg,
            },
            _ if body.trim().is_empty() => format!("HTTP {status} with an empty body"),
            _ => snippet(body),
        }
    }

    fn classify(&self, status: u16, body: &str, model: &str) -> ProviderError {
        let detail = self.detail(status, body);
        let fields = error_fields(body);
        let ty = fields.as_ref().and_then(|(_, t)| t.clone());
        if let Some((msg, _)) = fields.as_ref().filter(|(m, _)| m.contains("prompt is too long")) {
            // 400 invalid_request_error "prompt is too long: 208310 tokens > 200000 maximum"
            return ProviderError::ContextOverflow {
                provider: NAME.to_string(),
                prompt_tokens: crate::number_after(msg, "prompt is too long: "),
                limit: crate::number_after(msg, "> "),
            };
        }
        match ty.as_deref() {
            Some("authentication_error") | Some("permission_error") => {
                return ProviderError::Unauthorized {
                    provider: NAME.to_string(),
                    status,
                    detail,
                }
            }
            Some("not_found_error") => {
                return ProviderError::UnknownModel {
                    provider: NAME.to_string(),
                    model: model.to_string(),
                    detail: format!("{detail} (check the model name, e.g. claude-sonnet-4-5)"),
                }
            }
            Some("overloaded_error") | Some("rate_limit_error") => {
                return ProviderError::Overloaded {
                    provider: NAME.to_string(),
                    status,
                    attempts: 1,
                    detail,
                }
            }
            _ => {}
        }
        match status {
            401 | 403 => ProviderError::Unauthorized {
                provider: NAME.to_string(),
                status,
                detail,
            },
            404 => ProviderError::UnknownModel {
                provider: NAME.to_string(),
                model: model.to_string(),
                detail: format!("{detail} (check the model name and the base URL)"),
            },
            _ => ProviderError::Api {
                provider: NAME.to_string(),
                status,
                detail,
            },
        }
    }
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &str {
        NAME
    }

    async fn complete(&self, req: CompletionRequest) -> Result<Completion, ProviderError> {
        let key = read_api_key(&self.api_key_env, true)?.unwrap_or_default();
        let headers = [
            ("x-api-key", key),
            ("anthropic-version", API_VERSION.to_string()),
        ];
        let mut body = request_body(&req);
        let url = self.endpoint();
        if !self.stream {
            let value = self
                .http
                .post_json(&url, &headers, &body, &req.model, &AnthropicErrors)
                .await?;
            return parse_response(value, &req);
        }
        body["stream"] = json!(true);
        let mut st = StreamState::default();
        let sink = req.on_text.clone();
        let model = req.model.clone();
        let end = self
            .http
            .post_sse(&url, &headers, &body, &req.model, &AnthropicErrors, &mut |ev| st.feed(&ev.event, &ev.data, &sink, &model))
            .await?;
        match end {
            Streamed::Whole(value) => parse_response(value, &req),
            Streamed::Ended => parse_response(st.into_response(), &req),
            Streamed::Stopped => Err(self.http.cut(&url)),
        }
    }

    fn supports_tools(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, content: &str) -> Message {
        Message::new(role, content)
    }

    #[test]
    fn leading_assistant_gets_placeholder_user_turn() {
        let req = CompletionRequest {
            model: "m".into(),
            messages: vec![
                msg(Role::System, "s"),
                msg(Role::Assistant, "a"),
                msg(Role::Assistant, "b"),
            ],
            ..Default::default()
        };
        let b = request_body(&req);
        assert_eq!(b["system"][0]["text"], "s");
        assert_eq!(b["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(b["messages"][0]["role"], "user");
        assert_eq!(b["messages"][0]["content"], PLACEHOLDER_USER_TURN);
        assert_eq!(b["messages"][1]["role"], "assistant");
        assert_eq!(b["messages"][1]["content"], "a\n\nb");
        assert_eq!(b["messages"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn empty_conversation_gets_a_user_turn() {
        let req = CompletionRequest {
            model: "m".into(),
            messages: vec![msg(Role::System, "s")],
            ..Default::default()
        };
        let b = request_body(&req);
        assert_eq!(b["messages"][0]["role"], "user");
        assert!(b.get("temperature").is_none());
    }
}
