//! `Kernel::restore`: a process rebuilt from its history in a new kernel
//! (as after a daemon crash) keeps its pid, history and counters, gets the
//! recovery entries, and continues — with no completed call run again.


use aos_kernel::{Entry, ExitStatus, RestoreRequest};
use crate::support::*;

fn next_call_id(log: &[aos_kernel::LogEntry]) -> u64 {
    log.iter()
        .filter_map(|e| match &e.entry {
            Entry::Result { id, .. } | Entry::Error { id, .. } => Some(*id),
            _ => None,
        })
        .max()
        .unwrap_or(0)
        + 1
}

#[tokio::test]
async fn restored_process_continues_without_repeating_calls() {
    let a = harness().await;
    // One script for the whole life of the process: after the restore, the
    // script provider continues at reply 2 (it has made 1 model call).
    let pid = a
        .spawn(
            "log twice",
            &[
                r#"[SYS_CALL::FS_WRITE] {"path": "log.txt", "content": "one\n", "append": true}
[SYS_CALL::RECV_MSG] {}"#,
                r#"[SYS_CALL::FS_WRITE] {"path": "log.txt", "content": "two\n", "append": true}
[SYS_CALL::SYS_EXIT] {"code": 0, "result": "done"}"#,
            ],
            &["fs:rw", "ipc"],
        )
        .await;
    a.wait_status(pid, "BlockedRecv").await;
    // What a journal holds at the moment of the crash.
    let info = a.kernel.info(pid).unwrap();
    let log = a.kernel.logs(pid).unwrap();
    let next = next_call_id(&log);
    assert_eq!(next, 2, "FS_WRITE#1 done, RECV_MSG#2 in flight: {log:#?}");
    a.kernel.kill(pid).unwrap(); // the old kernel is gone
    a.wait(pid).await;

    let b = harness().await;
    let workspace = info.workspace.clone();
    let restored = b
        .kernel
        .restore(
            RestoreRequest { log: log.clone(), next_call_id: next, ..RestoreRequest::new(info) },
            vec![Entry::Error {
                id: next,
                name: Some("RECV_MSG".into()),
                args: Some(serde_json::json!({})),
                error: "interrupted: the kernel restarted while this call was running; it was not retried".into(),
                call_id: None,
            }],
        )
        .await
        .unwrap();
    assert_eq!(restored, pid);
    assert!(matches!(b.wait(pid).await, ExitStatus::Exited { code: 0, .. }));
    // The side effect of the first reply happened once.
    assert_eq!(std::fs::read_to_string(workspace.join("log.txt")).unwrap(), "one\ntwo\n");
    // The model saw its whole history and the interruption.
    let seen = b.seen(pid, 0);
    assert!(seen.contains("[RESULT FS_WRITE#1]"), "{seen}");
    assert!(seen.contains("[ERROR RECV_MSG#2] interrupted"), "{seen}");
    // The history continues the old one; the next call got the next id.
    let logs = b.kernel.logs(pid).unwrap();
    assert_eq!(&logs[..log.len()], &log[..]);
    assert!(logs.iter().any(|e| matches!(&e.entry, Entry::Result { id: 3, name, .. } if name == "FS_WRITE")));
    // Counters carried over: two model calls in all.
    assert_eq!(b.kernel.info(pid).unwrap().counters.steps, 2);
    // New processes get pids above the restored one.
    let other = b.spawn("x", &["[SYS_CALL::SYS_EXIT] {}"], &[]).await;
    assert!(other > pid);
    // Restoring the same pid twice is refused.
    let again = b.kernel.info(pid).unwrap();
    let err = b
        .kernel
        .restore(
            RestoreRequest::new(again),
            vec![],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[tokio::test]
async fn exited_processes_are_restored_for_ps_and_logs_only() {
    let a = harness().await;
    let pid = a.spawn("quick", &[r#"[SYS_CALL::SYS_EXIT] {"code": 4}"#], &[]).await;
    let status = a.wait(pid).await;
    let info = a.kernel.info(pid).unwrap();
    let log = a.kernel.logs(pid).unwrap();
    let b = harness().await;
    b.kernel
        .restore(
            RestoreRequest {
                log: log.clone(),
                next_call_id: next_call_id(&log),
                exit: Some(status.clone()),
                ..RestoreRequest::new(info)
            },
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(b.wait(pid).await, status);
    assert_eq!(b.kernel.logs(pid).unwrap(), log);
    assert!(b.requests(pid).is_empty(), "an exited process must not call its model");
}

#[tokio::test]
async fn restore_keeps_the_base_url_and_sleeps_out_a_sleep() {
    let a = harness().await;
    let mut req = a.req("nap", &a.script("nap", &[r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#]), &[]);
    req.base_url = Some("http://127.0.0.1:1/v1".into());
    // `info` as journalled for a process sleeping for 1.5 s more.
    let pid = a.kernel.spawn(req).await.unwrap();
    a.wait(pid).await;
    let mut info = a.kernel.info(pid).unwrap();
    assert_eq!(info.base_url.as_deref(), Some("http://127.0.0.1:1/v1"));
    let json = serde_json::to_value(&info).unwrap();
    let mut old = json.clone();
    old.as_object_mut().unwrap().remove("base_url");
    assert_eq!(serde_json::from_value::<aos_kernel::ProcessInfo>(old).unwrap().base_url, None, "old journals load");
    let until = aos_kernel::process::now_ms() + 1500;
    info.status = aos_kernel::ProcessStatus::Sleeping { until_ms: until };
    info.counters.steps = 0;

    let b = harness().await;
    let t0 = std::time::Instant::now();
    b.kernel.restore(RestoreRequest::new(info), vec![]).await.unwrap();
    assert_eq!(b.kernel.info(pid).unwrap().base_url.as_deref(), Some("http://127.0.0.1:1/v1"));
    b.wait_status(pid, "Sleeping").await;
    assert!(matches!(b.wait(pid).await, ExitStatus::Exited { code: 0, .. }));
    assert!(t0.elapsed() >= std::time::Duration::from_millis(1300), "woke after {:?}", t0.elapsed());
    assert!(aos_kernel::process::now_ms() >= until - 50);
}

/// Collects every kernel event.
#[derive(Default)]
struct Sink(parking_lot::Mutex<Vec<aos_kernel::KernelEvent>>);

impl aos_kernel::EventSink for Sink {
    fn record(&self, e: &aos_kernel::KernelEvent) {
        self.0.lock().push(e.clone());
    }
}

#[tokio::test]
async fn queued_input_and_timers_are_announced_for_the_journal() {
    use aos_kernel::{KernelEvent, Queue};
    let a = harness().await;
    let sink = std::sync::Arc::new(Sink::default());
    a.kernel.add_sink(sink.clone());
    let pid = a
        .spawn(
            "wait",
            &[r#"[SYS_CALL::SYS_SCHEDULE] {"seconds": 3600, "prompt": "later"}
[SYS_CALL::SYS_READ_STDIN] {}"#],
            &["timers", "ipc"],
        )
        .await;
    a.wait_status(pid, "BlockedStdin").await;
    a.kernel.send_message(pid, "not read yet").unwrap();
    let evs = sink.0.lock().clone();
    let scheduled: Vec<_> = evs.iter().filter(|e| matches!(e, KernelEvent::Scheduled { .. })).collect();
    assert!(
        matches!(scheduled[..], [KernelEvent::Scheduled { pid: p, id: 1, prompt, .. }] if *p == pid && prompt == "later"),
        "{evs:#?}"
    );
    assert!(evs.iter().any(|e| matches!(e, KernelEvent::Delivered { queue: Queue::Mailbox, from: Some(0), content, .. } if content == "not read yet")));
    assert!(!evs.iter().any(|e| matches!(e, KernelEvent::Consumed { .. } | KernelEvent::Fired { .. })));
    // Reading stdin consumes it.
    a.kernel.send_stdin(pid, "line").unwrap();
    for _ in 0..200 {
        if sink.0.lock().iter().any(|e| matches!(e, KernelEvent::Consumed { queue: Queue::Stdin, .. })) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(sink.0.lock().iter().any(|e| matches!(e, KernelEvent::Consumed { queue: Queue::Stdin, .. })));
    a.kernel.kill(pid).unwrap();
}

#[tokio::test]
async fn restore_puts_back_queued_input_and_rearms_timers() {
    let a = harness().await;
    let model = a.script(
        "queued",
        &[
            "[SYS_CALL::RECV_MSG] {}\n[SYS_CALL::SYS_READ_STDIN] {}",
            r#"[SYS_CALL::RECV_MSG] {"timeout": 10}"#,
            r#"[SYS_CALL::SYS_EXIT] {"code": 0}"#,
        ],
    );
    let pid = a.kernel.spawn(a.req("t", &model, &["ipc", "timers"])).await.unwrap();
    a.kernel.kill(pid).unwrap();
    a.wait(pid).await;
    let mut info = a.kernel.info(pid).unwrap();
    info.counters.steps = 0;
    let b = harness().await;
    let mut req = RestoreRequest::new(info);
    req.pending.mailbox.push(aos_kernel::IpcMessage { from: 0, content: "queued hello".into(), sent_at_ms: 1 });
    req.pending.stdin.push("queued line".into());
    req.pending.events.push("child 9 exited with code 0".into());
    req.pending.timers.push(aos_kernel::PendingTimer {
        id: 4,
        due_ms: aos_kernel::process::now_ms() + 300,
        prompt: "wake".into(),
    });
    b.kernel.restore(req, vec![]).await.unwrap();
    assert!(matches!(b.wait(pid).await, ExitStatus::Exited { code: 0, .. }), "{:#?}", b.kernel.logs(pid));
    let log: Vec<String> = b.kernel.logs(pid).unwrap().iter().map(|e| serde_json::to_string(&e.entry).unwrap()).collect();
    let text = log.join("\n");
    assert!(text.contains("child 9 exited with code 0"), "{text}");
    assert!(text.contains(r#""content":"queued hello""#), "{text}");
    assert!(text.contains(r#""text":"queued line""#), "{text}");
    assert!(text.contains("scheduled wake-up #4: wake") && !text.contains("timed_out"), "{text}");
}

#[tokio::test]
async fn restored_process_keeps_its_shrunk_context_window() {
    // A model that holds 1500 real tokens at 1.5 per estimated one; the
    // configured window (8192) is far above it.
    let limit = ContextLimit { limit: 1500, tokens_per_estimated: 1.5, window: None };
    let a = harness().await;
    *a.rec.limit.lock() = Some(limit);
    let write = |i: usize| format!("step {i}: [SYS_CALL::SYS_WRITE_STDOUT] {{\"text\": \"{}\"}}", "x".repeat(200));
    let mut replies: Vec<String> = (0..20).map(write).collect();
    replies.push("[SYS_CALL::RECV_MSG] {}".into());
    replies.extend((20..30).map(write));
    replies.push("[SYS_CALL::SYS_EXIT] {}".into());
    let refs: Vec<&str> = replies.iter().map(String::as_str).collect();
    let mut events = a.kernel.subscribe();
    let pid = a.spawn("long", &refs, &["ipc"]).await;
    a.wait_status(pid, "BlockedRecv").await;
    assert_eq!(a.rec.rejected.lock().len(), 1, "the first kernel shrank the window once");
    // What a journal holds: the compaction point and the shrunk window.
    let mut req = RestoreRequest::new(a.kernel.info(pid).unwrap());
    req.log = a.kernel.logs(pid).unwrap();
    req.next_call_id = next_call_id(&req.log) + 1;
    while let Ok(ev) = events.try_recv() {
        match ev {
            aos_kernel::KernelEvent::Compacted { entries, context_start, .. } => {
                req.compacted += entries;
                req.context_start = context_start;
            }
            aos_kernel::KernelEvent::ContextShrunk { window, .. } => req.context_window = Some(window),
            _ => {}
        }
    }
    assert!(req.context_window.is_some() && req.context_start > 0);
    // The journal's JSON form carries it; older journals without it load.
    let json = serde_json::to_value(&req).unwrap();
    assert_eq!(serde_json::from_value::<RestoreRequest>(json.clone()).unwrap(), req);
    let mut old = json;
    old.as_object_mut().unwrap().remove("context_window");
    assert_eq!(serde_json::from_value::<RestoreRequest>(old).unwrap().context_window, None);
    a.kernel.kill(pid).unwrap();
    a.wait(pid).await;

    let b = harness().await;
    *b.rec.limit.lock() = Some(limit);
    b.kernel.restore(req.clone(), vec![]).await.unwrap();
    assert!(matches!(b.wait(pid).await, ExitStatus::Exited { code: 0, .. }), "{:#?}", b.kernel.logs(pid));
    // The restored process went on with the shrunk window: no prompt was rejected.
    assert!(b.rec.rejected.lock().is_empty(), "{:?}", b.rec.rejected.lock());
    assert_eq!(b.requests(pid).len(), 11);
    assert!(b.seen(pid, 0).contains("earlier entries compacted ...]"));
}

/// A journal in memory: every event encoded with the kernel's line codec
/// (as the file journal writes it) and durable at once.
#[derive(Default)]
pub(crate) struct MemJournal {
    pub(crate) lines: parking_lot::Mutex<Vec<Vec<u8>>>,
    watch: aos_kernel::DurabilityWatch,
}

impl aos_kernel::Journal for MemJournal {
    fn append(&self, ev: &aos_kernel::KernelEvent) -> aos_kernel::Lsn {
        let line = aos_kernel::codec::encode(ev).expect("every event encodes");
        let lsn = {
            let mut l = self.lines.lock();
            l.push(line);
            l.len() as u64
        };
        self.watch.publish_durable(lsn);
        lsn
    }
    fn appended(&self) -> aos_kernel::Lsn {
        self.lines.lock().len() as u64
    }
    fn watch(&self) -> &aos_kernel::DurabilityWatch {
        &self.watch
    }
    fn snapshot(&self) {}
    fn replay(&self) -> Result<aos_kernel::Replay, aos_kernel::JournalError> {
        let mut r = aos_kernel::Replay::new();
        for l in self.lines.lock().iter() {
            let ev: aos_kernel::KernelEvent =
                aos_kernel::codec::decode(l).map_err(|e| aos_kernel::JournalError(format!("{e}: {}", String::from_utf8_lossy(l))))?;
            r.apply(&ev);
        }
        Ok(r)
    }
}

/// What must be equal between a live process and its replay (fields that
/// change without an event — the remaining wall time, the last-activity
/// clock — and queued input, which only the journal knows, are left out).
fn comparable(mut r: RestoreRequest) -> RestoreRequest {
    r.info.remaining = Default::default();
    r.info.counters.last_activity_ms = 0;
    r.pending = Default::default();
    r
}

/// One scripted step of a random agent.
fn step_text(kind: u8, text: &str, depth: usize, other: u64, me: u64) -> String {
    let mut nested = serde_json::json!(text);
    for _ in 0..depth {
        nested = serde_json::json!([nested]);
    }
    let j = |v: serde_json::Value| v.to_string();
    match kind % 9 {
        0 => format!("[SYS_CALL::SYS_WRITE_STDOUT] {}", j(serde_json::json!({"text": text}))),
        1 => format!("[SYS_CALL::FS_WRITE] {}", j(serde_json::json!({"path": format!("f{me}.txt"), "content": text, "append": true}))),
        2 => format!("[SYS_CALL::NO_SUCH_CALL] {}", j(serde_json::json!({"deep": nested}))),
        3 => format!("[SYS_CALL::SEND_MSG] {}", j(serde_json::json!({"to_pid": other, "content": text}))),
        4 => r#"[SYS_CALL::RECV_MSG] {"timeout": 0.01}"#.to_string(),
        5 => format!("[SYS_CALL::SYS_SCHEDULE] {}", j(serde_json::json!({"seconds": 0.01, "prompt": text}))),
        6 => format!("thinking about {text} without calling anything"),
        7 => format!("[SYS_CALL::SYS_REGISTER_WEBHOOK] {{\"path\": \"/p{me}/x\"}}\n[SYS_CALL::SYS_WRITE_STDOUT] {{\"text\": 5}}"),
        _ => format!("[SYS_CALL::FS_READ] {}", j(serde_json::json!({"path": format!("f{me}.txt")}))),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    /// Replaying the journal of any run (random agents: stdout, files,
    /// unknown calls with deeply nested arguments, messages, timers,
    /// webhooks, exits, processes left blocked) gives back the state of
    /// every process, and restoring it in a new kernel rebuilds them as they were.
    #[test]
    fn replaying_a_recorded_run_restores_the_same_state(
        agents in proptest::collection::vec(
            (proptest::collection::vec((0u8..9, "\\PC{0,12}", 0usize..127), 1..6), proptest::prelude::any::<bool>(), -3i64..4),
            1..4,
        )
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let a = harness().await;
            let journal = std::sync::Arc::new(MemJournal::default());
            assert!(a.kernel.attach_journal(journal.clone()));
            let n = agents.len() as u64;
            let mut pids = Vec::new();
            for (i, (steps, exits, code)) in agents.iter().enumerate() {
                let me = i as u64 + 1;
                let mut replies: Vec<String> =
                    steps.iter().map(|(k, t, d)| step_text(*k, t, *d, me % n + 1, me)).collect();
                replies.push(if *exits {
                    format!("[SYS_CALL::SYS_EXIT] {}", serde_json::json!({"code": code, "result": {"n": code}}))
                } else {
                    "[SYS_CALL::RECV_MSG] {}".to_string()
                });
                let refs: Vec<&str> = replies.iter().map(String::as_str).collect();
                pids.push(a.spawn("random", &refs, &["fs:rw", "ipc", "timers", "webhook"]).await);
            }
            // Quiescent: nothing journalled for a while.
            let mut last = usize::MAX;
            let mut still = 0;
            for _ in 0..400 {
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                let now = journal.lines.lock().len();
                still = if now == last { still + 1 } else { 0 };
                last = now;
                if still >= 6 {
                    break;
                }
            }
            assert!(still >= 6, "the run never settled");
            let replay = aos_kernel::Journal::replay(&*journal).unwrap();
            assert_eq!(replay.procs.len(), pids.len());
            for &pid in &pids {
                let live = comparable(a.kernel.checkpoint(pid).unwrap());
                let replayed = comparable(replay.procs[&pid].clone());
                assert_eq!(replayed, live, "pid {pid}");
                assert!(replayed.is_complete());
            }
            // Restored in a new kernel: the ended ones are exactly as they were.
            let b = harness().await;
            let report = b.kernel.recover(replay.clone()).await;
            assert!(!report.iter().any(|l| l.contains("not resumed")), "{report:?}");
            for &pid in &pids {
                if replay.procs[&pid].exit.is_some() {
                    let restored = comparable(b.kernel.checkpoint(pid).unwrap());
                    assert_eq!(restored, comparable(replay.procs[&pid].clone()), "restored pid {pid}");
                    assert_eq!(b.kernel.exit_status(pid).unwrap(), replay.procs[&pid].exit);
                }
            }
            for p in a.kernel.ps() {
                let _ = a.kernel.kill(p.pid);
            }
            for p in b.kernel.ps() {
                let _ = b.kernel.kill(p.pid);
            }
        });
    }
}
