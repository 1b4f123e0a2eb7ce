//! The step loop of one process ([`run`]), run by its tokio task (started
//! in [`crate::lifecycle`]). Each step is a named function:
//!
//! 1. [`Loop::take_events`]: events that arrived (child exits, wake-ups)
//!    go into the history;
//! 2. [`Loop::check_limits`]: step and token budgets, kill, wall time;
//! 3. [`Loop::think`]: wait for a provider slot, build the context
//!    (compacting), call the model — shrinking the window and retrying on a
//!    context overflow;
//! 4. [`Loop::refuse_truncated`]: a reply cut at the token limit runs none
//!    of its calls;
//! 5. [`Loop::run_calls`]: parse the reply and dispatch each call in order
//!    ([`crate::dispatch`]: resolve → validate → authorize → execute),
//!    recording every result or error, counting failures for the loop
//!    breaker, applying each call's effects as it returns
//!    ([`Loop::apply_effects`]: wake-ups are armed at once, sleeps are
//!    collected), stopping at `SYS_EXIT`;
//! 6. [`Loop::sleep_if_asked`]: the longest sleep a call asked for.
//!
//! A step that ends the process returns `Err(status)`.
//!
//! * Model calls are bounded per provider by a FIFO-fair
//!   `tokio::sync::Semaphore`, so ready processes take turns in arrival order.
//! * Blocked (`RECV_MSG`, `SYS_READ_STDIN`) and sleeping processes are parked
//!   futures: no polling, no CPU; 10,000 of them cost only memory.
//! * Budgets: steps and tokens are checked before each model call, against
//!   the process's budgets and every ancestor's (a model call is reserved in
//!   each, see [`crate::budget`]); wall time races the whole loop.
//!   Exhaustion ends the process as `Failed` with the reason, naming the budget.
//! * Loop breaker: the same failure ([`Failure`]: a truncated reply, the
//!   same malformed call, or the same call with the same arguments)
//!   `KernelConfig::loop_breaker` times in a row ends the process.
//! * Kill: the process's cancellation token races the loop; dropping the loop
//!   future cancels an in-flight model call or blocking syscall.
//! * Context overflow: a provider that rejects the prompt as longer than its
//!   model's context ([`ProviderError::ContextOverflow`]) does not fail the
//!   process. Its compaction window shrinks to the estimated size of the
//!   rejected prompt × limit / prompt tokens × 0.9 (never below
//!   [`MIN_WINDOW`]), the messages are rebuilt (compacting more) and the call
//!   is retried, at most [`OVERFLOW_RETRIES`] times per step. The shrunk
//!   window is kept for later steps and announced as
//!   [`KernelEvent::ContextShrunk`] (journalled, so a restored process keeps
//!   it). When compaction can shrink the prompt no further (system prompt,
//!   task and newest entry alone overflow) the process fails, saying what to do.
//! * Live views of a model call, never journalled: streamed reply pieces go
//!   out as [`KernelEvent::ReplyDelta`]; the provider's progress reports
//!   (loading, prompt, generating) are kept in the process while it waits
//!   on its model and go out as [`KernelEvent::ModelProgress`], at most one
//!   per [`PROGRESS_INTERVAL_MS`] within a phase.
//! * Other provider errors (after the provider's own retries) fail the process
//!   with the error text; a truncated reply is fed back to the model as an error.

use std::sync::Arc;
use std::time::Duration;

use aos_abi::{Effect, SyscallSpec};
use aos_providers::{estimate_prompt_tokens, Completion, CompletionRequest, Message, ProviderError};

use crate::config::KernelConfig;
use crate::context::{self, PromptFacts};
use crate::dispatch::dispatch;
use crate::durability::await_durable;
use crate::bus::EventBus;
use crate::events::KernelEvent;
use crate::ipc::IpcInbox;
use crate::models::Models;
use crate::observe::{ModelEnd, ModelStart, NoStep, StepEnd, StepObserver, StepStart, SyscallEnd, SyscallStart};
use crate::parser;
use crate::pcb::{Delivery, Process};
use crate::process::{now_ms, Entry, ExitStatus, ProcessStatus};
use crate::syscalls::run::CallEnv;
use crate::syscalls::Outcome;

