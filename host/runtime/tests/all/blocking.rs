//! No guest call can block a scheduler thread: FIFOs, sockets and files
//! under another process's lease are refused without blocking (by the fs
//! driver, and race-free by the host for drivers that do not check), and
//! every call ends within its deadline while the runtime's other tasks keep
//! running.
//!
//! Each test runs its runtime on a thread of its own and waits for it with a
//! limit, so a regression fails the test instead of hanging it.


use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_runtime::SyscallError;
use serde_json::json;

use crate::common::Env;

fn mkfifo(p: &Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", p.display());
}

/// Runs `f` on a fresh tokio runtime with `workers` worker threads (0: a
/// current-thread runtime) on its own OS thread, and fails if it takes
/// longer than `limit` (a blocked thread would otherwise hang the test).
fn run_within<F, T>(limit: Duration, workers: usize, f: impl FnOnce() -> F + Send + 'static) -> T
where
    F: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = if workers == 0 {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
        } else {
            tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap()
        };
        let out = rt.block_on(f());
        let _ = tx.send(out);
        // Dropping a runtime waits for its blocking threads; a stuck one
        // must not hold this thread (the test has already failed then).
        rt.shutdown_background();
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        // The runtime's thread panicked (an assertion failed there): report that.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread ended without a result"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("the runtime was blocked for more than {limit:?}"),
    }
}

fn kind(e: &SyscallError) -> &'static str {
    e.kind()
}

