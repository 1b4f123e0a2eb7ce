//! `aos:kernel/timers` (capability `timers`): a driver asks the kernel to
//! suspend the calling process (`sleep`) or to wake it later with a prompt
//! (`schedule`). Nothing happens inside the call: each request is recorded
//! as an [`Effect`] that the kernel applies after the call returns.

use std::sync::atomic::Ordering;

use wasmtime::component::{HasSelf, Linker};

use aos_abi::{Capability, CapabilitySet, Effect, SyscallError};

use super::{HostInterface, Prepare};
use crate::bindings::aos::kernel::timers;
use crate::bindings::WitSyscallError;
use crate::state::DriverState;

pub(crate) struct Timers;

impl HostInterface for Timers {
    fn wit_names(&self) -> &'static [&'static str] {
        &["aos:kernel/timers"]
    }
    fn enabled_by(&self, caps: &CapabilitySet) -> bool {
        caps.grants(&Capability::Timers)
    }
    fn weakest(&self) -> Capability {
        Capability::Timers
    }
    fn add_to_linker(&self, l: &mut Linker<DriverState>) -> wasmtime::Result<()> {
        timers::add_to_linker::<DriverState, HasSelf<DriverState>>(l, |s| s)
    }
    fn prepare(&self, _cx: &mut Prepare<'_>) -> Result<(), SyscallError> {
        Ok(())
    }
}

impl timers::Host for DriverState {
    async fn sleep(&mut self, seconds: f64) -> Result<(), WitSyscallError> {
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err(WitSyscallError::InvalidArguments(format!(
                "sleep needs a positive number of seconds, got {seconds}"
            )));
        }
        self.effects.push(Effect::Sleep { seconds });
        Ok(())
    }

    async fn schedule(&mut self, seconds: f64, prompt: String) -> Result<u64, WitSyscallError> {
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err(WitSyscallError::InvalidArguments(format!(
                "schedule needs a positive number of seconds, got {seconds}"
            )));
        }
        let id = self.timer_ids.fetch_add(1, Ordering::Relaxed);
        self.effects.push(Effect::Schedule { id, seconds, prompt });
        Ok(id)
    }
}
