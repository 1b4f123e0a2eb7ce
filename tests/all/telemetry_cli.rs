//! Traces end to end: the daemon, configured by `[telemetry]` in aos.toml
//! with `OTEL_SERVICE_NAME` in its environment (the variable wins over the
//! file), exports a scripted agent's steps over OTLP/HTTP to a local
//! receiver — protobuf, to `/v1/traces`, flushed when the kernel stops —
//! without the agent's arguments (content capture is opt-in). The spans'
//! structure is checked by decoding in `host/telemetry/tests/otlp.rs`; this
//! checks the daemon's wiring.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use aos_tests::daemon::*;

/// One OTLP export as the receiver saw it.
struct Export {
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// A minimal HTTP/1.1 receiver on 127.0.0.1 that answers 200 to every POST.
fn receiver() -> (u16, Arc<Mutex<Vec<Export>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let (mut len, mut content_type) = (0usize, String::new());
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap_or((h, ""));
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap(),
                            "content-type" => content_type = v.trim().to_string(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    seen.lock().unwrap().push(Export { path, content_type, body });
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                        .unwrap();
                }
            });
        }
    });
    (port, got)
}

fn has(body: &[u8], what: &str) -> bool {
    body.windows(what.len()).any(|w| w == what.as_bytes())
}

#[test]
fn the_daemon_exports_an_agents_steps_over_otlp_http() {
    let (port, got) = receiver();
    let aos = new_aos();
    std::fs::write(
        aos.home().join("aos.toml"),
        format!("[telemetry]\nenabled = true\nendpoint = \"http://127.0.0.1:{port}\"\nservice_name = \"from-the-file\"\n"),
    )
    .unwrap();
    let d = Daemon::guard(&aos);
    let out = aos.cmd().args(["kernel", "start"]).env("OTEL_SERVICE_NAME", "aos-under-test").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let model = script(
        &aos,
        "steps.txt",
        "[SYS_CALL::FS_WRITE] {\"path\": \"note.txt\", \"content\": \"private-words-42\"}\n---\n[SYS_CALL::NO_SUCH_CALL] {}\n---\n[SYS_CALL::SYS_EXIT] {\"code\": 0}\n",
    );
    let (code, out, err) = aos.run(&["spawn", "--provider", "script", "--model", &model, "--grant", "fs:rw", "--wait", "t"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = aos.run(&["kernel", "stop"]);
    assert_eq!(code, 0, "{out}\n{err}");
    drop(d);

    let got = got.lock().unwrap();
    assert!(!got.is_empty(), "no export reached the receiver");
    for e in got.iter() {
        assert_eq!(e.path, "/v1/traces");
        assert_eq!(e.content_type, "application/x-protobuf");
    }
    let all: Vec<u8> = got.iter().flat_map(|e| e.body.iter().copied()).collect();
    for name in ["aos.step", "execute_tool FS_WRITE", "execute_tool NO_SUCH_CALL", "execute_tool SYS_EXIT", "gen_ai.usage.input_tokens"] {
        assert!(has(&all, name), "no `{name}` in the exported spans");
    }
    assert!(has(&all, "aos-under-test") && !has(&all, "from-the-file"), "OTEL_SERVICE_NAME did not win over the file");
    assert!(!has(&all, "private-words-42"), "an argument was exported without capture_content");
}
