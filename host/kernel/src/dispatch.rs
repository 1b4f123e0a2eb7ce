//! Dispatch of one parsed call, in named steps:
//!
//! 1. **resolve** the name for the process's grants ([`crate::resolve`]):
//!    a kernel syscall, a source's handle (a driver syscall), or one typed
//!    refusal (unknown name with what is available; denied with the
//!    missing capability);
//! 2. **upgrade** the original AgentOS's argument shapes to today's
//!    ([`crate::compat`]), then **validate** the arguments against the syscall's JSON Schema (its one
//!    description, [`aos_abi::SyscallSpec`]), with a precise message;
//! 3. **authorize**: the process's approval policies ([`crate::approval`])
//!    allow the call, deny it, or ask the operator — then the process waits
//!    (shown as `approval`) until the call is approved, denied, or the
//!    approval times out (a denial);
//! 4. **execute**: the kernel's implementation ([`crate::syscalls::run`])
//!    or the source's handle — a call that acts on the world first waits
//!    until the caller's journalled events are durable.

use std::sync::Arc;

use aos_abi::{AgentContext, SyscallError};
use serde_json::Value;

use crate::approval::{Answer, Approvals, CallFacts, Decision};
use crate::durability::await_durable;
use crate::process::ProcessStatus;
use crate::ipc::IpcInbox;
use crate::parser::ParsedCall;
use crate::pcb::Process;
use crate::resolve::Resolved;
use crate::schema;
use crate::syscalls::run::CallEnv;
use crate::syscalls::{run, Outcome};

/// Resolves, validates, authorizes and runs one parsed call for `p`.
pub(crate) async fn dispatch(env: CallEnv<'_>, p: &Arc<Process>, inbox: &mut IpcInbox, call: &ParsedCall) -> Outcome {
    match prepare(env, p, call) {
        Ok((resolved, args)) => {
            if let Err(e) = authorize(env, p, &resolved.spec().name, &args).await {
                return Outcome::Err(e);
            }
            if acts_on_world(&resolved, p) {
                // The reply that asked for it is durable before it runs.
                await_durable(env.events, p).await;
            }
            execute(env, p, inbox, resolved, &args).await
        }
        Err(e) => Outcome::Err(e),
    }
}

/// Steps 1 and 2: the call and its arguments, ready to authorize, or why
/// it is not run.
fn prepare(env: CallEnv<'_>, p: &Process, call: &ParsedCall) -> Result<(Resolved, Value), SyscallError> {
    let resolved = env.syscalls.resolve(&call.name, &p.caps)?;
    let args = crate::compat::upgrade(&call.name, &call.args, &resolved.spec().args_schema);
    validate(&resolved, &call.name, &args)?;
    Ok((resolved, args))
}

fn validate(resolved: &Resolved, name: &str, args: &Value) -> Result<(), SyscallError> {
    let schema = &resolved.spec().args_schema;
    schema::validate(schema, args).map_err(|m| invalid(name, m, schema))
}

/// Step 3: the process's approval policies decide; `ask` waits for the
/// operator (or the timeout, a denial).
async fn authorize(env: CallEnv<'_>, p: &Arc<Process>, name: &str, args: &Value) -> Result<(), SyscallError> {
    let facts = CallFacts::new(name, args, &p.workspace);
    match p.approvals.decide(&facts) {
        Decision::Allow => Ok(()),
        Decision::Deny => Err(SyscallError::Denied(format!(
            "{name} with these arguments is denied by this process's approval policy (an operator's rule; \
             it cannot be approved from inside — choose another way to do the task)"
        ))),
        Decision::Ask => {
            // Asked before a restart: the same approval again (same id, same expiry).
            let again = p.awaiting_approval().filter(|a| a.syscall == name && a.args == *args);
            let resumed = again.is_some();
            let (info, answer) = env.approvals.ask(p.pid, &facts, &p.approvals, env.approval_timeout, again);
            let id = info.id;
            // A kill drops this future: the approval is withdrawn with it.
            let _pending = Withdraw { approvals: env.approvals, id };
            let timeout = std::time::Duration::from_millis(info.expires_at_ms.saturating_sub(crate::process::now_ms()));
            if !resumed {
                p.await_approval(env.events, Some(info));
            }
            // The reply that asked for it, and the question, are durable
            // before the operator sees it.
            await_durable(env.events, p).await;
            let before = match p.status() {
                ProcessStatus::Approval { .. } => ProcessStatus::Running,
                s => s,
            };
            p.set_status(env.events, ProcessStatus::Approval { id, syscall: name.to_string() });
            let answer = tokio::time::timeout(timeout, answer).await;
            p.set_status(env.events, before);
            p.await_approval(env.events, None);
            match answer {
                Ok(Ok(Answer::Approve { always })) => {
                    if always {
                        // The tree's chain has it (`Approvals::answer`); the journal keeps it.
                        let rule = crate::approval::Rule::always_for(&facts);
                        p.announce_with(env.events, || crate::KernelEvent::ApprovalRule { pid: p.pid, rule });
                    }
                    // Durable before the call runs: a crash from here on is
                    // an interrupted call, never one asked or run again.
                    p.announce_with(env.events, || crate::KernelEvent::ApprovalGranted { pid: p.pid, id });
                    await_durable(env.events, p).await;
                    Ok(())
                }
                Ok(Ok(Answer::Deny { reason })) => Err(SyscallError::Denied(format!(
                    "by the operator: {}",
                    reason.filter(|r| !r.trim().is_empty()).unwrap_or_else(|| "no reason given".into())
                ))),
                Ok(Err(_)) => Err(SyscallError::Denied(format!("approval {id} was withdrawn; the call did not run"))),
                Err(_) => Err(SyscallError::Denied(format!(
                    "the operator did not answer approval {id} within {:.1} s; the call did not run",
                    env.approval_timeout.as_secs_f64()
                ))),
            }
        }
    }
}

/// Removes a pending approval when its waiter goes (answered, timed out, killed).
struct Withdraw<'a> {
    approvals: &'a Approvals,
    id: u64,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        self.approvals.withdraw(self.id);
    }
}

/// Whether running it may have an effect outside `p` (driver calls,
/// messages, spawns, webhooks, piped stdout): such a call waits until
/// `p`'s journalled events are durable (see [`crate::durability`]).
fn acts_on_world(resolved: &Resolved, p: &Process) -> bool {
    match resolved {
        Resolved::Kernel(k) => k.acts_on_world(p.pipe_to.is_some()),
        Resolved::Source(_) => true,
    }
}

async fn execute(env: CallEnv<'_>, p: &Arc<Process>, inbox: &mut IpcInbox, resolved: Resolved, args: &Value) -> Outcome {
    match resolved {
        Resolved::Kernel(k) => match k.parse(args) {
            Ok(call) => run::run(env, p, inbox, call).await,
            Err(e) => Outcome::Err(invalid(k.name(), e.to_string(), &k.spec().args_schema)),
        },
        Resolved::Source(handle) => {
            let caller = AgentContext { pid: p.pid, caps: p.caps.clone(), workspace: p.workspace.clone() };
            match handle.call(&caller, args).await {
                Ok(out) => Outcome::Ok { output: out.output, effects: out.effects },
                Err(e) => Outcome::Err(e),
            }
        }
    }
}

fn invalid(name: &str, msg: String, schema: &Value) -> SyscallError {
    SyscallError::InvalidArguments(format!("{name}: {msg}; expected arguments: {schema}"))
}
