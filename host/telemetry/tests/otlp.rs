//! Traces on the real wire: a kernel whose model is scripted (the only
//! mock: the model's answers) runs a step with a model call and two
//! syscalls (one ok, one failing) and a step that exits; the spans are
//! exported to a local OTLP/HTTP receiver that decodes the protobuf bodies
//! with `opentelemetry-proto`'s `ExportTraceServiceRequest`. Also: content
//! only with `capture_content`, the environment over the file, and a
//! collector that never answers neither slows nor breaks the kernel.

#![allow(clippy::unwrap_used)] // a test's panic is its failure

use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_kernel::{ExitStatus, Kernel, KernelConfig, SpawnRequest};
use aos_providers::{Completion, CompletionRequest, Provider, ProviderError, Usage};
use aos_telemetry::{Telemetry, TelemetryConfig};
use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode as SpanStatus, Span};
use prost::Message;

/// What the receiver got: (headers, raw body, decoded request) of each
/// `POST /v1/traces`.
#[derive(Default)]
struct Received {
    posts: std::sync::Mutex<Vec<(HeaderMap, Vec<u8>, ExportTraceServiceRequest)>>,
}

/// A local OTLP/HTTP receiver on 127.0.0.1: `POST /v1/traces` with
/// `Content-Type: application/x-protobuf`, decoded; anything else is 400/415.
async fn receiver() -> (String, Arc<Received>) {
    let got = Arc::new(Received::default());
    let g = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let g = g.clone();
            async move {
                if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/x-protobuf") {
                    return StatusCode::UNSUPPORTED_MEDIA_TYPE;
                }
                match ExportTraceServiceRequest::decode(body.as_ref()) {
                    Ok(req) => {
                        g.posts.lock().unwrap().push((headers, body.to_vec(), req));
                        StatusCode::OK
                    }
                    Err(_) => StatusCode::BAD_REQUEST,
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (base, got)
}

/// The model: canned replies with known token counts.
struct Scripted {
    replies: Vec<(&'static str, u64, u64)>,
    next: std::sync::Mutex<usize>,
}

#[async_trait]
impl Provider for Scripted {
    fn name(&self) -> &str {
        "test"
    }
    async fn complete(&self, _req: CompletionRequest) -> Result<Completion, ProviderError> {
        let (text, input, output) = {
            let mut n = self.next.lock().unwrap();
            *n += 1;
            *self.replies.get(*n - 1).ok_or_else(|| ProviderError::Other("script exhausted".into()))?
        };
        if text == HANG {
            std::future::pending::<()>().await;
        }
        Ok(Completion {
            text: text.into(),
            tool_calls: Vec::new(),
            usage: Usage { prompt_tokens: input, completion_tokens: output, ..Default::default() },
            truncated: false,
        })
    }
}

const STEP1: &str = "I will write, then read.\n[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"secret-output\"}\n\
                     [SYS_CALL::FS_READ] {\"path\": \"secret-arg.txt\"}";
/// A reply that never comes (the model hangs until the process is killed).
const HANG: &str = "!HANG!";
const EXIT: &str = "[SYS_CALL::SYS_EXIT] {\"code\": 0}";

/// A kernel observed by `telemetry`, running one process whose model
/// answers `replies`; returns how it ended and how long it took.
async fn run(telemetry: &Telemetry, replies: Vec<(&'static str, u64, u64)>) -> (ExitStatus, Duration) {
    run_then(telemetry, replies, |_, _| async {}).await
}

/// [`run`], calling `meanwhile` with the kernel and pid once the process started.
async fn run_then<F: std::future::Future<Output = ()>>(
    telemetry: &Telemetry,
    replies: Vec<(&'static str, u64, u64)>,
    meanwhile: impl FnOnce(Kernel, u64) -> F,
) -> (ExitStatus, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let mut kc = KernelConfig::new(dir.path());
    kc.observer = telemetry.observer();
    let provider: Arc<dyn Provider> = Arc::new(Scripted { replies, next: Default::default() });
    let kernel = Kernel::new(kc, Vec::new(), Arc::new(move |_: &str, _: Option<&str>| Ok(provider.clone())));
    let started = Instant::now();
    let pid = kernel
        .spawn(SpawnRequest {
            task: "secret-task: say hello".into(),
            provider: "test".into(),
            model: "m1".into(),
            caps: kernel.parse_grants::<&str>(&[]).unwrap(),
            ..Default::default()
        })
        .await
        .unwrap();
    meanwhile(kernel.clone(), pid).await;
    let status = tokio::time::timeout(Duration::from_secs(20), kernel.wait(pid)).await.unwrap().unwrap();
    let took = started.elapsed();
    kernel.shutdown().await;
    (status, took)
}

fn spans(got: &Received) -> Vec<Span> {
    let posts = got.posts.lock().unwrap();
    posts
        .iter()
        .flat_map(|(_, _, r)| r.resource_spans.iter())
        .flat_map(|rs| rs.scope_spans.iter())
        .flat_map(|ss| ss.spans.iter().cloned())
        .collect()
}

fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a Any> {
    s.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn str_attr<'a>(s: &'a Span, key: &str) -> &'a str {
    match attr(s, key) {
        Some(Any::StringValue(v)) => v,
        other => panic!("span {} has no string attribute {key}: {other:?}", s.name),
    }
}

fn int_attr(s: &Span, key: &str) -> i64 {
    match attr(s, key) {
        Some(Any::IntValue(v)) => *v,
        other => panic!("span {} has no int attribute {key}: {other:?}", s.name),
    }
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test]
async fn steps_model_calls_and_syscalls_become_genai_spans_env_over_file() {
    let (base, got) = receiver().await;
    // The file names a dead endpoint and a service name; the environment
    // points at the receiver, renames the service and adds a header.
    let mut cfg: TelemetryConfig = serde_json::from_value(serde_json::json!({
        "enabled": true,
        "endpoint": "http://127.0.0.1:9",
        "service_name": "from-file",
        "headers": {"x-from": "file"},
    }))
    .unwrap();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", base.clone()),
        ("OTEL_SERVICE_NAME", "agents".to_string()),
        ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0k,x-from=env".to_string()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_string()),
    ];
    cfg.apply_env(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap();
    let t = Telemetry::start(&cfg).unwrap().unwrap();
    assert_eq!(t.url(), format!("{base}/v1/traces"));

    let (status, _) = run(&t, vec![(STEP1, 123, 45), (EXIT, 200, 5)]).await;
    assert!(matches!(status, ExitStatus::Exited { code: 0, .. }), "{status:?}");
    assert!(t.flush(Duration::from_secs(10)).await);
    let stats = t.stats();
    assert_eq!((stats.dropped, stats.failed), (0, 0), "{stats:?}");

    {
        let posts = got.posts.lock().unwrap();
        assert!(!posts.is_empty());
        for (headers, raw, req) in posts.iter() {
            assert_eq!(headers.get("authorization").unwrap(), "Bearer t0k");
            assert_eq!(headers.get("x-from").unwrap(), "env");
            let res = req.resource_spans[0].resource.as_ref().unwrap();
            let service = res.attributes.iter().find(|kv| kv.key == "service.name").unwrap();
            assert_eq!(service.value.as_ref().unwrap().value, Some(Any::StringValue("agents".into())));
            // No prompt, reply text, argument or output left the machine.
            let text = String::from_utf8_lossy(raw);
            for secret in ["secret-task", "secret-arg", "secret-output", "I will write"] {
                assert!(!text.contains(secret), "{secret} was exported without capture_content");
            }
        }
    }

    let spans = spans(&got);
    assert_eq!(stats.exported, spans.len() as u64);
    let steps = named(&spans, "aos.step");
    assert_eq!(steps.len(), 2, "{:#?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    let step1 = steps.iter().find(|s| int_attr(s, "aos.step") == 1).unwrap();
    let step2 = steps.iter().find(|s| int_attr(s, "aos.step") == 2).unwrap();
    for s in [step1, step2] {
        assert!(s.parent_span_id.is_empty(), "a step is the root of its trace");
        assert_eq!(int_attr(s, "aos.pid"), 1);
        assert_eq!(s.trace_id.len(), 16);
        assert_eq!(s.span_id.len(), 8);
    }
    assert_ne!(step1.trace_id, step2.trace_id, "one trace per step");
    let children = |root: &Span| -> Vec<&Span> {
        spans.iter().filter(|s| s.parent_span_id == root.span_id && s.trace_id == root.trace_id).collect()
    };

    // Step 1: its model call and its two calls, in the step's trace.
    let c1 = children(step1);
    let names: Vec<&str> = c1.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let chat = c1.iter().find(|s| s.name == "chat m1").unwrap();
    assert_eq!(chat.kind, 3, "client span");
    assert_eq!(str_attr(chat, "gen_ai.operation.name"), "chat");
    assert_eq!(str_attr(chat, "gen_ai.provider.name"), "test");
    assert_eq!(str_attr(chat, "gen_ai.request.model"), "m1");
    assert_eq!(int_attr(chat, "gen_ai.usage.input_tokens"), 123);
    assert_eq!(int_attr(chat, "gen_ai.usage.output_tokens"), 45);
    match attr(chat, "gen_ai.response.finish_reasons") {
        Some(Any::ArrayValue(a)) => assert_eq!(a.values[0].value, Some(Any::StringValue("stop".into()))),
        other => panic!("finish reasons: {other:?}"),
    }
    assert!(attr(chat, "gen_ai.input.messages").is_none() && attr(chat, "gen_ai.output.messages").is_none());
    assert!(chat.start_time_unix_nano >= step1.start_time_unix_nano && chat.end_time_unix_nano <= step1.end_time_unix_nano);

    let ok = c1.iter().find(|s| s.name == "execute_tool SYS_WRITE_STDOUT").unwrap();
    assert_eq!(str_attr(ok, "gen_ai.operation.name"), "execute_tool");
    assert_eq!(str_attr(ok, "gen_ai.tool.name"), "SYS_WRITE_STDOUT");
    assert!(str_attr(ok, "gen_ai.tool.call.id").starts_with('#'));
    assert!(ok.status.as_ref().is_none_or(|s| s.code != SpanStatus::Error as i32));
    assert!(attr(ok, "gen_ai.tool.call.arguments").is_none() && attr(ok, "gen_ai.tool.call.result").is_none());
    assert!(ok.start_time_unix_nano >= chat.end_time_unix_nano, "the calls run after the model call");

    let failed = c1.iter().find(|s| s.name == "execute_tool FS_READ").unwrap();
    let st = failed.status.as_ref().unwrap();
    assert_eq!(st.code, SpanStatus::Error as i32);
    assert!(st.message.contains("FS_READ"), "{}", st.message);
    assert!(!str_attr(failed, "error.type").is_empty());
    assert!(step1.status.as_ref().is_none_or(|s| s.code != SpanStatus::Error as i32), "a failed call does not fail the step");

    // Step 2: its model call and SYS_EXIT.
    let c2 = children(step2);
    assert_eq!(c2.len(), 2, "{:?}", c2.iter().map(|s| &s.name).collect::<Vec<_>>());
    let chat2 = c2.iter().find(|s| s.name == "chat m1").unwrap();
    assert_eq!(int_attr(chat2, "gen_ai.usage.input_tokens"), 200);
    assert!(c2.iter().any(|s| s.name == "execute_tool SYS_EXIT"));
    t.shutdown().await;
}

#[tokio::test]
async fn content_is_exported_only_when_asked() {
    let (base, got) = receiver().await;
    let cfg = TelemetryConfig { enabled: true, endpoint: base, capture_content: true, ..Default::default() };
    let t = Telemetry::start(&cfg).unwrap().unwrap();
    run(&t, vec![(STEP1, 1, 1), (EXIT, 1, 1)]).await;
    assert!(t.flush(Duration::from_secs(10)).await);
    let spans = spans(&got);
    let chat = spans.iter().find(|s| s.name == "chat m1").unwrap();
    let input: serde_json::Value = serde_json::from_str(str_attr(chat, "gen_ai.input.messages")).unwrap();
    assert!(input.to_string().contains("secret-task"), "{input}");
    assert_eq!(input[0]["role"], "system");
    assert!(str_attr(chat, "gen_ai.output.messages").contains("I will write"));
    let read = spans.iter().find(|s| s.name == "execute_tool FS_READ").unwrap();
    assert!(str_attr(read, "gen_ai.tool.call.arguments").contains("secret-arg.txt"));
    let write = spans.iter().find(|s| s.name == "execute_tool SYS_WRITE_STDOUT").unwrap();
    assert!(attr(write, "gen_ai.tool.call.result").is_some());
    t.shutdown().await;
}

#[tokio::test]
async fn a_collector_that_never_answers_neither_slows_nor_breaks_the_kernel() {
    // Accepts connections and never answers.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            open.push(s);
        }
    });
    let cfg = TelemetryConfig { enabled: true, endpoint: base, export_timeout_secs: 0.3, ..Default::default() };
    let t = Telemetry::start(&cfg).unwrap().unwrap();
    let replies = vec![(STEP1, 1, 1), (STEP1, 1, 1), (STEP1, 1, 1), (EXIT, 1, 1)];
    let (status, took) = run(&t, replies).await;
    assert!(matches!(status, ExitStatus::Exited { code: 0, .. }), "{status:?}");
    assert!(took < Duration::from_secs(2), "the kernel waited for the collector: {took:?}");
    // The export fails after its timeout; its spans are counted and dropped.
    let flushed = Instant::now();
    t.flush(Duration::from_secs(5)).await;
    assert!(flushed.elapsed() < Duration::from_secs(3));
    let stats = t.stats();
    assert_eq!(stats.exported, 0);
    // Three steps of 4 spans (step, chat, two calls), then one of 3.
    assert_eq!(stats.failed, 15, "{stats:?}");
    assert!(stats.failed_requests >= 1);
    t.shutdown().await;
    held.abort();

    // And nothing listening at all: the same.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let cfg = TelemetryConfig { enabled: true, endpoint: base, ..Default::default() };
    let t = Telemetry::start(&cfg).unwrap().unwrap();
    let (status, _) = run(&t, vec![(STEP1, 1, 1), (EXIT, 1, 1)]).await;
    assert!(matches!(status, ExitStatus::Exited { code: 0, .. }));
    t.flush(Duration::from_secs(5)).await;
    assert!(t.stats().failed > 0 && t.stats().exported == 0, "{:?}", t.stats());
    t.shutdown().await;
}

#[tokio::test]
async fn a_step_cut_short_by_a_kill_ends_its_open_spans_as_cancelled() {
    let (base, got) = receiver().await;
    let cfg = TelemetryConfig { enabled: true, endpoint: base, ..Default::default() };
    let t = Telemetry::start(&cfg).unwrap().unwrap();
    let (status, _) = run_then(&t, vec![(STEP1, 1, 1), (HANG, 0, 0)], |kernel, pid| async move {
        // Step 2's model call hangs; kill the process during it.
        for _ in 0..400 {
            if kernel.info(pid).unwrap().counters.steps == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        kernel.kill(pid).unwrap();
    })
    .await;
    assert_eq!(status, ExitStatus::Killed);
    assert!(t.flush(Duration::from_secs(10)).await);
    let spans = spans(&got);
    let step2 = spans.iter().find(|s| s.name == "aos.step" && int_attr(s, "aos.step") == 2).unwrap();
    assert_eq!(str_attr(step2, "error.type"), "cancelled");
    assert_eq!(step2.status.as_ref().unwrap().code, SpanStatus::Error as i32);
    let chat = spans.iter().find(|s| s.name == "chat m1" && s.parent_span_id == step2.span_id).unwrap();
    assert_eq!(str_attr(chat, "error.type"), "cancelled");
    assert!(attr(chat, "gen_ai.usage.input_tokens").is_none());
    t.shutdown().await;
}
