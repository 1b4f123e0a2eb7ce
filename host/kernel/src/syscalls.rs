//! Kernel syscalls (IPC, stdio, exit, spawn) with their [`SyscallSpec`]s, and
//! the dispatcher that validates every parsed call — kernel or driver — and
//! runs it: name lookup, capability check, JSON-Schema validation, then
//! either the kernel implementation here or `DriverRuntime::call`.
//!
//! | syscall            | capability | arguments                                             |
//! |--------------------|------------|-------------------------------------------------------|
//! | `SEND_MSG`         | `ipc`      | `to_pid`, `content`                                   |
//! | `RECV_MSG`         | `ipc` or `webhook` | `timeout?` (seconds; waits forever without); with `webhook` alone it waits for the process's own events only (webhook requests, child exits, timers), never reading its mailbox |
//! | `SYS_WRITE_STDOUT` | —          | `text`                                                |
//! | `SYS_READ_STDIN`   | —          | —                                                     |
//! | `SYS_EXIT`         | —          | `code?`, `result?`                                    |
//! | `SPAWN_AGENT`      | `spawn`    | `task`, `permissions`, `role?`, `model?`, `provider?`, `pipe_to?` |
//! | `SYS_REGISTER_WEBHOOK` | `webhook` | `path`                                           |
//! | `SYS_WEBHOOK_REPLY`    | `webhook` | `request_id`, `status?`, `body?`                 |

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aos_abi::{Capability, CapabilitySet, Effect, SyscallError, SyscallSpec};
use aos_runtime::AgentContext;
use serde_json::{json, Value};

use crate::ipc::{IpcInbox, Woke};
use crate::kernel::{KernelInner, SpawnRequest};
use crate::parser::ParsedCall;
use crate::process::{Entry, Process, ProcessStatus};
use crate::schema;

/// A syscall implemented by the kernel itself.
pub struct KernelSyscall {
    pub spec: SyscallSpec,
    /// Capability needed, if any.
    pub requires: Option<Capability>,
    /// Another capability that also grants the call (in a narrower form,
    /// see `run_kernel`).
    pub also_granted_by: Option<Capability>,
}

impl KernelSyscall {
    /// Whether a holder of `caps` may make this call.
    pub fn granted_to(&self, caps: &CapabilitySet) -> bool {
        match &self.requires {
            None => true,
            Some(c) => caps.grants(c) || self.also_granted_by.as_ref().is_some_and(|a| caps.grants(a)),
        }
    }
}

fn spec(name: &str, description: &str, args_schema: Value) -> SyscallSpec {
    SyscallSpec { name: name.into(), description: description.into(), args_schema }
}

