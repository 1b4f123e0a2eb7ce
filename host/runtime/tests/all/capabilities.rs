//! Capability enforcement: read-only grants refuse every write (checked by the
//! host and, structurally, by the read-only preopen), and without a grant a
//! driver's syscalls are neither listed nor callable.


use aos_runtime::{CapabilitySet, SyscallError};
use serde_json::json;

#[tokio::test]
async fn read_only_grant_refuses_every_write() {
    let env = crate::common::Env::new().await;
    std::fs::write(env.ws().join("keep.txt"), "original").unwrap();
    std::fs::create_dir(env.ws().join("dir")).unwrap();
    let ro = env.agent(1, &["fs:ro"]);
    for (name, args) in [
        ("FS_WRITE", json!({"path": "keep.txt", "content": "changed"})),
        ("FS_WRITE", json!({"path": "new.txt", "content": "x"})),
        ("FS_WRITE", json!({"path": "keep.txt", "content": "more", "append": true})),
        ("FS_DELETE", json!({"path": "keep.txt"})),
        ("FS_DELETE", json!({"path": "dir", "recursive": true})),
        ("FS_MKDIR", json!({"path": "newdir"})),
    ] {
        match env.rt.call(&ro, name, &args).await {
            Err(SyscallError::Denied(m)) => assert!(m.contains("fs:rw"), "{name}: {m}"),
            other => panic!("{name} under fs:ro: {other:?}"),
        }
    }
    // Reads work.
    let r = env.rt.call(&ro, "FS_READ", &json!({"path": "keep.txt"})).await.unwrap();
    assert_eq!(r.output["content"], "original");
    assert!(env.rt.call(&ro, "FS_LIST", &json!({})).await.is_ok());
    // The prompt of an fs:ro agent lists only the read syscalls.
    let names: Vec<String> = env.rt.syscalls_for(&ro.caps).into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["FS_READ", "FS_LIST"]);

    // Structural enforcement: a driver that writes without declaring `fs:rw`
    // passes the host's check, and the read-only preopen refuses it anyway.
    env.install_example("misbehave").await;
    let ro_bad = env.agent(2, &["fs:ro", "driver:misbehave"]);
    for path in ["/workspace/keep.txt", "/workspace/sneaky.txt"] {
        let e = env.rt.call(&ro_bad, "BAD_WRITE", &json!({"path": path})).await.unwrap_err();
        assert!(matches!(e, SyscallError::Denied(_) | SyscallError::Io(_)), "{path}: {e}");
    }
    assert_eq!(std::fs::read_to_string(env.ws().join("keep.txt")).unwrap(), "original");
    assert!(!env.ws().join("sneaky.txt").exists());
    assert!(env.ws().join("dir").is_dir());
    assert!(!env.ws().join("newdir").exists());
}

#[tokio::test]
async fn no_fs_grant_means_no_fs_syscalls() {
    let env = crate::common::Env::new().await;
    std::fs::write(env.ws().join("a.txt"), "a").unwrap();
    let none = env.agent(1, &[]);
    assert!(env.rt.syscalls_for(&none.caps).is_empty(), "an empty grant must offer nothing");
    let timers_only = env.agent(2, &["timers"]);
    let names: Vec<String> = env.rt.syscalls_for(&timers_only.caps).into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["SLEEP", "SYS_SCHEDULE"]);
    for agent in [&none, &timers_only] {
        for name in ["FS_READ", "FS_WRITE", "FS_LIST", "FS_DELETE", "FS_MKDIR"] {
            let e = env.rt.call(agent, name, &json!({"path": "a.txt", "content": ""})).await.unwrap_err();
            assert_eq!(
                e,
                SyscallError::Denied(format!("capability `fs:ro` not granted (needed by {name})"))
            );
        }
    }
    // A driver that reads without checks gets no filesystem at all without fs:*:
    // the host never instantiates it for this agent.
    env.install_example("misbehave").await;
    let bad = env.agent(3, &["driver:misbehave"]);
    let e = env.rt.call(&bad, "BAD_READ", &json!({"path": "/workspace/a.txt"})).await.unwrap_err();
    assert!(matches!(e, SyscallError::Denied(ref m) if m.contains("fs:ro")), "{e}");
    assert_eq!(env.rt.live_instances(), 0);
}