/// Retries of one step's model call after [`ProviderError::ContextOverflow`].
pub const OVERFLOW_RETRIES: u32 = 3;
/// The compaction window is never shrunk below this many estimated tokens.
pub const MIN_WINDOW: usize = 256;

/// What the loop may use of the kernel.
#[derive(Clone, Copy)]
pub(crate) struct LoopEnv<'a> {
    pub config: &'a KernelConfig,
    pub events: &'a Arc<EventBus>,
    pub models: &'a Models,
    pub calls: CallEnv<'a>,
}

/// The outcome of a step: go on, or the process ends with this status.
type Step<T = ()> = Result<T, ExitStatus>;

/// What failed, for the loop breaker: the same failure this many times in a
/// row ends the process.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// A reply cut at the token limit.
    Truncated,
    /// A call that could not be parsed (by its message).
    Malformed(String),
    /// A call that failed (by name and arguments).
    Call { name: String, args: String },
}

/// Counts consecutive identical failures.
struct LoopBreaker {
    limit: u32,
    last: Option<Failure>,
    count: u32,
}

impl LoopBreaker {
    fn success(&mut self) {
        self.last = None;
        self.count = 0;
    }
    /// Returns true when the limit is reached.
    fn failure(&mut self, f: Failure) -> bool {
        if self.last.as_ref() == Some(&f) {
            self.count += 1;
        } else {
            self.last = Some(f);
            self.count = 1;
        }
        self.limit > 0 && self.count >= self.limit
    }
}

/// The state of one process's loop.
struct Loop<'a> {
    env: LoopEnv<'a>,
    p: &'a Arc<Process>,
    inbox: IpcInbox,
    /// What it may call (the system prompt lists exactly these).
    /// Shared with every model request (cloning the list each step was a
    /// tenth of a step's CPU).
    specs: Arc<[SyscallSpec]>,
    system: String,
    /// Whether the syscalls go to the model as its API's native tools.
    native: bool,
    base_window: usize,
    breaker: LoopBreaker,
}

/// Runs `p` until it ends; returns how.
pub(crate) async fn run(env: LoopEnv<'_>, p: &Arc<Process>, inbox: IpcInbox) -> ExitStatus {
    let specs = env.calls.syscalls.available(&p.caps);
    let native = env.models.native_tools(p);
    let system = system_prompt(p, &specs, native);
    let mut l = Loop {
        env,
        p,
        inbox,
        base_window: env.models.base_window(p),
        specs: specs.into(),
        system,
        native,
        breaker: LoopBreaker { limit: env.config.loop_breaker, last: None, count: 0 },
    };
    match l.steps().await {
        Ok(never) => match never {},
        Err(status) => status,
    }
}

