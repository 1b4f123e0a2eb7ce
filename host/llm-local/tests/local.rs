//! Tests of the `local` provider on the real model (SmolLM2-135M, fetched by
//! `scripts/fetch-model.sh`). Without the model they print a loud SKIPPED
//! line, and fail when `CI` is set.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use aos_llm_local::{CacheSource, Decoding, LocalConfig, LocalProvider, MODEL_FILE_NAME, MODEL_SIZE};
use aos_providers::{CompletionRequest, Message, Provider, Role};

fn provider(dir: &std::path::Path) -> LocalProvider {
    LocalProvider::new(LocalConfig { model_dir: dir.to_path_buf(), ..LocalConfig::default() })
}

fn model_dir() -> Option<std::path::PathBuf> {
    common::model_or_skip("test").map(|p| p.parent().unwrap().to_path_buf())
}

#[test]
fn every_eval_task_gets_one_allowed_schema_valid_syscall() {
    let Some(dir) = model_dir() else { return };
    let p = provider(&dir);
    // One pid per capability set: the shared system prompt stays in the KV cache.
    let mut pids: HashMap<Vec<String>, u64> = HashMap::new();
    let mut bad = Vec::new();
    let tasks = common::load_tasks();
    for task in &tasks {
        let n = pids.len() as u64;
        let pid = *pids.entry(task.caps.clone()).or_insert(100 + n);
        let mut req = common::request(pid, task);
        // Room for a whole haiku or story in FS_WRITE's content.
        req.max_tokens = Some(320);
        let out = p.complete_blocking(req.clone()).expect("completion");
        assert!(!out.usage.estimated);
        let c = common::check(&out.text, &req.syscalls);
        if !(c.well_formed && c.valid) || out.truncated {
            bad.push(format!("{}: {:?} -> {:?} (truncated: {})", task.task, out.text, c.problem, out.truncated));
        }
    }
    assert!(bad.is_empty(), "{} of {} replies were not a single valid call:\n{}", bad.len(), tasks.len(), bad.join("\n"));
}

fn step_request(pid: u64, messages: Vec<Message>, task: &common::Task) -> CompletionRequest {
    let mut r = common::request(pid, task);
    r.messages = messages;
    r
}

/// Two-stage decoding, so that both steps run the model (with the default
/// decoding the plan builds these replies without evaluating the prompt).
fn model_provider(dir: &std::path::Path, max_live_contexts: usize) -> LocalProvider {
    LocalProvider::new(LocalConfig { model_dir: dir.to_path_buf(), max_live_contexts, decoding: Decoding::TwoStage, ..LocalConfig::default() })
}

#[test]
fn second_step_evaluates_only_the_new_tokens() {
    let Some(dir) = model_dir() else { return };
    let p = model_provider(&dir, 4);
    let task = common::Task { task: "Write a haiku about the sea to sea.txt".into(), caps: vec!["fs:rw".into()], expect: vec![], history: vec![] };
    let r1 = common::request(7, &task);
    let out1 = p.complete_blocking(r1.clone()).unwrap();
    let s1 = p.last_stats(7).unwrap();
    assert_eq!(s1.cache, CacheSource::Fresh);
    assert_eq!(s1.prompt_reused, 0);
    assert_eq!(s1.prompt_evaluated, s1.prompt_tokens);
    assert_eq!(out1.usage.prompt_tokens, s1.prompt_tokens as u64);
    assert_eq!(out1.usage.completion_tokens, s1.generated_tokens as u64);

    let mut msgs = r1.messages.clone();
    msgs.push(Message::new(Role::Assistant, out1.text.clone()));
    msgs.push(Message::new(Role::User, "[RESULT FS_WRITE#1] {\"path\": \"sea.txt\", \"bytes\": 42}"));
    let out2 = p.complete_blocking(step_request(7, msgs, &task)).unwrap();
    let s2 = p.last_stats(7).unwrap();
    eprintln!("step1 {s1:?}\nstep2 {s2:?}\nreply2 {}", out2.text);
    assert_eq!(s2.cache, CacheSource::Live);
    // Everything of step 1's prompt is reused; only the reply (re-tokenized)
    // and the result message are new.
    assert!(s2.prompt_reused >= s1.prompt_tokens, "{s2:?}");
    assert!(s2.prompt_evaluated < 80, "{s2:?}");
    assert_eq!(s2.prompt_reused + s2.prompt_evaluated, s2.prompt_tokens);
}

