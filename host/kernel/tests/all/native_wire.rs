//! Native tool calls through the kernel for the Anthropic Messages API and
//! Gemini `generateContent`, against the loopback server of `native.rs`
//! (the real `anthropic` and `gemini` providers). Reply bodies follow the
//! APIs' documented examples:
//! - Anthropic, https://platform.claude.com/docs/en/agents-and-tools/tool-use/handle-tool-calls
//!   (a reply with a `text` block and a `tool_use` block `{id, name, input}`,
//!   `stop_reason: "tool_use"`; results go back as `tool_result` blocks
//!   `{tool_use_id, content, is_error}` in a user turn, before any text);
//! - Gemini, https://ai.google.dev/gemini-api/docs/function-calling
//!   (`candidates[0].content.parts[]` with `functionCall {name, args}` —
//!   and `id` in newer versions — `thoughtSignature` on Gemini 3; results
//!   go back as `functionResponse {name, id?, response}` parts of a user turn).
//!
//! Checked for both: the tool list is the process's resolution, one call,
//! parallel calls with a schema violation and a denied call answered as
//! errors under their ids and corrected on the next step, text + calls in
//! one reply (the text is kept, text-protocol calls in it still run), and a
//! restored process whose history answers every call.

use std::sync::Arc;
use std::time::Duration;

use aos_kernel::{ExitStatus, Kernel, KernelConfig, RestoreRequest, SpawnRequest};
use aos_providers::{AnthropicProvider, GeminiProvider, HttpSettings, Provider, ProviderError};
use serde_json::{json, Value};

use super::native::{server, wait, Server};

const KEY_VAR: &str = "AOS_TEST_NATIVE_WIRE_KEY";

async fn kernel_at(dir: &std::path::Path, url: &str) -> Kernel {
    kernel_streaming(dir, url, false).await
}

async fn kernel_streaming(dir: &std::path::Path, url: &str, stream: bool) -> Kernel {
    std::env::set_var(KEY_VAR, "test-key");
    let url = url.to_string();
    Kernel::new(
        KernelConfig::new(dir),
        vec![crate::support::backend().await],
        Arc::new(move |name: &str, _base: Option<&str>| match name {
            "anthropic" => Ok(Arc::new(AnthropicProvider::new(Some(&url), Some(KEY_VAR), HttpSettings::default())?.with_stream(stream))
                as Arc<dyn Provider>),
            "gemini" => Ok(Arc::new(GeminiProvider::new(Some(&url), Some(KEY_VAR), HttpSettings::default())?)
                as Arc<dyn Provider>),
            other => Err(ProviderError::Other(format!("unknown provider `{other}` in tests"))),
        }),
    )
}

fn spawn_req(k: &Kernel, provider: &str, task: &str, caps: &[&str]) -> SpawnRequest {
    let model = if provider == "gemini" { "gemini-2.5-flash" } else { "claude-sonnet-4-5" };
    SpawnRequest {
        task: task.into(),
        provider: provider.into(),
        model: model.into(),
        caps: k.parse_grants(caps).unwrap(),
        ..Default::default()
    }
}

/// A Messages API reply: an optional text block, then `tool_use` blocks
/// (id, name, input).
fn claude(text: Option<&str>, calls: &[(&str, &str, Value)]) -> (u16, Value) {
    let mut content: Vec<Value> = text.map(|t| json!({"type": "text", "text": t})).into_iter().collect();
    content.extend(calls.iter().map(|(id, name, input)| json!({"type": "tool_use", "id": id, "name": name, "input": input})));
    (
        200,
        json!({
            "id": "msg_01Aq9w938a90dw8q", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": content,
            "stop_reason": if calls.is_empty() { "end_turn" } else { "tool_use" }, "stop_sequence": null,
            "usage": {"input_tokens": 95, "output_tokens": 503, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2000}
        }),
    )
}

