//! Dispatch of one parsed call, in named steps:
//!
//! 1. **resolve** the name for the process's grants ([`crate::resolve`]):
//!    a kernel syscall, a source's handle (a driver syscall), or one typed
//!    refusal (unknown name with what is available; denied with the
//!    missing capability);
//! 2. **upgrade** the original AgentOS's argument shapes to today's
//!    ([`crate::compat`]), then **validate** the arguments against the syscall's JSON Schema (its one
//!    description, [`aos_abi::SyscallSpec`]), with a precise message;
//! 3. **authorize**: the policy step between resolution and execution —
//!    where approvals (allow / ask / deny per syscall and argument pattern)
//!    go; today every resolved, valid call is allowed;
//! 4. **execute**: the kernel's implementation ([`crate::syscalls::run`])
//!    or the source's handle — a call that acts on the world first waits
//!    until the caller's journalled events are durable.

use std::sync::Arc;

use aos_abi::{AgentContext, SyscallError};
use serde_json::Value;

use crate::durability::await_durable;
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
            if acts_on_world(&resolved, p) {
                // The reply that asked for it is durable before it runs.
                await_durable(env.events, p).await;
            }
            execute(env, p, inbox, resolved, &args).await
        }
        Err(e) => Outcome::Err(e),
    }
}

/// Steps 1 to 3: the call and its arguments, ready to run, or why it is
/// not run.
fn prepare(env: CallEnv<'_>, p: &Process, call: &ParsedCall) -> Result<(Resolved, Value), SyscallError> {
    let resolved = env.syscalls.resolve(&call.name, &p.caps)?;
    let args = crate::compat::upgrade(&call.name, &call.args, &resolved.spec().args_schema);
    validate(&resolved, &call.name, &args)?;
    authorize(p, &resolved, &args)?;
    Ok((resolved, args))
}

fn validate(resolved: &Resolved, name: &str, args: &Value) -> Result<(), SyscallError> {
    let schema = &resolved.spec().args_schema;
    schema::validate(schema, args).map_err(|m| invalid(name, m, schema))
}

/// The policy check between resolution and execution. Approvals (allow /
/// ask / deny per syscall and argument pattern) plug in here; until then
/// a resolved, valid call is allowed.
fn authorize(_p: &Process, _resolved: &Resolved, _args: &Value) -> Result<(), SyscallError> {
    Ok(())
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
