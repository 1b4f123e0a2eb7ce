//! Native tool calls vs the `[SYS_CALL::NAME] {json}` text protocol, through
//! the kernel and the real `openai` provider against a loopback server that
//! speaks the chat-completions wire format (no harness; prints tables).
//!
//! 24 scripted multi-step scenarios, each run in both modes (and the native
//! one once more with SSE streaming). The server replays real-model-like
//! replies: each step is the scenario's next intended call, rendered with a
//! quirk that models are seen to produce (thoughts around the call, a code
//! fence, pretty-printed or single-quoted JSON, a trailing comma, a cut-off
//! argument string, a number sent as a string, a lower-case name, …) or
//! clean; when the kernel feeds back an error, the next reply is the same
//! call written cleanly (the model corrected itself). So this measures the
//! kernel's parsing and feedback, not a model:
//!
//! * the share of steps whose calls all ran (well-formed) per mode, and per
//!   quirk whether the kernel took it;
//! * request bytes per step in each mode (the native tool list vs the prose
//!   prompt listing the same syscalls);
//! * the added latency of streaming: the server spends 16 ms on each reply,
//!   sending it at the end (not streaming) or as `chat.completion.chunk`s
//!   spread over those 16 ms (the text and each call's arguments in 8
//!   pieces each).
//!
//! Run: `cargo bench -p aos-kernel --bench tool_modes` (or `--profile dev`).

#![allow(clippy::unwrap_used)] // a benchmark stops on any failure

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_abi::ToolMode;
use aos_kernel::{Entry, Kernel, KernelConfig, SpawnRequest};
use aos_providers::{HttpSettings, OpenAiProvider, Provider, ProviderError};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SCENARIOS: usize = 24;
const PIECES: usize = 8;
const PIECE_DELAY: Duration = Duration::from_millis(2);

/// One intended call of a scenario.
#[derive(Clone)]
struct Call {
    name: &'static str,
    args: Value,
}

/// The calls of scenario `n`: 3 to 6 steps of stdout writes (with quotes,
/// newlines and unicode, as real outputs have), mailbox polls and webhook
/// registrations, then an exit with a result.
fn scenario(n: usize) -> Vec<Call> {
    let texts = [
        "Summary: 3 files changed",
        "He said \"done\" — twice",
        "line one\nline two",
        "ünïcödé ✓ 42%",
        "path C:\\temp\\x",
        "{\"json\": \"inside text\"}",
    ];
    let steps = 3 + n % 4;
    let mut calls = Vec::new();
    for i in 0..steps {
        calls.push(match (n + i) % 4 {
            0 | 1 => Call { name: "SYS_WRITE_STDOUT", args: json!({"text": texts[(n * 7 + i) % texts.len()]}) },
            2 => Call { name: "RECV_MSG", args: json!({"timeout": 0}) },
            _ => Call { name: "SYS_REGISTER_WEBHOOK", args: json!({"path": format!("/hooks/s{n}-{i}")}) },
        });
    }
    calls.push(Call { name: "SYS_EXIT", args: json!({"code": 0, "result": format!("scenario {n} done")}) });
    calls
}

const TEXT_QUIRKS: [&str; 10] = [
    "clean",
    "thought around the call",
    "code fence",
    "pretty-printed JSON",
    "single-quoted JSON",
    "trailing comma",
    "missing closing brace",
    "lower-case name",
    "number as a string",
    "two calls, one per line",
];

const NATIVE_QUIRKS: [&str; 8] = [
    "clean",
    "pretty-printed arguments",
    "text beside the call",
    "number as a string",
    "arguments cut off",
    "lower-case name",
    "unknown extra field",
    "arguments padded with whitespace",
];

/// The quirk of step `i` of scenario `n` (about half the steps are clean,
/// as with real models; the rest cycle through the quirks).
fn quirk(n: usize, i: usize, count: usize) -> usize {
    let h = (n * 31 + i * 17 + 7) % 20;
    if h < 10 {
        0
    } else {
        1 + (h + n) % (count - 1)
    }
}

