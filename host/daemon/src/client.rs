//! Client of the control API: HTTP/1.1 (hyper) over the Unix socket, or over
//! the optional loopback TCP listener with its bearer token
//! (`AOS_CONTROL_URL`, `AOS_CONTROL_TOKEN`).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;

use crate::api::ErrorBody;

/// The daemon is not running (no socket, or nobody listening on it).
#[derive(Debug)]
pub struct NotRunning;

impl std::fmt::Display for NotRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::NOT_RUNNING)
    }
}
impl std::error::Error for NotRunning {}

/// An error answered by the daemon (its one-line message).
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for ApiError {}

#[derive(Debug, Clone)]
pub struct Client {
    sock: PathBuf,
    /// `HOST:PORT` and bearer token of the TCP listener, when used instead of the socket.
    tcp: Option<(String, String)>,
}

/// Either kind of connection to the daemon.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

impl Client {
    pub fn new(sock: impl Into<PathBuf>) -> Client {
        Client { sock: sock.into(), tcp: None }
    }

    /// The TCP listener at `addr` (`HOST:PORT`), authenticating with `token`.
    pub fn tcp(addr: impl Into<String>, token: impl Into<String>) -> Client {
        Client { sock: PathBuf::new(), tcp: Some((addr.into(), token.into())) }
    }

    /// What the CLI uses: the TCP listener if `AOS_CONTROL_URL`
    /// (`http://127.0.0.1:PORT`) is set — with `AOS_CONTROL_TOKEN`, else the
    /// token in `$AOS_HOME/control.token` — otherwise the Unix socket.
    pub fn from_env(paths: &crate::Paths) -> Result<Client> {
        let Some(url) = std::env::var("AOS_CONTROL_URL").ok().filter(|u| !u.is_empty()) else {
            return Ok(Client::new(paths.socket()));
        };
        let addr = url
            .strip_prefix("http://")
            .map(|a| a.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| anyhow!("AOS_CONTROL_URL={url:?} must look like http://127.0.0.1:7878"))?;
        let token = match std::env::var("AOS_CONTROL_TOKEN").ok().filter(|t| !t.is_empty()) {
            Some(t) => t,
            None => std::fs::read_to_string(paths.control_token())
                .map(|t| t.trim().to_string())
                .with_context(|| {
                    format!(
                        "AOS_CONTROL_URL is set but there is no token: start the kernel with `[control] tcp` \
                         set (`aos kernel start`), or set AOS_CONTROL_TOKEN, or make {} readable",
                        paths.control_token().display()
                    )
                })?,
        };
        Ok(Client::tcp(addr, token))
    }

    pub fn socket(&self) -> &Path {
        &self.sock
    }

    async fn connect(&self) -> Result<Box<dyn Io>> {
        if let Some((addr, _)) = &self.tcp {
            return match tokio::net::TcpStream::connect(addr.as_str()).await {
                Ok(s) => Ok(Box::new(s)),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(NotRunning.into()),
                Err(e) => Err(e).with_context(|| format!("cannot connect to the kernel at {addr}")),
            };
        }
        let stream = match UnixStream::connect(&self.sock).await {
            Ok(s) => s,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
                return Err(NotRunning.into())
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(anyhow!(
                    "permission denied connecting to {}: the kernel there belongs to another user",
                    self.sock.display()
                ))
            }
            Err(e) => return Err(e).with_context(|| format!("cannot connect to {}", self.sock.display())),
        };
        Ok(Box::new(stream))
    }

    async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<hyper::Response<Incoming>> {
        let stream = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("the kernel's control socket did not answer HTTP")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let has_body = body.is_some();
        let mut req = Request::builder().method(method).uri(path).header("host", "aos");
        if let Some((_, token)) = &self.tcp {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        if has_body {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let resp = sender.send_request(req).await.map_err(|e| {
            if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
                anyhow!("the kernel closed the connection (is it shutting down? see its log)")
            } else {
                anyhow!("control API request failed: {e}")
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|e| e.error)
            .unwrap_or_else(|_| format!("the kernel answered {status}: {}", String::from_utf8_lossy(&bytes).trim()));
        Err(ApiError { status: status.as_u16(), message }.into())
    }

    async fn json<T: DeserializeOwned>(resp: hyper::Response<Incoming>) -> Result<T> {
        let bytes = resp.into_body().collect().await.context("reading the kernel's answer")?.to_bytes();
        aos_kernel::codec::decode(&bytes).context("the kernel's answer is not the expected JSON")
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Self::json(self.send(Method::GET, path, None).await?).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        Self::json(self.send(Method::POST, path, Some(serde_json::to_vec(body)?)).await?).await
    }

    /// A newline-delimited JSON stream.
    pub async fn stream(&self, path: &str) -> Result<LineStream> {
        let resp = self.send(Method::GET, path, None).await?;
        Ok(LineStream { body: resp.into_body(), buf: BytesMut::new(), done: false })
    }

    /// Whether a daemon answers on the socket.
    pub async fn ping(&self) -> bool {
        self.get::<crate::api::StatusInfo>("/v1/status").await.is_ok()
    }
}

/// Lines of a streamed answer.
pub struct LineStream {
    body: Incoming,
    buf: BytesMut,
    done: bool,
}

impl LineStream {
    /// The next line (without its newline), or `None` at the end of the stream.
    pub async fn next_line(&mut self) -> Result<Option<String>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf.split_to(i + 1);
                let s = String::from_utf8_lossy(&line[..i]).into_owned();
                if s.trim().is_empty() {
                    continue;
                }
                return Ok(Some(s));
            }
            if self.done {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let rest = self.buf.split();
                return Ok(Some(String::from_utf8_lossy(&rest).into_owned()));
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            self.buf.extend_from_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
                Some(Err(e)) => return Err(anyhow!("the kernel's stream broke: {e}")),
                None => self.done = true,
            }
        }
    }

    /// The next line parsed as JSON (the kernel's codec: any nesting depth).
    pub async fn next_json<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        match self.next_line().await? {
            Some(l) => Ok(Some(aos_kernel::codec::decode_str(&l).with_context(|| format!("bad line from the kernel: {l}"))?)),
            None => Ok(None),
        }
    }
}

/// Whether an error means "no daemon".
pub fn is_not_running(e: &anyhow::Error) -> bool {
    e.downcast_ref::<NotRunning>().is_some()
}