impl Loop<'_> {
    async fn steps(&mut self) -> Step<std::convert::Infallible> {
        self.finish_interrupted_sleep().await;
        self.finish_interrupted_reply().await?;
        loop {
            self.take_events();
            self.check_limits()?;
            let p = self.p;
            let mut obs = self.env.config.observer.0.step_started(&StepStart {
                pid: p.pid,
                step: p.usage().0 + 1,
                provider: &p.provider_name,
                model: &p.model,
            });
            let step = self.step(obs.as_mut()).await;
            let error = match &step {
                Err(ExitStatus::Exited { .. }) | Ok(_) => None,
                Err(status) => Some(status.to_string()),
            };
            obs.step_ended(&StepEnd { error: error.as_deref() });
            let sleep = step?;
            self.sleep_if_asked(sleep).await;
        }
    }

    /// One step: the model call, then the reply's calls; returns the
    /// longest sleep they asked for.
    async fn step(&mut self, obs: &mut dyn StepObserver) -> Step<Option<f64>> {
        let reply = self.think(obs).await?;
        if reply.truncated {
            self.refuse_truncated()?;
            return Ok(None);
        }
        self.run_calls(&reply, obs).await
    }

    fn bus(&self) -> &EventBus {
        self.env.events
    }

    /// A process restored while sleeping sleeps out the rest of its time first.
    async fn finish_interrupted_sleep(&mut self) {
        if let Some(until_ms) = self.p.take_sleep_until() {
            let left = Duration::from_millis(until_ms.saturating_sub(now_ms()));
            if !left.is_zero() {
                self.p.set_status(self.bus(), ProcessStatus::Sleeping { until_ms });
                self.sleep(left).await;
            }
        }
    }

    /// A process restored while a call of its last reply waited for the
    /// operator: that call asks again (same approval id), then the rest of
    /// the reply runs — none of it had started.
    async fn finish_interrupted_reply(&mut self) -> Step {
        let Some((text, tool_calls, done)) = self.p.unfinished_reply() else { return Ok(()) };
        let calls: Vec<_> = reply_calls(&text, &tool_calls).into_iter().skip(done).collect();
        let sleep = self.run_call_list(calls, &mut NoStep).await?;
        self.sleep_if_asked(sleep).await;
        Ok(())
    }

    /// Sleeps for `d`, or until an event arrives (a wake-up, a child's exit).
    async fn sleep(&mut self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            ev = self.inbox.events.recv() => {
                if let Some(ev) = ev {
                    self.p.take_event(self.env.events, ev);
                }
            }
        }
    }

    fn take_events(&mut self) {
        for ev in self.inbox.drain_events() {
            self.p.take_event(self.env.events, ev);
        }
    }

    /// Kill, wall time and budgets, before every model call. (The select in
    /// the process's task cannot interrupt a loop whose awaits complete
    /// without yielding, so kill and wall time are also checked here.) The
    /// token budgets of the process and its ancestors must have room, and
    /// the model call is reserved in their step budgets ([`crate::budget`]).
    fn check_limits(&self) -> Step {
        let p = self.p;
        if p.is_killed() {
            return Err(ExitStatus::Killed);
        }
        if p.deadline().is_some_and(|d| std::time::Instant::now() >= d) {
            return Err(wall_time_exhausted(p));
        }
        let failed = |l: crate::budget::Limit| ExitStatus::Failed { reason: l.0 };
        p.account.check_tokens().map_err(failed)?;
        p.account.reserve_step(p.usage().0).map_err(failed)
    }

    /// One model call: waits for a slot of the provider, builds the context
    /// and calls the model; on a context overflow shrinks the window,
    /// compacts more and retries. Records the reply.
    async fn think(&mut self, obs: &mut dyn StepObserver) -> Step<Completion> {
        let (p, bus) = (self.p, self.env.events);
        p.set_status(bus, ProcessStatus::Ready);
        // The model call is a side effect: what led to it must be durable.
        await_durable(bus, p).await;
        let slots = self.env.models.slots(&p.provider_name);
        let permit = slots.acquire().await.expect("semaphores are never closed");
        p.set_status(bus, ProcessStatus::WaitingModel);
        let mut overflows = 0;
        // (provider, prompt tokens, limit) of the last overflow of this step.
        let mut overflowed: Option<(String, u64, u64)> = None;
        // Tokens reserved in the budgets of the process and its ancestors.
        let mut reserved: Option<u64> = None;
        let progress = model_progress(bus, p);
        let completion = loop {
            let window = p.window(self.base_window);
            let (messages, compacted) = p.messages(bus, &self.system, window, self.native);
            if let Some((provider, prompt_tokens, limit)) = &overflowed {
                // Compaction could not shrink the rejected prompt any further
                // (the system prompt, task and newest entry alone overflow),
                // or the retries are used up.
                if !compacted || overflows > OVERFLOW_RETRIES {
                    return Err(context_overflow(provider, *prompt_tokens, *limit, &messages, self.specs.len()));
                }
            }
            let sent = estimate_prompt_tokens(&messages) as usize;
            if reserved.is_none() {
                p.account.reserve_tokens(sent as u64).map_err(|l| ExitStatus::Failed { reason: l.0 })?;
                reserved = Some(sent as u64);
            }
            let req = CompletionRequest {
                model: p.model.clone(),
                messages,
                max_tokens: self.env.config.max_reply_tokens,
                temperature: self.env.config.temperature,
                syscalls: self.specs.clone(),
                tools: self.native,
                pid: p.pid,
                on_text: Some(reply_pieces(bus, p.pid)),
                on_progress: Some(progress.sink()),
            };
            obs.model_started(&ModelStart {
                provider: &p.provider_name,
                model: &p.model,
                messages: &req.messages,
                max_tokens: req.max_tokens,
                temperature: req.temperature,
            });
            let result = p.provider.complete(req).await;
            obs.model_ended(&ModelEnd { result: result.as_ref() });
            match result {
                Ok(c) => break c,
                Err(ProviderError::ContextOverflow { provider, prompt_tokens, limit }) => {
                    overflows += 1;
                    let shrunk = shrink_window(sent.min(window), prompt_tokens, limit).min(window);
                    tracing::warn!(
                        pid = p.pid,
                        provider = %provider,
                        prompt_tokens,
                        limit,
                        window,
                        shrunk,
                        "the prompt does not fit the model's context; compacting more and retrying"
                    );
                    p.shrink_window(bus, prompt_tokens, limit, shrunk);
                    overflowed = Some((provider, prompt_tokens, limit));
                }
                Err(ProviderError::ToolsRejected { provider, detail }) if p.tool_mode == aos_abi::ToolMode::Auto => {
                    // Once: later calls (and processes) of this model use text.
                    tracing::warn!(pid = p.pid, provider = %provider, model = %p.model, detail = %detail,
                        "the server rejected native tool calls; falling back to the [SYS_CALL::NAME] text protocol");
                    self.env.models.reject_tools(p);
                    self.native = false;
                    self.system = system_prompt(p, &self.specs, false);
                    p.record(bus, Entry::Notice {
                        text: format!(
                            "{provider} rejected native tool calls for model `{}` ({detail}); this process uses the \
                             [SYS_CALL::NAME] {{json}} text protocol from now on (tool_mode = auto)",
                            p.model
                        ),
                    });
                }
                Err(e) => return Err(ExitStatus::Failed { reason: format!("model call failed: {e}") }),
            }
        };
        drop(permit);
        drop(progress);
        p.count_step(&completion.usage);
        let used = completion.usage.prompt_tokens + completion.usage.completion_tokens;
        p.account.settle_tokens(reserved.unwrap_or(0), used);
        p.set_status(bus, ProcessStatus::Running);
        p.record(bus, Entry::Reply {
            text: completion.text.clone(),
            truncated: completion.truncated,
            tool_calls: completion.tool_calls.clone(),
        });
        Ok(completion)
    }

    /// A reply cut at the token limit: none of its calls run; the model is
    /// asked for a shorter one.
    fn refuse_truncated(&mut self) -> Step {
        let (p, bus) = (self.p, self.env.events);
        let id = p.next_call_id();
        p.count_error();
        let error = format!(
            "limit exceeded: your reply was cut off at the max_tokens limit ({}) and none of its calls were run; \
             reply more briefly (split large content over several calls) and repeat the calls",
            self.env.config.max_reply_tokens.map(|n| n.to_string()).unwrap_or_else(|| "provider default".into())
        );
        p.record(bus, Entry::Error { id, name: None, args: None, error: error.clone(), call_id: None });
        if self.breaker.failure(Failure::Truncated) {
            return Err(loop_broken("a truncated reply", &error, self.breaker.count));
        }
        Ok(())
    }

    /// Parses `reply` and runs its calls in order — the `[SYS_CALL::…]`
    /// calls of its text, then its native tool calls, through the same
    /// dispatch — and returns the longest sleep they asked for. The result
    /// or error of a native call is recorded under its id. `SYS_EXIT` ends
    /// the process (later calls are not run).
    async fn run_calls(&mut self, reply: &Completion, obs: &mut dyn StepObserver) -> Step<Option<f64>> {
        self.run_call_list(reply_calls(&reply.text, &reply.tool_calls), obs).await
    }

    /// Runs `calls` (of one reply, or what is left of it) in order; see [`Self::run_calls`].
    async fn run_call_list(&mut self, calls: Vec<ReplyCall>, obs: &mut dyn StepObserver) -> Step<Option<f64>> {
        let (p, bus) = (self.p, self.env.events);
        let total = calls.len();
        let mut sleep: Option<f64> = None;
        for (i, (call_id, call)) in calls.into_iter().enumerate() {
            if p.is_killed() {
                return Err(ExitStatus::Killed);
            }
            let id = p.next_call_id();
            let traced_id = call_id.clone().unwrap_or_else(|| format!("#{id}"));
            obs.syscall_started(&SyscallStart {
                name: match &call {
                    Ok(c) => Some(&c.name),
                    Err(e) => e.name.as_deref(),
                },
                call_id: &traced_id,
                args: call.as_ref().ok().map(|c| &c.args),
            });
            let call = match call {
                Ok(c) => c,
                Err(e) => {
                    let error = format!("invalid call: {}", e.message);
                    obs.syscall_ended(&SyscallEnd { result: Err(("invalid_call", &error)) });
                    match &e.name {
                        Some(n) => p.count_call(n, true),
                        None => p.count_error(),
                    }
                    p.record(bus, Entry::Error { id, name: e.name.clone(), args: None, error: error.clone(), call_id });
                    if self.breaker.failure(Failure::Malformed(e.message.clone())) {
                        let what = e.name.as_deref().unwrap_or("a malformed call");
                        return Err(loop_broken(what, &error, self.breaker.count));
                    }
                    continue;
                }
            };
            let outcome = dispatch(self.env.calls, p, &mut self.inbox, &call).await;
            // The error's text, made once for the observer and the log.
            let error = match &outcome {
                Outcome::Err(err) => err.to_string(),
                _ => String::new(),
            };
            obs.syscall_ended(&SyscallEnd {
                result: match &outcome {
                    Outcome::Ok { output, .. } => Ok(output),
                    Outcome::Err(err) => Err((err.kind(), &error)),
                    Outcome::Exit { .. } => Ok(&serde_json::Value::Null),
                },
            });
            match outcome {
                Outcome::Ok { output, effects: e } => {
                    p.count_call(&call.name, false);
                    self.breaker.success();
                    p.record(bus, Entry::Result { id, name: call.name.clone(), args: call.args.clone(), output, call_id });
                    sleep = self.apply_effects(e, sleep);
                }
                Outcome::Err(_) => {
                    p.count_call(&call.name, true);
                    p.record(bus, Entry::Error {
                        id,
                        name: Some(call.name.clone()),
                        args: Some(call.args.clone()),
                        error: error.clone(),
                        call_id,
                    });
                    let key = Failure::Call { name: call.name.clone(), args: call.args.to_string() };
                    if self.breaker.failure(key) {
                        let what = format!("`{}` with the same arguments", call.name);
                        return Err(loop_broken(&what, &error, self.breaker.count));
                    }
                }
                Outcome::Exit { code, result } => {
                    p.count_call(&call.name, false);
                    p.record(bus, Entry::Result {
                        id,
                        name: call.name.clone(),
                        args: call.args.clone(),
                        output: serde_json::json!({"exiting": code}),
                        call_id,
                    });
                    let skipped = total - i - 1;
                    if skipped > 0 {
                        p.record(bus, Entry::Notice { text: format!("{skipped} call(s) after SYS_EXIT were not run") });
                    }
                    return Err(ExitStatus::Exited { code, result });
                }
            }
        }
        Ok(sleep)
    }

    /// Applies what a driver call asked for as soon as it returns: a
    /// scheduled wake-up is armed at once (a later call of the same reply
    /// may wait for it); a sleep is added to `sleep` (the longest one wins),
    /// which is returned.
    fn apply_effects(&self, effects: Vec<Effect>, mut sleep: Option<f64>) -> Option<f64> {
        let (p, bus) = (self.p, self.env.events);
        for eff in effects {
            match eff {
                Effect::Sleep { seconds } => sleep = Some(sleep.unwrap_or(0.0).max(seconds)),
                Effect::Schedule { id, seconds, prompt } => {
                    let due_ms = now_ms() + (seconds.clamp(0.0, 1e9) * 1000.0) as u64;
                    p.announce_with(bus, || KernelEvent::Scheduled { pid: p.pid, id, due_ms, prompt: prompt.clone() });
                    arm_timer(bus.clone(), p, id, due_ms, prompt);
                }
            }
        }
        sleep
    }

    /// Sleeps for the longest sleep the reply's calls asked for (a wake-up
    /// or a child's exit ends it early).
    async fn sleep_if_asked(&mut self, sleep: Option<f64>) {
        let (p, bus) = (self.p, self.env.events);
        if let Some(secs) = sleep {
            let d = Duration::from_secs_f64(secs.clamp(0.0, 1e9));
            p.set_status(bus, ProcessStatus::Sleeping { until_ms: now_ms() + d.as_millis() as u64 });
            self.sleep(d).await;
        }
    }
}

