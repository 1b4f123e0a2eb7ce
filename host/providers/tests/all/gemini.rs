use aos_providers::{ProviderError, Usage};
use serde_json::{json, Value};

use crate::common::*;
use crate::shared::{ErrKind, Wire};

pub struct Gemini;

impl Wire for Gemini {
    const PROVIDER: &'static str = "gemini";
    fn path(model: &str) -> String {
        format!("/v1beta/models/{model}:generateContent")
    }
    fn ok(text: &str, truncated: bool, usage: Option<(u64, u64)>) -> Value {
        let mut v = json!({
            "candidates": [{
                "content": {"parts": [{"text": text}], "role": "model"},
                "finishReason": if truncated { "MAX_TOKENS" } else { "STOP" },
                "index": 0
            }],
            "modelVersion": "gemini-test",
            "responseId": "abc"
        });
        if let Some((p, c)) = usage {
            v["usageMetadata"] =
                json!({"promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": p + c});
        }
        v
    }
    fn error(status: u16, kind: ErrKind, message: &str) -> Value {
        let st = match kind {
            ErrKind::NotFound => "NOT_FOUND",
            ErrKind::Auth => "UNAUTHENTICATED",
            ErrKind::RateLimit => "RESOURCE_EXHAUSTED",
            ErrKind::Overloaded => "UNAVAILABLE",
            ErrKind::Server => "INTERNAL",
            ErrKind::BadRequest => "INVALID_ARGUMENT",
        };
        json!({"error": {"code": status, "message": message, "status": st}})
    }
    fn auth(key: &str) -> (&'static str, String) {
        ("x-goog-api-key", key.to_string())
    }
}

crate::shared_tests!(
    Gemini,
    missing_key_base = "http://127.0.0.1:9",
    overloaded_status = 503
);

