//! OpenAI-compatible chat completions (`POST {base}/chat/completions`): OpenAI
//! itself and the local servers that copy its API (Ollama, vLLM, llama.cpp
//! server, LM Studio). Owns the request body, the response and error-body
//! parsing, and the API-key rule (required only for api.openai.com).

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{
    is_retryable, normalize_base, read_api_key, snippet, HttpClient, HttpSettings, Streamed, WireErrors,
};
use crate::{
    estimate_prompt_tokens, estimate_tokens, Completion, CompletionRequest, Message, Provider,
    ProviderError, Role, SyscallSpec, ToolCall, Usage,
};

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";
const NAME: &str = "openai";

/// Talks to an OpenAI-compatible `/chat/completions` endpoint.
pub struct OpenAiProvider {
    http: HttpClient,
    base_url: String,
    api_key_env: String,
    key_required: bool,
    stream: bool,
}

impl OpenAiProvider {
    /// `base_url` defaults to [`DEFAULT_BASE_URL`], `api_key_env` to
    /// [`DEFAULT_API_KEY_ENV`]. The key is read at each call; it is required
    /// only when the base URL is api.openai.com.
    pub fn new(
        base_url: Option<&str>,
        api_key_env: Option<&str>,
        settings: HttpSettings,
    ) -> Result<Self, ProviderError> {
        let base_url = normalize_base(base_url.unwrap_or(DEFAULT_BASE_URL));
        let key_required = is_openai_host(&base_url);
        Ok(OpenAiProvider {
            http: HttpClient::new(NAME, settings)?,
            base_url,
            api_key_env: api_key_env.unwrap_or(DEFAULT_API_KEY_ENV).to_string(),
            key_required,
            stream: false,
        })
    }

    /// Streams replies (`stream: true`, server-sent `chat.completion.chunk`s).
    pub fn with_stream(mut self, stream: bool) -> Self {
        self.stream = stream;
        self
    }

    /// The endpoint this provider posts to.
    pub fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.base_url)
    }
}

fn is_openai_host(base: &str) -> bool {
    let rest = base.split_once("://").map(|(_, r)| r).unwrap_or(base);
    let host = rest.split(['/', ':']).next().unwrap_or("");
    host.eq_ignore_ascii_case("api.openai.com")
}

/// One message on the wire: an assistant message's native calls as
/// `tool_calls` (`content` null when it wrote no text), a tool result as
/// `role: "tool"` with its `tool_call_id`.
fn wire_message(m: &Message) -> Value {
    match m.role {
        Role::Assistant if !m.tool_calls.is_empty() => {
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                .collect();
            let content = if m.content.is_empty() { Value::Null } else { json!(m.content) };
            json!({"role": "assistant", "content": content, "tool_calls": calls})
        }
        Role::Tool => match &m.tool_call_id {
            Some(id) => json!({"role": "tool", "tool_call_id": id, "content": m.content}),
            None => json!({"role": "user", "content": m.content}),
        },
        _ => json!({"role": m.role.as_str(), "content": m.content}),
    }
}

/// The syscalls as chat-completions `tools`. Chat completions take JSON
/// Schema as it is in non-strict mode (no `strict: true`, which would
/// require every property in `required` and `additionalProperties: false`
/// at every level), so no keyword is dropped for this API.
pub fn tools(specs: &[SyscallSpec]) -> Vec<Value> {
    specs
        .iter()
        .map(|s| {
            json!({"type": "function", "function": {
                "name": s.name, "description": s.description, "parameters": s.args_schema,
            }})
        })
        .collect()
}