/// The system prompt of `p`: the text protocol's, listing `specs`, or the
/// native one (the same `specs` go to the API as its tools).
fn system_prompt(p: &Process, specs: &[SyscallSpec], native: bool) -> String {
    let facts = PromptFacts { pid: p.pid, parent: p.parent, caps: &p.caps, budgets: &p.budgets, role: &p.role };
    if native {
        context::render_native_system_prompt(&facts)
    } else {
        context::render_system_prompt(&facts, specs)
    }
}

/// A native tool call as a parsed call, or why it is malformed: no name,
/// arguments that are not JSON, or not an object (empty arguments are `{}`).
/// A call of a reply: a native tool call's id (none for a text call) and
/// the call, or why it could not be parsed.
type ReplyCall = (Option<String>, Result<parser::ParsedCall, parser::ParseError>);

/// The calls of a reply in the order they run: the `[SYS_CALL::…]` calls
/// of its text, then its native tool calls.
fn reply_calls(text: &str, tool_calls: &[aos_abi::ToolCall]) -> Vec<ReplyCall> {
    parser::parse_reply(text)
        .into_iter()
        .map(|c| (None, c))
        .chain(tool_calls.iter().map(|c| (Some(c.id.clone()), native_call(c))))
        .collect()
}

fn native_call(c: &aos_abi::ToolCall) -> Result<parser::ParsedCall, parser::ParseError> {
    let err = |message: String| parser::ParseError {
        name: (!c.name.is_empty()).then(|| c.name.clone()),
        span: 0..0,
        message,
    };
    if c.name.trim().is_empty() {
        return Err(err(format!("tool call `{}` names no tool", c.id)));
    }
    let args = if c.arguments.trim().is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_str::<serde_json::Value>(&c.arguments).map_err(|e| {
            err(format!("the arguments of {} are not valid JSON ({e}); send one JSON object", c.name))
        })?
    };
    if !args.is_object() {
        return Err(err(format!("the arguments of {} must be a JSON object, got `{}`", c.name, c.arguments)));
    }
    // Names are case-insensitive, as in the text protocol (`[SYS_CALL::fs_read]`).
    Ok(parser::ParsedCall { name: c.name.trim().to_ascii_uppercase(), args, span: 0..0 })
}