#[tokio::test]
async fn request_body_shape() {
    let server = TestServer::start(vec![Reply::json(
        200,
        Gemini::ok("fine", false, Some((40, 2))),
    )])
    .await;
    let (var, key) = fresh_key();
    let c = provider("gemini", &server.url, &var)
        .complete(conversation("gemini-2.5-flash"))
        .await
        .unwrap();
    assert_eq!(
        c.usage,
        Usage {
            prompt_tokens: 40,
            completion_tokens: 2,
            estimated: false,
            ..Default::default()
        }
    );
    let r = &server.requests()[0];
    assert_eq!(r.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert!(!r.path.contains(&key), "key must not be in the URL");
    let b = &r.body;
    assert_eq!(
        b["systemInstruction"],
        json!({"parts": [{"text": "You are a test."}]})
    );
    assert_eq!(
        b["contents"],
        json!([
            {"role": "user", "parts": [{"text": "first\n\nsecond"}]},
            {"role": "model", "parts": [{"text": "ok"}]},
            {"role": "user", "parts": [{"text": "go on"}]},
        ])
    );
    assert_eq!(b["generationConfig"]["maxOutputTokens"], 77);
    assert_eq!(b["generationConfig"]["temperature"], 0.5);
    assert!(b.get("model").is_none());
}

#[tokio::test]
async fn models_prefix_is_accepted() {
    let server =
        TestServer::start(vec![Reply::json(200, Gemini::ok("x", false, Some((1, 1))))]).await;
    let (var, _) = fresh_key();
    provider("gemini", &server.url, &var)
        .complete(simple("models/gemini-pro"))
        .await
        .unwrap();
    assert_eq!(
        server.requests()[0].path,
        "/v1beta/models/gemini-pro:generateContent"
    );
}

#[tokio::test]
async fn parts_are_joined_and_thoughts_skipped() {
    let body = json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "thinking...", "thought": true},
            {"text": "Hello, "},
            {"text": "world"}
        ]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 4, "thoughtsTokenCount": 10, "totalTokenCount": 23}
    });
    let server = TestServer::start(vec![Reply::json(200, body)]).await;
    let (var, _) = fresh_key();
    let c = provider("gemini", &server.url, &var)
        .complete(simple("m"))
        .await
        .unwrap();
    assert_eq!(c.text, "Hello, world");
    assert_eq!(
        c.usage,
        Usage {
            prompt_tokens: 9,
            completion_tokens: 14,
            estimated: false,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn invalid_api_key_400_is_unauthorized() {
    let body = json!({"error": {
        "code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                     "domain": "googleapis.com"}]
    }});
    let server = TestServer::start(vec![Reply::json(400, body)]).await;
    let (var, _) = fresh_key();
    let err = provider("gemini", &server.url, &var)
        .complete(simple("m"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Unauthorized { status: 400, .. }),
        "{err:?}"
    );
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn permission_denied_403_is_unauthorized() {
    let server = TestServer::start(vec![Reply::json(
        403,
        json!({"error": {"code": 403, "message": "Permission denied", "status": "PERMISSION_DENIED"}}),
    )])
    .await;
    let (var, _) = fresh_key();
    let err = provider("gemini", &server.url, &var)
        .complete(simple("m"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Unauthorized { status: 403, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn blocked_prompt_is_reported() {
    let server = TestServer::start(vec![Reply::json(
        200,
        json!({"promptFeedback": {"blockReason": "SAFETY"}}),
    )])
    .await;
    let (var, _) = fresh_key();
    let err = provider("gemini", &server.url, &var)
        .complete(simple("m"))
        .await
        .unwrap_err();
    match err {
        ProviderError::BadResponse { detail, .. } => assert!(detail.contains("SAFETY"), "{detail}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn too_many_input_tokens_is_context_overflow() {
    let body = json!({"error": {
        "code": 400,
        "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
        "status": "INVALID_ARGUMENT"
    }});
    let server = TestServer::start(vec![Reply::json(400, body)]).await;
    let (var, _) = fresh_key();
    let err = provider("gemini", &server.url, &var)
        .complete(simple("m"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::ContextOverflow { provider: "gemini".into(), prompt_tokens: 1_200_000, limit: 1_048_576 }
    );
    assert_eq!(server.hits(), 1);
}

// Native tool calls. Bodies from
// https://ai.google.dev/gemini-api/docs/function-calling (REST: `tools:
// [{functionDeclarations: [{name, description, parameters}]}]`; a reply's
// `functionCall {name, args}` parts, several for parallel calls — the
// documented party example: power_disco_ball, start_music, dim_lights;
// results as `functionResponse {name, response}` parts of a user turn) and
// https://ai.google.dev/gemini-api/docs/thought-signatures (`thoughtSignature`
// on a functionCall part, to be sent back with it).

#[tokio::test]
async fn documented_parallel_function_calls_get_consistent_ids() {
    let body = json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "Let's party."},
            {"functionCall": {"name": "power_disco_ball", "args": {"power": true}}, "thoughtSignature": "c2lnLTE="},
            {"functionCall": {"name": "start_music", "args": {"energetic": true, "loud": true}}},
            {"functionCall": {"id": "fc-7", "name": "dim_lights", "args": {"brightness": 0.5}}}
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 20, "totalTokenCount": 30}
    });
    let server = TestServer::start(vec![Reply::json(200, body)]).await;
    let (var, _) = fresh_key();
    let p = provider("gemini", &server.url, &var);
    assert!(p.supports_tools());
    let c = p.complete(native_history_request("gemini-2.5-flash", ["gemini_call_0", "fc-2"])).await.unwrap();
    assert_eq!(c.text, "Let's party.");
    let calls: Vec<(&str, &str, &str, Option<&str>)> =
        c.tool_calls.iter().map(|t| (t.id.as_str(), t.name.as_str(), t.arguments.as_str(), t.signature.as_deref())).collect();
    assert_eq!(
        calls,
        [
            ("gemini_call_0", "power_disco_ball", r#"{"power":true}"#, Some("c2lnLTE=")),
            ("gemini_call_1", "start_music", r#"{"energetic":true,"loud":true}"#, None),
            ("fc-7", "dim_lights", r#"{"brightness":0.5}"#, None)
        ]
    );
}

#[tokio::test]
async fn native_request_declarations_function_calls_and_responses() {
    let server = TestServer::start(vec![Reply::json(200, Gemini::ok("ok", false, Some((1, 1))))]).await;
    let (var, _) = fresh_key();
    provider("gemini", &server.url, &var)
        .complete(native_history_request("gemini-2.5-flash", ["gemini_call_0", "fc-2"]))
        .await
        .unwrap();
    let b = &server.requests()[0].body;
    let decls = b["tools"][0]["functionDeclarations"].as_array().unwrap();
    assert_eq!(decls.len(), 2);
    // Converted to Gemini's Schema subset.
    assert_eq!(
        decls[0],
        json!({"name": "FS_READ", "description": "FS_READ does things.", "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "minLength": 1},
                "mode": {"type": "string", "nullable": true, "enum": ["a", "b"]},
                "kind": {"enum": ["file"], "type": "string"},
                "url": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["path"]
        }})
    );
    let c = b["contents"].as_array().unwrap();
    let n = c.len();
    assert_eq!(
        c[n - 2],
        json!({"role": "model", "parts": [
            {"text": "Reading both."},
            // A made-up id is not sent; a real one and the signature are.
            {"functionCall": {"name": "FS_READ", "args": {"path": "a"}}},
            {"functionCall": {"id": "fc-2", "name": "FS_LIST", "args": {"_unparsed_arguments": "{\"path\": "}}, "thoughtSignature": "c2ln"}
        ]})
    );
    assert_eq!(
        c[n - 1],
        json!({"role": "user", "parts": [
            {"functionResponse": {"name": "FS_READ", "response": {"output": "[RESULT FS_READ#1] hi"}}},
            {"functionResponse": {"id": "fc-2", "name": "FS_LIST", "response": {"error": "[ERROR FS_LIST#2] invalid call"}}},
            {"text": "[EVENT] later"}
        ]})
    );
    let server = TestServer::start(vec![Reply::json(200, Gemini::ok("ok", false, Some((1, 1))))]).await;
    provider("gemini", &server.url, &var).complete(conversation("m")).await.unwrap();
    assert!(server.requests()[0].body.get("tools").is_none());
}

/// `usageMetadata.cachedContentTokenCount` (part of `promptTokenCount`), as
/// in https://ai.google.dev/api/generate-content#UsageMetadata.
#[tokio::test]
async fn cached_content_tokens_are_read() {
    let mut body = Gemini::ok("hi", false, None);
    body["usageMetadata"] = json!({"promptTokenCount": 2100, "cachedContentTokenCount": 2048, "candidatesTokenCount": 50, "totalTokenCount": 2150,
        "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 2048}]});
    let server = TestServer::start(vec![Reply::json(200, body)]).await;
    let (var, _) = fresh_key();
    let u = provider("gemini", &server.url, &var).complete(simple("m")).await.unwrap().usage;
    assert_eq!(u, Usage { prompt_tokens: 2100, completion_tokens: 50, estimated: false, cached_prompt_tokens: 2048, cache_write_tokens: 0 });
}
