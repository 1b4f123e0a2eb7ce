//! Native tool calls through the kernel, against a loopback server that
//! speaks OpenAI chat completions (the real `openai` provider; responses in
//! the documented shape of https://platform.openai.com/docs/api-reference/chat/object
//! — `choices[0].message.tool_calls[]` with `id`, `type: "function"`,
//! `function.{name, arguments}` as a JSON string, `finish_reason:
//! "tool_calls"`; errors as `{"error": {"message", "type", "param", "code"}}`).
//! Checked: the tool list is the process's resolution, every call runs
//! through the same dispatch as text calls and its result goes back under
//! its id, malformed and denied calls are answered precisely, text calls in
//! a native reply still run, `auto` falls back to text once when a server
//! rejects tools, and a restored process answers every tool call of its
//! last reply.

use std::sync::Arc;
use std::time::Duration;

use aos_kernel::{ExitStatus, Kernel, KernelConfig, RestoreRequest, SpawnRequest};
use aos_providers::{HttpSettings, OpenAiProvider, Provider, ProviderError};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A loopback HTTP server answering each POST with the next canned
/// (status, body) (the last repeats) and recording the JSON bodies.
pub(crate) struct Server {
    pub(crate) url: String,
    pub(crate) bodies: Arc<Mutex<Vec<Value>>>,
}

pub(crate) async fn server(replies: Vec<(u16, Value)>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let (b2, replies) = (bodies.clone(), Arc::new(replies));
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let (bodies, replies) = (b2.clone(), replies.clone());
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
                let body: Value = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
                let (status, reply) = {
                    let mut b = bodies.lock();
                    b.push(body);
                    replies[(b.len() - 1).min(replies.len() - 1)].clone()
                };
                let text = reply.to_string();
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    Server { url, bodies }
}

/// A chat completion whose message has `content` and these tool calls
/// (id, name, arguments as the JSON text the model wrote).
fn completion(content: Option<&str>, calls: &[(&str, &str, &str)]) -> (u16, Value) {
    let tool_calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
        .collect();
    let mut message = json!({"role": "assistant", "content": content, "refusal": null, "annotations": []});
    if !tool_calls.is_empty() {
        message["tool_calls"] = json!(tool_calls);
    }
    (
        200,
        json!({
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion", "created": 1741570283,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": message, "logprobs": null,
                         "finish_reason": if calls.is_empty() { "stop" } else { "tool_calls" }}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                      "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}},
        }),
    )
}

struct Env {
    kernel: Kernel,
    _dir: Option<tempfile::TempDir>,
}

async fn kernel_at(dir: &std::path::Path, url: &str, f: impl FnOnce(&mut KernelConfig)) -> Kernel {
    let mut cfg = KernelConfig::new(dir);
    f(&mut cfg);
    let url = url.to_string();
    Kernel::new(
        cfg,
        vec![crate::support::backend().await],
        Arc::new(move |name: &str, _base: Option<&str>| match name {
            "openai" => Ok(Arc::new(OpenAiProvider::new(Some(&url), Some("AOS_TEST_NO_SUCH_KEY"), HttpSettings::default())?)
                as Arc<dyn Provider>),
            other => Err(ProviderError::Other(format!("unknown provider `{other}` in tests"))),
        }),
    )
}

