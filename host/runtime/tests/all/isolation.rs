//! A deliberately bad guest (infinite loop, memory bomb, trap, panic) fails
//! only its own call, within its limit; the host and the next call keep working.


use std::time::{Duration, Instant};

use aos_runtime::SyscallError;
use serde_json::json;

async fn env() -> crate::common::Env {
    let env = crate::common::Env::with(|c| {
        c.call_timeout = Duration::from_millis(500);
        c.memory_limit = 32 << 20;
    })
    .await;
    env.install_example("misbehave").await;
    env
}

async fn echo_works(env: &crate::common::Env, agent: &aos_runtime::AgentContext) {
    let r = env.rt.call(agent, "BAD_ECHO", &json!({"text": "still alive"})).await.unwrap();
    assert_eq!(r.output["echo"], "still alive");
}

#[tokio::test]
async fn infinite_loop_times_out_and_next_call_works() {
    let env = env().await;
    let a = env.agent(1, &["fs:ro", "driver:misbehave"]);
    echo_works(&env, &a).await;
    let t = Instant::now();
    let e = env.rt.call(&a, "BAD_LOOP", &json!({})).await.unwrap_err();
    let took = t.elapsed();
    assert!(matches!(e, SyscallError::Timeout(ref m) if m.contains("0.5 s")), "{e}");
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(3), "took {took:?}");
    echo_works(&env, &a).await;
}

/// On a single-threaded runtime, a looping guest must still let other work
/// run: the guest yields to tokio at every epoch tick.
#[tokio::test(flavor = "current_thread")]
async fn looping_guest_does_not_block_other_agents() {
    let env = env().await;
    std::fs::write(env.ws().join("f.txt"), "x").unwrap();
    let looper = env.agent(1, &["fs:ro", "driver:misbehave"]);
    let reader = env.agent(2, &["fs:ro"]);
    let rt = env.rt.clone();
    let started = Instant::now();
    let bad = async move { rt.call(&looper, "BAD_LOOP", &json!({})).await };
    let good = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut done = Vec::new();
        for _ in 0..5 {
            env.rt.call(&reader, "FS_READ", &json!({"path": "f.txt"})).await.unwrap();
            done.push(started.elapsed());
        }
        done
    };
    let (bad, done) = tokio::join!(bad, good);
    assert!(matches!(bad, Err(SyscallError::Timeout(_))));
    assert!(
        *done.last().unwrap() < Duration::from_millis(400),
        "reads finished at {done:?}, i.e. they waited for the looping guest"
    );
}

#[tokio::test]
async fn memory_bomb_hits_the_cap_and_next_call_works() {
    let env = env().await;
    let a = env.agent(1, &["fs:ro", "driver:misbehave"]);
    let ok = env.rt.call(&a, "BAD_ALLOC", &json!({"mib": 8})).await.unwrap();
    assert_eq!(ok.output["allocated_mib"], 8);
    let e = env.rt.call(&a, "BAD_ALLOC", &json!({"mib": 4096})).await.unwrap_err();
    assert!(matches!(e, SyscallError::LimitExceeded(ref m) if m.contains("32 MiB")), "{e}");
    echo_works(&env, &a).await;
}

#[tokio::test]
async fn trap_and_panic_fail_only_their_call() {
    let env = env().await;
    let a = env.agent(1, &["fs:ro", "driver:misbehave"]);
    let e = env.rt.call(&a, "BAD_TRAP", &json!({})).await.unwrap_err();
    assert!(matches!(e, SyscallError::Internal(ref m) if m.contains("crashed") && m.contains("unreachable")), "{e}");
    echo_works(&env, &a).await;
    let e = env.rt.call(&a, "BAD_PANIC", &json!({})).await.unwrap_err();
    assert!(
        matches!(e, SyscallError::Internal(ref m) if m.contains("misbehave driver panicked on purpose")),
        "{e}"
    );
    assert!(!e.to_string().contains("RUST_BACKTRACE"), "host details leaked: {e}");
    echo_works(&env, &a).await;
    // Other agents were never affected.
    let b = env.agent(2, &["fs:ro", "driver:misbehave"]);
    echo_works(&env, &b).await;
}

#[tokio::test]
async fn fresh_instances_work_too() {
    let env = crate::common::Env::with(|c| c.reuse_instances = false).await;
    std::fs::write(env.ws().join("f.txt"), "x").unwrap();
    let a = env.agent(1, &["fs:ro"]);
    for _ in 0..3 {
        env.rt.call(&a, "FS_READ", &json!({"path": "f.txt"})).await.unwrap();
    }
    assert_eq!(env.rt.live_instances(), 0);
}
