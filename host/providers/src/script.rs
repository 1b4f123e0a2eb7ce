//! Script provider for deterministic runs: the request's `model` is the path
//! of a script file whose replies each process (keyed by `pid`) replays in
//! order, one per call. Owns the file formats (`.json` = array of strings;
//! otherwise replies separated by lines that are exactly `---`), the parsed
//! file cache and the per-process cursors. A script is read only from a
//! regular file of at most [`MAX_SCRIPT_BYTES`], opened without blocking (a
//! FIFO or device named as the model is refused, never read).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;

use crate::{estimated_usage, Completion, CompletionRequest, ModelProgress, ProgressSink, Provider, ProviderError};

const NAME: &str = "script";

/// The largest script file the provider reads.
pub const MAX_SCRIPT_BYTES: u64 = 16 << 20;

/// One parsed script file, with the modification time and size it had.
struct Script {
    replies: Arc<Vec<String>>,
    modified: Option<SystemTime>,
    len: u64,
}

#[derive(Default)]
struct State {
    /// Parsed files by path (re-parsed when the file's mtime or size changes).
    cache: HashMap<PathBuf, Script>,
    /// Next reply index per (pid, script path).
    cursors: HashMap<(u64, PathBuf), usize>,
    /// Where a restored process's cursor starts (its model calls so far).
    resumed: HashMap<u64, usize>,
}

/// Replays scripted replies; see the module docs for the file formats.
#[derive(Default)]
pub struct ScriptProvider {
    state: Mutex<State>,
}

impl ScriptProvider {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State inconsistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn load(&self, path: &Path) -> Result<Arc<Vec<String>>, ProviderError> {
        let unreadable = |e: std::io::Error| {
            ProviderError::UnknownModel {
            provider: NAME.to_string(),
            model: path.display().to_string(),
            detail: format!("cannot read the script file: {e} (the script provider's model is a path to a script)"),
        }
        };
        let meta = tokio::fs::metadata(path).await.map_err(unreadable)?;
        let modified = meta.modified().ok();
        let len = meta.len();
        {
            let state = self.lock();
            if let Some(s) = state.cache.get(path) {
                if s.modified == modified && s.len == len && modified.is_some() {
                    return Ok(s.replies.clone());
                }
            }
        }
        let bytes = read_capped(path).await.map_err(unreadable)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            ProviderError::Other(format!("script {} is not valid UTF-8", path.display()))
        })?;
        let replies = Arc::new(parse_script(path, &text)?);
        self.lock().cache.insert(
            path.to_path_buf(),
            Script {
                replies: replies.clone(),
                modified,
                len,
            },
        );
        Ok(replies)
    }
}

/// Reads a script file: opened with `O_NONBLOCK` (opening a FIFO does not
/// wait for a writer), then refused unless the opened file is a regular file
/// of at most [`MAX_SCRIPT_BYTES`]; at most that many bytes are read.
async fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    let f = tokio::fs::OpenOptions::new().read(true).custom_flags(O_NONBLOCK).open(path).await?;
    let meta = f.metadata().await?;
    if !meta.is_file() {
        return Err(invalid("not a regular file".into()));
    }
    if meta.len() > MAX_SCRIPT_BYTES {
        return Err(invalid(format!("{} bytes, more than the {MAX_SCRIPT_BYTES}-byte limit of a script", meta.len())));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_SCRIPT_BYTES + 1).read_to_end(&mut bytes).await?;
    if bytes.len() as u64 > MAX_SCRIPT_BYTES {
        return Err(invalid(format!("more than the {MAX_SCRIPT_BYTES}-byte limit of a script")));
    }
    Ok(bytes)
}

/// `O_NONBLOCK` on Linux (every architecture AgentOS builds for).
const O_NONBLOCK: i32 = 0o4000;

/// Parses a script: `.json` files hold a JSON array of strings; any other
/// file holds replies separated by lines consisting solely of `---`. Each
/// reply is trimmed of surrounding whitespace; an empty part after the last
/// separator (a trailing `---`) is ignored.
pub fn parse_script(path: &Path, text: &str) -> Result<Vec<String>, ProviderError> {
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        return serde_json::from_str::<Vec<String>>(text).map_err(|e| {
            ProviderError::Other(format!(
                "script {} is not a JSON array of strings: {e}",
                path.display()
            ))
        });
    }
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut replies = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.trim_end_matches('\r') == "---" {
            replies.push(current.join("\n").trim().to_string());
            current.clear();
        } else {
            current.push(line);
        }
    }
    let last = current.join("\n").trim().to_string();
    if !last.is_empty() {
        replies.push(last);
    }
    Ok(replies)
}

