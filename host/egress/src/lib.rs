//! aos-egress: the outgoing network policy of AgentOS — which hosts and
//! addresses a process may reach over HTTP — and its enforcement point, the
//! `wasi:http` hook ([`NetHooks`]) through which every request of a driver
//! instance passes (the runtime's `net` host interface installs it).
//!
//! Whatever the component asks, the host: allows `GET` only; allows only the
//! hosts the agent's grant names (`net` = any, `net:HOST` = that host);
//! resolves the host itself (numeric hosts in any IPv4 spelling are read as
//! addresses, never resolved) and refuses every address that is not public
//! by the IANA special-purpose registries (`addr.rs`: loopback, private,
//! link-local and cloud metadata, IPv6 forms embedding such an IPv4
//! address, …) unless the operator allow-listed it, then connects to the
//! address it checked (so DNS rebinding cannot swap it); applies connect and read
//! timeouts; refuses bodies whose `Content-Length` is over the cap and cuts
//! longer streams. Redirects are followed by the guest, so each hop is a new
//! request that passes this policy again. The reason for a refusal is
//! recorded for the runtime to report to the model (the guest only sees a
//! `wasi:http` error code).
//!
//! The same policy is applied to the commands of `exec:net` sandboxes by the
//! egress proxy ([`proxy`]), their only way out; the address table is
//! [`addr`].

pub mod addr;
pub mod proxy;

pub use proxy::Egress;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use aos_abi::{CapabilitySet, SyscallError};

/// Network settings (`[net]` in aos.toml).
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Hosts, IP addresses or CIDR ranges that may be reached even though
    /// they are not public (e.g. `127.0.0.1`, `10.0.0.0/8`, `intranet.local`).
    pub allow: Vec<String>,
    /// Largest response body (default 5 MB).
    pub max_body_bytes: u64,
    pub connect_timeout: Duration,
    /// Time to first byte and between bytes.
    pub read_timeout: Duration,
    /// PEM files of extra root certificates trusted for `https`, besides the
    /// Mozilla roots built in (e.g. a company's internal CA).
    pub ca_files: Vec<PathBuf>,
    /// Resolves host names (default: the system resolver). A hook for tests
    /// and embedders; whatever it answers still passes the address policy.
    pub resolver: Option<ResolverHook>,
}

/// Resolves a host name to socket addresses for the network policy.
pub trait Resolve: Send + Sync + 'static {
    fn resolve(&self, host: &str, port: u16) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;
}

/// A [`Resolve`] implementation plugged into [`NetConfig::resolver`].
#[derive(Clone)]
pub struct ResolverHook(pub Arc<dyn Resolve>);

impl std::fmt::Debug for ResolverHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResolverHook(..)")
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            allow: Vec::new(),
            max_body_bytes: 5_000_000,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(10),
            ca_files: Vec::new(),
            resolver: None,
        }
    }
}

/// Why the network settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NetConfigError {
    #[error("cannot read CA file {path}: {detail}; fix or remove it from `[net] ca_files`")]
    CaFile { path: PathBuf, detail: String },
    #[error("CA file {0} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`); fix or remove it from `[net] ca_files`")]
    NoCertificate(PathBuf),
}

/// The policy every instance's hook shares: the settings plus the TLS client
/// configuration built from them once.
#[derive(Debug)]
pub struct NetPolicy {
    pub config: NetConfig,
    pub tls: Arc<rustls::ClientConfig>,
}