#[tokio::test]
async fn timers_need_their_grant_and_return_effects() {
    let env = crate::common::Env::new().await;
    let no = env.agent(1, &["fs:rw"]);
    let e = env.rt.call(&no, "SLEEP", &json!({"seconds": 1})).await.unwrap_err();
    assert_eq!(e, SyscallError::Denied("capability `timers` not granted (needed by SLEEP)".into()));
    let yes = env.agent(2, &["timers"]);
    let out = env.rt.call(&yes, "SYS_SCHEDULE", &json!({"seconds": 3, "prompt": "check the oven"})).await.unwrap();
    match &out.effects[..] {
        [aos_runtime::Effect::Schedule { seconds, prompt, .. }] => {
            assert_eq!(*seconds, 3.0);
            assert_eq!(prompt, "check the oven");
        }
        other => panic!("{other:?}"),
    }
    for bad in [json!({"seconds": -1}), json!({"seconds": 1e9}), json!({"seconds": "soon"}), json!({})] {
        assert!(env.rt.call(&yes, "SLEEP", &bad).await.is_err(), "{bad}");
    }
    let e = env.rt.call(&yes, "SYS_SCHEDULE", &json!({"seconds": 1, "prompt": "  "})).await.unwrap_err();
    assert!(matches!(e, SyscallError::InvalidArguments(_)));
}

#[tokio::test]
async fn read_cap_truncates_with_a_notice() {
    let env = crate::common::Env::with(|c| {
        c.driver_config.entry("fs".into()).or_default().insert("read_limit".into(), json!(10));
    })
    .await;
    std::fs::write(env.ws().join("big.txt"), "0123456789abcdefghij").unwrap();
    let a = env.agent(1, &["fs:ro"]);
    let r = env.rt.call(&a, "FS_READ", &json!({"path": "big.txt"})).await.unwrap();
    assert_eq!(r.output["content"], "0123456789");
    assert_eq!(r.output["truncated"], true);
    assert!(r.output["notice"].as_str().unwrap().contains("\"offset\": 10"));
    let r2 = env.rt.call(&a, "FS_READ", &json!({"path": "big.txt", "offset": 10})).await.unwrap();
    assert_eq!(r2.output["content"], "abcdefghij");
    assert_eq!(r2.output["truncated"], false);
}

#[tokio::test]
async fn default_read_cap_is_one_mib() {
    let env = crate::common::Env::new().await;
    std::fs::write(env.ws().join("big.txt"), "x".repeat((1 << 20) + 5)).unwrap();
    let a = env.agent(1, &["fs:ro"]);
    let r = env.rt.call(&a, "FS_READ", &json!({"path": "big.txt"})).await.unwrap();
    assert_eq!(r.output["bytes"], 1 << 20);
    assert_eq!(r.output["truncated"], true);
}

#[tokio::test]
async fn fs_round_trip() {
    let env = crate::common::Env::new().await;
    let a = env.agent(1, &["fs:rw"]);
    let call = |n: &'static str, v: serde_json::Value| {
        let (rt, a) = (env.rt.clone(), a.clone());
        async move { rt.call(&a, n, &v).await }
    };
    call("FS_MKDIR", json!({"path": "d/e"})).await.unwrap();
    call("FS_WRITE", json!({"path": "d/e/f.txt", "content": "one\n"})).await.unwrap();
    call("FS_WRITE", json!({"path": "d/e/f.txt", "content": "two\n", "append": true})).await.unwrap();
    let r = call("FS_READ", json!({"path": "/workspace/d/e/f.txt"})).await.unwrap();
    assert_eq!(r.output["content"], "one\ntwo\n");
    let l = call("FS_LIST", json!({"path": "d"})).await.unwrap();
    assert_eq!(l.output["entries"], json!([{"name": "e", "kind": "dir", "size": null}]));
    let e = call("FS_DELETE", json!({"path": "d"})).await.unwrap_err();
    assert!(e.to_string().contains("recursive"), "{e}");
    call("FS_DELETE", json!({"path": "d", "recursive": true})).await.unwrap();
    assert!(!env.ws().join("d").exists());
    let e = call("FS_READ", json!({"path": "missing.txt"})).await.unwrap_err();
    assert_eq!(e, SyscallError::NotFound("`missing.txt` does not exist".into()));
    let e = call("FS_READ", json!({"pth": "x"})).await.unwrap_err();
    assert!(matches!(e, SyscallError::InvalidArguments(ref m) if m.contains("unknown field `pth`")), "{e}");
    let e = call("FS_DELETE", json!({"path": "."})).await.unwrap_err();
    assert!(matches!(e, SyscallError::InvalidArguments(_)));
    assert!(CapabilitySet::parse(["fs:rw"]).unwrap().contains(&aos_runtime::Capability::FsRead));
}

