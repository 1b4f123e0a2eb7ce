//! `aos config show|path`: the effective configuration. With a kernel
//! running, what that kernel runs with (`GET /v1/config`), and whether
//! aos.toml or this shell's `AOS_*` variables would change it on a restart;
//! otherwise what a kernel started now would use. Defaults are shown too,
//! unset options as comments, secrets masked.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};

use aos_daemon::api::ConfigReply;
use aos_daemon::client::is_not_running;
use aos_daemon::config::{diff, render_toml, Config};
use aos_daemon::Paths;

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the effective configuration, secrets masked: the running kernel's
    /// (and what a restart would change), or else defaults + $AOS_HOME/aos.toml + AOS_* variables.
    #[command(after_help = "Examples:\n  aos config show\n  AOS_MODEL=llama3.2 aos config show\n  aos config show --json | jq .config.provider")]
    Show {
        /// Print JSON: `{"source": "kernel"|"file", "restart_needed", "changes", "config"}`.
        #[arg(long)]
        json: bool,
    },
    /// Print the path of the config file.
    Path,
}

pub async fn run(cmd: ConfigCmd) -> Result<i32> {
    let paths = Paths::new(crate::home::aos_home()?);
    match cmd {
        ConfigCmd::Show { json } => show(&paths, json).await,
        ConfigCmd::Path => {
            outln!("{}", paths.config().display());
            Ok(0)
        }
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "(unset)".into(),
        other => other.to_string(),
    }
}

async fn show(paths: &Paths, json: bool) -> Result<i32> {
    // What a kernel started now, from this shell, would load.
    let here = Config::load(paths.home())?;
    let client = aos_daemon::client::Client::from_env(paths)?;
    let running = match client.get::<ConfigReply>("/v1/config").await {
        Ok(r) => Some(r),
        Err(e) if is_not_running(&e) => None,
        Err(e) => return Err(e),
    };
    let Some(kernel) = running else {
        if json {
            outln!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "source": "file",
                    "file": paths.config(),
                    "file_present": paths.config().exists(),
                    "kernel_running": false,
                    "config": here.shown(),
                }))?
            );
        } else {
            outln!(
                "# no kernel running: the configuration a kernel started now would use\n# (defaults, {}{}, AOS_* variables), secrets masked",
                paths.config().display(),
                if paths.config().exists() { "" } else { " (absent)" }
            );
            out!("{}", render_toml(&here.shown()));
        }
        return Ok(0);
    };
    let changes = diff(&kernel.config, &here.shown());
    let restart_needed = kernel.digest != here.digest();
    if json {
        let changes: Vec<Value> =
            changes.iter().map(|(k, old, new)| json!({"key": k, "running": old, "after_restart": new})).collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "source": "kernel",
                "file": kernel.file,
                "file_present": kernel.file_present,
                "kernel_running": true,
                "loaded_at_ms": kernel.loaded_at_ms,
                "restart_needed": restart_needed,
                "changes": changes,
                "config": kernel.config,
            }))?
        );
        return Ok(0);
    }
    outln!(
        "# the running kernel's configuration, loaded at its start {} (defaults, {}{}, AOS_* variables), secrets masked",
        super::output::rfc3339(kernel.loaded_at_ms),
        kernel.file.display(),
        if kernel.file_present { "" } else { " (absent)" }
    );
    if restart_needed {
        outln!("#");
        outln!("# RESTART NEEDED: aos.toml or the AOS_* variables of this shell differ from what the kernel loaded;");
        outln!("# a restart from this shell (`aos kernel stop && aos kernel start`) would change:");
        for (k, old, new) in &changes {
            outln!("#   {k}: {} -> {}", value_text(old), value_text(new));
        }
        if changes.is_empty() {
            outln!("#   a secret value (masked here)");
        }
    }
    out!("{}", render_toml(&kernel.config));
    Ok(0)
}
