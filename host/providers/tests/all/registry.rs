use std::time::Duration;

use aos_providers::{
    build_provider, build_provider_with, check_provider_name, ProviderConfig, ProviderError, KNOWN_PROVIDERS,
    PROVIDER_NAMES,
};
use serde_json::json;

use crate::common::*;

#[test]
fn unknown_provider_lists_known_ones() {
    let err = build_provider(&ProviderConfig::new("gpt"))
        .err()
        .expect("must fail");
    let msg = err.to_string();
    assert!(msg.contains("`gpt`"), "{msg}");
    for known in PROVIDER_NAMES {
        assert!(msg.contains(known), "{msg}");
    }
    // Named once, with the closest known name.
    let msg = build_provider(&ProviderConfig::new("openia")).err().expect("must fail").to_string();
    assert_eq!(msg.matches("openia").count(), 1, "{msg}");
    assert!(msg.starts_with("unknown provider `openia` (did you mean `openai`?); the providers are local, openai"), "{msg}");
    assert!(check_provider_name("Local").is_ok());
    assert!(matches!(check_provider_name("ollama"), Err(ProviderError::UnknownProvider { suggestion: None, .. })));
}

#[test]
fn builds_every_known_provider_without_keys() {
    // Keys are checked at the first `complete` call, not at build time.
    for name in KNOWN_PROVIDERS {
        let cfg = ProviderConfig {
            api_key_env: Some(unset_key_var()),
            ..ProviderConfig::new(*name)
        };
        let p = build_provider(&cfg).expect("build");
        assert_eq!(p.name(), *name);
    }
    assert_eq!(
        build_provider(&ProviderConfig::new(" OpenAI "))
            .expect("build")
            .name(),
        "openai"
    );
}

#[tokio::test]
async fn config_max_retries_and_timeout_override_settings() {
    let server = TestServer::start(vec![Reply::json(
        500,
        json!({"error": {"message": "boom"}}),
    )])
    .await;
    let cfg = ProviderConfig {
        provider: "openai".into(),
        base_url: Some(server.url.clone()),
        api_key_env: Some(unset_key_var()),
        timeout: Some(Duration::from_secs(3)),
        max_retries: Some(0),
        stream: None,
    };
    let p = build_provider_with(&cfg, fast_http()).unwrap();
    let err = p.complete(simple("m")).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Api { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(server.hits(), 1);
}
