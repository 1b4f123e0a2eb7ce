//! `aos top` and `aos run` in a real pseudo-terminal: tmux runs them at a
//! fixed size, keys are typed with `send-keys` and the screen is read with
//! `capture-pane`. Checked for `top`: the columns fill the width, the
//! sleeping process's wake-up time, selection, sorting, the help key, the
//! log view, kill with confirmation, and staying up across a daemon
//! restart; for `aos run --approve`: the inline y / n question.

use std::process::Command;
use std::time::{Duration, Instant};

use aos_tests::daemon::*;
use aos_tests::Aos;

/// A private tmux server (its own socket) running one `aos` command.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(aos: &Aos, width: u16, height: u16) -> Option<Tmux> {
        Tmux::run(aos, width, height, "top --interval 0.3")
    }

    /// `aos ARGS` (a shell-quoted string) in a pane, which ends when it
    /// does (see [`Tmux::alive`]); `aos ARGS; sleep 60` keeps its last screen.
    fn run(aos: &Aos, width: u16, height: u16, args: &str) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            aos_tests::skip("aos in a pty", "tmux is not installed (apt-get install tmux)");
            return None;
        }
        let socket = format!("aos-tty-test-{}-{}", std::process::id(), aos.dir.path().file_name().unwrap().to_string_lossy());
        let cmd = format!(
            "env AOS_HOME={} TERM=xterm-256color {} {args}",
            aos.home().display(),
            aos_tests::aos_bin().display()
        );
        let st = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d", "-x", &width.to_string(), "-y", &height.to_string(), &cmd])
            .status()
            .unwrap();
        assert!(st.success(), "tmux new-session failed");
        Some(Tmux { socket })
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux").args(["-L", &self.socket, "capture-pane", "-p"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["-L", self.socket.as_str(), "send-keys"];
        args.extend_from_slice(keys);
        assert!(Command::new("tmux").args(&args).status().unwrap().success());
    }

    /// Waits until the screen satisfies `ok`; returns it.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(t0.elapsed() < Duration::from_secs(15), "the screen never showed {what}:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether `aos top` still runs in the pane.
    fn alive(&self) -> bool {
        Command::new("tmux").args(["-L", &self.socket, "has-session"]).status().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

/// The row of `pid` on the screen (the line starting with it).
fn row<'a>(screen: &'a str, pid: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.trim_start().starts_with(&format!("{pid} ")))
}

