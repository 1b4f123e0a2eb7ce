//! NET_FETCH over `https`, against a real TLS server on 127.0.0.1 whose
//! certificate is signed by a CA made for the test: trusted only when the
//! operator adds that CA (`[net] ca_files`), refused otherwise.


use std::path::PathBuf;
use std::sync::Arc;

use aos_runtime::{DriverRuntime, RuntimeConfig, RuntimeError};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A CA, and a server certificate for `127.0.0.1` signed by it.
struct Pki {
    ca_pem: String,
    leaf: CertificateDer<'static>,
    leaf_key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "aos test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        leaf: leaf.der().clone(),
        leaf_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

/// An HTTPS server answering every GET with a short text body.
async fn tls_server(pki: &Pki) -> u16 {
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.leaf.clone()], pki.leaf_key.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake (untrusted certificate) ends here.
                let Ok(mut tls) = acceptor.accept(sock).await else { return };
                let mut buf = vec![0u8; 8192];
                let n = tls.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split(' ').nth(1).unwrap_or("/").to_string();
                let body = format!("secure hello from {path}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

fn write_ca(dir: &std::path::Path, pem: &str) -> PathBuf {
    let path = dir.join("test-ca.pem");
    std::fs::write(&path, pem).unwrap();
    path
}

#[tokio::test]
async fn https_works_with_an_operator_trusted_ca() {
    let pki = pki();
    let port = tls_server(&pki).await;
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = write_ca(ca_dir.path(), &pki.ca_pem);
    let env = crate::common::Env::with(move |c| {
        c.net.allow = vec!["127.0.0.1".into()];
        c.net.ca_files = vec![ca];
    })
    .await;
    let a = env.agent(1, &["net"]);
    let r = env.rt.call(&a, "NET_FETCH", &json!({"url": format!("https://127.0.0.1:{port}/doc")})).await.unwrap();
    assert_eq!(r.output["status"], 200, "{}", r.output);
    assert_eq!(r.output["body"], "secure hello from /doc");
}

#[tokio::test]
async fn https_with_an_untrusted_certificate_is_refused_with_the_reason() {
    let pki = pki();
    let port = tls_server(&pki).await;
    let env = crate::common::Env::with(|c| c.net.allow = vec!["127.0.0.1".into()]).await;
    let a = env.agent(1, &["net"]);
    let e = env.rt.call(&a, "NET_FETCH", &json!({"url": format!("https://127.0.0.1:{port}/doc")})).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("TLS with `127.0.0.1` failed") && msg.contains("UnknownIssuer"), "{msg}");
}

#[tokio::test]
async fn a_bad_ca_file_is_a_clear_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content, want) in [
        ("missing.pem", None, "cannot read CA file"),
        ("empty.pem", Some("not a certificate\n"), "holds no PEM certificate"),
    ] {
        let path = dir.path().join(name);
        if let Some(c) = content {
            std::fs::write(&path, c).unwrap();
        }
        let mut cfg = RuntimeConfig::new(dir.path().join("home"));
        cfg.cache_dir = Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("driver-cache"));
        cfg.net.ca_files = vec![path.clone()];
        let err = match DriverRuntime::open(cfg).await {
            Ok(_) => panic!("{name}: the runtime opened with a bad CA file"),
            Err(e) => e,
        };
        assert!(matches!(err, RuntimeError::Net(_)), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(want) && msg.contains(name) && msg.contains("ca_files"), "{msg}");
    }
}
