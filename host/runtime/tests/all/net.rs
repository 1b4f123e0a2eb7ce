//! NET_FETCH under policy, against a real HTTP server on 127.0.0.1. Nothing
//! here sends traffic off the machine: refused destinations are refused
//! before any connection is made.


use std::time::{Duration, Instant};

use aos_runtime::SyscallError;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A tiny HTTP/1.1 server with a few behaviours selected by path.
async fn server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let line = req.lines().next().unwrap_or("").to_string();
                let mut parts = line.split(' ');
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("/").to_string();
                let resp: Vec<u8> = if method != "GET" {
                    b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n".to_vec()
                } else if path == "/hello" {
                    let host = req.lines().find(|l| l.to_ascii_lowercase().starts_with("host:")).unwrap_or("").to_string();
                    let body = format!("hello world; {host}");
                    format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes()
                } else if let Some(n) = path.strip_prefix("/size/") {
                    let n: usize = n.parse().unwrap();
                    let mut r = format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {n}\r\n\r\n").into_bytes();
                    r.extend(std::iter::repeat_n(b'a', n));
                    r
                } else if let Some(n) = path.strip_prefix("/chunked/") {
                    let n: usize = n.parse().unwrap();
                    let mut r = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                    let mut left = n;
                    while left > 0 {
                        let c = left.min(100);
                        r.extend(format!("{c:x}\r\n").into_bytes());
                        r.extend(std::iter::repeat_n(b'b', c));
                        r.extend(b"\r\n");
                        left -= c;
                    }
                    r.extend(b"0\r\n\r\n");
                    r
                } else if path == "/slow" {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                } else if path == "/redirect-metadata" {
                    b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data/\r\ncontent-length: 0\r\n\r\n".to_vec()
                } else if path == "/redirect-private" {
                    b"HTTP/1.1 301 Moved\r\nlocation: http://10.0.0.1/admin\r\ncontent-length: 0\r\n\r\n".to_vec()
                } else if let Some(k) = path.strip_prefix("/redirect/") {
                    let k: u32 = k.parse().unwrap();
                    if k == 0 {
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 7\r\n\r\narrived".to_vec()
                    } else {
                        format!("HTTP/1.1 302 Found\r\nlocation: /redirect/{}\r\ncontent-length: 0\r\n\r\n", k - 1).into_bytes()
                    }
                } else if path == "/png" {
                    let mut r = b"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: 8\r\n\r\n".to_vec();
                    r.extend(b"\x89PNG\r\n\x1a\n");
                    r
                } else {
                    b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 9\r\n\r\nnot found".to_vec()
                };
                let _ = sock.write_all(&resp).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    port
}

async fn env(allow: &[&str]) -> crate::common::Env {
    let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
    crate::common::Env::with(move |c| {
        c.net.allow = allow;
        c.net.max_body_bytes = 1000;
        c.net.read_timeout = Duration::from_secs(1);
        c.driver_config.entry("net".into()).or_default().insert("max_body_bytes".into(), json!(1000));
    })
    .await
}

