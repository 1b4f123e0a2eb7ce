//! The `timers` driver: SLEEP and SYS_SCHEDULE.
//!
//! It validates the arguments and asks the kernel, through the imported
//! `aos:kernel/timers` interface, to suspend or later wake the calling
//! process; the kernel applies the state change after the call returns.
//! Importing that interface is what makes this driver need the `timers`
//! capability.

use aos_guest_sdk::host::timers;
use aos_guest_sdk::{config, prelude::*};

/// Default longest allowed sleep or schedule delay: one day.
pub const DEFAULT_MAX_SECONDS: f64 = 86_400.0;
/// Longest scheduled prompt, in bytes.
pub const MAX_PROMPT_BYTES: usize = 4096;

/// Arguments of SLEEP.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SleepArgs {
    /// How long to sleep, in seconds (fractions allowed).
    pub seconds: f64,
}

/// Arguments of SYS_SCHEDULE.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleArgs {
    /// Delay before the wake-up, in seconds.
    pub seconds: f64,
    /// Text added to your context when the timer fires.
    pub prompt: String,
}

/// Checks a delay against `(0, max]`.
pub fn check_seconds(seconds: f64) -> SyscallResult<f64> {
    let max: f64 = config::get_or("max_seconds", DEFAULT_MAX_SECONDS);
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(SyscallError::InvalidArguments(format!(
            "`seconds` must be a positive number, got {seconds}"
        )));
    }
    if seconds > max {
        return Err(SyscallError::LimitExceeded(format!(
            "`seconds` is {seconds}, more than the maximum of {max}"
        )));
    }
    Ok(seconds)
}

pub fn sleep(args: SleepArgs) -> SyscallResult<Value> {
    let seconds = check_seconds(args.seconds)?;
    timers::sleep(seconds)?;
    Ok(json!({ "sleeping_seconds": seconds }))
}

pub fn schedule(args: ScheduleArgs) -> SyscallResult<Value> {
    let seconds = check_seconds(args.seconds)?;
    let prompt = args.prompt.trim();
    if prompt.is_empty() {
        return Err(SyscallError::InvalidArguments("`prompt` is empty".into()));
    }
    if prompt.len() > MAX_PROMPT_BYTES {
        return Err(SyscallError::LimitExceeded(format!(
            "`prompt` is {} bytes, more than the maximum of {MAX_PROMPT_BYTES}",
            prompt.len()
        )));
    }
    let id = timers::schedule(seconds, prompt)?;
    Ok(json!({ "timer_id": id, "fires_in_seconds": seconds }))
}

pub struct Timers;

impl Driver for Timers {
    fn router() -> Router {
        Router::new()
            .syscall(
                "SLEEP",
                "Pause yourself for `seconds`; you continue afterwards with your context intact.",
                sleep,
            )
            .syscall(
                "SYS_SCHEDULE",
                "Schedule a wake-up: after `seconds`, `prompt` is added to your context as an event.",
                schedule,
            )
    }
}

aos_guest_sdk::export_driver!(Timers);
