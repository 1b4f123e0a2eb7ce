//! The `aos` command as a new user meets it (issue 17): closed pipes, the
//! running kernel's configuration, workspaces, provider and grant errors,
//! webhooks, `--json` everywhere, ps filters and trees, logs selections,
//! `aos run`'s stdout, Ctrl-C, and consistent answers. Every test drives the
//! real binary.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aos_tests::daemon::*;
use aos_tests::Aos;
use serde_json::Value;

/// Runs `cmd` with its stdout already closed by the reader (`… | head -0`):
/// returns the exit code and stderr.
fn with_closed_stdout(mut cmd: Command) -> (i32, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = cmd.stdout(writer).stderr(Stdio::piped()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn args_of(aos: &Aos, args: &[&str]) -> Command {
    let mut c = aos.cmd();
    c.args(args);
    c
}

#[test]
fn every_command_ends_quietly_on_a_closed_pipe() {
    let aos = new_aos();
    let ws = aos.ws().display().to_string();
    let wordcount = aos_runtime::example_driver_path("wordcount").display().to_string();
    let exit7 = script(&aos, "exit7.txt", "[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"answer\"}\n---\n[SYS_CALL::SYS_EXIT] {\"code\": 7, \"result\": \"r\"}\n");
    // Commands that need no kernel.
    let no_kernel: Vec<(Vec<&str>, i32)> = vec![
        (vec!["--help"], 0),
        (vec!["driver", "ls"], 0),
        (vec!["driver", "ls", "--json"], 0),
        (vec!["driver", "inspect", &wordcount], 0),
        (vec!["driver", "call", "fs", "FS_LIST", "{}", "-g", "fs:ro", "--workspace", &ws], 0),
        (vec!["config", "show"], 0),
        (vec!["config", "show", "--json"], 0),
        (vec!["config", "path"], 0),
        (vec!["completions", "bash"], 0),
        (vec!["kernel", "stop"], 0),
        // 0 on the closed pipe, or the command's 1 (no kernel).
        (vec!["kernel", "status", "--json"], -2),
        (vec!["sandbox", "status", "--json"], -2),
        // `run` keeps going and exits with the agent's code.
        (vec!["run", "--provider", "script", "--model", &exit7, "--workspace", &ws, "t"], 7),
        (vec!["run", "--provider", "script", "--model", &exit7, "--workspace", &ws, "--json", "t"], 7),
    ];
    for (args, want) in &no_kernel {
        let (code, err) = with_closed_stdout(args_of(&aos, args));
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "aos {args:?}: {err}");
        if *want >= 0 {
            assert_eq!(code, *want, "aos {args:?}: {err}");
        } else {
            assert!(code == 0 || code == 1, "aos {args:?} exited {code}: {err}");
        }
    }

    let _d = Daemon::start(&aos);
    let pid = spawn(&aos, &blocking_script(&aos), &["--grant", "ipc,webhook"]);
    wait_state(&aos, pid, "blocked_recv");
    let ended = spawn(&aos, &exit7, &[]);
    assert_eq!(aos.run(&["wait", &ended.to_string()]).0, 7);
    let (p, e) = (pid.to_string(), ended.to_string());
    let with_kernel: Vec<(Vec<&str>, i32)> = vec![
        (vec!["ps"], 0),
        (vec!["ps", "--all", "--json"], 0),
        (vec!["ps", "-q"], 0),
        (vec!["ps", "--tree", "--all"], 0),
        (vec!["logs", &p], 0),
        (vec!["logs", "--json", &p], 0),
        (vec!["logs", "-f", &e], 0),
        (vec!["logs", "--stdout", "-t", &e], 0),
        (vec!["kernel", "status"], 0),
        (vec!["kernel", "status", "--json"], 0),
        (vec!["kernel", "start"], 0),
        (vec!["config", "show"], 0),
        (vec!["top"], 0),
        (vec!["top", "--all", "--interval", "0.1"], 0),
        (vec!["webhooks"], 0),
        (vec!["wait", "--json", &e], 0),
        (vec!["send", "--json", &p, "x"], 0),
        (vec!["spawn", "--provider", "script", "--model", &exit7, "t"], 0),
        (vec!["spawn", "--wait", "--provider", "script", "--model", &exit7, "t"], 0),
        (vec!["kill", "--json", &p], 0),
    ];
    for (args, want) in &with_kernel {
        let (code, err) = with_closed_stdout(args_of(&aos, args));
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "aos {args:?}: {err}");
        assert_eq!(code, *want, "aos {args:?}: {err}");
    }
    // A closed stderr does not make an error panic either (101 would be a panic).
    let mut c = args_of(&aos, &["logs", "999"]);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let st = c.stdout(Stdio::null()).stderr(writer).status().unwrap();
    assert_eq!(st.code(), Some(1));
}