#[test]
fn top_in_a_terminal_selects_sorts_shows_logs_kills_and_reconnects() {
    let aos = new_aos();
    let d = Daemon::start(&aos);
    // 1: waits in RECV_MSG; 2: sleeps for an hour; 3: writes a lot of tokens' worth of log, then waits.
    // (RECV_MSG again after the restart below interrupts it.)
    let blocker = script(
        &aos,
        "block.txt",
        &format!("[SYS_CALL::SYS_WRITE_STDOUT] {{\"text\": \"hello\"}}\n---\n{}", ["[SYS_CALL::RECV_MSG] {}"; 4].join("\n---\n")),
    );
    let sleeper = script(&aos, "sleep.txt", "[SYS_CALL::SLEEP] {\"seconds\": 3600}\n---\n[SYS_CALL::SYS_EXIT] {}\n");
    let talker = script(
        &aos,
        "talk.txt",
        "[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"line from three\"}\n---\n[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"second line from three\"}\n---\n[SYS_CALL::RECV_MSG] {}\n",
    );
    assert_eq!(spawn(&aos, &blocker, &[]), 1);
    assert_eq!(spawn(&aos, &sleeper, &["--grant", "timers"]), 2);
    assert_eq!(spawn(&aos, &talker, &["--grant", "ipc"]), 3);
    wait_state(&aos, 2, "sleeping");
    wait_blocked_after(&aos, 3, 3);
    wait_blocked_after(&aos, 1, 2);

    let Some(t) = Tmux::start(&aos, 160, 30) else { return };
    let s = t.wait_for("the three processes", |s| row(s, "1").is_some() && row(s, "2").is_some() && row(s, "3").is_some());
    // Header, columns and the task using the width; the sleeper's wake-up time.
    assert!(s.contains("aos top — kernel pid") && s.contains("3 processes (3 live)"), "{s}");
    for col in ["PID", "PARENT", "STATUS", "PROVIDER/MODEL", "STEPS", "TOKENS", "CACHED", "TOK/S", "SYSCALLS", "CALL/S", "AGE", "TASK"] {
        assert!(s.contains(col), "{col} missing:\n{s}");
    }
    let r2 = row(&s, "2").unwrap();
    assert!(r2.contains("sleeping(59m") || r2.contains("sleeping(1h00m"), "wake-up time of the sleeper: {r2}");
    assert!(row(&s, "1").unwrap().contains("recv") && row(&s, "1").unwrap().contains("script/block.txt"), "{s}");
    assert!(row(&s, "1").unwrap().trim_end().ends_with("a task"), "the task column: {s}");

    // Help, then any key closes it.
    t.keys(&["?"]);
    t.wait_for("the help", |s| s.contains("aos top: keys") && s.contains("kill it and its descendants"));
    t.keys(&["x"]);
    t.wait_for("the list again", |s| !s.contains("aos top: keys") && row(s, "1").is_some());

    // Sorting: by status (busy first), then by steps (most first), reversed.
    t.keys(&["s"]);
    let s = t.wait_for("the status sort", |s| s.contains("sort: STATUS"));
    assert!(s.contains("STATUS▼"), "{s}");
    t.keys(&["s", "s"]);
    let s = t.wait_for("the steps sort", |s| s.contains("sort: STEPS"));
    let order: Vec<&str> = s.lines().filter_map(|l| l.split_whitespace().next()).filter(|w| ["1", "2", "3"].contains(w)).collect();
    assert_eq!(order, ["3", "1", "2"], "most steps first:\n{s}");
    t.keys(&["r"]);
    let s = t.wait_for("the reversed sort", |s| s.contains("sort: STEPS (reversed)"));
    let order: Vec<&str> = s.lines().filter_map(|l| l.split_whitespace().next()).filter(|w| ["1", "2", "3"].contains(w)).collect();
    assert_eq!(order, ["2", "1", "3"], "reversed:\n{s}");

    // Select pid 3 (last row) and open its log.
    t.keys(&["End", "Enter"]);
    let s = t.wait_for("the log of 3", |s| s.contains("log of pid 3"));
    assert!(s.contains("[3] stdout: line from three") && s.contains("[3] stdout: second line from three"), "{s}");
    t.keys(&["Escape"]);
    t.wait_for("the list again", |s| !s.contains("log of pid 3") && row(s, "3").is_some());

    // Kill the selected one (3): asked first; `n` keeps it, `y` kills it.
    t.keys(&["K"]);
    t.wait_for("the kill question", |s| s.contains("kill pid 3 and its descendants? (y/n)"));
    t.keys(&["n"]);
    t.wait_for("not killed", |s| s.contains("pid 3 not killed"));
    assert_eq!(wait_state(&aos, 3, "blocked_recv")["pid"], 3);
    t.keys(&["K"]);
    t.wait_for("the kill question", |s| s.contains("kill pid 3 and its descendants? (y/n)"));
    t.keys(&["y"]);
    let s = t.wait_for("the kill", |s| s.contains("killed 3") && row(s, "3").is_none());
    assert!(row(&s, "1").is_some(), "{s}");
    wait_state(&aos, 3, "killed");
    // `a` shows ended processes.
    t.keys(&["a"]);
    t.wait_for("the ended process", |s| row(s, "3").is_some_and(|r| r.contains("killed")));

    // A daemon restart: top stays up, says it reconnects, and comes back.
    let (code, _, err) = aos.run(&["kernel", "stop"]);
    assert_eq!(code, 0, "{err}");
    t.wait_for("the reconnecting header", |s| s.contains("kernel not running: reconnecting"));
    assert!(t.alive(), "top exited when the kernel stopped");
    let (code, _, err) = aos.run(&["kernel", "start"]);
    assert_eq!(code, 0, "{err}");
    let s = t.wait_for("the restarted kernel", |s| s.contains("aos top — kernel pid") && row(s, "1").is_some());
    assert!(row(&s, "1").unwrap().contains("recv"), "{s}");

    // A narrow terminal: columns are dropped, the task still shows.
    Command::new("tmux").args(["-L", &t.socket, "resize-window", "-x", "60", "-y", "20"]).status().unwrap();
    let s = t.wait_for("the narrow view", |s| !s.contains("CALL/S") && s.contains("TASK"));
    assert!(s.lines().all(|l| l.chars().count() <= 60), "{s}");

    t.keys(&["q"]);
    let t0 = Instant::now();
    while t.alive() {
        assert!(t0.elapsed() < Duration::from_secs(5), "q did not quit");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(d);
}

#[test]
fn top_piped_prints_the_interactive_columns() {
    let aos = new_aos();
    let _d = Daemon::start(&aos);
    let pid = spawn(&aos, &blocking_script(&aos), &[]);
    wait_state(&aos, pid, "blocked_recv");
    let quick = script(&aos, "quick.txt", "[SYS_CALL::SYS_EXIT] {\"code\": 2}\n");
    let ended = spawn(&aos, &quick, &[]);
    assert_eq!(aos.run(&["wait", &ended.to_string()]).0, 2);
    let (code, out, err) = aos.run(&["top", "--interval", "0.2"]);
    assert_eq!(code, 0, "{err}");
    let header = out.lines().nth(1).unwrap();
    let cols: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(cols, ["PID", "PARENT", "STATUS", "PROVIDER/MODEL", "STEPS", "TOKENS", "CACHED", "TOK/S", "SYSCALLS", "CALL/S", "AGE", "TASK"], "{out}");
    assert!(row(&out, "1").is_some() && row(&out, &ended.to_string()).is_none(), "live only:\n{out}");
    assert!(out.contains("2 processes (1 live)"), "{out}");
    let (_, out, _) = aos.run(&["top", "--all", "--interval", "0.2"]);
    assert!(row(&out, &ended.to_string()).is_some_and(|r| r.contains("exited(2)")), "{out}");
    // COLUMNS narrows it like a terminal would.
    let o = aos.cmd().env("COLUMNS", "50").args(["top", "--interval", "0.1"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.lines().skip(1).all(|l| l.chars().count() <= 50), "{out}");
}

/// `aos run --approve ask-all` asks on the terminal: `y` runs the call, `n`
/// denies it (the model is told), and without a terminal the call is
/// denied at once, saying why.
#[test]
fn aos_run_asks_for_approval_on_the_terminal() {
    let aos = new_aos();
    let ws = aos.ws();
    std::fs::create_dir_all(&ws).unwrap();
    let model = script(
        &aos,
        "ask.txt",
        "[SYS_CALL::FS_WRITE] {\"path\": \"yes.txt\", \"content\": \"y\"}\n---\n\
         [SYS_CALL::FS_WRITE] {\"path\": \"no.txt\", \"content\": \"n\"}\n---\n[SYS_CALL::SYS_EXIT] {}\n",
    );
    let args = format!(
        "run --provider script --model {model} --workspace {} --approve ask-all --grant fs:rw 'write two files'; sleep 60",
        ws.display()
    );
    let Some(t) = Tmux::run(&aos, 200, 40, &args) else { return };
    t.wait_for("the first question", |s| s.contains("approve FS_WRITE") && s.contains("yes.txt"));
    t.keys(&["y", "Enter"]);
    t.wait_for("the second question", |s| s.contains("no.txt") && s.contains("[a]lways"));
    t.keys(&["n", "Enter"]);
    let screen = t.wait_for("the end of the run", |s| s.contains("exited with code 0"));
    assert!(screen.contains("denied: by the operator: no reason given"), "{screen}");
    assert_eq!(std::fs::read_to_string(ws.join("yes.txt")).unwrap(), "y");
    assert!(!ws.join("no.txt").exists(), "a denied call must not run");

    // Not on a terminal: denied at once with the reason.
    let (code, _, err) = aos.run(&["run", "--provider", "script", "--model", &model, "--workspace", &ws.display().to_string(), "--approve", "ask-all", "--grant", "fs:rw", "t"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no operator to ask: `aos run` is not on a terminal"), "{err}");
}

