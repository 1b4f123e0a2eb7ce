//! The egress proxy of `exec:net` sandboxes: the only way out of a sandbox
//! container, under the same policy as `NET_FETCH`.
//!
//! An `exec:net` container gets no network of its own (Docker network mode
//! `none`: only a loopback interface, no route anywhere). The kernel opens
//! one TCP listener *inside the container's network namespace*
//! (`127.0.0.1:3128` there, created by a short-lived host thread that
//! `setns(2)`s into it) and serves an HTTP proxy on it from the host:
//! `CONNECT host:port` for `https` (to port 443, or any port of a
//! destination the operator allow-listed), absolute-form requests
//! (`GET http://host/…`, any method) for plain `http`. `HTTP_PROXY`/`HTTPS_PROXY`
//! (and the lower-case forms, `ALL_PROXY`) point there. For every request
//! the proxy applies what the `wasi:http` hook (`lib.rs`) applies to `NET_FETCH`: the destination
//! host must be granted (`net` = any, `net:HOST` = that host; `exec:net`
//! alone grants none), it is resolved by the host and every address must be
//! public by the IANA registries (`addr.rs`) unless allow-listed (`[net]
//! allow`), and the connection goes to the address checked. Refusals are
//! answered `403` (or `400`/`502`/`504`) with the reason as the body, and
//! recorded so that `EXEC_CMD` appends them to the command's stderr.
//!
//! Since the listener is the container's only reachable endpoint, nothing
//! else — the host's loopback, the Docker bridge, private ranges, the
//! metadata address — can be reached directly, whatever the command does;
//! and the proxy is reachable from that one container only. Creating the
//! listener needs the kernel to run as root next to a local Docker engine;
//! otherwise an `exec:net` command fails with the reason (it never gets an
//! unfiltered network instead).

use std::convert::Infallible;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::{TcpListener, TcpStream};
use hyper_util::rt::TokioIo;

use aos_abi::CapabilitySet;

use crate::{host_granted, vet, NetPolicy, Refused};

/// Port of the proxy inside the sandbox's network namespace.
pub const PROXY_PORT: u16 = 3128;
/// Connections one sandbox may have open through the proxy at once.
const MAX_CONNECTIONS: usize = 64;
/// A tunnel or forwarded exchange with no traffic for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// What a sandbox may reach: the process's grants and the kernel's policy.
#[derive(Clone)]
pub struct Egress {
    pub(crate) caps: CapabilitySet,
    pub(crate) policy: Arc<NetPolicy>,
}

impl Egress {
    pub fn new(caps: CapabilitySet, policy: Arc<NetPolicy>) -> Egress {
        Egress { caps, policy }
    }
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress").field("caps", &self.caps.to_string()).finish_non_exhaustive()
    }
}

impl PartialEq for Egress {
    fn eq(&self, other: &Self) -> bool {
        self.caps == other.caps && Arc::ptr_eq(&self.policy, &other.policy)
    }
}
impl Eq for Egress {}

/// The environment a sandbox's commands get to find the proxy.
pub fn proxy_env() -> Vec<String> {
    let url = format!("http://127.0.0.1:{PROXY_PORT}");
    ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .map(|k| format!("{k}={url}"))
        .chain(["NO_PROXY=".to_string(), "no_proxy=".to_string()])
        .collect()
}

/// A running proxy; dropping it stops it and every connection through it.
pub struct Proxy {
    task: tokio::task::JoinHandle<()>,
    refusals: Arc<Mutex<Vec<String>>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Refusals since the last call, oldest first.
    pub fn take_refusals(&self) -> Vec<String> {
        std::mem::take(&mut *self.refusals.lock())
    }
}

/// Why the proxy could not be set up.
pub fn unavailable(why: &str) -> aos_abi::SyscallError {
    aos_abi::SyscallError::Internal(format!(
        "exec:net cannot be provided: {why}. Sandbox commands reach the network only through the kernel's \
         egress proxy inside the sandbox's network namespace, which needs the kernel to run as root on the \
         Docker host (a local engine); the command was not run"
    ))
}

