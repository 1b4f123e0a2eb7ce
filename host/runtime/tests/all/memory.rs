//! MEM_WRITE / MEM_READ / MEM_DELETE through the real `memory` driver
//! component, the real all-MiniLM-L6-v2 embedder and the embedded store:
//! scoping (private spaces per pid, shared spaces only with their grant),
//! persistence across a runtime restart, and clear errors on bad input.
//! Without the model installed the tests skip loudly (and fail under `CI`).


use std::sync::Arc;

use aos_runtime::aos_memory::{minilm, EmbeddedStore, MemoryService, MiniLmEmbedder};
use aos_runtime::SyscallError;
use crate::common::Env;
use serde_json::json;

fn embedder() -> Option<Arc<MiniLmEmbedder>> {
    let e = MiniLmEmbedder::new(minilm::default_model_dir());
    if let Err(err) = e.check() {
        aos_test_support::skip(&aos_test_support::current_test_or("a memory driver test"), &err.to_string());
        return None;
    }
    Some(Arc::new(e))
}

async fn env_with_memory(home: &std::path::Path, emb: Arc<MiniLmEmbedder>) -> Env {
    let store = Arc::new(EmbeddedStore::open(home.join("memory")).unwrap());
    Env::with(|c| {
        c.memory = Some(MemoryService::new(emb, store));
        c.call_timeout = std::time::Duration::from_secs(30);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_read_delete_scoping_and_restart() {
    let Some(emb) = embedder() else { return };
    let home = tempfile::tempdir().unwrap();
    let parent = {
        let env = env_with_memory(home.path(), emb.clone()).await;
        let parent = env.agent(1, &["memory", "memory:shared/team"]);
        let child = env.agent(2, &["memory", "memory:shared/team"]);
        let stranger = env.agent(3, &["memory"]);

        let w = |key: &str, value: &str| json!({"key": key, "value": value});
        env.rt.call(&parent, "MEM_WRITE", &w("wifi", "The office wireless password is tulip-river-42.")).await.unwrap();
        env.rt.call(&parent, "MEM_WRITE", &w("dentist", "Dentist appointment on Thursday at 3pm.")).await.unwrap();
        env.rt
            .call(&parent, "MEM_WRITE", &json!({"key": "car", "value": "The car is parked on level 3, spot B17.", "metadata": {"kind": "place"}}))
            .await
            .unwrap();
        // Same key again replaces.
        env.rt.call(&parent, "MEM_WRITE", &w("wifi", "The office wireless password is now maple-stone-7.")).await.unwrap();

        let out = env.rt.call(&parent, "MEM_READ", &json!({"query": "How do I get my laptop online at work?", "k": 2})).await.unwrap();
        let r = &out.output["results"];
        assert_eq!(r.as_array().unwrap().len(), 2, "{out:?}");
        assert_eq!(r[0]["key"], "wifi");
        assert!(r[0]["text"].as_str().unwrap().contains("maple-stone-7"));
        assert!(r[0]["score"].as_f64().unwrap() > r[1]["score"].as_f64().unwrap());
        let out = env.rt.call(&parent, "MEM_READ", &json!({"query": "where did I leave the vehicle"})).await.unwrap();
        assert_eq!(out.output["results"][0]["key"], "car");
        assert_eq!(out.output["results"][0]["metadata"]["kind"], "place");
        assert_eq!(out.output["results"].as_array().unwrap().len(), 3, "default k is 5, 3 memories exist");

        // A child (another pid) does not see its parent's private memories.
        let out = env.rt.call(&child, "MEM_READ", &json!({"query": "wireless password"})).await.unwrap();
        assert!(out.output["results"].as_array().unwrap().is_empty(), "{out:?}");

        // A shared space works both ways for holders of its grant.
        env.rt
            .call(&parent, "MEM_WRITE", &json!({"key": "plan", "value": "We ship the release on Friday.", "space": "shared/team"}))
            .await
            .unwrap();
        let out = env.rt.call(&child, "MEM_READ", &json!({"query": "when is the launch?", "space": "shared/team"})).await.unwrap();
        assert_eq!(out.output["results"][0]["key"], "plan");
        env.rt
            .call(&child, "MEM_WRITE", &json!({"key": "reply", "value": "Child agent confirms the Friday launch.", "space": "shared/team"}))
            .await
            .unwrap();
        let out = env.rt.call(&parent, "MEM_READ", &json!({"query": "did the child confirm?", "space": "shared/team", "k": 1})).await.unwrap();
        assert_eq!(out.output["results"][0]["key"], "reply");

        // Without the grant: refused, precisely.
        let err = env.rt.call(&stranger, "MEM_READ", &json!({"query": "launch", "space": "shared/team"})).await.unwrap_err();
        assert!(matches!(&err, SyscallError::Denied(m) if m.contains("memory:shared/team")), "{err:?}");
        let err = env.rt.call(&parent, "MEM_READ", &json!({"query": "x", "space": "agent-2"})).await.unwrap_err();
        assert!(matches!(&err, SyscallError::InvalidArguments(m) if m.contains("unknown memory space")), "{err:?}");
        let only_shared = env.agent(4, &["memory:shared/team"]);
        let err = env.rt.call(&only_shared, "MEM_READ", &json!({"query": "x"})).await.unwrap_err();
        assert!(matches!(&err, SyscallError::Denied(m) if m.contains("`memory`")), "{err:?}");
        let out = env.rt.call(&only_shared, "MEM_READ", &json!({"query": "launch", "space": "shared/team"})).await.unwrap();
        assert!(!out.output["results"].as_array().unwrap().is_empty());
        let none = env.agent(5, &["fs:ro"]);
        let err = env.rt.call(&none, "MEM_READ", &json!({"query": "x"})).await.unwrap_err();
        assert!(matches!(err, SyscallError::Denied(_)), "{err:?}");

        // Bad input: clear errors, nothing lost.
        let err = env.rt.call(&parent, "MEM_READ", &json!({"query": "  "})).await.unwrap_err();
        assert!(matches!(&err, SyscallError::InvalidArguments(m) if m.contains("empty")), "{err:?}");
        let huge = "y".repeat(70 * 1024);
        let err = env.rt.call(&parent, "MEM_WRITE", &json!({"key": "huge", "value": huge})).await.unwrap_err();
        assert!(matches!(&err, SyscallError::LimitExceeded(m) if m.contains("nothing was stored")), "{err:?}");
        let err = env.rt.call(&parent, "MEM_READ", &json!({"query": "x", "k": 500})).await.unwrap_err();
        assert!(matches!(err, SyscallError::InvalidArguments(_)), "{err:?}");

        // Delete.
        let out = env.rt.call(&parent, "MEM_DELETE", &json!({"key": "dentist"})).await.unwrap();
        assert_eq!(out.output["deleted"], true);
        let out = env.rt.call(&parent, "MEM_DELETE", &json!({"key": "dentist"})).await.unwrap();
        assert_eq!(out.output["deleted"], false);
        parent
    };

    // A new runtime on the same home (a kernel restart): pid 1's memories are there.
    let env = env_with_memory(home.path(), emb.clone()).await;
    let parent = env.agent(parent.pid, &["memory", "memory:shared/team"]);
    let out = env.rt.call(&parent, "MEM_READ", &json!({"query": "How do I get my laptop online at work?", "k": 5})).await.unwrap();
    let r = out.output["results"].as_array().unwrap();
    assert_eq!(r.len(), 2, "wifi and car survive, dentist stays deleted: {r:?}");
    assert_eq!(r[0]["key"], "wifi");
    assert!(r[0]["text"].as_str().unwrap().contains("maple-stone-7"));
    let out = env.rt.call(&parent, "MEM_READ", &json!({"query": "launch", "space": "shared/team"})).await.unwrap();
    assert_eq!(out.output["results"].as_array().unwrap().len(), 2);
    assert_eq!(env.rt.memory().unwrap().store.max_private_pid().await.unwrap(), 1);
}

#[tokio::test]
async fn without_a_memory_service_calls_explain_the_setup() {
    let env = Env::new().await;
    let a = env.agent(1, &["memory"]);
    let err = env.rt.call(&a, "MEM_READ", &json!({"query": "x"})).await.unwrap_err();
    assert!(matches!(&err, SyscallError::Internal(m) if m.contains("not configured")), "{err:?}");
}
