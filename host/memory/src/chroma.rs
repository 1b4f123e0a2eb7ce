//! A ChromaDB-backed vector store (server API v2, through the `chromadb`
//! crate). Each memory space is one collection, `aos-<space id>`, created
//! with cosine distance (`{"hnsw:space": "cosine"}`). We always send the
//! embeddings (Chroma's own embedder is never used) and the text as the
//! document. Metadata is kept as a JSON string under `aos_metadata`, with
//! its scalar top-level fields copied alongside so Chroma's `where` filters
//! and other clients can see them.
//!
//! Every call has a timeout; an unreachable server yields
//! [`MemoryError::Unavailable`] naming the URL, and nothing is silently
//! dropped: a write either reaches Chroma or returns that error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chromadb::client::{ChromaAuthMethod, ChromaClientOptions};
use chromadb::collection::{CollectionEntries, QueryOptions};
use chromadb::{ChromaClient, ChromaCollection};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::{MemoryError, MemoryHit, MemoryRecord, Space, VectorStore};

/// Where the server is.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct ChromaConfig {
    /// e.g. `http://127.0.0.1:8000`
    pub url: String,
    /// Chroma database (default `default_database`).
    #[serde(default = "default_database")]
    pub database: String,
    /// Seconds before a request is given up (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_database() -> String {
    "default_database".into()
}
fn default_timeout() -> u64 {
    30
}

impl ChromaConfig {
    pub fn new(url: impl Into<String>) -> Self {
        ChromaConfig { url: url.into(), database: default_database(), timeout_secs: default_timeout() }
    }
}

/// The collection holding `space`.
pub fn collection_name(space: &Space) -> String {
    format!("aos-{}", space.id())
}

/// The ChromaDB store. The client connects lazily and reconnects after a failure.
pub struct ChromaStore {
    config: ChromaConfig,
    client: Mutex<Option<ChromaClient>>,
    collections: Mutex<HashMap<String, Arc<ChromaCollection>>>,
    http: reqwest::Client,
}

impl ChromaStore {
    pub fn new(config: ChromaConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            .build()
            .unwrap_or_default();
        ChromaStore { config, client: Mutex::new(None), collections: Mutex::new(HashMap::new()), http }
    }

    fn base(&self) -> &str {
        self.config.url.trim_end_matches('/')
    }

    fn down(&self, e: impl std::fmt::Display) -> MemoryError {
        MemoryError::Unavailable(format!(
            "ChromaDB at {} cannot be reached ({e}); start it (e.g. `chroma run --path DIR --port PORT`) \
             or fix `[memory.chroma] url`; nothing was stored or read",
            self.config.url
        ))
    }

    /// `GET /api/v2/heartbeat` (the crate's own heartbeat uses the removed v1 API).
    pub async fn heartbeat(&self) -> Result<(), MemoryError> {
        let url = format!("{}/api/v2/heartbeat", self.base());
        let r = self.http.get(&url).send().await.map_err(|e| self.down(e))?;
        if !r.status().is_success() {
            return Err(self.down(format!("heartbeat answered {}", r.status())));
        }
        Ok(())
    }