/// Opens the proxy's listener in the network namespace of process `pid`
/// (the container's init), after checking that `pid` belongs to container
/// `container_id` (so a pid from another pid namespace cannot send the
/// listener elsewhere).
pub fn listen_in(pid: i64, container_id: &str) -> Result<std::net::TcpListener, aos_abi::SyscallError> {
    // SAFETY: no arguments, cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(unavailable("the kernel does not run as root"));
    }
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| unavailable(&format!("cannot read /proc/{pid}/cgroup ({e}); is the Docker engine on another host?")))?;
    if !cgroup.contains(container_id) {
        return Err(unavailable(&format!(
            "process {pid} reported by Docker is not the sandbox's (another pid namespace?)"
        )));
    }
    let ns = File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| unavailable(&format!("cannot open the sandbox's network namespace: {e}")))?;
    let listener = std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on this short-lived thread only; it ends right
            // after binding, so no other work runs in the sandbox's namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            std::net::TcpListener::bind(("127.0.0.1", PROXY_PORT))
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
    })
    .map_err(|e| unavailable(&format!("cannot listen inside the sandbox's network namespace: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| unavailable(&format!("cannot set up the proxy listener: {e}")))?;
    Ok(listener)
}

/// Serves the proxy for `pid` on `listener` until the returned handle is dropped.
pub fn serve(listener: std::net::TcpListener, egress: Egress, pid: u64) -> std::io::Result<Proxy> {
    let listener = TcpListener::from_std(listener)?;
    let refusals: Arc<Mutex<Vec<String>>> = Default::default();
    let ctx = Arc::new(Ctx { egress, pid, refusals: refusals.clone() });
    let task = tokio::spawn(async move {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        // Owned here: aborting this task drops the set, which aborts every connection.
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            };
            let Ok((stream, _)) = accepted else { continue };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tracing::info!(target: "aos::egress", pid = ctx.pid, "too many proxy connections; refusing one");
                continue;
            };
            let ctx = ctx.clone();
            conns.spawn(async move {
                let _permit = permit;
                let svc = hyper::service::service_fn(move |req| handle(req, ctx.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Ok(Proxy { task, refusals })
}

struct Ctx {
    egress: Egress,
    pid: u64,
    refusals: Arc<Mutex<Vec<String>>>,
}

type Body = BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, msg: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(http::header::CONNECTION, "close")
        .body(Full::new(Bytes::from(format!("aos egress proxy: {msg}\n"))).map_err(|never| match never {}).boxed())
        .expect("a valid response")
}

impl Ctx {
    fn refuse(&self, what: &str, status: StatusCode, note: String) -> Response<Body> {
        let line = format!("{what}: {note}");
        tracing::info!(target: "aos::egress", pid = self.pid, "refused {line}");
        self.refusals.lock().push(line);
        text(status, note)
    }

    fn refused(&self, what: &str, r: Refused) -> Response<Body> {
        use wasmtime_wasi_http::Error as E;
        let status = match r.code {
            E::DestinationIpProhibited | E::HttpRequestDenied => StatusCode::FORBIDDEN,
            E::DnsTimeout | E::ConnectionTimeout => StatusCode::GATEWAY_TIMEOUT,
            E::HttpRequestUriInvalid => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        };
        self.refuse(what, status, r.note)
    }

    /// Grant, address policy and connection, as for NET_FETCH. A tunnel
    /// (`CONNECT`) may only go to port 443 unless the destination is allow-listed.
    async fn connect(&self, what: &str, host: &str, port: u16, tunnel: bool) -> Result<TcpStream, Response<Body>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        if !host_granted(&self.egress.caps, &bare) {
            return Err(self.refuse(
                what,
                StatusCode::FORBIDDEN,
                format!(
                    "capability `net:{bare}` not granted (commands reach only the hosts the process holds `net` or \
                     `net:HOST` for)"
                ),
            ));
        }
        let config = &self.egress.policy.config;
        let addr = vet(&bare, port, config).await.map_err(|r| self.refused(what, r))?;
        if tunnel && port != 443 && !config.host_allowed(&bare) && !config.ip_allowed(addr.ip()) {
            return Err(self.refuse(
                what,
                StatusCode::FORBIDDEN,
                format!(
                    "CONNECT to port {port} refused: tunnels go to port 443 (https) unless the operator allow-lists \
                     the destination (`[net] allow`)"
                ),
            ));
        }
        match tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(self.refuse(what, StatusCode::BAD_GATEWAY, format!("cannot connect to `{host}` ({addr}): {e}"))),
            Err(_) => Err(self.refuse(
                what,
                StatusCode::GATEWAY_TIMEOUT,
                format!("connecting to `{host}` ({addr}) timed out after {:.1} s", config.connect_timeout.as_secs_f64()),
            )),
        }
    }
}

async fn handle(req: Request<Incoming>, ctx: Arc<Ctx>) -> Result<Response<Body>, Infallible> {
    if req.method() == Method::CONNECT {
        return Ok(tunnel(req, ctx).await);
    }
    Ok(forward(req, ctx).await)
}

/// `CONNECT host:port`: a byte tunnel to the vetted address.
async fn tunnel(req: Request<Incoming>, ctx: Arc<Ctx>) -> Response<Body> {
    let Some(auth) = req.uri().authority().cloned() else {
        return ctx.refuse("CONNECT", StatusCode::BAD_REQUEST, "CONNECT needs host:port".into());
    };
    let what = format!("CONNECT {auth}");
    let Some(port) = auth.port_u16() else {
        return ctx.refuse(&what, StatusCode::BAD_REQUEST, "CONNECT needs host:port".into());
    };
    let mut upstream = match ctx.connect(&what, auth.host(), port, true).await {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(up) => {
                let mut client = TokioIo::new(up);
                let _ = splice(&mut client, &mut upstream).await;
            }
            Err(e) => tracing::debug!(target: "aos::egress", "CONNECT upgrade failed: {e}"),
        }
    });
    Response::new(Full::new(Bytes::new()).map_err(|never| match never {}).boxed())
}

/// Copies both ways until both sides are done or nothing moves for [`IDLE_TIMEOUT`].
async fn splice<A, B>(a: &mut A, b: &mut B) -> std::io::Result<()>
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let (mut b1, mut b2) = (vec![0u8; 16 << 10], vec![0u8; 16 << 10]);
    let (mut a_done, mut b_done) = (false, false);
    while !(a_done && b_done) {
        let step = tokio::time::timeout(IDLE_TIMEOUT, async {
            tokio::select! {
                n = ar.read(&mut b1), if !a_done => match n? {
                    0 => { a_done = true; bw.shutdown().await }
                    n => bw.write_all(&b1[..n]).await,
                },
                n = br.read(&mut b2), if !b_done => match n? {
                    0 => { b_done = true; aw.shutdown().await }
                    n => aw.write_all(&b2[..n]).await,
                },
            }
        })
        .await;
        match step {
            Err(_) => return Ok(()),
            Ok(r) => r?,
        }
    }
    Ok(())
}

