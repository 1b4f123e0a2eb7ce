//! Tree-wide budgets and process caps (issue 12, class 5): what a process
//! and all its descendants use together never exceeds what the root was
//! given, and live processes are capped per tree and per kernel, with
//! refusals that say which budget or cap.

use std::time::Duration;

use aos_kernel::ExitStatus;

use crate::support::*;

/// A script whose every reply spawns two copies of itself (with `spawn`).
fn fork_bomb(h: &Harness, replies: usize) -> String {
    let path = h.dir.path().join("bomb.json");
    let model = path.display().to_string();
    let spawn = format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "multiply", "model": "{model}", "permissions": ["spawn"]}}"#);
    let reply = format!("{spawn}\n{spawn}");
    std::fs::write(&path, serde_json::to_string(&vec![reply; replies]).unwrap()).unwrap();
    model
}

/// Waits until no process of the kernel is running.
async fn settle(h: &Harness) {
    let t = std::time::Instant::now();
    loop {
        let ps = h.kernel.ps();
        if ps.iter().all(|i| i.status.is_terminal()) {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "still running: {:?}", ps.iter().filter(|i| !i.status.is_terminal()).map(|i| i.pid).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every entry of every process, as text.
fn all_text(h: &Harness) -> String {
    let mut s = String::new();
    for i in h.kernel.ps() {
        for e in h.kernel.logs(i.pid).unwrap() {
            s.push_str(&format!("[{}] {:?}\n", i.pid, e.entry));
        }
    }
    s
}

#[tokio::test]
async fn a_fork_bomb_stays_within_the_roots_step_budget() {
    let h = harness_with(|c| c.retention.max_ended = 10_000).await;
    let model = fork_bomb(&h, 20);
    let mut req = h.req("multiply", &model, &["spawn"]);
    req.budgets.max_steps = Some(6);
    let root = h.kernel.spawn(req).await.unwrap();
    settle(&h).await;
    let calls = h.rec.requests.lock().len();
    let procs = h.kernel.ps().len();
    eprintln!("fork bomb with --max-steps 6: {calls} model calls, {procs} processes");
    // No process exits by itself: the tree uses its 6 calls, no more. Each
    // call spawns at most two processes.
    assert_eq!(calls, 6, "{calls} model calls in a tree whose root was given 6 ({procs} processes)");
    assert!(procs <= 1 + 2 * 6, "{procs} processes from 6 model calls");
    // Every process's own spend stays within what it was given; the root's
    // remaining budget counts the whole tree.
    let total: u64 = h.kernel.ps().iter().map(|i| i.counters.steps).sum();
    assert_eq!(total as usize, calls);
    assert_eq!(h.kernel.info(root).unwrap().remaining.max_steps, Some(0));
    // The processes that ran out were told which budget: their own, or an
    // ancestor's shared by the tree.
    let text = all_text(&h);
    assert!(text.contains("step budget exhausted"), "{text}");
}

#[tokio::test]
async fn tokens_are_shared_by_the_tree() {
    let h = harness_with(|c| c.retention.max_ended = 10_000).await;
    let model = fork_bomb(&h, 20);
    let mut req = h.req("multiply", &model, &["spawn"]);
    req.budgets.max_tokens = Some(3_000);
    req.budgets.max_steps = Some(1_000);
    h.kernel.spawn(req).await.unwrap();
    settle(&h).await;
    let ps = h.kernel.ps();
    let used: u64 = ps.iter().map(|i| i.counters.prompt_tokens + i.counters.completion_tokens).sum();
    let per_call = used / h.rec.requests.lock().len() as u64;
    // A call's tokens are known only after it: the call that starts while
    // the tree still has room may take it past the limit (as for a single
    // process); calls running at once see each other's reservations, so
    // that happens once, not once per process.
    let in_flight_bound = 3_000 + 2 * per_call;
    eprintln!("token fork bomb, 3000 tokens: {used} tokens, {} model calls, {} processes", h.rec.requests.lock().len(), ps.len());
    assert!(used <= in_flight_bound, "{used} tokens used by {} processes; the root was given 3000", ps.len());
    assert!(ps.len() < 64, "{} processes", ps.len());
    assert!(all_text(&h).contains("token budget exhausted"));
}

const READ_STDIN: &str = r#"[SYS_CALL::SYS_READ_STDIN] {}"#;

#[tokio::test]
async fn live_processes_are_capped_per_tree_with_a_precise_refusal() {
    let h = harness_with(|c| c.max_processes_per_tree = 4).await;
    let idle = h.script("idle", &[r#"[SYS_CALL::RECV_MSG] {}"#]);
    let spawn = format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "wait", "model": "{idle}", "permissions": ["ipc"]}}"#);
    let root = h
        .spawn(
            "supervise",
            &[&format!("{spawn}\n{spawn}\n{spawn}\n{spawn}"), READ_STDIN, READ_STDIN, READ_STDIN],
            &["spawn", "ipc"],
        )
        .await;
    h.wait_status(root, "BlockedStdin").await;
    // The root and three children: the fourth spawn was refused.
    assert_eq!(h.kernel.ps().len(), 4);
    let s = h.seen(root, 1);
    assert!(s.contains("[RESULT SPAWN_AGENT#3] {\"pid\":4}"), "{s}");
    assert!(
        s.contains(
            "[ERROR SPAWN_AGENT#4] limit exceeded: SPAWN_AGENT: process cap reached: the process tree of root \
             process 1 already has 4 live processes, the most a tree may have (max_processes_per_tree)"
        ),
        "{s}"
    );
    // Another tree is not affected by this one's cap.
    let other = h.spawn("other", &[r#"[SYS_CALL::SYS_READ_STDIN] {}"#], &[]).await;
    h.wait_status(other, "BlockedStdin").await;
    // A child that ends frees its place.
    h.kernel.kill(2).unwrap();
    assert_eq!(h.wait(2).await, ExitStatus::Killed);
    let mut req = h.req("one more", &idle, &["ipc"]);
    req.parent = Some(root);
    let pid = h.kernel.spawn(req).await.unwrap();
    let mut req = h.req("and another", &idle, &["ipc"]);
    req.parent = Some(root);
    let e = h.kernel.spawn(req).await.unwrap_err().to_string();
    assert!(e.contains("process cap reached") && e.contains("root process 1"), "{e}");
    h.kernel.kill(root).unwrap();
    h.kernel.kill(other).unwrap();
    h.wait(pid).await;
}

#[tokio::test]
async fn live_processes_are_capped_per_kernel() {
    let h = harness_with(|c| c.max_processes = 2).await;
    let a = h.spawn("a", &[r#"[SYS_CALL::SYS_READ_STDIN] {}"#], &[]).await;
    let b = h.spawn("b", &[r#"[SYS_CALL::SYS_READ_STDIN] {}"#], &[]).await;
    let model = h.script("c", &[r#"[SYS_CALL::SYS_EXIT] {}"#]);
    let e = h.kernel.spawn(h.req("c", &model, &[])).await.unwrap_err().to_string();
    assert!(e.contains("process cap reached: the kernel already runs 2 live processes, its limit (max_processes)"), "{e}");
    h.kernel.kill(a).unwrap();
    h.wait(a).await;
    let c = h.kernel.spawn(h.req("c", &model, &[])).await.unwrap();
    assert_eq!(h.wait(c).await, ExitStatus::Exited { code: 0, result: None });
    h.kernel.kill(b).unwrap();
}

#[tokio::test]
async fn an_ancestors_exhausted_budget_is_named_to_the_child() {
    // The root may make 4 model calls in all. It makes one, which starts two
    // children (3 calls left each, by the root's budget) and waits: the
    // children share the 3 calls left, so at least one of them is stopped
    // by the root's budget while its own still has room.
    let h = harness().await;
    let child = h.script("child", &["thinking", "thinking", "thinking", "thinking"]);
    let spawn = format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "think", "model": "{child}", "permissions": []}}"#);
    let root = h.script("root", &[&format!("{spawn}\n{spawn}\n[SYS_CALL::SYS_READ_STDIN] {{}}"), r#"[SYS_CALL::SYS_EXIT] {}"#]);
    let mut req = h.req("t", &root, &["spawn"]);
    req.budgets.max_steps = Some(4);
    let root = h.kernel.spawn(req).await.unwrap();
    // A child's exit interrupts the root's wait; its next step is refused,
    // and it is told that its descendants used its budget.
    match h.wait(root).await {
        ExitStatus::Failed { reason } => assert_eq!(
            reason,
            "step budget exhausted: 4 model calls used without SYS_EXIT (1 by this process, 3 by its descendants)"
        ),
        other => panic!("{other:?}"),
    }
    let mut reasons = Vec::new();
    for child in [2, 3] {
        assert_eq!(h.kernel.info(child).unwrap().budgets.max_steps, Some(3));
        match h.wait(child).await {
            ExitStatus::Failed { reason } => reasons.push(reason),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(h.requests(2).len() + h.requests(3).len(), 3, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.starts_with(
            "step budget exhausted: the budget of process 1 (4 model calls), shared by it and all its descendants, is used up"
        )),
        "{reasons:?}"
    );
    assert_eq!(h.requests(root).len(), 1);
    assert_eq!(h.kernel.info(root).unwrap().remaining.max_steps, Some(0));
}

#[tokio::test]
async fn a_spawn_with_nothing_left_is_refused() {
    // The root's single model call is its whole budget: a child could not
    // make a single call, so it is not started.
    let h = harness().await;
    let child = h.script("child", &[r#"[SYS_CALL::SYS_EXIT] {}"#]);
    let root = h.script(
        "root",
        &[&format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "t", "model": "{child}", "permissions": []}}"#)],
    );
    let mut req = h.req("t", &root, &["spawn"]);
    req.budgets.max_steps = Some(1);
    let root = h.kernel.spawn(req).await.unwrap();
    h.wait(root).await;
    assert_eq!(h.kernel.ps().len(), 1);
    let log = format!("{:?}", h.kernel.logs(root).unwrap());
    assert!(
        log.contains("limit exceeded: SPAWN_AGENT: step budget exhausted: no model calls are left for a child"),
        "{log}"
    );
}

#[tokio::test]
async fn a_restored_tree_keeps_its_shared_budget_and_its_places() {
    let a = harness().await;
    let child = a.script("child", &[r#"[SYS_CALL::RECV_MSG] {}"#, r#"[SYS_CALL::RECV_MSG] {}"#]);
    let spawn = format!(r#"[SYS_CALL::SPAWN_AGENT] {{"task": "wait", "model": "{child}", "permissions": ["ipc"]}}"#);
    let root_model = a.script("root", &[&format!("{spawn}\n{READ_STDIN}"), READ_STDIN]);
    let mut req = a.req("t", &root_model, &["spawn", "ipc"]);
    req.budgets.max_steps = Some(10);
    let root = a.kernel.spawn(req).await.unwrap();
    a.wait_status(root, "BlockedStdin").await;
    a.wait_status(2, "BlockedRecv").await;
    assert_eq!(a.kernel.info(root).unwrap().remaining.max_steps, Some(8));
    // What a journal holds; then the old kernel is gone.
    let snapshots: Vec<_> = [root, 2].iter().map(|&p| (a.kernel.info(p).unwrap(), a.kernel.logs(p).unwrap())).collect();
    a.kernel.kill(root).unwrap();

    let b = harness_with(|c| c.max_processes_per_tree = 2).await;
    for (info, log) in snapshots {
        let next = log.iter().filter(|e| matches!(e.entry, aos_kernel::Entry::Result { .. })).count() as u64 + 1;
        let req = aos_kernel::RestoreRequest { log, next_call_id: next, ..aos_kernel::RestoreRequest::new(info) };
        b.kernel.restore(req, Vec::new()).await.unwrap();
    }
    // Each takes one more step and blocks again: 4 of the root's 10 are used.
    b.wait_status(root, "BlockedStdin").await;
    b.wait_status(2, "BlockedRecv").await;
    assert_eq!(b.requests(root).len() + b.requests(2).len(), 2);
    assert_eq!(b.kernel.info(root).unwrap().remaining.max_steps, Some(6));
    // The restored processes hold their places in the tree's count.
    let child_b = b.script("child", &[r#"[SYS_CALL::RECV_MSG] {}"#]);
    let mut req = b.req("one more", &child_b, &[]);
    req.parent = Some(root);
    let e = b.kernel.spawn(req).await.unwrap_err().to_string();
    assert!(e.contains("process cap reached: the process tree of root process 1 already has 2 live processes"), "{e}");
    b.kernel.kill(root).unwrap();
}
