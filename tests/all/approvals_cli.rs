//! Approvals end to end through the daemon and the real `aos` binary:
//! `--approve`, `aos approvals`, `aos deny --reason`, `aos approve`, the
//! `approval` state in `ps`, and a pending approval surviving a kill -9 of
//! the daemon (asked again under the same id, run once when approved; an
//! "always" answer lets the next call of that pattern run unasked).

use std::time::{Duration, Instant};

use aos_tests::daemon::*;
use aos_tests::Aos;
use serde_json::Value;

fn pending(aos: &Aos) -> Vec<Value> {
    let (code, out, err) = aos.run(&["approvals", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    serde_json::from_str(&out).unwrap()
}

/// The one pending approval of `pid`, once there.
fn wait_pending(aos: &Aos, pid: u64) -> Value {
    let t0 = Instant::now();
    loop {
        if let Some(p) = pending(aos).into_iter().find(|p| p["pid"] == pid) {
            return p;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "pid {pid} never asked: {:?}", ps_json(aos, true));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn file(aos: &Aos, pid: u64) -> String {
    let info = ps_json(aos, true).into_iter().find(|p| p["pid"] == pid).unwrap();
    std::fs::read_to_string(std::path::Path::new(info["workspace"].as_str().unwrap()).join("a.txt")).unwrap()
}

#[test]
fn asked_calls_wait_for_aos_approve_and_deny_and_survive_a_restart() {
    let aos = new_aos();
    let d = Daemon::start(&aos);
    let write = |n: u32| format!("[SYS_CALL::FS_WRITE] {{\"path\": \"a.txt\", \"content\": \"{n}\"}}");
    let model = script(
        &aos,
        "approvals.txt",
        &[write(1), write(2), write(3), write(4), "[SYS_CALL::SYS_EXIT] {}".into()].join("\n---\n"),
    );
    let pid = spawn(&aos, &model, &["--approve", "ask-dangerous"]);

    // The overwrite asks; `ps` shows it; the file is untouched.
    let p = wait_pending(&aos, pid);
    assert_eq!((p["syscall"].as_str(), p["args"]["content"].as_str()), (Some("FS_WRITE"), Some("2")), "{p}");
    let info = wait_state(&aos, pid, "approval");
    assert_eq!(info["status"]["syscall"], "FS_WRITE", "{info}");
    let (_, out, _) = aos.run(&["ps"]);
    assert!(out.contains("approval"), "{out}");
    let (code, out, _) = aos.run(&["approvals"]);
    assert!(code == 0 && out.contains("FS_WRITE") && out.contains("\"content\":\"2\""), "{out}");
    assert_eq!(file(&aos, pid), "1");

    // Denied with a reason: the model is told, the file stays.
    let id = p["id"].as_u64().unwrap().to_string();
    let (code, _, err) = aos.run(&["deny", &id, "--reason", "keep version one"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = aos.run(&["approve", &id]);
    assert_eq!(code, 1, "an answered approval cannot be answered again");
    assert!(err.contains(&format!("no pending approval {id}")), "{err}");

    // The next overwrite asks too; the daemon dies while it waits.
    let p3 = wait_pending(&aos, pid);
    assert_eq!(p3["args"]["content"], "3", "{p3}");
    let (_, logs, _) = aos.run(&["logs", &pid.to_string()]);
    assert!(logs.contains("denied: by the operator: keep version one"), "{logs}");
    let dpid = d.pid().unwrap();
    std::process::Command::new("kill").args(["-9", &dpid.to_string()]).status().unwrap();
    let t0 = Instant::now();
    while aos.run(&["kernel", "status"]).0 == 0 {
        assert!(t0.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, out, err) = aos.run(&["kernel", "start"]);
    assert_eq!(code, 0, "{out}\n{err}");

    // Restored: the same approval waits again, under the same id; the call
    // has not run.
    let again = wait_pending(&aos, pid);
    assert_eq!((&again["id"], &again["args"]), (&p3["id"], &p3["args"]), "{again}\n{p3}");
    assert_eq!(file(&aos, pid), "1", "neither the denied nor the pending call ran");
    wait_state(&aos, pid, "approval");
    // Approved always: it runs once, and the next overwrite runs unasked.
    let (code, _, err) = aos.run(&["approve", &again["id"].as_u64().unwrap().to_string(), "--always"]);
    assert_eq!(code, 0, "{err}");
    let ended = wait_state(&aos, pid, "exited");
    assert_eq!(ended["status"]["code"], 0, "{ended}");
    assert_eq!(file(&aos, pid), "4");
    let (_, logs, _) = aos.run(&["logs", "--json", &pid.to_string()]);
    let lines: Vec<&str> = logs.lines().collect();
    assert!(!lines.iter().any(|l| l.contains("interrupted")), "nothing was interrupted: {logs}");
    let writes = lines.iter().filter(|l| l.contains("\"type\":\"result\"") && l.contains("FS_WRITE")).count();
    assert_eq!(writes, 3, "writes 1, 3 (once) and 4: {logs}");

    // A mode that does not exist is refused at spawn.
    let (code, _, err) = aos.run(&["spawn", "--provider", "script", "--model", &model, "--approve", "sometimes", "t"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown approval mode `sometimes`: use never, ask-dangerous or ask-all"), "{err}");
}