fn numbers_as_strings(args: &Value) -> Value {
    match args {
        Value::Object(m) => Value::Object(
            m.iter().map(|(k, v)| (k.clone(), if v.is_number() { json!(v.to_string()) } else { v.clone() })).collect(),
        ),
        v => v.clone(),
    }
}

/// A text-mode reply for `c` with quirk `q`.
fn text_reply(c: &Call, q: usize) -> String {
    let clean = format!("[SYS_CALL::{}] {}", c.name, c.args);
    match q {
        1 => format!("I will do the next step now.\n{clean}\nThat should do it."),
        2 => format!("```\n{clean}\n```"),
        3 => format!("[SYS_CALL::{}] {}", c.name, serde_json::to_string_pretty(&c.args).unwrap()),
        4 => format!("[SYS_CALL::{}] {}", c.name, c.args.to_string().replace('\'', "’").replace('"', "'")),
        5 => {
            let s = c.args.to_string();
            format!("[SYS_CALL::{}] {},}}", c.name, &s[..s.len() - 1])
        }
        6 => {
            let s = c.args.to_string();
            format!("[SYS_CALL::{}] {}", c.name, &s[..s.len() - 1])
        }
        7 => format!("[SYS_CALL::{}] {}", c.name.to_lowercase(), c.args),
        8 => format!("[SYS_CALL::{}] {}", c.name, numbers_as_strings(&c.args)),
        9 if c.name != "SYS_EXIT" => format!("{clean}\n[SYS_CALL::SYS_WRITE_STDOUT] {{\"text\": \"(and a note)\"}}"),
        _ => clean,
    }
}

/// A native-mode reply for `c` with quirk `q`: (text, [(name, arguments)]).
fn native_reply(c: &Call, q: usize) -> (Option<String>, String, String) {
    let args = c.args.to_string();
    match q {
        1 => (None, c.name.into(), serde_json::to_string_pretty(&c.args).unwrap()),
        2 => (Some("Doing the next step.".into()), c.name.into(), args),
        3 => (None, c.name.into(), numbers_as_strings(&c.args).to_string()),
        4 => (None, c.name.into(), args[..args.len() / 2].to_string()),
        5 => (None, c.name.to_lowercase(), args),
        6 => {
            let mut a = c.args.clone();
            a["note"] = json!("extra");
            (None, c.name.into(), a.to_string())
        }
        7 => (None, c.name.into(), format!("\n  {args}  \n")),
        _ => (None, c.name.into(), args),
    }
}

/// Per scenario and mode: where it is, and whether the last reply was quirky.
#[derive(Default)]
struct Script {
    next: usize,
    quirks: Vec<(String, usize)>,
}

#[derive(Default)]
struct ServerState {
    scripts: BTreeMap<String, Script>,
    /// Request body bytes per model.
    bytes: BTreeMap<String, Vec<usize>>,
}

/// Whether the kernel's feedback after the last reply holds an error.
fn had_error(body: &Value) -> bool {
    let msgs = body["messages"].as_array().unwrap();
    let last_assistant = msgs.iter().rposition(|m| m["role"] == "assistant");
    let Some(a) = last_assistant else { return false };
    msgs[a + 1..].iter().any(|m| m["content"].as_str().is_some_and(|c| c.contains("[ERROR")))
}

/// The reply to one request (`model` = "text-N" / "native-N"), as a
/// chat.completion message.
fn answer(state: &Mutex<ServerState>, body: &Value) -> Value {
    let model = body["model"].as_str().unwrap().to_string();
    let (mode, n) = model.split_once('-').unwrap();
    let n: usize = n.parse().unwrap();
    let calls = scenario(n);
    let mut st = state.lock();
    let s = st.scripts.entry(model.clone()).or_default();
    let native = mode != "text";
    let corrected = had_error(body);
    // After an error the same call again, cleanly; else the next one, with its quirk.
    let (i, q) = if corrected && s.next > 0 {
        (s.next - 1, 0)
    } else {
        s.next += 1;
        let i = s.next - 1;
        (i, quirk(n, i, if native { NATIVE_QUIRKS.len() } else { TEXT_QUIRKS.len() }))
    };
    let c = &calls[i.min(calls.len() - 1)];
    s.quirks.push(((if native { NATIVE_QUIRKS[q] } else { TEXT_QUIRKS[q] }).to_string(), i));
    if native {
        let (text, name, args) = native_reply(c, q);
        json!({"role": "assistant", "content": text, "tool_calls": [
            {"id": format!("call_{n}_{}", s.quirks.len()), "type": "function", "function": {"name": name, "arguments": args}}
        ]})
    } else {
        json!({"role": "assistant", "content": text_reply(c, q)})
    }
}

