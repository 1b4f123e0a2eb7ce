//! The `net` driver: `NET_FETCH {url}` — an HTTP GET through `wasi:http`.
//!
//! This driver imports `wasi:http/outgoing-handler`, so only agents holding
//! `net` or `net:HOST` get an instance. The host's policy (`host/runtime/src/
//! net.rs`) is authoritative for what may be reached: GET only, granted hosts
//! only, no private/loopback/link-local addresses unless allow-listed, checked
//! on the resolved address, timeouts and the body cap. This driver follows
//! redirects itself (bounded), so every hop passes that policy again, caps
//! the body while reading, and returns text bodies as text and binary bodies
//! as a short summary.

use aos_guest_sdk::{config, prelude::*};

/// Default body cap (bytes); `[drivers.net] max_body_bytes` overrides it.
pub const DEFAULT_MAX_BODY: u64 = 5_000_000;
/// Default number of redirects followed; `[drivers.net] max_redirects`.
pub const DEFAULT_MAX_REDIRECTS: u32 = 5;

/// Arguments of NET_FETCH.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchArgs {
    /// The http:// or https:// URL to GET.
    pub url: String,
}

/// A URL split into what `wasi:http` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    /// `host[:port]`
    pub authority: String,
    /// `/path?query` (never empty).
    pub path: String,
}

impl Target {
    pub fn url(&self) -> String {
        format!("{}://{}{}", if self.https { "https" } else { "http" }, self.authority, self.path)
    }
}

/// Parses an absolute http(s) URL. Userinfo (`user@host`) is refused: it only
/// serves to disguise the real host.
pub fn parse_url(url: &str) -> SyscallResult<Target> {
    let bad = |why: &str| SyscallError::InvalidArguments(format!("`{url}` is not a usable URL: {why}"));
    let url = url.trim();
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if url.contains("://") {
        return Err(bad("only http:// and https:// are supported"));
    } else {
        return Err(bad("it must start with http:// or https://"));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let mut path = rest[end..].split('#').next().unwrap_or("").to_string();
    if authority.is_empty() {
        return Err(bad("it has no host"));
    }
    if authority.contains('@') {
        return Err(bad("user names and passwords in URLs are not supported"));
    }
    if authority.chars().any(|c| c.is_whitespace() || c.is_control()) || path.chars().any(|c| c.is_control() || c == ' ') {
        return Err(bad("it contains spaces or control characters"));
    }
    if path.is_empty() {
        path = "/".into();
    } else if path.starts_with('?') {
        path = format!("/{path}");
    }
    Ok(Target { https, authority: authority.to_string(), path })
}

/// Where a redirect's `Location` leads from `base`.
pub fn resolve_location(base: &Target, location: &str) -> SyscallResult<Target> {
    let loc = location.trim();
    if loc.starts_with("http://") || loc.starts_with("https://") {
        parse_url(loc)
    } else if let Some(rest) = loc.strip_prefix("//") {
        parse_url(&format!("{}://{rest}", if base.https { "https" } else { "http" }))
    } else if loc.starts_with('/') {
        Ok(Target { path: loc.to_string(), ..base.clone() })
    } else {
        let dir = match base.path.split('?').next().unwrap_or("/").rfind('/') {
            Some(i) => &base.path[..=i],
            None => "/",
        };
        Ok(Target { path: format!("{dir}{loc}"), ..base.clone() })
    }
}

/// Whether a body with this content type is shown as text.
pub fn is_text(content_type: &str, body: &[u8]) -> bool {
    let ct = content_type.to_ascii_lowercase();
    let textual = ct.starts_with("text/")
        || ["json", "xml", "javascript", "ecmascript", "x-www-form-urlencoded", "yaml", "csv", "toml"]
            .iter()
            .any(|t| ct.contains(t));
    if textual {
        return true;
    }
    ct.is_empty() && !body.contains(&0) && std::str::from_utf8(body).is_ok()
}

/// One response.
pub struct Fetched {
    pub status: u16,
    pub content_type: String,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

#[cfg(target_os = "wasi")]
mod wire {
    use super::*;
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingRequest, Scheme};
    use wasip2::io::streams::StreamError;

    fn error(code: ErrorCode, url: &str) -> SyscallError {
        use ErrorCode as E;
        match code {
            E::DestinationIpProhibited | E::HttpRequestDenied | E::HttpRequestMethodInvalid => {
                SyscallError::Denied(format!("fetching {url} is not allowed ({code:?})"))
            }
            E::DnsTimeout | E::ConnectionTimeout | E::ConnectionReadTimeout | E::HttpResponseTimeout => {
                SyscallError::Timeout(format!("fetching {url} timed out ({code:?})"))
            }
            E::HttpResponseBodySize(_) => SyscallError::LimitExceeded(format!("the response of {url} is too large")),
            E::DnsError(_) | E::DestinationNotFound => SyscallError::NotFound(format!("cannot resolve the host of {url}")),
            other => SyscallError::Io(format!("fetching {url} failed: {other:?}")),
        }
    }

    pub fn get(t: &Target, max_body: u64) -> SyscallResult<Fetched> {
        let url = t.url();
        let headers = Fields::from_list(&[
            ("user-agent".to_string(), b"AgentOS-NET_FETCH/0.1".to_vec()),
            ("accept".to_string(), b"*/*".to_vec()),
        ])
        .map_err(|e| SyscallError::Internal(format!("headers: {e:?}")))?;
        let req = OutgoingRequest::new(headers);
        let _ = req.set_method(&Method::Get);
        let _ = req.set_scheme(Some(if t.https { &Scheme::Https } else { &Scheme::Http }));
        req.set_authority(Some(&t.authority))
            .map_err(|_| SyscallError::InvalidArguments(format!("invalid host in {url}")))?;
        req.set_path_with_query(Some(&t.path))
            .map_err(|_| SyscallError::InvalidArguments(format!("invalid path in {url}")))?;
        let fut = outgoing_handler::handle(req, None).map_err(|c| error(c, &url))?;
        fut.subscribe().block();
        let resp = match fut.get() {
            Some(Ok(Ok(r))) => r,
            Some(Ok(Err(code))) => return Err(error(code, &url)),
            _ => return Err(SyscallError::Internal("the response future was not ready".into())),
        };
        let status = resp.status();
        let headers = resp.headers().entries();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let content_type = header("content-type").unwrap_or_default();
        let location = header("location");
        let body_res = resp.consume().map_err(|_| SyscallError::Internal("body already taken".into()))?;
        let stream = body_res.stream().map_err(|_| SyscallError::Internal("body stream already taken".into()))?;
        let mut body = Vec::new();
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => {
                    body.extend_from_slice(&chunk);
                    if body.len() as u64 > max_body {
                        return Err(SyscallError::LimitExceeded(format!(
                            "the response of {url} is larger than the {max_body}-byte cap"
                        )));
                    }
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(SyscallError::Io(format!("reading the response of {url} failed: {}", e.to_debug_string())))
                }
            }
        }
        drop(stream);
        Ok(Fetched { status, content_type, location, body })
    }
}

