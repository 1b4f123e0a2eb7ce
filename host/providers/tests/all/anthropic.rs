use aos_providers::{Role, Usage};
use serde_json::{json, Value};

use crate::common::*;
use crate::shared::{ErrKind, Wire};

pub struct Anthropic;

impl Wire for Anthropic {
    const PROVIDER: &'static str = "anthropic";
    fn path(_model: &str) -> String {
        "/v1/messages".to_string()
    }
    fn ok(text: &str, truncated: bool, usage: Option<(u64, u64)>) -> Value {
        let mut v = json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [{"type": "text", "text": text}],
            "stop_reason": if truncated { "max_tokens" } else { "end_turn" },
            "stop_sequence": null
        });
        if let Some((p, c)) = usage {
            v["usage"] = json!({"input_tokens": p, "output_tokens": c});
        }
        v
    }
    fn error(_status: u16, kind: ErrKind, message: &str) -> Value {
        let ty = match kind {
            ErrKind::NotFound => "not_found_error",
            ErrKind::Auth => "authentication_error",
            ErrKind::RateLimit => "rate_limit_error",
            ErrKind::Overloaded => "overloaded_error",
            ErrKind::Server => "api_error",
            ErrKind::BadRequest => "invalid_request_error",
        };
        json!({"type": "error", "error": {"type": ty, "message": message}})
    }
    fn auth(key: &str) -> (&'static str, String) {
        ("x-api-key", key.to_string())
    }
}

crate::shared_tests!(
    Anthropic,
    missing_key_base = "http://127.0.0.1:9",
    overloaded_status = 529
);

#[tokio::test]
async fn request_body_shape() {
    let server = TestServer::start(vec![Reply::json(
        200,
        Anthropic::ok("fine", false, Some((40, 2))),
    )])
    .await;
    let (var, _) = fresh_key();
    let c = provider("anthropic", &server.url, &var)
        .complete(conversation("claude-x"))
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
    assert_eq!(
        r.headers.get("anthropic-version").map(String::as_str),
        Some("2023-06-01")
    );
    let b = &r.body;
    assert_eq!(b["model"], "claude-x");
    assert_eq!(b["system"], json!([{"type": "text", "text": "You are a test.", "cache_control": {"type": "ephemeral"}}]));
    assert_eq!(b["max_tokens"], 77);
    assert_eq!(b["temperature"], 0.5);
    assert_eq!(
        b["messages"],
        json!([
            {"role": "user", "content": "first\n\nsecond"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "go on"},
        ])
    );
}

