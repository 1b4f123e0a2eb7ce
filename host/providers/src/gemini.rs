//! Google Gemini (`POST {base}/v1beta/models/{model}:generateContent`): owns
//! the request body (`systemInstruction`, `contents` with roles user/model and
//! consecutive same-role turns merged, `generationConfig`; native tools as
//! `functionDeclarations` with schemas converted to Gemini's subset, calls
//! and results as `functionCall`/`functionResponse` parts), the response and
//! error-body parsing. The key goes in the `x-goog-api-key` header, never in
//! the URL.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{normalize_base, read_api_key, snippet, HttpClient, HttpSettings, Streamed, WireErrors};
use crate::{
    arguments_object, estimate_prompt_tokens, estimate_tokens, split_system, Completion,
    CompletionRequest, Message, Provider, ProviderError, Role, SyscallSpec, ToolCall, Usage,
};

pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";
pub const DEFAULT_API_KEY_ENV: &str = "GEMINI_API_KEY";
const NAME: &str = "gemini";

/// Talks to the Gemini `generateContent` API.
pub struct GeminiProvider {
    http: HttpClient,
    base_url: String,
    api_key_env: String,
    stream: bool,
}

impl GeminiProvider {
    /// `base_url` defaults to [`DEFAULT_BASE_URL`], `api_key_env` to
    /// [`DEFAULT_API_KEY_ENV`]. The key is read (and required) at each call.
    pub fn new(
        base_url: Option<&str>,
        api_key_env: Option<&str>,
        settings: HttpSettings,
    ) -> Result<Self, ProviderError> {
        Ok(GeminiProvider {
            http: HttpClient::new(NAME, settings)?,
            base_url: normalize_base(base_url.unwrap_or(DEFAULT_BASE_URL)),
            api_key_env: api_key_env.unwrap_or(DEFAULT_API_KEY_ENV).to_string(),
            stream: false,
        })
    }

    /// Streams replies (`:streamGenerateContent?alt=sse`).
    pub fn with_stream(mut self, stream: bool) -> Self {
        self.stream = stream;
        self
    }

    /// The streaming endpoint for `model`.
    pub fn stream_endpoint(&self, model: &str) -> String {
        let model = model.strip_prefix("models/").unwrap_or(model);
        format!("{}/v1beta/models/{}:streamGenerateContent?alt=sse", self.base_url, model)
    }

