use std::time::{Duration, Instant};

use aos_providers::{HttpSettings, ProviderError, Usage};
use serde_json::{json, Value};

use crate::common::*;
use crate::shared::{ErrKind, Wire};

pub struct OpenAi;

impl Wire for OpenAi {
    const PROVIDER: &'static str = "openai";
    /// The shared tests give the server's root as the base URL.
    fn path(_model: &str) -> String {
        "/chat/completions".to_string()
    }
    fn ok(text: &str, truncated: bool, usage: Option<(u64, u64)>) -> Value {
        let mut v = json!({
            "id": "chatcmpl-123", "object": "chat.completion", "created": 1_700_000_000, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": null, "finish_reason": if truncated { "length" } else { "stop" }}],
        });
        if let Some((p, c)) = usage {
            v["usage"] = json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c});
        }
        v
    }
    fn error(_status: u16, kind: ErrKind, message: &str) -> Value {
        let (ty, code) = match kind {
            ErrKind::NotFound => ("invalid_request_error", json!("model_not_found")),
            ErrKind::Auth => ("invalid_request_error", json!("invalid_api_key")),
            ErrKind::RateLimit => ("requests", json!("rate_limit_exceeded")),
            ErrKind::Overloaded | ErrKind::Server => ("server_error", Value::Null),
            ErrKind::BadRequest => ("invalid_request_error", Value::Null),
        };
        json!({"error": {"message": message, "type": ty, "param": null, "code": code}})
    }
    fn auth(key: &str) -> (&'static str, String) {
        ("authorization", format!("Bearer {key}"))
    }
}

crate::shared_tests!(
    OpenAi,
    missing_key_base = "https://api.openai.com/v1",
    overloaded_status = 503
);

/// A base URL with the usual `/v1` suffix.
fn v1(url: &str) -> String {
    format!("{url}/v1")
}

