//! Long-term memory for AgentOS: the [`Embedder`] and [`VectorStore`] traits,
//! their implementations, and [`MemoryService`], which the driver runtime's
//! `aos:kernel/embedder` and `aos:kernel/vector-store` host interfaces call.
//!
//! - `minilm`: all-MiniLM-L6-v2 run in-process with candle (the default embedder).
//! - `openai`: any OpenAI-compatible `/v1/embeddings` endpoint.
//! - `embedded`: an in-process store persisted under `$AOS_HOME/memory/` (the default store).
//! - `chroma`: a ChromaDB server (one collection per memory space).
//!
//! Memory spaces are named by the host, never by the guest: see [`Space`].

pub mod chroma;
pub mod config;
pub mod embedded;
pub mod minilm;
pub mod openai;

use std::sync::Arc;

use async_trait::async_trait;

pub use chroma::{ChromaConfig, ChromaStore};
pub use config::MemoryConfig;
pub use embedded::EmbeddedStore;
pub use minilm::MiniLmEmbedder;
pub use openai::{OpenAiEmbedder, OpenAiEmbedderConfig};

/// Longest text one memory may hold (bytes), checked again on the host.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Longest key (bytes).
pub const MAX_KEY_BYTES: usize = 256;
/// Most results one query may return.
pub const MAX_K: usize = 50;
/// Most texts one embed call may carry.
pub const MAX_EMBED_BATCH: usize = 256;

/// What went wrong in the memory subsystem. Messages say what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MemoryError {
    /// The caller's input is wrong (empty, too big, wrong vector dimension).
    #[error("{0}")]
    InvalidInput(String),
    /// The input is over a size limit.
    #[error("{0}")]
    TooLarge(String),
    /// A backend (the embedding model, ChromaDB, an embeddings endpoint) cannot be reached or loaded.
    #[error("{0}")]
    Unavailable(String),
    /// Reading or writing the store's files failed.
    #[error("{0}")]
    Io(String),
    /// A backend answered something unexpected.
    #[error("{0}")]
    Backend(String),
}

/// One stored memory.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryRecord {
    pub key: String,
    pub text: String,
    /// A JSON object, serialised.
    pub metadata: String,
}

/// One query result.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryHit {
    pub key: String,
    pub text: String,
    pub metadata: String,
    /// Cosine similarity in [-1, 1].
    pub score: f32,
}

/// A memory space, as decided by the host from the caller's capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Space {
    /// A process's own memory, by pid (pids are kept across kernel restarts).
    Private(u64),
    /// A named shared space (`memory:shared/NAME`).
    Shared(String),
}

impl Space {
    /// A stable identifier made of `[a-z0-9._-]`, usable as a directory or
    /// collection name: `agent-42`, `shared-team`.
    pub fn id(&self) -> String {
        match self {
            Space::Private(pid) => format!("agent-{pid}"),
            Space::Shared(name) => format!("shared-{name}"),
        }
    }
}

impl std::fmt::Display for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Space::Private(pid) => write!(f, "the private memory of process {pid}"),
            Space::Shared(name) => write!(f, "shared memory space `shared/{name}`"),
        }
    }
}

/// Turns texts into vectors.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// A short description, e.g. `all-MiniLM-L6-v2 (in-process)`.
    fn describe(&self) -> String;
    fn dimension(&self) -> usize;
    /// One vector per text, in order. Never blocks the calling async thread.
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, MemoryError>;
}

/// Stores records with their vectors, per space, and finds the nearest by cosine similarity.
#[async_trait]
pub trait VectorStore: Send + Sync {
    fn describe(&self) -> String;
    /// Inserts or replaces the record with this key.
    async fn upsert(&self, space: &Space, record: MemoryRecord, embedding: Vec<f32>) -> Result<(), MemoryError>;
    /// Up to `k` records, most similar first.
    async fn query(&self, space: &Space, embedding: Vec<f32>, k: usize) -> Result<Vec<MemoryHit>, MemoryError>;
    /// Whether a record was deleted.
    async fn delete(&self, space: &Space, key: &str) -> Result<bool, MemoryError>;
    /// Number of records in a space.
    async fn count(&self, space: &Space) -> Result<usize, MemoryError>;
    /// The highest pid that owns a private space here (0 if none), so that
    /// a kernel never hands an old process's memories to a new process.
    async fn max_private_pid(&self) -> Result<u64, MemoryError>;
}

/// An embedder and a store, with the checks every call goes through.
#[derive(Clone)]
pub struct MemoryService {
    pub embedder: Arc<dyn Embedder>,
    pub store: Arc<dyn VectorStore>,
}