/// Why a process whose wall-time budget ran out ended.
pub(crate) fn wall_time_exhausted(p: &Process) -> ExitStatus {
    ExitStatus::Failed {
        reason: format!(
            "wall-time budget exhausted ({:.1} s)",
            p.budgets.max_wall_time.unwrap_or_default().as_secs_f64()
        ),
    }
}

/// The next compaction window after a prompt estimated at `sent` tokens was
/// Where a streaming provider's reply pieces go: the live event stream
/// only (see [`KernelEvent::ReplyDelta`]), when anyone follows it.
fn reply_pieces(bus: &EventBus, pid: u64) -> aos_providers::TextSink {
    let tx = bus.live_sender();
    aos_providers::TextSink::new(move |text| {
        if tx.receiver_count() > 0 {
            let _ = tx.send(crate::events::KernelEvent::ReplyDelta { pid, text: text.to_string() });
        }
    })
}

/// Fewest milliseconds between two [`KernelEvent::ModelProgress`] events
/// of one process in the same phase (at most ten a second).
pub(crate) const PROGRESS_INTERVAL_MS: u64 = 100;

/// Where a provider's progress reports go during one step of a process:
/// its live state (`ps`, `top`: every report) and, rate-limited to one per
/// [`PROGRESS_INTERVAL_MS`] per phase (a new phase always goes out), the
/// live event stream when anyone follows it. Dropped when the call is done,
/// which clears the live state (even when the step fails).
struct ModelProgressReports {
    live: std::sync::Arc<parking_lot::Mutex<Option<aos_abi::ModelProgress>>>,
    sink: aos_providers::ProgressSink,
}

