//! Memory benchmarks (prints tables): embeddings per second with the
//! in-process all-MiniLM-L6-v2 (one text per call, and batches of 16), and
//! MEM_READ latency (embedding the query + searching) at 1k / 10k / 100k
//! memories for the embedded store and for a real ChromaDB server.
//!
//! The stores are bulk-loaded with synthetic random unit vectors (embedding
//! 100k texts would take ~20 minutes here); the queries are real embeddings.
//! Run: `cargo bench -p aos-memory --bench memory` (ChromaDB from
//! `./dev setup`'s venv; AOS_BENCH_SIZES=1000,10000 to limit the sizes).

#![allow(clippy::unwrap_used)] // a benchmark stops on any failure

#[path = "../tests/all/common.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_memory::{ChromaConfig, ChromaStore, EmbeddedStore, Embedder, MemoryRecord, Space, VectorStore};

fn rand_unit(seed: &mut u64, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    aos_memory::normalize(&mut v);
    v
}

fn synthetic(n: usize, dim: usize) -> Vec<(MemoryRecord, Vec<f32>)> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|i| {
            let r = MemoryRecord { key: format!("m{i}"), text: format!("synthetic memory {i}"), metadata: "{}".into() };
            (r, rand_unit(&mut seed, dim))
        })
        .collect()
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

async fn read_latency(emb: &dyn Embedder, store: &dyn VectorStore, space: &Space, queries: &[String]) -> (Duration, Duration, Duration) {
    let mut total = Vec::new();
    let mut search = Vec::new();
    for q in queries {
        let t = Instant::now();
        let v = emb.embed(vec![q.clone()]).await.unwrap().pop().unwrap();
        let t2 = Instant::now();
        let hits = store.query(space, v, 5).await.unwrap();
        assert_eq!(hits.len(), 5);
        search.push(t2.elapsed());
        total.push(t.elapsed());
    }
    (pct(search.clone(), 0.5), pct(total, 0.5), pct(search, 0.95))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(emb) = common::embedder() else { return };
    let items = common::recall_set();
    let texts: Vec<String> = items.iter().map(|i| i.memory.clone()).collect();
    let queries: Vec<String> = items.iter().map(|i| i.question.clone()).collect();
    let t = Instant::now();
    emb.embed(vec!["warm up".into()]).await.unwrap();
    let load = t.elapsed();

    // Embedding throughput.
    let t = Instant::now();
    for s in &texts {
        emb.embed(vec![s.clone()]).await.unwrap();
    }
    let single = texts.len() as f64 / t.elapsed().as_secs_f64();
    let mut batch_texts = texts.clone();
    batch_texts.extend(queries.iter().cloned());
    let t = Instant::now();
    for c in batch_texts.chunks(16) {
        emb.embed(c.to_vec()).await.unwrap();
    }
    let batched = batch_texts.len() as f64 / t.elapsed().as_secs_f64();
    println!("\nEmbeddings: all-MiniLM-L6-v2 in-process (candle, CPU), model load + first call {} ms", ms(load));
    println!("| mode                | embeddings/s |");
    println!("|---------------------|-------------:|");
    println!("| single (1 per call) | {single:>12.1} |");
    println!("| batched (16 / call) | {batched:>12.1} |");

    let sizes: Vec<usize> = std::env::var("AOS_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000]);

    println!("\nMEM_READ latency (k = 5, {} real query embeddings; stores bulk-loaded with synthetic unit vectors)", queries.len());
    println!("| store    | memories | load (s) | search p50 (ms) | search p95 (ms) | embed+search p50 (ms) |");
    println!("|----------|---------:|---------:|----------------:|----------------:|----------------------:|");
    for &n in &sizes {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let space = Space::Private(1);
        let data = synthetic(n, 384);
        let t = Instant::now();
        store.upsert_many(&space, data).unwrap();
        let load = t.elapsed();
        let (p50, total, p95) = read_latency(emb.as_ref(), &store, &space, &queries).await;
        println!("| embedded | {n:>8} | {:>8.2} | {:>15} | {:>15} | {:>21} |", load.as_secs_f64(), ms(p50), ms(p95), ms(total));
    }
    let Some(chroma) = common::Chroma::start() else { return };
    let store = Arc::new(ChromaStore::new(ChromaConfig::new(&chroma.url)));
    for &n in &sizes {
        let space = Space::Shared(format!("bench{n}"));
        let data = synthetic(n, 384);
        let t = Instant::now();
        store.upsert_many(&space, data).await.unwrap();
        let load = t.elapsed();
        let (p50, total, p95) = read_latency(emb.as_ref(), store.as_ref(), &space, &queries).await;
        println!("| chroma   | {n:>8} | {:>8.2} | {:>15} | {:>15} | {:>21} |", load.as_secs_f64(), ms(p50), ms(p95), ms(total));
    }
}
