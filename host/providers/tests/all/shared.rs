//! Behaviour every HTTP provider shares (retries, errors, timeouts, usage
//! fallback), written once against a [`Wire`] description of each service's
//! real JSON and instantiated per provider with [`shared_tests!`].

use std::time::{Duration, Instant};

use aos_providers::{estimate_tokens, HttpSettings, ProviderError, Usage};
use serde_json::Value;

use crate::common::*;

#[derive(Clone, Copy)]
pub enum ErrKind {
    NotFound,
    Auth,
    RateLimit,
    Overloaded,
    Server,
    BadRequest,
}

/// One service's wire format, as the tests' server speaks it.
pub trait Wire {
    const PROVIDER: &'static str;
    /// Request path for `model`.
    fn path(model: &str) -> String;
    /// A success body.
    fn ok(text: &str, truncated: bool, usage: Option<(u64, u64)>) -> Value;
    /// An error body as the service sends it.
    fn error(status: u16, kind: ErrKind, message: &str) -> Value;
    /// (header name, expected value) carrying `key`.
    fn auth(key: &str) -> (&'static str, String);
}

pub async fn success_with_usage<W: Wire>() {
    let server = TestServer::start(vec![Reply::json(
        200,
        W::ok("Hello!", false, Some((12, 3))),
    )])
    .await;
    let (var, key) = fresh_key();
    let p = provider(W::PROVIDER, &server.url, &var);
    assert_eq!(p.name(), W::PROVIDER);
    let c = p.complete(simple("m-1")).await.expect("completion");
    assert_eq!(c.text, "Hello!");
    assert_eq!(
        c.usage,
        Usage {
            prompt_tokens: 12,
            completion_tokens: 3,
            estimated: false,
            ..Default::default()
        }
    );
    assert!(!c.truncated);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, W::path("m-1"));
    let (name, value) = W::auth(&key);
    assert_eq!(
        reqs[0].headers.get(name),
        Some(&value),
        "auth header {name}"
    );
    assert!(reqs[0]
        .headers
        .get("content-type")
        .is_some_and(|v| v.starts_with("application/json")));
}

pub async fn truncated<W: Wire>() {
    let server =
        TestServer::start(vec![Reply::json(200, W::ok("partial", true, Some((5, 7))))]).await;
    let (var, _) = fresh_key();
    let c = provider(W::PROVIDER, &server.url, &var)
        .complete(simple("m"))
        .await
        .expect("completion");
    assert_eq!(c.text, "partial");
    assert!(c.truncated);
    assert_eq!(c.usage.completion_tokens, 7);
}

pub async fn retries_429_then_succeeds<W: Wire>() {
    let server = TestServer::start(vec![
        Reply::json(429, W::error(429, ErrKind::RateLimit, "slow down")),
        Reply::json(429, W::error(429, ErrKind::RateLimit, "slow down")),
        Reply::json(200, W::ok("finally", false, Some((1, 1)))),
    ])
    .await;
    let (var, _) = fresh_key();
    let c = provider(W::PROVIDER, &server.url, &var)
        .complete(simple("m"))
        .await
        .expect("completion");
    assert_eq!(c.text, "finally");
    assert_eq!(server.hits(), 3);
}

pub async fn server_error_forever<W: Wire>() {
    let server = TestServer::start(vec![Reply::json(
        500,
        W::error(500, ErrKind::Server, "boom"),
    )])
    .await;
    let (var, _) = fresh_key();
    let err = provider(W::PROVIDER, &server.url, &var)
        .complete(simple("m"))
        .await
        .unwrap_err();
    eprintln!("[{}] {err}", W::PROVIDER);
    // fast_http(): 3 retries => 4 attempts.
    assert_eq!(server.hits(), 4);
    match &err {
        ProviderError::Api {
            status: 500,
            detail,
            ..
        } => {
            assert!(detail.contains("boom"), "{detail}");
            assert!(detail.contains("4 attempts"), "{detail}");
        }
        other => panic!("expected Api 500, got {other:?}"),
    }
}