/// All kernel syscalls.
pub fn kernel_syscalls() -> &'static [KernelSyscall] {
    static S: OnceLock<Vec<KernelSyscall>> = OnceLock::new();
    S.get_or_init(|| {
        vec![
            KernelSyscall {
                spec: spec(
                    "SEND_MSG",
                    "Send a text message to another process's mailbox. Result: {\"delivered\": true}.",
                    json!({"type": "object", "properties": {
                        "to_pid": {"type": "integer", "minimum": 0},
                        "content": {"type": "string"}
                    }, "required": ["to_pid", "content"], "additionalProperties": false}),
                ),
                requires: Some(Capability::Ipc),
                also_granted_by: None,
            },
            KernelSyscall {
                spec: spec(
                    "RECV_MSG",
                    "Wait for the next message in your mailbox (up to `timeout` seconds; forever without). Result: {\"from\": pid, \"content\": text}, {\"timed_out\": true}, or {\"interrupted\": ...} when an event (child exit, timer) arrives first.",
                    json!({"type": "object", "properties": {
                        "timeout": {"type": "number", "minimum": 0}
                    }, "additionalProperties": false}),
                ),
                requires: Some(Capability::Ipc),
                // A webhook agent waits for its own requests; the mailbox stays closed to it.
                also_granted_by: Some(Capability::Webhook),
            },
            KernelSyscall {
                spec: spec(
                    "SYS_WRITE_STDOUT",
                    "Write text to your standard output (shown to the user, or piped to another process).",
                    json!({"type": "object", "properties": {
                        "text": {"type": "string"}
                    }, "required": ["text"], "additionalProperties": false}),
                ),
                requires: None,
                also_granted_by: None,
            },
            KernelSyscall {
                spec: spec(
                    "SYS_READ_STDIN",
                    "Wait for the next line on your standard input. Result: {\"text\": line}.",
                    json!({"type": "object", "properties": {}, "additionalProperties": false}),
                ),
                requires: None,
                also_granted_by: None,
            },
            KernelSyscall {
                spec: spec(
                    "SYS_EXIT",
                    "End this process. `code` 0 means success; `result` is reported to your parent. Calls after it in the same reply are not run.",
                    json!({"type": "object", "properties": {
                        "code": {"type": "integer"},
                        "result": {}
                    }, "additionalProperties": false}),
                ),
                requires: None,
                also_granted_by: None,
            },
            KernelSyscall {
                spec: spec(
                    "SPAWN_AGENT",
                    "Start a child agent process working on `task`. `permissions` lists the rights it gets (capability names such as fs:ro, fs:rw, net, ipc, spawn, timers, webhook; you can only grant rights you hold; [] = none). It shares your workspace and at most your remaining budget. `pipe_to` sends its stdout to that process's stdin. You get an [EVENT] when it exits. Result: {\"pid\": n}.",
                    json!({"type": "object", "properties": {
                        "task": {"type": "string", "minLength": 1},
                        "role": {"type": "string"},
                        "model": {"type": "string"},
                        "provider": {"type": "string"},
                        "permissions": {"type": "array", "items": {"type": "string"}},
                        "pipe_to": {"type": "integer", "minimum": 1}
                    }, "required": ["task", "permissions"], "additionalProperties": false}),
                ),
                requires: Some(Capability::Spawn),
                also_granted_by: None,
            },
            KernelSyscall {
                spec: spec(
                    "SYS_REGISTER_WEBHOOK",
                    "Receive HTTP requests sent to `path` (e.g. \"/github/push\"; letters, digits, '/', '-', '_', '.'). Callers must send the returned secret in the header X-AOS-Secret (or X-AOS-Signature: sha256=HMAC-SHA256(body, secret)). Each request arrives as an [EVENT] `webhook request #ID` (it also wakes RECV_MSG, SYS_READ_STDIN and SLEEP); answer it with SYS_WEBHOOK_REPLY. Result: {\"url\", \"path\", \"secret\"}.",
                    json!({"type": "object", "properties": {
                        "path": {"type": "string", "minLength": 2, "maxLength": 200}
                    }, "required": ["path"], "additionalProperties": false}),
                ),
                requires: Some(Capability::Webhook),
                also_granted_by: None,
            },
            KernelSyscall {
                spec: spec(
                    "SYS_WEBHOOK_REPLY",
                    "Answer webhook request `request_id` (from its [EVENT]) with an HTTP `status` (default 200) and a text `body`. Each request is answered once; unanswered ones time out. Result: {\"replied\": id}.",
                    json!({"type": "object", "properties": {
                        "request_id": {"type": "integer", "minimum": 1},
                        "status": {"type": "integer", "minimum": 100, "maximum": 599},
                        "body": {"type": "string"}
                    }, "required": ["request_id"], "additionalProperties": false}),
                ),
                requires: Some(Capability::Webhook),
                also_granted_by: None,
            },
        ]
    })
}

fn find_kernel(name: &str) -> Option<&'static KernelSyscall> {
    kernel_syscalls().iter().find(|k| k.spec.name == name)
}

/// Kernel syscalls a holder of `caps` may use.
pub fn kernel_specs_for(caps: &CapabilitySet) -> Vec<SyscallSpec> {
    kernel_syscalls()
        .iter()
        .filter(|k| k.granted_to(caps))
        .map(|k| match &k.requires {
            // Granted through `also_granted_by` only: say what the narrower form does.
            Some(c) if k.spec.name == "RECV_MSG" && !caps.grants(c) => SyscallSpec {
                description: "Wait for the next event (a webhook request, a child's exit, a timer) for up to `timeout` seconds (forever without); the event is added to your context. Messages from other processes need the `ipc` right and are not read. Result: {\"interrupted\": ...} when an event arrived, or {\"timed_out\": true}.".into(),
                ..k.spec.clone()
            },
            _ => k.spec.clone(),
        })
        .collect()
}

/// Whether running `name` for `p` may have an effect outside `p` (driver
/// calls, messages, spawns, webhooks, piped stdout): such a call waits until
/// the process's journalled events are durable (see [`crate::durability`]).
pub(crate) fn acts_on_world(p: &Process, name: &str) -> bool {
    match name {
        "RECV_MSG" | "SYS_READ_STDIN" | "SYS_EXIT" => false,
        "SYS_WRITE_STDOUT" => p.pipe_to.is_some(),
        _ => true,
    }
}