/// A `generateContent` reply: an optional text part, then `functionCall`
/// parts (optional id, name, args, optional thoughtSignature).
fn gemini(text: Option<&str>, calls: &[(Option<&str>, &str, Value, Option<&str>)]) -> (u16, Value) {
    let mut parts: Vec<Value> = text.map(|t| json!({"text": t})).into_iter().collect();
    for (id, name, args, sig) in calls {
        let mut call = json!({"name": name, "args": args});
        if let Some(id) = id {
            call["id"] = json!(id);
        }
        let mut part = json!({"functionCall": call});
        if let Some(sig) = sig {
            part["thoughtSignature"] = json!(sig);
        }
        parts.push(part);
    }
    (
        200,
        json!({
            "candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 30, "totalTokenCount": 150},
            "modelVersion": "gemini-2.5-flash"
        }),
    )
}

/// The turns of a request after the task (Anthropic `messages`, Gemini `contents`).
fn history(body: &Value) -> Vec<Value> {
    let turns = body.get("messages").or_else(|| body.get("contents")).unwrap();
    turns.as_array().unwrap()[1..].to_vec()
}

async fn run(s: &Server, provider: &str, task: &str, caps: &[&str]) -> (Kernel, u64, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let k = kernel_at(dir.path(), &s.url).await;
    let pid = k.spawn(spawn_req(&k, provider, task, caps)).await.unwrap();
    (k, pid, dir)
}

#[tokio::test]
async fn anthropic_one_call_with_text_its_tool_list_and_its_result_under_its_id() {
    let s = server(vec![
        claude(Some("I'll write the file."), &[("toolu_01A09q90qw90lq917835lq9", "FS_WRITE", json!({"path": "a.txt", "content": "hi"}))]),
        claude(Some("Done."), &[("toolu_02", "SYS_EXIT", json!({"code": 0, "result": "ok"}))]),
    ])
    .await;
    let (k, pid, _dir) = run(&s, "anthropic", "write hi to a.txt", &["fs:rw"]).await;
    assert_eq!(wait(&k, pid).await, ExitStatus::Exited { code: 0, result: Some("ok".into()) });
    assert_eq!(std::fs::read_to_string(k.info(pid).unwrap().workspace.join("a.txt")).unwrap(), "hi");
    let bodies = s.bodies.lock().clone();
    assert_eq!(bodies.len(), 2);
    // The tool list is the process's resolution, each with its JSON Schema as `input_schema`.
    let tools = bodies[0]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    let expected: Vec<String> = k.available_syscalls(&k.parse_grants(&["fs:rw"]).unwrap()).into_iter().map(|s| s.name).collect();
    assert_eq!(names, expected);
    let fs_write = tools.iter().find(|t| t["name"] == "FS_WRITE").unwrap();
    assert_eq!(fs_write["input_schema"]["required"], json!(["path", "content"]));
    // Prompt caching: a breakpoint on the system prompt and on the last tool.
    assert_eq!(tools.last().unwrap()["cache_control"], json!({"type": "ephemeral"}));
    assert_eq!(bodies[0]["system"][0]["cache_control"], json!({"type": "ephemeral"}));
    assert!(bodies[0]["system"][0]["text"].as_str().unwrap().contains("the tools offered to you"));
    // The reply (text kept) and its result, paired by id.
    let h = history(&bodies[1]);
    assert_eq!(h[0]["role"], "assistant");
    assert_eq!(
        h[0]["content"],
        json!([{"type": "text", "text": "I'll write the file."},
               {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "FS_WRITE", "input": {"path": "a.txt", "content": "hi"}}])
    );
    assert_eq!(h[1]["role"], "user");
    let r = &h[1]["content"][0];
    assert_eq!((r["type"].as_str(), r["tool_use_id"].as_str()), (Some("tool_result"), Some("toolu_01A09q90qw90lq917835lq9")));
    assert!(r["content"].as_str().unwrap().starts_with("[RESULT FS_WRITE#1]"), "{r}");
    assert!(r.get("is_error").is_none(), "{r}");
    let logs = k.logs(pid).unwrap();
    assert!(logs.iter().any(|l| matches!(&l.entry, aos_kernel::Entry::Result { call_id: Some(c), .. } if c == "toolu_01A09q90qw90lq917835lq9")));
    // Cache reads count as prompt tokens and are counted apart.
    let c = k.info(pid).unwrap().counters;
    assert_eq!((c.prompt_tokens, c.cached_prompt_tokens, c.cached_percent()), (2 * 2095, 2 * 2000, Some(95)));
}