impl NetPolicy {
    pub fn new(config: NetConfig) -> Result<NetPolicy, NetConfigError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
        for path in &config.ca_files {
            let ca_err = |detail: String| NetConfigError::CaFile { path: path.clone(), detail };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca_err(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ca_err(e.to_string()))?;
            if certs.is_empty() {
                return Err(NetConfigError::NoCertificate(path.clone()));
            }
            for c in certs {
                roots.add(c).map_err(|e| ca_err(e.to_string()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(NetPolicy { config, tls: Arc::new(tls) })
    }
}

/// Why requests of the current call were refused, for the error the model
/// sees (the guest only sees a `wasi:http` error code).
pub type Notes = Arc<parking_lot::Mutex<Vec<SyscallError>>>;

/// The per-instance hook: the agent's grant plus the kernel's policy.
pub struct NetHooks {
    pub caps: CapabilitySet,
    pub policy: Arc<NetPolicy>,
    pub notes: Notes,
}

fn ip_in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let (net, bits) = match cidr.split_once('/') {
        Some((n, b)) => match (n.parse::<IpAddr>(), b.parse::<u32>()) {
            (Ok(n), Ok(b)) => (n, b),
            _ => return false,
        },
        None => match cidr.parse::<IpAddr>() {
            Ok(n) => (n, if n.is_ipv4() { 32 } else { 128 }),
            Err(_) => return false,
        },
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl NetConfig {
    pub(crate) fn host_allowed(&self, host: &str) -> bool {
        self.allow.iter().any(|a| a.eq_ignore_ascii_case(host))
    }

    /// Allow-listed: the address, or the IPv4 address an IPv4-mapped IPv6 address stands for.
    pub(crate) fn ip_allowed(&self, ip: IpAddr) -> bool {
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.allow.iter().any(|a| ip_in_cidr(ip, a) || mapped.is_some_and(|m| ip_in_cidr(m, a)))
    }
}

/// A refusal: the error for the model, and the code the guest sees.
fn refuse(notes: &Notes, note: String, code: HttpError) -> HttpError {
    tracing::info!(target: "aos::net", "{note}");
    let err = match &code {
        HttpError::DestinationIpProhibited
        | HttpError::HttpRequestDenied
        | HttpError::HttpRequestMethodInvalid
        | HttpError::HttpProtocolError => SyscallError::Denied(note),
        HttpError::DnsTimeout | HttpError::ConnectionTimeout | HttpError::ConnectionReadTimeout => {
            SyscallError::Timeout(note)
        }
        HttpError::HttpResponseBodySize(_) => SyscallError::LimitExceeded(note),
        HttpError::DnsError { .. } | HttpError::DestinationNotFound => SyscallError::NotFound(note),
        HttpError::HttpRequestUriInvalid => SyscallError::InvalidArguments(note),
        _ => SyscallError::Io(note),
    };
    notes.lock().push(err);
    code
}

/// A destination the policy refused: the reason for the model or the
/// proxy's client, and the `wasi:http` code a guest sees.
pub(crate) struct Refused {
    pub code: HttpError,
    pub note: String,
}

impl Refused {
    fn new(code: HttpError, note: String) -> Self {
        Refused { code, note }
    }
}

/// The address a host name stands for when it is an IP address in any
/// spelling (`[::1]`, `127.0.0.1`, `127.1`, `0x7f000001`, …): `Some(Ok)`;
/// a numeric host out of range: `Some(Err)`; a name: `None`.
pub(crate) fn literal_ip(host: &str) -> Option<Result<IpAddr, String>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(Ok(ip));
    }
    crate::addr::parse_ipv4_loose(bare).map(|r| r.map(IpAddr::V4))
}

/// Whether the grants in `caps` allow `host` (compared as written, and as
/// the address it spells when it is numeric).
pub(crate) fn host_granted(caps: &CapabilitySet, host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if caps.allows_net_host(bare) {
        return true;
    }
    match literal_ip(bare) {
        Some(Ok(ip)) => {
            let mapped = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(|v4| v4.to_string()),
                IpAddr::V4(_) => None,
            };
            caps.allows_net_host(&ip.to_string()) || mapped.is_some_and(|m| caps.allows_net_host(&m))
        }
        _ => false,
    }
}

/// Resolves and vets the destination: every address the name resolves to
/// must be public (or allow-listed). Returns the address to connect to —
/// the one checked here, so the connection cannot go anywhere else.
pub(crate) async fn vet(host: &str, port: u16, config: &NetConfig) -> Result<SocketAddr, Refused> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match literal_ip(bare) {
        Some(Ok(ip)) => vec![SocketAddr::new(ip, port)],
        Some(Err(why)) => {
            return Err(Refused::new(HttpError::HttpRequestUriInvalid, format!("{why}: not a valid IPv4 address")))
        }
        None => {
            let lookup = async {
                match &config.resolver {
                    Some(r) => r.0.resolve(bare, port).await,
                    None => tokio::net::lookup_host((bare, port)).await.map(|a| a.collect()),
                }
            };
            match tokio::time::timeout(config.connect_timeout, lookup).await {
                Err(_) => return Err(Refused::new(HttpError::DnsTimeout, format!("resolving `{host}` timed out"))),
                Ok(Err(e)) => {
                    return Err(Refused::new(
                        HttpError::DnsError { rcode: None, info_code: None },
                        format!("cannot resolve `{host}`: {e}"),
                    ))
                }
                Ok(Ok(a)) => a,
            }
        }
    };
    if addrs.is_empty() {
        return Err(Refused::new(HttpError::DestinationNotFound, format!("`{host}` has no addresses")));
    }
    let host_listed = config.host_allowed(bare);
    // Every address must pass: a name that resolves to a private address among
    // public ones is refused as a whole.
    for a in &addrs {
        if let Some(why) = crate::addr::non_public_reason(a.ip()) {
            if !host_listed && !config.ip_allowed(a.ip()) {
                let what = if literal_ip(bare).is_some() {
                    format!("`{host}` is {}", a.ip())
                } else {
                    format!("`{host}` resolves to {}", a.ip())
                };
                return Err(Refused::new(
                    HttpError::DestinationIpProhibited,
                    format!(
                        "{what}, which is not public: {why}; requests to non-public addresses are refused \
                         (an operator can allow it with `[net] allow` in aos.toml)"
                    ),
                ));
            }
        }
    }
    Ok(addrs[0])
}

