//! Running processes: one tokio task per process executes the step loop
//! (events → budget checks → wait for a provider slot → model call → parse →
//! dispatch each call in order → record results → effects → next step).
//!
//! * Model calls are bounded per provider by a FIFO-fair
//!   `tokio::sync::Semaphore`, so ready processes take turns in arrival order.
//! * Blocked (`RECV_MSG`, `SYS_READ_STDIN`) and sleeping processes are parked
//!   futures: no polling, no CPU; 10,000 of them cost only memory.
//! * Budgets: steps and tokens are checked before each model call; wall time
//!   races the whole loop. Exhaustion ends the process as `Failed` with the reason.
//! * Loop breaker: the same call (name + arguments) failing
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
//! * Other provider errors (after the provider's own retries) fail the process
//!   with the error text; a truncated reply is fed back to the model as an error.

use std::sync::Arc;
use std::time::Duration;

use aos_abi::Effect;
use aos_providers::{estimate_prompt_tokens, CompletionRequest, Message, ProviderError};

use crate::context;
use crate::ipc::IpcInbox;
use crate::kernel::{KernelEvent, KernelInner};
use crate::parser::{self, ParsedCall};
use crate::process::{now_ms, Entry, ExitStatus, Process, ProcessStatus};
use crate::syscalls::{self, Outcome};

/// Retries of one step's model call after [`ProviderError::ContextOverflow`].
pub const OVERFLOW_RETRIES: u32 = 3;
/// The compaction window is never shrunk below this many estimated tokens.
pub const MIN_WINDOW: usize = 256;

/// Starts the task running `p`.
pub(crate) fn start(inner: Arc<KernelInner>, p: Arc<Process>, inbox: IpcInbox) {
    tokio::spawn(async move {
        let deadline = p.deadline();
        let wall = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let status = tokio::select! {
            biased;
            _ = p.cancel.cancelled() => ExitStatus::Killed,
            _ = wall => wall_time_exhausted(&p),
            s = run_loop(&inner, &p, inbox) => s,
        };
        // A kill that raced with the loop's last poll still wins.
        let status = if p.is_killed() { ExitStatus::Killed } else { status };
        inner.finish(&p, status.clone());
        inner.await_durable(&p).await;
        inner.publish_exit(&p, status);
    });
}

fn wall_time_exhausted(p: &Process) -> ExitStatus {
    ExitStatus::Failed {
        reason: format!(
            "wall-time budget exhausted ({:.1} s)",
            p.budgets.max_wall_time.unwrap_or_default().as_secs_f64()
        ),
    }
}

/// Counts consecutive identical failures.
struct LoopBreaker {
    limit: u32,
    last: Option<String>,
    count: u32,
}

impl LoopBreaker {
    fn success(&mut self) {
        self.last = None;
        self.count = 0;
    }
    /// Returns true when the limit is reached.
    fn failure(&mut self, key: String) -> bool {
        if self.last.as_deref() == Some(key.as_str()) {
            self.count += 1;
        } else {
            self.last = Some(key);
            self.count = 1;
        }
        self.limit > 0 && self.count >= self.limit
    }
}

fn next_id(p: &Process) -> u64 {
    let mut st = p.state.lock();
    let id = st.next_call_id;
    st.next_call_id += 1;
    id
}

fn count_call(p: &Process, name: &str, failed: bool) {
    let mut st = p.state.lock();
    *st.counters.syscalls.entry(name.to_string()).or_default() += 1;
    if failed {
        st.counters.errors += 1;
    }
}

