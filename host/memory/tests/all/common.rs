//! Test helpers: the embedding model (skipped loudly when missing, a failure
//! under `CI`), the labelled recall set, and a real ChromaDB server started on
//! a free loopback port and killed on drop.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_memory::{minilm, Embedder, MiniLmEmbedder};

/// Skips the running test loudly, or fails it when `CI` is set
/// (`aos_test_support::skip`).
pub fn skip(why: &str) {
    aos_test_support::skip(&aos_test_support::current_test_or("a memory test"), why);
}

/// The shared in-process embedder, or None (after a loud skip) when the model is not installed.
pub fn embedder() -> Option<Arc<MiniLmEmbedder>> {
    let e = MiniLmEmbedder::new(minilm::default_model_dir());
    match e.check() {
        Ok(()) => Some(Arc::new(e)),
        Err(err) => {
            skip(&format!("{err}"));
            None
        }
    }
}

#[derive(serde::Deserialize)]
pub struct Item {
    pub key: String,
    pub memory: String,
    pub question: String,
}

#[derive(serde::Deserialize)]
struct RecallSet {
    items: Vec<Item>,
}

pub fn recall_set() -> Vec<Item> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/recall.json");
    let s: RecallSet = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    s.items
}

/// Fraction of words of `q` (lower-cased, ≥ 3 letters) that also occur in `m`.
pub fn word_overlap(q: &str, m: &str) -> f64 {
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() >= 3).map(|w| w.to_lowercase()).collect()
    };
    let (qw, mw) = (words(q), words(m));
    if qw.is_empty() {
        return 0.0;
    }
    qw.iter().filter(|w| mw.contains(w)).count() as f64 / qw.len() as f64
}

pub fn embed_blocking(e: &dyn Embedder, texts: Vec<String>) -> Vec<Vec<f32>> {
    tokio::runtime::Handle::current().block_on(e.embed(texts)).unwrap()
}

/// A `chroma run` server on a free loopback port, killed on drop.
pub struct Chroma {
    child: Option<Child>,
    bin: PathBuf,
    pub url: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Drop for Chroma {
    fn drop(&mut self) {
        self.stop();
    }
}

fn venv_dir() -> PathBuf {
    std::env::var_os("AOS_CHROMA_VENV").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/aos/chroma-venv")
    })
}

/// The venv's python (with the official `chromadb` client).
pub fn chroma_python() -> Option<PathBuf> {
    let p = venv_dir().join("bin/python");
    p.exists().then_some(p)
}

fn chroma_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AOS_CHROMA_BIN") {
        return Some(PathBuf::from(p));
    }
    let p = venv_dir().join("bin/chroma");
    p.exists().then_some(p)
}

impl Chroma {
    /// Starts a server, or skips loudly (fails under CI) when `chroma` is not installed.
    pub fn start() -> Option<Chroma> {
        let Some(bin) = chroma_bin() else {
            skip("ChromaDB is not installed (run `./dev setup`, which creates ~/.cache/aos/chroma-venv, or set AOS_CHROMA_BIN)");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let mut c = Chroma { child: None, bin, url: format!("http://127.0.0.1:{port}"), port, dir };
        c.restart();
        Some(c)
    }

    /// Stops the server (simulating an outage), keeping its data directory.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it (again) on the same port and data, and waits for its heartbeat.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new(&self.bin)
            .args(["run", "--path"])
            .arg(self.dir.path())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .env("ANONYMIZED_TELEMETRY", "False")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let ok = Command::new("curl")
                .args(["-sf", &format!("{}/api/v2/heartbeat", self.url)])
                .stdout(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "chroma did not answer on {} within 60 s", self.url);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
