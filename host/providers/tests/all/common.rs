//! A real HTTP server on 127.0.0.1 that records what it receives and answers
//! from a queue of canned replies (the last one repeats forever), plus helpers
//! to build providers against it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_providers::{
    build_provider_with, CompletionRequest, HttpSettings, Message, Provider, ProviderConfig, Role,
};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            body: body.to_string(),
            headers: vec![],
            delay: Duration::ZERO,
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    replies: Vec<Reply>,
    requests: Vec<Recorded>,
}

pub struct TestServer {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    let reply = {
        let mut inner = inner.lock().unwrap();
        let n = inner.requests.len();
        inner.requests.push(recorded);
        let i = n.min(inner.replies.len() - 1);
        inner.replies[i].clone()
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = Response::new(Body::from(reply.body));
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in reply.headers {
        resp.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(&v).unwrap(),
        );
    }
    resp
}

impl TestServer {
    /// Serves `replies` in order (the last repeats) on a fresh port.
    pub async fn start(replies: Vec<Reply>) -> Self {
        assert!(!replies.is_empty());
        let inner = Arc::new(Mutex::new(Inner {
            replies,
            requests: vec![],
        }));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestServer {
            url: format!("http://{addr}"),
            inner,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn hits(&self) -> usize {
        self.inner.lock().unwrap().requests.len()
    }
}

/// A base URL on which nothing listens: bind a port, then drop the listener.
pub fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh, unique env var name holding a fresh key; returns (name, key).
pub fn fresh_key() -> (String, String) {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let var = format!("AOS_TEST_KEY_{}_{n}", std::process::id());
    let key = format!("test-key-{n}-secret");
    std::env::set_var(&var, &key);
    (var, key)
}

/// A unique env var name that is not set.
pub fn unset_key_var() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("AOS_TEST_KEY_UNSET_{}_{n}", std::process::id())
}

/// Fast retries for tests.
pub fn fast_http() -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        max_retries: 3,
        backoff_base: Duration::from_millis(5),
        backoff_cap: Duration::from_millis(50),
    }
}

pub fn provider(name: &str, base_url: &str, key_var: &str) -> Arc<dyn Provider> {
    provider_with(name, base_url, key_var, fast_http())
}

pub fn provider_with(
    name: &str,
    base_url: &str,
    key_var: &str,
    http: HttpSettings,
) -> Arc<dyn Provider> {
    let cfg = ProviderConfig {
        provider: name.to_string(),
        base_url: Some(base_url.to_string()),
        api_key_env: Some(key_var.to_string()),
        timeout: None,
        max_retries: None,
        stream: None,
    };
    build_provider_with(&cfg, http).expect("build provider")
}

pub fn msg(role: Role, content: &str) -> Message {
    Message::new(role, content)
}

/// System prompt, two user turns in a row, an assistant turn, a user turn.
pub fn conversation(model: &str) -> CompletionRequest {
    CompletionRequest {
        model: model.to_string(),
        messages: vec![
            msg(Role::System, "You are a test."),
            msg(Role::User, "first"),
            msg(Role::User, "second"),
            msg(Role::Assistant, "ok"),
            msg(Role::User, "go on"),
        ],
        max_tokens: Some(77),
        temperature: Some(0.5),
        syscalls: Default::default(),
        tools: false,
        pid: 1,
        on_text: None,
        on_progress: None,
    }
}

pub fn simple(model: &str) -> CompletionRequest {
    CompletionRequest {
        model: model.to_string(),
        messages: vec![msg(Role::User, "hello there")],
        ..Default::default()
    }
}

/// A syscall spec whose schema uses keywords some APIs lack
/// (`additionalProperties`, a nullable type, `const`, a `uri` format).
pub fn tool_spec(name: &str) -> aos_providers::SyscallSpec {
    aos_providers::SyscallSpec {
        name: name.into(),
        description: format!("{name} does things."),
        args_schema: serde_json::json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "minLength": 1},
                "mode": {"type": ["string", "null"], "enum": ["a", "b"]},
                "kind": {"const": "file"},
                "url": {"type": "string", "format": "uri"},
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true}
            },
            "required": ["path"],
            "additionalProperties": false
        }),
    }
}

/// [`conversation`] in native tool mode with two tools, then an assistant
/// message with some text and two native calls (ids `ids`), then their
/// results: the first a result, the second an error.
pub fn native_history_request(model: &str, ids: [&str; 2]) -> CompletionRequest {
    use aos_providers::ToolCall;
    let mut r = conversation(model);
    r.syscalls = vec![tool_spec("FS_READ"), tool_spec("FS_LIST")].into();
    r.tools = true;
    r.messages.push(Message {
        role: Role::Assistant,
        content: "Reading both.".into(),
        tool_calls: vec![
            ToolCall { id: ids[0].into(), name: "FS_READ".into(), arguments: r#"{"path":"a"}"#.into(), signature: None },
            ToolCall { id: ids[1].into(), name: "FS_LIST".into(), arguments: r#"{"path": "#.into(), signature: Some("c2ln".into()) },
        ],
        tool_call_id: None,
        is_error: false,
    });
    r.messages.push(Message { role: Role::Tool, content: "[RESULT FS_READ#1] hi".into(), tool_calls: vec![], tool_call_id: Some(ids[0].into()), is_error: false });
    r.messages.push(Message { role: Role::Tool, content: "[ERROR FS_LIST#2] invalid call".into(), tool_calls: vec![], tool_call_id: Some(ids[1].into()), is_error: true });
    r.messages.push(msg(Role::User, "[EVENT] later"));
    r
}