impl ModelProgressReports {
    fn sink(&self) -> aos_providers::ProgressSink {
        self.sink.clone()
    }
}

impl Drop for ModelProgressReports {
    fn drop(&mut self) {
        *self.live.lock() = None;
    }
}

fn model_progress(bus: &EventBus, p: &Process) -> ModelProgressReports {
    let tx = bus.live_sender();
    let pid = p.pid;
    let live = p.model_progress.clone();
    // (when, phase) of the last event sent.
    let last: parking_lot::Mutex<Option<(std::time::Instant, &'static str)>> = parking_lot::Mutex::new(None);
    let state = live.clone();
    let sink = aos_providers::ProgressSink::new(move |progress| {
        *state.lock() = Some(progress.clone());
        if tx.receiver_count() == 0 {
            return;
        }
        let now = std::time::Instant::now();
        let phase = progress.phase();
        {
            let mut last = last.lock();
            let due = match *last {
                Some((at, ph)) => ph != phase || now.duration_since(at).as_millis() as u64 >= PROGRESS_INTERVAL_MS,
                None => true,
            };
            if !due {
                return;
            }
            *last = Some((now, phase));
        }
        let _ = tx.send(crate::events::KernelEvent::ModelProgress { pid, progress });
    });
    ModelProgressReports { live, sink }
}

/// `prompt_tokens` real tokens against a `limit`: scaled to fit with 10 %
/// to spare (by a quarter when the provider gave no counts), at least
/// [`MIN_WINDOW`].
pub(crate) fn shrink_window(sent: usize, prompt_tokens: u64, limit: u64) -> usize {
    let ratio = if prompt_tokens > 0 && limit > 0 && limit < prompt_tokens {
        limit as f64 / prompt_tokens as f64 * 0.9
    } else {
        0.75
    };
    ((sent as f64 * ratio) as usize).max(MIN_WINDOW)
}

/// The failure of a process whose prompt overflows the model's context even
/// with its history compacted as far as it goes (`messages`: the prompt).
fn context_overflow(provider: &str, prompt_tokens: u64, limit: u64, messages: &[Message], syscalls: usize) -> ExitStatus {
    let est = |m: Option<&Message>| m.map_or(0, |m| context::estimate(&m.content));
    let rest: usize = messages.iter().skip(2).map(|m| context::estimate(&m.content)).sum();
    let sizes = format!(
        " (by estimate: system prompt {} tokens for {syscalls} syscalls, task {}, compacted history and newest entry {rest})",
        est(messages.first()),
        est(messages.get(1)),
    );
    let counts = if prompt_tokens > 0 && limit > 0 {
        format!("the prompt is {prompt_tokens} tokens but {provider}'s model accepts at most {limit}")
    } else {
        format!("{provider} rejected the prompt as longer than its model's context")
    };
    ExitStatus::Failed {
        reason: format!(
            "context overflow: {counts} even with the history compacted as far as it goes{sizes}; \
             give the process fewer capabilities (a shorter system prompt) or a shorter task, \
             or use a model with a larger context (local: a larger n_ctx in the daemon config)"
        ),
    }
}

fn loop_broken(what: &str, error: &str, n: u32) -> ExitStatus {
    ExitStatus::Failed {
        reason: format!("loop breaker: {what} failed {n} times in a row; last error: {error}"),
    }
}

/// Delivers `prompt` as an event at `due_ms` (Unix ms; at once if past),
/// unless the process ends first; then announces `Fired`.
pub(crate) fn arm_timer(bus: Arc<EventBus>, p: &Arc<Process>, id: u64, due_ms: u64, prompt: String) {
    let target = Arc::downgrade(p);
    let cancel = p.cancel.clone();
    let d = Duration::from_millis(due_ms.saturating_sub(now_ms()));
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(d) => {
                let Some(p) = target.upgrade() else { return };
                let text = format!("scheduled wake-up #{id}: {prompt}");
                if p.deliver(&bus, Delivery::Event { text, durable: true }) {
                    p.announce_with(&bus, || KernelEvent::Fired { pid: p.pid, id });
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_counts_the_same_failure_in_a_row() {
        let mut b = LoopBreaker { limit: 3, last: None, count: 0 };
        let call = || Failure::Call { name: "FS_READ".into(), args: "{}".into() };
        assert!(!b.failure(call()));
        assert!(!b.failure(call()));
        // A different failure starts the count again; a success clears it.
        assert!(!b.failure(Failure::Truncated));
        assert!(!b.failure(call()));
        b.success();
        assert!(!b.failure(call()) && !b.failure(call()));
        assert!(b.failure(call()));
        // A malformed call named like a syscall is not that syscall's failure.
        let mut b = LoopBreaker { limit: 2, last: None, count: 0 };
        assert!(!b.failure(Failure::Malformed("x".into())));
        assert!(!b.failure(Failure::Call { name: "x".into(), args: String::new() }));
    }
}