#[cfg(not(target_os = "wasi"))]
mod wire {
    use super::*;
    pub fn get(_t: &Target, _max_body: u64) -> SyscallResult<Fetched> {
        Err(SyscallError::Internal("NET_FETCH only runs as a Wasm component".into()))
    }
}

pub fn fetch(args: FetchArgs) -> SyscallResult<Value> {
    let max_body: u64 = config::get_or("max_body_bytes", DEFAULT_MAX_BODY);
    let max_redirects: u32 = config::get_or("max_redirects", DEFAULT_MAX_REDIRECTS);
    let mut target = parse_url(&args.url)?;
    let mut hops = Vec::new();
    loop {
        let r = wire::get(&target, max_body)?;
        if matches!(r.status, 301 | 302 | 303 | 307 | 308) {
            if let Some(loc) = &r.location {
                if hops.len() as u32 >= max_redirects {
                    return Err(SyscallError::LimitExceeded(format!(
                        "more than {max_redirects} redirects starting at {}",
                        args.url
                    )));
                }
                hops.push(json!({ "status": r.status, "from": target.url() }));
                target = resolve_location(&target, loc)?;
                continue;
            }
        }
        let bytes = r.body.len();
        let mut out = json!({
            "url": args.url,
            "final_url": target.url(),
            "status": r.status,
            "content_type": r.content_type,
            "bytes": bytes,
        });
        if !hops.is_empty() {
            out["redirects"] = json!(hops);
        }
        if is_text(&r.content_type, &r.body) {
            out["body"] = json!(String::from_utf8_lossy(&r.body));
        } else {
            out["body"] = Value::Null;
            out["notice"] = json!(format!(
                "binary body ({bytes} bytes of {}) not shown",
                if r.content_type.is_empty() { "unknown type" } else { &r.content_type }
            ));
        }
        return Ok(out);
    }
}

pub struct Net;

impl Driver for Net {
    fn router() -> Router {
        Router::new().syscall(
            "NET_FETCH",
            "HTTP GET a URL; returns status, content type and the text body (binary bodies are summarised). \
             Redirects are followed. Private and local addresses are refused.",
            fetch,
        )
    }
}

aos_guest_sdk::export_driver!(Net);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("https://example.com").unwrap();
        assert_eq!((t.https, t.authority.as_str(), t.path.as_str()), (true, "example.com", "/"));
        let t = parse_url("http://a.b:8080/x/y?q=1#frag").unwrap();
        assert_eq!((t.authority.as_str(), t.path.as_str()), ("a.b:8080", "/x/y?q=1"));
        assert_eq!(parse_url("http://h?x=1").unwrap().path, "/?x=1");
        for bad in ["ftp://x", "example.com", "http://", "http://user@evil.com/", "http://a b/", "file:///etc/passwd"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirects_resolve() {
        let base = parse_url("http://h:1/a/b?c").unwrap();
        assert_eq!(resolve_location(&base, "/x").unwrap().url(), "http://h:1/x");
        assert_eq!(resolve_location(&base, "y").unwrap().url(), "http://h:1/a/y");
        assert_eq!(resolve_location(&base, "//o.org/z").unwrap().url(), "http://o.org/z");
        assert_eq!(resolve_location(&base, "https://p/q").unwrap().url(), "https://p/q");
    }

    #[test]
    fn text_detection() {
        assert!(is_text("text/html; charset=utf-8", b"<p>"));
        assert!(is_text("application/json", b"{}"));
        assert!(!is_text("image/png", b"\x89PNG"));
        assert!(is_text("", b"plain"));
        assert!(!is_text("", b"a\0b"));
    }
}
