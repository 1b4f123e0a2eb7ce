//! Builds the driver components (`drivers/*`, including the examples) for
//! `wasm32-wasip2` with a nested cargo invocation, so that a plain
//! `cargo build`/`cargo test` of the host needs no separate step. Built-in
//! drivers are embedded into the runtime with `include_bytes!`; the directory
//! of all built components is exported as `AOS_BUILT_DRIVERS_DIR` (used by
//! tests to reach the example drivers).
//!
//! The nested build uses its own target directory (`target/wasm-drivers`) so
//! it does not wait on the outer build's lock.

#![allow(clippy::unwrap_used)] // a build script reports failure by panicking; cargo always sets these variables

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Packages built for wasm32-wasip2.
const DRIVER_PACKAGES: &[&str] = &[
    "aos-driver-fs",
    "aos-driver-timers",
    "aos-driver-exec",
    "aos-driver-net",
    "aos-driver-memory",
    "aos-driver-wordcount",
    "aos-driver-misbehave",
    "aos-driver-rawhttp",
];
const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "wasm-driver";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().parent().unwrap().to_path_buf();
    for dir in ["drivers", "guest-sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("Cargo.lock").display());
    println!("cargo:rerun-if-env-changed=AOS_DRIVERS_TARGET_DIR");

    let target_dir = env::var_os("AOS_DRIVERS_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| outer_target_dir().join("wasm-drivers"));
    let out = target_dir.join(TARGET).join(PROFILE);

    check_target_installed();

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .arg("build")
        .arg("--target")
        .arg(TARGET)
        .arg("--profile")
        .arg(PROFILE)
        .arg("--target-dir")
        .arg(&target_dir);
    for p in DRIVER_PACKAGES {
        cmd.arg("-p").arg(p);
    }
    // Settings meant for the host build must not leak into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run cargo for the drivers: {e}"));
    if !status.success() {
        panic!(
            "building the driver components failed (see the cargo output above); \
             to reproduce: cargo build --target {TARGET} --profile {PROFILE} -p aos-driver-fs"
        );
    }
    for p in DRIVER_PACKAGES {
        let file = out.join(format!("{}.wasm", p.replace('-', "_")));
        assert!(file.exists(), "expected driver component {} after the build", file.display());
    }
    println!("cargo:rustc-env=AOS_BUILT_DRIVERS_DIR={}", out.display());
}

/// `target/` of the outer build: OUT_DIR is `<target>/[<triple>/]<profile>/build/<pkg>/out`.
fn outer_target_dir() -> PathBuf {
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let mut p: &Path = &out_dir;
    for _ in 0..4 {
        p = p.parent().unwrap();
    }
    if p.file_name().is_some_and(|n| n == env::var("TARGET").unwrap().as_str()) {
        p = p.parent().unwrap();
    }
    p.to_path_buf()
}

fn check_target_installed() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(sysroot) = sysroot {
        let lib = Path::new(&sysroot).join("lib/rustlib").join(TARGET);
        if !lib.exists() {
            panic!(
                "\n\nThe Rust target `{TARGET}` is not installed, so the driver components cannot be built.\n\
                 Install it with:  rustup target add {TARGET}\n\
                 (or run `./dev setup`, which installs everything the project needs)\n\n"
            );
        }
    }
}
