//! Shared helpers for the end-to-end tests: locating (or building) the real
//! `aos` binary and running it against a private `$AOS_HOME`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Path of the `aos` binary of this build, building it if `cargo test` was
/// asked for this package alone.
pub fn aos_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/<test-binary>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let bin = profile_dir.join("aos");
        // The same selection of packages and targets as `cargo test
        // --workspace`, so features resolve identically and nothing is
        // rebuilt: this only links the `aos` executable (a `-p aos-cli`
        // build would resolve features differently and recompile wasmtime).
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-q", "--workspace", "--bins", "--tests"]).current_dir(repo_root());
        // Without the CARGO_* variables `cargo test` set for this test binary:
        // build scripts that watch them (ring's) would otherwise see a change,
        // rebuild, and make the next `cargo test` rebuild them back.
        for (k, _) in std::env::vars_os() {
            let set_by_cargo_test = |k: &str| {
                (k.starts_with("CARGO_") && k != "CARGO_HOME" && k != "CARGO_TARGET_DIR") || k == "OUT_DIR" || k.starts_with("__CARGO")
            };
            if k.to_str().is_some_and(set_by_cargo_test) {
                build.env_remove(k);
            }
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the aos binary failed");
        assert!(bin.exists(), "no aos binary at {}", bin.display());
        bin
    })
    .clone()
}

/// A private AgentOS home and workspace for one test.
pub struct Aos {
    pub dir: tempfile::TempDir,
}

impl Default for Aos {
    fn default() -> Self {
        Self::new()
    }
}

impl Aos {
    pub fn new() -> Aos {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("ws")).unwrap();
        Aos { dir }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn ws(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(aos_bin());
        c.env("AOS_HOME", self.home()).env_remove("RUST_BACKTRACE").current_dir(self.ws());
        c
    }

    /// Runs `aos ARGS` and returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out: Output = self.cmd().args(args).output().expect("aos runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}