#[test]
fn fifos_and_sockets_are_refused_without_blocking() {
    run_within(Duration::from_secs(60), 0, || async {
        let env = Env::new().await;
        env.install_example("misbehave").await;
        let ws = env.ws();
        mkfifo(&ws.join("pipe"));
        std::fs::create_dir(ws.join("sub")).unwrap();
        mkfifo(&ws.join("sub/pipe2"));
        std::os::unix::fs::symlink("pipe", ws.join("link-to-pipe")).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(ws.join("sock")).unwrap();
        std::fs::write(ws.join("plain.txt"), "plain").unwrap();
        let a = env.agent(1, &["fs:rw", "driver:misbehave"]);

        let t = Instant::now();
        for (path, what) in [("pipe", "FIFO"), ("sub/pipe2", "FIFO"), ("link-to-pipe", "FIFO"), ("sock", "socket")] {
            for (call, args) in [
                ("FS_READ", json!({ "path": path })),
                ("FS_WRITE", json!({ "path": path, "content": "x" })),
                ("FS_WRITE", json!({ "path": path, "content": "x", "append": true })),
            ] {
                let e = env.rt.call(&a, call, &args).await.unwrap_err();
                assert_eq!(kind(&e), "invalid_arguments", "{call} {path}: {e}");
                assert!(e.message().contains(what) && e.message().contains("regular file"), "{call} {path}: {e}");
            }
            // A driver with no checks of its own is stopped by the host, on
            // the descriptor it opened (no stat-then-open race).
            for call in ["BAD_READ", "BAD_WRITE"] {
                let e = env.rt.call(&a, call, &json!({ "path": format!("/workspace/{path}") })).await.unwrap_err();
                assert_eq!(kind(&e), "invalid_arguments", "{call} {path}: {e}");
                assert!(e.message().contains(what), "{call} {path}: {e}");
            }
        }
        // Listing shows them for what they are; listing one is an error.
        let r = env.rt.call(&a, "FS_LIST", &json!({})).await.unwrap();
        let kinds: Vec<(String, String)> = r.output["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap().to_string(), e["kind"].as_str().unwrap().to_string()))
            .collect();
        for (name, k) in [("pipe", "fifo"), ("sock", "socket"), ("link-to-pipe", "symlink"), ("plain.txt", "file"), ("sub", "dir")] {
            assert!(kinds.contains(&(name.to_string(), k.to_string())), "{name} should be {k}: {kinds:?}");
        }
        let e = env.rt.call(&a, "FS_LIST", &json!({"path": "pipe"})).await.unwrap_err();
        assert_eq!(kind(&e), "invalid_arguments", "{e}");
        // Deleting a FIFO is fine (nothing is opened).
        env.rt.call(&a, "FS_DELETE", &json!({"path": "sub/pipe2"})).await.unwrap();
        assert!(!ws.join("sub/pipe2").exists());
        // Regular files still work.
        let r = env.rt.call(&a, "FS_READ", &json!({"path": "plain.txt"})).await.unwrap();
        assert_eq!(r.output["content"], "plain");
        let r = env.rt.call(&a, "BAD_READ", &json!({"path": "/workspace/plain.txt"})).await.unwrap();
        assert_eq!(r.output["content"], "plain");
        assert!(t.elapsed() < Duration::from_secs(20), "took {:?}", t.elapsed());
    });
}

/// A command in the sandbox can take a lease on a file it owns; without
/// non-blocking opens, the kernel's open would wait for the lease-break
/// time (45 s by default) on a scheduler thread.
#[test]
fn a_file_under_a_lease_does_not_block_the_open() {
    let break_time: u64 = std::fs::read_to_string("/proc/sys/fs/lease-break-time")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let enabled = std::fs::read_to_string("/proc/sys/fs/leases-enable").map(|s| s.trim() == "1").unwrap_or(false);
    if !enabled || break_time < 5 {
        // Without leases opens cannot wait on them; still, nothing was checked.
        aos_test_support::skip(
            "a_file_under_a_lease_does_not_block_the_open",
            "file leases are disabled here or break at once (/proc/sys/fs/leases-enable, lease-break-time)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let file = ws.join("leased.txt");
    std::fs::write(&file, "data").unwrap();
    // A process that holds a write lease and ignores the request to give it up.
    let mut holder = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import fcntl, os, signal, sys, time\n\
             signal.signal(signal.SIGIO, signal.SIG_IGN)\n\
             fd = os.open(sys.argv[1], os.O_RDWR)\n\
             fcntl.fcntl(fd, 1024, fcntl.F_WRLCK)\n\
             print('held', flush=True)\n\
             time.sleep(60)\n",
        )
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "held", "the lease holder started");

    let ws2 = ws.clone();
    let r = run_within(Duration::from_secs(30), 0, move || async move {
        let env = Env::new().await;
        let a = aos_runtime::AgentContext { workspace: ws2, ..env.agent(1, &["fs:ro"]) };
        let t = Instant::now();
        let r = env.rt.call(&a, "FS_READ", &json!({"path": "leased.txt"})).await;
        (r, t.elapsed())
    });
    let _ = holder.kill();
    let _ = holder.wait();
    let (r, took) = r;
    let e = r.unwrap_err();
    assert!(took < Duration::from_secs(2), "the open waited {took:?}");
    assert_eq!(e.kind(), "io", "{e}");
    assert!(e.message().contains("held by another process"), "{e}");
}

/// Eight agents hammering FIFOs (through the fs driver and through a driver
/// that opens them unchecked) and listing a 5,000-entry directory, on a runtime
/// with two worker threads like the daemon's on two cores: a ticker task on
/// the same runtime never waits long, and every call returns.
#[test]
fn agents_stuck_on_fifos_do_not_stall_the_runtime() {
    let max_gap = run_within(Duration::from_secs(120), 2, || async {
        let env = Arc::new(Env::new().await);
        env.install_example("misbehave").await;
        let ws = env.ws();
        std::fs::create_dir(ws.join("big")).unwrap();
        for i in 0..5_000 {
            std::fs::File::create(ws.join("big").join(format!("f{i:05}"))).unwrap();
        }
        for i in 0..8 {
            mkfifo(&ws.join(format!("pipe{i}")));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let max_gap_us = Arc::new(AtomicU64::new(0));
        let ticker = {
            let (stop, max_gap_us) = (stop.clone(), max_gap_us.clone());
            tokio::spawn(async move {
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let gap = last.elapsed().as_micros() as u64;
                    max_gap_us.fetch_max(gap, Ordering::Relaxed);
                    last = Instant::now();
                }
            })
        };
        let mut agents = Vec::new();
        for i in 0..8u64 {
            let env = env.clone();
            agents.push(tokio::spawn(async move {
                let a = env.agent(100 + i, &["fs:rw", "driver:misbehave"]);
                let pipe = format!("pipe{i}");
                let started = Instant::now();
                let mut calls = 0;
                while started.elapsed() < Duration::from_secs(3) {
                    for (call, args) in [
                        ("FS_READ", json!({ "path": pipe })),
                        ("BAD_READ", json!({ "path": format!("/workspace/{pipe}") })),
                        ("BAD_WRITE", json!({ "path": format!("/workspace/{pipe}") })),
                        ("FS_LIST", json!({ "path": "big" })),
                    ] {
                        let r = env.rt.call(&a, call, &args).await;
                        if call == "FS_LIST" {
                            // On a loaded machine a listing may hit its deadline; it still ends.
                            match r {
                                Ok(out) => assert_eq!(out.output["total"], 5_000),
                                Err(e) => assert_eq!(e.kind(), "timeout", "{e}"),
                            }
                        } else {
                            assert!(r.is_err(), "{call} of a FIFO must fail");
                        }
                        calls += 1;
                    }
                }
                calls
            }));
        }
        let mut total = 0;
        for a in agents {
            total += a.await.unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        ticker.await.unwrap();
        assert!(total >= 8 * 4, "every agent made calls: {total}");
        Duration::from_micros(max_gap_us.load(Ordering::Relaxed))
    });
    eprintln!("longest pause of the ticker: {max_gap:?}");
    // Generous: on a loaded machine a ready thread may wait for a CPU for a
    // while; a blocked worker stalls it for good.
    assert!(max_gap < Duration::from_secs(2), "the runtime stalled for {max_gap:?}");
}

/// A call whose guest waits in a host future past its deadline is ended at
/// the deadline (plus a small grace), not when the host future gives up.
#[test]
fn a_call_waiting_in_the_host_ends_at_its_deadline() {
    run_within(Duration::from_secs(60), 2, || async {
        // A server that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let env = Env::with(|c| {
            c.net.allow = vec!["127.0.0.1".into()];
            c.net.read_timeout = Duration::from_secs(30);
            c.driver_timeouts.insert("net".into(), Duration::from_secs(1));
        })
        .await;
        let a = env.agent(1, &["net"]);
        let t = Instant::now();
        let e = env.rt.call(&a, "NET_FETCH", &json!({"url": format!("http://127.0.0.1:{port}/")})).await.unwrap_err();
        let took = t.elapsed();
        assert_eq!(e.kind(), "timeout", "{e}");
        assert!(e.message().contains("1.0 s deadline"), "{e}");
        assert!(took < Duration::from_secs(3), "the call ran {took:?} past a 1 s deadline");
    });
}
