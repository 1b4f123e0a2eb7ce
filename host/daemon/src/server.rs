//! The daemon proper: builds the kernel (exactly like `aos run`, through the
//! composition root `stack::build`), attaches
//! the journal, runs crash recovery (then deletes archived journals beyond
//! `[retention]`), and serves the control API on
//! `$AOS_HOME/aos.sock` (mode 0600) until `POST /v1/shutdown`, SIGTERM or
//! SIGINT. It also serves webhook paths (`SYS_REGISTER_WEBHOOK`) over HTTP on
//! a loopback TCP address (`[webhooks]` in aos.toml): body size capped (413),
//! then `Kernel::webhook_deliver` checks the secret, wakes the process and
//! waits for its `SYS_WEBHOOK_REPLY` (or a timeout, 504).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc, Notify};

use aos_kernel::{Budgets, Journal, Kernel, KernelError, KernelEvent, SpawnRequest};

use crate::api::*;
use crate::config::Config;
use crate::journal;
use crate::Paths;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) kernel: Kernel,
    pub(crate) cfg: Arc<Config>,
    pub(crate) paths: Arc<Paths>,
    pub(crate) started_at_ms: u64,
    /// Whether aos.toml existed when the config was loaded.
    pub(crate) file_present: bool,
    started: Instant,
    shutdown: Arc<Notify>,
    recovery: Arc<Vec<String>>,
    journal: Arc<journal::FileJournal>,
    control_tcp: Option<String>,
    webhooks: Option<String>,
}

struct AppErr(StatusCode, String);

impl IntoResponse for AppErr {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<KernelError> for AppErr {
    fn from(e: KernelError) -> Self {
        let code = match &e {
            KernelError::NoSuchProcess(_) | KernelError::Reaped(_) => StatusCode::NOT_FOUND,
            KernelError::NotRunning { .. } => StatusCode::CONFLICT,
            KernelError::Limit(_) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        };
        AppErr(code, one_line(&e))
    }
}

/// An error and its sources on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        let t = x.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = x.source();
    }
    s.replace('\n', " ")
}

fn bad(msg: impl Into<String>) -> AppErr {
    AppErr(StatusCode::BAD_REQUEST, msg.into())
}