async fn env(url: &str, f: impl FnOnce(&mut KernelConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    Env { kernel: kernel_at(dir.path(), url, f).await, _dir: Some(dir) }
}

fn req(e: &Env, task: &str, caps: &[&str]) -> SpawnRequest {
    SpawnRequest {
        task: task.into(),
        provider: "openai".into(),
        model: "gpt-4o".into(),
        caps: e.kernel.parse_grants(caps).unwrap(),
        ..Default::default()
    }
}

pub(crate) async fn wait(k: &Kernel, pid: u64) -> ExitStatus {
    tokio::time::timeout(Duration::from_secs(20), k.wait(pid))
        .await
        .unwrap_or_else(|_| panic!("process {pid} did not end: {:#?}", k.logs(pid)))
        .unwrap()
}

fn tool_names(body: &Value) -> Vec<String> {
    body["tools"].as_array().map_or(vec![], |t| t.iter().map(|t| t["function"]["name"].as_str().unwrap().to_string()).collect())
}

/// The messages of a request after the system prompt and the task.
fn history(body: &Value) -> Vec<Value> {
    body["messages"].as_array().unwrap()[2..].to_vec()
}

#[tokio::test]
async fn one_call_its_tool_list_and_its_result_under_its_id() {
    let s = server(vec![
        completion(None, &[("call_abc", "FS_WRITE", r#"{"path": "a.txt", "content": "hi"}"#)]),
        completion(Some("Done."), &[("call_def", "SYS_EXIT", r#"{"code": 0, "result": "ok"}"#)]),
    ])
    .await;
    let e = env(&s.url, |_| {}).await;
    let pid = e.kernel.spawn(req(&e, "write hi to a.txt", &["fs:rw"])).await.unwrap();
    assert_eq!(wait(&e.kernel, pid).await, ExitStatus::Exited { code: 0, result: Some("ok".into()) });
    let ws = e.kernel.info(pid).unwrap().workspace;
    assert_eq!(std::fs::read_to_string(ws.join("a.txt")).unwrap(), "hi");
    let bodies = s.bodies.lock().clone();
    assert_eq!(bodies.len(), 2);
    // The tool list is exactly what the process may call (its resolution).
    let names = tool_names(&bodies[0]);
    let expected: Vec<String> = e.kernel.available_syscalls(&e.kernel.parse_grants(&["fs:rw"]).unwrap()).into_iter().map(|s| s.name).collect();
    assert_eq!(names, expected);
    assert!(names.contains(&"FS_WRITE".to_string()) && !names.contains(&"SPAWN_AGENT".to_string()) && !names.contains(&"NET_FETCH".to_string()), "{names:?}");
    assert_eq!(bodies[0]["tool_choice"], "auto");
    let fs_write = bodies[0]["tools"].as_array().unwrap().iter().find(|t| t["function"]["name"] == "FS_WRITE").unwrap();
    assert_eq!(fs_write["type"], "function");
    assert_eq!(fs_write["function"]["parameters"]["required"], json!(["path", "content"]));
    // The native system prompt does not list the syscalls again.
    let system = bodies[0]["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("the tools offered to you") && !system.contains("arguments: {"), "{system}");
    // The call and its result, paired by id.
    let h = history(&bodies[1]);
    assert_eq!(h[0]["role"], "assistant");
    assert_eq!(h[0]["content"], Value::Null);
    assert_eq!(h[0]["tool_calls"][0], json!({"id": "call_abc", "type": "function", "function": {"name": "FS_WRITE", "arguments": r#"{"path": "a.txt", "content": "hi"}"#}}));
    assert_eq!(h[1]["role"], "tool");
    assert_eq!(h[1]["tool_call_id"], "call_abc");
    assert!(h[1]["content"].as_str().unwrap().starts_with("[RESULT FS_WRITE#1]"), "{}", h[1]);
    // Journalled as typed data.
    let logs = e.kernel.logs(pid).unwrap();
    assert!(logs.iter().any(|l| matches!(&l.entry, aos_kernel::Entry::Reply { tool_calls, .. } if tool_calls.len() == 1 && tool_calls[0].id == "call_abc")));
    assert!(logs.iter().any(|l| matches!(&l.entry, aos_kernel::Entry::Result { call_id: Some(c), .. } if c == "call_abc")));
}

#[tokio::test]
async fn parallel_malformed_denied_and_text_calls_in_one_reply() {
    let s = server(vec![
        completion(
            Some("Writing first. [SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"from text\"}"),
            &[
                ("c1", "FS_WRITE", r#"{"path": "n.txt", "content": "42"}"#),
                ("c2", "FS_READ", r#"{"path": "n.txt""#),
                ("c3", "NET_FETCH", r#"{"url": "https://example.com/"}"#),
                ("c4", "FS_READ", r#"{"path": 7}"#),
            ],
        ),
        completion(None, &[("c5", "FS_READ", r#"{"path": "n.txt"}"#)]),
        completion(None, &[("c6", "SYS_EXIT", "{}")]),
    ])
    .await;
    let e = env(&s.url, |_| {}).await;
    let pid = e.kernel.spawn(req(&e, "x", &["fs:rw"])).await.unwrap();
    assert_eq!(wait(&e.kernel, pid).await, ExitStatus::Exited { code: 0, result: None });
    assert_eq!(e.kernel.stdout(pid).unwrap(), ["from text"]);
    let bodies = s.bodies.lock().clone();
    let h = history(&bodies[1]);
    // The assistant message, its four results in order under their ids, then the text call's result.
    assert_eq!(h[0]["role"], "assistant");
    assert_eq!(h[0]["tool_calls"].as_array().unwrap().len(), 4);
    let tool = |i: usize, id: &str, starts: &str| {
        assert_eq!((h[i]["role"].as_str(), h[i]["tool_call_id"].as_str()), (Some("tool"), Some(id)), "{:#?}", h);
        let c = h[i]["content"].as_str().unwrap();
        assert!(c.starts_with(starts), "{id}: {c}");
        c.to_string()
    };
    tool(1, "c1", "[RESULT FS_WRITE#2]");
    let c2 = tool(2, "c2", "[ERROR FS_READ#3] invalid call: the arguments of FS_READ are not valid JSON");
    assert!(c2.contains("send one JSON object"), "{c2}");
    let c3 = tool(3, "c3", "[ERROR NET_FETCH#4] denied: capability `net");
    assert!(c3.contains("not granted"), "{c3}");
    let c4 = tool(4, "c4", "[ERROR FS_READ#5] invalid arguments: FS_READ: field `path` must be string");
    assert!(c4.contains("expected arguments"), "{c4}");
    assert_eq!(h[5]["role"], "user");
    assert!(h[5]["content"].as_str().unwrap().starts_with("[RESULT SYS_WRITE_STDOUT#1]"), "{}", h[5]);
    // Corrected on the next step.
    let h = history(&bodies[2]);
    let last = h.last().unwrap();
    assert_eq!(last["tool_call_id"], "c5");
    assert!(last["content"].as_str().unwrap().contains(r#""content":"42""#), "{last}");
}

/// Quirks models produce that the kernel takes, as in the text protocol: a
/// lower-case tool name, a number written as a string.
#[tokio::test]
async fn lower_case_names_and_numbers_as_strings_are_taken() {
    let s = server(vec![
        completion(None, &[("c1", "sys_write_stdout", r#"{"text": "hi"}"#), ("c2", "RECV_MSG", r#"{"timeout": "0.05"}"#)]),
        completion(None, &[("c3", "SYS_EXIT", r#"{"code": "0"}"#)]),
    ])
    .await;
    let e = env(&s.url, |_| {}).await;
    let pid = e.kernel.spawn(req(&e, "x", &["ipc"])).await.unwrap();
    assert_eq!(wait(&e.kernel, pid).await, ExitStatus::Exited { code: 0, result: None });
    assert_eq!(e.kernel.stdout(pid).unwrap(), ["hi"]);
    let h = history(&s.bodies.lock()[1]);
    assert_eq!(h[0]["tool_calls"][0]["function"]["name"], "sys_write_stdout", "the model's call is sent back as it was");
    assert!(h[1]["content"].as_str().unwrap().starts_with("[RESULT SYS_WRITE_STDOUT#1]"), "{}", h[1]);
    assert!(h[2]["content"].as_str().unwrap().starts_with("[RESULT RECV_MSG#2]"), "{}", h[2]);
}

/// Ollama's answer for a model without tool calling (its documented error
/// body: `{"error": "... does not support tools"}`).
fn no_tools() -> (u16, Value) {
    (400, json!({"error": "registry.ollama.ai/library/gemma:2b does not support tools"}))
}

#[tokio::test]
async fn auto_falls_back_to_text_once_and_native_fails_with_the_reason() {
    let s = server(vec![no_tools(), (200, completion(Some("[SYS_CALL::SYS_EXIT] {\"result\": \"text\"}"), &[]).1)]).await;
    let e = env(&s.url, |_| {}).await;
    let pid = e.kernel.spawn(req(&e, "x", &["fs:ro"])).await.unwrap();
    assert_eq!(wait(&e.kernel, pid).await, ExitStatus::Exited { code: 0, result: Some("text".into()) });
    let bodies = s.bodies.lock().clone();
    assert_eq!(bodies.len(), 2);
    assert!(bodies[0].get("tools").is_some());
    assert!(bodies[1].get("tools").is_none() && bodies[1].get("tool_choice").is_none());
    let system = bodies[1]["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("[SYS_CALL::NAME]") && system.contains("- FS_READ:"), "{system}");
    let logs = e.kernel.logs(pid).unwrap();
    assert!(logs.iter().any(|l| matches!(&l.entry, aos_kernel::Entry::Notice { text } if text.contains("rejected native tool calls") && text.contains("does not support tools"))), "{logs:#?}");
    // Once: the next process of that model starts in text.
    let pid2 = e.kernel.spawn(req(&e, "y", &["fs:ro"])).await.unwrap();
    wait(&e.kernel, pid2).await;
    let bodies = s.bodies.lock().clone();
    assert_eq!(bodies.len(), 3);
    assert!(bodies[2].get("tools").is_none());

    // `native` does not fall back: the process fails with the reason.
    let s = server(vec![no_tools()]).await;
    let e = env(&s.url, |c| { c.tool_modes.providers.insert("openai".into(), aos_abi::ToolMode::Native); }).await;
    let pid = e.kernel.spawn(req(&e, "x", &[])).await.unwrap();
    match wait(&e.kernel, pid).await {
        ExitStatus::Failed { reason } => assert!(reason.contains("rejected native tool calls") && reason.contains("tool_mode"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // `text` never sends tools.
    let s = server(vec![completion(Some("[SYS_CALL::SYS_EXIT] {}"), &[])]).await;
    let e = env(&s.url, |_| {}).await;
    let mut r = req(&e, "x", &[]);
    r.tool_mode = Some(aos_abi::ToolMode::Text);
    let pid = e.kernel.spawn(r).await.unwrap();
    wait(&e.kernel, pid).await;
    assert!(s.bodies.lock()[0].get("tools").is_none());
}

/// The kernel stops while a tool call runs (RECV_MSG blocks); the restored
/// process's next request answers both calls of that reply: the running
/// one "interrupted, not re-run", the one that never started "not run".
#[tokio::test]
async fn a_restored_process_answers_every_tool_call() {
    let s = server(vec![
        completion(None, &[("r1", "RECV_MSG", "{}"), ("r2", "SYS_WRITE_STDOUT", r#"{"text": "after"}"#)]),
        completion(None, &[("r3", "SYS_EXIT", "{}")]),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let a = kernel_at(dir.path(), &s.url, |_| {}).await;
    let pid = a.spawn(SpawnRequest { task: "x".into(), provider: "openai".into(), model: "gpt-4o".into(), caps: a.parse_grants(&["ipc"]).unwrap(), ..Default::default() }).await.unwrap();
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

    let b = kernel_at(dir.path(), &s.url, |_| {}).await;
    let req = RestoreRequest { log: log.clone(), next_call_id: 1, ..RestoreRequest::new(info) };
    let entries = req.recovery_entries();
    b.restore(req, entries).await.unwrap();
    assert_eq!(wait(&b, pid).await, ExitStatus::Exited { code: 0, result: None });
    let bodies = s.bodies.lock().clone();
    let h = history(&bodies[1]);
    assert_eq!(h[0]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!((h[1]["role"].as_str(), h[1]["tool_call_id"].as_str()), (Some("tool"), Some("r1")));
    assert!(h[1]["content"].as_str().unwrap().contains("interrupted") && h[1]["content"].as_str().unwrap().contains("not re-run"), "{}", h[1]);
    assert_eq!((h[2]["role"].as_str(), h[2]["tool_call_id"].as_str()), (Some("tool"), Some("r2")));
    assert!(h[2]["content"].as_str().unwrap().contains("not run"), "{}", h[2]);
    // SYS_WRITE_STDOUT was not run again.
    assert!(b.stdout(pid).unwrap().is_empty());
}