fn completion(message: &Value) -> String {
    let finish = if message.get("tool_calls").is_some() { "tool_calls" } else { "stop" };
    json!({
        "id": "chatcmpl-b", "object": "chat.completion", "created": 1741570283, "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    })
    .to_string()
}

/// The same message as `chat.completion.chunk` server-sent events.
fn chunks(message: &Value) -> Vec<String> {
    let ev = |delta: Value, finish: Value| {
        format!("data: {}\n\n", json!({"id": "chatcmpl-b", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))
    };
    let mut out = Vec::new();
    let text = message["content"].as_str().unwrap_or("");
    let chars: Vec<char> = text.chars().collect();
    let per = chars.len().div_ceil(PIECES).max(1);
    for piece in chars.chunks(per) {
        out.push(ev(json!({"content": piece.iter().collect::<String>()}), Value::Null));
    }
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for (k, c) in calls.iter().enumerate() {
            let args = c["function"]["arguments"].as_str().unwrap();
            out.push(ev(json!({"tool_calls": [{"index": k, "id": c["id"], "type": "function", "function": {"name": c["function"]["name"], "arguments": ""}}]}), Value::Null));
            let a: Vec<char> = args.chars().collect();
            for piece in a.chunks(a.len().div_ceil(PIECES).max(1)) {
                out.push(ev(json!({"tool_calls": [{"index": k, "function": {"arguments": piece.iter().collect::<String>()}}]}), Value::Null));
            }
        }
    }
    let finish = if message.get("tool_calls").is_some() { "tool_calls" } else { "stop" };
    out.push(ev(json!({}), json!(finish)));
    out.push(format!("data: {}\n\n", json!({"id": "chatcmpl-b", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}})));
    out.push("data: [DONE]\n\n".into());
    out
}

async fn server(state: Arc<Mutex<ServerState>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            // As real servers do: no Nagle delay between small chunks.
            let _ = s.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                // Keep-alive: one request after another on this connection.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16384];
                loop {
                    let (head_end, len) = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                                .unwrap_or(0);
                            break (i + 4, len);
                        }
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    };
                    while buf.len() < head_end + len {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body: Value = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap();
                    buf.drain(..head_end + len);
                    let model = body["model"].as_str().unwrap().to_string();
                    state.lock().bytes.entry(model).or_default().push(len);
                    let message = answer(&state, &body);
                    if body["stream"] == true {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                        if s.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        // The same generation time as the whole reply, spread over its chunks.
                        // (Deadlines from the start, so timer rounding does not add up.)
                        let chunks = chunks(&message);
                        let (start, n) = (tokio::time::Instant::now(), chunks.len() as u32);
                        for (k, c) in chunks.into_iter().enumerate() {
                            tokio::time::sleep_until(start + PIECE_DELAY * PIECES as u32 * (k as u32 + 1) / n).await;
                            let frame = format!("{:x}\r\n{c}\r\n", c.len());
                            if s.write_all(frame.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        let _ = s.write_all(b"0\r\n\r\n").await;
                    } else {
                        tokio::time::sleep(PIECE_DELAY * PIECES as u32).await;
                        let b = completion(&message);
                        let resp =
                            format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{b}", b.len());
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    url
}

/// What one mode gave over every scenario.
#[derive(Default)]
struct Tally {
    steps: usize,
    well_formed: usize,
    exited_ok: usize,
    bytes: usize,
    step_time: Duration,
    /// quirk → (steps, taken)
    quirks: BTreeMap<String, (usize, usize)>,
}

async fn run_mode(kernel: &Kernel, state: &Mutex<ServerState>, mode: &str, tool_mode: ToolMode, provider: &str) -> Tally {
    let mut t = Tally::default();
    for n in 0..SCENARIOS {
        let model = format!("{mode}-{n}");
        let t0 = Instant::now();
        let pid = kernel
            .spawn(SpawnRequest {
                task: format!("scenario {n}: write the report lines, poll the mailbox, register the hooks, then exit"),
                provider: provider.into(),
                model: model.clone(),
                caps: kernel.parse_grants(&["ipc", "webhook"]).unwrap(),
                tool_mode: Some(tool_mode),
                ..Default::default()
            })
            .await
            .unwrap();
        let Ok(status) = tokio::time::timeout(Duration::from_secs(60), kernel.wait(pid)).await else {
            panic!("{model} did not end: {:#?}", kernel.logs(pid));
        };
        let status = status.unwrap();
        let elapsed = t0.elapsed();
        if matches!(status, aos_kernel::ExitStatus::Exited { code: 0, .. }) {
            t.exited_ok += 1;
        }
        // A step is well-formed when no error follows its reply.
        let log = kernel.logs(pid).unwrap();
        let mut steps = Vec::new();
        for e in &log {
            match &e.entry {
                Entry::Reply { .. } => steps.push(true),
                Entry::Error { .. } => {
                    if let Some(last) = steps.last_mut() {
                        *last = false;
                    }
                }
                _ => {}
            }
        }
        let st = state.lock();
        let quirks = &st.scripts[&model].quirks;
        for (k, ok) in steps.iter().enumerate() {
            let e = t.quirks.entry(quirks.get(k).map_or("?".into(), |q| q.0.clone())).or_default();
            e.0 += 1;
            e.1 += usize::from(*ok);
        }
        t.steps += steps.len();
        t.well_formed += steps.iter().filter(|ok| **ok).count();
        t.bytes += st.bytes[&model].iter().sum::<usize>();
        t.step_time += elapsed;
    }
    t
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let state = Arc::new(Mutex::new(ServerState::default()));
        let url = server(state.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let u2 = url.clone();
        let kernel = Kernel::new(
            KernelConfig::new(dir.path()),
            Vec::new(),
            Arc::new(move |name: &str, _base: Option<&str>| {
                let stream = name == "openai-stream";
                Ok(Arc::new(OpenAiProvider::new(Some(&u2), Some("AOS_BENCH_NO_KEY"), HttpSettings::default())?.with_stream(stream))
                    as Arc<dyn Provider>)
                .map_err(|e: ProviderError| e)
            }),
        );
        let text = run_mode(&kernel, &state, "text", ToolMode::Text, "openai").await;
        let native = run_mode(&kernel, &state, "native", ToolMode::Native, "openai").await;
        let streamed = run_mode(&kernel, &state, "stream", ToolMode::Native, "openai-stream").await;

        println!("{SCENARIOS} scenarios, {} intended calls each on average\n", (0..SCENARIOS).map(|n| scenario(n).len()).sum::<usize>() / SCENARIOS);
        println!("| mode | steps | well-formed steps | share | exited 0 | request bytes/step | ms/step |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (name, t) in [("text `[SYS_CALL::…]`", &text), ("native tool calls", &native), ("native, SSE streaming", &streamed)] {
            println!(
                "| {name} | {} | {} | {:.1}% | {}/{SCENARIOS} | {} | {:.1} |",
                t.steps,
                t.well_formed,
                100.0 * t.well_formed as f64 / t.steps as f64,
                t.exited_ok,
                t.bytes / t.steps,
                t.step_time.as_secs_f64() * 1000.0 / t.steps as f64
            );
        }
        for (name, t) in [("text", &text), ("native", &native)] {
            println!("\n| {name} quirk | steps | taken |");
            println!("|---|---:|---:|");
            for (q, (n, ok)) in &t.quirks {
                println!("| {q} | {n} | {ok} |");
            }
        }
        let per_step = |t: &Tally| t.step_time.as_secs_f64() * 1000.0 / t.steps as f64;
        println!(
            "\nstreaming adds {:.2} ms per step ({:.1} vs {:.1} ms; the server spends {} ms per reply either way)",
            per_step(&streamed) - per_step(&native),
            per_step(&streamed),
            per_step(&native),
            (PIECE_DELAY * PIECES as u32).as_millis()
        );
    });
}