impl std::fmt::Debug for MemoryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryService")
            .field("embedder", &self.embedder.describe())
            .field("store", &self.store.describe())
            .finish()
    }
}

impl MemoryService {
    pub fn new(embedder: Arc<dyn Embedder>, store: Arc<dyn VectorStore>) -> Self {
        MemoryService { embedder, store }
    }

    pub fn dimension(&self) -> usize {
        self.embedder.dimension()
    }

    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, MemoryError> {
        if texts.len() > MAX_EMBED_BATCH {
            return Err(MemoryError::TooLarge(format!(
                "{} texts in one embed call, more than the maximum of {MAX_EMBED_BATCH}",
                texts.len()
            )));
        }
        if let Some(t) = texts.iter().find(|t| t.len() > MAX_TEXT_BYTES) {
            return Err(MemoryError::TooLarge(format!(
                "a text of {} bytes is longer than the maximum of {MAX_TEXT_BYTES}",
                t.len()
            )));
        }
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let n = texts.len();
        let out = self.embedder.embed(texts).await?;
        if out.len() != n || out.iter().any(|v| v.len() != self.dimension()) {
            return Err(MemoryError::Backend(format!(
                "the embedder ({}) returned {} vectors for {n} texts, or vectors of the wrong dimension",
                self.embedder.describe(),
                out.len()
            )));
        }
        Ok(out)
    }

    fn check_vector(&self, v: &[f32]) -> Result<(), MemoryError> {
        let dim = self.dimension();
        if v.len() != dim {
            return Err(MemoryError::InvalidInput(format!(
                "the vector has {} dimensions, but this memory uses {dim} ({}); embed texts with the \
                 memory's own embedder",
                v.len(),
                self.embedder.describe()
            )));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(MemoryError::InvalidInput("the vector contains NaN or infinite values".into()));
        }
        if v.iter().all(|x| *x == 0.0) {
            return Err(MemoryError::InvalidInput("the vector is all zeros; it has no direction".into()));
        }
        Ok(())
    }

    pub async fn upsert(&self, space: &Space, record: MemoryRecord, embedding: Vec<f32>) -> Result<(), MemoryError> {
        if record.key.trim().is_empty() {
            return Err(MemoryError::InvalidInput("the key is empty; name the memory".into()));
        }
        if record.key.len() > MAX_KEY_BYTES {
            return Err(MemoryError::TooLarge(format!(
                "the key is {} bytes, more than the maximum of {MAX_KEY_BYTES}",
                record.key.len()
            )));
        }
        if record.text.len() > MAX_TEXT_BYTES {
            return Err(MemoryError::TooLarge(format!(
                "the text is {} bytes, more than the maximum of {MAX_TEXT_BYTES}; nothing was stored",
                record.text.len()
            )));
        }
        match serde_json::from_str::<serde_json::Value>(&record.metadata) {
            Ok(serde_json::Value::Object(_)) => {}
            _ => return Err(MemoryError::InvalidInput("metadata must be a JSON object".into())),
        }
        self.check_vector(&embedding)?;
        self.store.upsert(space, record, embedding).await
    }

    pub async fn query(&self, space: &Space, embedding: Vec<f32>, k: usize) -> Result<Vec<MemoryHit>, MemoryError> {
        self.check_vector(&embedding)?;
        if k == 0 || k > MAX_K {
            return Err(MemoryError::InvalidInput(format!("k must be between 1 and {MAX_K}, got {k}")));
        }
        self.store.query(space, embedding, k).await
    }

    pub async fn delete(&self, space: &Space, key: &str) -> Result<bool, MemoryError> {
        if key.is_empty() {
            return Err(MemoryError::InvalidInput("the key is empty".into()));
        }
        self.store.delete(space, key).await
    }

    /// Embeds `text` and stores it (a convenience for tests and tools).
    pub async fn write_text(&self, space: &Space, key: &str, text: &str, metadata: &str) -> Result<(), MemoryError> {
        let v = self.embed(vec![text.to_string()]).await?.pop().unwrap_or_default();
        let record = MemoryRecord { key: key.into(), text: text.into(), metadata: metadata.into() };
        self.upsert(space, record, v).await
    }

    /// Embeds `query` and searches (a convenience for tests and tools).
    pub async fn read_text(&self, space: &Space, query: &str, k: usize) -> Result<Vec<MemoryHit>, MemoryError> {
        if query.trim().is_empty() {
            return Err(MemoryError::InvalidInput("the query is empty".into()));
        }
        let v = self.embed(vec![query.to_string()]).await?.pop().unwrap_or_default();
        self.query(space, v, k).await
    }
}

/// Scales `v` to unit length (left as is if it is all zeros).
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}