/// Runs the daemon in this process until it is told to stop.
pub async fn run_foreground(paths: Paths) -> Result<()> {
    let cfg = Config::load(paths.home())?;
    std::fs::create_dir_all(paths.logs()).context("cannot create the logs directory")?;
    let client = crate::client::Client::new(paths.socket());
    if client.ping().await {
        let pid = std::fs::read_to_string(paths.pid_file()).unwrap_or_default();
        anyhow::bail!("a kernel is already running for {} (pid {})", paths.home().display(), pid.trim());
    }
    let _ = std::fs::remove_file(paths.socket());

    let stack = crate::stack::build(paths.home(), &cfg).await?;
    let kernel = stack.kernel.clone();
    let started_at_ms = aos_kernel::process::now_ms();

    // The webhook listener, bound before recovery so restored routes get its URL.
    let webhook_listener = match cfg.webhooks.listen_addr()? {
        Some(addr) => {
            // With port 0, take the port of the previous run again if it is
            // free, so registered webhook URLs survive a restart.
            let remembered = (addr.port() == 0)
                .then(|| std::fs::read_to_string(paths.webhook_port()).ok()?.trim().parse::<u16>().ok())
                .flatten()
                .filter(|p| *p != 0);
            let previous = match remembered {
                Some(port) => tokio::net::TcpListener::bind((addr.ip(), port)).await.ok(),
                None => None,
            };
            let l = match previous {
                Some(l) => l,
                None => tokio::net::TcpListener::bind(addr).await.with_context(|| {
                    format!("cannot listen for webhooks on {addr}; change `webhooks.listen` in aos.toml or AOS_WEBHOOK_LISTEN")
                })?,
            };
            let _ = std::fs::write(paths.webhook_port(), format!("{}\n", l.local_addr()?.port()));
            let url = format!("http://{}", l.local_addr()?);
            kernel.set_webhook_base_url(Some(url.clone()));
            Some((l, url))
        }
        None => None,
    };

    // Journal: read what earlier runs left (a snapshot and its tail), start
    // this run's segment, then rebuild the processes in the kernel.
    let opts = cfg.journal.to_options(&cfg.retention);
    let dir = paths.journal();
    let journal = tokio::task::spawn_blocking(move || journal::FileJournal::open(&dir, opts))
        .await
        .context("the journal reader stopped")??;
    kernel.attach_journal(journal.clone());
    let replay = journal.replay().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut recovery = journal.report.clone();
    recovery.extend(kernel.recover(replay).await);
    for line in &recovery {
        tracing::info!("recovery: {line}");
    }

    // The socket: created with mode 0600 (umask while binding, then chmod).
    let listener = {
        // SAFETY: umask only changes this process's file-creation mask.
        let old = unsafe { libc::umask(0o177) };
        let l = tokio::net::UnixListener::bind(paths.socket());
        unsafe { libc::umask(old) };
        l.with_context(|| format!("cannot create the control socket {}", paths.socket().display()))?
    };
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(paths.socket(), std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::write(paths.pid_file(), format!("{}\n", std::process::id())).context("cannot write the pid file")?;

    // The optional TCP listener (loopback only) and its bearer token.
    let tcp = match cfg.control.tcp_addr()? {
        Some(addr) => {
            let token = new_token()?;
            write_private(&paths.control_token(), &format!("{token}\n"))?;
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (`[control] tcp`)"))?;
            let bound = l.local_addr()?;
            Some((l, bound, token))
        }
        None => {
            let _ = std::fs::remove_file(paths.control_token());
            None
        }
    };

    let cfg_webhooks = cfg.webhooks.clone();
    let shutdown = Arc::new(Notify::new());
    let state = AppState {
        kernel: kernel.clone(),
        cfg: Arc::new(cfg),
        file_present: paths.config().exists(),
        paths: Arc::new(paths.clone()),
        started_at_ms,
        started: Instant::now(),
        shutdown: shutdown.clone(),
        recovery: Arc::new(recovery),
        journal: journal.clone(),
        control_tcp: tcp.as_ref().map(|t| t.1.to_string()),
        webhooks: webhook_listener.as_ref().map(|(_, u)| u.clone()),
    };
    let app = router(state);
    let stop_tcp = Arc::new(Notify::new());
    let tcp_server = tcp.map(|(listener, bound, token)| {
        tracing::info!("control API also on http://{bound} (bearer token in {})", paths.control_token().display());
        let app = app.clone().layer(axum::middleware::from_fn_with_state(Arc::<str>::from(token), require_token));
        let stop = stop_tcp.clone();
        tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(async move { stop.notified().await }).await
        })
    });
    let webhook_server = webhook_listener.map(|(l, url)| {
        tracing::info!("webhooks on {url}");
        let app = webhook_router(WebhookState {
            kernel: kernel.clone(),
            max_body: cfg_webhooks.max_body_bytes,
            timeout: Duration::from_secs_f64(cfg_webhooks.timeout_secs.clamp(0.001, 86_400.0)),
        });
        tokio::spawn(async move { axum::serve(l, app).await })
    });
    tracing::info!("aos kernel {} listening on {} (pid {})", env!("CARGO_PKG_VERSION"), paths.socket().display(), std::process::id());

    let stop = Arc::new(Notify::new());
    let stop2 = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop2.notified().await })
            .await
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let why = tokio::select! {
        _ = shutdown.notified() => "shutdown requested",
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!("aos kernel stopping ({why}); unfinished processes stay in the journal");
    stop.notify_one();
    stop_tcp.notify_one();
    if let Some(w) = webhook_server {
        w.abort();
    }
    // Streams (logs -f, wait, events) may stay open: give them a moment, then go.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    if let Some(t) = tcp_server {
        let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
    }
    let _ = std::fs::remove_file(paths.control_token());
    // Remove this kernel's sandbox containers.
    let _ = tokio::time::timeout(Duration::from_secs(20), kernel.shutdown()).await;
    // Traces still queued go to the collector (at most its export timeout).
    stack.flush_traces().await;
    // What is still queued goes to disk.
    journal.close();
    let _ = std::fs::remove_file(paths.socket());
    let _ = std::fs::remove_file(paths.pid_file());
    Ok(())
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/shutdown", post(shutdown))
        .route("/v1/spawn", post(spawn))
        .route("/v1/ps", get(ps))
        .route("/v1/procs/{pid}", get(info))
        .route("/v1/procs/{pid}/logs", get(logs))
        .route("/v1/procs/{pid}/kill", post(kill))
        .route("/v1/procs/{pid}/stdin", post(stdin))
        .route("/v1/procs/{pid}/message", post(message))
        .route("/v1/procs/{pid}/wait", get(wait))
        .route("/v1/events", get(events))
        .route("/v1/config", get(crate::introspect::config))
        .route("/v1/webhooks", get(crate::introspect::webhooks))
        .route("/v1/approvals", get(approvals))
        .route("/v1/approvals/{id}/approve", post(approve))
        .route("/v1/approvals/{id}/deny", post(deny))
        .with_state(state)
}

