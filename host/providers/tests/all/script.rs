//! Script provider: both file formats, per-pid replay, exhaustion, missing
//! files, release, and the file cache.

use std::path::Path;

use aos_providers::{
    build_provider, estimate_tokens, CompletionRequest, Message, Provider, ProviderConfig,
    ProviderError, Role,
};

fn req(path: &Path, pid: u64) -> CompletionRequest {
    CompletionRequest {
        model: path.display().to_string(),
        messages: vec![Message::new(Role::User, "what now?")],
        pid,
        ..Default::default()
    }
}

fn script_provider() -> std::sync::Arc<dyn Provider> {
    build_provider(&ProviderConfig::new("script")).expect("build")
}

#[tokio::test]
async fn separator_format_replays_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.txt");
    std::fs::write(
        &path,
        "first reply\n---\n{\"syscall\": \"fs.read\"}\nsecond line\n---\nthird\n",
    )
    .unwrap();
    let p = script_provider();
    assert_eq!(p.name(), "script");
    let a = p.complete(req(&path, 1)).await.unwrap();
    assert_eq!(a.text, "first reply");
    assert!(a.usage.estimated);
    assert!(!a.truncated);
    assert_eq!(a.usage.prompt_tokens, estimate_tokens("what now?"));
    assert_eq!(a.usage.completion_tokens, estimate_tokens("first reply"));
    assert_eq!(
        p.complete(req(&path, 1)).await.unwrap().text,
        "{\"syscall\": \"fs.read\"}\nsecond line"
    );
    assert_eq!(p.complete(req(&path, 1)).await.unwrap().text, "third");
}

#[tokio::test]
async fn json_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.json");
    std::fs::write(&path, r#"["one", "two\n---\nstill two"]"#).unwrap();
    let p = script_provider();
    assert_eq!(p.complete(req(&path, 7)).await.unwrap().text, "one");
    assert_eq!(
        p.complete(req(&path, 7)).await.unwrap().text,
        "two\n---\nstill two"
    );
}

#[tokio::test]
async fn invalid_json_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, r#"{"not": "an array"}"#).unwrap();
    let err = script_provider().complete(req(&path, 1)).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("bad.json") && msg.contains("JSON array of strings"),
        "{msg}"
    );
}

#[tokio::test]
async fn each_pid_has_its_own_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.txt");
    std::fs::write(&path, "a\n---\nb\n---\nc").unwrap();
    let p = script_provider();
    assert_eq!(p.complete(req(&path, 1)).await.unwrap().text, "a");
    assert_eq!(p.complete(req(&path, 1)).await.unwrap().text, "b");
    assert_eq!(p.complete(req(&path, 2)).await.unwrap().text, "a");
    assert_eq!(p.complete(req(&path, 1)).await.unwrap().text, "c");
    assert_eq!(p.complete(req(&path, 2)).await.unwrap().text, "b");
}

#[tokio::test]
async fn exhaustion_names_file_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.txt");
    std::fs::write(&path, "only\n---\ntwo").unwrap();
    let p = script_provider();
    p.complete(req(&path, 3)).await.unwrap();
    p.complete(req(&path, 3)).await.unwrap();
    for _ in 0..2 {
        let err = p.complete(req(&path, 3)).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("2 replies"), "{msg}");
        assert!(msg.contains("reply 3"), "{msg}");
    }
}

#[tokio::test]
async fn release_restarts_the_pid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.txt");
    std::fs::write(&path, "a\n---\nb").unwrap();
    let p = script_provider();
    assert_eq!(p.complete(req(&path, 5)).await.unwrap().text, "a");
    assert_eq!(p.complete(req(&path, 6)).await.unwrap().text, "a");
    p.release(5);
    assert_eq!(p.complete(req(&path, 5)).await.unwrap().text, "a");
    assert_eq!(p.complete(req(&path, 6)).await.unwrap().text, "b");
}

#[tokio::test]
async fn missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.txt");
    let err = script_provider().complete(req(&path, 1)).await.unwrap_err();
    match &err {
        ProviderError::UnknownModel {
            provider,
            model,
            detail,
        } => {
            assert_eq!(provider, "script");
            assert_eq!(model, &path.display().to_string());
            assert!(detail.contains("cannot read"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("nope.txt"));
}

#[tokio::test]
async fn parsed_files_are_cached_until_modified() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.txt");
    std::fs::write(&path, "a\n---\nb").unwrap();
    let p = script_provider();
    assert_eq!(p.complete(req(&path, 1)).await.unwrap().text, "a");
    // Rewriting the file with a new mtime is picked up by the next call.
    std::fs::write(&path, "x\n---\ny\n---\nz").unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert_eq!(p.complete(req(&path, 1)).await.unwrap().text, "y");
    assert_eq!(p.complete(req(&path, 1)).await.unwrap().text, "z");
}