#[tokio::test]
async fn get_works_for_an_allow_listed_loopback_server() {
    let port = server().await;
    let env = env(&["127.0.0.1"]).await;
    let a = env.agent(1, &["net"]);
    let r = env.rt.call(&a, "NET_FETCH", &json!({"url": format!("http://127.0.0.1:{port}/hello")})).await.unwrap();
    assert_eq!(r.output["status"], 200);
    assert_eq!(r.output["content_type"], "text/plain");
    assert!(r.output["body"].as_str().unwrap().starts_with("hello world; host: 127.0.0.1:"), "{}", r.output);
    let r = env.rt.call(&a, "NET_FETCH", &json!({"url": format!("http://127.0.0.1:{port}/nope")})).await.unwrap();
    assert_eq!(r.output["status"], 404);
    // Binary bodies are summarised, never dumped.
    let r = env.rt.call(&a, "NET_FETCH", &json!({"url": format!("http://127.0.0.1:{port}/png")})).await.unwrap();
    assert_eq!(r.output["body"], serde_json::Value::Null);
    assert!(r.output["notice"].as_str().unwrap().contains("binary body (8 bytes of image/png)"));
    // Redirects are followed (and each hop passes the policy).
    let r = env.rt.call(&a, "NET_FETCH", &json!({"url": format!("http://127.0.0.1:{port}/redirect/3")})).await.unwrap();
    assert_eq!(r.output["body"], "arrived");
    assert_eq!(r.output["redirects"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn body_cap_just_under_and_just_over() {
    let port = server().await;
    let env = env(&["127.0.0.1"]).await;
    let a = env.agent(1, &["net"]);
    let url = |p: &str| json!({"url": format!("http://127.0.0.1:{port}{p}")});
    let r = env.rt.call(&a, "NET_FETCH", &url("/size/1000")).await.unwrap();
    assert_eq!(r.output["bytes"], 1000);
    // Refused up front by Content-Length.
    let e = env.rt.call(&a, "NET_FETCH", &url("/size/1001")).await.unwrap_err();
    assert_eq!(e, SyscallError::LimitExceeded("the response body is 1001 bytes, over the 1000-byte cap".into()));
    // No Content-Length: cut while streaming.
    let r = env.rt.call(&a, "NET_FETCH", &url("/chunked/1000")).await.unwrap();
    assert_eq!(r.output["bytes"], 1000);
    let e = env.rt.call(&a, "NET_FETCH", &url("/chunked/1001")).await.unwrap_err();
    assert!(matches!(e, SyscallError::LimitExceeded(ref m) if m.contains("1000-byte cap")), "{e}");
}

#[tokio::test]
async fn slow_server_hits_the_timeout() {
    let port = server().await;
    let env = env(&["127.0.0.1"]).await;
    let a = env.agent(1, &["net"]);
    let t = Instant::now();
    let e = env.rt.call(&a, "NET_FETCH", &json!({"url": format!("http://127.0.0.1:{port}/slow")})).await.unwrap_err();
    assert!(matches!(e, SyscallError::Timeout(ref m) if m.contains("no response within 1.0 s")), "{e}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[tokio::test]
async fn redirects_to_private_addresses_are_refused() {
    let port = server().await;
    let env = env(&["127.0.0.1"]).await;
    let a = env.agent(1, &["net"]);
    for (path, ip, kind) in [
        ("/redirect-metadata", "169.254.169.254", "cloud metadata"),
        ("/redirect-private", "10.0.0.1", "private"),
    ] {
        let e = env.rt.call(&a, "NET_FETCH", &json!({"url": format!("http://127.0.0.1:{port}{path}")})).await.unwrap_err();
        assert!(matches!(e, SyscallError::Denied(ref m) if m.contains(ip) && m.contains(kind)), "{path}: {e}");
    }
}

#[tokio::test]
async fn non_allow_listed_private_addresses_are_refused() {
    let port = server().await;
    let env = env(&[]).await;
    let a = env.agent(1, &["net"]);
    for url in [
        format!("http://127.0.0.1:{port}/hello"),
        format!("http://localhost:{port}/hello"),
        "http://192.168.1.1/".into(),
        "http://[::1]:9/".into(),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://0.0.0.0:1/".into(),
    ] {
        let e = env.rt.call(&a, "NET_FETCH", &json!({ "url": url })).await.unwrap_err();
        assert!(matches!(e, SyscallError::Denied(ref m) if m.contains("non-public addresses are refused")), "{url}: {e}");
    }
    let e = env.rt.call(&a, "NET_FETCH", &json!({"url": "ftp://example.com/"})).await.unwrap_err();
    assert!(matches!(e, SyscallError::InvalidArguments(_)), "{e}");
    let e = env.rt.call(&a, "NET_FETCH", &json!({"url": "http://user@127.0.0.1/"})).await.unwrap_err();
    assert!(matches!(e, SyscallError::InvalidArguments(_)), "{e}");
}

#[tokio::test]
async fn net_host_grant_refuses_other_hosts() {
    let port = server().await;
    let env = env(&["127.0.0.1", "localhost"]).await;
    let only = env.agent(1, &["net:127.0.0.1"]);
    let r = env.rt.call(&only, "NET_FETCH", &json!({"url": format!("http://127.0.0.1:{port}/hello")})).await.unwrap();
    assert_eq!(r.output["status"], 200);
    let e = env.rt.call(&only, "NET_FETCH", &json!({"url": format!("http://localhost:{port}/hello")})).await.unwrap_err();
    assert!(matches!(e, SyscallError::Denied(ref m) if m.contains("`net:localhost` not granted")), "{e}");
    // No net grant at all: the driver is not even instantiated.
    let none = env.agent(2, &["fs:rw"]);
    let e = env.rt.call(&none, "NET_FETCH", &json!({"url": format!("http://127.0.0.1:{port}/hello")})).await.unwrap_err();
    assert!(matches!(e, SyscallError::Denied(ref m) if m.contains("net")), "{e}");
    assert!(!env.rt.syscalls_for(&none.caps).iter().any(|s| s.name == "NET_FETCH"));
}

#[tokio::test]
async fn redirect_loops_are_bounded() {
    let port = server().await;
    let env = env(&["127.0.0.1"]).await;
    let a = env.agent(1, &["net"]);
    let e = env.rt.call(&a, "NET_FETCH", &json!({"url": format!("http://127.0.0.1:{port}/redirect/9")})).await.unwrap_err();
    assert!(matches!(e, SyscallError::LimitExceeded(ref m) if m.contains("more than 5 redirects")), "{e}");
}

/// The host refuses every method but GET, whatever the component asks.
#[tokio::test]
async fn only_get_leaves_the_host_whatever_the_driver_asks() {
    let port = server().await;
    let env = env(&["127.0.0.1"]).await;
    env.install_example("rawhttp").await;
    let a = env.agent(1, &["net", "driver:rawhttp"]);
    let ok = env.rt.call(&a, "RAW_HTTP", &json!({"method": "GET", "url": format!("http://127.0.0.1:{port}/hello")})).await.unwrap();
    assert_eq!(ok.output["status"], 200);
    for m in ["POST", "PUT", "DELETE", "PATCH"] {
        let e = env.rt.call(&a, "RAW_HTTP", &json!({"method": m, "url": format!("http://127.0.0.1:{port}/hello")})).await.unwrap_err();
        assert!(matches!(e, SyscallError::Denied(ref msg) if msg.contains(&format!("method {m} refused"))), "{m}: {e}");
    }
    // And the grant still applies to a driver that builds its own requests.
    let b = env.agent(2, &["net:example.org", "driver:rawhttp"]);
    let e = env.rt.call(&b, "RAW_HTTP", &json!({"method": "GET", "url": format!("http://127.0.0.1:{port}/hello")})).await.unwrap_err();
    assert!(matches!(e, SyscallError::Denied(ref msg) if msg.contains("`net:127.0.0.1` not granted")), "{e}");
}

/// A listener on `ip` that counts the connections it accepts and answers
/// `name` to each.
async fn counting_server(ip: &str, port: u16, name: &'static str) -> Option<(u16, std::sync::Arc<std::sync::atomic::AtomicUsize>)> {
    let l = TcpListener::bind((ip, port)).await.ok()?;
    let port = l.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{name}", name.len());
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    Some((port, hits))
}

/// IPv4 addresses in other spellings, and IPv6 forms that embed IPv4
/// loopback, private or metadata addresses: all refused before any
/// connection is made, through the net driver and through a driver that
/// builds its own requests. With the address allow-listed, the numeric
/// spellings reach it (they are read as that address, not resolved).
#[tokio::test]
async fn unusual_address_spellings_are_read_as_the_address_they_are() {
    let (port, hits) = counting_server("127.0.0.1", 0, "loopback-server").await.unwrap();
    let env = env(&[]).await;
    env.install_example("rawhttp").await;
    let a = env.agent(1, &["net", "driver:rawhttp"]);
    let hosts = [
        "127.1",
        "127.0.1",
        "2130706433",
        "0x7f000001",
        "0X7F.0.0.1",
        "0177.0.0.1",
        "0177.1",
        "127.0.0.1.",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::127.0.0.1]",
        "[::ffff:0:127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[64:ff9b:1::7f00:1]",
        "[2002:7f00:1::1]",
        "[2001:0:808:808::80ff:fffe]",
        "[::ffff:169.254.169.254]",
        "[::ffff:a9fe:a9fe]",
        "[2002:a9fe:a9fe::1]",
        "0xa9fea9fe",
        "[fe80::1]",
        "[fd00::1]",
        "[::]",
    ];
    for host in hosts {
        let url = format!("http://{host}:{port}/hello");
        for (call, args) in [
            ("NET_FETCH", json!({ "url": url })),
            ("RAW_HTTP", json!({ "method": "GET", "url": url })),
        ] {
            let e = env.rt.call(&a, call, &args).await.unwrap_err();
            assert!(
                matches!(e, SyscallError::Denied(ref m) if m.contains("non-public addresses are refused")),
                "{call} {url}: {e}"
            );
        }
    }
    // Out-of-range numbers are refused as invalid, never handed to a resolver.
    for host in ["256.0.0.1", "4294967296", "0x100000000", "1.2.3.4.5"] {
        let e = env.rt.call(&a, "NET_FETCH", &json!({"url": format!("http://{host}:{port}/")})).await.unwrap_err();
        assert!(matches!(e, SyscallError::InvalidArguments(_) | SyscallError::Denied(_)), "{host}: {e}");
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "a refused address was connected to");

    // Allow-listed: every spelling of 127.0.0.1 reaches it, and a
    // `net:127.0.0.1` grant covers them.
    let env = self::env(&["127.0.0.1"]).await;
    let only = env.agent(2, &["net:127.0.0.1"]);
    for host in ["127.1", "2130706433", "0x7f000001", "0177.0.0.1", "[::ffff:127.0.0.1]"] {
        let r = env.rt.call(&only, "NET_FETCH", &json!({"url": format!("http://{host}:{port}/")})).await;
        assert_eq!(r.unwrap_or_else(|e| panic!("{host}: {e}")).output["body"], "loopback-server", "{host}");
    }
}

/// The test resolver: `rebind.test` answers 127.0.0.3 (allow-listed) the
/// first time and 127.0.0.1 every time after; `mixed.test` answers an
/// allowed and a private address at once.
struct Rebinding(std::sync::atomic::AtomicUsize);

impl aos_runtime::Resolve for Rebinding {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<std::net::SocketAddr>>> + Send>> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let ips: Vec<&str> = match host {
            "rebind.test" if n == 0 => vec!["127.0.0.3"],
            "rebind.test" => vec!["127.0.0.1"],
            "mixed.test" => vec!["127.0.0.3", "10.0.0.1"],
            _ => vec![],
        };
        let addrs = ips.into_iter().map(|ip| std::net::SocketAddr::new(ip.parse().unwrap(), port)).collect();
        Box::pin(async move { Ok(addrs) })
    }
}

/// DNS rebinding: the host resolves once, checks every address, and
/// connects to the address it checked — a second answer never gets used.
#[tokio::test]
async fn dns_rebinding_cannot_swap_the_checked_address() {
    // The allowed server on 127.0.0.3:P and a forbidden one on 127.0.0.1:P.
    let (mut allowed, mut forbidden) = (None, None);
    for _ in 0..20 {
        let (p, h) = counting_server("127.0.0.3", 0, "allowed-server").await.unwrap();
        if let Some(f) = counting_server("127.0.0.1", p, "forbidden-server").await {
            allowed = Some((p, h));
            forbidden = Some(f);
            break;
        }
    }
    let ((port, allowed_hits), (_, forbidden_hits)) = (allowed.unwrap(), forbidden.unwrap());
    let resolver = std::sync::Arc::new(Rebinding(Default::default()));
    let r2 = resolver.clone();
    let env = crate::common::Env::with(move |c| {
        c.net.allow = vec!["127.0.0.3".into()];
        c.net.resolver = Some(aos_runtime::ResolverHook(r2));
    })
    .await;
    let a = env.agent(1, &["net"]);
    let r = env.rt.call(&a, "NET_FETCH", &json!({"url": format!("http://rebind.test:{port}/")})).await.unwrap();
    assert_eq!(r.output["body"], "allowed-server");
    assert_eq!(resolver.0.load(std::sync::atomic::Ordering::SeqCst), 1, "resolved exactly once");
    // The next lookup answers loopback: refused, by the check, not connected.
    let e = env.rt.call(&a, "NET_FETCH", &json!({"url": format!("http://rebind.test:{port}/")})).await.unwrap_err();
    assert!(matches!(e, SyscallError::Denied(ref m) if m.contains("127.0.0.1") && m.contains("loopback")), "{e}");
    // One bad address among good ones refuses the name.
    let e = env.rt.call(&a, "NET_FETCH", &json!({"url": format!("http://mixed.test:{port}/")})).await.unwrap_err();
    assert!(matches!(e, SyscallError::Denied(ref m) if m.contains("10.0.0.1") && m.contains("private-use")), "{e}");
    assert_eq!(allowed_hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(forbidden_hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the rebound address was connected to");
}