/// The JSON body for a request (`max_completion_tokens` for api.openai.com,
/// whose newer models reject `max_tokens`; `max_tokens` for compatible
/// servers); with [`CompletionRequest::tools`], the syscalls as `tools`
/// with `tool_choice: "auto"` (the model may also answer in text).
pub(crate) fn request_body(req: &CompletionRequest, official: bool) -> Value {
    let messages: Vec<Value> = req.messages.iter().map(wire_message).collect();
    let mut body = json!({"model": req.model, "messages": messages, "stream": false});
    if req.tools && !req.syscalls.is_empty() {
        body["tools"] = Value::Array(tools(&req.syscalls));
        body["tool_choice"] = json!("auto");
    }
    if let Some(max) = req.max_tokens {
        let key = if official {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body[key] = json!(max);
    }
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    body
}

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    /// A JSON string per the API; some compatible servers send an object.
    #[serde(default)]
    arguments: Option<Value>,
}

/// The reply's tool calls. A call without an id (some compatible servers
/// omit it) gets `call_N`, N its position, so its result can still be
/// matched; arguments sent as an object are kept as its JSON text.
fn tool_calls(calls: Vec<WireToolCall>) -> Vec<ToolCall> {
    calls
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let f = c.function.unwrap_or(WireFunction { name: None, arguments: None });
            ToolCall {
                id: c.id.filter(|s| !s.is_empty()).unwrap_or_else(|| format!("call_{i}")),
                name: f.name.unwrap_or_default(),
                arguments: match f.arguments {
                    Some(Value::String(s)) => s,
                    None | Some(Value::Null) => String::new(),
                    Some(v) => v.to_string(),
                },
                signature: None,
            }
        })
        .collect()
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    /// `{cached_tokens}`: the part of `prompt_tokens` served from the prompt cache.
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

