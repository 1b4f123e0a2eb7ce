//! `$AOS_HOME/aos.toml`: the daemon's settings, with documented defaults and
//! environment overrides. Every key is optional; an absent file means all
//! defaults. API keys never live here: a provider names the environment
//! variable holding its key (`api_key_env`).
//!
//! ```toml
//! provider = "openai"            # AOS_PROVIDER   default provider of `aos spawn`
//! model = "llama3.2"             # AOS_MODEL      default model
//! base_url = "http://127.0.0.1:11434/v1"  # AOS_BASE_URL
//! model_concurrency = 4          # AOS_MODEL_CONCURRENCY  concurrent model calls per provider
//! context_window = 8192          # AOS_CONTEXT_WINDOW     tokens, for compaction
//! default_grants = ["all"]       # AOS_GRANTS (comma-separated)  rights of a spawn without --grant
//!
//! [budgets]
//! max_steps = 50                 # AOS_MAX_STEPS
//! max_tokens = 200000            # AOS_MAX_TOKENS   (absent = unlimited)
//! max_seconds = 3600             # AOS_MAX_SECONDS  (absent = unlimited)
//!
//! [limits]                       # driver limits
//! call_timeout_secs = 5          # AOS_DRIVER_TIMEOUT_SECS
//! memory_mb = 64                 # AOS_DRIVER_MEMORY_MB
//!
//! [journal]
//! fsync = true                   # AOS_JOURNAL_FSYNC  fsync every journal entry (else flush only)
//!
//! [providers.openai]             # per-provider HTTP settings
//! base_url = "https://api.openai.com/v1"
//! api_key_env = "OPENAI_API_KEY"
//! timeout_secs = 120
//! max_retries = 3
//!
//! [drivers.fs]                   # per-driver configuration, passed to the driver
//! read_limit = 1048576
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub base_url: Option<String>,
    pub model_concurrency: usize,
    pub context_window: usize,
    pub default_grants: Vec<String>,
    pub budgets: BudgetConfig,
    pub limits: LimitConfig,
    pub journal: JournalConfig,
    pub providers: BTreeMap<String, ProviderSettings>,
    pub drivers: BTreeMap<String, toml::Table>,
    /// Long-term memory: embedder and vector store (see `aos_memory::config`).
    pub memory: aos_runtime::aos_memory::MemoryConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    pub max_steps: Option<u64>,
    pub max_tokens: Option<u64>,
    pub max_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitConfig {
    pub call_timeout_secs: f64,
    pub memory_mb: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    pub fsync: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderSettings {
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub timeout_secs: Option<u64>,
    pub max_retries: Option<u32>,
    /// Anything else (kept so that `config show` can display it, masked).
    #[serde(flatten)]
    pub extra: toml::Table,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            provider: None,
            model: None,
            base_url: None,
            model_concurrency: 4,
            context_window: 8192,
            default_grants: vec!["all".into()],
            budgets: BudgetConfig::default(),
            limits: LimitConfig::default(),
            journal: JournalConfig::default(),
            providers: BTreeMap::new(),
            drivers: BTreeMap::new(),
            memory: Default::default(),
        }
    }
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig { max_steps: Some(50), max_tokens: None, max_seconds: None }
    }
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig { call_timeout_secs: 5.0, memory_mb: 64 }
    }
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig { fsync: true }
    }
}

impl Config {
    /// Reads `{home}/aos.toml` (if present) and applies environment overrides.
    pub fn load(home: &Path) -> Result<Config> {
        Self::load_with_env(home, |k| std::env::var(k).ok())
    }

