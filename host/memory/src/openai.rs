//! An embedder that calls an OpenAI-compatible `POST /v1/embeddings`
//! endpoint (OpenAI, llama.cpp's server, vLLM, Ollama's OpenAI API...),
//! configured like the LLM providers: base URL, model, optional API key.

use std::time::Duration;

use async_trait::async_trait;

use crate::{Embedder, MemoryError};

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct OpenAiEmbedderConfig {
    /// e.g. `https://api.openai.com/v1` (the `/embeddings` path is appended).
    pub base_url: String,
    pub model: String,
    /// Dimension of the model's vectors (e.g. 1536 for text-embedding-3-small).
    pub dimension: usize,
    /// Bearer token, if the endpoint needs one.
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    60
}

pub struct OpenAiEmbedder {
    config: OpenAiEmbedderConfig,
    http: reqwest::Client,
}

#[derive(serde::Deserialize)]
struct Response {
    data: Vec<Item>,
}

#[derive(serde::Deserialize)]
struct Item {
    embedding: Vec<f32>,
    #[serde(default)]
    index: Option<usize>,
}

impl OpenAiEmbedder {
    pub fn new(config: OpenAiEmbedderConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            .build()
            .unwrap_or_default();
        OpenAiEmbedder { config, http }
    }

    fn url(&self) -> String {
        format!("{}/embeddings", self.config.base_url.trim_end_matches('/'))
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn describe(&self) -> String {
        format!("{} at {}", self.config.model, self.config.base_url)
    }

    fn dimension(&self) -> usize {
        self.config.dimension
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, MemoryError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let n = texts.len();
        let body = serde_json::json!({ "model": self.config.model, "input": texts });
        let mut req = self.http.post(self.url()).json(&body);
        if let Some(k) = &self.config.api_key {
            req = req.bearer_auth(k);
        }
        let r = req.send().await.map_err(|e| {
            MemoryError::Unavailable(format!("the embeddings endpoint {} cannot be reached: {e}", self.url()))
        })?;
        let status = r.status();
        if !status.is_success() {
            let text = r.text().await.unwrap_or_default();
            let text: String = text.chars().take(500).collect();
            return Err(MemoryError::Backend(format!("the embeddings endpoint {} answered {status}: {text}", self.url())));
        }
        let mut resp: Response = r
            .json()
            .await
            .map_err(|e| MemoryError::Backend(format!("the embeddings endpoint {} sent an unreadable answer: {e}", self.url())))?;
        if resp.data.len() != n {
            return Err(MemoryError::Backend(format!(
                "the embeddings endpoint returned {} vectors for {n} texts",
                resp.data.len()
            )));
        }
        resp.data.sort_by_key(|i| i.index.unwrap_or(0));
        let out: Vec<Vec<f32>> = resp.data.into_iter().map(|i| i.embedding).collect();
        if let Some(v) = out.iter().find(|v| v.len() != self.config.dimension) {
            return Err(MemoryError::Backend(format!(
                "the embeddings endpoint returned {}-dimensional vectors, but `dimension` is configured as {}",
                v.len(),
                self.config.dimension
            )));
        }
        Ok(out)
    }
}