/// `content` is a string, null, or (some servers) an array of `{type, text}` parts.
fn content_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str).or_else(|| p.as_str()))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
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
    let resp: ChatResponse = serde_json::from_value(value)
        .map_err(|e| bad(format!("unexpected JSON shape ({e}): {snip}")))?;
    let choice = resp
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| bad(format!("no choices in the response: {snip}")))?;
    let text = content_text(choice.message.as_ref().and_then(|m| m.content.as_ref()));
    let calls = tool_calls(choice.message.and_then(|m| m.tool_calls).unwrap_or_default());
    let truncated = choice.finish_reason.as_deref() == Some("length");
    let cached = resp
        .usage
        .as_ref()
        .and_then(|u| u.prompt_tokens_details.as_ref())
        .and_then(|d| d.cached_tokens)
        .unwrap_or(0);
    let usage = match resp.usage {
        Some(WireUsage {
            prompt_tokens: Some(p),
            completion_tokens: Some(c),
            ..
        }) => Usage {
            prompt_tokens: p,
            completion_tokens: c,
            estimated: false,
            cached_prompt_tokens: cached.min(p),
            cache_write_tokens: 0,
        },
        Some(WireUsage {
            prompt_tokens,
            completion_tokens,
            ..
        }) if prompt_tokens.is_some() || completion_tokens.is_some() => Usage {
            prompt_tokens: prompt_tokens.unwrap_or_else(|| estimate_prompt_tokens(&req.messages)),
            completion_tokens: completion_tokens.unwrap_or_else(|| estimate_tokens(&text)),
            estimated: true,
            cached_prompt_tokens: cached,
            cache_write_tokens: 0,
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

/// A streamed reply being put together from its `chat.completion.chunk`s:
/// `choices[0].delta.content` pieces, `delta.tool_calls[]` pieces (by
/// `index`: the first carries `id` and `function.name`, the rest pieces of
/// `function.arguments`), `finish_reason`, and `usage` on the last chunk
/// (asked for with `stream_options.include_usage`).
#[derive(Default)]
struct StreamState {
    text: String,
    /// (index, id, name, arguments) in order of first appearance.
    calls: Vec<(u64, Option<String>, String, String)>,
    finish_reason: Option<String>,
    usage: Option<Value>,
}

impl StreamState {
    /// Takes one event's data; `Ok(true)` at `[DONE]`.
    fn feed(&mut self, data: &str, sink: &Option<crate::TextSink>) -> Result<bool, ProviderError> {
        if data.trim() == "[DONE]" {
            return Ok(true);
        }
        let v: Value = serde_json::from_str(data).map_err(|e| ProviderError::BadResponse {
            provider: NAME.to_string(),
            detail: format!("invalid JSON in a stream chunk ({e}): {}", snippet(data)),
        })?;
        if let Some(err) = v.get("error") {
            return Err(ProviderError::Api {
                provider: NAME.to_string(),
                status: 200,
                detail: OpenAiErrors.detail(200, &json!({"error": err}).to_string()),
            });
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        let Some(choice) = v.get("choices").and_then(Value::as_array).and_then(|c| c.first()) else {
            return Ok(false);
        };
        let delta = &choice["delta"];
        if let Some(t) = delta.get("content").and_then(Value::as_str) {
            self.text.push_str(t);
            crate::TextSink::send(sink, t);
        }
        for (n, c) in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(n as u64);
            let pos = match self.calls.iter().position(|(i, ..)| *i == index) {
                Some(p) => p,
                None => {
                    self.calls.push((index, None, String::new(), String::new()));
                    self.calls.len() - 1
                }
            };
            let call = &mut self.calls[pos];
            if let Some(id) = c.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                call.1 = Some(id.to_string());
            }
            if let Some(name) = c["function"].get("name").and_then(Value::as_str) {
                call.2.push_str(name);
            }
            match c["function"].get("arguments") {
                Some(Value::String(a)) => call.3.push_str(a),
                Some(Value::Null) | None => {}
                Some(other) => call.3.push_str(&other.to_string()),
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(f.to_string());
        }
        Ok(false)
    }

    /// The reply as a non-streamed chat completion, for [`parse_response`].
    fn into_response(self) -> Value {
        let calls: Vec<Value> = self
            .calls
            .into_iter()
            .map(|(_, id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
            .collect();
        let mut message = json!({"role": "assistant", "content": self.text});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        let mut v = json!({"choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}]});
        if let Some(u) = self.usage {
            v["usage"] = u;
        }
        v
    }
}

/// `{"error":{"message","type","code"}}`, or (Ollama native) `{"error":"..."}`.
struct OpenAiErrors;

fn error_fields(body: &str) -> Option<(String, Option<String>, Option<String>)> {
    let v: Value = serde_json::from_str(body).ok()?;
    let err = v.get("error")?;
    if let Some(s) = err.as_str() {
        return Some((s.to_string(), None, None));
    }
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ty = err.get("type").and_then(Value::as_str).map(str::to_string);
    let code = err.get("code").and_then(|c| {
        c.as_str()
            .map(str::to_string)
            .or_else(|| c.as_i64().map(|n| n.to_string()))
    });
    Some((message, ty, code))
}

fn is_quota_error(body: &str) -> bool {
    error_fields(body).is_some_and(|(_, ty, code)| {
        code.as_deref() == Some("insufficient_quota") || ty.as_deref() == Some("insufficient_quota")
    })
}

impl WireErrors for OpenAiErrors {
    fn detail(&self, status: u16, body: &str) -> String {
        match error_fields(body) {
            Some((msg, ty, code)) if !msg.is_empty() => {
                let tag = code.or(ty).map(|t| format!(" [{t}]")).unwrap_or_default();
                format!("{msg}{tag}")
            }
            _ if body.trim().is_empty() => format!("HTTP {status} with an empty body"),
            _ => snippet(body),
        }
    }

    /// A 429 for an exhausted quota will not pass by waiting.
    fn retryable(&self, status: u16, body: &str) -> bool {
        is_retryable(status) && !is_quota_error(body)
    }

    fn classify(&self, status: u16, body: &str, model: &str) -> ProviderError {
        let detail = self.detail(status, body);
        if is_quota_error(body) {
            return ProviderError::Api {
                provider: NAME.to_string(),
                status,
                detail: format!(
                    "{detail} (the account is out of quota: check its plan and billing)"
                ),
            };
        }
        let fields = error_fields(body);
        let code = fields.as_ref().and_then(|(_, _, c)| c.clone());
        if code.as_deref() == Some("context_length_exceeded") {
            // "This model's maximum context length is 8192 tokens. However, your
            // messages resulted in 9000 tokens. ..."
            let msg = fields.map(|(m, _, _)| m).unwrap_or_default();
            return ProviderError::ContextOverflow {
                provider: NAME.to_string(),
                prompt_tokens: crate::number_after(&msg, "resulted in "),
                limit: crate::number_after(&msg, "maximum context length is "),
            };
        }
        if status == 404 || code.as_deref() == Some("model_not_found") {
            return ProviderError::UnknownModel {
                provider: NAME.to_string(),
                model: model.to_string(),
                detail: format!(
                    "{detail} (check the model name, and that the base URL ends in /v1)"
                ),
            };
        }
        if status == 401 || status == 403 {
            return ProviderError::Unauthorized {
                provider: NAME.to_string(),
                status,
                detail,
            };
        }
        ProviderError::Api {
            provider: NAME.to_string(),
            status,
            detail,
        }
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        NAME
    }

    async fn complete(&self, req: CompletionRequest) -> Result<Completion, ProviderError> {
        let key = read_api_key(&self.api_key_env, self.key_required)?;
        let mut headers = Vec::new();
        if let Some(key) = key {
            headers.push(("authorization", format!("Bearer {key}")));
        }
        let mut body = request_body(&req, self.key_required);
        let url = self.endpoint();
        if !self.stream {
            let value = self
                .http
                .post_json(&url, &headers, &body, &req.model, &OpenAiErrors)
                .await
                .map_err(|e| tools_rejected(e, req.tools))?;
            return parse_response(value, &req);
        }
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let mut st = StreamState::default();
        let sink = req.on_text.clone();
        let end = self
            .http
            .post_sse(&url, &headers, &body, &req.model, &OpenAiErrors, &mut |ev| st.feed(&ev.data, &sink))
            .await
            .map_err(|e| tools_rejected(e, req.tools))?;
        match end {
            Streamed::Whole(value) => parse_response(value, &req),
            // `[DONE]`, or a server that closes after the finish reason without it.
            Streamed::Ended => parse_response(st.into_response(), &req),
            Streamed::Stopped if st.finish_reason.is_some() => parse_response(st.into_response(), &req),
            Streamed::Stopped => Err(self.http.cut(&url)),
        }
    }

    fn supports_tools(&self) -> bool {
        true
    }
}

/// A 400/422/404/501 that blames the tool list, when the request had one:
/// a model or server without tool calling (Ollama "does not support
/// tools", vLLM "\"auto\" tool choice requires --enable-auto-tool-choice",
/// llama.cpp "tools param requires --jinja flag").
fn tools_rejected(e: ProviderError, sent_tools: bool) -> ProviderError {
    match e {
        ProviderError::Api { provider, status, detail }
            if sent_tools
                && matches!(status, 400 | 404 | 422 | 501)
                && {
                    let d = detail.to_ascii_lowercase();
                    d.contains("tool") || d.contains("function")
                } =>
        {
            ProviderError::ToolsRejected { provider, detail: format!("HTTP {status}: {detail}") }
        }
        ProviderError::UnknownModel { provider, detail, .. }
            if sent_tools && detail.to_ascii_lowercase().contains("tool") =>
        {
            ProviderError::ToolsRejected { provider, detail }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_host_detection() {
        assert!(is_openai_host("https://api.openai.com/v1"));
        assert!(is_openai_host("https://API.openai.com:443/v1"));
        assert!(!is_openai_host("http://localhost:11434/v1"));
        assert!(!is_openai_host("http://127.0.0.1:8080"));
    }

    #[test]
    fn content_parts_are_joined() {
        let v = json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]);
        assert_eq!(content_text(Some(&v)), "ab");
        assert_eq!(content_text(Some(&Value::Null)), "");
    }

    #[test]
    fn ollama_style_string_error() {
        let d = OpenAiErrors.detail(404, r#"{"error":"model 'x' not found"}"#);
        assert_eq!(d, "model 'x' not found");
    }
}
