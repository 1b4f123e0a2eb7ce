//! What a model may choose for a child in `SPAWN_AGENT`'s `provider` and
//! `model`: the checks of the operator's [`SpawnPolicy`] (`[spawn]` in
//! aos.toml), made by `lifecycle::spawn` for every child. A child may keep
//! its parent's provider and model; anything else must be allowed by the
//! operator, `script` is never selectable by a model, and a model naming a
//! file (a script, a GGUF path) is resolved inside the operator's model
//! directory: a regular file reached without symlinks, outside every
//! workspace, size-capped. Processes the operator starts are not checked.

use std::path::{Component, Path, PathBuf};

use aos_providers::Provider;

use crate::config::SpawnPolicy;
use crate::error::KernelError;

impl SpawnPolicy {
    /// Checks the provider chosen for a child of a process running `own`.
    pub(crate) fn check_provider(&self, own: &str, provider: &str) -> Result<(), KernelError> {
        if provider == own {
            return Ok(());
        }
        if provider == "script" {
            return Err(KernelError::NotAllowed(
                "a model cannot choose the `script` provider (it replays files of the host); only the operator \
                 starts script processes (`aos run --provider script --model FILE`)"
                    .into(),
            ));
        }
        if !self.providers.iter().any(|p| p == provider) {
            return Err(KernelError::NotAllowed(format!(
                "provider `{provider}` is not allowed for a child: keep your own provider (`{own}`), or the operator \
                 must list it in `[spawn] providers` in aos.toml ({})",
                listed(&self.providers)
            )));
        }
        Ok(())
    }

    /// The model a child of a process running (`own_provider`, `own_model`)
    /// gets when `model` of `provider` was asked for: the same name, or for a
    /// file model, the file's path inside `model_dir`. `workspaces` are
    /// directories agents write to, where no model file may be.
    pub(crate) fn check_model(
        &self,
        (own_provider, own_model): (&str, &str),
        provider: &str,
        model: &str,
        p: &dyn Provider,
        workspaces: &[&Path],
    ) -> Result<String, KernelError> {
        if provider == own_provider && model == own_model {
            return Ok(model.to_string());
        }
        if !self.models.iter().any(|m| m == model || m == "*") {
            return Err(KernelError::NotAllowed(format!(
                "model `{model}` of provider `{provider}` is not allowed for a child: keep your own provider and \
                 model (`{own_provider}`, `{own_model}`), or the operator must list the model in `[spawn] models` \
                 in aos.toml ({})",
                listed(&self.models)
            )));
        }
        if !p.model_is_file(model) {
            return Ok(model.to_string());
        }
        let Some(dir) = &self.model_dir else {
            return Err(KernelError::NotAllowed(format!(
                "model `{model}` is a file of provider `{provider}`: a model may only choose files in the operator's \
                 model directory, `[spawn] model_dir` in aos.toml, which is not set"
            )));
        };
        confine(dir, model, self.max_model_file_bytes, workspaces)
            .map(|f| f.display().to_string())
            .map_err(|why| {
                KernelError::NotAllowed(format!(
                    "model file `{model}` cannot be used: {why}; a model may only choose a regular file of at most \
                     {} bytes inside `[spawn] model_dir` ({}), named without symlinks, outside every workspace",
                    self.max_model_file_bytes,
                    dir.display()
                ))
            })
    }
}

fn listed(v: &[String]) -> String {
    if v.is_empty() {
        "now: none".into()
    } else {
        format!("now: {}", v.join(", "))
    }
}

/// `name` — relative to `dir`, or an absolute path inside it — as a regular
/// file inside `dir`: every component below `dir` is looked at without
/// following it (no symlink anywhere, directories then a regular file), its
/// size is at most `max`, and it is in none of `workspaces`.
fn confine(dir: &Path, name: &str, max: u64, workspaces: &[&Path]) -> Result<PathBuf, String> {
    let root = dir.canonicalize().map_err(|e| format!("the model directory cannot be opened: {e}"))?;
    let path = Path::new(name);
    let rel = if path.is_absolute() {
        path.strip_prefix(&root).or_else(|_| path.strip_prefix(dir)).map_err(|_| "it is outside the model directory".to_string())?
    } else {
        path
    };
    let mut at = root;
    let mut parts = rel.components().peekable();
    if parts.peek().is_none() {
        return Err("it names no file".into());
    }
    while let Some(part) = parts.next() {
        let Component::Normal(part) = part else {
            return Err("it leaves the model directory (`..` in the path)".into());
        };
        at.push(part);
        let meta = std::fs::symlink_metadata(&at).map_err(|e| format!("{}: {e}", at.display()))?;
        if meta.file_type().is_symlink() {
            return Err(format!("{} is a symlink", at.display()));
        }
        if parts.peek().is_some() {
            if !meta.is_dir() {
                return Err(format!("{} is not a directory", at.display()));
            }
        } else if !meta.is_file() {
            return Err(format!("{} is not a regular file", at.display()));
        } else if meta.len() > max {
            return Err(format!("{} is {} bytes, more than the limit", at.display(), meta.len()));
        }
    }
    for w in workspaces {
        if w.canonicalize().is_ok_and(|w| at.starts_with(w)) {
            return Err(format!("{} is inside a workspace", at.display()));
        }
    }
    Ok(at)
}
