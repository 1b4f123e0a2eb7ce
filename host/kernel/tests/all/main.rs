//! The kernel's tests, one binary (`cargo test -p aos-kernel --test all`).
//! Its kernels take their driver syscalls from an in-process fake
//! (`support/fake.rs`), so building them needs no Wasm toolchain, no
//! wasmtime and no Docker. aos-tests (`tests/all/main.rs`) runs the same
//! modules on the real driver runtime, with the kernel tests that need real
//! drivers (fs, timers, net, memory).

#![allow(clippy::unwrap_used)] // a test's panic is its failure

mod support;

mod approvals;
mod budget;
mod caps_prop;
mod compat;
mod isolation;
mod kernel;
mod native;
mod native_wire;
mod parser_fuzz;
mod progress;
mod restore;
mod webhook;