#[test]
fn evicted_process_state_is_restored_not_recomputed() {
    let Some(dir) = model_dir() else { return };
    let p = model_provider(&dir, 1);
    let a = common::Task { task: "List the files in the workspace".into(), caps: vec!["fs:ro".into()], expect: vec![], history: vec![] };
    let b = common::Task { task: "Sleep for 3 seconds".into(), caps: vec!["timers".into()], expect: vec![], history: vec![] };
    let ra = common::request(1, &a);
    let outa = p.complete_blocking(ra.clone()).unwrap();
    p.complete_blocking(common::request(2, &b)).unwrap();
    assert_eq!(p.cache_info("default").unwrap().1, 1, "process 1 was parked");
    let mut msgs = ra.messages.clone();
    msgs.push(Message::new(Role::Assistant, outa.text));
    msgs.push(Message::new(Role::User, "[RESULT FS_LIST#1] {\"path\": \".\", \"entries\": [], \"total\": 0}"));
    p.complete_blocking(step_request(1, msgs, &a)).unwrap();
    let s = p.last_stats(1).unwrap();
    eprintln!("{s:?}");
    assert_eq!(s.cache, CacheSource::Restored);
    assert!(s.prompt_reused > 500, "{s:?}");
    p.release_pid(1);
    p.release_pid(2);
    let (live, parked, bytes) = p.cache_info("default").unwrap();
    assert_eq!((live, parked, bytes), (1, 0, 0));
}