/// The closed-pipe test above closes stdout before the first write, so a
/// `println!` after an `outln!` would go unseen there (it panics with exit
/// 101 when the reader leaves between the two): no command prints but
/// through `term`'s macros. `top` draws its terminal UI on stdout only when
/// it is a terminal.
#[test]
fn the_cli_prints_only_through_the_pipe_safe_writers() {
    let src = aos_tests::repo_root().join("host/cli/src");
    let mut files = vec![src.join("main.rs"), src.join("home.rs")];
    for e in std::fs::read_dir(src.join("commands")).unwrap() {
        files.push(e.unwrap().path());
    }
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let direct = ["println!", "print!(", "eprintln!", "eprint!(", "dbg!("].iter().any(|m| code.contains(m));
            let raw = code.contains("io::stdout()") && !f.ends_with("top.rs");
            if direct || raw {
                found.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "print through outln!/out!/errln! (term.rs), not:\n{}", found.join("\n"));
}

/// `aos logs -f` on a process that writes nothing more ends as soon as its
/// reader goes away (`aos logs -f 3 | grep -m1 …`), without waiting for the
/// next line, like `tail -f | head`.
#[test]
fn following_ends_when_the_reader_leaves() {
    use std::io::BufRead;
    let aos = new_aos();
    let _d = Daemon::start(&aos);
    let pid = spawn(&aos, &blocking_script(&aos), &[]).to_string();
    wait_state(&aos, pid.parse().unwrap(), "blocked_recv");
    // The whole log is read (up to its last entry, the RECV_MSG call) before
    // the reader leaves, or nothing is printed at all (--tail 0): either way
    // the command has nothing more to write, and must notice by itself.
    for args in [vec!["logs", "-f", &pid], vec!["logs", "-f", "--json", &pid], vec!["logs", "-f", "--tail", "0", &pid]] {
        let mut child = args_of(&aos, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
        if !args.contains(&"--tail") {
            let mut line = String::new();
            while !line.contains("RECV_MSG") {
                line.clear();
                assert!(reader.read_line(&mut line).unwrap() > 0, "aos {args:?} ended early");
            }
        }
        std::thread::sleep(Duration::from_millis(1000));
        drop(reader);
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("aos {args:?} still follows 10 s after its reader left");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(status.code(), Some(0), "aos {args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
    }
    // The process itself is untouched.
    wait_state(&aos, pid.parse().unwrap(), "blocked_recv");
}

#[test]
fn config_show_is_the_running_kernels_and_says_when_a_restart_is_needed() {
    let aos = new_aos();
    // No file: the defaults, with the default provider and model.
    let (code, out, err) = aos.run(&["config", "show"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no kernel running"), "{out}");
    assert!(out.contains("provider = \"local\"\nmodel = \"default\"\n"), "{out}");
    assert!(out.contains("# max_tokens = (unset: unlimited)"), "{out}");

    std::fs::write(aos.home().join("aos.toml"), "[budgets]\nmax_steps = 7\n").unwrap();
    let _d = Daemon::start(&aos);
    // The file changes after the start: the kernel still runs with what it loaded.
    std::fs::write(
        aos.home().join("aos.toml"),
        "provider = \"script\"\nmodel = \"/x.txt\"\n[budgets]\nmax_steps = 9\n[providers.openai]\napi_key = \"sk-hidden\"\n",
    )
    .unwrap();
    let (code, out, err) = aos.run(&["config", "show"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("the running kernel's configuration"), "{out}");
    assert!(out.contains("provider = \"local\"") && out.contains("max_steps = 7"), "{out}");
    assert!(out.contains("RESTART NEEDED"), "{out}");
    assert!(out.contains("#   provider: \"local\" -> \"script\""), "{out}");
    assert!(out.contains("#   budgets.max_steps: 7 -> 9"), "{out}");
    assert!(!out.contains("sk-hidden"), "{out}");
    let (code, out, _) = aos.run(&["config", "show", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["source"].as_str(), v["restart_needed"].as_bool()), (Some("kernel"), Some(true)), "{v}");
    assert_eq!(v["config"]["provider"], "local");
    assert!(v["changes"].as_array().unwrap().iter().any(|c| c["key"] == "model" && c["after_restart"] == "/x.txt"), "{v}");
    // A changed secret is noticed although it is never shown.
    assert_eq!(aos.run(&["kernel", "stop"]).0, 0);
    assert_eq!(aos.run(&["kernel", "start"]).0, 0);
    let (_, out, _) = aos.run(&["config", "show"]);
    assert!(!out.contains("RESTART NEEDED") && out.contains("provider = \"script\""), "{out}");
    std::fs::write(
        aos.home().join("aos.toml"),
        "provider = \"script\"\nmodel = \"/x.txt\"\n[budgets]\nmax_steps = 9\n[providers.openai]\napi_key = \"sk-other\"\n",
    )
    .unwrap();
    let (_, out, _) = aos.run(&["config", "show"]);
    assert!(out.contains("RESTART NEEDED") && out.contains("a secret value"), "{out}");
    assert!(!out.contains("sk-other") && !out.contains("sk-hidden"), "{out}");
}

#[test]
fn a_missing_workspace_is_created_and_said_so() {
    let aos = Aos::new();
    let model = script(&aos, "w.txt", "[SYS_CALL::FS_WRITE] {\"path\": \"a.txt\", \"content\": \"x\"}\n---\n[SYS_CALL::SYS_EXIT] {}\n");
    let ws = aos.dir.path().join("new/nested/ws");
    let (code, out, err) = aos.run(&["run", "--provider", "script", "--model", &model, "--workspace", ws.to_str().unwrap(), "t"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains(&format!("created the workspace {}", ws.display())), "{err}");
    assert_eq!(std::fs::read_to_string(ws.join("a.txt")).unwrap(), "x");
    // An existing one is used quietly; a file is refused.
    let (code, _, err) = aos.run(&["run", "--provider", "script", "--model", &model, "--workspace", ws.to_str().unwrap(), "t"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("created the workspace"), "{err}");
    let file = aos.dir.path().join("plain-file");
    std::fs::write(&file, "").unwrap();
    let (code, _, err) = aos.run(&["run", "--provider", "script", "--model", &model, "--workspace", file.to_str().unwrap(), "t"]);
    assert_eq!(code, 1);
    assert!(err.contains("exists but is not a directory"), "{err}");
}

#[test]
fn provider_errors_say_what_is_wrong() {
    let aos = new_aos();
    // `run`: an unknown provider, named once, with every provider and the closest one.
    let (code, _, err) = aos.run(&["run", "--provider", "openia", "--model", "m", "t"]);
    assert_eq!(code, 1);
    assert_eq!(err.matches("openia").count(), 1, "{err}");
    assert!(err.contains("unknown provider `openia` (did you mean `openai`?)"), "{err}");
    assert!(err.contains("local, openai, gemini, anthropic, script"), "{err}");
    let (_, help, _) = aos.run(&["spawn", "--help"]);
    assert!(help.contains("local (the embedded offline model)"), "{help}");

    let _d = Daemon::start(&aos);
    // `spawn` without --model: the provider is the error, not the model.
    let (code, _, err) = aos.run(&["spawn", "--provider", "openia", "t"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown provider `openia` (did you mean `openai`?)") && !err.contains("no model"), "{err}");
    // Through the API too (the CLI checks first; the daemon checks again).
    let body = r#"{"task": "t", "provider": "gemeni"}"#;
    let (status, answer) = api_post(&aos, "/v1/spawn", body);
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("did you mean `gemini`?") && !answer.contains("no model"), "{answer}");
    // A model server's model name given to `local`.
    let (code, _, err) = aos.run(&["spawn", "--model", "llama3.2", "t"]);
    assert_eq!(code, 1);
    assert!(err.contains("`llama3.2` is not a local GGUF model file"), "{err}");
    assert!(err.contains("--provider openai --base-url http://127.0.0.1:11434/v1 --model llama3.2"), "{err}");
    assert!(!err.contains("fetch-model"), "{err}");
    let (code, _, err) = aos.run(&["spawn", "--model", "/no/such/model.gguf", "t"]);
    assert_eq!(code, 1);
    assert!(err.contains("there is no model file /no/such/model.gguf"), "{err}");
    assert!(ps_json(&aos, true).is_empty(), "no process was started");
    // Provider names are case-insensitive and shown in one spelling.
    let model = script(&aos, "exit.txt", "[SYS_CALL::SYS_EXIT] {}\n");
    let (code, pid, err) = aos.run(&["spawn", "--provider", "Script", "--model", &model, "t"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(aos.run(&["wait", pid.trim()]).0, 0);
    let (_, ps, _) = aos.run(&["ps", "--all"]);
    assert!(ps.contains("script/exit.txt") && !ps.contains("Script/"), "{ps}");
}

/// One POST on the control socket, with curl; returns (status, body).
fn api_post(aos: &Aos, path: &str, body: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(aos.home().join("aos.sock"))
        .args(["-H", "content-type: application/json", "-d", body])
        .arg(format!("http://aos{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// One GET on the control socket, with curl; returns the body.
fn api_get(aos: &Aos, path: &str) -> String {
    let out = Command::new("curl").args(["-s", "--unix-socket"]).arg(aos.home().join("aos.sock")).arg(format!("http://aos{path}")).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn grants_accept_only_documented_names() {
    let aos = new_aos();
    let ws = aos.ws().display().to_string();
    let model = script(&aos, "exit.txt", "[SYS_CALL::SYS_EXIT] {}\n");
    for (alias, right) in [("fs:write", "fs:rw"), ("fs:read", "fs:ro"), ("network", "net"), ("timer", "timers")] {
        for cmd in [
            vec!["run", "--provider", "script", "--model", &model, "--workspace", &ws, "--grant", alias, "t"],
            vec!["driver", "call", "fs", "FS_LIST", "{}", "--workspace", &ws, "--grant", alias],
        ] {
            let (code, _, err) = aos.run(&cmd);
            assert_eq!(code, 1, "{cmd:?}");
            assert!(err.contains(&format!("unknown capability `{alias}` (did you mean `{right}`?)")), "{cmd:?}: {err}");
        }
    }
    // The original AgentOS's syscall names stay accepted; a comma list works like AOS_GRANTS.
    let (code, _, err) = aos.run(&["run", "--provider", "script", "--model", &model, "--workspace", &ws, "--grant", "FS_READ", "t"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("capabilities: fs:ro"), "{err}");
    let (code, _, err) = aos.run(&["run", "--provider", "script", "--model", &model, "--workspace", &ws, "--grant", "fs:rw,net", "t"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("capabilities: fs:ro, fs:rw, net"), "{err}");
    // A driver that is not installed grants nothing: an error everywhere.
    let (code, _, err) = aos.run(&["run", "--provider", "script", "--model", &model, "--workspace", &ws, "--grant", "driver:nope", "t"]);
    assert_eq!(code, 1);
    assert!(err.contains("no driver `nope` is installed"), "{err}");
    let (code, _, err) = aos.run(&["driver", "call", "fs", "FS_LIST", "{}", "--workspace", &ws, "-g", "fs:ro,driver:nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no driver `nope` is installed"), "{err}");
    // A built-in driver is granted by its own capabilities, not `driver:NAME`.
    let (code, _, err) = aos.run(&["run", "--provider", "script", "--model", &model, "--workspace", &ws, "--grant", "fs:ro,driver:fs", "t"]);
    assert_eq!(code, 1);
    assert!(err.contains("`fs` is a built-in driver: `driver:fs` grants nothing; grant `fs:ro` or `fs:rw` instead"), "{err}");
    let (code, _, err) = aos.run(&["driver", "call", "fs", "FS_LIST", "{}", "--workspace", &ws, "-g", "driver:exec,fs:ro"]);
    assert_eq!(code, 1);
    assert!(err.contains("`exec` is a built-in driver: `driver:exec` grants nothing; grant `exec` instead"), "{err}");
    // `--help` lists the names.
    let (_, help, _) = aos.run(&["run", "--help"]);
    for name in ["fs:ro", "fs:rw", "net:HOST", "exec:net", "memory:shared/NAME", "timers", "spawn", "ipc", "webhook", "driver:NAME", "all"] {
        assert!(help.contains(name), "{name} in {help}");
    }
    let _d = Daemon::start(&aos);
    let (code, _, err) = aos.run(&["spawn", "--provider", "script", "--model", &model, "--grant", "driver:nope", "t"]);
    assert_eq!(code, 1);
    assert!(err.contains("no driver `nope` is installed"), "{err}");
    let (code, _, err) = aos.run(&["spawn", "--provider", "script", "--model", &model, "--grant", "driver:memory", "t"]);
    assert_eq!(code, 1);
    assert!(err.contains("`memory` is a built-in driver"), "{err}");
    let (code, _, err) = aos.run(&["spawn", "--provider", "script", "--model", &model, "--grant", "fs:write", "t"]);
    assert_eq!(code, 1);
    assert!(err.contains("did you mean `fs:rw`?"), "{err}");
    // SPAWN_AGENT is held to the same names (the model gets the spelling).
    let parent = script(
        &aos,
        "parent.txt",
        "[SYS_CALL::SPAWN_AGENT] {\"task\": \"c\", \"permissions\": [\"fs:write\"]}\n---\n[SYS_CALL::RECV_MSG] {}\n",
    );
    let pid = spawn(&aos, &parent, &["--grant", "spawn,ipc"]);
    wait_state(&aos, pid, "blocked_recv");
    let (_, logs, _) = aos.run(&["logs", &pid.to_string()]);
    assert!(logs.contains("unknown capability `fs:write` (did you mean `fs:rw`?)"), "{logs}");
}

#[test]
fn webhooks_are_listed_and_a_webhook_only_agent_waits_for_its_requests() {
    let aos = new_aos();
    std::fs::write(aos.home().join("aos.toml"), "[webhooks]\ntimeout_secs = 10\n").unwrap();
    let _d = Daemon::start(&aos);
    let model = script(
        &aos,
        "hook.txt",
        "[SYS_CALL::SYS_REGISTER_WEBHOOK] {\"path\": \"/ci/build\"}\n---\n[SYS_CALL::RECV_MSG] {}\n---\n\
         [SYS_CALL::SYS_WEBHOOK_REPLY] {\"request_id\": 1, \"body\": \"got it\"}\n---\n[SYS_CALL::RECV_MSG] {}\n",
    );
    // Only `webhook`: no `ipc`.
    let pid = spawn(&aos, &model, &["--grant", "webhook"]);
    wait_blocked_after(&aos, pid, 2);
    let (code, out, err) = aos.run(&["webhooks"]);
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&aos.run(&["kernel", "status", "--json"]).1).unwrap();
    let url = format!("{}/ci/build", status["webhooks"].as_str().unwrap());
    let row = out.lines().find(|l| l.starts_with("/ci/build")).unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains(&pid.to_string()) && row.contains(&url), "{out}");
    assert!(out.starts_with("PATH") && !out.contains("SECRET"), "{out}");
    let (_, logs, _) = aos.run(&["logs", "--json", &pid.to_string()]);
    let secret = logs
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["name"] == "SYS_REGISTER_WEBHOOK")
        .unwrap()["output"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!out.contains(&secret));
    let (_, out, _) = aos.run(&["webhooks", "--show-secret"]);
    assert!(out.contains("SECRET") && out.contains(&secret), "{out}");
    let list: Value = serde_json::from_str(&aos.run(&["webhooks", "--json"]).1).unwrap();
    assert_eq!(list[0]["pid"], pid);
    assert!(list[0].get("secret").is_none(), "{list}");

    // RECV_MSG without `ipc` is offered as "wait for events" and never reads the mailbox.
    let (code, _, err) = aos.run(&["send", "--msg", &pid.to_string(), "a message it must not read"]);
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(Duration::from_millis(300));
    wait_blocked_after(&aos, pid, 2);
    // A webhook request wakes it; it answers.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let [(tn, tv), (sn, sv)] = aos_kernel::webhook::sign(&secret, now, b"{}");
    let out = Command::new("curl")
        .args(["-s", "-H", &format!("{tn}: {tv}"), "-H", &format!("{sn}: {sv}"), "-d", "{}", &url])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got it");
    wait_blocked_after(&aos, pid, 4);
    let (_, logs, _) = aos.run(&["logs", &pid.to_string()]);
    assert!(logs.contains("webhook request #1"), "{logs}");
    assert!(!logs.contains("a message it must not read"), "the mailbox was read without `ipc`: {logs}");
    assert!(!logs.contains("denied"), "{logs}");
}

#[test]
fn json_output_filters_trees_and_several_pids() {
    let aos = new_aos();
    // Without a kernel.
    let (code, out, _) = aos.run(&["kernel", "status", "--json"]);
    assert_eq!(code, 1);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["running"], false, "{out}");
    let (code, out, _) = aos.run(&["kernel", "stop", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), serde_json::json!({"stopped": false, "running": false}));

    // The parent's model chooses the child's script: the operator allows
    // script files in the test directory.
    std::fs::write(
        aos.home().join("aos.toml"),
        format!("[spawn]\nmodels = [\"*\"]\nmodel_dir = {:?}\n", aos.dir.path().display().to_string()),
    )
    .unwrap();
    let _d = Daemon::start(&aos);
    let (code, out, _) = aos.run(&["kernel", "status", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["running"], true);
    // A parent (1) with a child (2), both waiting in RECV_MSG, and a reader of stdin (3).
    let child = script(&aos, "child.txt", "[SYS_CALL::RECV_MSG] {}\n---\n[SYS_CALL::SYS_EXIT] {\"code\": 4}\n");
    let parent = script(
        &aos,
        "parent.txt",
        &format!(
            "[SYS_CALL::SPAWN_AGENT] {{\"task\": \"child\", \"permissions\": [\"ipc\"], \"model\": {child:?}}}\n---\n[SYS_CALL::RECV_MSG] {{}}\n---\n[SYS_CALL::RECV_MSG] {{}}\n---\n[SYS_CALL::RECV_MSG] {{}}\n"
        ),
    );
    let reader = script(&aos, "reader.txt", "[SYS_CALL::SYS_READ_STDIN] {}\n---\n[SYS_CALL::SYS_EXIT] {\"code\": 5}\n");
    assert_eq!(spawn(&aos, &parent, &["--grant", "spawn,ipc"]), 1);
    wait_state(&aos, 2, "blocked_recv");
    wait_state(&aos, 1, "blocked_recv");
    assert_eq!(spawn(&aos, &reader, &[]), 3);
    wait_state(&aos, 3, "blocked_stdin");

    assert_eq!(aos.run(&["ps", "-q"]).1, "1\n2\n3\n");
    assert_eq!(aos.run(&["ps", "-q", "--status", "recv"]).1, "1\n2\n");
    assert_eq!(aos.run(&["ps", "-q", "--status", "stdin,recv", "--parent", "1"]).1, "2\n");
    let (code, _, err) = aos.run(&["ps", "--status", "sleping"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown status `sleping` (did you mean `sleeping`?)"), "{err}");
    let (_, tree, _) = aos.run(&["ps", "--tree"]);
    let lines: Vec<&str> = tree.lines().collect();
    assert!(lines[0].starts_with("PID") && lines[1].starts_with("1 ") && lines[2].starts_with("└─ 2 ") && lines[3].starts_with("3 "), "{tree}");

    // Several pids for send: each answered; a missing one fails the command.
    let (code, out, err) = aos.run(&["send", "--json", "--msg", "2", "99", "go"]);
    assert_eq!(code, 1, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0], serde_json::json!({"pid": 2, "sent": "message"}));
    assert!(v[1]["error"].as_str().unwrap().contains("no process with pid 99"), "{v}");
    let (code, out, _) = aos.run(&["wait", "--json", "2"]);
    assert_eq!(code, 4);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["pid"].as_u64(), v["status"].as_str(), v["code"].as_i64(), v["exit_code"].as_i64()), (Some(2), Some("exited"), Some(4), Some(4)), "{v}");
    assert_eq!(aos.run(&["ps", "-q", "--status", "exited"]).1, "2\n", "an ended state lists ended processes");

    // kill and send on an ended pid answer alike.
    let (kc, ko, ke) = aos.run(&["kill", "2"]);
    let (sc, so, se) = aos.run(&["send", "2", "x"]);
    assert_eq!((kc, ko.as_str()), (1, ""));
    assert_eq!((sc, so.as_str()), (1, ""));
    assert_eq!(ke, se, "kill and send differ on an ended pid");
    assert!(ke.contains("process 2 is not running (it exited with code 4)"), "{ke}");

    // Several pids for kill, with JSON: pids and what was killed.
    let (code, out, _) = aos.run(&["kill", "--json", "1", "3"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, serde_json::json!([{"pid": 1, "killed": [1]}, {"pid": 3, "killed": [3]}]));
    assert_eq!(aos.run(&["wait", "3"]).0, 137);
    let (code, out, _) = aos.run(&["kernel", "stop", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["stopped"], true, "{v}");
}

#[test]
fn logs_select_by_tail_time_and_stdout() {
    let aos = new_aos();
    let _d = Daemon::start(&aos);
    let model = script(
        &aos,
        "talk.txt",
        "[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"one\"}\n[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"two\"}\n---\n\
         [SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"three\"}\n---\n[SYS_CALL::SYS_EXIT] {\"code\": 0}\n",
    );
    let pid = spawn(&aos, &model, &[]).to_string();
    assert_eq!(aos.run(&["wait", &pid]).0, 0);
    let (_, all, _) = aos.run(&["logs", "--json", &pid]);
    let n = all.lines().count();
    assert!(n > 6, "{all}");
    let (_, out, _) = aos.run(&["logs", "--json", "--tail", "2", &pid]);
    assert_eq!(out.lines().collect::<Vec<_>>(), all.lines().skip(n - 2).collect::<Vec<_>>());
    assert_eq!(aos.run(&["logs", "--tail", "0", &pid]).1, "");
    assert_eq!(aos.run(&["logs", "--stdout", &pid]).1, "one\ntwo\nthree\n");
    assert_eq!(aos.run(&["logs", "--stdout", "--tail", "1", &pid]).1, "three\n");
    let (_, out, _) = aos.run(&["logs", "--stdout", "--timestamps", &pid]);
    for l in out.lines() {
        let (ts, _) = l.split_once(' ').unwrap();
        assert!(ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{l}");
    }
    assert_eq!(aos.run(&["logs", "--since", "1h", &pid]).1, aos.run(&["logs", &pid]).1);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(aos.run(&["logs", "--since", "1s", &pid]).1, "");
    let (code, _, err) = aos.run(&["logs", "--since", "soon", &pid]);
    assert_eq!(code, 2, "a usage error");
    assert!(err.contains("not a duration"), "{err}");
    // The daemon's own log is timestamped and has no colour codes.
    let log = std::fs::read_to_string(aos.home().join("logs/daemon.log")).unwrap();
    assert!(log.lines().any(|l| l.contains("listening on")), "{log}");
    for l in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(l.len() > 20 && l.as_bytes()[4] == b'-' && l.as_bytes()[10] == b'T', "untimestamped: {l}");
    }
    assert!(!log.contains('\u{1b}'), "ANSI codes in daemon.log: {log:?}");
}

#[test]
fn run_prints_the_answer_on_stdout_and_the_log_on_stderr() {
    let aos = Aos::new();
    let ws = aos.ws().display().to_string();
    let model = script(
        &aos,
        "answer.txt",
        "[SYS_CALL::FS_WRITE] {\"path\": \"a.txt\", \"content\": \"x\"}\n---\n\
         [SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"the answer is 42\"}\n---\n[SYS_CALL::SYS_EXIT] {\"code\": 0, \"result\": \"done\"}\n",
    );
    let (code, out, err) = aos.run(&["run", "--provider", "script", "--model", &model, "--workspace", &ws, "t"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "the answer is 42\ndone\n");
    assert!(err.contains("FS_WRITE#1") && err.contains("[1] stdout: the answer is 42") && err.contains("exited with code 0"), "{err}");
    // Not a terminal: no colour, whatever the log level.
    let o = aos.cmd().env("AOS_LOG", "debug").args(["run", "--provider", "script", "--model", &model, "--workspace", &ws, "t"]).output().unwrap();
    assert!(!o.stderr.contains(&0x1b) && !o.stdout.contains(&0x1b), "ANSI codes on a pipe");
}

#[test]
fn a_provider_that_never_answers_names_the_setting_to_raise() {
    // Accepts connections and reads, never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().take(8).flatten() {
            held.push(s);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let aos = Aos::new();
    std::fs::write(aos.home().join("aos.toml"), "[providers.openai]\ntimeout_secs = 1\nmax_retries = 0\n").unwrap();
    aos_tests::aos_bin(); // built before the clock starts
    let t0 = Instant::now();
    let (code, _, err) = aos
        .cmd()
        .env("OPENAI_API_KEY", "k")
        .args(["run", "--provider", "openai", "--base-url", &format!("http://{addr}/v1"), "--model", "m", "--no-grants", "t"])
        .output()
        .map(|o| (o.status.code().unwrap_or(-1), (), String::from_utf8_lossy(&o.stderr).into_owned()))
        .unwrap();
    assert_eq!(code, 1, "{err}");
    // Far below the default 120 s: `aos run` honours [providers.openai] timeout_secs.
    assert!(t0.elapsed() < Duration::from_secs(60), "took {:?}: {err}", t0.elapsed());
    assert!(err.contains("timed out after 1 s") && err.contains("`timeout_secs` under `[providers.openai]`"), "{err}");
}

/// Sandbox containers of `pid` under the kernel of `aos`.
fn containers_of(aos: &Aos, pid: u64) -> Vec<String> {
    sandbox_containers(&aos_sandbox::docker::kernel_label_for(&aos.home()), pid)
}

#[test]
fn ctrl_c_in_run_kills_the_agent_and_removes_its_container() {
    if !docker_ready("ctrl_c_in_run_kills_the_agent_and_removes_its_container") {
        return;
    }
    let aos = Aos::new();
    let ws = aos.ws().display().to_string();
    let model = script(&aos, "long.txt", "[SYS_CALL::EXEC_CMD] {\"cmd\": \"sleep 120\", \"timeout\": 300}\n---\n[SYS_CALL::SYS_EXIT] {}\n");
    let child = aos
        .cmd()
        .args(["run", "--provider", "script", "--model", &model, "--workspace", &ws, "--grant", "exec", "t"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while containers_of(&aos, 1).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(60), "the sandbox never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    unsafe_kill(child.id(), "INT");
    let out = child.wait_with_output().unwrap();
    let left = containers_of(&aos, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(left.is_empty(), "the container is still there after `aos run` exited: {left:?}\n{err}");
    assert!(err.contains("Ctrl-C: killing pid 1") && err.contains("sandbox containers are removed"), "{err}");
}

/// `kill -SIG pid` (the tests crate has no libc).
fn unsafe_kill(pid: u32, sig: &str) {
    let st = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap();
    assert!(st.success());
}

#[test]
fn ctrl_c_in_spawn_wait_says_the_agent_keeps_running() {
    let aos = new_aos();
    let _d = Daemon::start(&aos);
    let model = blocking_script(&aos);
    let mut child = aos
        .cmd()
        .args(["spawn", "--wait", "--provider", "script", "--model", &model, "t"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_state(&aos, 1, "blocked_recv");
    unsafe_kill(child.id(), "INT");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "spawn --wait did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("keeps running") && err.contains("`aos kill 1`"), "{err}");
    wait_state(&aos, 1, "blocked_recv");
    let _ = api_get(&aos, "/v1/status");
}

/// `docs/CONTROL_API.md` lists exactly the routes the daemon serves, with
/// their methods.
#[test]
fn the_control_api_doc_lists_every_route() {
    let root = aos_tests::repo_root();
    let server = std::fs::read_to_string(root.join("host/daemon/src/server.rs")).unwrap();
    let doc = std::fs::read_to_string(root.join("docs/CONTROL_API.md")).unwrap();
    let mut served = Vec::new();
    for part in server.split(".route(\"").skip(1) {
        let (path, rest) = part.split_once('"').unwrap();
        let method = rest.trim_start_matches([',', ' ']).split('(').next().unwrap().to_ascii_uppercase();
        served.push(format!("| {method} | `{path}` |"));
    }
    assert!(served.len() >= 13, "{served:?}");
    for r in &served {
        assert!(doc.contains(r.as_str()), "docs/CONTROL_API.md lacks the route {r}");
    }
    let documented: Vec<&str> = doc.lines().filter(|l| l.starts_with("| GET |") || l.starts_with("| POST |")).collect();
    for l in documented {
        assert!(served.iter().any(|r| l.starts_with(r.as_str())), "documented but not served: {l}");
    }
}

/// `aos run` without `--provider`/`--model` uses `aos.toml`'s, as `aos
/// spawn` does, and its `[budgets]`; the flags still win.
#[test]
fn run_uses_the_configured_provider_model_and_budgets() {
    let aos = Aos::new();
    let ws = aos.ws().display().to_string();
    let exit7 = script(&aos, "exit7.txt", "[SYS_CALL::SYS_WRITE_STDOUT] {\"text\": \"configured\"}\n---\n[SYS_CALL::SYS_EXIT] {\"code\": 7}\n");
    let exit3 = script(&aos, "exit3.txt", "[SYS_CALL::SYS_EXIT] {\"code\": 3}\n");
    std::fs::write(aos.home().join("aos.toml"), format!("provider = \"Script\"\nmodel = {exit7:?}\n")).unwrap();
    let (code, out, err) = aos.run(&["run", "--workspace", &ws, "t"]);
    assert_eq!(code, 7, "{err}");
    assert_eq!(out, "configured\n");
    assert!(err.contains("started pid 1 (script / "), "{err}");
    let (code, _, err) = aos.run(&["run", "--workspace", &ws, "--model", &exit3, "t"]);
    assert_eq!(code, 3, "{err}");
    // [budgets] max_steps = 1: the second model call is over budget.
    std::fs::write(aos.home().join("aos.toml"), format!("provider = \"script\"\nmodel = {exit7:?}\n[budgets]\nmax_steps = 1\n")).unwrap();
    let (code, _, err) = aos.run(&["run", "--workspace", &ws, "t"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("budget"), "{err}");
    assert_eq!(aos.run(&["run", "--workspace", &ws, "--max-steps", "5", "t"]).0, 7);
    // A provider that needs a model names where to set it.
    std::fs::write(aos.home().join("aos.toml"), "provider = \"gemini\"\n").unwrap();
    let (code, _, err) = aos.run(&["run", "--workspace", &ws, "t"]);
    assert_eq!(code, 1);
    assert!(err.contains("no model given for provider `gemini`"), "{err}");
}