/// [`vet`] for the kernel's own clients (an MCP server reached over
/// streamable HTTP): the address to connect to, or why the destination is
/// refused (a sentence naming the setting that would allow it). Host grants
/// are the caller's to check ([`CapabilitySet::allows_net_host`]).
pub async fn vet_destination(host: &str, port: u16, config: &NetConfig) -> Result<SocketAddr, String> {
    vet(host, port, config).await.map_err(|r| r.note)
}

/// Whether `host` is written as an IP address (in any spelling the policy
/// reads as one: `127.1`, `0x7f000001`, `[::1]`), so no name is resolved.
pub fn is_literal_ip(host: &str) -> bool {
    literal_ip(host).is_some()
}

/// A response body that stops at the size cap and at the read timeout.
struct CappedBody {
    inner: hyper::body::Incoming,
    seen: u64,
    cap: u64,
    read_timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    notes: Notes,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::from(e)))),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.seen += data.len() as u64;
                    if self.seen > self.cap {
                        let cap = self.cap;
                        let err = refuse(
                            &self.notes,
                            format!("the response body is over the {cap}-byte cap"),
                            HttpError::HttpResponseBodySize(None),
                        );
                        return Poll::Ready(Some(Err(err)));
                    }
                }
                let deadline = tokio::time::Instant::now() + self.read_timeout;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let secs = self.read_timeout.as_secs_f64();
                    let err = refuse(
                        &self.notes,
                        format!("the server sent nothing for {secs:.1} s while sending the body"),
                        HttpError::ConnectionReadTimeout,
                    );
                    Poll::Ready(Some(Err(err)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

type SendFuture = Box<
    dyn std::future::Future<
            Output = Result<(http::Response<WasiBody>, Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>), HttpError>,
        > + Send,
>;

impl WasiHttpHooks for NetHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let caps = self.caps.clone();
        let policy = self.policy.clone();
        let notes = self.notes.clone();
        Box::new(async move { send(request, caps, policy, notes).await })
    }
}

