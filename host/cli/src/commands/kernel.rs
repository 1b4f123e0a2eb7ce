//! `aos kernel start|stop|status`: the daemon's life. `start` re-executes this
//! binary as `aos kernel start --foreground`, detached (own session), with
//! its output in `$AOS_HOME/logs/daemon.log`, and waits until the control
//! socket answers.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;

use aos_daemon::api::StatusInfo;
use aos_daemon::client::{is_not_running, Client};
use aos_daemon::Paths;

#[derive(Debug, Subcommand)]
pub enum KernelCmd {
    /// Start the kernel daemon for $AOS_HOME (in the background unless --foreground).
    #[command(after_help = "Examples:\n  aos kernel start\n  AOS_HOME=/tmp/aos2 aos kernel start   # a second, independent kernel\n  aos kernel start --foreground         # stay attached (logs to stderr)\n  AOS_CONTROL_TCP=127.0.0.1:7878 aos kernel start   # also serve the API on loopback TCP\n  AOS_CONTROL_URL=http://127.0.0.1:7878 aos ps      # a client over TCP (token from $AOS_HOME/control.token or AOS_CONTROL_TOKEN)")]
    Start {
        /// Run in this process instead of detaching.
        #[arg(long)]
        foreground: bool,
    },
    /// Ask the kernel to shut down (unfinished processes stay in the journal).
    /// Succeeds when no kernel runs, like `systemctl stop`.
    Stop {
        /// Print `{"stopped": true, "pid": N}` (or `{"stopped": false, "running": false}`).
        #[arg(long)]
        json: bool,
    },
    /// Whether the kernel runs: pid, uptime, process counts. Exits 1 when it does not run.
    #[command(after_help = "Examples:\n  aos kernel status\n  aos kernel status --json | jq .running   # {\"running\": false} when no kernel runs")]
    Status {
        /// Print JSON (`{"running": true, "pid": .., ...}` or `{"running": false, "home": ..}`).
        #[arg(long)]
        json: bool,
    },
}

/// Paths and client of this `$AOS_HOME`'s kernel.
pub fn connect() -> Result<(Paths, Client)> {
    let home = crate::home::aos_home()?;
    let paths = Paths::new(home);
    let client = Client::from_env(&paths)?;
    Ok((paths, client))
}

pub async fn run(cmd: KernelCmd) -> Result<i32> {
    // Starting always talks to this home's own socket (a TCP token is made by the start).
    let (paths, client) = match cmd {
        KernelCmd::Start { .. } => {
            let paths = Paths::new(crate::home::aos_home()?);
            let client = Client::new(paths.socket());
            (paths, client)
        }
        _ => connect()?,
    };
    match cmd {
        KernelCmd::Start { foreground: true } => {
            aos_daemon::server::run_foreground(paths).await?;
            Ok(0)
        }
        KernelCmd::Start { foreground: false } => {
            if let Ok(st) = client.get::<StatusInfo>("/v1/status").await {
                outln!("kernel already running (pid {}) for {}", st.pid, paths.home().display());
                return Ok(0);
            }
            let pid = start_background(&paths).await?;
            outln!("kernel started (pid {pid}); socket {}", paths.socket().display());
            Ok(0)
        }
        KernelCmd::Stop { json } => {
            let st: StatusInfo = match client.get("/v1/status").await {
                Ok(st) => st,
                Err(e) if is_not_running(&e) => {
                    if json {
                        outln!("{}", serde_json::json!({"stopped": false, "running": false}));
                    } else {
                        outln!("kernel not running for {}; nothing to stop", paths.home().display());
                    }
                    return Ok(0);
                }
                Err(e) => return Err(e),
            };
            let _: serde_json::Value = client.post("/v1/shutdown", &serde_json::json!({})).await?;
            wait_gone(&paths, st.pid as i32, Duration::from_secs(10)).await?;
            if json {
                outln!("{}", serde_json::json!({"stopped": true, "pid": st.pid}));
            } else {
                outln!("kernel stopped (pid {})", st.pid);
            }
            Ok(0)
        }
        KernelCmd::Status { json } => {
            let st: StatusInfo = match client.get("/v1/status").await {
                Ok(st) => st,
                Err(e) if json && is_not_running(&e) => {
                    outln!("{}", serde_json::json!({"running": false, "home": paths.home()}));
                    return Ok(1);
                }
                Err(e) => return Err(e),
            };
            if json {
                let mut v = serde_json::to_value(&st)?;
                if let serde_json::Value::Object(m) = &mut v {
                    let mut out = serde_json::Map::new();
                    out.insert("running".into(), serde_json::Value::Bool(true));
                    out.extend(std::mem::take(m));
                    v = serde_json::Value::Object(out);
                }
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                outln!(
                    "kernel running (pid {}), up {}, home {}\nprocesses: {} live, {} exited, {} total",
                    st.pid,
                    super::output::age(st.uptime_secs),
                    st.home.display(),
                    st.processes.live,
                    st.processes.exited,
                    st.processes.total
                );
                if let Some(addr) = &st.control_tcp {
                    outln!("control API also on http://{addr} (token in {})", paths.control_token().display());
                }
                if let Some(w) = &st.webhooks {
                    outln!("webhooks: {w}");
                }
                if let Some(j) = &st.journal {
                    match &j.fault {
                        Some(f) => outln!(
                            "journal: FAILING since {} ago: {}; {} process(es) paused until it can be written",
                            super::output::age(aos_kernel::now_ms().saturating_sub(f.since_ms) / 1000),
                            f.error,
                            st.processes.paused
                        ),
                        None => outln!(
                            "journal: {} ({} events, {} fsyncs, {} snapshots this run)",
                            j.segment.display(),
                            j.events,
                            j.fsyncs,
                            j.rotations
                        ),
                    }
                }
                for line in &st.recovery {
                    outln!("recovery: {line}");
                }
            }
            Ok(0)
        }
    }
}

