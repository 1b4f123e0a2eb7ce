//! `aos driver …`: list, inspect, install and remove driver components, and
//! call one syscall through the real driver runtime without an LLM.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;

use aos_abi::CapabilitySet;
use aos_runtime::{AgentContext, DriverInfo, DriverRuntime, Refusal, RuntimeConfig};

#[derive(Debug, Subcommand)]
pub enum DriverCmd {
    /// List built-in and installed drivers with their syscalls.
    #[command(alias = "list")]
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what a component offers (syscalls) and needs (capabilities, from its imports).
    Inspect {
        /// The component file (.wasm).
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Validate, precompile and register a driver; agents granted `driver:NAME` can then use it.
    Install {
        file: PathBuf,
        /// Name to register it under (default: the file name without `aos_driver_`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Unregister an installed driver.
    Remove { name: String },
    /// Call one syscall through the driver runtime, as an agent with the given grants would.
    #[command(after_help = "Examples:\n  \
        aos driver call fs FS_WRITE '{\"path\":\"notes.txt\",\"content\":\"hi\"}' --grant fs:rw --workspace /tmp/ws\n  \
        aos driver call fs FS_READ '{\"path\":\"notes.txt\"}' --grant fs:ro --workspace /tmp/ws\n  \
        aos driver call wordcount TEXT_STATS '{\"text\":\"a b a\"}' --grant driver:wordcount")]
    Call(CallArgs),
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// Driver name (see `aos driver ls`).
    pub driver: String,
    /// Syscall name, e.g. FS_READ.
    pub syscall: String,
    /// Arguments as a JSON object.
    #[arg(default_value = "{}")]
    pub args: String,
    /// Capability to grant the calling agent. None are granted by default.
    #[arg(long = "grant", short = 'g', value_delimiter = ',', long_help = aos_abi::caps::GRANT_HELP)]
    pub grants: Vec<String>,
    /// Host directory preopened at /workspace, created if missing (default: the current directory).
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    /// Per-call deadline in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    /// Memory cap of the driver instance in MiB.
    #[arg(long, default_value_t = 64)]
    pub memory_mib: usize,
    /// Driver setting, e.g. `fs.read_limit=1024` (repeatable; the value is JSON or a string).
    #[arg(long = "set")]
    pub settings: Vec<String>,
    /// Let NET_FETCH reach this non-public host, IP or CIDR range (repeatable),
    /// e.g. `--net-allow 127.0.0.1` for a local test server.
    #[arg(long = "net-allow")]
    pub net_allow: Vec<String>,
    /// Repeat the call N times in one runtime (shows reuse of the instance; prints the last result).
    #[arg(long, default_value_t = 1, hide = true)]
    pub repeat: u32,
}

async fn open_runtime(mut cfg: RuntimeConfig) -> Result<std::sync::Arc<DriverRuntime>> {
    cfg.home = crate::home::aos_home()?;
    cfg.container = Some(std::sync::Arc::new(
        aos_sandbox::DockerBackend::for_home(&cfg.home).await.context("invalid Docker endpoint")?,
    ));
    DriverRuntime::open(cfg).await.context("cannot start the driver runtime")
}

pub async fn run(cmd: DriverCmd) -> Result<i32> {
    match cmd {
        DriverCmd::Ls { json } => {
            let rt = open_runtime(RuntimeConfig::new("")).await?;
            let list = rt.list();
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for d in &list {
                    print_info(d);
                }
            }
            Ok(0)
        }
        DriverCmd::Inspect { file, json } => {
            let rt = open_runtime(RuntimeConfig::new("")).await?;
            let info = rt.inspect(&file, None).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print_info(&info);
            }
            Ok(0)
        }
        DriverCmd::Install { file, name } => {
            let rt = open_runtime(RuntimeConfig::new("")).await?;
            let info = rt.install(&file, name.as_deref()).await?;
            outln!(
                "installed driver `{}` ({} syscalls); grant it to agents with --grant driver:{}",
                info.name,
                info.syscalls.len(),
                info.name
            );
            Ok(0)
        }
        DriverCmd::Remove { name } => {
            let rt = open_runtime(RuntimeConfig::new("")).await?;
            rt.remove(&name)?;
            outln!("removed driver `{name}`");
            Ok(0)
        }
        DriverCmd::Call(a) => call(a).await,
    }
}

