//! The `aos` daemon and its client commands end to end: separate CLI
//! invocations against one background kernel per private `$AOS_HOME`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use aos_tests::Aos;
use serde_json::Value;

/// A private home whose compiled-driver cache is pre-filled from one shared,
/// warmed-up cache (compiling the built-in drivers once per test binary, not
/// once per kernel).
fn new_aos() -> Aos {
    static WARM: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let warm = WARM.get_or_init(|| {
        // Kept next to the binary: later runs find it warm (entries are keyed by
        // content and engine, so stale ones are never used).
        let home = aos_tests::aos_bin().parent().unwrap().join("aos-test-home");
        let out = std::process::Command::new(aos_tests::aos_bin())
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

const NOT_RUNNING: &str = "kernel not running — start it with `aos kernel start`";

/// Stops the kernel of `aos` when dropped (and kills it if it does not stop),
/// so that no test leaks a daemon.
struct Daemon<'a> {
    aos: &'a Aos,
}

impl<'a> Daemon<'a> {
    fn start(aos: &'a Aos) -> Daemon<'a> {
        let d = Daemon { aos };
        let (code, out, err) = aos.run(&["kernel", "start"]);
        assert_eq!(code, 0, "kernel start: {out}\n{err}");
        d
    }
    /// Guards a kernel that some command starts implicitly.
    fn guard(aos: &'a Aos) -> Daemon<'a> {
        Daemon { aos }
    }
    fn pid(&self) -> Option<i32> {
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

fn script(aos: &Aos, name: &str, text: &str) -> String {
    let p = aos.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// A script whose process writes "hello" to stdout, then blocks in RECV_MSG.
fn blocking_script(aos: &Aos) -> String {
    script(aos, "block.txt", "[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"hello\"}\n---\n[SYS_CALL::RECV_MSG] {}\n---\n[SYS_CALL::SYS_EXIT] {\"code\": 9}\n")
}

fn spawn(aos: &Aos, model: &str, extra: &[&str]) -> u64 {
    let mut args = vec!["spawn", "--provider", "script", "--model", model];
    args.extend_from_slice(extra);
    args.push("a task");
    let (code, out, err) = aos.run(&args);
    assert_eq!(code, 0, "spawn: {out}\n{err}");
    out.trim().parse().unwrap_or_else(|_| panic!("spawn prints the pid: {out:?}"))
}

fn status_json(aos: &Aos) -> Value {
    let (code, out, err) = aos.run(&["kernel", "status", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    serde_json::from_str(&out).unwrap()
}

fn ps_json(aos: &Aos, all: bool) -> Vec<Value> {
    let mut args = vec!["ps", "--json"];
    if all {
        args.push("--all");
    }
    let (code, out, err) = aos.run(&args);
    assert_eq!(code, 0, "{out}\n{err}");
    serde_json::from_str::<Vec<Value>>(&out).unwrap_or_else(|e| panic!("ps --json: {e}: {out}"))
}

/// Polls until `pid`'s status is `state`.
fn wait_state(aos: &Aos, pid: u64, state: &str) -> Value {
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

#[test]
fn spawn_ps_logs_kill_from_separate_invocations() {
    let aos = new_aos();
    let _d = Daemon::start(&aos);
    let model = blocking_script(&aos);
    let pid = spawn(&aos, &model, &[]);
    assert_eq!(pid, 1);
    let info = wait_state(&aos, pid, "blocked_recv");
    assert_eq!(info["provider"], "script");
    assert_eq!(info["counters"]["steps"], 2);

    let (code, out, _) = aos.run(&["ps"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("PID") && out.contains("recv") && out.contains("script/block.txt"), "{out}");

    let (code, out, err) = aos.run(&["logs", &pid.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[1] stdout: hello") && out.contains("SYS_WRITE_STDOUT#1"), "{out}");

    let (code, out, _) = aos.run(&["kernel", "status"]);
    assert_eq!(code, 0);
    assert!(out.contains("kernel running") && out.contains("1 live"), "{out}");

    let (code, out, err) = aos.run(&["kill", &pid.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "killed 1");
    wait_state(&aos, pid, "killed");
    assert!(ps_json(&aos, false).is_empty(), "without --all only live processes");
    let (code, _, err) = aos.run(&["wait", &pid.to_string()]);
    assert_eq!(code, 137, "{err}");
    // Logs of an exited process, as JSON lines.
    let (code, out, _) = aos.run(&["logs", "--json", &pid.to_string()]);
    assert_eq!(code, 0);
    let entries: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(entries.iter().any(|e| e["type"] == "stdout" && e["text"] == "hello"), "{out}");
    assert!(entries.iter().any(|e| e["type"] == "notice" && e["text"].as_str().unwrap().contains("killed")), "{out}");

    let (code, out, err) = aos.run(&["kernel", "stop"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = aos.run(&["ps"]);
    assert_eq!((code, out.as_str(), err.trim()), (1, "", NOT_RUNNING));
}

#[test]
fn spawn_starts_the_kernel_and_wait_returns_the_exit_code() {
    let aos = new_aos();
    let _d = Daemon::guard(&aos);
    let model = script(&aos, "exit.txt", "[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"bye\"}\n---\n[SYS_CALL::SYS_EXIT] {\"code\": 3, \"result\": \"done\"}\n");
    let (code, out, err) = aos.run(&["spawn", "--provider", "script", "--model", &model, "--wait", "t"]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.contains("started the kernel"), "{err}");
    assert_eq!(out.lines().next(), Some("1"));
    assert!(out.contains("[1] stdout: bye"), "{out}");
    assert!(err.contains("exited with code 3: done"), "{err}");

    // stdin through `send`, exit code through `wait`.
    let model = script(&aos, "stdin.txt", "[SYS_CALL::SYS_READ_STDIN] {}\n---\n[SYS_CALL::SYS_EXIT] {\"code\": 5}\n");
    let pid = spawn(&aos, &model, &["--no-grants"]);
    wait_state(&aos, pid, "blocked_stdin");
    let (code, _, err) = aos.run(&["send", &pid.to_string(), "the answer"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = aos.run(&["wait", &pid.to_string()]);
    assert_eq!(code, 5, "{err}");
    let (_, out, _) = aos.run(&["logs", &pid.to_string()]);
    assert!(out.contains("the answer"), "{out}");

    // A mailbox message unblocks RECV_MSG; `logs -f` follows to the end.
    let pid = spawn(&aos, &blocking_script(&aos), &[]);
    wait_state(&aos, pid, "blocked_recv");
    let follower = aos.cmd().args(["logs", "-f", &pid.to_string()]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let (code, _, err) = aos.run(&["send", "--msg", &pid.to_string(), "wake up"]);
    assert_eq!(code, 0, "{err}");
    let out = follower.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(9));
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("wake up") && out.contains("exited with code 9"), "{out}");

    // Errors are one line.
    let (code, _, err) = aos.run(&["kill", "99"]);
    assert_eq!(code, 1);
    assert!(err.trim().starts_with("error: no process with pid 99") && err.trim().lines().count() == 1, "{err}");
    let (code, _, err) = aos.run(&["spawn", "--provider", "nope", "--model", "m", "t"]);
    assert_eq!(code, 1);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn two_kernels_run_side_by_side() {
    let (a, b) = (new_aos(), new_aos());
    let _da = Daemon::start(&a);
    let _db = Daemon::start(&b);
    let pa = spawn(&a, &blocking_script(&a), &[]);
    let _ = spawn(&b, &blocking_script(&b), &[]);
    let pb = spawn(&b, &blocking_script(&b), &[]);
    assert_eq!((pa, pb), (1, 2));
    wait_state(&a, pa, "blocked_recv");
    wait_state(&b, pb, "blocked_recv");
    assert_eq!(ps_json(&a, true).len(), 1);
    assert_eq!(ps_json(&b, true).len(), 2);
    let status = |aos: &Aos| -> Value {
        let (code, out, _) = aos.run(&["kernel", "status", "--json"]);
        assert_eq!(code, 0);
        serde_json::from_str(&out).unwrap()
    };
    let (sa, sb) = (status(&a), status(&b));
    assert_ne!(sa["pid"], sb["pid"]);
    assert_eq!(sb["processes"]["live"], 2);
    // Stopping one leaves the other running.
    assert_eq!(a.run(&["kernel", "stop"]).0, 0);
    assert_eq!(a.run(&["ps"]).0, 1);
    assert_eq!(b.run(&["ps"]).0, 0);
    // Starting again when running is harmless.
    let (code, out, _) = b.run(&["kernel", "start"]);
    assert_eq!(code, 0);
    assert!(out.contains("already running"), "{out}");
}

#[test]
fn commands_fail_with_one_line_without_a_daemon() {
    let aos = new_aos();
    for args in [
        &["ps"][..],
        &["logs", "1"],
        &["logs", "-f", "1"],
        &["kill", "1"],
        &["send", "1", "x"],
        &["wait", "1"],
        &["top"],
        &["kernel", "status"],
        &["kernel", "stop"],
    ] {
        let (code, out, err) = aos.run(args);
        assert_eq!((code, out.as_str(), err.trim()), (1, "", NOT_RUNNING), "aos {args:?}");
    }
}

#[test]
fn the_control_socket_is_private() {
    let aos = new_aos();
    let d = Daemon::start(&aos);
    let sock = aos.home().join("aos.sock");
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "socket mode");
    assert!(d.pid().is_some(), "pid file");
    assert!(aos.home().join("logs/daemon.log").exists());

    // Another user cannot connect (only checkable when we may switch users).
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1);
    if me == 0 {
        // Let `nobody` reach the socket itself, so the socket's own mode is what refuses.
        for dir in [aos.dir.path().to_path_buf(), aos.home()] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let bin = aos_tests::aos_bin();
        let out = std::process::Command::new(&bin)
            .args(["kernel", "status"])
            .env("AOS_HOME", aos.home())
            .current_dir("/")
            .uid(65534)
            .gid(65534)
            .output();
        match out {
            Ok(out) => {
                let err = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(1), "{err}");
                assert!(err.contains("permission denied"), "{err}");
            }
            Err(e) => eprintln!("skipping the other-user check: cannot run {} as nobody: {e}", bin.display()),
        }
    } else {
        eprintln!("skipping the other-user check: not root");
    }
}

#[test]
fn a_killed_daemon_is_recovered_from_its_journal() {
    let aos = new_aos();
    let d = Daemon::start(&aos);
    let model = script(
        &aos,
        "resume.txt",
        "[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"hello\"}\n---\n[SYS_CALL::RECV_MSG] {}\n---\n\
         [SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"resumed at reply 3\"}\n[SYS_CALL::RECV_MSG] {}\n",
    );
    let pid = spawn(&aos, &model, &[]);
    wait_state(&aos, pid, "blocked_recv");
    // A second process, reading stdin, has a mailbox message it has not received yet.
    let reader = script(
        &aos,
        "reader.txt",
        "[SYS_CALL::SYS_READ_STDIN] {}\n---\n[SYS_CALL::RECV_MSG] {}\n---\n[SYS_CALL::SYS_EXIT] {\"code\": 0}\n",
    );
    let pid2 = spawn(&aos, &reader, &[]);
    wait_state(&aos, pid2, "blocked_stdin");
    let (code, _, err) = aos.run(&["send", "--msg", &pid2.to_string(), "queued before the crash"]);
    assert_eq!(code, 0, "{err}");
    let webhooks_before = status_json(&aos)["webhooks"].clone();
    assert!(webhooks_before.as_str().is_some_and(|u| u.starts_with("http://127.0.0.1:")), "{webhooks_before}");
    let dpid = d.pid().unwrap();
    std::process::Command::new("kill").args(["-9", &dpid.to_string()]).status().unwrap();
    let t0 = Instant::now();
    while aos.run(&["kernel", "status"]).0 == 0 {
        assert!(t0.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(20));
    }
    // The journal holds the whole history so far.
    let journals: Vec<_> = std::fs::read_dir(aos.home().join("journal")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(journals.len(), 1, "{journals:?}");
    let text = std::fs::read_to_string(&journals[0]).unwrap();
    assert!(text.contains("\"event\":\"spawned\"") && text.contains("\"text\":\"hello\""), "{text}");

    // A new start (stale socket and pid file) resumes the unfinished process
    // under its pid, with its history, the interrupted call reported and not re-run.
    let (code, out, err) = aos.run(&["kernel", "start"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, _) = aos.run(&["kernel", "status"]);
    assert_eq!(code, 0);
    assert!(out.contains("recovery: pid 1 resumed from the journal (it was in RECV_MSG"), "{out}");
    // Webhook URLs stay valid: the listener takes its previous port again.
    assert_eq!(status_json(&aos)["webhooks"], webhooks_before);
    assert_eq!(aos.home().join("journal/archive").read_dir().unwrap().count(), 1);
    // The script provider continues at the reply after the two it gave.
    wait_blocked_after(&aos, 1, 3);
    let (code, out, _) = aos.run(&["logs", "--json", "1"]);
    assert_eq!(code, 0);
    let entries: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(entries.iter().any(|e| e["type"] == "stdout" && e["text"] == "resumed at reply 3"), "{out}");
    assert_eq!(entries.iter().filter(|e| e["type"] == "stdout" && e["text"] == "hello").count(), 1, "{out}");
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"], i as u64, "no gap: {out}");
    }
    // The history before the crash, intact, then the interrupted call.
    let types: Vec<&str> = entries.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types[..5], ["reply", "stdout", "result", "reply", "error"], "{out}");
    let interrupted = &entries[4];
    // Call ids are never reused.
    let mut ids: Vec<u64> = entries.iter().filter_map(|e| e["id"].as_u64()).collect();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "{out}");
    assert_eq!((interrupted["id"].as_u64(), interrupted["name"].as_str()), (Some(2), Some("RECV_MSG")), "{out}");
    assert!(interrupted["error"].as_str().unwrap().starts_with("interrupted"), "{out}");
    // The undelivered message survived the crash: the reader's next RECV_MSG gets it.
    let ended = wait_state(&aos, pid2, "exited");
    assert_eq!(ended["status"]["code"], 0, "{ended}");
    let (_, out, _) = aos.run(&["logs", "--json", &pid2.to_string()]);
    assert!(
        out.lines().any(|l| l.contains("\"name\":\"RECV_MSG\"") && l.contains("queued before the crash")),
        "{out}"
    );
    // New processes get pids above the restored ones.
    let pid3 = spawn(&aos, &blocking_script(&aos), &[]);
    assert_eq!(pid3, 3);
    let (code, out, _) = aos.run(&["kill", "1"]);
    assert_eq!((code, out.trim()), (0, "killed 1"));
}

#[test]
fn config_show_completions_and_top_snapshot() {
    let aos = new_aos();
    std::fs::write(
        aos.home().join("aos.toml"),
        "provider = \"openai\"\n[budgets]\nmax_steps = 7\n[providers.openai]\napi_key_env = \"MY_KEY\"\napi_key = \"sk-do-not-show\"\n",
    )
    .unwrap();
    let out = aos.cmd().env("AOS_MODEL", "from-env").args(["config", "show"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("sk-do-not-show") && text.contains("********"), "{text}");
    assert!(text.contains("from-env") && text.contains("max_steps = 7") && text.contains("MY_KEY"), "{text}");

    let (code, out, _) = aos.run(&["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(out.contains("aos") && out.contains("spawn"));

    let _d = Daemon::start(&aos);
    let pid = spawn(&aos, &blocking_script(&aos), &[]);
    wait_state(&aos, pid, "blocked_recv");
    let (code, out, err) = aos.run(&["top"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 processes (1 live)") && out.contains("recv"), "{out}");
}

/// Whether `docker` answers and the sandbox image exists; otherwise SKIPPED
/// (or a failure under CI).
fn docker_ready(test: &str) -> bool {
    let probe = std::process::Command::new("docker").args(["image", "inspect", "-f", "ok", "aos-sandbox:latest"]).output();
    let why = match probe {
        Err(e) => format!("the docker CLI cannot run ({e})"),
        Ok(o) if o.status.success() => return true,
        Ok(o) => format!("Docker or the sandbox image is missing: {}", String::from_utf8_lossy(&o.stderr).trim()),
    };
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {why} (CI is set, so this is a failure, not a skip)");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!! SKIPPED: `{test}` did not run: {why} !!!!!!!!\n");
    false
}

/// Ids of the sandbox containers of `pid` under the kernel of `aos`.
fn sandbox_containers(aos: &Aos, pid: u64) -> Vec<String> {
    let label = aos_sandbox::docker::kernel_label_for(&aos.home());
    let out = std::process::Command::new("docker")
        .args(["ps", "-a", "-q", "--filter", &format!("label=aos.kernel={label}"), "--filter", &format!("label=aos.pid={pid}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect()
}

#[test]
fn aos_kill_removes_the_process_sandbox_container() {
    if !docker_ready("aos_kill_removes_the_process_sandbox_container") {
        return;
    }
    let aos = new_aos();
    let _d = Daemon::start(&aos);
    let model = script(
        &aos,
        "exec.txt",
        "[SYS_CALL::EXEC_CMD] {\"cmd\": \"echo from-the-sandbox > /workspace/made.txt && cat /workspace/made.txt\"}\n---\n\
         [SYS_CALL::RECV_MSG] {}\n---\n[SYS_CALL::SYS_EXIT] {\"code\": 0}\n",
    );
    // fs:rw: without it the workspace is mounted read-only in the container too.
    let pid = spawn(&aos, &model, &["--grant", "exec", "--grant", "fs:rw", "--grant", "ipc"]);
    wait_state(&aos, pid, "blocked_recv");
    let (_, logs, _) = aos.run(&["logs", "--json", &pid.to_string()]);
    assert!(logs.contains("from-the-sandbox") && logs.contains("\"exit_code\":0"), "{logs}");
    assert_eq!(sandbox_containers(&aos, pid).len(), 1, "one live container for the process");

    let (code, _, err) = aos.run(&["kill", &pid.to_string()]);
    assert_eq!(code, 0, "{err}");
    wait_state(&aos, pid, "killed");
    let t0 = Instant::now();
    while !sandbox_containers(&aos, pid).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(20), "the container outlived `aos kill`");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One raw HTTP/1.1 GET; returns the status code and body.
fn raw_get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nhost: aos\r\n{auth}connection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

#[test]
fn control_api_over_loopback_tcp_needs_the_token() {
    let aos = new_aos();
    std::fs::write(aos.home().join("aos.toml"), "[control]\ntcp = \"127.0.0.1:0\"\n").unwrap();
    let _d = Daemon::start(&aos);
    let (code, out, err) = aos.run(&["kernel", "status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let st: Value = serde_json::from_str(&out).unwrap();
    let addr = st["control_tcp"].as_str().expect("status names the TCP address").to_string();
    let token_file = aos.home().join("control.token");
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
    assert_eq!(token.len(), 64);

    let (code, body) = raw_get(&addr, "/v1/ps", None);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("bearer token"), "{body}");
    let (code, _) = raw_get(&addr, "/v1/ps", Some(&"0".repeat(64)));
    assert_eq!(code, 401);
    let (code, body) = raw_get(&addr, "/v1/status", Some(&token));
    assert_eq!(code, 200, "{body}");

    // The CLI over TCP: token from the file, or from AOS_CONTROL_TOKEN.
    let url = format!("http://{addr}");
    let model = blocking_script(&aos);
    let mut c = aos.cmd();
    c.env("AOS_CONTROL_URL", &url).args(["spawn", "--provider", "script", "--model", &model, "over tcp"]);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut c = aos.cmd();
    c.env("AOS_CONTROL_URL", &url).args(["ps", "--json", "--all"]);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ps: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ps.len(), 1);
    let mut c = aos.cmd();
    c.env("AOS_CONTROL_URL", &url).env("AOS_CONTROL_TOKEN", "wrong").args(["ps"]);
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bearer token") && err.lines().count() == 1, "{err}");

    // Stopping removes the token.
    let (code, _, err) = aos.run(&["kernel", "stop"]);
    assert_eq!(code, 0, "{err}");
    assert!(!token_file.exists());
}

/// Polls until `pid` is blocked in RECV_MSG after exactly `steps` model calls.
fn wait_blocked_after(aos: &Aos, pid: u64, steps: u64) {
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

#[test]
fn webhooks_refuse_bad_secrets_and_deliver_good_ones() {
    let aos = new_aos();
    std::fs::write(aos.home().join("aos.toml"), "[webhooks]\ntimeout_secs = 1\nmax_body_bytes = 1000\n").unwrap();
    let _d = Daemon::start(&aos);
    let model = script(
        &aos,
        "hooks.txt",
        r#"[SYS_CALL::SYS_REGISTER_WEBHOOK] {"path": "/hooks/ci"}
---
[SYS_CALL::RECV_MSG] {}
---
[SYS_CALL::SYS_WEBHOOK_REPLY] {"request_id": 1, "status": 201, "body": "queued build"}
---
[SYS_CALL::RECV_MSG] {}
---
[SYS_CALL::SYS_WEBHOOK_REPLY] {"request_id": 2, "body": "signed ok"}
---
[SYS_CALL::RECV_MSG] {}
---
[SYS_CALL::RECV_MSG] {"timeout": 2}
---
[SYS_CALL::SYS_WEBHOOK_REPLY] {"request_id": 3, "body": "too late"}
---
[SYS_CALL::RECV_MSG] {}
"#,
    );
    let pid = spawn(&aos, &model, &["--grant", "webhook", "--grant", "ipc"]);
    wait_blocked_after(&aos, pid, 2);

    // Where the daemon serves webhooks, and the registration the process got.
    let (code, out, _) = aos.run(&["kernel", "status", "--json"]);
    assert_eq!(code, 0);
    let base = serde_json::from_str::<Value>(&out).unwrap()["webhooks"].as_str().expect("webhook address").to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let (_, text, _) = aos.run(&["kernel", "status"]);
    assert!(text.contains(&format!("webhooks: {base}")), "{text}");
    let (_, out, _) = aos.run(&["logs", "--json", &pid.to_string()]);
    let reg = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["name"] == "SYS_REGISTER_WEBHOOK" && e["type"] == "result")
        .unwrap_or_else(|| panic!("no registration: {out}"));
    let secret = reg["output"]["secret"].as_str().unwrap().to_string();
    let url = format!("{base}/hooks/ci");
    assert_eq!(reg["output"]["url"], url.as_str());

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let http = reqwest::Client::new();
    let send = |path: &str, headers: &[(&str, &str)], body: String| {
        let mut r = http.post(format!("{base}{path}")).body(body);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        rt.block_on(async move {
            let resp = r.send().await.expect("the webhook listener answers");
            let code = resp.status().as_u16();
            (code, resp.text().await.unwrap())
        })
    };

    // Signed requests: X-AOS-Timestamp and the HMAC of "TIMESTAMP.BODY".
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let signed = |secret: &str, ts: u64, body: &str| aos_kernel::webhook::sign(secret, ts, body.as_bytes());
    let send_signed = |path: &str, s: &[(String, String); 2], extra: &[(&str, &str)], body: String| {
        let mut headers: Vec<(&str, &str)> = s.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        headers.extend_from_slice(extra);
        send(path, &headers, body)
    };

    // Refused before reaching the process.
    let (code, body) = send("/hooks/ci", &[], "{}".into());
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("X-AOS-Signature") && body.contains("X-AOS-Timestamp"), "{body}");
    // The plain secret is not accepted by default (replayable, body not covered).
    let (code, body) = send("/hooks/ci", &[("X-AOS-Secret", &secret)], "{}".into());
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("allow_secret_header"), "{body}");
    let (code, _) = send_signed("/hooks/ci", &signed("guess", now(), "{}"), &[], "{}".into());
    assert_eq!(code, 403);
    // Signed more than 5 minutes ago: a captured request is not accepted.
    let (code, body) = send_signed("/hooks/ci", &signed(&secret, now() - 400, "{}"), &[], "{}".into());
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("X-AOS-Timestamp is"), "{body}");
    // A body changed under a valid signature.
    let (code, _) = send_signed("/hooks/ci", &signed(&secret, now(), "{}"), &[], "{\"x\": 1}".into());
    assert_eq!(code, 403);
    let (code, _) = send_signed("/hooks/other", &signed(&secret, now(), "{}"), &[], "{}".into());
    assert_eq!(code, 404);
    let (code, body) = send_signed("/hooks/ci", &signed(&secret, now(), "{}"), &[], "x".repeat(2000));
    assert_eq!(code, 413, "{body}");
    std::thread::sleep(Duration::from_millis(200));
    let (_, out, _) = aos.run(&["logs", "--json", &pid.to_string()]);
    assert!(!out.contains("\"type\":\"event\""), "a refused request reached the process: {out}");
    wait_blocked_after(&aos, pid, 2);

    // Signed with the secret: delivered, and answered with the process's status and body.
    let build = r#"{"build": 42}"#;
    let first = signed(&secret, now(), build);
    let (code, body) = send_signed("/hooks/ci", &first, &[("Content-Type", "application/json")], build.into());
    assert_eq!((code, body.as_str()), (201, "queued build"));
    let (_, out, _) = aos.run(&["logs", &pid.to_string()]);
    assert!(out.contains("webhook request #1") && out.contains("build"), "{out}");

    // The same request again is a replay; a new signature (clock skew within the window) is accepted.
    wait_blocked_after(&aos, pid, 4);
    let (code, body) = send_signed("/hooks/ci", &first, &[("Content-Type", "application/json")], build.into());
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("already used"), "{body}");
    let payload = r#"{"signed": true}"#;
    let (code, body) = send_signed("/hooks/ci", &signed(&secret, now() - 100, payload), &[], payload.into());
    assert_eq!((code, body.as_str()), (200, "signed ok"));

    // No reply within webhooks.timeout_secs: 504, and the late reply is an error for the model.
    wait_blocked_after(&aos, pid, 6);
    let t0 = Instant::now();
    let (code, body) = send_signed("/hooks/ci", &signed(&secret, now(), "slow"), &[], "slow".into());
    assert_eq!(code, 504, "{body}");
    assert!(body.contains("did not answer"), "{body}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    wait_blocked_after(&aos, pid, 9);
    let (_, out, _) = aos.run(&["logs", "--json", &pid.to_string()]);
    let late = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["type"] == "error" && e["name"] == "SYS_WEBHOOK_REPLY")
        .unwrap_or_else(|| panic!("no error for the late reply: {out}"));
    assert!(late["error"].as_str().unwrap().contains("unknown webhook request #3"), "{late}");

    // Routes end with the process.
    assert_eq!(aos.run(&["kill", &pid.to_string()]).0, 0);
    wait_state(&aos, pid, "killed");
    let (code, _) = send_signed("/hooks/ci", &signed(&secret, now(), "{}"), &[], "{}".into());
    assert_eq!(code, 404);
}

#[test]
fn ended_processes_and_archived_journals_are_reaped() {
    let aos = new_aos();
    std::fs::write(aos.home().join("aos.toml"), "[retention]\nmax_ended = 1\nmax_archived_journals = 1\n").unwrap();
    let d = Daemon::start(&aos);
    // Blocks in RECV_MSG again after each restart (the interrupted call is reported, the next reply runs).
    let blocker = script(&aos, "blocker.txt", &["[SYS_CALL::RECV_MSG] {}"; 4].join("\n---\n"));
    let blocker = spawn(&aos, &blocker, &[]);
    wait_state(&aos, blocker, "blocked_recv");
    let quick = script(&aos, "quick.txt", "[SYS_CALL::SYS_EXIT] {\"code\": 4}\n");
    let first = spawn(&aos, &quick, &[]);
    assert_eq!(aos.run(&["wait", &first.to_string()]).0, 4);
    let second = spawn(&aos, &quick, &[]);
    assert_eq!(aos.run(&["wait", &second.to_string()]).0, 4);
    let pids = |all| ps_json(&aos, all).iter().map(|p| p["pid"].as_u64().unwrap()).collect::<Vec<_>>();
    // Only the newest ended one is kept; the running one is untouched.
    assert_eq!(pids(true), [blocker, second]);
    assert_eq!(pids(false), [blocker]);
    let reaped = |aos: &Aos| {
        let (code, out, err) = aos.run(&["logs", &first.to_string()]);
        assert_eq!(code, 1, "{out}");
        assert!(err.contains(&format!("no process with pid {first}: it ended and was reaped")), "{err}");
    };
    reaped(&aos);
    // A restart resumes the running one, keeps the kept one, and still knows the reaped one.
    let restart = || {
        let (code, out, err) = aos.run(&["kernel", "stop"]);
        assert_eq!(code, 0, "{out}\n{err}");
        let (code, out, err) = aos.run(&["kernel", "start"]);
        assert_eq!(code, 0, "{out}\n{err}");
    };
    restart();
    wait_state(&aos, blocker, "blocked_recv");
    assert_eq!(pids(true), [blocker, second]);
    reaped(&aos);
    let (_, out, _) = aos.run(&["logs", &second.to_string()]);
    assert!(out.contains(&format!("process {second} exited with code 4")), "{out}");
    // Two earlier runs' journals, but only one archive is kept.
    restart();
    assert_eq!(aos.home().join("journal/archive").read_dir().unwrap().count(), 1);
    wait_state(&aos, blocker, "blocked_recv");
    assert_eq!(pids(true), [blocker, second]);
    drop(d);
}