pub async fn overloaded_forever<W: Wire>(status: u16) {
    let server = TestServer::start(vec![Reply::json(
        status,
        W::error(status, ErrKind::Overloaded, "busy"),
    )])
    .await;
    let (var, _) = fresh_key();
    let cfg_http = HttpSettings {
        max_retries: 2,
        ..fast_http()
    };
    let err = provider_with(W::PROVIDER, &server.url, &var, cfg_http)
        .complete(simple("m"))
        .await
        .unwrap_err();
    eprintln!("[{}] {err}", W::PROVIDER);
    assert_eq!(server.hits(), 3);
    match &err {
        ProviderError::Overloaded {
            status: s,
            attempts: 3,
            detail,
            ..
        } if *s == status => {
            assert!(detail.contains("busy"), "{detail}")
        }
        other => panic!("expected Overloaded {status}, got {other:?}"),
    }
}

pub async fn unknown_model<W: Wire>() {
    let server = TestServer::start(vec![Reply::json(
        404,
        W::error(404, ErrKind::NotFound, "model no-such-model not found"),
    )])
    .await;
    let (var, _) = fresh_key();
    let err = provider(W::PROVIDER, &server.url, &var)
        .complete(simple("no-such-model"))
        .await
        .unwrap_err();
    eprintln!("[{}] {err}", W::PROVIDER);
    assert_eq!(server.hits(), 1, "404 must not be retried");
    match &err {
        ProviderError::UnknownModel {
            model, provider, ..
        } => {
            assert_eq!(model, "no-such-model");
            assert_eq!(provider, W::PROVIDER);
        }
        other => panic!("expected UnknownModel, got {other:?}"),
    }
    assert!(err.to_string().contains("no-such-model"), "{err}");
}

pub async fn unauthorized<W: Wire>() {
    let server = TestServer::start(vec![Reply::json(
        401,
        W::error(401, ErrKind::Auth, "invalid key"),
    )])
    .await;
    let (var, key) = fresh_key();
    let err = provider(W::PROVIDER, &server.url, &var)
        .complete(simple("m"))
        .await
        .unwrap_err();
    eprintln!("[{}] {err}", W::PROVIDER);
    assert_eq!(server.hits(), 1, "401 must not be retried");
    assert!(
        matches!(err, ProviderError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert!(
        !err.to_string().contains(&key),
        "the key leaked into: {err}"
    );
}

pub async fn bad_request_not_retried<W: Wire>() {
    let server = TestServer::start(vec![Reply::json(
        400,
        W::error(400, ErrKind::BadRequest, "bad field"),
    )])
    .await;
    let (var, _) = fresh_key();
    let err = provider(W::PROVIDER, &server.url, &var)
        .complete(simple("m"))
        .await
        .unwrap_err();
    eprintln!("[{}] {err}", W::PROVIDER);
    assert_eq!(server.hits(), 1);
    match &err {
        ProviderError::Api {
            status: 400,
            detail,
            ..
        } => assert!(detail.contains("bad field"), "{detail}"),
        other => panic!("expected Api 400, got {other:?}"),
    }
}

pub async fn missing_key<W: Wire>(base_url: &str) {
    let var = unset_key_var();
    let err = provider(W::PROVIDER, base_url, &var)
        .complete(simple("m"))
        .await
        .unwrap_err();
    eprintln!("[{}] {err}", W::PROVIDER);
    assert_eq!(err, ProviderError::MissingApiKey { var: var.clone() });
    assert!(err.to_string().contains(&var));
}

pub async fn unreachable<W: Wire>() {
    let url = dead_url();
    let (var, _) = fresh_key();
    let http = HttpSettings {
        max_retries: 1,
        ..fast_http()
    };
    let err = provider_with(W::PROVIDER, &url, &var, http)
        .complete(simple("m"))
        .await
        .unwrap_err();
    eprintln!("[{}] {err}", W::PROVIDER);
    match &err {
        ProviderError::Unreachable { url: u, .. } => assert!(u.starts_with(&url), "{u} vs {url}"),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(err.to_string().contains(&url), "{err}");
}

pub async fn timeout<W: Wire>() {
    let server = TestServer::start(vec![
        Reply::json(200, W::ok("late", false, None)).delayed(Duration::from_secs(3))
    ])
    .await;
    let (var, _) = fresh_key();
    let http = HttpSettings {
        timeout: Duration::from_millis(300),
        ..fast_http()
    };
    let start = Instant::now();
    let err = provider_with(W::PROVIDER, &server.url, &var, http)
        .complete(simple("m"))
        .await
        .unwrap_err();
    eprintln!("[{}] {err}", W::PROVIDER);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        matches!(err, ProviderError::Timeout { secs: 1, .. }),
        "{err:?}"
    );
    assert_eq!(server.hits(), 1, "timeouts are not retried");
    // The message names the setting to raise.
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("`timeout_secs` under `[providers.{}]`", W::PROVIDER)),
        "{msg}"
    );
}

