//! Support of the kernel's tests: the harness (shared with aos-tests, which
//! runs the same modules on the real driver runtime) and this binary's
//! syscall source, the in-process fake.

pub mod fake;
mod harness;

use std::sync::Arc;

use aos_abi::SyscallSource;

pub use harness::*;

/// The syscall source of this binary's kernels.
pub async fn backend() -> Arc<dyn SyscallSource> {
    Arc::new(fake::FakeSource::default())
}

/// A syscall source on which the third-party driver `wordcount` is
/// installed (a grant of `driver:NAME` must name an installed driver).
pub async fn backend_with_wordcount() -> Arc<dyn SyscallSource> {
    Arc::new(fake::FakeSource::with_drivers(&["wordcount"]))
}