    /// Runs `f` under the configured timeout, mapping errors.
    async fn timed<T>(&self, what: &str, f: impl std::future::Future<Output = anyhow::Result<T>>) -> Result<T, MemoryError> {
        match tokio::time::timeout(Duration::from_secs(self.config.timeout_secs.max(1)), f).await {
            Err(_) => Err(self.down(format!("{what} timed out after {} s", self.config.timeout_secs))),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.classify(what, &e.to_string())),
        }
    }

    fn classify(&self, what: &str, msg: &str) -> MemoryError {
        let lower = msg.to_ascii_lowercase();
        if lower.contains("error sending request")
            || lower.contains("connect")
            || lower.contains("connection")
            || lower.contains("timed out")
            || lower.contains("dns")
        {
            return self.down(format!("{what}: {msg}"));
        }
        if msg.starts_with("400") || msg.starts_with("422") {
            return MemoryError::InvalidInput(format!("ChromaDB refused the {what}: {msg}"));
        }
        MemoryError::Backend(format!("ChromaDB {what} failed: {msg}"))
    }

    async fn client(&self) -> Result<tokio::sync::MappedMutexGuard<'_, ChromaClient>, MemoryError> {
        let mut g = self.client.lock().await;
        if g.is_none() {
            self.heartbeat().await?;
            let opts = ChromaClientOptions {
                url: Some(self.base().to_string()),
                auth: ChromaAuthMethod::None,
                database: self.config.database.clone(),
            };
            let c = self.timed("connection", ChromaClient::new(opts)).await?;
            *g = Some(c);
        }
        Ok(tokio::sync::MutexGuard::map(g, |c| c.as_mut().expect("set above")))
    }

    async fn forget_client(&self) {
        *self.client.lock().await = None;
        self.collections.lock().await.clear();
    }

    /// The collection of `space`, created (cosine) if `create`, else None when missing.
    async fn collection(&self, space: &Space, create: bool) -> Result<Option<Arc<ChromaCollection>>, MemoryError> {
        let name = collection_name(space);
        if let Some(c) = self.collections.lock().await.get(&name) {
            return Ok(Some(c.clone()));
        }
        let client = self.client().await?;
        let c = if create {
            let mut meta = Map::new();
            meta.insert("hnsw:space".into(), Value::from("cosine"));
            Some(Arc::new(self.timed("collection creation", client.get_or_create_collection(&name, Some(meta))).await?))
        } else {
            match self.timed("collection lookup", client.get_collection(&name)).await {
                Ok(c) => Some(Arc::new(c)),
                Err(MemoryError::Unavailable(m)) => return Err(MemoryError::Unavailable(m)),
                Err(_) => None, // no such collection yet: the space is empty
            }
        };
        drop(client);
        if let Some(c) = &c {
            self.collections.lock().await.insert(name, c.clone());
        }
        Ok(c)
    }

    async fn with_reconnect<T>(&self, r: Result<T, MemoryError>) -> Result<T, MemoryError> {
        if let Err(MemoryError::Unavailable(_)) = &r {
            self.forget_client().await;
        }
        r
    }

    async fn upsert_inner(&self, space: &Space, record: MemoryRecord, embedding: Vec<f32>) -> Result<(), MemoryError> {
        let c = self.collection(space, true).await?.expect("created");
        let mut meta = Map::new();
        if let Ok(Value::Object(user)) = serde_json::from_str::<Value>(&record.metadata) {
            for (k, v) in user {
                if (v.is_string() || v.is_number() || v.is_boolean()) && !k.starts_with("aos_") {
                    meta.insert(k, v);
                }
            }
        }
        meta.insert("aos_metadata".into(), Value::from(record.metadata.clone()));
        let entries = CollectionEntries {
            ids: vec![record.key.as_str()],
            metadatas: Some(vec![meta]),
            documents: Some(vec![record.text.as_str()]),
            embeddings: Some(vec![embedding]),
        };
        self.timed("write", c.upsert(entries, None)).await?;
        Ok(())
    }

    /// Writes many records in batches of 1000 (bulk import, benchmarks).
    pub async fn upsert_many(&self, space: &Space, items: Vec<(MemoryRecord, Vec<f32>)>) -> Result<(), MemoryError> {
        let c = self.collection(space, true).await?.expect("created");
        let mut items = items;
        while !items.is_empty() {
            let rest = items.split_off(items.len().min(1000));
            let batch = std::mem::replace(&mut items, rest);
            let metas = batch.iter().map(|(r, _)| {
                let mut m = Map::new();
                m.insert("aos_metadata".into(), Value::from(r.metadata.clone()));
                m
            });
            let entries = CollectionEntries {
                ids: batch.iter().map(|(r, _)| r.key.as_str()).collect(),
                metadatas: Some(metas.collect()),
                documents: Some(batch.iter().map(|(r, _)| r.text.as_str()).collect()),
                embeddings: Some(batch.iter().map(|(_, v)| v.clone()).collect()),
            };
            self.timed("write", c.upsert(entries, None)).await?;
        }
        Ok(())
    }

    async fn query_inner(&self, space: &Space, embedding: Vec<f32>, k: usize) -> Result<Vec<MemoryHit>, MemoryError> {
        let Some(c) = self.collection(space, false).await? else { return Ok(Vec::new()) };
        let q = QueryOptions {
            query_embeddings: Some(vec![embedding]),
            query_texts: None,
            n_results: Some(k),
            where_metadata: None,
            where_document: None,
            include: Some(vec!["metadatas", "documents", "distances"]),
        };
        let r = self.timed("query", c.query(q, None)).await?;
        let ids = r.ids.into_iter().next().unwrap_or_default();
        let docs = r.documents.and_then(|d| d.into_iter().next()).unwrap_or_default();
        let dists = r.distances.and_then(|d| d.into_iter().next()).unwrap_or_default();
        let metas = r.metadatas.and_then(|d| d.into_iter().next()).unwrap_or_default();
        let mut out = Vec::with_capacity(ids.len());
        for (i, key) in ids.into_iter().enumerate() {
            let metadata = metas
                .get(i)
                .and_then(|m| m.as_ref())
                .and_then(|m| m.get("aos_metadata"))
                .and_then(|v| v.as_str())
                .unwrap_or("{}")
                .to_string();
            out.push(MemoryHit {
                key,
                text: docs.get(i).cloned().unwrap_or_default(),
                metadata,
                // Chroma's cosine distance is 1 - cosine similarity.
                score: 1.0 - dists.get(i).copied().unwrap_or(1.0),
            });
        }
        Ok(out)
    }

    async fn delete_inner(&self, space: &Space, key: &str) -> Result<bool, MemoryError> {
        let Some(c) = self.collection(space, false).await? else { return Ok(false) };
        let existing = self
            .timed(
                "lookup",
                c.get(chromadb::collection::GetOptions {
                    ids: vec![key.to_string()],
                    where_metadata: None,
                    limit: None,
                    offset: None,
                    where_document: None,
                    include: Some(vec![]),
                }),
            )
            .await?;
        if existing.ids.is_empty() {
            return Ok(false);
        }
        self.timed("delete", c.delete(Some(vec![key]), None, None)).await?;
        Ok(true)
    }
}

