//! The implementations of the kernel's syscalls, against a narrow view of
//! the kernel ([`CallEnv`]): the event bus, the process table (to reach
//! another process), the webhook registry, grant parsing, and a way to
//! start a child — nothing else.

use std::sync::Arc;
use std::time::Duration;

use aos_abi::{Capability, SyscallError};
use serde_json::{json, Value};

use super::{args, KernelCall, Outcome};
use crate::error::KernelError;
use crate::bus::EventBus;
use crate::events::KernelEvent;
use crate::ipc::{IpcInbox, Queue, Woke};
use crate::pcb::{Delivery, Process};
use crate::process::{Entry, Pid, ProcessStatus, SpawnRequest};
use crate::resolve::Syscalls;
use crate::table::ProcessTable;
use crate::webhook::{WebhookRegistry, WebhookResponse};

/// Starts a child process (the kernel's lifecycle, behind a closure).
pub(crate) type Spawn<'a> = &'a (dyn Fn(SpawnRequest) -> Result<Pid, KernelError> + Send + Sync);

/// What kernel syscalls may use.
#[derive(Clone, Copy)]
pub(crate) struct CallEnv<'a> {
    pub events: &'a EventBus,
    pub table: &'a ProcessTable,
    pub webhooks: &'a WebhookRegistry,
    pub syscalls: &'a Syscalls,
    pub spawn: Spawn<'a>,
    pub approvals: &'a crate::approval::Approvals,
    pub approval_timeout: std::time::Duration,
}

/// Runs one kernel call for `p`.
pub(crate) async fn run(env: CallEnv<'_>, p: &Arc<Process>, inbox: &mut IpcInbox, call: KernelCall) -> Outcome {
    let ok = |output: Value| Outcome::Ok { output, effects: Vec::new() };
    let bus = env.events;
    match call {
        KernelCall::SendMsg(a) => {
            let to = a.to_pid;
            let Some(target) = env.table.get(to) else {
                let why = if env.table.was_reaped(to) { " (it ended and was reaped)" } else { "" };
                return Outcome::Err(SyscallError::NotFound(format!("no process with pid {to}{why}")));
            };
            if let Some(exit) = target.exit_status() {
                return Outcome::Err(SyscallError::NotFound(format!("process {to} has ended (it {exit})")));
            }
            if let Err(e) = may_write_to(env.table, p, to, "SEND_MSG") {
                return Outcome::Err(e);
            }
            target.deliver(bus, Delivery::Msg { from: p.pid, content: a.content });
            ok(json!({"delivered": true}))
        }
        KernelCall::RecvMsg(a) => {
            let timeout = a.timeout.map(|s| Duration::from_secs_f64(s.clamp(0.0, 1e9)));
            p.set_status(bus, ProcessStatus::BlockedRecv);
            // Without `ipc` (granted through `webhook`): events only, the mailbox is not read.
            let r = if p.caps.grants(&Capability::Ipc) {
                inbox.recv_msg(timeout).await
            } else {
                inbox.wait_event(timeout).await
            };
            p.set_status(bus, ProcessStatus::Running);
            match r {
                Woke::Got(m) => {
                    p.consumed(bus, Queue::Mailbox);
                    ok(json!({"from": m.from, "content": m.content}))
                }
                Woke::TimedOut => ok(json!({"timed_out": true})),
                Woke::Event(e) => {
                    p.take_event(bus, e);
                    ok(json!({"interrupted": "an event arrived (see [EVENT]); call RECV_MSG again to keep waiting"}))
                }
            }
        }
        KernelCall::WriteStdout(a) => {
            let text = a.text;
            p.record(bus, Entry::Stdout { text: text.clone() });
            let mut out = json!({"written": text.chars().count()});
            if let Some(t) = p.pipe_to {
                match env.table.get(t) {
                    Some(target) if target.is_running() => {
                        target.deliver(bus, Delivery::Stdin(text));
                        out["piped_to"] = json!(t);
                    }
                    _ => out["pipe_closed"] = json!(t),
                }
            }
            ok(out)
        }
        KernelCall::ReadStdin(_) => {
            p.set_status(bus, ProcessStatus::BlockedStdin);
            let r = inbox.read_stdin().await;
            p.set_status(bus, ProcessStatus::Running);
            match r {
                Woke::Got(text) => {
                    p.consumed(bus, Queue::Stdin);
                    ok(json!({"text": text}))
                }
                Woke::TimedOut => ok(json!({"timed_out": true})),
                Woke::Event(e) => {
                    p.take_event(bus, e);
                    ok(json!({"interrupted": "an event arrived (see [EVENT]); call SYS_READ_STDIN again to keep waiting"}))
                }
            }
        }
        KernelCall::Exit(a) => {
            let result = match a.result {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s),
                Some(v) => Some(v.to_string()),
            };
            let code = a.code.unwrap_or(0);
            // It has ended, even if the kernel stops before its `Exited` event.
            p.announce_with(bus, || KernelEvent::Exiting { pid: p.pid, code, result: result.clone() });
            Outcome::Exit { code, result }
        }
        KernelCall::SpawnAgent(a) => spawn_agent(env, p, a),
        KernelCall::RegisterWebhook(a) => match env.webhooks.register(p.pid, &a.path, None) {
            Ok(out) => {
                // A restore registers it again with the same secret.
                if let (Some(path), Some(secret)) = (out["path"].as_str(), out["secret"].as_str()) {
                    p.announce_with(bus, || KernelEvent::WebhookRegistered {
                        pid: p.pid,
                        path: path.to_string(),
                        secret: secret.to_string(),
                    });
                }
                ok(out)
            }
            Err(e) => Outcome::Err(SyscallError::InvalidArguments(format!("SYS_REGISTER_WEBHOOK: {e}"))),
        },
        KernelCall::WebhookReply(a) => {
            let id = a.request_id;
            let resp = WebhookResponse { status: a.status.unwrap_or(200), body: a.body.unwrap_or_default() };
            match env.webhooks.reply(p.pid, id, resp) {
                Ok(()) => ok(json!({"replied": id})),
                Err(e) => Outcome::Err(SyscallError::NotFound(e)),
            }
        }
    }
}

