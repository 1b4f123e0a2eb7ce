//! Provider construction: [`ProviderConfig`] (what the kernel/CLI read from
//! configuration) and [`build_provider`], which maps a provider name to its
//! implementation. API keys are read from the environment at each `complete`
//! call, so a missing key surfaces there as [`ProviderError::MissingApiKey`]
//! (per process), never at build time.

use std::sync::Arc;
use std::time::Duration;

use crate::http::HttpSettings;
use crate::{
    AnthropicProvider, GeminiProvider, OpenAiProvider, Provider, ProviderError, ScriptProvider,
};

/// Provider names [`build_provider`] knows. NOTE: `local` (in-process GGUF
/// models) is provided by another crate, which wraps this function and adds it.
pub const KNOWN_PROVIDERS: &[&str] = &["openai", "gemini", "anthropic", "script"];

/// Every provider name AgentOS accepts: [`KNOWN_PROVIDERS`] and `local`.
pub const PROVIDER_NAMES: &[&str] = &["local", "openai", "gemini", "anthropic", "script"];

/// Checks a provider name (case-insensitive) against [`PROVIDER_NAMES`],
/// before anything else is looked at: an unknown one is
/// [`ProviderError::UnknownProvider`] with the closest known name.
pub fn check_provider_name(name: &str) -> Result<(), ProviderError> {
    let n = name.trim().to_ascii_lowercase();
    if PROVIDER_NAMES.contains(&n.as_str()) {
        return Ok(());
    }
    Err(ProviderError::UnknownProvider {
        name: name.to_string(),
        suggestion: aos_abi::suggest::did_you_mean(&n, PROVIDER_NAMES.iter().copied()).map(str::to_string),
    })
}

/// Which provider to use and how to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderConfig {
    /// `"openai"` | `"gemini"` | `"anthropic"` | `"script"`.
    pub provider: String,
    /// Overrides the provider's default base URL (e.g. `http://localhost:11434/v1`
    /// for Ollama through the `openai` provider).
    pub base_url: Option<String>,
    /// Overrides the environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// Whole-request timeout (default 120 s).
    pub timeout: Option<Duration>,
    /// Retries on 429/5xx/529/connection errors (default 3).
    pub max_retries: Option<u32>,
}

impl ProviderConfig {
    /// A config for `provider` with every option at its default.
    pub fn new(provider: impl Into<String>) -> Self {
        ProviderConfig {
            provider: provider.into(),
            ..Default::default()
        }
    }

    /// The HTTP settings this config implies on top of `base`.
    pub fn http_settings(&self, base: HttpSettings) -> HttpSettings {
        HttpSettings {
            timeout: self.timeout.unwrap_or(base.timeout),
            max_retries: self.max_retries.unwrap_or(base.max_retries),
            ..base
        }
    }
}

/// Builds the provider named by `cfg.provider` with default HTTP settings
/// (overridden by `cfg.timeout` / `cfg.max_retries`).
pub fn build_provider(cfg: &ProviderConfig) -> Result<Arc<dyn Provider>, ProviderError> {
    build_provider_with(cfg, HttpSettings::default())
}

/// Like [`build_provider`], starting from `http` instead of the default
/// settings (connect timeout, backoff base/cap); `cfg.timeout` and
/// `cfg.max_retries` still take precedence when set.
pub fn build_provider_with(
    cfg: &ProviderConfig,
    http: HttpSettings,
) -> Result<Arc<dyn Provider>, ProviderError> {
    let settings = cfg.http_settings(http);
    let base = cfg.base_url.as_deref().filter(|b| !b.trim().is_empty());
    let key_env = cfg.api_key_env.as_deref().filter(|k| !k.trim().is_empty());
    let name = cfg.provider.trim().to_ascii_lowercase();
    Ok(match name.as_str() {
        "openai" => Arc::new(OpenAiProvider::new(base, key_env, settings)?),
        "gemini" => Arc::new(GeminiProvider::new(base, key_env, settings)?),
        "anthropic" => Arc::new(AnthropicProvider::new(base, key_env, settings)?),
        "script" => Arc::new(ScriptProvider::new()),
        "local" => {
            return Err(ProviderError::Other(
                "the `local` provider is built by aos-llm-local (see aos_daemon::server::provider_factory), \
                 not by aos_providers::build_provider"
                    .into(),
            ))
        }
        _ => {
            check_provider_name(&cfg.provider)?;
            unreachable!("every name check_provider_name accepts is handled above")
        }
    })
}
