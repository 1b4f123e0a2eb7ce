//! The shared wasmtime engine and the on-disk cache of compiled drivers.
//!
//! One engine per runtime, with epoch interruption (a background ticker
//! advances the epoch every [`TICK`]) and memory reservations sized for
//! thousands of live instances. Components are compiled once and stored as
//! `.cwasm` under `$AOS_HOME/cache/`, keyed by the engine's compatibility hash
//! and the component's SHA-256, so a warm start deserializes instead of
//! compiling.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// Epoch tick: the granularity of call deadlines.
pub(crate) const TICK: Duration = Duration::from_millis(10);

pub(crate) fn new_engine() -> wasmtime::Result<Engine> {
    let mut cfg = Config::new();
    cfg.wasm_component_model(true);
    cfg.epoch_interruption(true);
    // A driver's linear memory is capped well below this (64 MiB by default),
    // so reserving 4 GiB of address space per memory, the default, would only
    // limit how many instances can be alive at once.
    cfg.memory_reservation(256 << 20);
    cfg.memory_guard_size(2 << 20);
    cfg.memory_reservation_for_growth(16 << 20);
    let engine = Engine::new(&cfg)?;
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("aos-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(TICK);
            match ticker.upgrade() {
                Some(e) => e.increment_epoch(),
                None => return,
            }
        })
        .map_err(|e| wasmtime::Error::msg(format!("cannot start the epoch thread: {e}")))?;
    Ok(engine)
}

/// Hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn engine_key(engine: &Engine) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// How a component was obtained (reported by benchmarks and `aos driver ls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Deserialized from the on-disk cache.
    Hit,
    /// Compiled now and written to the cache.
    Compiled,
}

/// Loads `bytes` as a component, through the cache in `cache_dir`.
pub(crate) fn load_component(
    engine: &Engine,
    cache_dir: &Path,
    bytes: &[u8],
) -> wasmtime::Result<(Component, CacheOutcome)> {
    let path: PathBuf =
        cache_dir.join(format!("{}-{}.cwasm", &sha256_hex(bytes)[..32], engine_key(engine)));
    if path.exists() {
        // SAFETY: the file was written by `precompile_component` of an engine
        // with the same compatibility hash (it is in the file name), into a
        // directory owned by this kernel. A corrupt file fails to deserialize
        // and is recompiled below.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok((c, CacheOutcome::Hit)),
            Err(e) => tracing::warn!("ignoring unusable cached driver {}: {e}", path.display()),
        }
    }
    let compiled = engine.precompile_component(bytes)?;
    std::fs::create_dir_all(cache_dir)?;
    // Unique per writer: several runtimes of one process (tests) may fill a cold cache at once.
    static WRITER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, &compiled)?;
    std::fs::rename(&tmp, &path)?;
    // SAFETY: produced just above by this engine.
    let component = unsafe { Component::deserialize(engine, &compiled)? };
    Ok((component, CacheOutcome::Compiled))
}