pub async fn estimated_without_usage<W: Wire>() {
    let text = "an answer of some length";
    let server = TestServer::start(vec![Reply::json(200, W::ok(text, false, None))]).await;
    let (var, _) = fresh_key();
    let c = provider(W::PROVIDER, &server.url, &var)
        .complete(simple("m"))
        .await
        .expect("completion");
    assert_eq!(c.text, text);
    assert_eq!(
        c.usage,
        Usage {
            prompt_tokens: estimate_tokens("hello there"),
            completion_tokens: estimate_tokens(text),
            estimated: true,
            ..Default::default()
        }
    );
}

pub async fn garbage_body<W: Wire>() {
    let server = TestServer::start(vec![Reply {
        status: 200,
        body: "not json".into(),
        headers: vec![],
        delay: Duration::ZERO,
    }])
    .await;
    let (var, _) = fresh_key();
    let err = provider(W::PROVIDER, &server.url, &var)
        .complete(simple("m"))
        .await
        .unwrap_err();
    eprintln!("[{}] {err}", W::PROVIDER);
    assert!(matches!(err, ProviderError::BadResponse { .. }), "{err:?}");
}

/// Instantiates the shared tests for one `Wire` type.
#[macro_export]
macro_rules! shared_tests {
    ($wire:ty, missing_key_base = $base:expr, overloaded_status = $ov:expr) => {
        #[tokio::test]
        async fn success_with_usage() {
            $crate::shared::success_with_usage::<$wire>().await
        }
        #[tokio::test]
        async fn truncated() {
            $crate::shared::truncated::<$wire>().await
        }
        #[tokio::test]
        async fn retries_429_then_succeeds() {
            $crate::shared::retries_429_then_succeeds::<$wire>().await
        }
        #[tokio::test]
        async fn server_error_forever() {
            $crate::shared::server_error_forever::<$wire>().await
        }
        #[tokio::test]
        async fn overloaded_forever() {
            $crate::shared::overloaded_forever::<$wire>($ov).await
        }
        #[tokio::test]
        async fn unknown_model() {
            $crate::shared::unknown_model::<$wire>().await
        }
        #[tokio::test]
        async fn unauthorized() {
            $crate::shared::unauthorized::<$wire>().await
        }
        #[tokio::test]
        async fn bad_request_not_retried() {
            $crate::shared::bad_request_not_retried::<$wire>().await
        }
        #[tokio::test]
        async fn missing_key() {
            $crate::shared::missing_key::<$wire>($base).await
        }
        #[tokio::test]
        async fn unreachable() {
            $crate::shared::unreachable::<$wire>().await
        }
        #[tokio::test]
        async fn timeout() {
            $crate::shared::timeout::<$wire>().await
        }
        #[tokio::test]
        async fn estimated_without_usage() {
            $crate::shared::estimated_without_usage::<$wire>().await
        }
        #[tokio::test]
        async fn garbage_body() {
            $crate::shared::garbage_body::<$wire>().await
        }
    };
}