/// A pooled instance is never reused for a caller with other rights or
/// another workspace under the same pid.
#[tokio::test]
async fn pooled_instances_are_bound_to_caps_and_workspace() {
    let env = crate::common::Env::new().await;
    let other_ws = env.dir.path().join("other");
    std::fs::create_dir_all(&other_ws).unwrap();
    std::fs::write(other_ws.join("o.txt"), "other").unwrap();
    let rw = env.agent(5, &["fs:rw"]);
    env.rt.call(&rw, "FS_WRITE", &json!({"path": "w.txt", "content": "x"})).await.unwrap();
    let mut ro = env.agent(5, &["fs:ro"]);
    ro.workspace = other_ws.clone();
    let r = env.rt.call(&ro, "FS_READ", &json!({"path": "o.txt"})).await.unwrap();
    assert_eq!(r.output["content"], "other");
    assert!(env.rt.call(&ro, "FS_READ", &json!({"path": "w.txt"})).await.is_err());
    // Even a driver that skips the declared `fs:rw` cannot write through the old rw instance.
    env.install_example("misbehave").await;
    let mut ro_bad = env.agent(5, &["fs:ro", "driver:misbehave"]);
    ro_bad.workspace = other_ws.clone();
    assert!(env.rt.call(&ro_bad, "BAD_WRITE", &json!({"path": "/workspace/x"})).await.is_err());
    assert!(!other_ws.join("x").exists());
}

/// `remove` takes a driver's name, never a path: names that would reach
/// outside the drivers folder are refused like at installation, and the
/// files they point to stay.
#[tokio::test]
async fn remove_refuses_names_that_are_paths() {
    let env = crate::common::Env::new().await;
    let home = env.dir.path().join("home");
    std::fs::create_dir_all(home.join("drivers")).unwrap();
    std::fs::write(home.join("victim.wasm"), "keep").unwrap();
    std::fs::write(env.dir.path().join("outside.wasm"), "keep").unwrap();
    std::fs::write(home.join("drivers").join("Upper.wasm"), "keep").unwrap();
    for name in ["../victim", "../../outside", "/etc/passwd", "a/b", "..", ".", "", "Upper", "x\0y", &"n".repeat(33)] {
        match env.rt.remove(name) {
            Err(aos_runtime::RuntimeError::BadName(n)) => assert_eq!(n, name),
            other => panic!("remove({name:?}): {other:?}"),
        }
    }
    for name in ["fs", "exec", "all"] {
        assert!(matches!(env.rt.remove(name), Err(aos_runtime::RuntimeError::ReservedName(_))), "{name}");
    }
    assert_eq!(std::fs::read_to_string(home.join("victim.wasm")).unwrap(), "keep");
    assert_eq!(std::fs::read_to_string(env.dir.path().join("outside.wasm")).unwrap(), "keep");
    assert!(home.join("drivers").join("Upper.wasm").exists());
    // A real installed driver still goes.
    env.install_example("wordcount").await;
    env.rt.remove("wordcount").unwrap();
    assert!(!home.join("drivers").join("wordcount.wasm").exists());
}

/// A warm start uses the compiled artifacts: every driver reports a cache
/// hit, and the artifacts are the same files, untouched (a recompile would
/// write new ones).
#[tokio::test]
async fn warm_start_loads_the_cached_artifacts() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = || aos_runtime::RuntimeConfig::new(dir.path().join("home"));
    let cold = aos_runtime::DriverRuntime::open(cfg()).await.unwrap();
    let report = cold.load_report().to_vec();
    assert!(!report.is_empty());
    assert!(report.iter().all(|(_, o)| *o == aos_runtime::CacheOutcome::Compiled), "{report:?}");
    drop(cold);
    let cache = dir.path().join("home/cache/drivers");
    let files = || -> Vec<(String, u64, i64, i64)> {
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
    let before = files();
    assert_eq!(before.len(), report.len(), "one artifact per driver");
    let warm = aos_runtime::DriverRuntime::open(cfg()).await.unwrap();
    let report = warm.load_report();
    assert!(report.iter().all(|(_, o)| *o == aos_runtime::CacheOutcome::Hit), "{report:?}");
    assert_eq!(files(), before, "the artifacts were rewritten");
    // And the warm runtime works.
    std::fs::create_dir_all(dir.path().join("ws")).unwrap();
    let a = aos_runtime::AgentContext {
        pid: 1,
        caps: CapabilitySet::parse(["fs:ro"]).unwrap(),
        workspace: dir.path().join("ws"),
    };
    assert!(warm.call(&a, "FS_LIST", &json!({})).await.is_ok());
}
