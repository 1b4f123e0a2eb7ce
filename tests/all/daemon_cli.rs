//! The `aos` daemon and its client commands end to end: separate CLI
//! invocations against one background kernel per private `$AOS_HOME`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use aos_tests::daemon::*;
use aos_tests::Aos;
use serde_json::Value;

fn status_json(aos: &Aos) -> Value {
    let (code, out, err) = aos.run(&["kernel", "status", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    serde_json::from_str(&out).unwrap()
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

/// A model's progress reaches `aos logs -f --json` as `model_progress`
/// lines (the script provider reports a reply's estimated sizes), before the
/// reply's entry; a piped `aos logs -f` prints none of it.
#[test]
fn model_progress_reaches_logs_follow_json_and_not_pipes() {
    use std::io::{BufRead, Read};
    let aos = new_aos();
    let _d = Daemon::start(&aos);
    let model = script(&aos, "progress.txt", "[SYS_CALL::SYS_READ_STDIN] {}\n---\n[SYS_CALL::SYS_EXIT] {\"code\": 0}\n");
    let pid = spawn(&aos, &model, &["--no-grants"]).to_string();
    wait_state(&aos, pid.parse().unwrap(), "blocked_stdin");
    let follow = |json: bool| {
        let mut args = vec!["logs", "-f", &pid];
        if json {
            args.insert(1, "--json");
        }
        let mut child = aos.cmd().args(&args).stdout(std::process::Stdio::piped()).spawn().unwrap();
        // Following once the history so far is printed.
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        (child, out, first)
    };
    let (mut json, mut json_out, mut json_text) = follow(true);
    let (mut plain, mut plain_out, mut plain_text) = follow(false);
    let (code, _, err) = aos.run(&["send", &pid, "go"]);
    assert_eq!(code, 0, "{err}");
    json_out.read_to_string(&mut json_text).unwrap();
    plain_out.read_to_string(&mut plain_text).unwrap();
    assert!(json.wait().unwrap().success() && plain.wait().unwrap().success());

    let lines: Vec<Value> = json_text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let progress: Vec<&Value> = lines.iter().filter(|l| l["type"] == "model_progress").collect();
    let phases: Vec<&str> = progress.iter().map(|l| l["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["prompt", "generating"], "{json_text}");
    assert!(progress.iter().all(|l| l["pid"] == pid.parse::<u64>().unwrap()), "{json_text}");
    assert!(progress[0]["total"].as_u64().unwrap() > 0 && progress[1]["tokens"].as_u64().unwrap() > 0, "{json_text}");
    // Before the reply it is about (the second reply: SYS_EXIT).
    let at = |f: &dyn Fn(&Value) -> bool| lines.iter().position(f).unwrap_or_else(|| panic!("{json_text}"));
    let exit_reply = at(&|l| l["type"] == "reply" && l["text"].as_str().unwrap_or("").contains("SYS_EXIT"));
    assert!(at(&|l| l["phase"] == "generating") < exit_reply, "{json_text}");

    assert!(plain_text.contains("exited with code 0"), "{plain_text}");
    assert!(!plain_text.contains('\r') && !plain_text.contains("evaluating prompt") && !plain_text.contains("tok/s"), "{plain_text:?}");
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
        &["webhooks"],
    ] {
        let (code, out, err) = aos.run(args);
        assert_eq!((code, out.as_str(), err.trim()), (1, "", NOT_RUNNING), "aos {args:?}");
    }
    // Stopping what is not running succeeds, like `systemctl stop`.
    let (code, out, err) = aos.run(&["kernel", "stop"]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert!(out.contains("kernel not running") && out.contains("nothing to stop"), "{out}");
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
            Err(e) => aos_tests::skip(
                "the other-user check of the control socket",
                &format!("cannot run {} as nobody: {e}", bin.display()),
            ),
        }
    } else {
        aos_tests::skip("the other-user check of the control socket", "the tests do not run as root");
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

/// Sandbox containers of `pid` under the kernel of `aos`.
fn containers_of(aos: &Aos, pid: u64) -> Vec<String> {
    sandbox_containers(&aos_sandbox::docker::kernel_label_for(&aos.home()), pid)
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
    assert_eq!(containers_of(&aos, pid).len(), 1, "one live container for the process");

    let (code, _, err) = aos.run(&["kill", &pid.to_string()]);
    assert_eq!(code, 0, "{err}");
    wait_state(&aos, pid, "killed");
    let t0 = Instant::now();
    while !containers_of(&aos, pid).is_empty() {
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

/// Runs `aos ARGS` and gives up after `limit` (killing it): `None` if it did
/// not answer in time, else (exit code, stdout, how long it took).
fn run_timed(aos: &Aos, args: &[&str], limit: Duration) -> Option<(i32, String, Duration)> {
    use std::io::Read;
    let t = Instant::now();
    let mut child = aos
        .cmd()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let took = t.elapsed();
            let mut out = String::new();
            child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
            return Some((st.code().unwrap_or(-1), out, took));
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Eight agents reading and writing FIFOs in their workspaces, listing a
/// large directory, and then waiting on a server that never answers: the
/// FIFOs are refused at once, and while the agents sit in their slow reads
/// the daemon's `aos ps` answers in well under a second and `aos kill` ends
/// each of them.
#[test]
fn agents_stuck_in_slow_io_leave_ps_and_kill_responsive() {
    let aos = new_aos();
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming() {
            held.push(s);
        }
    });
    std::fs::write(aos.home().join("aos.toml"), "[net]\nallow = [\"127.0.0.1\"]\nread_timeout_secs = 120\n").unwrap();
    let _d = Daemon::start(&aos);
    let reply = format!(
        "[SYS_CALL::FS_READ] {{\"path\": \"pipe\"}}\n[SYS_CALL::FS_WRITE] {{\"path\": \"pipe\", \"content\": \"x\"}}\n\
         [SYS_CALL::FS_LIST] {{\"path\": \"big\"}}\n[SYS_CALL::NET_FETCH] {{\"url\": \"http://127.0.0.1:{port}/slow\"}}\n"
    );
    let model = script(&aos, "stuck.txt", &vec![reply; 4].join("---\n"));
    let mut pids = Vec::new();
    for i in 0..8 {
        let ws = aos.dir.path().join(format!("ws{i}"));
        std::fs::create_dir_all(ws.join("big")).unwrap();
        for f in 0..3000 {
            std::fs::File::create(ws.join("big").join(format!("f{f}"))).unwrap();
        }
        let st = std::process::Command::new("mkfifo").arg(ws.join("pipe")).status().unwrap();
        assert!(st.success());
        let ws = ws.display().to_string();
        pids.push(spawn(&aos, &model, &["--grant", "fs:rw", "--grant", "net", "--workspace", &ws]));
    }
    // Every agent is past its FIFO and listing calls, waiting in NET_FETCH.
    let t0 = Instant::now();
    loop {
        let Some((code, out, _)) = run_timed(&aos, &["ps", "--json"], Duration::from_secs(5)) else {
            panic!("`aos ps` did not answer within 5 s while agents were working on FIFOs");
        };
        assert_eq!(code, 0);
        let ps: Vec<Value> = serde_json::from_str(&out).unwrap();
        let waiting = ps
            .iter()
            .filter(|p| pids.contains(&p["pid"].as_u64().unwrap()))
            .filter(|p| p["counters"]["syscalls"]["FS_LIST"].as_u64().unwrap_or(0) >= 1)
            .count();
        if waiting == pids.len() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "agents did not get past their FIFO calls: {ps:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, logs, _) = aos.run(&["logs", &pids[0].to_string()]);
    assert!(logs.contains("FIFO"), "the FIFO was refused with the reason: {logs}");

    let mut latencies = Vec::new();
    for _ in 0..10 {
        let (code, out, took) =
            run_timed(&aos, &["ps"], Duration::from_secs(5)).expect("`aos ps` answers while 8 agents are stuck");
        assert_eq!(code, 0);
        assert!(out.contains("PID"), "{out}");
        latencies.push(took);
    }
    latencies.sort();
    eprintln!("`aos ps` with 8 agents stuck in slow I/O: median {:?}, max {:?}", latencies[5], latencies[9]);
    assert!(latencies[9] < Duration::from_secs(1), "`aos ps` took {:?}", latencies[9]);
    let (code, _, took) = run_timed(&aos, &["kernel", "status"], Duration::from_secs(5)).expect("status answers");
    assert_eq!(code, 0);
    assert!(took < Duration::from_secs(1), "`aos kernel status` took {took:?}");

    for pid in &pids {
        let (code, _, took) =
            run_timed(&aos, &["kill", &pid.to_string()], Duration::from_secs(5)).expect("`aos kill` answers");
        assert_eq!(code, 0);
        assert!(took < Duration::from_secs(1), "`aos kill {pid}` took {took:?}");
    }
    for pid in &pids {
        wait_state(&aos, *pid, "killed");
    }
}

/// Kills the daemon of `aos` with SIGKILL and waits until it is gone.
fn kill_9(aos: &Aos) {
    let pid = std::fs::read_to_string(aos.home().join("aos.pid")).unwrap();
    let pid = pid.trim().to_string();
    std::process::Command::new("kill").args(["-9", &pid]).status().unwrap();
    let t0 = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z")
    {
        assert!(t0.elapsed() < Duration::from_secs(10), "the daemon survived kill -9");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `aos logs --json PID` read with the kernel's line codec (lines may be nested deeper than serde_json's limit).
fn log_entries(aos: &Aos, pid: u64) -> Vec<Value> {
    let (code, out, err) = aos.run(&["logs", "--json", &pid.to_string()]);
    assert_eq!(code, 0, "aos logs {pid}: {err}");
    out.lines().map(|l| aos_kernel::codec::decode_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn assert_no_gap(entries: &[Value]) {
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"], i as u64, "a history entry is missing: {entries:#?}");
    }
}

#[test]
fn deeply_nested_arguments_are_journalled_read_back_and_restored() {
    let aos = new_aos();
    let _d = Daemon::start(&aos);
    // An unknown syscall whose arguments are nested 127 levels deep (126 arrays in an object):
    // serde_json parses it, but the log line around it is deeper than its default limit.
    let deep = format!("{}\"bottom\"{}", "[".repeat(126), "]".repeat(126));
    let model = script(
        &aos,
        "deep.txt",
        &format!(
            "[SYS_CALL::NO_SUCH_CALL] {{\"a\": {deep}}}\n---\n[SYS_CALL::RECV_MSG] {{}}\n---\n[SYS_CALL::RECV_MSG] {{}}\n---\n\
             [SYS_CALL::SYS_EXIT] {{\"code\": 3}}\n"
        ),
    );
    let pid = spawn(&aos, &model, &[]);
    wait_state(&aos, pid, "blocked_recv");
    let check = |aos: &Aos| {
        let entries = log_entries(aos, pid);
        let err = entries.iter().find(|e| e["type"] == "error" && e["name"] == "NO_SUCH_CALL").expect("the call is logged");
        let mut v = &err["args"]["a"];
        for _ in 0..126 {
            v = &v[0];
        }
        assert_eq!(v, "bottom", "the arguments come back whole");
        assert_no_gap(&entries);
        // The plain text form works too.
        let (code, out, err) = aos.run(&["logs", &pid.to_string()]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains("NO_SUCH_CALL"), "{out}");
    };
    check(&aos);
    // A crash and a restart: the process is resumed, not dropped for a gap.
    kill_9(&aos);
    let (code, out, err) = aos.run(&["kernel", "start"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (_, status, _) = aos.run(&["kernel", "status"]);
    assert!(status.contains(&format!("recovery: pid {pid} resumed from the journal")), "{status}");
    assert!(!status.contains("gap") && !status.contains("unreadable"), "{status}");
    wait_blocked_after(&aos, pid, 3);
    check(&aos);
    let (code, _, err) = aos.run(&["send", "--msg", &pid.to_string(), "done"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(aos.run(&["wait", &pid.to_string()]).0, 3);
}

/// A small tmpfs mounted at `path` (root only), unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str, test: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let out = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"]).arg(path).output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(path.to_path_buf())),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                aos_tests::skip(test, &format!("it needs root to mount a tmpfs: {why}"));
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Lines of a workspace file (the side effects of FS_WRITE appends).
fn lines_of(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
}

#[test]
fn a_full_journal_disk_pauses_processes_until_it_is_freed() {
    let aos = new_aos();
    let Some(_tmpfs) = Tmpfs::mount(&aos.home().join("journal"), "8m", "a_full_journal_disk_pauses_processes_until_it_is_freed")
    else {
        return;
    };
    let d = Daemon::start(&aos);
    // 300 steps, each an observable side effect (one appended line) and some log text.
    let steps = 300;
    let mut replies: Vec<String> = (1..=steps)
        .map(|k| {
            format!(
                "[SYS_CALL::FS_WRITE] {{\"path\": \"count.txt\", \"content\": \"step {k}\\n\", \"append\": true}}\n\
                 [SYS_CALL::SYS_WRITE_STDOUT] {{\"text\": \"{}\"}}",
                "x".repeat(2000)
            )
        })
        .collect();
    replies.push("[SYS_CALL::SYS_EXIT] {\"code\": 0}".into());
    let model = script(&aos, "busy.txt", &replies.join("\n---\n"));
    let ws = aos.ws();
    // Fill the journal's file system up to its last 256 KiB before the agent
    // starts: it runs some steps (each journals a few KiB) and then finds the
    // disk full mid-run. (Filling it while the agent runs was a race: under
    // load the agent could finish its 300 steps first.)
    let filler = aos.home().join("journal/filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 16 << 10];
        while f.write_all(&chunk).is_ok() {}
        let full = f.metadata().unwrap().len();
        f.set_len(full.saturating_sub(256 << 10)).unwrap();
    }
    let pid = spawn(&aos, &model, &["--grant", "fs:rw", "--workspace", ws.to_str().unwrap(), "--max-steps", "1000"]);
    let count = ws.join("count.txt");
    // The process pauses, visibly, and the control API keeps answering.
    let t0 = Instant::now();
    let paused = loop {
        let ps = ps_json(&aos, true);
        let p = ps.iter().find(|p| p["pid"] == pid).unwrap().clone();
        if p["status"]["state"] == "paused" {
            break p;
        }
        assert!(p["status"]["state"] != "exited", "it ran to the end on a full disk: {p}");
        assert!(t0.elapsed() < Duration::from_secs(20), "never paused: {p}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let reason = paused["status"]["reason"].as_str().unwrap();
    assert!(reason.contains("No space left on device") && reason.contains("continues by itself"), "{reason}");
    let (code, out, _) = aos.run(&["ps"]);
    assert!(code == 0 && out.contains("paused"), "{out}");
    let (code, out, _) = aos.run(&["kernel", "status"]);
    assert!(code == 0 && out.contains("journal: FAILING") && out.contains("1 process(es) paused"), "{out}");
    let (code, out, _) = aos.run(&["top"]);
    assert!(code == 0 && out.contains("JOURNAL FAILING (1 paused)"), "{out}");
    // No side effect while paused.
    let done = lines_of(&count).len();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(lines_of(&count).len(), done, "a side effect ran while its journal entry could not be written");
    let t = Instant::now();
    assert_eq!(aos.run(&["ps"]).0, 0);
    assert!(t.elapsed() < Duration::from_secs(2), "ps took {:?} with the journal failing", t.elapsed());
    // Space again: it continues by itself and finishes.
    std::fs::remove_file(&filler).unwrap();
    let (code, _, err) = aos.run(&["wait", &pid.to_string()]);
    assert_eq!(code, 0, "{err}");
    let lines = lines_of(&count);
    let expected: Vec<String> = (1..=steps).map(|k| format!("step {k}")).collect();
    assert_eq!(lines, expected, "every step ran exactly once, in order");
    let (_, out, _) = aos.run(&["kernel", "status"]);
    assert!(!out.contains("FAILING"), "{out}");
    // And the journal holds all of it: after a crash the history is whole.
    kill_9(&aos);
    let (code, out, err) = aos.run(&["kernel", "start"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let entries = log_entries(&aos, pid);
    assert_no_gap(&entries);
    assert_eq!(entries.iter().filter(|e| e["type"] == "result" && e["name"] == "FS_WRITE").count(), steps);
    drop(d);
}

#[test]
fn random_kill_9_loses_no_history_and_runs_no_call_twice() {
    let aos = new_aos();
    let d = Daemon::start(&aos);
    let agents = 4u64;
    let steps = 150;
    let ws = aos.ws();
    let mut pids = Vec::new();
    for a in 1..=agents {
        let mut replies: Vec<String> = (1..=steps)
            .map(|k| format!("[SYS_CALL::FS_WRITE] {{\"path\": \"a{a}.txt\", \"content\": \"{a}:{k}\\n\", \"append\": true}}"))
            .collect();
        replies.push("[SYS_CALL::SYS_EXIT] {\"code\": 0}".into());
        let model = script(&aos, &format!("agent{a}.txt"), &replies.join("\n---\n"));
        pids.push(spawn(&aos, &model, &["--grant", "fs:rw", "--workspace", ws.to_str().unwrap(), "--max-steps", "1000"]));
    }
    // A reproducible pseudo-random schedule (printed, so a failure can be replayed).
    let mut seed: u64 = std::env::var("AOS_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("kill schedule seed: {seed} (AOS_KILL_SEED)");
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let kills = 24;
    for i in 0..kills {
        std::thread::sleep(Duration::from_millis(30 + next() % 400));
        kill_9(&aos);
        let (code, out, err) = aos.run(&["kernel", "start"]);
        assert_eq!(code, 0, "restart {i}: {out}\n{err}");
        let (_, status, _) = aos.run(&["kernel", "status"]);
        assert!(!status.contains("not resumed") && !status.contains("unreadable"), "restart {i}: {status}");
    }
    for &pid in &pids {
        let (code, _, err) = aos.run(&["wait", &pid.to_string()]);
        assert_eq!(code, 0, "pid {pid} did not finish: {err}");
    }
    let mut interrupted = 0;
    for (a, &pid) in (1..=agents).zip(&pids) {
        let entries = log_entries(&aos, pid);
        assert_no_gap(&entries);
        let lines = lines_of(&ws.join(format!("a{a}.txt")));
        // No call ran twice.
        let mut seen = std::collections::BTreeSet::new();
        for l in &lines {
            assert!(seen.insert(l.clone()), "pid {pid}: `{l}` was written twice: {lines:?}");
        }
        // Every completed call is in the history and took effect; every effect
        // is in the history (completed, or reported to the model as interrupted).
        let content = |e: &Value| e["args"]["content"].as_str().map(|c| c.trim_end().to_string());
        let done: Vec<String> =
            entries.iter().filter(|e| e["type"] == "result" && e["name"] == "FS_WRITE").filter_map(content).collect();
        let cut: Vec<String> = entries
            .iter()
            .filter(|e| e["type"] == "error" && e["error"].as_str().is_some_and(|m| m.starts_with("interrupted")))
            .filter_map(content)
            .collect();
        interrupted += cut.len();
        for c in &done {
            assert!(seen.contains(c), "pid {pid}: completed call `{c}` has no effect");
        }
        for l in &lines {
            assert!(done.contains(l) || cut.contains(l), "pid {pid}: effect `{l}` is not in the history");
        }
        // Each scripted step is in the history exactly once: completed or interrupted.
        let mut all: Vec<&String> = done.iter().chain(&cut).collect();
        all.sort();
        all.dedup();
        assert_eq!((all.len(), done.len() + cut.len()), (steps, steps), "pid {pid}: a step is missing or doubled");
    }
    eprintln!("{kills} kills, {interrupted} calls reported as interrupted");
    drop(d);
}

/// A loopback OpenAI chat-completions server (std threads, so it outlives
/// daemon restarts): answers the n-th POST with `replies[n]` (the last
/// repeats) and records the JSON bodies.
fn openai_server(replies: Vec<Value>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let b2 = bodies.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let body = loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())).unwrap_or(0);
                    while buf.len() < i + 4 + len {
                        let n = s.read(&mut chunk).unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    break serde_json::from_slice::<Value>(&buf[i + 4..(i + 4 + len).min(buf.len())]).ok();
                }
            };
            let Some(body) = body else { continue };
            let reply = {
                let mut b = b2.lock().unwrap();
                b.push(body);
                replies[(b.len() - 1).min(replies.len() - 1)].to_string()
            };
            let _ = s.write_all(
                format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}", reply.len())
                    .as_bytes(),
            );
        }
    });
    (url, bodies)
}

/// A chat completion (the documented shape of
/// https://platform.openai.com/docs/api-reference/chat/object) with these
/// native tool calls (id, name, arguments).
fn chat_completion(calls: &[(&str, &str, &str)]) -> Value {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, args)| serde_json::json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
        .collect();
    serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1741570283, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": calls}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    })
}

/// The daemon is killed with SIGKILL while a native tool call runs (its
/// reply had two: FS_WRITE, done, then RECV_MSG, blocking). After the
/// restart the process's next request answers both calls under their ids —
/// FS_WRITE with its recorded result, RECV_MSG "interrupted, not re-run" —
/// and FS_WRITE's effect happened once.
#[test]
fn kill_9_between_a_native_tool_call_and_its_result() {
    let aos = new_aos();
    let (url, bodies) = openai_server(vec![
        chat_completion(&[
            ("call_w", "FS_WRITE", r#"{"path": "n.txt", "content": "once\n", "append": true}"#),
            ("call_r", "RECV_MSG", "{}"),
        ]),
        chat_completion(&[("call_x", "SYS_EXIT", r#"{"code": 0, "result": "done"}"#)]),
    ]);
    let d = Daemon::start(&aos);
    let ws = aos.ws();
    let (code, out, err) = aos.run(&[
        "spawn", "--provider", "openai", "--base-url", &url, "--model", "gpt-4o", "--tool-mode", "native",
        "--grant", "fs:rw", "--grant", "ipc", "--workspace", ws.to_str().unwrap(), "write once to n.txt",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let pid: u64 = out.trim().parse().unwrap();
    wait_state(&aos, pid, "blocked_recv");
    kill_9(&aos);
    let (code, out, err) = aos.run(&["kernel", "start"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let ended = wait_state(&aos, pid, "exited");
    assert_eq!(ended["status"]["code"], 0, "{ended}");
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "one request before the crash, one after: {bodies:#?}");
    let msgs = bodies[1]["messages"].as_array().unwrap();
    let i = msgs.iter().position(|m| m["role"] == "assistant").expect("the reply with the calls");
    assert_eq!(msgs[i]["tool_calls"].as_array().unwrap().len(), 2, "{msgs:#?}");
    assert_eq!((msgs[i + 1]["role"].as_str(), msgs[i + 1]["tool_call_id"].as_str()), (Some("tool"), Some("call_w")), "{msgs:#?}");
    assert!(msgs[i + 1]["content"].as_str().unwrap().starts_with("[RESULT FS_WRITE"), "{}", msgs[i + 1]);
    assert_eq!((msgs[i + 2]["role"].as_str(), msgs[i + 2]["tool_call_id"].as_str()), (Some("tool"), Some("call_r")), "{msgs:#?}");
    let r = msgs[i + 2]["content"].as_str().unwrap();
    assert!(r.contains("interrupted") && r.contains("not re-run"), "{r}");
    // The write ran once, and is in the history once.
    assert_eq!(std::fs::read_to_string(ws.join("n.txt")).unwrap(), "once\n");
    let entries = log_entries(&aos, pid);
    assert_no_gap(&entries);
    assert_eq!(entries.iter().filter(|e| e["type"] == "result" && e["name"] == "FS_WRITE").count(), 1, "{entries:#?}");
    drop(d);
}
