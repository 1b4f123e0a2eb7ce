//! Adversarial tests of issue 12's classes 7, 4 and 3: state reused across
//! runs (workspaces), writes into unrelated process trees (`pipe_to`,
//! `SEND_MSG`), and host resources chosen by a model (`SPAWN_AGENT`'s
//! `provider` and `model`). Each attack is a scripted model reply.

use crate::support::*;

/// Class 7: every `aos run` in a home starts at pid 1; the second run's
/// pid 1 gets a new, empty workspace and cannot read the first one's files.
#[tokio::test]
async fn a_later_run_with_the_same_pid_gets_a_new_workspace() {
    let h = harness().await;
    let first = h
        .spawn(
            "keep a secret",
            &[r#"[SYS_CALL::FS_WRITE] {"path": "secret.txt", "content": "hunter2"} [SYS_CALL::SYS_EXIT] {}"#],
            &["fs:rw"],
        )
        .await;
    h.wait(first).await;
    let ws1 = h.kernel.info(first).unwrap().workspace;
    assert_eq!(std::fs::read_to_string(ws1.join("secret.txt")).unwrap(), "hunter2");

    let h = h.next_run().await;
    let second = h
        .spawn("steal it", &[r#"[SYS_CALL::FS_READ] {"path": "secret.txt"}"#, r#"[SYS_CALL::SYS_EXIT] {}"#], &["fs:ro"])
        .await;
    assert_eq!(second, first, "a new run starts at the same pid");
    h.wait(second).await;
    let ws2 = h.kernel.info(second).unwrap().workspace;
    assert_ne!(ws1, ws2);
    let seen = h.seen(second, 1);
    assert!(seen.contains("[ERROR FS_READ#1] not found"), "{seen}");
    assert!(!seen.contains("hunter2"), "{seen}");
}

/// Class 4: a process cannot write into the stdin (`pipe_to`) or mailbox
/// (`SEND_MSG`) of a process of another tree; within its own tree it can;
/// the operator (`aos send`, the control API: `Kernel::send_stdin`,
/// `Kernel::send_message`) reaches every process.
#[tokio::test]
async fn no_writes_into_another_process_tree() {
    let h = harness().await;
    let victim = h
        .spawn(
            "wait for input",
            &[r#"[SYS_CALL::SYS_READ_STDIN] {}"#, r#"[SYS_CALL::RECV_MSG] {}"#, r#"[SYS_CALL::SYS_EXIT] {}"#],
            &["ipc"],
        )
        .await;
    h.wait_status(victim, "BlockedStdin").await;

    // Holding only `spawn`: no `pipe_to` at all.
    let a = h
        .spawn(
            "inject",
            &[
                &format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "say hi", "permissions": [], "pipe_to": {victim}}}"#),
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
            &["spawn"],
        )
        .await;
    h.wait(a).await;
    let s = h.seen(a, 1);
    assert!(s.contains("[ERROR SPAWN_AGENT#1] denied: capability `ipc` not granted (needed by SPAWN_AGENT `pipe_to`)"), "{s}");

    // Holding `spawn` and `ipc`: not into another tree; within its own, yes.
    let child = h.script(
        "child",
        &[
            r#"[SYS_CALL::SEND_MSG] {"to_pid": 3, "content": "hi parent"} [SYS_CALL::SYS_WRITE_STDOUT] {"text": "piped"}"#,
            r#"[SYS_CALL::SYS_EXIT] {}"#,
        ],
    );
    let b_model = h.script(
        "b",
        &[
            &format!(
                r#"[SYS_CALL::SPAWN_AGENT] {{"task": "say hi", "permissions": [], "pipe_to": {victim}}} [SYS_CALL::SEND_MSG] {{"to_pid": {victim}, "content": "injected"}}"#
            ),
            &format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "say hi", "model": "{child}", "permissions": ["ipc"], "pipe_to": 3}}"#),
            r#"[SYS_CALL::RECV_MSG] {"timeout": 5}"#,
            r#"[SYS_CALL::RECV_MSG] {"timeout": 5}"#,
            r#"[SYS_CALL::SYS_EXIT] {}"#,
        ],
    );
    let b = h.kernel.spawn(h.req("inject", &b_model, &["spawn", "ipc"])).await.unwrap();
    assert_eq!(b, 3);
    h.wait(b).await;
    let s = h.seen(b, 1);
    let rule = "is not in your process tree (root 3); a process may only write to the stdin or mailbox of processes descending from its own root, unless the operator grants `ipc:any`";
    assert!(s.contains(&format!("[ERROR SPAWN_AGENT#1] denied: SPAWN_AGENT `pipe_to`: process {victim} {rule}")), "{s}");
    assert!(s.contains(&format!("[ERROR SEND_MSG#2] denied: SEND_MSG: process {victim} {rule}")), "{s}");
    assert!(h.seen(b, 2).contains("[RESULT SPAWN_AGENT#3] {\"pid\":4}"), "{}", h.seen(b, 2));
    h.wait(4).await;
    let c = h.seen(4, 1);
    assert!(c.contains("[RESULT SEND_MSG#1] {\"delivered\":true}") && c.contains("\"piped_to\":3"), "{c}");

    // The victim got nothing; the operator reaches it.
    assert_eq!(format!("{:?}", h.kernel.info(victim).unwrap().status), "BlockedStdin");
    h.kernel.send_stdin(victim, "from the operator").unwrap();
    h.kernel.send_message(victim, "operator message").unwrap();
    h.wait(victim).await;
    let v = format!("{}\n{}", h.seen(victim, 1), h.seen(victim, 2));
    assert!(v.contains("from the operator") && v.contains("operator message"), "{v}");
    assert!(!v.contains("injected") && !v.contains("\"text\":\"piped\""), "{v}");
}

/// Class 4: `ipc:any`, granted explicitly by the operator (never by `all`),
/// reaches other trees.
#[tokio::test]
async fn ipc_any_is_explicit_and_reaches_other_trees() {
    let h = harness().await;
    assert!(!h.kernel.parse_grants(&["all"]).unwrap().iter().any(|c| c.to_string() == "ipc:any"));
    let victim = h.spawn("wait", &[r#"[SYS_CALL::RECV_MSG] {}"#, r#"[SYS_CALL::SYS_EXIT] {}"#], &["ipc"]).await;
    let broad = h
        .spawn("send", &[&format!(r#"[SYS_CALL::SEND_MSG] {{"to_pid": {victim}, "content": "hello"}}"#), r#"[SYS_CALL::SYS_EXIT] {}"#], &["all"])
        .await;
    h.wait(broad).await;
    assert!(h.seen(broad, 1).contains("[ERROR SEND_MSG#1] denied"), "{}", h.seen(broad, 1));
    let any = h
        .spawn("send", &[&format!(r#"[SYS_CALL::SEND_MSG] {{"to_pid": {victim}, "content": "hello"}}"#), r#"[SYS_CALL::SYS_EXIT] {}"#], &["ipc:any"])
        .await;
    h.wait(any).await;
    assert!(h.seen(any, 1).contains("[RESULT SEND_MSG#1] {\"delivered\":true}"), "{}", h.seen(any, 1));
    h.wait(victim).await;
    assert!(h.seen(victim, 1).contains("hello"));
}

/// Runs a parent whose one reply is `calls`, then exits; returns the
/// parent's view of the results.
async fn spawn_attempts(h: &Harness, provider: &str, calls: &[String], workspace: Option<std::path::PathBuf>) -> String {
    let reply = calls.join(" ");
    let model = h.script(&format!("p{}", rand_id()), &[&reply, r#"[SYS_CALL::SYS_EXIT] {}"#]);
    let mut req = h.req("spawn", &model, &["spawn"]);
    req.provider = provider.into();
    req.workspace = workspace;
    let pid = h.kernel.spawn(req).await.unwrap();
    h.wait(pid).await;
    h.seen(pid, 1)
}

fn spawn_call(extra: &str) -> String {
    format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "t", "permissions": []{extra}}}"#)
}

/// Class 3: a model picks only among the providers and models the operator
/// allowed; `script` never.
#[tokio::test]
async fn a_model_chooses_only_allowed_providers_and_models() {
    let h = harness_with(|c| {
        c.spawn.providers = vec!["script".into()];
        c.spawn.models = vec!["ok.json".into(), "/etc/shadow".into()];
    })
    .await;
    let ok = h.script("ok", &[r#"[SYS_CALL::SYS_EXIT] {"result": "child ran"}"#]);
    let s = spawn_attempts(
        &h,
        "mock",
        &[
            spawn_call(r#", "provider": "script", "model": "/etc/shadow""#),
            spawn_call(r#", "provider": "local", "model": "/tmp/evil.gguf""#),
            spawn_call(r#", "model": "gpt-9""#),
            spawn_call(r#", "model": "ok.json""#),
        ],
        None,
    )
    .await;
    assert!(s.contains("[ERROR SPAWN_AGENT#1] denied: SPAWN_AGENT: a model cannot choose the `script` provider"), "{s}");
    assert!(s.contains("[ERROR SPAWN_AGENT#2] denied: SPAWN_AGENT: provider `local` is not allowed for a child: keep your own provider (`mock`), or the operator must list it in `[spawn] providers` in aos.toml (now: script)"), "{s}");
    assert!(s.contains("[ERROR SPAWN_AGENT#3] denied: SPAWN_AGENT: model `gpt-9` of provider `mock` is not allowed for a child"), "{s}");
    assert!(s.contains("`[spawn] models` in aos.toml (now: ok.json, /etc/shadow)"), "{s}");
    assert!(s.contains("[RESULT SPAWN_AGENT#4] {\"pid\":2}"), "{s}");
    assert_eq!(h.kernel.ps().len(), 2, "no other child started");
    assert_eq!(h.wait(2).await, aos_kernel::ExitStatus::Exited { code: 0, result: Some("child ran".into()) });
    assert_eq!(std::path::Path::new(&h.kernel.info(2).unwrap().model), std::path::Path::new(&ok).canonicalize().unwrap());

    // By default a model keeps its own provider and model, nothing else.
    let h = harness_with(|c| c.spawn = aos_kernel::SpawnPolicy::default()).await;
    let s = spawn_attempts(&h, "script", &[spawn_call(r#", "model": "/etc/shadow""#), spawn_call("")], None).await;
    assert!(s.contains("[ERROR SPAWN_AGENT#1] denied: SPAWN_AGENT: model `/etc/shadow` of provider `script` is not allowed for a child"), "{s}");
    assert!(s.contains("(now: none)"), "{s}");
    assert!(s.contains("[RESULT SPAWN_AGENT#2] {\"pid\":2}"), "its own provider and model: {s}");
}

/// Class 3: a model file chosen by a model is a regular file inside the
/// operator's model directory, reached without symlinks, outside every
/// workspace, size-capped — never a device, a FIFO, a file elsewhere.
#[tokio::test]
async fn a_model_file_chosen_by_a_model_is_confined() {
    let h = harness_with(|c| c.spawn.max_model_file_bytes = 4096).await;
    let home = h.dir.path().to_path_buf();
    let m = home.join("m");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("ok.json"), r#"["[SYS_CALL::SYS_EXIT] {}"]"#).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(m.join("fifo.json")).status().unwrap().success());
    std::os::unix::fs::symlink("/etc/passwd", m.join("link.json")).unwrap();
    std::os::unix::fs::symlink("/etc", m.join("etc")).unwrap();
    std::fs::write(m.join("big.json"), format!("[{:?}]", "x".repeat(8000))).unwrap();
    let ws = home.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("planted.json"), r#"["[SYS_CALL::SYS_EXIT] {}"]"#).unwrap();
    let other = home.join("workspaces").join("9-1");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("planted.json"), r#"["[SYS_CALL::SYS_EXIT] {}"]"#).unwrap();
    let attempts = [
        ("/etc/shadow", "it is outside the model directory"),
        ("/dev/zero", "it is outside the model directory"),
        ("m/fifo.json", "fifo.json is not a regular file"),
        ("m/link.json", "link.json is a symlink"),
        ("m/etc/passwd", "etc is a symlink"),
        ("m/../../escape.json", "it leaves the model directory"),
        ("m/big.json", "big.json is 8004 bytes, more than the limit"),
        ("ws/planted.json", "planted.json is inside a workspace"),
        ("workspaces/9-1/planted.json", "planted.json is inside a workspace"),
    ];
    let calls: Vec<String> = attempts.iter().map(|(model, _)| spawn_call(&format!(r#", "model": "{model}""#))).collect();
    let s = spawn_attempts(&h, "script", &calls, Some(ws.clone())).await;
    for (i, (model, why)) in attempts.iter().enumerate() {
        let want = format!("[ERROR SPAWN_AGENT#{}] denied: SPAWN_AGENT: model file `{model}` cannot be used: ", i + 1);
        let line = s.lines().find(|l| l.contains(&want)).unwrap_or_else(|| panic!("{model}: {s}"));
        assert!(line.contains(why) && line.contains("inside `[spawn] model_dir`"), "{model}: {line}");
    }
    assert_eq!(h.kernel.ps().len(), 1, "no child started");
    let s = spawn_attempts(&h, "script", &[spawn_call(r#", "model": "m/ok.json""#)], None).await;
    assert!(s.contains("[RESULT SPAWN_AGENT#1] {\"pid\":3}"), "{s}");

    // Without a model directory, no file can be chosen.
    let h = harness_with(|c| c.spawn.model_dir = None).await;
    let s = spawn_attempts(&h, "script", &[spawn_call(r#", "model": "/etc/shadow""#)], None).await;
    assert!(s.contains("model `/etc/shadow` is a file of provider `script`: a model may only choose files in the operator's model directory, `[spawn] model_dir` in aos.toml, which is not set"), "{s}");
}

/// Class 4, other ways in: a process cannot answer a webhook request that
/// was delivered to a process of another tree.
#[tokio::test]
async fn a_webhook_request_is_answered_only_by_its_process() {
    let h = harness().await;
    let owner = h
        .spawn(
            "serve",
            &[
                r#"[SYS_CALL::SYS_REGISTER_WEBHOOK] {"path": "/hook"}"#,
                r#"[SYS_CALL::RECV_MSG] {}"#,
                r#"[SYS_CALL::RECV_MSG] {"timeout": 5}"#,
                r#"[SYS_CALL::SYS_WEBHOOK_REPLY] {"request_id": 1, "body": "from the owner"}"#,
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
            &["webhook", "ipc"],
        )
        .await;
    h.wait_status(owner, "BlockedRecv").await;
    let secret = h
        .kernel
        .logs(owner)
        .unwrap()
        .into_iter()
        .find_map(|e| match e.entry {
            aos_kernel::Entry::Result { output, .. } => output["secret"].as_str().map(str::to_string),
            _ => None,
        })
        .unwrap();
    let k = h.kernel.clone();
    let call = tokio::spawn(async move {
        let req = aos_kernel::WebhookRequest {
            method: "POST".into(),
            path: "/hook".into(),
            headers: aos_kernel::webhook::sign(&secret, aos_kernel::now_ms() / 1000, b"x").to_vec(),
            body: b"x".to_vec(),
        };
        k.webhook_deliver(req, std::time::Duration::from_secs(20)).await
    });
    // The request is pending once the owner got its event.
    for _ in 0..2000 {
        if h.kernel.logs(owner).unwrap().iter().any(|e| matches!(e.entry, aos_kernel::Entry::Event { .. })) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let intruder = h
        .spawn(
            "answer it",
            &[r#"[SYS_CALL::SYS_WEBHOOK_REPLY] {"request_id": 1, "body": "forged"}"#, r#"[SYS_CALL::SYS_EXIT] {}"#],
            &["webhook"],
        )
        .await;
    h.wait(intruder).await;
    let s = h.seen(intruder, 1);
    assert!(s.contains("[ERROR SYS_WEBHOOK_REPLY#1] not found: webhook request #1 was delivered to another process"), "{s}");
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.body, "from the owner");
}