fn print_info(d: &DriverInfo) {
    outln!("{}  ({})", d.name, d.source);
    outln!(
        "  requires: {}",
        if d.requires.is_empty() { "nothing".to_string() } else { d.requires.join(", ") }
    );
    for s in &d.syscalls {
        outln!("  {:<14} [{}] {}", s.name, s.requires.join(", "), s.description);
        outln!("  {:<14} args: {}", "", s.args_schema);
    }
}

fn parse_setting(s: &str) -> Result<(String, String, Value)> {
    let (key, value) = s.split_once('=').with_context(|| format!("--set `{s}`: expected DRIVER.KEY=VALUE"))?;
    let (driver, key) = key
        .split_once('.')
        .with_context(|| format!("--set `{s}`: expected DRIVER.KEY=VALUE, e.g. fs.read_limit=1024"))?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((driver.to_string(), key.to_string(), value))
}

async fn call(a: CallArgs) -> Result<i32> {
    let args: Value = serde_json::from_str(&a.args)
        .with_context(|| format!("the arguments are not valid JSON: {}", a.args))?;
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let mut cfg = RuntimeConfig::new("");
    cfg.net.allow = a.net_allow.clone();
    cfg.call_timeout = std::time::Duration::from_secs_f64(a.timeout);
    cfg.memory_limit = a.memory_mib << 20;
    for s in &a.settings {
        let (driver, key, value) = parse_setting(s)?;
        cfg.driver_config.entry(driver).or_default().insert(key, value);
    }
    let rt = open_runtime(cfg).await?;
    // Syscall names are accepted as permissions too (`--grant FS_READ`).
    let caps = CapabilitySet::parse_with(&a.grants, &|name| rt.grant_for(name))?;
    match rt.lookup(&a.syscall) {
        None => bail!("no driver offers `{}` (see `aos driver ls`)", a.syscall),
        Some(info) if info.driver != a.driver => bail!(
            "`{}` is offered by driver `{}`, not `{}`",
            a.syscall,
            info.driver,
            a.driver
        ),
        Some(_) => {}
    }
    let workspace = match a.workspace {
        Some(w) => w,
        None => std::env::current_dir()?,
    };
    let workspace = super::workspace_dir(&workspace)?;
    for c in caps.iter() {
        if let aos_abi::Capability::Driver(name) = c {
            let driver = rt.list().into_iter().find(|d| &d.name == name);
            if let Some(d) = driver.filter(|d| d.source == "built-in") {
                bail!(
                    "`{name}` is a built-in driver: `driver:{name}` grants nothing; grant {} instead \
                     (`driver:NAME` is for installed third-party drivers)",
                    d.requires.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(" or ")
                );
            }
            if !rt.list().iter().any(|d| &d.name == name) {
                bail!(
                    "no driver `{name}` is installed, so `driver:{name}` would grant nothing; \
                     `aos driver ls` lists the drivers, `aos driver install FILE` adds one"
                );
            }
        }
    }
    let handle = match rt.resolve(&a.syscall, &caps) {
        Ok(h) => h,
        Err(refusal) => {
            errln!("error: {}", aos_abi::SyscallError::from(refusal.clone()));
            if let Refusal::Denied { missing, .. } = refusal {
                errln!("hint: grant it with --grant {}", missing.capability);
            }
            rt.shutdown().await;
            return Ok(1);
        }
    };
    let agent = AgentContext { pid: 1, caps, workspace };
    let mut result = None;
    for _ in 0..a.repeat.max(1) {
        result = Some(handle.call(&agent, &args).await);
    }
    rt.shutdown().await;
    match result.expect("at least one call") {
        Ok(out) => {
            outln!("{}", serde_json::to_string_pretty(&out.output)?);
            for e in out.effects {
                errln!("effect requested from the kernel: {}", serde_json::to_string(&e)?);
            }
            Ok(0)
        }
        Err(e) => {
            errln!("error: {e}");
            if let aos_abi::SyscallError::Denied(m) = &e {
                let missing = m
                    .strip_prefix("capability `")
                    .and_then(|rest| rest.split_once("` not granted"))
                    .map(|(cap, _)| cap);
                if let Some(cap) = missing {
                    errln!("hint: grant it with --grant {}", cap.split(' ').next().unwrap_or(cap));
                }
            }
            Ok(1)
        }
    }
}
