//! MEM_* through the kernel, with scripted model replies, the real memory
//! driver, the real all-MiniLM-L6-v2 embedder and the embedded store: a
//! child spawned with `memory` cannot read its parent's private memories, a
//! shared space granted to both works both ways, and after a kernel restart
//! new processes get pids above every stored private space (so they never
//! inherit an old process's memories) while the stored memories remain.
//! Skips loudly without the model (fails under `CI`).

use std::path::Path;
use std::sync::Arc;

use aos_kernel::ExitStatus;
use aos_runtime::aos_memory::{minilm, EmbeddedStore, MemoryService, MiniLmEmbedder, Space};
use aos_runtime::{DriverRuntime, RuntimeConfig};
use crate::support::*;

fn embedder() -> Option<Arc<MiniLmEmbedder>> {
    let e = MiniLmEmbedder::new(minilm::default_model_dir());
    if let Err(err) = e.check() {
        aos_tests::skip(&aos_test_support::current_test_or("the kernel memory test"), &err.to_string());
        return None;
    }
    Some(Arc::new(e))
}

async fn memory_runtime(home: &Path, emb: Arc<MiniLmEmbedder>) -> Arc<DriverRuntime> {
    let mut rc = RuntimeConfig::new(home);
    rc.cache_dir = Some(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("aos-kernel-runtime/cache/drivers"));
    rc.call_timeout = std::time::Duration::from_secs(30);
    rc.memory = Some(MemoryService::new(emb, Arc::new(EmbeddedStore::open(home.join("memory")).unwrap())));
    DriverRuntime::open(rc).await.expect("driver runtime opens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_scoping_shared_space_and_restart() {
    let Some(emb) = embedder() else { return };
    let home = tempfile::tempdir().unwrap();
    {
        let h = harness_on(memory_runtime(home.path(), emb.clone()).await, |_| {}).await;
        let child = h.script(
            "child",
            &[
                r#"[SYS_CALL::MEM_READ] {"query": "what is the wifi password?"}
[SYS_CALL::MEM_READ] {"query": "when do we ship?", "space": "shared/team"}
[SYS_CALL::MEM_WRITE] {"key": "ack", "value": "The child agrees to ship on Friday.", "space": "shared/team"}"#,
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
        );
        let parent = h.script(
            "parent",
            &[
                &format!(
                    r#"[SYS_CALL::MEM_WRITE] {{"key": "wifi", "value": "The office wireless password is tulip-river-42."}}
[SYS_CALL::MEM_WRITE] {{"key": "ship", "value": "The release goes out on Friday.", "space": "shared/team"}}
[SYS_CALL::SPAWN_AGENT] {{"task": "check", "model": "{child}", "permissions": ["memory", "memory:shared/team"]}}"#
                ),
                r#"[SYS_CALL::RECV_MSG] {}"#,
                r#"[SYS_CALL::MEM_READ] {"query": "does the other agent agree?", "space": "shared/team", "k": 1}"#,
                r#"[SYS_CALL::SYS_EXIT] {}"#,
            ],
        );
        let p = h.kernel.spawn(h.req("remember", &parent, &["memory", "memory:shared/team", "spawn", "ipc"])).await.unwrap();
        assert_eq!(p, 1);
        let st = h.wait(p).await;
        assert!(matches!(st, ExitStatus::Exited { .. }), "{st:?}: {}", h.seen(p, 1));
        assert!(matches!(h.wait(2).await, ExitStatus::Exited { .. }), "{}", h.seen(p, 1));
        let s = h.seen(2, 1);
        // The child's own memory is empty: it does not see the parent's wifi note.
        assert!(s.contains("[RESULT MEM_READ#1]") && !s.contains("tulip-river-42"), "{s}");
        assert!(s.contains("[RESULT MEM_READ#2]") && s.contains("The release goes out on Friday."), "{s}");
        assert!(s.contains("[RESULT MEM_WRITE#3]"), "{s}");
        let s = h.seen(p, 3);
        assert!(s.contains("The child agrees to ship on Friday."), "{s}");
    }

    // Kernel restart over the same home.
    let rt = memory_runtime(home.path(), emb.clone()).await;
    let m = rt.memory().unwrap().clone();
    let h = harness_on(rt, |_| {}).await;
    h.kernel.reserve_memory_pids().await;
    let newcomer = h.script("new", &[r#"[SYS_CALL::MEM_READ] {"query": "wifi password"}"#, r#"[SYS_CALL::SYS_EXIT] {}"#]);
    let pid = h.kernel.spawn(h.req("look", &newcomer, &["memory"])).await.unwrap();
    // Only pid 1 wrote private memories (the child only read its empty space).
    assert_eq!(m.store.max_private_pid().await.unwrap(), 1);
    assert!(pid > 1, "a new process must not reuse the pid of a stored private space (got {pid})");
    h.wait(pid).await;
    assert!(!h.seen(pid, 1).contains("tulip-river-42"));
    // The parent's memory is still on disk for pid 1.
    let hits = m.read_text(&Space::Private(1), "how do I get online at the office?", 1).await.unwrap();
    assert_eq!(hits[0].key, "wifi");
}