/// What running one call produced.
pub(crate) enum Outcome {
    Ok { output: Value, effects: Vec<Effect> },
    Err(SyscallError),
    Exit { code: i64, result: Option<String> },
}

fn denied(c: &Capability) -> SyscallError {
    SyscallError::Denied(format!("capability `{c}` not granted to this process"))
}

fn invalid(name: &str, msg: String, schema: &Value) -> SyscallError {
    SyscallError::InvalidArguments(format!("{name}: {msg}; expected arguments: {schema}"))
}

/// Validates and runs one parsed call for `p`.
pub(crate) async fn dispatch(
    inner: &Arc<KernelInner>,
    p: &Arc<Process>,
    inbox: &mut IpcInbox,
    call: &ParsedCall,
) -> Outcome {
    let name = call.name.as_str();
    if let Some(k) = find_kernel(name) {
        if !k.granted_to(&p.caps) {
            if let Some(c) = &k.requires {
                return Outcome::Err(denied(c));
            }
        }
        if let Err(m) = schema::validate(&k.spec.args_schema, &call.args) {
            return Outcome::Err(invalid(name, m, &k.spec.args_schema));
        }
        return run_kernel(inner, p, inbox, name, &call.args).await;
    }
    let Some(info) = inner.runtime.lookup(name) else {
        let avail: Vec<String> = inner.syscalls_for(&p.caps).into_iter().map(|s| s.name).collect();
        return Outcome::Err(SyscallError::NotFound(format!(
            "unknown syscall `{name}`; available: {}",
            avail.join(", ")
        )));
    };
    if let Some(c) = info.requires.iter().find(|c| !p.caps.grants(c)) {
        return Outcome::Err(denied(c));
    }
    if let Err(m) = schema::validate(&info.spec.args_schema, &call.args) {
        return Outcome::Err(invalid(name, m, &info.spec.args_schema));
    }
    let agent = AgentContext { pid: p.pid, caps: p.caps.clone(), workspace: p.workspace.clone() };
    match inner.runtime.call(&agent, name, &call.args).await {
        Ok(out) => Outcome::Ok { output: out.output, effects: out.effects },
        Err(e) => Outcome::Err(e),
    }
}

