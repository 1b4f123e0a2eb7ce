//! Shared set-up for the runtime's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use aos_runtime::{AgentContext, CapabilitySet, DriverRuntime, RuntimeConfig};

pub struct Env {
    pub dir: tempfile::TempDir,
    pub rt: Arc<DriverRuntime>,
}

impl Env {
    pub async fn new() -> Env {
        Self::with(|_| {}).await
    }

    pub async fn with(f: impl FnOnce(&mut RuntimeConfig)) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = RuntimeConfig::new(dir.path().join("home"));
        // One compiled-driver cache for all tests of this crate.
        cfg.cache_dir = Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("driver-cache"));
        f(&mut cfg);
        let rt = DriverRuntime::open(cfg).await.expect("runtime opens");
        std::fs::create_dir_all(dir.path().join("ws")).unwrap();
        Env { dir, rt }
    }

    pub fn ws(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    pub fn agent(&self, pid: u64, grants: &[&str]) -> AgentContext {
        AgentContext { pid, caps: CapabilitySet::parse(grants).unwrap(), workspace: self.ws() }
    }

    /// Installs an example driver built alongside the host.
    pub async fn install_example(&self, name: &str) {
        let path = aos_runtime::example_driver_path(name);
        self.rt.install(&path, Some(name)).await.expect("example driver installs");
    }
}
