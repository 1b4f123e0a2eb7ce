//! `aos run` end to end: the kernel loop with scripted replies, the real
//! driver runtime, and the agent's exit code as the command's.

use aos_tests::Aos;

fn script(aos: &Aos, name: &str, text: &str) -> String {
    let p = aos.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn scripted_agent_writes_a_file_and_exits_with_its_code() {
    let aos = Aos::new();
    let model = script(&aos, "s.txt", concat!(
        "[SYS_CALL::FS_WRITE] {\"path\": \"haiku.txt\", \"content\": \"sea\"}\n---\n",
        "[SYS_CALL::SYS_EXIT] {\"code\": 3, \"result\": \"done\"}\n",
    ));
    let ws = aos.ws().display().to_string();
    let (code, out, err) = aos.run(&["run", "--provider", "script", "--model", &model, "--workspace", &ws, "write a haiku"]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert_eq!(std::fs::read_to_string(aos.ws().join("haiku.txt")).unwrap(), "sea");
    // The log goes to stderr, the answer (here the SYS_EXIT result) to stdout.
    assert!(err.contains("FS_WRITE#1"), "{err}");
    assert!(err.contains("exited with code 3: done"), "{err}");
    assert_eq!(out, "done\n");
    // The model's progress (the script provider reports it) is a status
    // line on a terminal only: nothing of it in pipes.
    assert!(!err.contains('\r') && !err.contains("evaluating prompt") && !err.contains("tok/s"), "{err:?}");
}

#[test]
fn errors_reach_the_model_and_a_corrected_call_runs() {
    let aos = Aos::new();
    let model = script(&aos, "s.txt", concat!(
        "[SYS_CALL::FS_WRITE] {\"path\": \"a.txt\"}\n---\n",
        "[SYS_CALL::FS_WRITE] {\"path\": \"a.txt\", \"content\": \"fixed\"}\n---\n",
        "[SYS_CALL::SYS_EXIT] {}\n",
    ));
    let ws = aos.ws().display().to_string();
    let (code, out, err) = aos.run(&["run", "--provider", "script", "--model", &model, "--workspace", &ws, "--json", "t"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let entries: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let error = entries.iter().find(|e| e["kind"] == "error" || e.get("error").is_some()).expect("an error entry");
    assert!(error.to_string().contains("content"), "{error}");
    assert_eq!(std::fs::read_to_string(aos.ws().join("a.txt")).unwrap(), "fixed");
}

#[test]
fn an_agent_without_grants_is_refused_and_fails_clearly() {
    let aos = Aos::new();
    let model = script(&aos, "s.txt", "[SYS_CALL::FS_WRITE] {\"path\": \"x\", \"content\": \"y\"}\n");
    let ws = aos.ws().display().to_string();
    let (code, out, err) = aos.run(&["run", "--provider", "script", "--model", &model, "--workspace", &ws, "--no-grants", "t"]);
    assert_ne!(code, 0);
    assert!(err.contains("denied") || err.contains("unknown syscall"), "{out}\n{err}");
    assert!(err.contains("script") && err.contains("1 repl"), "the script ran out; the reason is shown: {err}");
    assert!(!aos.ws().join("x").exists());
}

/// Without `--grant`, an agent gets the safe default (its workspace, timers,
/// ipc): no network, no commands, no children; `--grant all` is explicit.
#[test]
fn the_default_grant_reaches_neither_the_network_nor_a_shell() {
    let aos = Aos::new();
    let model = script(&aos, "s.txt", concat!(
        "[SYS_CALL::NET_FETCH] {\"url\": \"http://example.com/\"}\n",
        "[SYS_CALL::EXEC_CMD] {\"cmd\": \"id\"}\n",
        "[SYS_CALL::SPAWN_AGENT] {\"task\": \"t\", \"permissions\": []}\n",
        "[SYS_CALL::FS_WRITE] {\"path\": \"ok.txt\", \"content\": \"y\"}\n---\n",
        "[SYS_CALL::SYS_EXIT] {}\n",
    ));
    let ws = aos.ws().display().to_string();
    let (code, out, err) = aos.run(&["run", "--provider", "script", "--model", &model, "--workspace", &ws, "t"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("capabilities: fs:ro, fs:rw, timers, ipc"), "the start line shows the granted set: {err}");
    for (call, cap) in [("NET_FETCH", "`net"), ("EXEC_CMD", "`exec`"), ("SPAWN_AGENT", "`spawn`")] {
        assert!(err.contains(&format!("ERROR denied: capability {cap}")), "{call}: {err}");
        assert!(err.contains(&format!("not granted (needed by {call})")), "{call}: {err}");
    }
    assert_eq!(std::fs::read_to_string(aos.ws().join("ok.txt")).unwrap(), "y");
    // The broad set is one explicit flag away, and the start line says what it holds.
    let model = script(&aos, "e.txt", "[SYS_CALL::SYS_EXIT] {}\n");
    let (code, _, err) = aos.run(&["run", "--provider", "script", "--model", &model, "--workspace", &ws, "--grant", "all", "t"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("exec:net") && err.contains(" net,") && err.contains("spawn"), "{err}");
}

/// `aos run` builds its kernel exactly like the daemon (one composition
/// root): the driver settings of aos.toml reach its drivers (it used to
/// build its runtime from defaults and ignore `[drivers.*]`, `[limits]`,
/// `[net]` and `[providers.*]`).
#[test]
fn run_reads_the_daemons_configuration() {
    let aos = Aos::new();
    std::fs::write(aos.home().join("aos.toml"), "[drivers.fs]\nread_limit = 4\n").unwrap();
    std::fs::write(aos.ws().join("a.txt"), "0123456789").unwrap();
    let model = script(&aos, "s.txt", concat!(
        "[SYS_CALL::FS_READ] {\"path\": \"a.txt\"}\n---\n",
        "[SYS_CALL::SYS_EXIT] {}\n",
    ));
    let ws = aos.ws().display().to_string();
    let (code, out, err) = aos.run(&["run", "--provider", "script", "--model", &model, "--workspace", &ws, "--grant", "FS_READ", "t"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // The log goes to stderr (stdout is the agent's answer).
    assert!(err.contains("\"content\":\"0123\"") && err.contains("read limit 4 bytes"), "{err}");
}

#[test]
fn missing_provider_key_is_reported_with_the_variable_name() {
    let aos = Aos::new();
    let (code, _, err) = aos
        .cmd()
        .env_remove("GEMINI_API_KEY")
        .args(["run", "--provider", "gemini", "--model", "gemini-1.5-flash", "hello"])
        .output()
        .map(|o| (o.status.code().unwrap_or(-1), String::new(), String::from_utf8_lossy(&o.stderr).into_owned()))
        .unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("GEMINI_API_KEY"), "{err}");
}

/// Where the `local` provider looks for its model (`$AOS_MODEL_DIR` or
/// `~/.cache/aos/models`, as `aos_llm_local::default_model_dir`).
pub(crate) fn local_model() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("AOS_MODEL_DIR")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/aos/models"));
    let p = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.is_file() {
        return Some(p);
    }
    aos_tests::skip(
        &aos_test_support::current_test_or("the local-model demo"),
        &format!("the local model is not at {}; run scripts/fetch-model.sh", p.display()),
    );
    None
}

/// The demo task on the embedded offline model (greedy decoding, so the run
/// is deterministic): the agent writes the haiku to haiku.txt, then exits.
#[test]
fn local_model_writes_the_haiku_and_exits() {
    if local_model().is_none() {
        return;
    }
    let aos = Aos::new();
    let ws = aos.ws().display().to_string();
    let (code, out, err) = aos.run(&[
        "run", "--workspace", &ws, "--grant", "fs:rw",
        "write a haiku about the sea to haiku.txt, then exit",
    ]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let haiku = std::fs::read_to_string(aos.ws().join("haiku.txt")).unwrap_or_else(|e| panic!("no haiku.txt ({e}):\n{out}\n{err}"));
    assert!(!haiku.trim().is_empty(), "empty haiku:\n{out}");
    assert!(err.contains("FS_WRITE#1"), "the first call is FS_WRITE:\n{err}");
    // The plan's second clause ("exit") comes right after the write succeeded.
    assert!(err.contains("SYS_EXIT#2"), "the agent exits by itself right after writing:\n{out}\n{err}");
}

/// Issue 12 class 7: every `aos run` in a home is pid 1; the second run
/// gets a new workspace and cannot read what the first one left.
#[test]
fn a_second_run_in_the_same_home_gets_a_new_workspace() {
    let aos = Aos::new();
    let writer = script(&aos, "w.txt", concat!(
        "[SYS_CALL::FS_WRITE] {\"path\": \"secret.txt\", \"content\": \"hunter2\"}\n---\n",
        "[SYS_CALL::SYS_EXIT] {}\n",
    ));
    let (code, stdout, out) = aos.run(&["run", "--provider", "script", "--model", &writer, "--grant", "fs:rw", "t"]);
    assert_eq!(code, 0, "{stdout}\n{out}");
    let reader = script(&aos, "r.txt", concat!(
        "[SYS_CALL::FS_READ] {\"path\": \"secret.txt\"}\n---\n",
        "[SYS_CALL::SYS_EXIT] {}\n",
    ));
    let (code, stdout, out) = aos.run(&["run", "--provider", "script", "--model", &reader, "--grant", "fs:ro", "t"]);
    assert_eq!(code, 0, "{stdout}\n{out}");
    assert!(out.contains("FS_READ#1") && !out.contains("hunter2"), "{out}");
    let workspaces: Vec<_> = std::fs::read_dir(aos.home().join("workspaces")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(workspaces.len(), 2, "{workspaces:?}");
}

/// Issue 12 class 3: the model cannot make the kernel read a host file as a
/// child's script; a file in the operator's `[spawn] model_dir` is fine.
#[test]
fn a_model_cannot_choose_a_host_file_as_a_childs_model() {
    let aos = Aos::new();
    let model = script(&aos, "s.txt", concat!(
        "[SYS_CALL::SPAWN_AGENT] {\"task\": \"t\", \"permissions\": [], \"provider\": \"script\", \"model\": \"/etc/shadow\"}\n---\n",
        "[SYS_CALL::SPAWN_AGENT] {\"task\": \"t\", \"permissions\": [], \"model\": \"child.txt\"}\n---\n",
        "[SYS_CALL::SYS_EXIT] {}\n",
    ));
    let (code, stdout, out) = aos.run(&["run", "--provider", "script", "--model", &model, "--grant", "spawn", "t"]);
    assert_eq!(code, 0, "{stdout}\n{out}");
    assert!(out.contains("model `/etc/shadow` of provider `script` is not allowed for a child"), "{out}");
    assert!(out.contains("model `child.txt` of provider `script` is not allowed for a child"), "{out}");
    assert!(!out.contains("root:"), "{out}");

    std::fs::create_dir_all(aos.home().join("models")).unwrap();
    std::fs::write(aos.home().join("models/child.txt"), "[SYS_CALL::SYS_EXIT] {\"result\": \"child ran\"}\n").unwrap();
    std::fs::write(aos.home().join("aos.toml"), "[spawn]\nmodels = [\"*\"]\nmodel_dir = \"models\"\n").unwrap();
    let (code, stdout, out) = aos.run(&["run", "--provider", "script", "--model", &model, "--grant", "spawn", "t"]);
    assert_eq!(code, 0, "{stdout}\n{out}");
    assert!(out.contains("model file `/etc/shadow` cannot be used: it is outside the model directory"), "{out}");
    assert!(out.contains("\"pid\":2"), "{out}");
    assert!(!out.contains("root:"), "{out}");
}
