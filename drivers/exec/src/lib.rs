//! The `exec` driver: EXEC_CMD.
//!
//! It validates the command and its timeout and runs it through the imported
//! `aos:kernel/container` interface, in the calling process's sandbox
//! container (its workspace at `/workspace`, no network unless `exec:net`).
//! Importing that interface is what makes this driver need the `exec`
//! capability. Commands never run on the host.
//!
//! Configuration (`[drivers.exec]`): `default_timeout_secs` (30),
//! `max_timeout_secs` (600).

use aos_guest_sdk::host::container;
use aos_guest_sdk::{config, prelude::*};

/// Timeout when the call names none, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u32 = 30;
/// Longest timeout a call may ask for, in seconds.
pub const DEFAULT_MAX_TIMEOUT_SECS: u32 = 600;
/// Longest command line, in bytes.
pub const MAX_CMD_BYTES: usize = 64 * 1024;

/// Arguments of EXEC_CMD.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecArgs {
    /// Shell command line, run by bash in /workspace.
    pub cmd: String,
    /// Seconds before the command is killed (default 30).
    #[serde(default)]
    pub timeout: Option<u32>,
}

/// The result of EXEC_CMD.
#[derive(Serialize, Debug, PartialEq)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    pub timed_out: bool,
}

/// Checks the arguments and returns (cmd, timeout in seconds).
pub fn check(args: &ExecArgs, default_timeout: u32, max_timeout: u32) -> SyscallResult<u32> {
    if args.cmd.trim().is_empty() {
        return Err(SyscallError::InvalidArguments("`cmd` is empty".into()));
    }
    if args.cmd.len() > MAX_CMD_BYTES {
        return Err(SyscallError::LimitExceeded(format!(
            "`cmd` is {} bytes, more than the maximum of {MAX_CMD_BYTES}; write long scripts to a file first",
            args.cmd.len()
        )));
    }
    if args.cmd.contains('\0') {
        return Err(SyscallError::InvalidArguments("`cmd` contains a NUL byte".into()));
    }
    let timeout = args.timeout.unwrap_or(default_timeout.clamp(1, max_timeout.max(1)));
    if timeout == 0 || timeout > max_timeout {
        return Err(SyscallError::InvalidArguments(format!(
            "`timeout` must be between 1 and {max_timeout} seconds, got {timeout}"
        )));
    }
    Ok(timeout)
}

pub fn exec_cmd(args: ExecArgs) -> SyscallResult<ExecResult> {
    let max: u32 = config::get_or("max_timeout_secs", DEFAULT_MAX_TIMEOUT_SECS).max(1);
    let default: u32 = config::get_or("default_timeout_secs", DEFAULT_TIMEOUT_SECS);
    let timeout = check(&args, default, max)?;
    let out = container::exec(&container::ExecRequest {
        cmd: args.cmd,
        timeout_ms: timeout.saturating_mul(1000),
    })?;
    Ok(ExecResult {
        exit_code: out.exit_code,
        stdout: out.stdout,
        stderr: out.stderr,
        truncated: out.truncated,
        timed_out: out.timed_out,
    })
}

pub struct Exec;

impl Driver for Exec {
    fn router() -> Router {
        Router::new().syscall(
            "EXEC_CMD",
            "Run a shell command (bash) in your sandbox container, in /workspace (your workspace; \
             read-only unless you hold fs:rw). No network unless you hold exec:net. Returns \
             exit_code, stdout, stderr (each capped; `truncated` says so) and `timed_out` (killed \
             at `timeout` seconds).",
            exec_cmd,
        )
    }
}

aos_guest_sdk::export_driver!(Exec);

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &str, timeout: Option<u32>) -> ExecArgs {
        ExecArgs { cmd: cmd.into(), timeout }
    }

    #[test]
    fn validates_arguments() {
        assert_eq!(check(&args("ls", None), 30, 600).unwrap(), 30);
        assert_eq!(check(&args("ls", Some(5)), 30, 600).unwrap(), 5);
        assert_eq!(check(&args("ls", None), 900, 600).unwrap(), 600);
        assert!(matches!(check(&args("  ", None), 30, 600), Err(SyscallError::InvalidArguments(_))));
        assert!(matches!(check(&args("ls", Some(0)), 30, 600), Err(SyscallError::InvalidArguments(_))));
        assert!(matches!(check(&args("ls", Some(601)), 30, 600), Err(SyscallError::InvalidArguments(_))));
        let long = "x".repeat(MAX_CMD_BYTES + 1);
        assert!(matches!(check(&args(&long, None), 30, 600), Err(SyscallError::LimitExceeded(_))));
    }
}