#[tokio::test]
async fn default_max_tokens_and_leading_assistant() {
    let server = TestServer::start(vec![Reply::json(
        200,
        Anthropic::ok("x", false, Some((1, 1))),
    )])
    .await;
    let (var, _) = fresh_key();
    let mut req = simple("claude-x");
    req.messages = vec![msg(Role::Assistant, "I start"), msg(Role::User, "then you")];
    provider("anthropic", &server.url, &var)
        .complete(req)
        .await
        .unwrap();
    let b = &server.requests()[0].body;
    assert_eq!(b["max_tokens"], 1024);
    assert!(b.get("system").is_none());
    assert!(b.get("temperature").is_none());
    let roles: Vec<&str> = b["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
}

#[tokio::test]
async fn only_text_blocks_are_the_reply() {
    let body = json!({
        "id": "msg_02", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Hello, "},
            {"type": "text", "text": "world"}
        ],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 3, "output_tokens": 5, "cache_read_input_tokens": 0}
    });
    let server = TestServer::start(vec![Reply::json(200, body)]).await;
    let (var, _) = fresh_key();
    let c = provider("anthropic", &server.url, &var)
        .complete(simple("m"))
        .await
        .unwrap();
    assert_eq!(c.text, "Hello, world");
    assert_eq!(
        c.usage,
        Usage {
            prompt_tokens: 3,
            completion_tokens: 5,
            estimated: false,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn overloaded_529_then_success() {
    let server = TestServer::start(vec![
        Reply::json(
            529,
            Anthropic::error(529, ErrKind::Overloaded, "Overloaded"),
        ),
        Reply::json(200, Anthropic::ok("back", false, Some((1, 1)))),
    ])
    .await;
    let (var, _) = fresh_key();
    let c = provider("anthropic", &server.url, &var)
        .complete(simple("m"))
        .await
        .unwrap();
    assert_eq!(c.text, "back");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn prompt_too_long_is_context_overflow() {
    let body = Anthropic::error(400, ErrKind::BadRequest, "prompt is too long: 208310 tokens > 200000 maximum");
    let server = TestServer::start(vec![Reply::json(400, body)]).await;
    let (var, _) = fresh_key();
    let err = provider("anthropic", &server.url, &var)
        .complete(simple("claude-test"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        aos_providers::ProviderError::ContextOverflow {
            provider: "anthropic".into(),
            prompt_tokens: 208310,
            limit: 200000
        }
    );
    assert_eq!(server.hits(), 1);
}

// Native tool calls. Bodies from
// https://platform.claude.com/docs/en/agents-and-tools/tool-use/handle-tool-calls
// (a reply with a `text` and a `tool_use` block, `stop_reason: "tool_use"`;
// `tool_result` blocks with `tool_use_id`, `content`, `is_error`) and
// https://platform.claude.com/docs/en/agents-and-tools/tool-use/parallel-tool-use
// (several `tool_use` blocks in one reply).

#[tokio::test]
async fn documented_tool_use_reply_with_text_and_parallel_calls() {
    let body = json!({
        "id": "msg_01Aq9w938a90dw8q", "model": "claude-opus-4-6", "stop_reason": "tool_use", "role": "assistant",
        "type": "message",
        "content": [
            {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"location": "San Francisco, CA", "unit": "celsius"}},
            {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}}
        ],
        "usage": {"input_tokens": 10, "output_tokens": 20}
    });
    let server = TestServer::start(vec![Reply::json(200, body)]).await;
    let (var, _) = fresh_key();
    let p = provider("anthropic", &server.url, &var);
    assert!(p.supports_tools());
    let c = p.complete(native_history_request("claude-x", ["toolu_a", "toolu_b"])).await.unwrap();
    assert_eq!(c.text, "I'll check the current weather in San Francisco for you.");
    let calls: Vec<(&str, &str, &str)> = c.tool_calls.iter().map(|t| (t.id.as_str(), t.name.as_str(), t.arguments.as_str())).collect();
    assert_eq!(
        calls,
        [
            ("toolu_01A09q90qw90lq917835lq9", "get_weather", r#"{"location":"San Francisco, CA","unit":"celsius"}"#),
            ("toolu_02", "get_time", "{}")
        ]
    );
    assert!(!c.truncated);
}

#[tokio::test]
async fn native_request_tools_tool_use_and_tool_result_blocks() {
    let server = TestServer::start(vec![Reply::json(200, Anthropic::ok("ok", false, Some((1, 1))))]).await;
    let (var, _) = fresh_key();
    provider("anthropic", &server.url, &var)
        .complete(native_history_request("claude-x", ["toolu_a", "toolu_b"]))
        .await
        .unwrap();
    let b = &server.requests()[0].body;
    // The JSON Schema goes as it is (the Messages API takes full JSON Schema).
    assert_eq!(b["tools"][0]["name"], "FS_READ");
    assert_eq!(b["tools"][0]["input_schema"], tool_spec("FS_READ").args_schema);
    assert!(b["tools"][0].get("cache_control").is_none());
    assert_eq!(b["tools"][1]["cache_control"], json!({"type": "ephemeral"}));
    assert!(b.get("tool_choice").is_none());
    let m = b["messages"].as_array().unwrap();
    let n = m.len();
    assert_eq!(
        m[n - 2],
        json!({"role": "assistant", "content": [
            {"type": "text", "text": "Reading both."},
            {"type": "tool_use", "id": "toolu_a", "name": "FS_READ", "input": {"path": "a"}},
            // Malformed arguments go back as the text the model sent.
            {"type": "tool_use", "id": "toolu_b", "name": "FS_LIST", "input": {"_unparsed_arguments": "{\"path\": "}}
        ]})
    );
    // Results first, then the text that followed them, in one user turn.
    assert_eq!(
        m[n - 1],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "[RESULT FS_READ#1] hi"},
            {"type": "tool_result", "tool_use_id": "toolu_b", "content": "[ERROR FS_LIST#2] invalid call", "is_error": true},
            {"type": "text", "text": "[EVENT] later"}
        ]})
    );
    // Without `tools` no tool list is sent.
    let server = TestServer::start(vec![Reply::json(200, Anthropic::ok("ok", false, Some((1, 1))))]).await;
    provider("anthropic", &server.url, &var).complete(conversation("m")).await.unwrap();
    assert!(server.requests()[0].body.get("tools").is_none());
}

/// Usage with prompt caching, as in
/// https://platform.claude.com/docs/en/build-with-claude/prompt-caching
/// (`input_tokens` counts only what follows the last breakpoint; cache
/// reads and writes are reported apart).
#[tokio::test]
async fn cached_prompt_tokens_are_read_and_added_to_the_prompt() {
    let mut read = Anthropic::ok("hi", false, None);
    read["usage"] = json!({"input_tokens": 21, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 188086, "output_tokens": 393});
    let mut write = Anthropic::ok("hi", false, None);
    write["usage"] = json!({"input_tokens": 21, "cache_creation_input_tokens": 188086, "cache_read_input_tokens": 0, "output_tokens": 393});
    let server = TestServer::start(vec![Reply::json(200, write), Reply::json(200, read)]).await;
    let (var, _) = fresh_key();
    let p = provider("anthropic", &server.url, &var);
    let u = p.complete(simple("m")).await.unwrap().usage;
    assert_eq!(u, Usage { prompt_tokens: 188107, completion_tokens: 393, estimated: false, cached_prompt_tokens: 0, cache_write_tokens: 188086 });
    let u = p.complete(simple("m")).await.unwrap().usage;
    assert_eq!(u, Usage { prompt_tokens: 188107, completion_tokens: 393, estimated: false, cached_prompt_tokens: 188086, cache_write_tokens: 0 });
}