/// An absolute-form request (`GET http://host/path`): sent on to the vetted
/// address in origin form, the response streamed back.
async fn forward(mut req: Request<Incoming>, ctx: Arc<Ctx>) -> Response<Body> {
    let uri = req.uri().clone();
    let what = format!("{} {uri}", req.method());
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return ctx.refuse(
                &what,
                StatusCode::BAD_REQUEST,
                format!("scheme `{other}` cannot be proxied this way (https goes through CONNECT)"),
            )
        }
        None => {
            return ctx.refuse(
                &what,
                StatusCode::BAD_REQUEST,
                "this is a proxy: send absolute URLs (http://host/path) or CONNECT host:port".into(),
            )
        }
    }
    let Some(host) = uri.host().map(str::to_string) else {
        return ctx.refuse(&what, StatusCode::BAD_REQUEST, "the URL has no host".into());
    };
    let port = uri.port_u16().unwrap_or(80);
    let upstream = match ctx.connect(&what, &host, port, false).await {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let (mut sender, conn) = match hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(upstream)).await {
        Ok(x) => x,
        Err(e) => return ctx.refuse(&what, StatusCode::BAD_GATEWAY, format!("talking to `{host}` failed: {e}")),
    };
    tokio::spawn(async move {
        let _ = tokio::time::timeout(IDLE_TIMEOUT * 2, conn).await;
    });
    // Origin form on the wire; hop-by-hop and proxy headers dropped.
    *req.uri_mut() = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").parse().expect("a valid path");
    let h = req.headers_mut();
    for name in ["proxy-connection", "proxy-authorization", "connection", "keep-alive", "te", "trailer", "upgrade"] {
        h.remove(name);
    }
    if !h.contains_key(http::header::HOST) {
        if let Ok(v) = http::HeaderValue::from_str(uri.authority().map(|a| a.as_str()).unwrap_or(&host)) {
            h.insert(http::header::HOST, v);
        }
    }
    match tokio::time::timeout(ctx.egress.policy.config.read_timeout, sender.send_request(req)).await {
        Ok(Ok(resp)) => resp.map(|b| b.boxed()),
        Ok(Err(e)) => ctx.refuse(&what, StatusCode::BAD_GATEWAY, format!("`{host}` failed: {e}")),
        Err(_) => ctx.refuse(
            &what,
            StatusCode::GATEWAY_TIMEOUT,
            format!("`{host}` sent no response within {:.1} s", ctx.egress.policy.config.read_timeout.as_secs_f64()),
        ),
    }
}