    /// The endpoint for `model` (a leading `models/` is accepted and stripped).
    pub fn endpoint(&self, model: &str) -> String {
        let model = model.strip_prefix("models/").unwrap_or(model);
        format!("{}/v1beta/models/{}:generateContent", self.base_url, model)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WireRole {
    User,
    Model,
}

/// The prefix of the ids this provider makes up for calls that came
/// without one (the API added `functionCall.id` late and most models still
/// send none): `gemini_call_{step-unique n}`. Such ids are kept in the
/// journal like any other but never sent back to the API, which then pairs
/// each `functionResponse` with its call by name and order.
pub const SYNTHETIC_ID_PREFIX: &str = "gemini_call_";

/// One message's parts: its text (when not empty), an assistant message's
/// native calls as `functionCall` parts (with the `thoughtSignature` the
/// API sent with them), a tool message as a `functionResponse` part under
/// the call's name (`names` maps ids to names) with the result as
/// `{"output": ...}` or, for an error, `{"error": ...}`.
fn parts(m: &Message, names: &std::collections::HashMap<&str, &str>) -> Vec<Value> {
    if m.role == Role::Tool {
        if let Some(id) = &m.tool_call_id {
            let key = if m.is_error { "error" } else { "output" };
            let mut r = json!({"name": names.get(id.as_str()).copied().unwrap_or(""), "response": {key: m.content}});
            if !id.starts_with(SYNTHETIC_ID_PREFIX) {
                r["id"] = json!(id);
            }
            return vec![json!({"functionResponse": r})];
        }
    }
    let mut out = Vec::new();
    if !m.content.is_empty() {
        out.push(json!({"text": m.content}));
    }
    for c in &m.tool_calls {
        let mut call = json!({"name": c.name, "args": arguments_object(&c.arguments)});
        if !c.id.starts_with(SYNTHETIC_ID_PREFIX) {
            call["id"] = json!(c.id);
        }
        let mut part = json!({"functionCall": call});
        if let Some(sig) = &c.signature {
            part["thoughtSignature"] = json!(sig);
        }
        out.push(part);
    }
    out
}

/// JSON Schema keywords Gemini's `Schema` (an OpenAPI 3.0 subset) has;
/// [`gemini_schema`] drops every other one.
const SCHEMA_KEYWORDS: &[&str] = &[
    "type", "format", "title", "description", "nullable", "enum", "items", "minItems", "maxItems",
    "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern",
    "minimum", "maximum", "anyOf", "default", "example", "propertyOrdering",
];

/// Converts a syscall's JSON Schema to Gemini's `Schema` subset:
/// - `type: [T, "null"]` becomes `type: T, nullable: true`;
/// - `oneOf` becomes `anyOf`, and a string `const: v` becomes `enum: [v]`
///   (of type string);
/// - `enum` is kept only when every value is a string (the API takes
///   string enums only), `format` on strings only when it is `enum` or
///   `date-time` (the API rejects others);
/// - every keyword not in [`SCHEMA_KEYWORDS`] is dropped, notably
///   `additionalProperties`, `$schema`, `$id`, `$ref`/`$defs`/`definitions`,
///   `allOf`, `not`, `if`/`then`/`else`, `patternProperties`,
///   `exclusiveMinimum`/`exclusiveMaximum`, `multipleOf`, `uniqueItems`,
///   `dependentRequired`. The kernel still validates the arguments against
///   the full schema, so what is dropped only loosens what the model is
///   told, never what is accepted.
pub fn gemini_schema(schema: &Value) -> Value {
    let Value::Object(map) = schema else { return schema.clone() };
    let mut out = serde_json::Map::new();
    for (k, v) in map {
        match k.as_str() {
            "type" => match v {
                Value::Array(types) => {
                    let non_null: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
                    if non_null.len() < types.len() {
                        out.insert("nullable".into(), json!(true));
                    }
                    if let Some(t) = non_null.first() {
                        out.insert("type".into(), (*t).clone());
                    }
                }
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            },
            "properties" => {
                let props = v
                    .as_object()
                    .map(|p| p.iter().map(|(n, s)| (n.clone(), gemini_schema(s))).collect())
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" => {
                out.insert(k.clone(), gemini_schema(v));
            }
            "anyOf" | "oneOf" => {
                let alts = v.as_array().map(|a| a.iter().map(gemini_schema).collect()).unwrap_or_default();
                out.insert("anyOf".into(), Value::Array(alts));
            }
            "const" if v.is_string() => {
                out.insert("enum".into(), json!([v]));
                out.entry("type").or_insert_with(|| json!("string"));
            }
            "enum" if v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) => {
                out.insert(k.clone(), v.clone());
            }
            "enum" => {}
            "format" => {
                let string = map.get("type").and_then(Value::as_str) == Some("string");
                if !string || matches!(v.as_str(), Some("enum" | "date-time")) {
                    out.insert(k.clone(), v.clone());
                }
            }
            k2 if SCHEMA_KEYWORDS.contains(&k2) => {
                out.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    Value::Object(out)
}

/// The syscalls as `tools: [{functionDeclarations}]`, each schema
/// converted by [`gemini_schema`].
pub fn tools(specs: &[SyscallSpec]) -> Vec<Value> {
    let decls: Vec<Value> = specs
        .iter()
        .map(|s| json!({"name": s.name, "description": s.description, "parameters": gemini_schema(&s.args_schema)}))
        .collect();
    vec![json!({"functionDeclarations": decls})]
}

/// Leading system messages become `systemInstruction`; later ones are sent as
/// user turns. Consecutive same-role turns are merged (a text-only turn's
/// texts joined by a blank line); tool results are `functionResponse`
/// parts of a user turn.
pub(crate) fn request_body(req: &CompletionRequest) -> Value {
    let (system, rest) = split_system(&req.messages);
    let names: std::collections::HashMap<&str, &str> = rest
        .iter()
        .flat_map(|m| m.tool_calls.iter().map(|c| (c.id.as_str(), c.name.as_str())))
        .collect();
    let mut turns: Vec<(WireRole, Vec<Value>)> = Vec::new();
    for m in rest {
        let role = match m.role {
            Role::Assistant => WireRole::Model,
            Role::User | Role::System | Role::Tool => WireRole::User,
        };
        let mut p = parts(m, &names);
        if p.is_empty() {
            p.push(json!({"text": ""}));
        }
        match turns.last_mut() {
            Some((last, parts)) if *last == role => parts.extend(p),
            _ => turns.push((role, p)),
        }
    }
    let contents: Vec<Value> = turns
        .into_iter()
        .map(|(role, mut parts)| {
            let role = match role {
                WireRole::User => "user",
                WireRole::Model => "model",
            };
            let is_text = |p: &Value| p.as_object().is_some_and(|o| o.len() == 1 && o.contains_key("text"));
            if parts.iter().all(is_text) {
                let texts: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).filter(|t| !t.is_empty()).collect();
                return json!({"role": role, "parts": [{"text": texts.join("\n\n")}]});
            }
            parts.retain(|p| !(is_text(p) && p["text"] == ""));
            // Stable: function responses first, in their order, then the rest.
            parts.sort_by_key(|p| p.get("functionResponse").is_none());
            json!({"role": role, "parts": parts})
        })
        .collect();
    let mut body = json!({"contents": contents});
    if let Some(system) = system {
        body["systemInstruction"] = json!({"parts": [{"text": system}]});
    }
    if req.tools && !req.syscalls.is_empty() {
        body["tools"] = Value::Array(tools(&req.syscalls));
    }
    let mut gen = serde_json::Map::new();
    if let Some(max) = req.max_tokens {
        gen.insert("maxOutputTokens".into(), json!(max));
    }
    if let Some(t) = req.temperature {
        gen.insert("temperature".into(), json!(t));
    }
    if !gen.is_empty() {
        body["generationConfig"] = Value::Object(gen);
    }
    body
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    prompt_feedback: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
struct Part {
    #[serde(default)]
    text: Option<String>,
    /// Thinking models mark their thought summaries; those are not the reply.
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default, rename = "functionCall")]
    function_call: Option<WireFunctionCall>,
    /// Gemini 3 models sign their calls and refuse a history without the signature.
    #[serde(default, rename = "thoughtSignature")]
    thought_signature: Option<String>,
}

#[derive(Deserialize)]
struct WireFunctionCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    args: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: Option<u64>,
    #[serde(default)]
    candidates_token_count: Option<u64>,
    /// Billed as output by thinking models.
    #[serde(default)]
    thoughts_token_count: Option<u64>,
    /// The part of `promptTokenCount` served from a cache (implicit or explicit).
    #[serde(default)]
    cached_content_token_count: Option<u64>,
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
    let resp: GenerateResponse = serde_json::from_value(value)
        .map_err(|e| bad(format!("unexpected JSON shape ({e}): {snip}")))?;
    let Some(candidate) = resp.candidates.into_iter().next() else {
        let reason = resp
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.get("blockReason"))
            .and_then(Value::as_str)
            .map(|r| format!("the prompt was blocked ({r})"))
            .unwrap_or_else(|| format!("no candidates in the response: {snip}"));
        return Err(bad(reason));
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for p in candidate.content.map(|c| c.parts).unwrap_or_default() {
        if let Some(f) = p.function_call {
            let n = calls.len();
            calls.push(ToolCall {
                id: f.id.filter(|s| !s.is_empty()).unwrap_or_else(|| format!("{SYNTHETIC_ID_PREFIX}{n}")),
                name: f.name.unwrap_or_default(),
                arguments: match f.args {
                    None | Some(Value::Null) => String::new(),
                    Some(v) => v.to_string(),
                },
                signature: p.thought_signature,
            });
        } else if p.thought != Some(true) {
            text.push_str(p.text.as_deref().unwrap_or(""));
        }
    }
    let truncated = candidate.finish_reason.as_deref() == Some("MAX_TOKENS");
    // Gemini omits candidatesTokenCount when nothing was generated.
    let usage = match resp.usage_metadata {
        Some(u)
            if u.prompt_token_count.is_some()
                && (u.candidates_token_count.is_some()
                    || u.thoughts_token_count.is_some()
                    || text.is_empty()) =>
        {
            Usage {
                prompt_tokens: u.prompt_token_count.unwrap_or(0),
                completion_tokens: u.candidates_token_count.unwrap_or(0)
                    + u.thoughts_token_count.unwrap_or(0),
                estimated: false,
                cached_prompt_tokens: u.cached_content_token_count.unwrap_or(0),
                cache_write_tokens: 0,
            }
        }
        Some(u) if u.prompt_token_count.is_some() || u.candidates_token_count.is_some() => Usage {
            prompt_tokens: u
                .prompt_token_count
                .unwrap_or_else(|| estimate_prompt_tokens(&req.messages)),
            completion_tokens: u
                .candidates_token_count
                .unwrap_or_else(|| estimate_tokens(&text)),
            estimated: true,
            cached_prompt_tokens: u.cached_content_token_count.unwrap_or(0),
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

/// A streamed reply being put together from its chunks, each a
/// `GenerateContentResponse`: the parts of `candidates[0].content` in
/// order (text pieces joined, `functionCall` parts whole), the last
/// `finishReason` and `usageMetadata`. The stream has no closing event.
#[derive(Default)]
struct StreamState {
    parts: Vec<Value>,
    finish_reason: Option<Value>,
    usage: Option<Value>,
    prompt_feedback: Option<Value>,
    /// The prompt was blocked (no candidates will come).
    blocked: bool,
}

impl StreamState {
    fn feed(&mut self, data: &str, sink: &Option<crate::TextSink>) -> Result<bool, ProviderError> {
        let v: Value = serde_json::from_str(data).map_err(|e| ProviderError::BadResponse {
            provider: NAME.to_string(),
            detail: format!("invalid JSON in a stream chunk ({e}): {}", snippet(data)),
        })?;
        if let Some(err) = v.get("error") {
            return Err(ProviderError::Api {
                provider: NAME.to_string(),
                status: 200,
                detail: GeminiErrors.detail(200, &json!({"error": err}).to_string()),
            });
        }
        if let Some(u) = v.get("usageMetadata") {
            self.usage = Some(u.clone());
        }
        if let Some(f) = v.get("promptFeedback") {
            self.blocked |= f.get("blockReason").is_some();
            self.prompt_feedback = Some(f.clone());
        }
        let Some(c) = v["candidates"].as_array().and_then(|c| c.first()) else { return Ok(false) };
        for p in c["content"]["parts"].as_array().into_iter().flatten() {
            let plain_text = p.get("text").and_then(Value::as_str).filter(|_| p.as_object().is_some_and(|o| o.len() == 1));
            match (plain_text, self.parts.last_mut()) {
                (Some(t), Some(last)) if last.as_object().is_some_and(|o| o.len() == 1 && o.contains_key("text")) => {
                    let joined = format!("{}{t}", last["text"].as_str().unwrap_or(""));
                    last["text"] = json!(joined);
                }
                _ => self.parts.push(p.clone()),
            }
            if p.get("thought") != Some(&json!(true)) {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    crate::TextSink::send(sink, t);
                }
            }
        }
        if let Some(f) = c.get("finishReason").filter(|f| !f.is_null()) {
            self.finish_reason = Some(f.clone());
        }
        Ok(false)
    }

    /// The reply as a non-streamed response, for [`parse_response`].
    fn into_response(self) -> Value {
        let mut v = json!({});
        if self.finish_reason.is_some() || !self.parts.is_empty() {
            v["candidates"] = json!([{"content": {"role": "model", "parts": self.parts}, "finishReason": self.finish_reason, "index": 0}]);
        }
        if let Some(u) = self.usage {
            v["usageMetadata"] = u;
        }
        if let Some(f) = self.prompt_feedback {
            v["promptFeedback"] = f;
        }
        v
    }
}

/// `{"error":{"code","message","status","details":[{"reason":...}]}}`.
struct GeminiErrors;

fn error_fields(body: &str) -> Option<(String, Option<String>, bool)> {
    let v: Value = serde_json::from_str(body).ok()?;
    let err = v.get("error")?;
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let status = err
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_string);
    let key_invalid = err
        .get("details")
        .and_then(Value::as_array)
        .is_some_and(|d| {
            d.iter()
                .any(|x| x.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        });
    Some((message, status, key_invalid))
}

impl WireErrors for GeminiErrors {
    fn detail(&self, status: u16, body: &str) -> String {
        match error_fields(body) {
            Some((msg, st, _)) if !msg.is_empty() => match st {
                Some(st) => format!("{msg} [{st}]"),
                None => msg,
            },
            _ if body.trim().is_empty() => format!("HTTP {status} with an empty body"),
            _ => snippet(body),
        }
    }

    fn classify(&self, status: u16, body: &str, model: &str) -> ProviderError {
        let detail = self.detail(status, body);
        let fields = error_fields(body);
        if let Some((msg, _, _)) = fields.as_ref().filter(|(m, _, _)| m.contains("exceeds the maximum number of tokens")) {
            // 400 INVALID_ARGUMENT "The input token count (1200000) exceeds the
            // maximum number of tokens allowed (1048576)."
            return ProviderError::ContextOverflow {
                provider: NAME.to_string(),
                prompt_tokens: crate::number_after(msg, "token count ("),
                limit: crate::number_after(msg, "tokens allowed ("),
            };
        }
        let key_invalid = fields
            .as_ref()
            .is_some_and(|(msg, _, invalid)| *invalid || msg.contains("API key not valid"));
        let st = fields.and_then(|(_, st, _)| st);
        if status == 401 || status == 403 || key_invalid || st.as_deref() == Some("UNAUTHENTICATED")
        {
            return ProviderError::Unauthorized {
                provider: NAME.to_string(),
                status,
                detail,
            };
        }
        if status == 404 || st.as_deref() == Some("NOT_FOUND") {
            return ProviderError::UnknownModel {
                provider: NAME.to_string(),
                model: model.to_string(),
                detail: format!("{detail} (check the model name, e.g. gemini-2.5-flash)"),
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
impl Provider for GeminiProvider {
    fn name(&self) -> &str {
        NAME
    }

    async fn complete(&self, req: CompletionRequest) -> Result<Completion, ProviderError> {
        let key = read_api_key(&self.api_key_env, true)?.unwrap_or_default();
        let headers = [("x-goog-api-key", key)];
        let body = request_body(&req);
        if !self.stream {
            let url = self.endpoint(&req.model);
            let value = self
                .http
                .post_json(&url, &headers, &body, &req.model, &GeminiErrors)
                .await?;
            return parse_response(value, &req);
        }
        let url = self.stream_endpoint(&req.model);
        let mut st = StreamState::default();
        let sink = req.on_text.clone();
        let end = self
            .http
            .post_sse(&url, &headers, &body, &req.model, &GeminiErrors, &mut |ev| st.feed(&ev.data, &sink))
            .await?;
        match end {
            Streamed::Whole(value) => parse_response(value, &req),
            // The stream has no closing event: it is whole when a finish reason came.
            Streamed::Ended | Streamed::Stopped if st.finish_reason.is_some() || st.blocked => {
                parse_response(st.into_response(), &req)
            }
            Streamed::Ended | Streamed::Stopped => Err(self.http.cut(&url)),
        }
    }

    fn supports_tools(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let req = CompletionRequest {
            model: "m".into(),
            messages: vec![
                Message::new(Role::System, "sys"),
                Message::new(Role::User, "a"),
                Message::new(Role::User, "b"),
                Message::new(Role::Assistant, "c"),
                Message::new(Role::System, "note"),
            ],
            max_tokens: Some(5),
            ..Default::default()
        };
        let b = request_body(&req);
        assert_eq!(b["systemInstruction"]["parts"][0]["text"], "sys");
        assert_eq!(b["contents"][0]["role"], "user");
        assert_eq!(b["contents"][0]["parts"][0]["text"], "a\n\nb");
        assert_eq!(b["contents"][1]["role"], "model");
        assert_eq!(b["contents"][2]["role"], "user");
        assert_eq!(b["contents"][2]["parts"][0]["text"], "note");
        assert_eq!(b["generationConfig"]["maxOutputTokens"], 5);
        assert!(b["generationConfig"].get("temperature").is_none());
    }

    #[test]
    fn api_key_invalid_is_unauthorized() {
        let body = r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#;
        assert!(matches!(
            GeminiErrors.classify(400, body, "m"),
            ProviderError::Unauthorized { status: 400, .. }
        ));
        let other = r#"{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}"#;
        assert!(matches!(
            GeminiErrors.classify(400, other, "m"),
            ProviderError::Api { status: 400, .. }
        ));
    }
}
