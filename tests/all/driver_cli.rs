//! `aos driver …` end to end: one syscall through the real stack without an
//! LLM, and the example third-party driver built, inspected, installed,
//! granted, called and removed.

use aos_tests::Aos;
use serde_json::Value;

fn example(name: &str) -> String {
    aos_runtime::example_driver_path(name).display().to_string()
}

#[test]
fn driver_call_reads_and_writes_through_the_runtime() {
    let aos = Aos::new();
    let ws = aos.ws().display().to_string();
    let (code, out, err) = aos.run(&[
        "driver", "call", "fs", "FS_WRITE", r#"{"path":"notes/a.txt","content":"hello"}"#,
        "--grant", "fs:rw", "--workspace", &ws,
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["bytes_written"], 5);
    assert_eq!(std::fs::read_to_string(aos.ws().join("notes/a.txt")).unwrap(), "hello");

    let (code, out, _) = aos.run(&["driver", "call", "fs", "FS_READ", r#"{"path":"notes/a.txt"}"#, "-g", "fs:ro"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["content"], "hello");

    // Read cap through configuration.
    let (code, out, _) = aos.run(&[
        "driver", "call", "fs", "FS_READ", r#"{"path":"notes/a.txt"}"#, "-g", "fs:ro", "--set", "fs.read_limit=2",
    ]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["content"], "he");
    assert!(v["notice"].as_str().unwrap().contains("truncated"));
}

/// Runs `aos ARGS` and kills it after `limit`: `None` if it did not end in time.
fn run_within(aos: &Aos, args: &[&str], limit: std::time::Duration) -> Option<(i32, String, String)> {
    use std::io::Read;
    let t = std::time::Instant::now();
    let mut child = aos
        .cmd()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let (mut out, mut err) = (String::new(), String::new());
            child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return Some((st.code().unwrap_or(-1), out, err));
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A FIFO in the workspace is refused at once by FS_READ and FS_WRITE (a
/// read of it would otherwise wait for a writer forever) and listed as a
/// `fifo`.
#[test]
fn driver_call_refuses_fifos_without_blocking() {
    let aos = Aos::new();
    let st = std::process::Command::new("mkfifo").arg(aos.ws().join("pipe")).status().unwrap();
    assert!(st.success());
    // Compile the drivers first (untimed: a cold start compiles every one).
    let (code, _, err) = aos.run(&["driver", "ls"]);
    assert_eq!(code, 0, "{err}");
    let limit = std::time::Duration::from_secs(30);
    for (call, args, grant) in [
        ("FS_READ", r#"{"path":"pipe"}"#, "fs:ro"),
        ("FS_WRITE", r#"{"path":"pipe","content":"x"}"#, "fs:rw"),
        ("FS_WRITE", r#"{"path":"pipe","content":"x","append":true}"#, "fs:rw"),
    ] {
        let (code, _, err) = run_within(&aos, &["driver", "call", "fs", call, args, "-g", grant], limit)
            .unwrap_or_else(|| panic!("`aos driver call fs {call}` on a FIFO did not return"));
        assert_eq!(code, 1, "{call}: {err}");
        assert!(err.contains("FIFO") && err.contains("regular file"), "{call}: {err}");
    }
    let (code, out, err) =
        run_within(&aos, &["driver", "call", "fs", "FS_LIST", "{}", "-g", "fs:ro"], limit).expect("FS_LIST returns");
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["entries"][0]["name"], "pipe");
    assert_eq!(v["entries"][0]["kind"], "fifo");
}

#[test]
fn driver_call_errors_are_clear_and_exit_non_zero() {
    let aos = Aos::new();
    let (code, _, err) = aos.run(&["driver", "call", "fs", "FS_READ", r#"{"path":"x"}"#]);
    assert_eq!(code, 1);
    assert!(err.contains("denied: capability `fs:ro` not granted (needed by FS_READ)"), "{err}");
    assert!(err.contains("--grant"), "{err}");

    let (code, _, err) = aos.run(&["driver", "call", "fs", "FS_WRITE", r#"{"path":"x","content":"y"}"#, "-g", "fs:ro"]);
    assert_eq!(code, 1);
    assert!(err.contains("capability `fs:rw` not granted"), "{err}");

    let (code, _, err) = aos.run(&["driver", "call", "fs", "FS_READ", "{not json", "-g", "fs:ro"]);
    assert_eq!(code, 1);
    assert!(err.contains("not valid JSON"), "{err}");

    let (code, _, err) = aos.run(&["driver", "call", "fs", "NOPE", "{}"]);
    assert_eq!(code, 1);
    assert!(err.contains("no driver offers `NOPE`"), "{err}");

    let (code, _, err) = aos.run(&["driver", "call", "timers", "FS_READ", "{}"]);
    assert_eq!(code, 1);
    assert!(err.contains("offered by driver `fs`"), "{err}");

    let (code, _, err) = aos.run(&["driver", "call", "fs", "FS_READ", r#"{"path":"../../etc/passwd"}"#, "-g", "fs:ro"]);
    assert_eq!(code, 1);
    assert!(err.contains("denied") && err.contains("/workspace"), "{err}");

    let (code, _, err) = aos.run(&["driver", "call", "fs", "FS_READ", "{}", "-g", "fs:rx"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown capability `fs:rx`"), "{err}");
}

#[test]
fn example_driver_is_built_inspected_installed_granted_and_called() {
    let aos = Aos::new();
    let file = example("wordcount");
    assert!(std::path::Path::new(&file).exists(), "the example driver was built: {file}");

    let (code, out, err) = aos.run(&["driver", "inspect", &file, "--json"]);
    assert_eq!(code, 0, "{err}");
    let info: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["name"], "wordcount");
    assert_eq!(info["requires"], serde_json::json!(["driver:wordcount"]));
    assert_eq!(info["syscalls"][0]["name"], "TEXT_STATS");
    assert_eq!(info["syscalls"][0]["args_schema"]["required"], serde_json::json!(["text"]));

    // Not installed yet.
    let (code, _, err) = aos.run(&["driver", "call", "wordcount", "TEXT_STATS", r#"{"text":"a"}"#]);
    assert_eq!(code, 1);
    assert!(err.contains("no driver offers `TEXT_STATS`"), "{err}");

    let (code, out, err) = aos.run(&["driver", "install", &file]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("installed driver `wordcount`"), "{out}");
    assert!(aos.home().join("drivers/wordcount.wasm").exists());

    let (code, out, _) = aos.run(&["driver", "ls", "--json"]);
    assert_eq!(code, 0);
    let names: Vec<String> = serde_json::from_str::<Vec<Value>>(&out)
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.starts_with(&["fs".to_string(), "timers".to_string()]), "{names:?}");
    assert_eq!(names.last().map(String::as_str), Some("wordcount"), "{names:?}");

    // Without its grant the driver is not usable, even with every built-in right.
    let (code, _, err) = aos.run(&["driver", "call", "wordcount", "TEXT_STATS", r#"{"text":"a"}"#, "-g", "all"]);
    assert_eq!(code, 1);
    assert!(err.contains("capability `driver:wordcount` not granted"), "{err}");

    let (code, out, err) = aos.run(&[
        "driver", "call", "wordcount", "TEXT_STATS", r#"{"text":"to be or not to be","top":1}"#,
        "-g", "driver:wordcount",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["words"], 6);
    assert_eq!(v["top_words"], serde_json::json!([{"word": "be", "count": 2}]));

    let (code, _, err) = aos.run(&["driver", "call", "wordcount", "TEXT_STATS", r#"{"txt":"a"}"#, "-g", "driver:wordcount"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid arguments") && err.contains("unknown field `txt`"), "{err}");

    // Installing it again, or under another name (its syscall names clash), is refused.
    let (code, _, err) = aos.run(&["driver", "install", &file]);
    assert_eq!(code, 1);
    assert!(err.contains("already installed"), "{err}");
    let (code, _, err) = aos.run(&["driver", "install", &file, "--name", "wc2"]);
    assert_eq!(code, 1);
    assert!(err.contains("`TEXT_STATS`") && err.contains("already offers"), "{err}");
    // Built-in names are reserved.
    let (code, _, err) = aos.run(&["driver", "install", &file, "--name", "fs"]);
    assert_eq!(code, 1);
    assert!(err.contains("built-in"), "{err}");

    let (code, _, _) = aos.run(&["driver", "remove", "wordcount"]);
    assert_eq!(code, 0);
    let (code, _, err) = aos.run(&["driver", "call", "wordcount", "TEXT_STATS", r#"{"text":"a"}"#, "-g", "driver:wordcount"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = aos.run(&["driver", "remove", "wordcount"]);
    assert_eq!(code, 1);
    assert!(err.contains("no installed driver"), "{err}");
}

/// `aos driver remove` takes a name, never a path.
#[test]
fn driver_remove_refuses_paths() {
    let aos = Aos::new();
    std::fs::create_dir_all(aos.home().join("drivers")).unwrap();
    std::fs::write(aos.home().join("victim.wasm"), "keep").unwrap();
    std::fs::write(aos.dir.path().join("outside.wasm"), "keep").unwrap();
    for name in ["../victim", "../../outside", "../drivers/../victim"] {
        let (code, _, err) = aos.run(&["driver", "remove", name]);
        assert_eq!(code, 1, "{name}");
        assert!(err.contains("invalid driver name"), "{name}: {err}");
    }
    assert!(aos.home().join("victim.wasm").exists());
    assert!(aos.dir.path().join("outside.wasm").exists());
}

#[test]
fn inspect_refuses_files_that_are_not_drivers() {
    let aos = Aos::new();
    let junk = aos.ws().join("junk.wasm");
    std::fs::write(&junk, b"\0asm not really").unwrap();
    let (code, _, err) = aos.run(&["driver", "inspect", junk.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("not a valid AgentOS driver component"), "{err}");
    let (code, _, err) = aos.run(&["driver", "inspect", "/nonexistent/x.wasm"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read driver file"), "{err}");
}

#[test]
fn warm_start_uses_the_compiled_cache() {
    use std::os::unix::fs::MetadataExt;
    let aos = Aos::new();
    let (code, out, _) = aos.run(&["driver", "ls", "--json"]);
    assert_eq!(code, 0);
    let builtin = serde_json::from_str::<Vec<Value>>(&out).unwrap().len();
    let cache = aos.home().join("cache/drivers");
    // Name, inode and modification time of every artifact: a recompile
    // writes a new file (new inode) and renames it over the old one.
    let artifacts = || -> Vec<(String, u64, i64, i64)> {
        let mut v: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let m = e.metadata().unwrap();
                (e.file_name().to_string_lossy().to_string(), m.ino(), m.mtime(), m.mtime_nsec())
            })
            .collect();
        v.sort();
        v
    };
    let cold = artifacts();
    assert_eq!(cold.len(), builtin, "one compiled artifact per built-in driver");
    let t = std::time::Instant::now();
    let (code, _, _) = aos.run(&["driver", "ls"]);
    assert_eq!(code, 0);
    assert_eq!(artifacts(), cold, "the warm start used the cached artifacts as they were");
    eprintln!("warm `aos driver ls`: {:?}", t.elapsed());
}