#[test]
fn hitting_max_tokens_is_reported_as_truncated() {
    let Some(dir) = model_dir() else { return };
    let p = provider(&dir);
    let task = common::Task { task: "Write a long essay about rivers to rivers.txt".into(), caps: vec!["fs:rw".into()], expect: vec![], history: vec![] };
    let mut r = common::request(3, &task);
    r.max_tokens = Some(12);
    let out = p.complete_blocking(r).unwrap();
    assert!(out.truncated, "{out:?}");
    assert_eq!(out.usage.completion_tokens, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_provider_reports_real_usage() {
    let Some(dir) = model_dir() else { return };
    // The model's own reply (the plan would build this one without it).
    let p: Arc<dyn Provider> = Arc::new(model_provider(&dir, 4));
    assert_eq!(p.name(), "local");
    let task = common::Task { task: "Print hello to the user".into(), caps: vec![], expect: vec![], history: vec![] };
    let req = common::request(9, &task);
    let specs = req.syscalls.clone();
    let out = p.complete(req).await.unwrap();
    assert!(!out.usage.estimated);
    assert!(out.usage.prompt_tokens > 100 && out.usage.completion_tokens > 3, "{out:?}");
    let c = common::check(&out.text, &specs);
    assert!(c.valid, "{out:?} {c:?}");
    p.release(9);
}

#[test]
fn prompt_beyond_n_ctx_is_a_context_overflow() {
    let Some(dir) = model_dir() else { return };
    let p = LocalProvider::new(LocalConfig { model_dir: dir, n_ctx: 1024, ..LocalConfig::default() });
    // n_ctx minus room for a reply (default_max_tokens 512, at most n_ctx / 4).
    assert_eq!(p.context_window("default"), Some(1024 - 256));
    assert_eq!(LocalConfig::default().context_window(), 8192 - 512);
    let task = common::Task { task: "Print hello to the user".into(), caps: vec![], expect: vec![], history: vec![] };
    let mut req = common::request(11, &task);
    req.messages.push(Message::new(
        Role::User,
        format!("[RESULT SYS_WRITE_STDOUT#1] {{\"text\": \"{}\"}}", "the sea is wide and deep. ".repeat(150)),
    ));
    let err = p.complete_blocking(req).unwrap_err();
    match &err {
        aos_providers::ProviderError::ContextOverflow { provider, prompt_tokens, limit } => {
            assert_eq!(provider, "local");
            assert_eq!(*limit, 1024 - 16);
            assert!(*prompt_tokens > 1024, "{err:?}");
        }
        other => panic!("expected ContextOverflow, got {other:?}"),
    }
    assert!(err.to_string().contains("larger n_ctx"), "{err}");
    // The same process goes on once its prompt fits.
    let out = p.complete_blocking(common::request(11, &task)).expect("a prompt that fits");
    assert!(out.usage.prompt_tokens < 1008, "{out:?}");
}

fn err_of(p: &LocalProvider) -> String {
    let task = common::Task { task: "x".into(), caps: vec![], expect: vec![], history: vec![] };
    p.complete_blocking(common::request(1, &task)).unwrap_err().to_string()
}

#[test]
fn missing_model_file_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let e = err_of(&provider(dir.path()));
    let want = format!("model file {} is missing: run scripts/fetch-model.sh", dir.path().join(MODEL_FILE_NAME).display());
    assert_eq!(e, want);
}

#[test]
fn corrupt_model_file_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(MODEL_FILE_NAME);
    let want = format!(
        "model file {} is corrupt (size/checksum mismatch): delete it and run scripts/fetch-model.sh",
        path.display()
    );
    // A copy of the real model when there is one, else a file of the right size.
    match aos_llm_local::default_model_path() {
        real if real.is_file() => {
            std::fs::copy(&real, &path).unwrap();
        }
        _ => std::fs::File::create(&path).unwrap().set_len(MODEL_SIZE).unwrap(),
    }
    // Same size, flipped bytes: caught by the checksum.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(MODEL_SIZE / 2)).unwrap();
        f.write_all(&[0xAA; 16]).unwrap();
    }
    assert_eq!(err_of(&provider(dir.path())), want);
    // Truncated: caught by the size.
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(MODEL_SIZE - 1000).unwrap();
    assert_eq!(err_of(&provider(dir.path())), want);
}

