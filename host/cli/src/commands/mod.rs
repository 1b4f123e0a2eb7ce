//! One module per `aos` subcommand group, plus helpers they share.
pub mod approvals;
pub mod config;
pub mod driver;
pub mod kernel;
pub mod mcp;
pub mod output;
pub mod procs;
pub mod run;
pub mod sandbox;
pub mod top;
pub mod webhooks;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The workspace directory `dir`, absolute; created (and said so on
/// stderr) when it does not exist yet, like `mkdir -p`.
pub fn workspace_dir(dir: &Path) -> Result<PathBuf> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("the workspace {} exists but is not a directory", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the workspace {}", dir.display()))?;
            errln!("created the workspace {}", dir.display());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot use the workspace {}", dir.display())),
    }
    dir.canonicalize().with_context(|| format!("cannot use the workspace {}", dir.display()))
}

/// Checks `--grant` values (already split at commas) early, so a misspelt
/// capability is reported before anything starts. Syscall names used as
/// permissions (`FS_READ`) are only known to the syscall sources: they pass
/// here and are resolved (or refused) by the kernel.
pub fn check_grants(grants: &[String]) -> Result<()> {
    let looks_like_syscall = |g: &str| !g.is_empty() && g.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    aos_abi::CapabilitySet::parse_with(grants, &|g| looks_like_syscall(g).then(Vec::new))?;
    Ok(())
}
