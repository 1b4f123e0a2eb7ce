//! Hooks for observers of the step loop (tracing, metrics): an
//! [`Observer`] is told when a step of a process starts and returns a
//! [`StepObserver`] that hears of that step's model call(s) and syscalls and
//! of its end. The kernel knows no telemetry format: `aos-telemetry`
//! implements these traits (OpenTelemetry spans); the default
//! ([`NoObserver`]) does nothing.
//!
//! Calls are made on the process's task, inline: implementations must be
//! quick and must never block (queue the work elsewhere). A step whose
//! process is killed while it runs is dropped without
//! [`StepObserver::step_ended`]: implementations that care see it in `Drop`.

use std::sync::Arc;

use aos_providers::{Completion, Message, ProviderError};
use serde_json::Value;

use crate::process::Pid;

/// Told of every step of every process (see the module doc).
pub trait Observer: Send + Sync + 'static {
    /// Step `step` (1 for the first model call of the process) of `pid`
    /// starts; what it does is told to the returned observer.
    fn step_started(&self, step: &StepStart<'_>) -> Box<dyn StepObserver>;
}

/// One step of one process: its model call, then the calls of the reply.
/// Every method has a no-op default.
pub trait StepObserver: Send {
    /// A model call starts (more than one per step when a context overflow
    /// makes the kernel compact and retry).
    fn model_started(&mut self, _call: &ModelStart<'_>) {}
    /// The model call last started has ended.
    fn model_ended(&mut self, _end: &ModelEnd<'_>) {}
    /// A call of the reply starts (after parsing; a call that could not be
    /// parsed is started and ended at once with its error).
    fn syscall_started(&mut self, _call: &SyscallStart<'_>) {}
    /// The call last started has ended.
    fn syscall_ended(&mut self, _end: &SyscallEnd<'_>) {}
    /// The step ended: `error` is why the process ends with it, if it does
    /// (`SYS_EXIT` is not an error).
    fn step_ended(self: Box<Self>, _end: &StepEnd<'_>) {}
}

/// A step that starts.
#[derive(Debug)]
pub struct StepStart<'a> {
    pub pid: Pid,
    /// 1-based: the number of model calls the process made before, plus one.
    pub step: u64,
    /// The provider (registry name, e.g. `anthropic`) and model of the process.
    pub provider: &'a str,
    pub model: &'a str,
}

/// A model call that starts.
#[derive(Debug)]
pub struct ModelStart<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    /// The prompt as sent (system prompt first).
    pub messages: &'a [Message],
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

/// A model call that ended.
#[derive(Debug)]
pub struct ModelEnd<'a> {
    pub result: Result<&'a Completion, &'a ProviderError>,
}

/// A call of a reply that starts.
#[derive(Debug)]
pub struct SyscallStart<'a> {
    /// Its name as the model wrote it (upper case for native calls);
    /// `None` for a malformed call that names none.
    pub name: Option<&'a str>,
    /// The native tool call's id, or the kernel's call number (`#7`) for a
    /// call of the text protocol.
    pub call_id: &'a str,
    /// Its arguments as given (`None` when they could not be parsed).
    pub args: Option<&'a Value>,
}

/// A call that ended.
#[derive(Debug)]
pub struct SyscallEnd<'a> {
    /// Its output, or its error: a short kind (`denied`, `not_found`,
    /// `invalid_call`, …) and the message the model was given.
    pub result: Result<&'a Value, (&'a str, &'a str)>,
}

/// A step that ended.
#[derive(Debug)]
pub struct StepEnd<'a> {
    /// Why the process ends with this step (failed, killed), if it does
    /// for a reason other than `SYS_EXIT`.
    pub error: Option<&'a str>,
}

/// The default observer: does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

/// The observer of a step nobody observes.
pub(crate) struct NoStep;

impl StepObserver for NoStep {}

impl Observer for NoObserver {
    fn step_started(&self, _step: &StepStart<'_>) -> Box<dyn StepObserver> {
        Box::new(NoStep)
    }
}

/// The observer of a kernel ([`crate::KernelConfig::observer`]): cheap to
/// clone, printed by name only.
#[derive(Clone)]
pub struct Observers(pub Arc<dyn Observer>);

impl Default for Observers {
    fn default() -> Self {
        Observers(Arc::new(NoObserver))
    }
}

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observers(..)")
    }
}
