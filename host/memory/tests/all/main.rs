//! Long-term memory's integration tests, one binary (`cargo test -p
//! aos-memory --test all`): the OpenAI-compatible embedder against a local
//! server, and retrieval quality on the embedded store and ChromaDB (which
//! skip loudly outside CI when the model or ChromaDB is missing).

#![allow(clippy::unwrap_used)] // a test's panic is its failure

mod common;

mod openai;
mod recall;