async fn run_kernel(
    inner: &Arc<KernelInner>,
    p: &Arc<Process>,
    inbox: &mut IpcInbox,
    name: &str,
    args: &Value,
) -> Outcome {
    let ok = |output: Value| Outcome::Ok { output, effects: Vec::new() };
    match name {
        "SEND_MSG" => {
            let to = args["to_pid"].as_u64().unwrap_or(0);
            let content = args["content"].as_str().unwrap_or_default().to_string();
            let Some(target) = inner.table.get(to) else {
                let why = if inner.table.was_reaped(to) { " (it ended and was reaped)" } else { "" };
                return Outcome::Err(SyscallError::NotFound(format!("no process with pid {to}{why}")));
            };
            if let Some(exit) = target.state.lock().exit.clone() {
                return Outcome::Err(SyscallError::NotFound(format!("process {to} has ended (it {exit})")));
            }
            inner.deliver(&target, crate::kernel::Delivery::Msg { from: p.pid, content });
            ok(json!({"delivered": true}))
        }
        "RECV_MSG" => {
            let timeout = args.get("timeout").and_then(Value::as_f64).map(|s| Duration::from_secs_f64(s.min(1e9)));
            inner.set_status(p, ProcessStatus::BlockedRecv);
            // Without `ipc` (granted through `webhook`): events only, the mailbox is not read.
            let r = if p.caps.grants(&Capability::Ipc) {
                inbox.recv_msg(timeout).await
            } else {
                inbox.wait_event(timeout).await
            };
            inner.set_status(p, ProcessStatus::Running);
            match r {
                Woke::Got(m) => {
                    inner.consumed(p, crate::ipc::Queue::Mailbox);
                    ok(json!({"from": m.from, "content": m.content}))
                }
                Woke::TimedOut => ok(json!({"timed_out": true})),
                Woke::Event(e) => {
                    inner.take_event(p, e);
                    ok(json!({"interrupted": "an event arrived (see [EVENT]); call RECV_MSG again to keep waiting"}))
                }
            }
        }
        "SYS_WRITE_STDOUT" => {
            let text = args["text"].as_str().unwrap_or_default().to_string();
            inner.record(p, Entry::Stdout { text: text.clone() });
            let mut out = json!({"written": text.chars().count()});
            if let Some(t) = p.pipe_to {
                match inner.table.get(t) {
                    Some(target) if target.state.lock().exit.is_none() => {
                        inner.deliver(&target, crate::kernel::Delivery::Stdin(text));
                        out["piped_to"] = json!(t);
                    }
                    _ => out["pipe_closed"] = json!(t),
                }
            }
            ok(out)
        }
        "SYS_READ_STDIN" => {
            inner.set_status(p, ProcessStatus::BlockedStdin);
            let r = inbox.read_stdin().await;
            inner.set_status(p, ProcessStatus::Running);
            match r {
                Woke::Got(text) => {
                    inner.consumed(p, crate::ipc::Queue::Stdin);
                    ok(json!({"text": text}))
                }
                Woke::TimedOut => ok(json!({"timed_out": true})),
                Woke::Event(e) => {
                    inner.take_event(p, e);
                    ok(json!({"interrupted": "an event arrived (see [EVENT]); call SYS_READ_STDIN again to keep waiting"}))
                }
            }
        }
        "SYS_EXIT" => {
            let code = args.get("code").and_then(Value::as_i64).unwrap_or(0);
            let result = match args.get("result") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(v) => Some(v.to_string()),
            };
            if inner.wants_events() {
                inner.emit(crate::KernelEvent::Exiting { pid: p.pid, code, result: result.clone() });
            }
            Outcome::Exit { code, result }
        }
        "SPAWN_AGENT" => spawn_agent(inner, p, args),
        "SYS_REGISTER_WEBHOOK" => {
            let path = args["path"].as_str().unwrap_or_default();
            match inner.webhooks.register(p.pid, path, None) {
                Ok(out) => {
                    if inner.wants_events() {
                        if let (Some(path), Some(secret)) = (out["path"].as_str(), out["secret"].as_str()) {
                            inner.emit(crate::KernelEvent::WebhookRegistered {
                                pid: p.pid,
                                path: path.to_string(),
                                secret: secret.to_string(),
                            });
                        }
                    }
                    ok(out)
                }
                Err(e) => Outcome::Err(SyscallError::InvalidArguments(format!("SYS_REGISTER_WEBHOOK: {e}"))),
            }
        }
        "SYS_WEBHOOK_REPLY" => {
            let id = args["request_id"].as_u64().unwrap_or(0);
            let status = args.get("status").and_then(Value::as_u64).unwrap_or(200) as u16;
            let body = args.get("body").and_then(Value::as_str).unwrap_or_default().to_string();
            match inner.webhooks.reply(p.pid, id, crate::webhook::WebhookResponse { status, body }) {
                Ok(()) => ok(json!({"replied": id})),
                Err(e) => Outcome::Err(SyscallError::NotFound(e)),
            }
        }
        _ => Outcome::Err(SyscallError::Internal(format!("kernel syscall `{name}` has no implementation"))),
    }
}

fn spawn_agent(inner: &Arc<KernelInner>, p: &Arc<Process>, args: &Value) -> Outcome {
    let perms: Vec<&str> = args["permissions"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let requested = match CapabilitySet::parse(&perms) {
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
    let provider = args.get("provider").and_then(Value::as_str).map(str::to_string);
    let base_url = match &provider {
        Some(pr) if *pr != p.provider_name => None,
        _ => p.base_url.clone(),
    };
    let req = SpawnRequest {
        task: args["task"].as_str().unwrap_or_default().to_string(),
        role: args.get("role").and_then(Value::as_str).unwrap_or_default().to_string(),
        provider: provider.unwrap_or_else(|| p.provider_name.clone()),
        model: args.get("model").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| p.model.clone()),
        base_url,
        caps: requested,
        budgets: p.remaining(),
        workspace: Some(p.workspace.clone()),
        pipe_to: args.get("pipe_to").and_then(Value::as_u64),
        parent: Some(p.pid),
    };
    match inner.spawn(req) {
        Ok(pid) => Outcome::Ok { output: json!({"pid": pid}), effects: Vec::new() },
        Err(e) => Outcome::Err(match e {
            crate::KernelError::Denied(m) => SyscallError::Denied(m.to_string()),
            crate::KernelError::Invalid(m) => SyscallError::InvalidArguments(format!("SPAWN_AGENT: {m}")),
            crate::KernelError::Provider { .. } => SyscallError::InvalidArguments(format!("SPAWN_AGENT: {e}")),
            other => SyscallError::Internal(other.to_string()),
        }),
    }
}
