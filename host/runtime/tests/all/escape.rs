//! Generated escape attempts against the fs driver: every one must fail with
//! the refusal that fits it (`denied` for leaving the workspace), carry
//! nothing from outside in its message, and leave everything outside the
//! workspace untouched.


use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let ft = std::fs::symlink_metadata(&p).unwrap().file_type();
            if ft.is_dir() {
                out.insert(rel + "/", Vec::new());
                walk(base, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// Escape paths, generated.
fn attempts(outside_abs: &str) -> Vec<String> {
    let mut v = Vec::new();
    // `..` in every position: prefixes of depth d followed by more than d `..`s.
    let prefixes: &[(&str, usize)] =
        &[("", 0), ("./", 0), ("a/", 1), ("a/b/", 2), ("a/../", 0), ("./a/./", 1), ("a//b/./", 2)];
    let suffixes = ["/outside/secret.txt", "/outside/new.txt", "/etc/passwd", "", "/outside"];
    for (prefix, depth) in prefixes {
        for ups in [depth + 1, depth + 2, depth + 9] {
            let up = vec![".."; ups].join("/");
            for s in suffixes {
                v.push(format!("{prefix}{up}{s}"));
            }
        }
    }
    // Absolute paths.
    for p in [
        "/etc/passwd".to_string(),
        "/etc".to_string(),
        "/".to_string(),
        "//etc/passwd".to_string(),
        "/proc/self/environ".to_string(),
        "/tmp".to_string(),
        format!("{outside_abs}/secret.txt"),
        format!("{outside_abs}/new.txt"),
        outside_abs.to_string(),
        "/workspace/../etc/passwd".to_string(),
        "/workspace/..".to_string(),
        "/workspace/../outside/secret.txt".to_string(),
        "/workspace/./../outside/new.txt".to_string(),
        "/workspace/a/../../outside/secret.txt".to_string(),
        "/workspace/../../../../etc/passwd".to_string(),
        "/./workspace/../outside/secret.txt".to_string(),
        "/workspacex/secret.txt".to_string(),
        "/work/../etc/passwd".to_string(),
    ] {
        v.push(p);
    }
    // Symlinks created inside the workspace that point outside.
    for p in [
        "link_dir/secret.txt",
        "link_dir/new.txt",
        "link_dir",
        "link_dir/",
        "link_abs/secret.txt",
        "link_abs/new.txt",
        "link_file",
        "sub/link_up/secret.txt",
        "sub/link_up/new.txt",
        "link_loop/x",
    ] {
        v.push(p.to_string());
    }
    // Very long paths and NUL bytes.
    v.push(format!("{}etc/passwd", "../".repeat(2000)));
    v.push(format!("{}x", "a/".repeat(3000)));
    v.push("n".repeat(300));
    v.push("../outside/secret.txt\0".to_string());
    v.push("secret\0.txt".into());
    v.push("\0".into());
    v.push("../\0outside/secret.txt".into());
    v
}

/// `path` folded like the fs driver folds it: the part under /workspace,
/// or `None` when it leads outside.
fn fold(path: &str) -> Option<String> {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&l) if l != ".." => {
                    parts.pop();
                }
                _ if absolute => {}
                _ => parts.push(".."),
            },
            c => parts.push(c),
        }
    }
    if parts.first() == Some(&"..") {
        return None;
    }
    // An absolute path outside /workspace is read inside it (`/etc/passwd`
    // is the workspace's `etc/passwd`), as the original AgentOS did.
    if absolute && parts.first() == Some(&"workspace") {
        parts.remove(0);
    }
    Some(parts.join("/"))
}

/// Whether `path` is absolute and, folded, not under /workspace: the fs
/// driver reads it inside the workspace (`/etc/passwd` is the workspace's
/// `etc/passwd`), as the original AgentOS did.
fn rerooted(path: &str) -> bool {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    path.starts_with('/') && parts.first() != Some(&"workspace")
}

