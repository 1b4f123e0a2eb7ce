//! The `memory` driver: MEM_WRITE, MEM_READ and MEM_DELETE (long-term memory).
//!
//! It validates the arguments, turns texts into vectors through the imported
//! `aos:kernel/embedder` interface and keeps them in `aos:kernel/vector-store`.
//! Importing those interfaces is what makes this driver need the `memory`
//! capability. Which memory space a call reaches is decided by the host, not
//! here: `space` omitted means the calling process's private space, and
//! `"shared/NAME"` a shared space the process was granted
//! (`memory:shared/NAME`).
//!
//! Configuration (`[drivers.memory]`): `max_value_bytes` (65536),
//! `default_k` (5), `max_k` (50).

use aos_guest_sdk::host::{embedder, vector_store};
use aos_guest_sdk::{config, prelude::*};

/// Largest value (text) one memory may hold, in bytes.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest metadata object, serialised, in bytes.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// Longest query, in bytes.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;
pub const DEFAULT_K: u32 = 5;
pub const DEFAULT_MAX_K: u32 = 50;

/// Arguments of MEM_WRITE.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    /// Name of the memory; writing the same key again replaces it.
    pub key: String,
    /// The text to remember.
    pub value: String,
    /// Optional JSON object stored with the memory and returned with it.
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, Value>>,
    /// Memory space: omit for your own, or "shared/NAME" (needs memory:shared/NAME).
    #[serde(default)]
    pub space: Option<String>,
}

/// Arguments of MEM_READ.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    /// What to look for, in your own words; memories are found by meaning.
    pub query: String,
    /// How many memories to return, most similar first (default 5, at most 50).
    #[serde(default)]
    pub k: Option<u32>,
    /// Memory space: omit for your own, or "shared/NAME" (needs memory:shared/NAME).
    #[serde(default)]
    pub space: Option<String>,
}