/// Starts the daemon detached and waits until it answers on its socket
/// (not over TCP: the TCP token is only made by this start); returns its pid.
pub async fn start_background(paths: &Paths) -> Result<u32> {
    let client = Client::new(paths.socket());
    std::fs::create_dir_all(paths.logs()).context("cannot create the logs directory")?;
    let log_path = paths.daemon_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the aos executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["kernel", "start", "--foreground"])
        .env("AOS_HOME", paths.home())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from our
    // session and terminal so it outlives this command.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the kernel daemon")?;
    let t0 = Instant::now();
    let timeout = Duration::from_secs(60);
    loop {
        if let Ok(st) = client.get::<StatusInfo>("/v1/status").await {
            return Ok(st.pid);
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the kernel exited during start-up ({status}): {}; see {}",
                last_line(&log_path).unwrap_or_else(|| "no output".into()),
                log_path.display()
            );
        }
        if t0.elapsed() > timeout {
            bail!("the kernel did not answer within {} s; see {}", timeout.as_secs(), log_path.display());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The last line of the daemon's log, without its timestamp, level and target.
fn last_line(p: &Path) -> Option<String> {
    let s = std::fs::read_to_string(p).ok()?;
    let l = s.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    let msg = ["ERROR ", "WARN ", "INFO "]
        .iter()
        .find_map(|lvl| l.split_once(lvl).map(|(_, rest)| rest.split_once(": ").map(|(_, m)| m).unwrap_or(rest)))
        .unwrap_or(l);
    Some(msg.trim().to_string())
}

/// Whether `pid` is alive (a zombie counts as gone).
pub fn alive(pid: i32) -> bool {
    if pid <= 0 || unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => true,
    }
}

/// Waits until the daemon `pid` is gone; SIGTERM then SIGKILL after `grace`.
pub async fn wait_gone(paths: &Paths, pid: i32, grace: Duration) -> Result<()> {
    let t0 = Instant::now();
    let mut termed = false;
    while alive(pid) {
        if t0.elapsed() > grace && !termed {
            unsafe { libc::kill(pid, libc::SIGTERM) };
            termed = true;
        }
        if t0.elapsed() > grace * 2 {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = std::fs::remove_file(paths.socket());
            let _ = std::fs::remove_file(paths.pid_file());
            return if alive(pid) { Err(anyhow!("the kernel (pid {pid}) does not stop")) } else { Ok(()) };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