#[tokio::test]
async fn anthropic_parallel_calls_errors_as_is_error_results_then_corrected() {
    let s = server(vec![
        claude(
            Some("Writing first. [SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"from text\"}"),
            &[
                ("toolu_c1", "FS_WRITE", json!({"path": "n.txt", "content": "42"})),
                ("toolu_c3", "NET_FETCH", json!({"url": "https://example.com/"})),
                ("toolu_c4", "FS_READ", json!({"path": 7})),
            ],
        ),
        claude(None, &[("toolu_c5", "FS_READ", json!({"path": "n.txt"}))]),
        claude(None, &[("toolu_c6", "SYS_EXIT", json!({}))]),
    ])
    .await;
    let (k, pid, _dir) = run(&s, "anthropic", "x", &["fs:rw"]).await;
    assert_eq!(wait(&k, pid).await, ExitStatus::Exited { code: 0, result: None });
    assert_eq!(k.stdout(pid).unwrap(), ["from text"]);
    let bodies = s.bodies.lock().clone();
    let h = history(&bodies[1]);
    assert_eq!(h[0]["content"].as_array().unwrap().len(), 4, "{:#}", h[0]);
    // One user turn: the three results in call order, then the text call's result.
    assert_eq!(h.len(), 2, "{h:#?}");
    let c = h[1]["content"].as_array().unwrap();
    let result = |i: usize, id: &str, starts: &str, error: bool| {
        assert_eq!((c[i]["type"].as_str(), c[i]["tool_use_id"].as_str()), (Some("tool_result"), Some(id)), "{c:#?}");
        assert!(c[i]["content"].as_str().unwrap().starts_with(starts), "{id}: {}", c[i]);
        assert_eq!(c[i].get("is_error") == Some(&json!(true)), error, "{}", c[i]);
    };
    result(0, "toolu_c1", "[RESULT FS_WRITE#2]", false);
    result(1, "toolu_c3", "[ERROR NET_FETCH#3] denied: capability `net", true);
    result(2, "toolu_c4", "[ERROR FS_READ#4] invalid arguments: FS_READ: field `path` must be string", true);
    assert_eq!(c[3]["type"], "text");
    assert!(c[3]["text"].as_str().unwrap().starts_with("[RESULT SYS_WRITE_STDOUT#1]"), "{}", c[3]);
    // Corrected on the next step.
    let h = history(&bodies[2]);
    let last = &h.last().unwrap()["content"][0];
    assert_eq!(last["tool_use_id"], "toolu_c5");
    assert!(last["content"].as_str().unwrap().contains(r#""content":"42""#), "{last}");
}

/// Runs a process whose first reply is `first` (two calls: RECV_MSG, which
/// blocks, then SYS_WRITE_STDOUT), stops its kernel while RECV_MSG runs,
/// restores it on a new kernel and returns the bodies and the new kernel.
async fn restore_between_call_and_result(provider: &str, first: (u16, Value), then: (u16, Value)) -> (Vec<Value>, Kernel, u64, tempfile::TempDir) {
    let s = server(vec![first, then]).await;
    let dir = tempfile::tempdir().unwrap();
    let a = kernel_at(dir.path(), &s.url).await;
    let pid = a.spawn(spawn_req(&a, provider, "x", &["ipc"])).await.unwrap();
    for _ in 0..2000 {
        if format!("{:?}", a.info(pid).unwrap().status).starts_with("BlockedRecv") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let info = a.info(pid).unwrap();
    let log = a.logs(pid).unwrap();
    a.kill(pid).unwrap();
    let _ = wait(&a, pid).await;
    a.shutdown().await;
    let b = kernel_at(dir.path(), &s.url).await;
    let req = RestoreRequest { log, next_call_id: 1, ..RestoreRequest::new(info) };
    let entries = req.recovery_entries();
    b.restore(req, entries).await.unwrap();
    assert_eq!(wait(&b, pid).await, ExitStatus::Exited { code: 0, result: None });
    let bodies = s.bodies.lock().clone();
    (bodies, b, pid, dir)
}

#[tokio::test]
async fn anthropic_restored_history_has_a_tool_result_for_every_tool_use() {
    let (bodies, b, pid, _dir) = restore_between_call_and_result(
        "anthropic",
        claude(None, &[("toolu_r1", "RECV_MSG", json!({})), ("toolu_r2", "SYS_WRITE_STDOUT", json!({"text": "after"}))]),
        claude(None, &[("toolu_r3", "SYS_EXIT", json!({}))]),
    )
    .await;
    let h = history(&bodies[1]);
    let uses: Vec<&str> = h[0]["content"].as_array().unwrap().iter().filter(|b| b["type"] == "tool_use").map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(uses, ["toolu_r1", "toolu_r2"]);
    let results = h[1]["content"].as_array().unwrap();
    assert_eq!(results[0]["tool_use_id"], "toolu_r1");
    let t = results[0]["content"].as_str().unwrap();
    assert!(t.contains("interrupted") && t.contains("not re-run"), "{t}");
    assert_eq!(results[0]["is_error"], true);
    assert_eq!(results[1]["tool_use_id"], "toolu_r2");
    assert!(results[1]["content"].as_str().unwrap().contains("not run"), "{}", results[1]);
    assert_eq!(results[1]["is_error"], true);
    assert!(b.stdout(pid).unwrap().is_empty(), "SYS_WRITE_STDOUT ran after the restore");
}

#[tokio::test]
async fn gemini_one_call_with_text_declarations_and_function_response() {
    let s = server(vec![
        gemini(Some("Writing it."), &[(None, "FS_WRITE", json!({"path": "a.txt", "content": "hi"}), Some("c2lnLTE="))]),
        gemini(None, &[(None, "SYS_EXIT", json!({"code": 0, "result": "ok"}), None)]),
    ])
    .await;
    let (k, pid, _dir) = run(&s, "gemini", "write hi to a.txt", &["fs:rw"]).await;
    assert_eq!(wait(&k, pid).await, ExitStatus::Exited { code: 0, result: Some("ok".into()) });
    assert_eq!(std::fs::read_to_string(k.info(pid).unwrap().workspace.join("a.txt")).unwrap(), "hi");
    let bodies = s.bodies.lock().clone();
    let decls = bodies[0]["tools"][0]["functionDeclarations"].as_array().unwrap();
    let names: Vec<&str> = decls.iter().map(|t| t["name"].as_str().unwrap()).collect();
    let expected: Vec<String> = k.available_syscalls(&k.parse_grants(&["fs:rw"]).unwrap()).into_iter().map(|s| s.name).collect();
    assert_eq!(names, expected);
    // The schemas are in Gemini's subset: no `additionalProperties` anywhere.
    let fs_write = decls.iter().find(|t| t["name"] == "FS_WRITE").unwrap();
    assert_eq!(fs_write["parameters"]["required"], json!(["path", "content"]));
    assert!(!bodies[0]["tools"].to_string().contains("additionalProperties"));
    let h = history(&bodies[1]);
    assert_eq!(h[0]["role"], "model");
    // A made-up id is not sent back; the signature is.
    assert_eq!(
        h[0]["parts"],
        json!([{"text": "Writing it."},
               {"functionCall": {"name": "FS_WRITE", "args": {"path": "a.txt", "content": "hi"}}, "thoughtSignature": "c2lnLTE="}])
    );
    assert_eq!(h[1]["role"], "user");
    let r = &h[1]["parts"][0]["functionResponse"];
    assert_eq!(r["name"], "FS_WRITE");
    assert!(r.get("id").is_none(), "{r}");
    assert!(r["response"]["output"].as_str().unwrap().starts_with("[RESULT FS_WRITE#1]"), "{r}");
    // The journal keeps the call under a consistent made-up id.
    let logs = k.logs(pid).unwrap();
    assert!(logs.iter().any(|l| matches!(&l.entry, aos_kernel::Entry::Result { call_id: Some(c), .. } if c == "gemini_call_0")), "{logs:#?}");
}

#[tokio::test]
async fn gemini_parallel_calls_errors_under_error_key_then_corrected() {
    let s = server(vec![
        gemini(
            Some("Writing first. [SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"from text\"}"),
            &[
                (Some("fc-1"), "FS_WRITE", json!({"path": "n.txt", "content": "42"}), None),
                (Some("fc-3"), "NET_FETCH", json!({"url": "https://example.com/"}), None),
                (Some("fc-4"), "FS_READ", json!({"path": 7}), None),
            ],
        ),
        gemini(None, &[(None, "FS_READ", json!({"path": "n.txt"}), None)]),
        gemini(None, &[(None, "SYS_EXIT", json!({}), None)]),
    ])
    .await;
    let (k, pid, _dir) = run(&s, "gemini", "x", &["fs:rw"]).await;
    assert_eq!(wait(&k, pid).await, ExitStatus::Exited { code: 0, result: None });
    assert_eq!(k.stdout(pid).unwrap(), ["from text"]);
    let bodies = s.bodies.lock().clone();
    let h = history(&bodies[1]);
    let calls: Vec<&str> = h[0]["parts"].as_array().unwrap().iter().filter_map(|p| p["functionCall"]["id"].as_str()).collect();
    assert_eq!(calls, ["fc-1", "fc-3", "fc-4"]);
    assert_eq!(h.len(), 2, "{h:#?}");
    let p = h[1]["parts"].as_array().unwrap();
    let resp = |i: usize, id: &str, name: &str, key: &str, starts: &str| {
        let r = &p[i]["functionResponse"];
        assert_eq!((r["id"].as_str(), r["name"].as_str()), (Some(id), Some(name)), "{p:#?}");
        assert!(r["response"][key].as_str().unwrap().starts_with(starts), "{r}");
    };
    resp(0, "fc-1", "FS_WRITE", "output", "[RESULT FS_WRITE#2]");
    resp(1, "fc-3", "NET_FETCH", "error", "[ERROR NET_FETCH#3] denied: capability `net");
    resp(2, "fc-4", "FS_READ", "error", "[ERROR FS_READ#4] invalid arguments: FS_READ: field `path` must be string");
    assert!(p[3]["text"].as_str().unwrap().starts_with("[RESULT SYS_WRITE_STDOUT#1]"), "{}", p[3]);
    let h = history(&bodies[2]);
    let last = &h.last().unwrap()["parts"][0]["functionResponse"];
    assert_eq!(last["name"], "FS_READ");
    assert!(last["response"]["output"].as_str().unwrap().contains(r#""content":"42""#), "{last}");
}

#[tokio::test]
async fn gemini_restored_history_answers_every_function_call() {
    let (bodies, b, pid, _dir) = restore_between_call_and_result(
        "gemini",
        gemini(None, &[(None, "RECV_MSG", json!({}), None), (None, "SYS_WRITE_STDOUT", json!({"text": "after"}), None)]),
        gemini(None, &[(None, "SYS_EXIT", json!({}), None)]),
    )
    .await;
    let h = history(&bodies[1]);
    assert_eq!(h[0]["parts"].as_array().unwrap().len(), 2);
    let p = h[1]["parts"].as_array().unwrap();
    // Both responses first, then the kernel's notice of the restart.
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(p[2]["text"].as_str().unwrap().starts_with("[KERNEL]"), "{p:#?}");
    assert_eq!(p[0]["functionResponse"]["name"], "RECV_MSG");
    let t = p[0]["functionResponse"]["response"]["error"].as_str().unwrap();
    assert!(t.contains("interrupted") && t.contains("not re-run"), "{t}");
    assert_eq!(p[1]["functionResponse"]["name"], "SYS_WRITE_STDOUT");
    assert!(p[1]["functionResponse"]["response"]["error"].as_str().unwrap().contains("not run"));
    assert!(b.stdout(pid).unwrap().is_empty(), "SYS_WRITE_STDOUT ran after the restore");
}

/// A loopback server answering each POST with the next body of `replies`
/// as `text/event-stream`.
async fn sse_server(replies: Vec<String>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let body = replies[n.fetch_add(1, std::sync::atomic::Ordering::SeqCst).min(replies.len() - 1)].clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                // The request: headers, then as many body bytes as announced.
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())).unwrap_or(0);
                        while buf.len() < i + 4 + len {
                            let n = s.read(&mut chunk).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        break;
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    url
}

fn claude_stream(pieces: &[&str], call: (&str, &str, &str)) -> String {
    let ev = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
    let mut s = ev("message_start", json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
        "model": "claude-sonnet-4-5", "stop_reason": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}));
    s += &ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}));
    for p in pieces {
        s += &ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}));
    }
    s += &ev("content_block_stop", json!({"type": "content_block_stop", "index": 0}));
    s += &ev("content_block_start", json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": call.0, "name": call.1, "input": {}}}));
    s += &ev("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": call.2}}));
    s += &ev("content_block_stop", json!({"type": "content_block_stop", "index": 1}));
    s += &ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}}));
    s + &ev("message_stop", json!({"type": "message_stop"}))
}

