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
            estimated: false
        }
    );
    let r = &server.requests()[0];
    assert_eq!(
        r.headers.get("anthropic-version").map(String::as_str),
        Some("2023-06-01")
    );
    let b = &r.body;
    assert_eq!(b["model"], "claude-x");
    assert_eq!(b["system"], "You are a test.");
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
            estimated: false
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
