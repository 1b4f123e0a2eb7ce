//! Shared helpers for the end-to-end tests: locating (or building) the real
//! `aos` binary and running it against a private `$AOS_HOME`.

#![allow(clippy::unwrap_used)] // test support: a failure here is the test's failure

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

/// A kernel daemon and its clients, for the tests that drive `aos spawn`,
/// `ps`, `logs`… against a background kernel of a private `$AOS_HOME`.
pub mod daemon {
    use std::time::{Duration, Instant};

    use super::Aos;

    /// The one-line error of client commands when no kernel runs.
    pub const NOT_RUNNING: &str = "kernel not running — start it with `aos kernel start`";

    /// A private home whose compiled-driver cache is pre-filled from one
    /// shared, warmed-up cache (compiling the built-in drivers once per test
    /// binary, not once per kernel).
    pub fn new_aos() -> Aos {
        static WARM: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
        let warm = WARM.get_or_init(|| {
            // Kept next to the binary: later runs find it warm (entries are keyed by
            // content and engine, so stale ones are never used).
            let home = super::aos_bin().parent().unwrap().join("aos-test-home");
            let out = std::process::Command::new(super::aos_bin())
                .args(["driver", "ls"])
                .env("AOS_HOME", &home)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            home.join("cache/drivers")
        });
        let aos = Aos::new();
        let to = aos.home().join("cache/drivers");
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(warm).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
        aos
    }

    /// Stops the kernel of `aos` when dropped (and kills it if it does not
    /// stop), so that no test leaks a daemon.
    pub struct Daemon<'a> {
        pub aos: &'a Aos,
    }

    impl<'a> Daemon<'a> {
        pub fn start(aos: &'a Aos) -> Daemon<'a> {
            let d = Daemon { aos };
            let (code, out, err) = aos.run(&["kernel", "start"]);
            assert_eq!(code, 0, "kernel start: {out}\n{err}");
            d
        }
        /// Guards a kernel that some command starts implicitly.
        pub fn guard(aos: &'a Aos) -> Daemon<'a> {
            Daemon { aos }
        }
        pub fn pid(&self) -> Option<i32> {
            std::fs::read_to_string(self.aos.home().join("aos.pid")).ok()?.trim().parse().ok()
        }
    }

    impl Drop for Daemon<'_> {
        fn drop(&mut self) {
            let pid = self.pid();
            let _ = self.aos.run(&["kernel", "stop"]);
            if let Some(pid) = pid {
                let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).output();
            }
        }
    }

    /// Writes a script file for the `script` provider; returns its path.
    pub fn script(aos: &Aos, name: &str, text: &str) -> String {
        let p = aos.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    /// A script whose process writes "hello" to stdout, then blocks in RECV_MSG.
    pub fn blocking_script(aos: &Aos) -> String {
        script(
            aos,
            "block.txt",
            "[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"hello\"}\n---\n[SYS_CALL::RECV_MSG] {}\n---\n[SYS_CALL::SYS_EXIT] {\"code\": 9}\n",
        )
    }

    /// `aos spawn --provider script --model MODEL EXTRA… "a task"`; returns the pid.
    pub fn spawn(aos: &Aos, model: &str, extra: &[&str]) -> u64 {
        let mut args = vec!["spawn", "--provider", "script", "--model", model];
        args.extend_from_slice(extra);
        args.push("a task");
        let (code, out, err) = aos.run(&args);
        assert_eq!(code, 0, "spawn: {out}\n{err}");
        out.trim().parse().unwrap_or_else(|_| panic!("spawn prints the pid: {out:?}"))
    }

    /// `aos ps --json [--all]`.
    pub fn ps_json(aos: &Aos, all: bool) -> Vec<serde_json::Value> {
        let mut args = vec!["ps", "--json"];
        if all {
            args.push("--all");
        }
        let (code, out, err) = aos.run(&args);
        assert_eq!(code, 0, "{out}\n{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ps --json: {e}: {out}"))
    }

    /// Polls until `pid`'s status is `state`; returns its record.
    pub fn wait_state(aos: &Aos, pid: u64, state: &str) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            let ps = ps_json(aos, true);
            if let Some(p) = ps.iter().find(|p| p["pid"] == pid) {
                if p["status"]["state"] == state {
                    return p.clone();
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(15), "pid {pid} never reached {state}: {ps:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls until `pid` is blocked in RECV_MSG after exactly `steps` model calls.
    pub fn wait_blocked_after(aos: &Aos, pid: u64, steps: u64) {
        let t0 = Instant::now();
        loop {
            let ps = ps_json(aos, true);
            if let Some(p) = ps.iter().find(|p| p["pid"] == pid) {
                if p["status"]["state"] == "blocked_recv" && p["counters"]["steps"] == steps {
                    return;
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(15), "pid {pid} never blocked after {steps} steps: {ps:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ids of the sandbox containers of `pid` under the kernel labelled
    /// `label` (`aos_sandbox::docker::kernel_label_for(home)`: the daemon's
    /// and `aos run`'s containers carry it).
    pub fn sandbox_containers(label: &str, pid: u64) -> Vec<String> {
        let out = std::process::Command::new("docker")
            .args(["ps", "-a", "-q", "--filter", &format!("label=aos.kernel={label}"), "--filter", &format!("label=aos.pid={pid}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect()
    }

    /// Whether `docker` answers and the sandbox image exists; otherwise
    /// SKIPPED loudly (or a failure under CI).
    pub fn docker_ready(test: &str) -> bool {
        let probe =
            std::process::Command::new("docker").args(["image", "inspect", "-f", "ok", "aos-sandbox:latest"]).output();
        let why = match probe {
            Err(e) => format!("the docker CLI cannot run ({e})"),
            Ok(o) if o.status.success() => return true,
            Ok(o) => format!("Docker or the sandbox image is missing: {}", String::from_utf8_lossy(&o.stderr).trim()),
        };
        super::skip(test, &why);
        false
    }
}

/// Says loudly that a test did not run (or fails it under CI, where every
/// dependency must be present): `aos_test_support::skip`.
pub use aos_test_support::skip;