#[async_trait]
impl Provider for ScriptProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn model_is_file(&self, _model: &str) -> bool {
        true
    }

    async fn complete(&self, req: CompletionRequest) -> Result<Completion, ProviderError> {
        if req.model.trim().is_empty() {
            return Err(ProviderError::UnknownModel {
                provider: NAME.to_string(),
                model: String::new(),
                detail: "the script provider needs the model to be a path to a script file"
                    .to_string(),
            });
        }
        let path = PathBuf::from(&req.model);
        let replies = self.load(&path).await?;
        let index = {
            let mut state = self.lock();
            let start = state.resumed.get(&req.pid).copied().unwrap_or(0);
            let cursor = state.cursors.entry((req.pid, path.clone())).or_insert(start);
            let index = *cursor;
            if index < replies.len() {
                *cursor += 1;
            }
            index
        };
        let Some(text) = replies.get(index).cloned() else {
            return Err(ProviderError::Other(format!(
                "script {} is exhausted: it has {} repl{}, and process {} asked for reply {}",
                path.display(),
                replies.len(),
                if replies.len() == 1 { "y" } else { "ies" },
                req.pid,
                index + 1
            )));
        };
        let usage = estimated_usage(&req.messages, &text);
        // A replayed reply costs nothing to make; its estimated sizes are
        // reported as a model reports its progress, so the live views
        // (`aos logs -f`, `aos top`) can be tested deterministically.
        let (prompt, reply) = (usage.prompt_tokens, usage.completion_tokens);
        ProgressSink::send(&req.on_progress, ModelProgress::Prompt { done: prompt, total: prompt });
        ProgressSink::send(
            &req.on_progress,
            ModelProgress::Generating { prompt_tokens: prompt, tokens: reply, tokens_per_s: 0.0 },
        );
        Ok(Completion {
        tool_calls: Vec::new(),
            text,
            usage,
            truncated: false,
        })
    }

    fn release(&self, pid: u64) {
        let mut state = self.lock();
        state.cursors.retain(|(p, _), _| *p != pid);
        state.resumed.remove(&pid);
    }

    /// A restored process continues at reply `steps_done + 1`.
    fn resume(&self, pid: u64, steps_done: u64) {
        let mut state = self.lock();
        state.cursors.retain(|(p, _), _| *p != pid);
        state.resumed.insert(pid, steps_done as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separator_format() {
        let p = Path::new("s.txt");
        let r = parse_script(p, "one\n---\ntwo\nlines\n---\n\n---\nfour\n---\n").unwrap();
        assert_eq!(r, vec!["one", "two\nlines", "", "four"]);
        assert_eq!(
            parse_script(p, "a --- b\n----\nc").unwrap(),
            vec!["a --- b\n----\nc"]
        );
        assert_eq!(
            parse_script(p, "a\r\n---\r\nb\r\n").unwrap(),
            vec!["a", "b"]
        );
        assert!(parse_script(p, "  \n").unwrap().is_empty());
    }

    #[tokio::test]
    async fn resume_continues_after_the_steps_done() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("s.txt");
        std::fs::write(&path, "one\n---\ntwo\n---\nthree\n").unwrap();
        let p = ScriptProvider::new();
        let req = |pid| CompletionRequest {
            model: path.display().to_string(),
            messages: vec![],
            max_tokens: None,
            temperature: None,
            syscalls: Default::default(),
            tools: false,
            pid,
            on_text: None,
            on_progress: None,
        };
        p.resume(7, 2);
        assert_eq!(p.complete(req(7)).await.unwrap().text, "three");
        assert_eq!(p.complete(req(8)).await.unwrap().text, "one");
        p.release(7);
        assert_eq!(p.complete(req(7)).await.unwrap().text, "one");
    }

    #[tokio::test]
    async fn only_regular_files_within_the_size_cap_are_read() {
        let d = tempfile::tempdir().unwrap();
        let p = ScriptProvider::new();
        let ask = |model: &str| CompletionRequest { model: model.to_string(), ..Default::default() };
        let fifo = d.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let big = d.path().join("big.txt");
        std::fs::write(&big, vec![b'a'; MAX_SCRIPT_BYTES as usize + 1]).unwrap();
        for (model, why) in [
            ("/dev/zero", "not a regular file"),
            (d.path().to_str().unwrap(), "not a regular file"),
            (fifo.to_str().unwrap(), "not a regular file"),
            (big.to_str().unwrap(), "byte limit of a script"),
        ] {
            let e = tokio::time::timeout(std::time::Duration::from_secs(5), p.complete(ask(model)))
                .await
                .expect("refused at once, without blocking")
                .unwrap_err()
                .to_string();
            assert!(e.contains("cannot read the script file") && e.contains(why), "{model}: {e}");
        }
    }

    #[test]
    fn json_format() {
        let p = Path::new("s.JSON");
        assert_eq!(
            parse_script(p, r#"["a", "b\n---\nc"]"#).unwrap(),
            vec!["a", "b\n---\nc"]
        );
        assert!(matches!(
            parse_script(p, "[1]"),
            Err(ProviderError::Other(_))
        ));
    }
}
