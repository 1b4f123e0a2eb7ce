//! aos-egress: the outgoing network policy of AgentOS — which hosts and
//! addresses a process may reach over HTTP — and its enforcement point, the
//! `wasi:http` hook ([`NetHooks`]) through which every request of a driver
//! instance passes (the runtime's `net` host interface installs it).
//!
//! Whatever the component asks, the host: allows `GET` only; allows only the
//! hosts the agent's grant names (`net` = any, `net:HOST` = that host);
//! resolves the host itself and refuses loopback, private, link-local
//! (including cloud metadata), multicast and other non-public addresses
//! unless the operator allow-listed them, then connects to the address it
//! checked (so DNS rebinding cannot swap it); applies connect and read
//! timeouts; refuses bodies whose `Content-Length` is over the cap and cuts
//! longer streams. Redirects are followed by the guest, so each hop is a new
//! request that passes this policy again. The reason for a refusal is
//! recorded for the runtime to report to the model (the guest only sees a
//! `wasi:http` error code).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            allow: Vec::new(),
            max_body_bytes: 5_000_000,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(10),
            ca_files: Vec::new(),
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

/// Why `ip` is not a public address, if it is not.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_reason(v4);
            }
            let seg0 = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if seg0 & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if seg0 & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if ip_in_cidr(ip, "64:ff9b::/96") || ip_in_cidr(ip, "2002::/16") {
                Some("an IPv4 translation range")
            } else if ip_in_cidr(ip, "2001:db8::/32") {
                Some("documentation")
            } else {
                None
            }
        }
    }
}

fn v4_reason(v4: Ipv4Addr) -> Option<&'static str> {
    let ip = IpAddr::V4(v4);
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_private() {
        Some("private")
    } else if v4 == Ipv4Addr::new(169, 254, 169, 254) {
        Some("the cloud metadata service")
    } else if v4.is_link_local() {
        Some("link-local")
    } else if v4.is_multicast() {
        Some("multicast")
    } else if v4.is_broadcast() || v4.is_unspecified() || ip_in_cidr(ip, "0.0.0.0/8") {
        Some("unspecified or broadcast")
    } else if ip_in_cidr(ip, "100.64.0.0/10") {
        Some("carrier-grade NAT (shared)")
    } else if ip_in_cidr(ip, "192.0.0.0/24")
        || ip_in_cidr(ip, "198.18.0.0/15")
        || ip_in_cidr(ip, "240.0.0.0/4")
    {
        Some("reserved")
    } else if ip_in_cidr(ip, "192.0.2.0/24")
        || ip_in_cidr(ip, "198.51.100.0/24")
        || ip_in_cidr(ip, "203.0.113.0/24")
    {
        Some("documentation")
    } else {
        None
    }
}

impl NetConfig {
    fn host_allowed(&self, host: &str) -> bool {
        self.allow.iter().any(|a| a.eq_ignore_ascii_case(host))
    }

    fn ip_allowed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|a| ip_in_cidr(ip, a))
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

/// Resolves and vets the destination. Returns the address to connect to.
async fn vet(
    host: &str,
    port: u16,
    config: &NetConfig,
    notes: &Notes,
) -> Result<SocketAddr, HttpError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = if let Ok(ip) = bare.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, port)]
    } else {
        match tokio::time::timeout(config.connect_timeout, tokio::net::lookup_host((bare, port))).await {
            Err(_) => return Err(refuse(notes, format!("resolving `{host}` timed out"), HttpError::DnsTimeout)),
            Ok(Err(e)) => {
                return Err(refuse(
                    notes,
                    format!("cannot resolve `{host}`: {e}"),
                    HttpError::DnsError { rcode: None, info_code: None },
                ))
            }
            Ok(Ok(a)) => a.collect(),
        }
    };
    if addrs.is_empty() {
        return Err(refuse(notes, format!("`{host}` has no addresses"), HttpError::DestinationNotFound));
    }
    let host_listed = config.host_allowed(bare);
    // Every address must pass: a name that resolves to a private address among
    // public ones is refused as a whole.
    for a in &addrs {
        if let Some(why) = non_public_reason(a.ip()) {
            if !host_listed && !config.ip_allowed(a.ip()) {
                return Err(refuse(
                    notes,
                    format!(
                        "`{host}` resolves to {}, a {why} address; requests to non-public addresses are refused \
                         (an operator can allow it with `[net] allow` in aos.toml)",
                        a.ip()
                    ),
                    HttpError::DestinationIpProhibited,
                ));
            }
        }
    }
    Ok(addrs[0])
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
    if !caps.allows_net_host(&bare) {
        return Err(refuse(
            &notes,
            format!("capability `net:{bare}` not granted (this process may fetch only the hosts it was granted)"),
            HttpError::HttpRequestDenied,
        ));
    }
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addr = vet(&host, port, config, &notes).await?;

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
    fn non_public_addresses_are_recognised() {
        for (ip, public) in [
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("169.254.1.1", false),
            ("224.0.0.1", false),
            ("0.0.0.0", false),
            ("100.64.0.1", false),
            ("::1", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("64:ff9b::a00:1", false),
            ("8.8.8.8", true),
            ("1.1.1.1", true),
            ("2606:4700:4700::1111", true),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(non_public_reason(ip).is_none(), public, "{ip}");
        }
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