/// A streamed reply reaches live followers piece by piece
/// (`KernelEvent::ReplyDelta`, before its `Entry::Reply`), while the
/// process's history gets the whole reply once.
#[tokio::test]
async fn streamed_reply_pieces_reach_followers_and_the_history_gets_the_whole_reply() {
    let url = sse_server(vec![
        claude_stream(&["Let me ", "write ", "it."], ("toolu_s1", "SYS_WRITE_STDOUT", r#"{"text": "x"}"#)),
        claude_stream(&["Done."], ("toolu_s2", "SYS_EXIT", "{}")),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let k = kernel_streaming(dir.path(), &url, true).await;
    let mut rx = k.subscribe();
    let pid = k.spawn(spawn_req(&k, "anthropic", "x", &[])).await.unwrap();
    assert_eq!(wait(&k, pid).await, ExitStatus::Exited { code: 0, result: None });
    let mut seen = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        match ev {
            aos_kernel::KernelEvent::ReplyDelta { pid: p, text } if p == pid => seen.push(format!("delta:{text}")),
            aos_kernel::KernelEvent::Entry { entry } if entry.pid == pid => {
                if let aos_kernel::Entry::Reply { text, .. } = entry.entry {
                    seen.push(format!("reply:{text}"));
                }
            }
            _ => {}
        }
    }
    assert_eq!(seen, ["delta:Let me ", "delta:write ", "delta:it.", "reply:Let me write it.", "delta:Done.", "reply:Done."]);
    let replies: Vec<String> = k
        .logs(pid)
        .unwrap()
        .into_iter()
        .filter_map(|l| match l.entry {
            aos_kernel::Entry::Reply { text, .. } => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(replies, ["Let me write it.", "Done."]);
    assert_eq!(k.stdout(pid).unwrap(), ["x"]);
}