#[tokio::test]
async fn request_body_shape() {
    let server = TestServer::start(vec![Reply::json(
        200,
        OpenAi::ok("fine", false, Some((40, 2))),
    )])
    .await;
    let (var, _) = fresh_key();
    let p = provider("openai", &v1(&server.url), &var);
    let c = p.complete(conversation("llama3.2")).await.unwrap();
    assert_eq!(
        c.usage,
        Usage {
            prompt_tokens: 40,
            completion_tokens: 2,
            estimated: false,
            ..Default::default()
        }
    );
    let reqs = server.requests();
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    let b = &reqs[0].body;
    assert_eq!(b["model"], "llama3.2");
    assert_eq!(b["max_tokens"], 77);
    assert!(b.get("max_completion_tokens").is_none());
    assert_eq!(b["temperature"], 0.5);
    assert_eq!(b["stream"], false);
    let roles: Vec<&str> = b["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "user", "assistant", "user"]);
    assert_eq!(b["messages"][0]["content"], "You are a test.");
    assert_eq!(b["messages"][4]["content"], "go on");
}

#[tokio::test]
async fn local_server_needs_no_key() {
    let server = TestServer::start(vec![Reply::json(
        200,
        OpenAi::ok("hi", false, Some((1, 1))),
    )])
    .await;
    let var = unset_key_var();
    let c = provider("openai", &v1(&server.url), &var)
        .complete(simple("m"))
        .await
        .unwrap();
    assert_eq!(c.text, "hi");
    assert!(!server.requests()[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn model_not_found_code_on_400() {
    let body = OpenAi::error(400, ErrKind::NotFound, "The model `gpt-9` does not exist");
    let server = TestServer::start(vec![Reply::json(400, body)]).await;
    let (var, _) = fresh_key();
    let err = provider("openai", &v1(&server.url), &var)
        .complete(simple("gpt-9"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::UnknownModel { model, .. } if model == "gpt-9"),
        "{err:?}"
    );
}

#[tokio::test]
async fn ollama_style_error_string() {
    let server = TestServer::start(vec![Reply::json(
        404,
        json!({"error": "model \"qwen9\" not found, try pulling it first"}),
    )])
    .await;
    let err = provider("openai", &v1(&server.url), &unset_key_var())
        .complete(simple("qwen9"))
        .await
        .unwrap_err();
    match err {
        ProviderError::UnknownModel { model, detail, .. } => {
            assert_eq!(model, "qwen9");
            assert!(detail.contains("try pulling it first"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = TestServer::start(vec![
        Reply::json(429, OpenAi::error(429, ErrKind::RateLimit, "slow")).header("retry-after", "1"),
        Reply::json(200, OpenAi::ok("ok", false, Some((1, 1)))),
    ])
    .await;
    let (var, _) = fresh_key();
    let http = HttpSettings {
        backoff_cap: Duration::from_secs(5),
        ..fast_http()
    };
    let start = Instant::now();
    let c = provider_with("openai", &v1(&server.url), &var, http)
        .complete(simple("m"))
        .await
        .unwrap();
    assert_eq!(c.text, "ok");
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "waited only {:?}",
        start.elapsed()
    );
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn null_content_and_no_choices() {
    let mut body = OpenAi::ok("x", false, Some((1, 0)));
    body["choices"][0]["message"]["content"] = Value::Null;
    let server = TestServer::start(vec![
        Reply::json(200, body),
        Reply::json(200, json!({"choices": []})),
    ])
    .await;
    let p = provider("openai", &v1(&server.url), &unset_key_var());
    assert_eq!(p.complete(simple("m")).await.unwrap().text, "");
    let err = p.complete(simple("m")).await.unwrap_err();
    assert!(matches!(err, ProviderError::BadResponse { .. }), "{err:?}");
}

#[tokio::test]
async fn insufficient_quota_is_not_retried() {
    let body = json!({"error": {"message": "You exceeded your current quota.", "type": "insufficient_quota",
                                "param": null, "code": "insufficient_quota"}});
    let server = TestServer::start(vec![Reply::json(429, body)]).await;
    let (var, _) = fresh_key();
    let err = provider("openai", &server.url, &var)
        .complete(simple("m"))
        .await
        .unwrap_err();
    assert_eq!(server.hits(), 1);
    match err {
        ProviderError::Api {
            status: 429,
            detail,
            ..
        } => assert!(detail.contains("billing"), "{detail}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn context_length_exceeded_is_context_overflow() {
    let body = json!({"error": {
        "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9021 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"
    }});
    let server = TestServer::start(vec![Reply::json(400, body)]).await;
    let (var, _) = fresh_key();
    let err = provider("openai", &v1(&server.url), &var)
        .complete(simple("gpt-4"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::ContextOverflow { provider: "openai".into(), prompt_tokens: 9021, limit: 8192 }
    );
    assert_eq!(server.hits(), 1, "an overflow is not retried");
}

// Native tool calls. Bodies follow the API reference
// (https://platform.openai.com/docs/api-reference/chat/create: `tools[]`
// of `{type: "function", function: {name, description, parameters}}`,
// `tool_choice`, assistant messages with `tool_calls`, `role: "tool"`
// messages with `tool_call_id`; the chat completion object's
// `message.tool_calls[]` with `id`, `type`, `function.{name, arguments}`).

fn spec(name: &str) -> aos_providers::SyscallSpec {
    aos_providers::SyscallSpec {
        name: name.into(),
        description: format!("{name} does things."),
        args_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"], "additionalProperties": false}),
    }
}

fn native_request() -> aos_providers::CompletionRequest {
    use aos_providers::{Message, Role, ToolCall};
    let mut r = conversation("gpt-4o");
    r.syscalls = vec![spec("FS_READ"), spec("FS_LIST")].into();
    r.tools = true;
    r.messages.push(Message {
        role: Role::Assistant,
        content: String::new(),
        tool_calls: vec![
            ToolCall { id: "call_1".into(), name: "FS_READ".into(), arguments: r#"{"path":"a"}"#.into(), signature: None },
            ToolCall { id: "call_2".into(), name: "FS_LIST".into(), arguments: "{}".into(), signature: None },
        ],
        tool_call_id: None,
        is_error: false,
    });
    for id in ["call_1", "call_2"] {
        r.messages.push(Message { role: Role::Tool, content: format!("[RESULT {id}]"), tool_calls: vec![], tool_call_id: Some(id.into()), is_error: false });
    }
    r
}

#[tokio::test]
async fn native_tools_request_and_parallel_tool_calls_response() {
    // The documented example response of a function call, with two calls
    // (parallel tool calls), one of them without an id and with an object
    // for arguments, as some compatible servers send.
    let resp = json!({
        "id": "chatcmpl-abc123", "object": "chat.completion", "created": 1699896916, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_abc123", "type": "function", "function": {"name": "FS_READ", "arguments": "{\n\"path\": \"notes.txt\"\n}"}},
            {"type": "function", "function": {"name": "FS_LIST", "arguments": {"path": "."}}}
        ]}, "logprobs": null, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99}
    });
    let server = TestServer::start(vec![Reply::json(200, resp)]).await;
    let (var, _) = fresh_key();
    let p = provider("openai", &v1(&server.url), &var);
    assert!(p.supports_tools());
    let c = p.complete(native_request()).await.unwrap();
    assert_eq!(c.text, "");
    assert_eq!(c.tool_calls.len(), 2);
    assert_eq!((c.tool_calls[0].id.as_str(), c.tool_calls[0].name.as_str()), ("call_abc123", "FS_READ"));
    assert_eq!(c.tool_calls[0].arguments, "{\n\"path\": \"notes.txt\"\n}");
    assert_eq!((c.tool_calls[1].id.as_str(), c.tool_calls[1].arguments.as_str()), ("call_1", r#"{"path":"."}"#));
    let b = &server.requests()[0].body;
    assert_eq!(b["tool_choice"], "auto");
    assert_eq!(b["tools"][0], json!({"type": "function", "function": {"name": "FS_READ", "description": "FS_READ does things.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"], "additionalProperties": false}}}));
    let m = b["messages"].as_array().unwrap();
    let n = m.len();
    assert_eq!(m[n - 3], json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "FS_READ", "arguments": "{\"path\":\"a\"}"}},
        {"id": "call_2", "type": "function", "function": {"name": "FS_LIST", "arguments": "{}"}}]}));
    assert_eq!(m[n - 2], json!({"role": "tool", "tool_call_id": "call_1", "content": "[RESULT call_1]"}));
    assert_eq!(m[n - 1], json!({"role": "tool", "tool_call_id": "call_2", "content": "[RESULT call_2]"}));
    // Without `tools` nothing of it is sent.
    let server = TestServer::start(vec![Reply::json(200, OpenAi::ok("x", false, None))]).await;
    let p = provider("openai", &v1(&server.url), &var);
    p.complete(conversation("m")).await.unwrap();
    let b = &server.requests()[0].body;
    assert!(b.get("tools").is_none() && b.get("tool_choice").is_none());
}

#[tokio::test]
async fn servers_without_tool_calling_are_told_apart() {
    // Ollama, vLLM and llama.cpp server refuse a tool list with these bodies.
    let bodies = [
        json!({"error": "registry.ollama.ai/library/gemma:2b does not support tools"}),
        json!({"object": "error", "message": "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set", "type": "BadRequestError", "param": null, "code": 400}),
        json!({"error": {"code": 500, "message": "tools param requires --jinja flag", "type": "server_error"}}),
    ];
    let (var, _) = fresh_key();
    for (i, body) in bodies.iter().enumerate() {
        let status = 400;
        let server = TestServer::start(vec![Reply::json(status, body.clone())]).await;
        let p = provider("openai", &v1(&server.url), &var);
        let e = p.complete(native_request()).await.unwrap_err();
        assert!(matches!(e, ProviderError::ToolsRejected { .. }), "{i}: {e:?}");
        // The same error without tools sent is an ordinary API error.
        let server = TestServer::start(vec![Reply::json(status, body.clone())]).await;
        let p = provider("openai", &v1(&server.url), &var);
        let e = p.complete(conversation("m")).await.unwrap_err();
        assert!(!matches!(e, ProviderError::ToolsRejected { .. }), "{i}: {e:?}");
    }
}

/// `usage.prompt_tokens_details.cached_tokens` (part of `prompt_tokens`), as
/// in https://platform.openai.com/docs/guides/prompt-caching.
#[tokio::test]
async fn cached_prompt_tokens_are_read() {
    let mut body = OpenAi::ok("hi", false, None);
    body["usage"] = json!({"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920},
        "completion_tokens_details": {"reasoning_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}});
    let server = TestServer::start(vec![Reply::json(200, body)]).await;
    let (var, _) = fresh_key();
    let u = provider("openai", &v1(&server.url), &var).complete(simple("m")).await.unwrap().usage;
    assert_eq!(u, Usage { prompt_tokens: 2006, completion_tokens: 300, estimated: false, cached_prompt_tokens: 1920, cache_write_tokens: 0 });
}
