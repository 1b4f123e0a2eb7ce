//! `[memory]` settings (aos.toml, shared by the daemon and `aos run`) and
//! building a [`MemoryService`] from them.
//!
//! ```toml
//! [memory]
//! store = "embedded"          # AOS_MEMORY_STORE: "embedded" ($AOS_HOME/memory) or "chroma"
//! embedder = "minilm"         # AOS_MEMORY_EMBEDDER: "minilm" (in-process) or "openai"
//! # model_dir = "..."         # AOS_EMBEDDER_DIR, default $AOS_MODEL_DIR/all-MiniLM-L6-v2
//! [memory.chroma]
//! url = "http://127.0.0.1:8000"   # AOS_CHROMA_URL
//! [memory.openai]
//! base_url = "https://api.openai.com/v1"
//! model = "text-embedding-3-small"
//! dimension = 1536
//! api_key_env = "OPENAI_API_KEY"
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{
    minilm, ChromaConfig, ChromaStore, EmbeddedStore, Embedder, MemoryError, MemoryService, MiniLmEmbedder,
    OpenAiEmbedder, OpenAiEmbedderConfig, VectorStore,
};

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// "embedded" (default) or "chroma".
    pub store: Option<String>,
    /// "minilm" (default) or "openai".
    pub embedder: Option<String>,
    pub model_dir: Option<PathBuf>,
    pub chroma: Option<ChromaConfig>,
    pub openai: Option<OpenAiSettings>,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiSettings {
    pub base_url: String,
    pub model: String,
    pub dimension: usize,
    /// Name of the environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

impl MemoryConfig {
    /// Applies `AOS_MEMORY_STORE`, `AOS_MEMORY_EMBEDDER`, `AOS_EMBEDDER_DIR`, `AOS_CHROMA_URL`.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) {
        if let Some(v) = env("AOS_MEMORY_STORE") {
            self.store = Some(v);
        }
        if let Some(v) = env("AOS_MEMORY_EMBEDDER") {
            self.embedder = Some(v);
        }
        if let Some(v) = env("AOS_EMBEDDER_DIR") {
            self.model_dir = Some(v.into());
        }
        if let Some(v) = env("AOS_CHROMA_URL") {
            match &mut self.chroma {
                Some(c) => c.url = v,
                None => self.chroma = Some(ChromaConfig::new(v)),
            }
        }
    }

    /// The service for an AgentOS home. Nothing is loaded or contacted yet
    /// (the model loads on first use; Chroma is reached on first call).
    pub fn build(&self, home: &Path) -> Result<MemoryService, MemoryError> {
        let embedder: Arc<dyn Embedder> = match self.embedder.as_deref().unwrap_or("minilm") {
            "minilm" => Arc::new(MiniLmEmbedder::new(
                self.model_dir.clone().unwrap_or_else(minilm::default_model_dir),
            )),
            "openai" => {
                let Some(o) = &self.openai else {
                    return Err(MemoryError::InvalidInput(
                        "memory.embedder = \"openai\" needs a [memory.openai] table (base_url, model, dimension)".into(),
                    ));
                };
                let api_key = o.api_key_env.as_ref().and_then(|n| std::env::var(n).ok());
                Arc::new(OpenAiEmbedder::new(OpenAiEmbedderConfig {
                    base_url: o.base_url.clone(),
                    model: o.model.clone(),
                    dimension: o.dimension,
                    api_key,
                    timeout_secs: o.timeout_secs.unwrap_or(60),
                }))
            }
            other => {
                return Err(MemoryError::InvalidInput(format!(
                    "unknown memory.embedder `{other}`; use \"minilm\" or \"openai\""
                )))
            }
        };
        let store: Arc<dyn VectorStore> = match self.store.as_deref().unwrap_or("embedded") {
            "embedded" => Arc::new(EmbeddedStore::open(home.join("memory"))?),
            "chroma" => {
                let Some(c) = &self.chroma else {
                    return Err(MemoryError::InvalidInput(
                        "memory.store = \"chroma\" needs [memory.chroma] url (or AOS_CHROMA_URL)".into(),
                    ));
                };
                Arc::new(ChromaStore::new(c.clone()))
            }
            other => {
                return Err(MemoryError::InvalidInput(format!(
                    "unknown memory.store `{other}`; use \"embedded\" or \"chroma\""
                )))
            }
        };
        Ok(MemoryService::new(embedder, store))
    }
}