#[async_trait]
impl VectorStore for ChromaStore {
    fn describe(&self) -> String {
        format!("ChromaDB at {}", self.config.url)
    }

    async fn upsert(&self, space: &Space, record: MemoryRecord, embedding: Vec<f32>) -> Result<(), MemoryError> {
        let r = self.upsert_inner(space, record, embedding).await;
        self.with_reconnect(r).await
    }

    async fn query(&self, space: &Space, embedding: Vec<f32>, k: usize) -> Result<Vec<MemoryHit>, MemoryError> {
        let r = self.query_inner(space, embedding, k).await;
        self.with_reconnect(r).await
    }

    async fn delete(&self, space: &Space, key: &str) -> Result<bool, MemoryError> {
        let r = self.delete_inner(space, key).await;
        self.with_reconnect(r).await
    }

    async fn count(&self, space: &Space) -> Result<usize, MemoryError> {
        let r = async {
            let Some(c) = self.collection(space, false).await? else { return Ok(0) };
            self.timed("count", c.count()).await
        }
        .await;
        self.with_reconnect(r).await
    }

    async fn max_private_pid(&self) -> Result<u64, MemoryError> {
        let client = self.client().await?;
        let cols = self.timed("listing", client.list_collections()).await?;
        Ok(cols
            .iter()
            .filter_map(|c| c.name().strip_prefix("aos-agent-").and_then(|p| p.parse().ok()))
            .max()
            .unwrap_or(0))
    }
}