    pub fn load_with_env(home: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let path = home.join("aos.toml");
        let mut cfg = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<Config>(&text)
                .with_context(|| format!("invalid config {}; see `aos config show` for the keys", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        cfg.apply_env(env)?;
        Ok(cfg)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<()> {
        fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T> {
            v.trim().parse::<T>().map_err(|_| anyhow::anyhow!("environment variable {name}={v:?} is not a valid number"))
        }
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        if let Some(v) = get("AOS_PROVIDER") {
            self.provider = Some(v);
        }
        if let Some(v) = get("AOS_MODEL") {
            self.model = Some(v);
        }
        if let Some(v) = get("AOS_BASE_URL") {
            self.base_url = Some(v);
        }
        if let Some(v) = get("AOS_MODEL_CONCURRENCY") {
            self.model_concurrency = num("AOS_MODEL_CONCURRENCY", &v)?;
        }
        if let Some(v) = get("AOS_CONTEXT_WINDOW") {
            self.context_window = num("AOS_CONTEXT_WINDOW", &v)?;
        }
        if let Some(v) = get("AOS_GRANTS") {
            self.default_grants = v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        }
        if let Some(v) = get("AOS_MAX_STEPS") {
            self.budgets.max_steps = Some(num("AOS_MAX_STEPS", &v)?);
        }
        if let Some(v) = get("AOS_MAX_TOKENS") {
            self.budgets.max_tokens = Some(num("AOS_MAX_TOKENS", &v)?);
        }
        if let Some(v) = get("AOS_MAX_SECONDS") {
            self.budgets.max_seconds = Some(num("AOS_MAX_SECONDS", &v)?);
        }
        if let Some(v) = get("AOS_DRIVER_TIMEOUT_SECS") {
            self.limits.call_timeout_secs = num("AOS_DRIVER_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = get("AOS_DRIVER_MEMORY_MB") {
            self.limits.memory_mb = num("AOS_DRIVER_MEMORY_MB", &v)?;
        }
        self.memory.apply_env(&get);
        if let Some(v) = get("AOS_JOURNAL_FSYNC") {
            self.journal.fsync = !matches!(v.as_str(), "0" | "false" | "no" | "off");
        }
        Ok(())
    }

    /// The effective config as TOML, with secrets masked: every string value
    /// whose key contains `key`, `token` or `secret` is shown as `********`
    /// (except `*_env` keys, which only name an environment variable).
    pub fn show(&self) -> String {
        let mut v = toml::Value::try_from(self).unwrap_or(toml::Value::Table(Default::default()));
        mask(&mut v, "");
        let mut s = String::from("# effective configuration (aos.toml + AOS_* environment overrides; unset = default)\n");
        s.push_str(&toml::to_string_pretty(&v).unwrap_or_default());
        s
    }
}

/// Masks secret-looking string values in place.
pub fn mask(v: &mut toml::Value, key: &str) {
    let k = key.to_ascii_lowercase();
    let secret = (k.contains("key") || k.contains("token") || k.contains("secret")) && !k.ends_with("_env");
    match v {
        toml::Value::String(s) if secret => *s = "********".into(),
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                mask(v, k);
            }
        }
        toml::Value::Array(a) if secret => {
            for x in a.iter_mut() {
                if let toml::Value::String(s) = x {
                    *s = "********".into();
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_env_overrides() {
        let d = tempfile::tempdir().unwrap();
        let c = Config::load_with_env(d.path(), |_| None).unwrap();
        assert_eq!(c, Config::default());
        std::fs::write(
            d.path().join("aos.toml"),
            "provider = \"openai\"\nmodel = \"m\"\n[budgets]\nmax_steps = 7\n[providers.openai]\napi_key_env = \"MY_KEY\"\napi_key = \"sk-secret\"\n",
        )
        .unwrap();
        let c = Config::load_with_env(d.path(), |k| (k == "AOS_MODEL").then(|| "m2".to_string())).unwrap();
        assert_eq!(c.provider.as_deref(), Some("openai"));
        assert_eq!(c.model.as_deref(), Some("m2"));
        assert_eq!(c.budgets.max_steps, Some(7));
        let shown = c.show();
        assert!(!shown.contains("sk-secret"), "{shown}");
        assert!(shown.contains("MY_KEY"), "{shown}");
        assert!(shown.contains("********"), "{shown}");
    }

    #[test]
    fn bad_values_are_reported() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("aos.toml"), "nope = 1\n").unwrap();
        assert!(Config::load_with_env(d.path(), |_| None).is_err());
        std::fs::remove_file(d.path().join("aos.toml")).unwrap();
        let e = Config::load_with_env(d.path(), |k| (k == "AOS_MAX_STEPS").then(|| "x".to_string())).unwrap_err();
        assert!(e.to_string().contains("AOS_MAX_STEPS"));
    }
}