async fn status(State(s): State<AppState>) -> Json<StatusInfo> {
    let ps = s.kernel.ps();
    let live = ps.iter().filter(|p| !p.status.is_terminal()).count();
    let paused = ps.iter().filter(|p| matches!(p.status, aos_kernel::ProcessStatus::Paused { .. })).count();
    Json(StatusInfo {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        home: s.paths.home.clone(),
        started_at_ms: s.started_at_ms,
        uptime_secs: s.started.elapsed().as_secs(),
        processes: ProcessCounts { total: ps.len(), live, exited: ps.len() - live, paused },
        recovery: s.recovery.as_ref().clone(),
        control_tcp: s.control_tcp.clone(),
        webhooks: s.webhooks.clone(),
        journal: Some(s.journal.status()),
    })
}

#[derive(Clone)]
struct WebhookState {
    kernel: Kernel,
    max_body: usize,
    timeout: Duration,
}

/// Every path and method goes to [`webhook`].
fn webhook_router(state: WebhookState) -> Router {
    Router::new().fallback(webhook).with_state(state)
}

fn webhook_error(code: u16, msg: String) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(ErrorBody { error: msg })).into_response()
}

/// One webhook request: size cap, then the kernel authenticates, delivers and waits for the reply.
async fn webhook(State(w): State<WebhookState>, req: axum::extract::Request) -> Response {
    let too_large = || {
        webhook_error(413, format!("the request body is larger than {} bytes (webhooks.max_body_bytes)", w.max_body))
    };
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > w.max_body as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, w.max_body).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    let headers = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let wreq = aos_kernel::WebhookRequest {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        headers,
        body: body.to_vec(),
    };
    match w.kernel.webhook_deliver(wreq, w.timeout).await {
        Ok(r) => {
            let code = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], r.body).into_response()
        }
        Err(e) => webhook_error(e.http_status(), e.to_string()),
    }
}

/// Requests on the TCP listener must carry `Authorization: Bearer TOKEN`.
async fn require_token(
    State(token): State<Arc<str>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
        return AppErr(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: send `Authorization: Bearer <token>` with the token from $AOS_HOME/control.token"
                .into(),
        )
        .into_response();
    }
    next.run(req).await
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 32 random bytes from the OS, as hex.
pub fn new_token() -> Result<String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("cannot read /dev/urandom for the control token")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Writes a file only its owner can read (created with mode 0600).
pub fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

async fn shutdown(State(s): State<AppState>) -> Json<serde_json::Value> {
    s.shutdown.notify_one();
    Json(serde_json::json!({"ok": true}))
}

