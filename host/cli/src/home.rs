//! Where AgentOS keeps its state: `$AOS_HOME`, defaulting to
//! `$XDG_DATA_HOME/aos` or `~/.local/share/aos`.

use std::path::PathBuf;

use anyhow::{Context, Result};

pub fn aos_home() -> Result<PathBuf> {
    let home = if let Some(h) = std::env::var_os("AOS_HOME").filter(|v| !v.is_empty()) {
        PathBuf::from(h)
    } else if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        PathBuf::from(x).join("aos")
    } else {
        let h = std::env::var_os("HOME").context("neither AOS_HOME nor HOME is set; set AOS_HOME to a directory for AgentOS state")?;
        PathBuf::from(h).join(".local/share/aos")
    };
    std::fs::create_dir_all(&home)
        .with_context(|| format!("cannot create the AgentOS home {} (set AOS_HOME elsewhere?)", home.display()))?;
    Ok(home)
}