/// Later steps follow the task's plan (`aos_llm_local::plan`): after the
/// call that does the last clause succeeds, the next call is SYS_EXIT; after
/// the first clause of two, the second clause's syscall. Every reply of
/// `evals/next.jsonl` is a valid call.
#[test]
fn later_steps_follow_the_task_plan_and_exit_when_it_is_done() {
    let Some(dir) = model_dir() else { return };
    let p = provider(&dir);
    let must = [
        ("write a haiku about the sea to haiku.txt, then exit", "SYS_EXIT"),
        ("Save the number 42 in answer.txt", "SYS_EXIT"),
        ("Create the folder out, then write 'x' to out/a.txt", "FS_WRITE"),
        ("Ask the user for their name and greet them", "SYS_WRITE_STDOUT"),
    ];
    let tasks = common::load_task_file("next.jsonl");
    let mut bad = Vec::new();
    for (n, task) in tasks.iter().enumerate() {
        let mut req = common::request(300 + n as u64, task);
        req.max_tokens = Some(200);
        let out = p.complete_blocking(req.clone()).expect("completion");
        let c = common::check(&out.text, &req.syscalls);
        if !c.valid || out.truncated {
            bad.push(format!("{}: not a valid call: {:?} ({:?})", task.task, out.text, c.problem));
        }
        if let Some((_, want)) = must.iter().find(|(t, _)| *t == task.task) {
            if c.name.as_deref() != Some(*want) {
                bad.push(format!("{}: expected {want}, got {:?}", task.task, out.text));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The demo task's plan is FS_WRITE then SYS_EXIT; a two-clause task gets
/// its clauses' calls in order (listing shows the names it found).
#[test]
fn multi_clause_tasks_get_one_syscall_per_clause() {
    let Some(dir) = model_dir() else { return };
    let p = provider(&dir);
    let (_, fs) = common::specs_for(&["fs:rw".to_string()]);
    let plan = p.plan("default", "write a haiku about the sea to haiku.txt, then exit", &fs).unwrap();
    assert_eq!(plan, ["FS_WRITE", "SYS_EXIT"]);
    let plan = p.plan("default", "List the files in the workspace, then delete old.log", &fs).unwrap();
    assert_eq!(plan, ["FS_LIST", "SYS_WRITE_STDOUT", "FS_DELETE", "SYS_EXIT"]);
}

/// While it works the provider reports how far it is — loading the model
/// (first use), the prompt per batch, generating per token with tokens/s —
/// and streams the reply's text; the pieces make up the reply.
#[test]
fn progress_is_reported_and_the_reply_streams() {
    use aos_providers::{ModelProgress, ProgressSink, TextSink};
    use std::sync::Mutex;
    let Some(dir) = model_dir() else { return };
    let p = LocalProvider::new(LocalConfig { model_dir: dir, n_batch: 64, decoding: Decoding::TwoStage, ..LocalConfig::default() });
    let task = common::Task { task: "Write a haiku about the sea to sea.txt".into(), caps: vec!["fs:rw".into()], expect: vec![], history: vec![] };
    let mut req = common::request(9, &task);
    let reports = Arc::new(Mutex::new(Vec::new()));
    let pieces = Arc::new(Mutex::new(Vec::new()));
    let (r2, p2) = (reports.clone(), pieces.clone());
    req.on_progress = Some(ProgressSink::new(move |m| r2.lock().unwrap().push(m)));
    req.on_text = Some(TextSink::new(move |t| p2.lock().unwrap().push(t.to_string())));
    let out = p.complete_blocking(req).unwrap();
    let stats = p.last_stats(9).unwrap();
    let reports = reports.lock().unwrap().clone();
    let pieces = pieces.lock().unwrap().clone();

    assert_eq!(reports.first(), Some(&ModelProgress::Loading { what: MODEL_FILE_NAME.into() }), "{reports:?}");
    let prompt: Vec<(u64, u64)> = reports
        .iter()
        .filter_map(|m| match m {
            ModelProgress::Prompt { done, total } => Some((*done, *total)),
            _ => None,
        })
        .collect();
    // Batches of 64: the prompt's hundreds of tokens take several reports, the last one all of it.
    let total = u64::from(stats.prompt_tokens);
    assert!(prompt.len() as u64 > total / 64, "{prompt:?} for {total} tokens");
    assert!(prompt.iter().all(|&(d, t)| d <= t && t == total), "{prompt:?}");
    assert!(prompt.contains(&(total, total)), "{prompt:?}");
    let generating: Vec<(u64, u64, f64)> = reports
        .iter()
        .filter_map(|m| match m {
            ModelProgress::Generating { prompt_tokens, tokens, tokens_per_s } => Some((*prompt_tokens, *tokens, *tokens_per_s)),
            _ => None,
        })
        .collect();
    assert!(generating.len() > 3, "{reports:?}");
    assert!(generating.windows(2).all(|w| w[0].1 < w[1].1), "one report per token: {generating:?}");
    assert!(generating.iter().all(|g| g.0 == total && g.2 > 0.0), "{generating:?}");
    assert_eq!(reports.last().map(ModelProgress::phase), Some("generating"));
    assert_eq!(generating.last().unwrap().1, u64::from(stats.generated_tokens), "{stats:?}");

    assert!(pieces.len() > 3, "{pieces:?}");
    assert_eq!(pieces.concat(), out.text);

    // Loaded now: a second call reports no loading.
    let reports2 = Arc::new(Mutex::new(Vec::new()));
    let r3 = reports2.clone();
    let mut req = common::request(10, &task);
    req.on_progress = Some(ProgressSink::new(move |m| r3.lock().unwrap().push(m)));
    p.complete_blocking(req).unwrap();
    let reports2 = reports2.lock().unwrap();
    assert!(!reports2.iter().any(|m| m.phase() == "loading") && !reports2.is_empty(), "{reports2:?}");
}

/// A text the task asks to be composed (a haiku) is written by the model in
/// a turn of its own, under a grammar of three plain lines, and placed in
/// the call the plan builds: the reply is one valid FS_WRITE of the named
/// file, its pieces stream as it is made, and the process's prompt is not
/// evaluated at all.
#[test]
fn a_composed_text_is_placed_in_the_planned_call() {
    use aos_providers::TextSink;
    use std::sync::Mutex;
    let Some(dir) = model_dir() else { return };
    let p = provider(&dir);
    let task = common::Task {
        task: "write a haiku about the sea to haiku.txt, then exit".into(),
        caps: vec!["fs:rw".into()],
        expect: vec![],
        history: vec![],
    };
    let mut req = common::request(21, &task);
    let pieces = Arc::new(Mutex::new(Vec::new()));
    let p2 = pieces.clone();
    req.on_text = Some(TextSink::new(move |t| {
        p2.lock().unwrap().push(t.to_string())
    }));
    let out = p.complete_blocking(req.clone()).unwrap();
    let c = common::check(&out.text, &req.syscalls);
    assert!(
        c.valid && c.name.as_deref() == Some("FS_WRITE"),
        "{:?}: {:?}",
        out.text,
        c.problem
    );
    let call = aos_kernel::parse_reply(&out.text).remove(0).unwrap();
    assert_eq!(call.args["path"], "haiku.txt");
    let haiku = call.args["content"].as_str().unwrap();
    assert_eq!(haiku.lines().count(), 3, "{haiku:?}");
    assert!(!haiku.contains(['{', '}', '[', ']', '"']), "{haiku:?}");
    let pieces = pieces.lock().unwrap().clone();
    assert!(pieces.len() > 3, "{pieces:?}");
    assert_eq!(pieces.concat(), out.text);
    let s = p.last_stats(21).unwrap();
    assert_eq!(
        (s.cache, s.prompt_evaluated),
        (CacheSource::Unused, 0),
        "{s:?}"
    );
    assert_eq!(out.usage.completion_tokens, u64::from(s.generated_tokens));
    assert!(s.generated_tokens > 5, "{s:?}");

    // The budget of a request holds for a composed text too.
    let mut short = common::request(22, &task);
    short.max_tokens = Some(12);
    let out = p.complete_blocking(short).unwrap();
    assert!(
        out.truncated && out.usage.completion_tokens == 12,
        "{out:?}"
    );
}

/// However the syscall was chosen (here by scoring names, two-stage, the
/// way steps after an event are), a model-written FS_DELETE may only name a
/// file the task names: with a name the grammar offers only it, with none
/// the process exits 1 instead of deleting whatever the model invents.
#[test]
fn a_model_chosen_delete_names_only_a_file_the_task_names() {
    let Some(dir) = model_dir() else { return };
    let p = model_provider(&dir, 2);
    let run = |pid: u64, task: &str| {
        let t = common::Task { task: task.into(), caps: vec!["fs:rw".into()], expect: vec![], history: vec![] };
        let mut req = common::request(pid, &t);
        req.syscalls = req.syscalls.iter().filter(|s| s.name == "FS_DELETE").cloned().collect::<Vec<_>>().into();
        p.complete_blocking(req).unwrap().text
    };
    let named = run(31, "clean up by removing old.log");
    let call = aos_kernel::parse_reply(&named).remove(0).unwrap();
    assert_eq!((call.name.as_str(), &call.args["path"]), ("FS_DELETE", &serde_json::json!("old.log")), "{named}");
    let unnamed = run(32, "clean up the workspace");
    let call = aos_kernel::parse_reply(&unnamed).remove(0).unwrap();
    assert_eq!((call.name.as_str(), &call.args["code"]), ("SYS_EXIT", &serde_json::json!(1)), "{unnamed}");
    assert!(call.args["result"].as_str().unwrap().contains("names no file for FS_DELETE"), "{unnamed}");
}
