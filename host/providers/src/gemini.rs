//! Google Gemini (`POST {base}/v1beta/models/{model}:generateContent`): owns
//! the request body (`systemInstruction`, `contents` with roles user/model and
//! consecutive same-role turns merged, `generationConfig`), the response and
//! error-body parsing. The key goes in the `x-goog-api-key` header, never in
//! the URL.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{normalize_base, read_api_key, snippet, HttpClient, HttpSettings, WireErrors};
use crate::{
    estimate_prompt_tokens, estimate_tokens, merge_turns, split_system, Completion,
    CompletionRequest, Provider, ProviderError, Role, Usage,
};

pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";
pub const DEFAULT_API_KEY_ENV: &str = "GEMINI_API_KEY";
const NAME: &str = "gemini";

/// Talks to the Gemini `generateContent` API.
pub struct GeminiProvider {
    http: HttpClient,
    base_url: String,
    api_key_env: String,
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
        })
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

/// Leading system messages become `systemInstruction`; later ones are sent as
/// user turns. Consecutive same-role turns are merged.
pub(crate) fn request_body(req: &CompletionRequest) -> Value {
    let (system, rest) = split_system(&req.messages);
    let turns = merge_turns(rest, |r| match r {
        Role::Assistant => WireRole::Model,
        // Tool results reach these providers only as text (the kernel
        // renders them so in text mode).
        Role::User | Role::System | Role::Tool => WireRole::User,
    });
    let contents: Vec<Value> = turns
        .into_iter()
        .map(|(role, text)| {
            let role = match role {
                WireRole::User => "user",
                WireRole::Model => "model",
            };
            json!({"role": role, "parts": [{"text": text}]})
        })
        .collect();
    let mut body = json!({"contents": contents});
    if let Some(system) = system {
        body["systemInstruction"] = json!({"parts": [{"text": system}]});
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
    let text: String = candidate
        .content
        .map(|c| {
            c.parts
                .into_iter()
                .filter(|p| p.thought != Some(true))
                .filter_map(|p| p.text)
                .collect::<Vec<_>>()
                .join("")
        })
        .unwrap_or_default();
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
        },
        _ => crate::estimated_usage(&req.messages, &text),
    };
    Ok(Completion {
        tool_calls: Vec::new(),
        text,
        usage,
        truncated,
    })
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
        let url = self.endpoint(&req.model);
        let value = self
            .http
            .post_json(&url, &headers, &body, &req.model, &GeminiErrors)
            .await?;
        parse_response(value, &req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

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