async fn send(
    mut request: http::Request<WasiBody>,
    caps: CapabilitySet,
    policy: Arc<NetPolicy>,
    notes: Notes,
) -> Result<(http::Response<WasiBody>, Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>), HttpError> {
    let config = &policy.config;
    if request.method() != http::Method::GET {
        let m = request.method().clone();
        return Err(refuse(&notes, format!("method {m} refused: NET_FETCH may only GET"), HttpError::HttpRequestMethodInvalid));
    }
    let uri = request.uri().clone();
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        other => {
            return Err(refuse(
                &notes,
                format!("scheme `{}` refused: only http and https", other.unwrap_or("")),
                HttpError::HttpProtocolError,
            ))
        }
    };
    let Some(host) = uri.host().map(|h| h.to_ascii_lowercase()) else {
        return Err(refuse(&notes, "the URL has no host".into(), HttpError::HttpRequestUriInvalid));
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
    if !host_granted(&caps, &bare) {
        return Err(refuse(
            &notes,
            format!("capability `net:{bare}` not granted (this process may fetch only the hosts it was granted)"),
            HttpError::HttpRequestDenied,
        ));
    }
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addr = vet(&host, port, config).await.map_err(|r| refuse(&notes, r.note, r.code))?;

    let tcp = match tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err(refuse(
                &notes,
                format!("connecting to `{host}` ({addr}) timed out after {:.1} s", config.connect_timeout.as_secs_f64()),
                HttpError::ConnectionTimeout,
            ))
        }
        Ok(Err(e)) => {
            let code = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                HttpError::ConnectionRefused
            } else {
                HttpError::Connect(e)
            };
            return Err(refuse(&notes, format!("cannot connect to `{host}` ({addr})"), code));
        }
        Ok(Ok(s)) => s,
    };

    // Only the path goes on the wire; the Host header carries the name.
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;

    let io: Box<dyn StreamIo> = if tls {
        let name = rustls::pki_types::ServerName::try_from(bare.clone())
            .map_err(|e| refuse(&notes, format!("`{host}` is not a valid TLS name: {e}"), HttpError::HttpRequestUriInvalid))?;
        let stream = tokio_rustls::TlsConnector::from(policy.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| refuse(&notes, format!("TLS with `{host}` failed: {e}"), HttpError::TlsCertificateError))?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(wasmtime_wasi_http::io::TokioIo::new(io))
        .await
        .map_err(HttpError::from)?;
    let conn = tokio::spawn(conn);

    let response = match tokio::time::timeout(config.read_timeout, sender.send_request(request)).await {
        Err(_) => {
            return Err(refuse(
                &notes,
                format!("`{host}` sent no response within {:.1} s", config.read_timeout.as_secs_f64()),
                HttpError::ConnectionReadTimeout,
            ))
        }
        Ok(r) => r.map_err(HttpError::from)?,
    };
    if let Some(len) = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > config.max_body_bytes {
            return Err(refuse(
                &notes,
                format!("the response body is {len} bytes, over the {}-byte cap", config.max_body_bytes),
                HttpError::HttpResponseBodySize(Some(len)),
            ));
        }
    }
    let read_timeout = config.read_timeout;
    let cap = config.max_body_bytes;
    let response = response.map(|inner| {
        CappedBody {
            inner,
            seen: 0,
            cap,
            read_timeout,
            sleep: Box::pin(tokio::time::sleep(read_timeout)),
            notes: notes.clone(),
        }
        .boxed_unsync()
    });
    let io_done: Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send> = Box::new(async move {
        match conn.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(HttpError::from(e)),
            Err(_) => Ok(()),
        }
    });
    Ok((response, io_done))
}

trait StreamIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> StreamIo for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_hosts_are_addresses() {
        for h in ["127.1", "2130706433", "0x7f000001", "0177.0.0.1", "[::1]", "127.0.0.1"] {
            assert!(matches!(literal_ip(h), Some(Ok(ip)) if ip.is_loopback()), "{h}");
        }
        assert!(matches!(literal_ip("999.1.1.1"), Some(Err(_))));
        assert!(literal_ip("example.com").is_none());
        let caps = CapabilitySet::parse(["net:127.0.0.1"]).unwrap();
        assert!(host_granted(&caps, "0x7f000001"));
        assert!(!host_granted(&caps, "localhost"));
    }

    #[test]
    fn cidr_matching() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(ip_in_cidr(ip, "10.0.0.0/8"));
        assert!(!ip_in_cidr(ip, "10.0.0.0/16"));
        assert!(ip_in_cidr(ip, "10.1.2.3"));
        assert!(!ip_in_cidr(ip, "::/0"));
        assert!(ip_in_cidr("::1".parse().unwrap(), "::1/128"));
    }
}
