//! Provider construction: [`ProviderConfig`] (what the kernel/CLI read from
//! configuration) and the [`ProviderRegistry`], which maps a provider name
//! to the constructor of its implementation: the built-in ones
//! ([`KNOWN_PROVIDERS`]) and any other registered (the embedded `local`
//! model, registered by the composition root, `aos_daemon::stack`). API
//! keys are read from the environment at each `complete` call, so a missing
//! key surfaces there as [`ProviderError::MissingApiKey`] (per process),
//! never at build time.

use std::sync::Arc;
use std::time::Duration;

use crate::http::HttpSettings;
use crate::{
    AnthropicProvider, GeminiProvider, OpenAiProvider, Provider, ProviderError, ScriptProvider,
};

/// Provider names [`build_provider`] knows (the built-in registry). `local`
/// (in-process GGUF models) comes from another crate and is added with
/// [`ProviderRegistry::register`].
pub const KNOWN_PROVIDERS: &[&str] = &["openai", "gemini", "anthropic", "script"];

/// Builds one provider from its configuration and HTTP settings.
pub type Constructor =
    Arc<dyn Fn(&ProviderConfig, HttpSettings) -> Result<Arc<dyn Provider>, ProviderError> + Send + Sync>;

/// The providers that can be built, by name.
#[derive(Clone)]
pub struct ProviderRegistry {
    entries: Vec<(String, Constructor)>,
}

impl Default for ProviderRegistry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl ProviderRegistry {
    /// The built-in providers: `openai`, `gemini`, `anthropic`, `script`.
    pub fn builtin() -> Self {
        let mut r = ProviderRegistry { entries: Vec::new() };
        r.register("openai", |cfg, http| {
            Ok(Arc::new(OpenAiProvider::new(base_url(cfg), key_env(cfg), http)?.with_stream(cfg.stream.unwrap_or(DEFAULT_STREAM)))
                as Arc<dyn Provider>)
        });
        r.register("gemini", |cfg, http| {
            Ok(Arc::new(GeminiProvider::new(base_url(cfg), key_env(cfg), http)?.with_stream(cfg.stream.unwrap_or(DEFAULT_STREAM)))
                as Arc<dyn Provider>)
        });
        r.register("anthropic", |cfg, http| {
            Ok(Arc::new(AnthropicProvider::new(base_url(cfg), key_env(cfg), http)?.with_stream(cfg.stream.unwrap_or(DEFAULT_STREAM)))
                as Arc<dyn Provider>)
        });
        r.register("script", |_, _| Ok(Arc::new(ScriptProvider::new()) as Arc<dyn Provider>));
        r
    }

    /// Adds (or replaces) the provider `name` (lower-case).
    pub fn register<F>(&mut self, name: &str, ctor: F)
    where
        F: Fn(&ProviderConfig, HttpSettings) -> Result<Arc<dyn Provider>, ProviderError> + Send + Sync + 'static,
    {
        let ctor: Constructor = Arc::new(ctor);
        match self.entries.iter_mut().find(|(n, _)| n == name) {
            Some(e) => e.1 = ctor,
            None => self.entries.push((name.to_string(), ctor)),
        }
    }

    /// Every provider name, in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Builds the provider named by `cfg.provider` with default HTTP settings.
    pub fn build(&self, cfg: &ProviderConfig) -> Result<Arc<dyn Provider>, ProviderError> {
        self.build_with(cfg, HttpSettings::default())
    }

    /// Like [`ProviderRegistry::build`], starting from `http`; `cfg.timeout`
    /// and `cfg.max_retries` still take precedence when set.
    pub fn build_with(&self, cfg: &ProviderConfig, http: HttpSettings) -> Result<Arc<dyn Provider>, ProviderError> {
        let name = cfg.provider.trim().to_ascii_lowercase();
        match self.entries.iter().find(|(n, _)| *n == name) {
            Some((_, ctor)) => ctor(cfg, cfg.http_settings(http)),
            None if name == "local" => Err(ProviderError::Other(
                "the `local` provider is built by aos-llm-local (registered by aos_daemon::stack), \
                 not by the built-in registry"
                    .into(),
            )),
            None => {
                check_provider_name(&cfg.provider)?;
                Err(ProviderError::Other(format!(
                    "provider `{}` is not registered here: registered providers are {}",
                    cfg.provider,
                    self.names().join(", ")
                )))
            }
        }
    }
}

fn base_url(cfg: &ProviderConfig) -> Option<&str> {
    cfg.base_url.as_deref().filter(|b| !b.trim().is_empty())
}

fn key_env(cfg: &ProviderConfig) -> Option<&str> {
    cfg.api_key_env.as_deref().filter(|k| !k.trim().is_empty())
}

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
    /// Stream replies as server-sent events (default [`DEFAULT_STREAM`]).
    pub stream: Option<bool>,
}

/// Whether replies are streamed when the config does not say.
pub const DEFAULT_STREAM: bool = false;

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
/// (overridden by `cfg.timeout` / `cfg.max_retries`), among the built-in ones.
pub fn build_provider(cfg: &ProviderConfig) -> Result<Arc<dyn Provider>, ProviderError> {
    ProviderRegistry::builtin().build(cfg)
}

/// Like [`build_provider`], starting from `http` instead of the default
/// settings (connect timeout, backoff base/cap); `cfg.timeout` and
/// `cfg.max_retries` still take precedence when set.
pub fn build_provider_with(cfg: &ProviderConfig, http: HttpSettings) -> Result<Arc<dyn Provider>, ProviderError> {
    ProviderRegistry::builtin().build_with(cfg, http)
}
