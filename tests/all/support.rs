//! The kernel test harness (`host/kernel/tests/all/support/harness.rs`,
//! shared with aos-kernel's own tests) over the real driver runtime.

#[path = "../../host/kernel/tests/all/support/harness.rs"]
mod harness;

use std::path::PathBuf;
use std::sync::Arc;

use aos_abi::SyscallSource;
use aos_runtime::{DriverRuntime, RuntimeConfig};

pub use harness::*;

/// A driver runtime for one test's kernel. Runtimes must not be shared
/// between kernels (pids restart at 1 in each kernel, and the runtime keys its
/// per-agent instances by pid), but they share the compiled-driver cache under
/// the target directory, so drivers compile once, not per test.
pub async fn runtime() -> Arc<DriverRuntime> {
    let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("aos-kernel-runtime");
    DriverRuntime::open(RuntimeConfig::new(home)).await.expect("driver runtime opens")
}

/// The syscall source of this binary's kernels: the real driver runtime.
pub async fn backend() -> Arc<dyn SyscallSource> {
    runtime().await
}

/// A driver runtime with the example third-party driver `wordcount`
/// installed (a grant of `driver:NAME` must name an installed driver); its
/// own home, so the other tests' runtimes list only the built-in drivers.
pub async fn backend_with_wordcount() -> Arc<dyn SyscallSource> {
    let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("aos-kernel-runtime-wordcount");
    let rt = DriverRuntime::open(RuntimeConfig::new(home)).await.expect("driver runtime opens");
    if !rt.list().iter().any(|d| d.name == "wordcount") {
        rt.install(&aos_runtime::example_driver_path("wordcount"), Some("wordcount")).await.expect("wordcount installs");
    }
    rt
}