/// The refusal kind each attempt must get: `denied` for anything leading out
/// of the workspace (lexically or through a symlink), `invalid_arguments`
/// for NUL bytes and over-long names, `io` for a symlink loop, `not_found`
/// for a path that stays inside and names nothing.
fn expected_kind(path: &str) -> &'static str {
    let Some(rel) = fold(path) else { return "denied" };
    if rel.contains('\0') || rel.len() > 4000 || rel.split('/').any(|c| c.len() > 255) {
        return "invalid_arguments";
    }
    if rel.starts_with("link_loop") {
        return "io";
    }
    if ["link_dir", "link_abs", "link_file", "sub/link_up"].iter().any(|l| rel == *l || rel.starts_with(&format!("{l}/"))) {
        return "denied";
    }
    "not_found"
}

#[tokio::test]
async fn escape_attempts_all_fail_and_touch_nothing_outside() {
    let env = crate::common::Env::new().await;
    let root = env.dir.path();
    let outside = root.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "SECRET").unwrap();
    std::fs::write(outside.join("leak-canary.txt"), "SECRET").unwrap();
    let ws = env.ws();
    std::fs::create_dir_all(ws.join("sub")).unwrap();
    std::fs::write(ws.join("inside.txt"), "fine").unwrap();
    std::os::unix::fs::symlink("../outside", ws.join("link_dir")).unwrap();
    std::os::unix::fs::symlink(&outside, ws.join("link_abs")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), ws.join("link_file")).unwrap();
    std::os::unix::fs::symlink("../../outside", ws.join("sub/link_up")).unwrap();
    std::os::unix::fs::symlink("link_loop", ws.join("link_loop")).unwrap();
    let before = snapshot(root);
    let ws_before = snapshot(&ws);

    let agent = env.agent(7, &["fs:rw"]);
    // Absolute paths outside /workspace are read inside it: see
    // `absolute_paths_elsewhere_land_inside_the_workspace`.
    let paths: Vec<String> = attempts(outside.to_str().unwrap()).into_iter().filter(|p| !rerooted(p)).collect();
    let mut calls = 0;
    for path in &paths {
        let tries = [
            ("FS_READ", json!({ "path": path })),
            ("FS_WRITE", json!({ "path": path, "content": "ESCAPED" })),
            ("FS_WRITE", json!({ "path": path, "content": "ESCAPED", "append": true })),
            ("FS_LIST", json!({ "path": path })),
            ("FS_MKDIR", json!({ "path": format!("{path}/made") })),
            ("FS_DELETE", json!({ "path": format!("{path}/../secret.txt"), "recursive": true })),
        ];
        for (name, args) in tries {
            // Deleting a symlink itself or listing "link_dir/" would be legal
            // operations on the workspace: only attempts that target outside count.
            let r = env.rt.call(&agent, name, &args).await;
            let e = match r {
                Ok(out) => panic!("{name} {args} succeeded but must not: {}", out.output),
                Err(e) => e,
            };
            // The exact refusal for what the path is.
            let effective = args["path"].as_str().unwrap();
            let want = expected_kind(effective);
            assert_eq!(e.kind(), want, "{name} {args}: {e}");
            // Nothing from outside the workspace in the error: no content,
            // no names the attempt did not already contain.
            for leak in ["SECRET", "leak-canary", "root:x:0:0", "daemon:"] {
                assert!(!e.message().contains(leak), "{name} {args} leaked `{leak}`: {e}");
            }
            calls += 1;
        }
    }
    assert!(paths.len() >= 90, "only {} generated paths", paths.len());
    assert!(calls >= 600);
    assert_eq!(before.iter().filter(|(k, _)| k.starts_with("outside")).collect::<Vec<_>>(),
               snapshot(root).iter().filter(|(k, _)| k.starts_with("outside")).collect::<Vec<_>>(),
               "something outside the workspace changed");
    assert_eq!(std::fs::read_to_string(outside.join("secret.txt")).unwrap(), "SECRET");
    assert!(!outside.join("new.txt").exists());
    assert_eq!(ws_before, snapshot(&ws), "escape attempts changed the workspace");
    // The sandbox still works for legitimate paths afterwards.
    let ok = env.rt.call(&agent, "FS_READ", &json!({"path": "inside.txt"})).await.unwrap();
    assert_eq!(ok.output["content"], "fine");
}