async fn run_loop(inner: &Arc<KernelInner>, p: &Arc<Process>, mut inbox: IpcInbox) -> ExitStatus {
    let sem = inner.semaphore(&p.provider_name);
    let specs = inner.syscalls_for(&p.caps);
    let system = context::system_prompt(p, &specs);
    let base_window = inner.base_window(p);
    let mut breaker = LoopBreaker { limit: inner.config.loop_breaker, last: None, count: 0 };

    // A process restored while sleeping sleeps out the rest of its time first.
    let resumed_sleep = p.state.lock().sleep_until_ms.take();
    if let Some(until_ms) = resumed_sleep {
        let left = Duration::from_millis(until_ms.saturating_sub(now_ms()));
        if !left.is_zero() {
            inner.set_status(p, ProcessStatus::Sleeping { until_ms });
            tokio::select! {
                _ = tokio::time::sleep(left) => {}
                ev = inbox.events.recv() => {
                    if let Some(ev) = ev {
                        inner.take_event(p, ev);
                    }
                }
            }
        }
    }

    loop {
        for ev in inbox.drain_events() {
            inner.take_event(p, ev);
        }
        // Budgets.
        {
            let (steps, tokens) = {
                let st = p.state.lock();
                (st.counters.steps, st.counters.total_tokens())
            };
            if let Some(max) = p.budgets.max_steps {
                if steps >= max {
                    return ExitStatus::Failed {
                        reason: format!("step budget exhausted: {max} model calls used without SYS_EXIT"),
                    };
                }
            }
            if let Some(max) = p.budgets.max_tokens {
                if tokens >= max {
                    return ExitStatus::Failed {
                        reason: format!("token budget exhausted: {tokens} of {max} tokens used"),
                    };
                }
            }
        }

        // The select in `start` cannot interrupt a loop whose awaits complete
        // without yielding, so kill and wall time are also checked here.
        if p.is_killed() {
            return ExitStatus::Killed;
        }
        if let Some(d) = p.deadline() {
            if std::time::Instant::now() >= d {
                return wall_time_exhausted(p);
            }
        }
        inner.set_status(p, ProcessStatus::Ready);
        // The model call is a side effect: what led to it must be durable.
        inner.await_durable(p).await;
        let permit = sem.acquire().await.expect("semaphores are never closed");
        inner.set_status(p, ProcessStatus::WaitingModel);
        let mut overflows = 0;
        // (provider, prompt tokens, limit) of the last overflow of this step.
        let mut overflowed: Option<(String, u64, u64)> = None;
        let completion = loop {
            let (messages, newly, start, window) = {
                let mut st = p.state.lock();
                let window = st.context_window.map_or(base_window, |w| w.min(base_window));
                let (m, n) = context::build_messages(p, &mut st, &system, window);
                (m, n, st.context_start, window)
            };
            if newly > 0 {
                inner.emit(KernelEvent::Compacted { pid: p.pid, entries: newly, context_start: start });
            }
            if let Some((provider, prompt_tokens, limit)) = &overflowed {
                // Compaction could not shrink the rejected prompt any further
                // (the system prompt, task and newest entry alone overflow),
                // or the retries are used up.
                if newly == 0 || overflows > OVERFLOW_RETRIES {
                    return context_overflow(provider, *prompt_tokens, *limit, &messages, specs.len());
                }
            }
            let sent = estimate_prompt_tokens(&messages) as usize;
            let req = CompletionRequest {
                model: p.model.clone(),
                messages,
                max_tokens: inner.config.max_reply_tokens,
                temperature: inner.config.temperature,
                syscalls: specs.clone(),
                pid: p.pid,
            };
            match p.provider.complete(req).await {
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
                    p.state.lock().context_window = Some(shrunk);
                    inner.emit(KernelEvent::ContextShrunk { pid: p.pid, prompt_tokens, limit, window: shrunk });
                    overflowed = Some((provider, prompt_tokens, limit));
                }
                Err(e) => return ExitStatus::Failed { reason: format!("model call failed: {e}") },
            }
        };
        drop(permit);
        {
            let mut st = p.state.lock();
            st.counters.steps += 1;
            st.counters.prompt_tokens += completion.usage.prompt_tokens;
            st.counters.completion_tokens += completion.usage.completion_tokens;
            st.counters.tokens_estimated |= completion.usage.estimated;
            st.counters.last_activity_ms = now_ms();
        }
        inner.set_status(p, ProcessStatus::Running);
        inner.record(p, Entry::Reply { text: completion.text.clone(), truncated: completion.truncated });

        if completion.truncated {
            let id = next_id(p);
            p.state.lock().counters.errors += 1;
            let error = format!(
                "limit exceeded: your reply was cut off at the max_tokens limit ({}) and none of its calls were run; \
                 reply more briefly (split large content over several calls) and repeat the calls",
                inner.config.max_reply_tokens.map(|n| n.to_string()).unwrap_or_else(|| "provider default".into())
            );
            inner.record(p, Entry::Error { id, name: None, args: None, error: error.clone() });
            if breaker.failure("\0truncated".into()) {
                return loop_broken("a truncated reply", &error, breaker.count);
            }
            continue;
        }

        let calls = parser::parse_reply(&completion.text);
        let total = calls.len();
        let mut sleep_for: Option<f64> = None;
        for (i, call) in calls.into_iter().enumerate() {
            if p.is_killed() {
                return ExitStatus::Killed;
            }
            let id = next_id(p);
            let call: ParsedCall = match call {
                Ok(c) => c,
                Err(e) => {
                    if let Some(n) = &e.name {
                        count_call(p, n, true);
                    } else {
                        p.state.lock().counters.errors += 1;
                    }
                    let error = format!("invalid call: {}", e.message);
                    inner.record(p, Entry::Error { id, name: e.name.clone(), args: None, error: error.clone() });
                    if breaker.failure(format!("\0parse\0{}", e.message)) {
                        return loop_broken(e.name.as_deref().unwrap_or("a malformed call"), &error, breaker.count);
                    }
                    continue;
                }
            };
            if syscalls::acts_on_world(p, &call.name) {
                // The reply that asked for it is durable before it runs.
                inner.await_durable(p).await;
            }
            match syscalls::dispatch(inner, p, &mut inbox, &call).await {
                Outcome::Ok { output, effects } => {
                    count_call(p, &call.name, false);
                    breaker.success();
                    inner.record(p, Entry::Result { id, name: call.name.clone(), args: call.args.clone(), output });
                    for eff in effects {
                        match eff {
                            Effect::Sleep { seconds } => {
                                sleep_for = Some(sleep_for.unwrap_or(0.0).max(seconds));
                            }
                            Effect::Schedule { id: tid, seconds, prompt } => {
                                let due_ms = now_ms() + (seconds.clamp(0.0, 1e9) * 1000.0) as u64;
                                if inner.wants_events() {
                                    inner.emit(KernelEvent::Scheduled { pid: p.pid, id: tid, due_ms, prompt: prompt.clone() });
                                }
                                arm_timer(inner.clone(), p, tid, due_ms, prompt);
                            }
                        }
                    }
                }
                Outcome::Err(err) => {
                    count_call(p, &call.name, true);
                    let error = err.to_string();
                    inner.record(p, Entry::Error {
                        id,
                        name: Some(call.name.clone()),
                        args: Some(call.args.clone()),
                        error: error.clone(),
                    });
                    if breaker.failure(format!("{}\0{}", call.name, call.args)) {
                        return loop_broken(&format!("`{}` with the same arguments", call.name), &error, breaker.count);
                    }
                }
                Outcome::Exit { code, result } => {
                    count_call(p, &call.name, false);
                    inner.record(p, Entry::Result {
                        id,
                        name: call.name.clone(),
                        args: call.args.clone(),
                        output: serde_json::json!({"exiting": code}),
                    });
                    let skipped = total - i - 1;
                    if skipped > 0 {
                        inner.record(p, Entry::Notice {
                            text: format!("{skipped} call(s) after SYS_EXIT were not run"),
                        });
                    }
                    return ExitStatus::Exited { code, result };
                }
            }
        }

        if let Some(secs) = sleep_for {
            let d = Duration::from_secs_f64(secs.clamp(0.0, 1e9));
            inner.set_status(p, ProcessStatus::Sleeping { until_ms: now_ms() + d.as_millis() as u64 });
            // A scheduled wake-up or child event ends the sleep early.
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                ev = inbox.events.recv() => {
                    if let Some(ev) = ev {
                        inner.take_event(p, ev);
                    }
                }
            }
        }
    }
}

/// The next compaction window after a prompt estimated at `sent` tokens was
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
pub(crate) fn arm_timer(inner: Arc<KernelInner>, p: &Arc<Process>, id: u64, due_ms: u64, prompt: String) {
    let target = Arc::downgrade(p);
    let cancel = p.cancel.clone();
    let d = Duration::from_millis(due_ms.saturating_sub(now_ms()));
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(d) => {
                let Some(p) = target.upgrade() else { return };
                let text = format!("scheduled wake-up #{id}: {prompt}");
                if inner.deliver(&p, crate::kernel::Delivery::Event { text, durable: true }) && inner.wants_events() {
                    inner.emit(KernelEvent::Fired { pid: p.pid, id });
                }
            }
        }
    });
}
