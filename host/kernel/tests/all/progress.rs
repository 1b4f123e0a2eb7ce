//! A model call's progress ([`aos_kernel::KernelEvent::ModelProgress`]):
//! what a provider reports reaches the live event stream rate-limited (every
//! change of phase, at most ten a second within one), shows in the
//! process's info while it waits on its model, and is never journalled nor
//! replayed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_kernel::{ExitStatus, Kernel, KernelConfig, KernelEvent, ProcessStatus, SpawnRequest};
use aos_providers::{Completion, CompletionRequest, ModelProgress, ProgressSink, Provider, ProviderError, Usage};
use async_trait::async_trait;

use crate::restore::MemJournal;

/// A model that reports its progress as a local model does — loading, a
/// prompt in 40 batches, then 30 tokens, 5 ms apart — then waits until the
/// test lets it answer (`go`), and exits the process.
struct Reporting {
    go: tokio::sync::Semaphore,
}

#[async_trait]
impl Provider for Reporting {
    fn name(&self) -> &str {
        "reporting"
    }
    async fn complete(&self, req: CompletionRequest) -> Result<Completion, ProviderError> {
        let p = &req.on_progress;
        ProgressSink::send(p, ModelProgress::Loading { what: "model.gguf".into() });
        for k in 0..=40 {
            ProgressSink::send(p, ModelProgress::Prompt { done: k * 10, total: 400 });
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for k in 1..=30 {
            ProgressSink::send(p, ModelProgress::Generating { prompt_tokens: 400, tokens: k, tokens_per_s: 200.0 });
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.go.acquire().await.expect("never closed").forget();
        Ok(Completion {
            text: "[SYS_CALL::SYS_EXIT] {\"code\": 0}".into(),
            tool_calls: Vec::new(),
            usage: Usage { prompt_tokens: 400, completion_tokens: 30, ..Usage::default() },
            truncated: false,
        })
    }
}

#[tokio::test]
async fn progress_reaches_followers_rate_limited_and_is_never_journalled() {
    let dir = tempfile::tempdir().unwrap();
    let model = Arc::new(Reporting { go: tokio::sync::Semaphore::new(0) });
    let m2 = model.clone();
    let k = Kernel::new(
        KernelConfig::new(dir.path()),
        vec![crate::support::backend().await],
        Arc::new(move |_: &str, _: Option<&str>| Ok(m2.clone() as Arc<dyn Provider>)),
    );
    let journal = Arc::new(MemJournal::default());
    assert!(k.attach_journal(journal.clone()));
    let mut rx = k.subscribe();
    let started = Instant::now();
    let pid = k
        .spawn(SpawnRequest { task: "t".into(), provider: "reporting".into(), model: "m".into(), ..Default::default() })
        .await
        .unwrap();

    // While it waits on its model, its info says how far the call is.
    let deadline = Instant::now() + Duration::from_secs(20);
    let info = loop {
        let info = k.info(pid).unwrap();
        if matches!(info.model_progress, Some(ModelProgress::Generating { tokens: 30, .. })) {
            break info;
        }
        assert!(Instant::now() < deadline, "no progress in the process's info: {info:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(info.status, ProcessStatus::WaitingModel);
    let reporting = started.elapsed();
    model.go.add_permits(1);
    assert_eq!(k.wait(pid).await.unwrap(), ExitStatus::Exited { code: 0, result: None });
    assert_eq!(k.info(pid).unwrap().model_progress, None, "the reply ends the progress");

    // On the bus: every phase in order, before the reply; rate-limited.
    let mut seen: Vec<ModelProgress> = Vec::new();
    let mut reply_after = None;
    while let Ok(ev) = rx.try_recv() {
        match ev {
            KernelEvent::ModelProgress { pid: p, progress } if p == pid => seen.push(progress),
            KernelEvent::Entry { entry } if entry.pid == pid && matches!(entry.entry, aos_kernel::Entry::Reply { .. }) => {
                reply_after.get_or_insert(seen.len());
            }
            _ => {}
        }
    }
    assert_eq!(reply_after, Some(seen.len()), "progress comes before the reply: {seen:?}");
    let phases: Vec<&str> = seen.iter().map(ModelProgress::phase).collect();
    let mut distinct = phases.clone();
    distinct.dedup();
    assert_eq!(distinct, ["loading", "prompt", "generating"], "{phases:?}");
    assert_eq!(seen[1], ModelProgress::Prompt { done: 0, total: 400 }, "a new phase goes out at once");
    // 72 reports over `reporting`: at most one per 100 ms per phase, plus each phase's first.
    let most = (reporting.as_millis() / 100) as usize + 3;
    assert!(seen.len() <= most && seen.len() < 72, "{} events in {reporting:?}, at most {most}: {seen:?}", seen.len());

    // Never journalled; the replay rebuilds the process without it.
    let lines = journal.lines.lock().clone();
    assert!(!lines.is_empty());
    for l in &lines {
        let text = String::from_utf8_lossy(l);
        assert!(!text.contains("model_progress") && !text.contains("generating"), "journalled: {text}");
    }
    let replay = aos_kernel::Journal::replay(&*journal).unwrap();
    let restored = &replay.procs[&pid];
    assert_eq!(restored.info.model_progress, None);
    assert_eq!(restored.log, k.logs(pid).unwrap());
}

/// The script provider reports a replayed reply's estimated prompt and
/// reply sizes (what `aos logs -f` tests through the daemon rely on); once
/// the step is done, nothing is left in the process's info.
#[tokio::test]
async fn scripted_replies_report_their_sizes() {
    let h = crate::support::harness().await;
    let mut rx = h.kernel.subscribe();
    let pid = h.spawn("t", &["[SYS_CALL::SYS_EXIT] {\"code\": 0}"], &[]).await;
    h.wait(pid).await;
    let mut phases = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        if let KernelEvent::ModelProgress { progress, .. } = ev {
            phases.push(progress.phase());
        }
    }
    assert_eq!(phases, ["prompt", "generating"]);
    assert_eq!(h.kernel.info(pid).unwrap().model_progress, None);
}