/// Whether `p` may write into the stdin or mailbox of `target` (`what` is
/// the syscall or argument, for the message): it needs `ipc`, and `target`
/// must be in `p`'s own process tree (same root) unless `p` holds
/// `ipc:any`, which the operator grants explicitly (never part of `all`).
/// The operator's own `aos send` and control API do not go through here.
fn may_write_to(table: &ProcessTable, p: &Process, target: Pid, what: &str) -> Result<(), SyscallError> {
    if !p.caps.grants(&Capability::Ipc) {
        return Err(SyscallError::Denied(format!("capability `ipc` not granted (needed by {what})")));
    }
    if p.caps.grants(&Capability::IpcAny) {
        return Ok(());
    }
    let root = table.root_of(p.pid);
    if table.root_of(target) != root {
        return Err(SyscallError::Denied(format!(
            "{what}: process {target} is not in your process tree (root {root}); a process may only write \
             to the stdin or mailbox of processes descending from its own root, unless the operator grants `ipc:any`"
        )));
    }
    Ok(())
}

fn spawn_agent(env: CallEnv<'_>, p: &Arc<Process>, a: args::SpawnAgent) -> Outcome {
    if let Some(t) = a.pipe_to {
        if env.table.get(t).is_some() {
            if let Err(e) = may_write_to(env.table, p, t, "SPAWN_AGENT `pipe_to`") {
                return Outcome::Err(e);
            }
        }
    }
    let requested = match env.syscalls.parse_grants(&a.permissions) {
        Ok(s) => s,
        Err(e) => return Outcome::Err(SyscallError::InvalidArguments(format!("SPAWN_AGENT: field `permissions`: {e}"))),
    };
    if let Err(m) = p.caps.delegate(&requested) {
        let names: Vec<String> = m.0.iter().map(|c| format!("`{c}`")).collect();
        return Outcome::Err(SyscallError::Denied(format!(
            "cannot grant {} to a child: this process does not hold it (it holds: {})",
            names.join(", "),
            p.caps
        )));
    }
    let base_url = match &a.provider {
        Some(pr) if *pr != p.provider_name => None,
        _ => p.base_url.clone(),
    };
    let same_model = a.provider.as_ref().is_none_or(|pr| *pr == p.provider_name)
        && a.model.as_ref().is_none_or(|m| *m == p.model);
    let req = SpawnRequest {
        task: a.task,
        role: a.role.unwrap_or_default(),
        provider: a.provider.unwrap_or_else(|| p.provider_name.clone()),
        model: a.model.unwrap_or_else(|| p.model.clone()),
        base_url,
        caps: requested,
        budgets: p.remaining(),
        workspace: Some(p.workspace.clone()),
        pipe_to: a.pipe_to,
        parent: Some(p.pid),
        // A child of the same provider and model talks to it as its parent does.
        tool_mode: (same_model).then_some(p.tool_mode),
        // The child answers to its parent's approval policies.
        approvals: None,
    };
    match (env.spawn)(req) {
        Ok(pid) => Outcome::Ok { output: json!({"pid": pid}), effects: Vec::new() },
        Err(e) => Outcome::Err(match e {
            KernelError::Denied(m) => SyscallError::Denied(m.to_string()),
            KernelError::NotAllowed(m) => SyscallError::Denied(format!("SPAWN_AGENT: {m}")),
            KernelError::Invalid(m) => SyscallError::InvalidArguments(format!("SPAWN_AGENT: {m}")),
            KernelError::Limit(m) => SyscallError::LimitExceeded(format!("SPAWN_AGENT: {m}")),
            KernelError::Provider { .. } => SyscallError::InvalidArguments(format!("SPAWN_AGENT: {e}")),
            other => SyscallError::Internal(other.to_string()),
        }),
    }
}
