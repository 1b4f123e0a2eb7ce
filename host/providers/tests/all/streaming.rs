//! Streamed replies (server-sent events) for the three HTTP APIs, against a
//! raw loopback HTTP/1.1 server that sends recorded event sequences in
//! chunks (`transfer-encoding: chunked`) and can cut the connection in the
//! middle. Event sequences follow the APIs' documented examples:
//! - OpenAI, https://platform.openai.com/docs/api-reference/chat-streaming
//!   (`chat.completion.chunk` objects, `delta.content`, `delta.tool_calls[]`
//!   with `index` — `id` and `function.name` in the first piece, pieces of
//!   `function.arguments` after —, `finish_reason`, a last chunk with
//!   `usage` when `stream_options.include_usage`, then `data: [DONE]`);
//! - Anthropic, https://platform.claude.com/docs/en/build-with-claude/streaming
//!   (`message_start`, `content_block_start`, `ping`, `content_block_delta`
//!   with `text_delta` / `input_json_delta`, `content_block_stop`,
//!   `message_delta` with `stop_reason` and `usage`, `message_stop`);
//! - Gemini, https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent
//!   (`:streamGenerateContent?alt=sse`, each event a `GenerateContentResponse`
//!   chunk, the last with `finishReason` and `usageMetadata`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_providers::{
    build_provider_with, CompletionRequest, Provider, ProviderConfig, ProviderError, TextSink, Usage,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::shared::Wire as _;

/// A server answering every request with `events` (SSE text, one HTTP
/// chunk each, 5 ms apart), ending the body properly unless `cut`, in which
/// case it drops the connection mid-body. Records (path, JSON body).
async fn sse_server(events: Vec<String>, cut: bool) -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let (events, seen) = (events.clone(), seen2.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head_end, len) = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                            .unwrap_or(0);
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let body = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
                seen.lock().unwrap().push((path, body));
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
                    .await;
                for e in events {
                    let _ = s.write_all(format!("{:x}\r\n{e}\r\n", e.len()).as_bytes()).await;
                    let _ = s.flush().await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                if !cut {
                    let _ = s.write_all(b"0\r\n\r\n").await;
                }
                // Dropping the socket ends the connection (mid-body when cut).
            });
        }
    });
    (url, seen)
}

fn streaming_provider(name: &str, url: &str) -> Arc<dyn Provider> {
    let (var, _) = fresh_key();
    let cfg = ProviderConfig {
        base_url: Some(url.to_string()),
        api_key_env: Some(var),
        stream: Some(true),
        ..ProviderConfig::new(name)
    };
    build_provider_with(&cfg, fast_http()).unwrap()
}

/// A request whose streamed text pieces are collected.
fn collecting(mut r: CompletionRequest) -> (CompletionRequest, Arc<Mutex<Vec<String>>>) {
    let pieces = Arc::new(Mutex::new(Vec::new()));
    let p2 = pieces.clone();
    r.on_text = Some(TextSink::new(move |t| p2.lock().unwrap().push(t.to_string())));
    (r, pieces)
}

fn data(v: Value) -> String {
    format!("data: {v}\n\n")
}

fn named(event: &str, v: Value) -> String {
    format!("event: {event}\ndata: {v}\n\n")
}