async fn spawn(State(s): State<AppState>, Json(b): Json<SpawnBody>) -> Result<Json<SpawnReply>, AppErr> {
    let cfg = &s.cfg;
    // Default: the embedded offline model.
    let (provider, model, base_url) =
        cfg.resolve_model(b.provider.as_deref(), b.model.as_deref(), b.base_url.as_deref()).map_err(|e| bad(e.to_string()))?;
    let grants = b.grants.clone().unwrap_or_else(|| cfg.default_grants.clone());
    let caps = s.kernel.parse_grants(&grants).map_err(|e| bad(one_line(&e)))?;
    if let Some(w) = &b.workspace {
        if !w.is_absolute() {
            return Err(bad(format!("the workspace must be an absolute path, not {}", w.display())));
        }
    }
    let req = SpawnRequest {
        task: b.task,
        role: b.role.unwrap_or_else(|| "a careful, autonomous assistant".into()),
        provider,
        model,
        base_url,
        caps,
        budgets: Budgets {
            max_steps: b.max_steps.or(cfg.budgets.max_steps),
            max_tokens: b.max_tokens.or(cfg.budgets.max_tokens),
            max_wall_time: b.max_seconds.or(cfg.budgets.max_seconds).map(Duration::from_secs),
        },
        workspace: b.workspace,
        pipe_to: None,
        parent: None,
        tool_mode: b.tool_mode,
        approvals: Some(cfg.approvals.policy(b.approve.as_deref()).map_err(|e| bad(format!("{e:#}")))?),
    };
    let pid = s.kernel.spawn(req).await?;
    // Acknowledged once journalled (a moment; not while the journal fails).
    s.kernel.sync(ACK_WAIT).await;
    let workspace = s.kernel.info(pid)?.workspace;
    Ok(Json(SpawnReply { pid, workspace }))
}

/// How long an acknowledgement waits for what it queued to be journalled.
const ACK_WAIT: Duration = Duration::from_secs(2);

/// `{"ok": true}` once what was queued is durable; with a `warning` when
/// the journal cannot be written now (it is queued and will be written;
/// the control API does not hang on a failing disk).
async fn ack(s: &AppState) -> serde_json::Value {
    if s.kernel.sync(ACK_WAIT).await {
        return serde_json::json!({"ok": true});
    }
    let why = s.kernel.durability().and_then(|d| d.fault).map(|f| f.error).unwrap_or_else(|| "the journal is slow".into());
    serde_json::json!({"ok": true, "warning": format!("queued, but not journalled yet: {why}")})
}

async fn ps(State(s): State<AppState>) -> Json<Vec<aos_kernel::ProcessInfo>> {
    Json(s.kernel.ps())
}

async fn info(State(s): State<AppState>, UrlPath(pid): UrlPath<u64>) -> Result<Json<aos_kernel::ProcessInfo>, AppErr> {
    Ok(Json(s.kernel.info(pid)?))
}

/// Kills `pid` and its live descendants. Like `stdin`/`message`, a process
/// that has ended (with nothing left running under it) is a 409 saying how it ended.
async fn kill(State(s): State<AppState>, UrlPath(pid): UrlPath<u64>) -> Result<Json<KillReply>, AppErr> {
    let killed = s.kernel.kill(pid)?;
    if killed.is_empty() {
        if let Some(status) = s.kernel.exit_status(pid)? {
            return Err(KernelError::NotRunning { pid, status }.into());
        }
    }
    Ok(Json(KillReply { killed }))
}

async fn approvals(State(s): State<AppState>) -> Json<Vec<aos_kernel::approval::PendingApproval>> {
    Json(s.kernel.pending_approvals())
}

async fn approve(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<u64>,
    body: Option<Json<crate::api::ApproveBody>>,
) -> Result<Json<aos_kernel::approval::PendingApproval>, AppErr> {
    let always = body.is_some_and(|b| b.always);
    answer(&s, id, aos_kernel::approval::Answer::Approve { always })
}

async fn deny(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<u64>,
    body: Option<Json<crate::api::DenyBody>>,
) -> Result<Json<aos_kernel::approval::PendingApproval>, AppErr> {
    let reason = body.and_then(|b| b.0.reason);
    answer(&s, id, aos_kernel::approval::Answer::Deny { reason })
}

fn answer(
    s: &AppState,
    id: u64,
    answer: aos_kernel::approval::Answer,
) -> Result<Json<aos_kernel::approval::PendingApproval>, AppErr> {
    s.kernel.answer_approval(id, answer).map(Json).map_err(|e| AppErr(StatusCode::NOT_FOUND, e.to_string()))
}

async fn stdin(
    State(s): State<AppState>,
    UrlPath(pid): UrlPath<u64>,
    Json(b): Json<TextBody>,
) -> Result<Json<serde_json::Value>, AppErr> {
    s.kernel.send_stdin(pid, b.text)?;
    Ok(Json(ack(&s).await))
}

async fn message(
    State(s): State<AppState>,
    UrlPath(pid): UrlPath<u64>,
    Json(b): Json<TextBody>,
) -> Result<Json<serde_json::Value>, AppErr> {
    s.kernel.send_message(pid, b.text)?;
    Ok(Json(ack(&s).await))
}

