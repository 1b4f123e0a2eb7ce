//! Webhooks without a daemon: `SYS_REGISTER_WEBHOOK`, authentication of
//! requests by `Kernel::webhook_deliver`, delivery as an event that wakes a
//! blocked process, `SYS_WEBHOOK_REPLY`, timeouts, and cleanup at exit.


use std::time::Duration;

use aos_kernel::webhook::{hmac_sha256_hex, sign};
use aos_kernel::{Entry, WebhookError, WebhookRequest, WebhookResponse};
use crate::support::*;

fn request(path: &str, headers: &[(&str, &str)], body: &str) -> WebhookRequest {
    WebhookRequest {
        method: "POST".into(),
        path: path.into(),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        body: body.as_bytes().to_vec(),
    }
}

fn registration(h: &Harness, pid: u64) -> serde_json::Value {
    h.kernel
        .logs(pid)
        .unwrap()
        .into_iter()
        .find_map(|e| match e.entry {
            Entry::Result { name, output, .. } if name == "SYS_REGISTER_WEBHOOK" => Some(output),
            _ => None,
        })
        .expect("registered")
}

const T: Duration = Duration::from_secs(10);

/// A kernel that also accepts the plain `X-AOS-Secret` header.
fn plain_secret(c: &mut aos_kernel::KernelConfig) {
    c.webhook_auth.allow_secret_header = true;
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn signed(path: &str, secret: &str, timestamp: u64, body: &str) -> WebhookRequest {
    let mut r = request(path, &[], body);
    r.headers.extend(sign(secret, timestamp, body.as_bytes()));
    r
}

#[tokio::test]
async fn requests_are_authenticated_delivered_answered_and_expire() {
    let h = harness_with(plain_secret).await;
    h.kernel.set_webhook_base_url(Some("http://127.0.0.1:9999".into()));
    let pid = h
        .spawn(
            "serve hooks",
            &[
                r#"[SYS_CALL::SYS_REGISTER_WEBHOOK] {"path": "/gh/push"}"#,
                "[SYS_CALL::RECV_MSG] {}",
                r#"[SYS_CALL::SYS_WEBHOOK_REPLY] {"request_id": 1, "status": 201, "body": "thanks"}"#,
                "[SYS_CALL::RECV_MSG] {}",
                r#"[SYS_CALL::SYS_WEBHOOK_REPLY] {"request_id": 2, "body": "signed ok"}
[SYS_CALL::SYS_WEBHOOK_REPLY] {"request_id": 2, "body": "twice"}"#,
                r#"[SYS_CALL::RECV_MSG] {}"#,
                r#"[SYS_CALL::RECV_MSG] {"timeout": 0.3}"#,
                r#"[SYS_CALL::SYS_WEBHOOK_REPLY] {"request_id": 3, "body": "too late"}"#,
                r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#,
            ],
            &["webhook", "ipc"],
        )
        .await;
    h.wait_status(pid, "BlockedRecv").await;
    let reg = registration(&h, pid);
    assert_eq!(reg["url"], "http://127.0.0.1:9999/gh/push");
    assert_eq!(reg["path"], "/gh/push");
    let secret = reg["secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 32, "{secret}");
    assert_eq!(h.kernel.webhooks_of(pid), vec!["/gh/push".to_string()]);

    // Refused: unknown path, no secret, wrong secret, wrong signature. None reaches the process.
    let k = &h.kernel;
    assert!(matches!(k.webhook_deliver(request("/nope", &[("X-AOS-Secret", &secret)], "x"), T).await, Err(WebhookError::NotFound(_))));
    let e = k.webhook_deliver(request("/gh/push", &[], "x"), T).await.unwrap_err();
    assert_eq!((e.clone(), e.http_status()), (WebhookError::MissingSecret, 401));
    let e = k.webhook_deliver(request("/gh/push", &[("x-aos-secret", "guess")], "x"), T).await.unwrap_err();
    assert_eq!((e.clone(), e.http_status()), (WebhookError::WrongSecret, 403));
    let e = k.webhook_deliver(signed("/gh/push", "other", now(), "x"), T).await.unwrap_err();
    assert_eq!(e, WebhookError::WrongSecret);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(k.info(pid).unwrap().counters.steps, 2, "refused requests must not wake the process");
    assert!(!k.logs(pid).unwrap().iter().any(|e| matches!(e.entry, Entry::Event { .. })));

    // The right secret: delivered as an event that wakes RECV_MSG, answered by the reply.
    let resp = k
        .webhook_deliver(
            request("/gh/push", &[("X-AOS-Secret", &secret), ("Content-Type", "application/json"), ("X-GitHub-Event", "push")], r#"{"ref":"main"}"#),
            T,
        )
        .await
        .unwrap();
    assert_eq!(resp, WebhookResponse { status: 201, body: "thanks".into() });
    let seen = h.seen(pid, 2);
    assert!(seen.contains("webhook request #1"), "{seen}");
    assert!(seen.contains(r#"\"method\":\"POST\""#) || seen.contains(r#""method":"POST""#), "{seen}");
    let event = seen.lines().find(|l| l.contains("[EVENT] webhook request #1")).unwrap();
    assert!(event.contains("x-github-event") && event.contains(r#"\"ref\""#), "{event}");
    assert!(!event.contains(&secret) && !event.to_ascii_lowercase().contains("x-aos-secret"), "{event}");

    // A valid HMAC signature instead of the secret. The second reply to the same id is an error.
    h.wait_status(pid, "BlockedRecv").await;
    let resp = k.webhook_deliver(signed("/gh/push", &secret, now(), "signed body"), T).await.unwrap();
    assert_eq!(resp, WebhookResponse { status: 200, body: "signed ok".into() });

    // Nobody answers in time: a timeout, and the late reply is refused precisely.
    h.wait_status(pid, "BlockedRecv").await;
    let e = k.webhook_deliver(request("/gh/push", &[("X-AOS-Secret", &secret)], "slow"), Duration::from_millis(100)).await.unwrap_err();
    assert_eq!((e.clone(), e.http_status()), (WebhookError::Timeout(Duration::from_millis(100)), 504));

    h.wait(pid).await;
    let errors: Vec<String> = k
        .logs(pid)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.entry {
            Entry::Error { name: Some(n), error, .. } if n == "SYS_WEBHOOK_REPLY" => Some(error),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.contains("unknown webhook request #") && e.contains("timed out")), "{errors:?}");
    // Routes end with the process.
    assert!(k.webhooks_of(pid).is_empty());
    assert!(matches!(k.webhook_deliver(request("/gh/push", &[("X-AOS-Secret", &secret)], "x"), T).await, Err(WebhookError::NotFound(_))));
}

#[tokio::test]
async fn paths_are_validated_unique_and_need_the_capability() {
    let h = harness().await;
    let a = h
        .spawn("a", &[r#"[SYS_CALL::SYS_REGISTER_WEBHOOK] {"path": "/shared"}"#, "[SYS_CALL::RECV_MSG] {}"], &["webhook", "ipc"])
        .await;
    h.wait_status(a, "BlockedRecv").await;
    assert!(registration(&h, a)["url"].is_null(), "no front end, no url");
    let b = h
        .spawn(
            "b",
            &[
                r#"[SYS_CALL::SYS_REGISTER_WEBHOOK] {"path": "/shared"}
[SYS_CALL::SYS_REGISTER_WEBHOOK] {"path": "/a/../etc"}
[SYS_CALL::SYS_REGISTER_WEBHOOK] {"path": "no-slash"}"#,
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
            &["webhook"],
        )
        .await;
    h.wait(b).await;
    let c = h.spawn("c", &[r#"[SYS_CALL::SYS_REGISTER_WEBHOOK] {"path": "/c"}"#, r#"[SYS_CALL::SYS_EXIT] {}"#], &["ipc"]).await;
    h.wait(c).await;
    let errors = |pid| -> Vec<String> {
        h.kernel
            .logs(pid)
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.entry {
                Entry::Error { error, .. } => Some(error),
                _ => None,
            })
            .collect()
    };
    let eb = errors(b);
    assert_eq!(eb.len(), 3, "{eb:?}");
    assert!(eb[0].contains(&format!("already registered by process {a}")), "{eb:?}");
    assert!(eb[1].contains("`..`"), "{eb:?}");
    assert!(eb[2].contains("must start with '/'"), "{eb:?}");
    let ec = errors(c);
    assert!(ec.len() == 1 && ec[0].contains("capability `webhook` not granted"), "{ec:?}");
    assert_eq!(h.kernel.webhooks_of(a), vec!["/shared".to_string()]);
    h.kernel.kill(a).unwrap();
}

#[tokio::test]
async fn a_restored_process_keeps_its_paths_and_secrets() {
    let a = harness().await;
    let pid = a
        .spawn("hook", &[r#"[SYS_CALL::SYS_REGISTER_WEBHOOK] {"path": "/kept"}"#, "[SYS_CALL::RECV_MSG] {}", "[SYS_CALL::RECV_MSG] {}", "[SYS_CALL::SYS_WEBHOOK_REPLY] {\"request_id\": 1, \"body\": \"after restart\"}\n[SYS_CALL::RECV_MSG] {}"], &["webhook", "ipc"])
        .await;
    a.wait_status(pid, "BlockedRecv").await;
    let secret = registration(&a, pid)["secret"].as_str().unwrap().to_string();
    let info = a.kernel.info(pid).unwrap();
    let log = a.kernel.logs(pid).unwrap();
    a.kernel.kill(pid).unwrap();
    a.wait(pid).await;

    let b = harness_with(plain_secret).await;
    b.kernel
        .restore(
            aos_kernel::RestoreRequest {
                log,
                next_call_id: 3,
                // What the journal's `webhook_registered` event gives back.
                webhooks: vec![aos_kernel::WebhookRoute { path: "/kept".into(), secret: secret.clone() }],
                ..aos_kernel::RestoreRequest::new(info)
            },
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(b.kernel.webhooks_of(pid), vec!["/kept".to_string()]);
    // Its next step is reply 3 (RECV_MSG), which the request interrupts; reply 4 answers it.
    b.wait_status(pid, "BlockedRecv").await;
    let resp = b.kernel.webhook_deliver(request("/kept", &[("X-AOS-Secret", &secret)], "x"), T).await.unwrap();
    assert_eq!(resp.body, "after restart");
    b.kernel.kill(pid).unwrap();
}

#[tokio::test]
async fn a_webhook_only_process_waits_for_its_requests_but_not_for_messages() {
    let h = harness().await;
    let pid = h
        .spawn(
            "serve hooks without ipc",
            &[
                r#"[SYS_CALL::SYS_REGISTER_WEBHOOK] {"path": "/only/hooks"}"#,
                "[SYS_CALL::RECV_MSG] {}",
                r#"[SYS_CALL::SYS_WEBHOOK_REPLY] {"request_id": 1, "body": "ok"}"#,
                r#"[SYS_CALL::RECV_MSG] {"timeout": 0.2}"#,
                "[SYS_CALL::SEND_MSG] {\"to_pid\": 1, \"content\": \"x\"}",
                r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#,
            ],
            &["webhook"],
        )
        .await;
    h.wait_status(pid, "BlockedRecv").await;
    // Offered to it as a wait for events, and the rest of `ipc` is not.
    let prompt = h.seen(pid, 1);
    assert!(prompt.contains("Wait for the next event") && !prompt.contains("SEND_MSG:"), "{prompt}");
    // A mailbox message does not reach it.
    h.kernel.send_message(pid, "from the operator").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.kernel.info(pid).unwrap().counters.steps, 2, "a message woke a process without `ipc`");
    // A webhook request does.
    let secret = registration(&h, pid)["secret"].as_str().unwrap().to_string();
    let r = h.kernel.webhook_deliver(signed("/only/hooks", &secret, now(), "{}"), T).await.unwrap();
    assert_eq!(r.body, "ok");
    h.wait(pid).await;
    let log = format!("{:?}", h.kernel.logs(pid).unwrap());
    assert!(log.contains("webhook request #1"), "{log}");
    assert!(log.contains("timed_out"), "the second wait times out, the message stays unread: {log}");
    assert!(!log.contains("from the operator"), "{log}");
    assert!(log.contains("capability `ipc` not granted"), "SEND_MSG still needs ipc: {log}");
}

#[tokio::test]
async fn signatures_carry_a_timestamp_and_are_accepted_once() {
    let h = harness().await;
    let pid = h
        .spawn(
            "serve hooks",
            &[
                r#"[SYS_CALL::SYS_REGISTER_WEBHOOK] {"path": "/deploy"}"#,
                "[SYS_CALL::RECV_MSG] {}",
                r#"[SYS_CALL::SYS_WEBHOOK_REPLY] {"request_id": 1, "body": "one"} [SYS_CALL::RECV_MSG] {}"#,
                r#"[SYS_CALL::SYS_WEBHOOK_REPLY] {"request_id": 2, "body": "two"} [SYS_CALL::RECV_MSG] {}"#,
                r#"[SYS_CALL::SYS_WEBHOOK_REPLY] {"request_id": 3, "body": "three"} [SYS_CALL::RECV_MSG] {}"#,
            ],
            &["webhook", "ipc"],
        )
        .await;
    h.wait_status(pid, "BlockedRecv").await;
    let secret = registration(&h, pid)["secret"].as_str().unwrap().to_string();
    let k = &h.kernel;
    let refused = |e: WebhookError| (e.http_status(), e.to_string());

    // A request signed now is accepted...
    let sent = signed("/deploy", &secret, now(), r#"{"tag":"v1"}"#);
    assert_eq!(k.webhook_deliver(sent.clone(), T).await.unwrap().body, "one");
    // ... once: the same request again is a replay.
    h.wait_status(pid, "BlockedRecv").await;
    let (code, msg) = refused(k.webhook_deliver(sent.clone(), T).await.unwrap_err());
    assert_eq!(code, 403);
    assert!(msg.contains("already used"), "{msg}");
    // A request signed (correctly) six minutes ago is refused: it may be a capture.
    let (code, msg) = refused(k.webhook_deliver(signed("/deploy", &secret, now() - 360, "{}"), T).await.unwrap_err());
    assert_eq!(code, 403);
    assert!(msg.contains("X-AOS-Timestamp is 36") && msg.contains("more than the 300 s allowed"), "{msg}");
    // A body changed under a valid timestamp and signature is refused.
    let mut changed = signed("/deploy", &secret, now(), r#"{"tag":"v1"}"#);
    changed.body = br#"{"tag":"evil"}"#.to_vec();
    assert_eq!(k.webhook_deliver(changed, T).await.unwrap_err(), WebhookError::WrongSecret);
    // So is a timestamp changed under the signature (to make a capture fresh).
    let mut moved = signed("/deploy", &secret, now() - 1000, "{}");
    moved.headers[0].1 = now().to_string();
    assert_eq!(k.webhook_deliver(moved, T).await.unwrap_err(), WebhookError::WrongSecret);
    // The old form (a signature of the body alone, no timestamp) and the
    // plain secret are refused, saying what to send instead.
    let body_only = format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), b"{}"));
    let (code, msg) = refused(k.webhook_deliver(request("/deploy", &[("X-AOS-Signature", &body_only)], "{}"), T).await.unwrap_err());
    assert_eq!(code, 401);
    assert!(msg.contains("X-AOS-Timestamp"), "{msg}");
    let (code, msg) = refused(k.webhook_deliver(request("/deploy", &[("X-AOS-Secret", &secret)], "{}"), T).await.unwrap_err());
    assert_eq!(code, 401);
    assert!(msg.contains("allow_secret_header"), "{msg}");
    // Clock skew within the window is accepted, either way.
    assert_eq!(k.webhook_deliver(signed("/deploy", &secret, now() - 240, "a"), T).await.unwrap().body, "two");
    h.wait_status(pid, "BlockedRecv").await;
    assert_eq!(k.webhook_deliver(signed("/deploy", &secret, now() + 240, "b"), T).await.unwrap().body, "three");
    // None of the refused requests reached the process.
    let events = k.logs(pid).unwrap().iter().filter(|e| matches!(e.entry, Entry::Event { .. })).count();
    assert_eq!(events, 3);
    k.kill(pid).unwrap();
}

#[tokio::test]
async fn the_signature_window_is_configurable() {
    let h = harness_with(|c| c.webhook_auth.tolerance = Duration::from_secs(10)).await;
    let pid = h
        .spawn(
            "serve",
            &[
                r#"[SYS_CALL::SYS_REGISTER_WEBHOOK] {"path": "/w"}"#,
                "[SYS_CALL::RECV_MSG] {}",
                r#"[SYS_CALL::SYS_WEBHOOK_REPLY] {"request_id": 1, "body": "ok"} [SYS_CALL::RECV_MSG] {}"#,
            ],
            &["webhook", "ipc"],
        )
        .await;
    h.wait_status(pid, "BlockedRecv").await;
    let secret = registration(&h, pid)["secret"].as_str().unwrap().to_string();
    let e = h.kernel.webhook_deliver(signed("/w", &secret, now() - 30, "x"), T).await.unwrap_err();
    assert!(matches!(e, WebhookError::Stale { tolerance_secs: 10, .. }), "{e}");
    assert_eq!(h.kernel.webhook_deliver(signed("/w", &secret, now() - 5, "x"), T).await.unwrap().body, "ok");
    h.kernel.kill(pid).unwrap();
}