#[tokio::test]
async fn hardlink_to_outside_file_is_refused() {
    let env = crate::common::Env::new().await;
    let outside = env.dir.path().join("outside.txt");
    std::fs::write(&outside, "SECRET").unwrap();
    std::fs::hard_link(&outside, env.ws().join("hard.txt")).unwrap();
    let agent = env.agent(1, &["fs:rw"]);
    for (name, args) in [
        ("FS_READ", json!({"path": "hard.txt"})),
        ("FS_WRITE", json!({"path": "hard.txt", "content": "ESCAPED"})),
        ("FS_WRITE", json!({"path": "hard.txt", "content": "ESCAPED", "append": true})),
    ] {
        let e = env.rt.call(&agent, name, &args).await.unwrap_err();
        assert!(e.to_string().contains("hard links"), "{name}: {e}");
    }
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "SECRET");
}

#[tokio::test]
async fn unicode_lookalikes_stay_inside_the_workspace() {
    let env = crate::common::Env::new().await;
    let agent = env.agent(1, &["fs:rw"]);
    let lookalikes = [
        "\u{2025}/secret.txt",           // two dot leader
        "\u{FF0E}\u{FF0E}/secret.txt",   // fullwidth full stops
        "..\u{FF0F}secret.txt",          // fullwidth solidus
        "..\u{2215}secret.txt",          // division slash
        "\u{2024}\u{2024}/secret.txt",   // one dot leaders
        "..\u{29F8}secret.txt",          // big solidus
    ];
    for p in lookalikes {
        // Nothing by these names exists: reads fail.
        assert!(env.rt.call(&agent, "FS_READ", &json!({"path": p})).await.is_err(), "{p}");
        // A write creates a file *inside* the workspace under that literal name.
        if env.rt.call(&agent, "FS_WRITE", &json!({"path": p, "content": "x"})).await.is_ok() {
            let first = p.split('/').next().unwrap();
            assert!(env.ws().join(first).exists(), "{p} was written somewhere else");
        }
    }
    assert!(!env.dir.path().join("secret.txt").exists());
}

/// Absolute paths outside /workspace (`/test.txt`, `/etc/passwd`, the host
/// path of a directory next to the workspace) name files *inside* the
/// workspace, as in the original AgentOS: writes land there and nothing
/// outside changes.
#[tokio::test]
async fn absolute_paths_elsewhere_land_inside_the_workspace() {
    let env = crate::common::Env::new().await;
    let root = env.dir.path();
    let outside = root.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "SECRET").unwrap();
    let ws = env.ws();
    let before = snapshot(root);
    let agent = env.agent(7, &["fs:rw"]);
    let paths: Vec<String> = attempts(outside.to_str().unwrap()).into_iter().filter(|p| rerooted(p)).collect();
    assert!(paths.len() >= 10, "{paths:?}");
    for path in &paths {
        let file = format!("{}/f.txt", path.trim_end_matches('/'));
        let w = env.rt.call(&agent, "FS_WRITE", &json!({"path": file, "content": "inside"})).await;
        let w = w.unwrap_or_else(|e| panic!("FS_WRITE {file}: {e}"));
        let rel = fold(&file).unwrap();
        assert_eq!(std::fs::read_to_string(ws.join(&rel)).unwrap(), "inside", "{file} -> {rel}: {}", w.output);
        let r = env.rt.call(&agent, "FS_READ", &json!({"path": file})).await.unwrap();
        assert_eq!(r.output["content"], "inside");
    }
    // The original's own example.
    env.rt.call(&agent, "FS_WRITE", &json!({"path": "/test.txt", "content": "hello"})).await.unwrap();
    assert_eq!(std::fs::read_to_string(ws.join("test.txt")).unwrap(), "hello");
    let outside_now: Vec<_> = snapshot(root).into_iter().filter(|(k, _)| k.starts_with("outside")).collect();
    let outside_before: Vec<_> = before.into_iter().filter(|(k, _)| k.starts_with("outside")).collect();
    assert_eq!(outside_before, outside_now, "something outside the workspace changed");
}