fn openai_events() -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        data(json!({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190, "model": "gpt-4o-mini",
                    "system_fingerprint": "fp_44709d6fcb", "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]}))
    };
    vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "Hello"}), Value::Null),
        chunk(json!({"content": " there."}), Value::Null),
        chunk(json!({"tool_calls": [{"index": 0, "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function", "function": {"name": "FS_READ", "arguments": ""}}]}), Value::Null),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"pa"}}]}), Value::Null),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "th\": \"a.txt\"}"}}]}), Value::Null),
        chunk(json!({"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "FS_LIST", "arguments": "{}"}}]}), Value::Null),
        chunk(json!({}), json!("tool_calls")),
        data(json!({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190, "model": "gpt-4o-mini", "choices": [],
                    "usage": {"prompt_tokens": 1200, "completion_tokens": 40, "total_tokens": 1240, "prompt_tokens_details": {"cached_tokens": 1024}}})),
        "data: [DONE]\n\n".to_string(),
    ]
}

#[tokio::test]
async fn openai_streamed_text_and_tool_calls() {
    let (url, seen) = sse_server(openai_events(), false).await;
    let p = streaming_provider("openai", &format!("{url}/v1"));
    let (req, pieces) = collecting(simple("gpt-4o-mini"));
    let c = p.complete(req).await.unwrap();
    assert_eq!(c.text, "Hello there.");
    assert_eq!(*pieces.lock().unwrap(), ["Hello", " there."]);
    let calls: Vec<(&str, &str, &str)> = c.tool_calls.iter().map(|t| (t.id.as_str(), t.name.as_str(), t.arguments.as_str())).collect();
    assert_eq!(calls, [("call_DdmO9pD3xa9XTPNJ32zg2hcA", "FS_READ", r#"{"path": "a.txt"}"#), ("call_2", "FS_LIST", "{}")]);
    assert_eq!(c.usage, Usage { prompt_tokens: 1200, completion_tokens: 40, estimated: false, cached_prompt_tokens: 1024, cache_write_tokens: 0 });
    assert!(!c.truncated);
    let (path, body) = seen.lock().unwrap()[0].clone();
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!((body["stream"].clone(), body["stream_options"].clone()), (json!(true), json!({"include_usage": true})));
}

fn anthropic_events(stop: &str) -> Vec<String> {
    vec![
        named("message_start", json!({"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant",
            "content": [], "model": "claude-sonnet-4-5", "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 25, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1500, "output_tokens": 1}}})),
        named("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
        named("ping", json!({"type": "ping"})),
        named("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Okay, let's"}})),
        named("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " check."}})),
        named("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        named("content_block_start", json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "FS_READ", "input": {}}})),
        named("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}})),
        named("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"path\": \"a"}})),
        named("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ".txt\"}"}})),
        named("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
        named("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 89}})),
        named("message_stop", json!({"type": "message_stop"})),
    ]
}

#[tokio::test]
async fn anthropic_streamed_text_tool_use_and_usage() {
    let (url, seen) = sse_server(anthropic_events("tool_use"), false).await;
    let p = streaming_provider("anthropic", &url);
    let (req, pieces) = collecting(simple("claude-sonnet-4-5"));
    let c = p.complete(req).await.unwrap();
    assert_eq!(c.text, "Okay, let's check.");
    assert_eq!(*pieces.lock().unwrap(), ["Okay, let's", " check."]);
    assert_eq!(c.tool_calls.len(), 1);
    assert_eq!((c.tool_calls[0].id.as_str(), c.tool_calls[0].arguments.as_str()), ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", r#"{"path":"a.txt"}"#));
    assert_eq!(c.usage, Usage { prompt_tokens: 1525, completion_tokens: 89, estimated: false, cached_prompt_tokens: 1500, cache_write_tokens: 0 });
    assert!(!c.truncated);
    assert_eq!(seen.lock().unwrap()[0].1["stream"], true);
    // A reply cut by max_tokens is reported as truncated, as without streaming.
    let (url, _) = sse_server(anthropic_events("max_tokens"), false).await;
    let c = streaming_provider("anthropic", &url).complete(simple("m")).await.unwrap();
    assert!(c.truncated);
}

#[tokio::test]
async fn anthropic_error_event_mid_stream() {
    let mut events = anthropic_events("end_turn")[..4].to_vec();
    events.push(named("error", json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})));
    let (url, _) = sse_server(events, false).await;
    let e = streaming_provider("anthropic", &url).complete(simple("m")).await.unwrap_err();
    assert!(matches!(e, ProviderError::Overloaded { .. }), "{e:?}");
}

fn gemini_events() -> Vec<String> {
    vec![
        data(json!({"candidates": [{"content": {"parts": [{"text": "The file"}], "role": "model"}, "index": 0}],
                    "usageMetadata": {"promptTokenCount": 900, "totalTokenCount": 900}, "modelVersion": "gemini-2.5-flash"})),
        data(json!({"candidates": [{"content": {"parts": [{"text": " next."}], "role": "model"}, "index": 0}], "modelVersion": "gemini-2.5-flash"})),
        data(json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "FS_READ", "args": {"path": "a.txt"}}, "thoughtSignature": "c2ln"}], "role": "model"},
                    "finishReason": "STOP", "index": 0}],
                    "usageMetadata": {"promptTokenCount": 900, "cachedContentTokenCount": 512, "candidatesTokenCount": 12, "totalTokenCount": 912},
                    "modelVersion": "gemini-2.5-flash"})),
    ]
}

#[tokio::test]
async fn gemini_streamed_text_function_call_and_usage() {
    let (url, seen) = sse_server(gemini_events(), false).await;
    let p = streaming_provider("gemini", &url);
    let (req, pieces) = collecting(simple("gemini-2.5-flash"));
    let c = p.complete(req).await.unwrap();
    assert_eq!(c.text, "The file next.");
    assert_eq!(*pieces.lock().unwrap(), ["The file", " next."]);
    let t = &c.tool_calls[0];
    assert_eq!((t.id.as_str(), t.name.as_str(), t.arguments.as_str(), t.signature.as_deref()), ("gemini_call_0", "FS_READ", r#"{"path":"a.txt"}"#, Some("c2ln")));
    assert_eq!(c.usage, Usage { prompt_tokens: 900, completion_tokens: 12, estimated: false, cached_prompt_tokens: 512, cache_write_tokens: 0 });
    assert_eq!(seen.lock().unwrap()[0].0, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
}

/// A connection cut in the middle of the body, or a stream that ends
/// before the reply is complete, is the same "connection lost" error as a
/// non-streamed reply cut while being read; the pieces already shown stay
/// shown, nothing is returned as a reply.
#[tokio::test]
async fn a_cut_stream_is_a_lost_connection() {
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        ("openai", "/v1".into(), openai_events()[..5].to_vec()),
        ("anthropic", String::new(), anthropic_events("end_turn")[..5].to_vec()),
        ("gemini", String::new(), gemini_events()[..2].to_vec()),
    ];
    for (name, suffix, events) in cases {
        for cut in [true, false] {
            let (url, _) = sse_server(events.clone(), cut).await;
            let e = streaming_provider(name, &format!("{url}{suffix}")).complete(simple("m")).await.unwrap_err();
            match &e {
                ProviderError::Unreachable { detail, .. } => assert!(detail.contains("connection lost while streaming"), "{name} cut={cut}: {detail}"),
                other => panic!("{name} cut={cut}: {other:?}"),
            }
        }
    }
}

/// A server that ignores `stream: true` and answers one JSON body is read as such.
#[tokio::test]
async fn a_whole_json_answer_to_a_stream_request_is_accepted() {
    let server = TestServer::start(vec![Reply::json(200, crate::openai::OpenAi::ok("whole", false, Some((3, 1))))]).await;
    let p = streaming_provider("openai", &format!("{}/v1", server.url));
    assert_eq!(p.complete(simple("m")).await.unwrap().text, "whole");
}