/// Arguments of MEM_DELETE.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    /// Key of the memory to forget.
    pub key: String,
    /// Memory space: omit for your own, or "shared/NAME" (needs memory:shared/NAME).
    #[serde(default)]
    pub space: Option<String>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct WriteResult {
    pub key: String,
    pub stored: bool,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Hit {
    pub key: String,
    pub text: String,
    pub score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct ReadResult {
    pub results: Vec<Hit>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct DeleteResult {
    pub key: String,
    pub deleted: bool,
}

fn check_key(key: &str) -> SyscallResult<()> {
    if key.trim().is_empty() {
        return Err(SyscallError::InvalidArguments("`key` is empty; name the memory".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(SyscallError::LimitExceeded(format!(
            "`key` is {} bytes, more than the maximum of {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(SyscallError::InvalidArguments("`key` contains control characters".into()));
    }
    Ok(())
}

fn space_of(space: Option<String>) -> String {
    space.unwrap_or_default()
}

/// Checks MEM_WRITE's arguments; returns the metadata as a JSON string.
pub fn check_write(args: &WriteArgs, max_value: usize) -> SyscallResult<String> {
    check_key(&args.key)?;
    if args.value.trim().is_empty() {
        return Err(SyscallError::InvalidArguments("`value` is empty; there is nothing to remember".into()));
    }
    if args.value.len() > max_value {
        return Err(SyscallError::LimitExceeded(format!(
            "`value` is {} bytes, more than the maximum of {max_value}; split it into several memories \
             (nothing was stored)",
            args.value.len()
        )));
    }
    let meta = match &args.metadata {
        Some(m) => serde_json::to_string(m).unwrap_or_else(|_| "{}".into()),
        None => "{}".into(),
    };
    if meta.len() > MAX_METADATA_BYTES {
        return Err(SyscallError::LimitExceeded(format!(
            "`metadata` is {} bytes once serialised, more than the maximum of {MAX_METADATA_BYTES}",
            meta.len()
        )));
    }
    Ok(meta)
}

/// Checks MEM_READ's arguments; returns k.
pub fn check_read(args: &ReadArgs, default_k: u32, max_k: u32) -> SyscallResult<u32> {
    if args.query.trim().is_empty() {
        return Err(SyscallError::InvalidArguments(
            "`query` is empty; say what you are looking for".into(),
        ));
    }
    if args.query.len() > MAX_QUERY_BYTES {
        return Err(SyscallError::LimitExceeded(format!(
            "`query` is {} bytes, more than the maximum of {MAX_QUERY_BYTES}",
            args.query.len()
        )));
    }
    let k = args.k.unwrap_or(default_k.clamp(1, max_k.max(1)));
    if k == 0 || k > max_k {
        return Err(SyscallError::InvalidArguments(format!("`k` must be between 1 and {max_k}, got {k}")));
    }
    Ok(k)
}

fn embed_one(text: &str) -> SyscallResult<Vec<f32>> {
    let mut v = embedder::embed(&[text.to_string()])?;
    match v.pop() {
        Some(e) if v.is_empty() => Ok(e),
        _ => Err(SyscallError::Internal("the embedder returned no vector for one text".into())),
    }
}

pub fn mem_write(args: WriteArgs) -> SyscallResult<WriteResult> {
    let max_value: usize = config::get_or("max_value_bytes", DEFAULT_MAX_VALUE_BYTES);
    let metadata = check_write(&args, max_value)?;
    let embedding = embed_one(&args.value)?;
    let record = vector_store::MemoryRecord { key: args.key.clone(), text: args.value, metadata };
    vector_store::upsert(&space_of(args.space), &record, &embedding)?;
    Ok(WriteResult { key: args.key, stored: true })
}

pub fn mem_read(args: ReadArgs) -> SyscallResult<ReadResult> {
    let max_k: u32 = config::get_or("max_k", DEFAULT_MAX_K);
    let default_k: u32 = config::get_or("default_k", DEFAULT_K);
    let k = check_read(&args, default_k, max_k)?;
    let embedding = embed_one(&args.query)?;
    let hits = vector_store::query(&space_of(args.space), &embedding, k)?;
    let results = hits
        .into_iter()
        .map(|h| {
            let metadata = serde_json::from_str::<Value>(&h.metadata)
                .ok()
                .filter(|m| m.as_object().is_some_and(|o| !o.is_empty()));
            Hit { key: h.key, text: h.text, score: h.score, metadata }
        })
        .collect();
    Ok(ReadResult { results })
}

pub fn mem_delete(args: DeleteArgs) -> SyscallResult<DeleteResult> {
    check_key(&args.key)?;
    let deleted = vector_store::delete(&space_of(args.space), &args.key)?;
    Ok(DeleteResult { key: args.key, deleted })
}

pub struct Memory;

impl Driver for Memory {
    fn router() -> Router {
        Router::new()
            .syscall(
                "MEM_WRITE",
                "Remember a text under a key in long-term memory (it survives restarts). Writing the \
                 same key again replaces it. Optional `metadata` (a JSON object) is returned with it. \
                 `space`: omit for your private memory, or \"shared/NAME\" for a shared one you were granted.",
                mem_write,
            )
            .syscall(
                "MEM_READ",
                "Recall memories by meaning: returns up to `k` (default 5) memories most similar to \
                 `query`, each with its key, text, score (cosine similarity, higher is closer) and metadata.",
                mem_read,
            )
            .syscall("MEM_DELETE", "Forget the memory stored under `key`.", mem_delete)
    }
}

aos_guest_sdk::export_driver!(Memory);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_arguments() {
        let w = |key: &str, value: &str| WriteArgs { key: key.into(), value: value.into(), metadata: None, space: None };
        assert_eq!(check_write(&w("a", "b"), 10).unwrap(), "{}");
        assert!(matches!(check_write(&w(" ", "b"), 10), Err(SyscallError::InvalidArguments(_))));
        assert!(matches!(check_write(&w("a", ""), 10), Err(SyscallError::InvalidArguments(_))));
        assert!(matches!(check_write(&w("a", "01234567890"), 10), Err(SyscallError::LimitExceeded(_))));
        let r = |q: &str, k: Option<u32>| ReadArgs { query: q.into(), k, space: None };
        assert_eq!(check_read(&r("x", None), 5, 50).unwrap(), 5);
        assert_eq!(check_read(&r("x", Some(50)), 5, 50).unwrap(), 50);
        assert!(matches!(check_read(&r("  ", None), 5, 50), Err(SyscallError::InvalidArguments(_))));
        assert!(matches!(check_read(&r("x", Some(0)), 5, 50), Err(SyscallError::InvalidArguments(_))));
        assert!(matches!(check_read(&r("x", Some(51)), 5, 50), Err(SyscallError::InvalidArguments(_))));
    }
}