async fn wait(State(s): State<AppState>, UrlPath(pid): UrlPath<u64>) -> Result<Json<aos_kernel::ExitStatus>, AppErr> {
    Ok(Json(s.kernel.wait(pid).await?))
}

#[derive(Deserialize)]
struct LogsQuery {
    #[serde(default)]
    follow: Option<String>,
}

/// A streamed NDJSON body fed by a channel.
fn ndjson(rx: mpsc::Receiver<KernelEvent>) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let ev = rx.recv().await?;
        // The kernel's line codec: clients read every line back, however deeply nested.
        let line = aos_kernel::codec::encode(&ev).unwrap_or_default();
        Some((Ok::<Bytes, Infallible>(Bytes::from(line)), rx))
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn logs(
    State(s): State<AppState>,
    UrlPath(pid): UrlPath<u64>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, AppErr> {
    let follow = matches!(q.follow.as_deref(), Some("1" | "true" | "yes"));
    // Subscribe before reading the log, so nothing falls between the two.
    let mut live = s.kernel.subscribe();
    let log = s.kernel.logs(pid)?;
    let exited = s.kernel.exit_status(pid)?;
    let kernel = s.kernel.clone();
    let (tx, rx) = mpsc::channel::<KernelEvent>(256);
    tokio::spawn(async move {
        let mut next_seq = 0u64;
        for entry in log {
            next_seq = entry.seq + 1;
            if tx.send(KernelEvent::Entry { entry }).await.is_err() {
                return;
            }
        }
        if let Some(status) = exited {
            let _ = tx.send(KernelEvent::Exited { pid, status }).await;
            return;
        }
        if !follow {
            return;
        }
        loop {
            let ev = match live.recv().await {
                Ok(ev) => ev,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Catch up from the log itself.
                    for entry in kernel.logs(pid).unwrap_or_default() {
                        if entry.seq >= next_seq {
                            next_seq = entry.seq + 1;
                            if tx.send(KernelEvent::Entry { entry }).await.is_err() {
                                return;
                            }
                        }
                    }
                    if let Ok(Some(status)) = kernel.exit_status(pid) {
                        let _ = tx.send(KernelEvent::Exited { pid, status }).await;
                        return;
                    }
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let (mine, last) = match &ev {
                KernelEvent::Entry { entry } => {
                    let keep = entry.pid == pid && entry.seq >= next_seq;
                    if keep {
                        next_seq = entry.seq + 1;
                    }
                    (keep, false)
                }
                KernelEvent::Status { pid: p, .. }
                | KernelEvent::Compacted { pid: p, .. }
                | KernelEvent::ContextShrunk { pid: p, .. }
                | KernelEvent::ReplyDelta { pid: p, .. }
                | KernelEvent::ModelProgress { pid: p, .. } => (*p == pid, false),
                KernelEvent::Exited { pid: p, .. } => (*p == pid, *p == pid),
                KernelEvent::Spawned { info } => (info.parent == Some(pid), false),
                // Queue bookkeeping is for the journal, not for logs.
                KernelEvent::Delivered { .. }
                | KernelEvent::Consumed { .. }
                | KernelEvent::Scheduled { .. }
                | KernelEvent::Fired { .. }
                | KernelEvent::Exiting { .. }
                | KernelEvent::Counters { .. }
                | KernelEvent::WebhookRegistered { .. }
                // Approvals show as the `approval` status; `aos approvals` lists them.
                | KernelEvent::ApprovalAsked { .. }
                | KernelEvent::ApprovalGranted { .. }
                | KernelEvent::ApprovalRule { .. }
                | KernelEvent::Reaped { .. } => (false, false),
            };
            if mine && tx.send(ev).await.is_err() {
                return;
            }
            if last {
                return;
            }
        }
    });
    Ok(ndjson(rx))
}

async fn events(State(s): State<AppState>) -> Response {
    let mut live = s.kernel.subscribe();
    let (tx, rx) = mpsc::channel::<KernelEvent>(1024);
    tokio::spawn(async move {
        loop {
            match live.recv().await {
                Ok(ev) => {
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    ndjson(rx)
}
