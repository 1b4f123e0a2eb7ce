//! Kernel syscalls (IPC, stdio, exit, spawn) with their [`SyscallSpec`]s, and
//! the dispatcher that validates every parsed call — kernel or driver — and
//! runs it: name lookup, capability check, JSON-Schema validation, then
//! either the kernel implementation here or `DriverRuntime::call`.
//!
//! | syscall            | capability | arguments                                             |
//! |--------------------|------------|-------------------------------------------------------|
//! | `SEND_MSG`         | `ipc`      | `to_pid`, `content`                                   |
//! | `RECV_MSG`         | `ipc`      | `timeout?` (seconds; waits forever without)            |
//! | `SYS_WRITE_STDOUT` | —          | `text`                                                |
//! | `SYS_READ_STDIN`   | —          | —                                                     |
//! | `SYS_EXIT`         | —          | `code?`, `result?`                                    |
//! | `SPAWN_AGENT`      | `spawn`    | `task`, `permissions`, `role?`, `model?`, `provider?`, `pipe_to?` |
//! | `SYS_REGISTER_WEBHOOK` | `webhook` | `path`                                           |
//! | `SYS_WEBHOOK_REPLY`    | `webhook` | `request_id`, `status?`, `body?`                 |

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aos_abi::{Capability, CapabilitySet, Effect, SyscallError, SyscallSpec};
use serde_json::{json, Value};

use crate::ipc::{IpcInbox, Woke};
use crate::kernel::{KernelInner, SpawnRequest};
use crate::parser::ParsedCall;
use crate::process::{Entry, Process, ProcessStatus};
use crate::resolve::Resolved;
use crate::schema;

pub mod args;

/// The kernel's syscall table: for each syscall, its variant, name,
/// argument type (whose JSON Schema is generated), capability and
/// description. [`KernelSyscall`] names a syscall; [`KernelCall`] is a call
/// with its typed arguments.
macro_rules! kernel_syscalls {
    ($( $variant:ident = $name:literal, $args:ty, $cap:expr, $desc:expr; )*) => {
        /// A syscall implemented by the kernel itself.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum KernelSyscall { $($variant),* }

        /// A kernel syscall with its typed arguments.
        #[derive(Debug, Clone)]
        pub enum KernelCall { $($variant($args)),* }

        impl KernelSyscall {
            /// Every kernel syscall, in the order the system prompt lists them.
            pub const ALL: &'static [KernelSyscall] = &[$(KernelSyscall::$variant),*];

            /// Its upper-case name, e.g. `SEND_MSG`.
            pub fn name(self) -> &'static str {
                match self { $(KernelSyscall::$variant => $name),* }
            }

            /// The capability a process needs to call it, if any.
            pub fn capability(self) -> Option<Capability> {
                match self { $(KernelSyscall::$variant => $cap),* }
            }

            fn description(self) -> &'static str {
                match self { $(KernelSyscall::$variant => $desc),* }
            }

            fn schema(self) -> Value {
                match self { $(KernelSyscall::$variant => schema_of::<$args>()),* }
            }

            /// Deserializes arguments (already checked against its schema).
            pub fn parse(self, args: &Value) -> Result<KernelCall, serde_json::Error> {
                let args = integral(args, &self.spec().args_schema);
                match self { $(KernelSyscall::$variant => serde_json::from_value(args).map(KernelCall::$variant)),* }
            }
        }
    };
}

kernel_syscalls! {
    SendMsg = "SEND_MSG", args::SendMsg, Some(Capability::Ipc),
        "Send a text message to another process's mailbox. Result: {\"delivered\": true}.";
    RecvMsg = "RECV_MSG", args::RecvMsg, Some(Capability::Ipc),
        "Wait for the next message in your mailbox (up to `timeout` seconds; forever without). Result: {\"from\": pid, \"content\": text}, {\"timed_out\": true}, or {\"interrupted\": ...} when an event (child exit, timer) arrives first.";
    WriteStdout = "SYS_WRITE_STDOUT", args::WriteStdout, None,
        "Write text to your standard output (shown to the user, or piped to another process).";
    ReadStdin = "SYS_READ_STDIN", args::ReadStdin, None,
        "Wait for the next line on your standard input. Result: {\"text\": line}.";
    Exit = "SYS_EXIT", args::Exit, None,
        "End this process. `code` 0 means success; `result` is reported to your parent. Calls after it in the same reply are not run.";
    SpawnAgent = "SPAWN_AGENT", args::SpawnAgent, Some(Capability::Spawn),
        "Start a child agent process working on `task`. `permissions` lists the rights it gets (capability names such as fs:ro, fs:rw, net, ipc, spawn, timers, webhook; you can only grant rights you hold; [] = none). It shares your workspace and at most your remaining budget. `pipe_to` sends its stdout to that process's stdin. You get an [EVENT] when it exits. Result: {\"pid\": n}.";
    RegisterWebhook = "SYS_REGISTER_WEBHOOK", args::RegisterWebhook, Some(Capability::Webhook),
        "Receive HTTP requests sent to `path` (e.g. \"/github/push\"; letters, digits, '/', '-', '_', '.'). Callers must send the returned secret in the header X-AOS-Secret (or X-AOS-Signature: sha256=HMAC-SHA256(body, secret)). Each request arrives as an [EVENT] `webhook request #ID` (it also wakes RECV_MSG, SYS_READ_STDIN and SLEEP); answer it with SYS_WEBHOOK_REPLY. Result: {\"url\", \"path\", \"secret\"}.";
    WebhookReply = "SYS_WEBHOOK_REPLY", args::WebhookReply, Some(Capability::Webhook),
        "Answer webhook request `request_id` (from its [EVENT]) with an HTTP `status` (default 200) and a text `body`. Each request is answered once; unanswered ones time out. Result: {\"replied\": id}.";
}

impl KernelSyscall {
    /// The kernel syscall called `name`, if any.
    pub fn from_name(name: &str) -> Option<KernelSyscall> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// Its description for the model: name, description and the argument
    /// schema generated from its argument type.
    pub fn spec(self) -> &'static SyscallSpec {
        static SPECS: OnceLock<Vec<SyscallSpec>> = OnceLock::new();
        let specs = SPECS.get_or_init(|| {
            KernelSyscall::ALL
                .iter()
                .map(|k| SyscallSpec { name: k.name().into(), description: k.description().into(), args_schema: k.schema() })
                .collect()
        });
        &specs[self as usize]
    }
}

/// Kernel syscalls a holder of `caps` may use.
pub fn kernel_specs_for(caps: &CapabilitySet) -> Vec<SyscallSpec> {
    KernelSyscall::ALL
        .iter()
        .filter(|k| k.capability().is_none_or(|c| caps.grants(&c)))
        .map(|k| k.spec().clone())
        .collect()
}

/// The JSON Schema of `A` in the compact form the model sees: no `$schema`,
/// `title`, `description` or `format`; an optional field's type without
/// `null`; an unconstrained field as `{}`; keys in the order `type`,
/// `properties`, `required`, `additionalProperties`.
fn schema_of<A: schemars::JsonSchema>() -> Value {
    let schema = serde_json::to_value(schemars::schema_for!(A)).unwrap_or_default();
    let mut out = serde_json::Map::new();
    out.insert("type".into(), json!("object"));
    let mut props = serde_json::Map::new();
    if let Some(p) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in p {
            props.insert(k.clone(), compact_property(v));
        }
    }
    out.insert("properties".into(), Value::Object(props));
    if let Some(r) = schema.get("required").filter(|r| r.as_array().is_some_and(|a| !a.is_empty())) {
        out.insert("required".into(), r.clone());
    }
    out.insert("additionalProperties".into(), json!(false));
    Value::Object(out)
}

fn compact_property(v: &Value) -> Value {
    let Some(obj) = v.as_object() else { return json!({}) };
    let mut out = serde_json::Map::new();
    for (k, val) in obj {
        match k.as_str() {
            "format" | "description" | "title" => {}
            "type" => {
                let t = match val {
                    Value::Array(ts) => {
                        let ts: Vec<&Value> = ts.iter().filter(|t| t.as_str() != Some("null")).collect();
                        if ts.len() == 1 { ts[0].clone() } else { Value::Array(ts.into_iter().cloned().collect()) }
                    }
                    other => other.clone(),
                };
                out.insert(k.clone(), t);
            }
            "items" => {
                out.insert(k.clone(), compact_property(val));
            }
            // Integer bounds are written as integers (`0`, not `0.0`).
            "minimum" | "maximum" => {
                let n = match val.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => json!(f as i64),
                    _ => val.clone(),
                };
                out.insert(k.clone(), n);
            }
            _ => {
                out.insert(k.clone(), val.clone());
            }
        }
    }
    Value::Object(out)
}

/// `args` with every whole float (`2.0`) in an `integer` field written as
/// an integer, as the schema check accepts it there.
fn integral(args: &Value, schema: &Value) -> Value {
    let mut args = args.clone();
    if let Some(obj) = args.as_object_mut() {
        for (k, v) in obj.iter_mut() {
            let integer = schema["properties"][k.as_str()]["type"] == "integer";
            match v.as_f64() {
                Some(f) if integer && !(v.is_i64() || v.is_u64()) && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    *v = json!(f as i64)
                }
                _ => {}
            }
        }
    }
    args
}

/// What running one call produced.
pub(crate) enum Outcome {
    Ok { output: Value, effects: Vec<Effect> },
    Err(SyscallError),
    Exit { code: i64, result: Option<String> },
}

fn invalid(name: &str, msg: String, schema: &Value) -> SyscallError {
    SyscallError::InvalidArguments(format!("{name}: {msg}; expected arguments: {schema}"))
}

/// Resolves, validates and runs one parsed call for `p`.
pub(crate) async fn dispatch(
    inner: &Arc<KernelInner>,
    p: &Arc<Process>,
    inbox: &mut IpcInbox,
    call: &ParsedCall,
) -> Outcome {
    let name = call.name.as_str();
    let resolved = match inner.syscalls.resolve(name, &p.caps) {
        Ok(r) => r,
        Err(refusal) => return Outcome::Err(refusal.into()),
    };
    let schema = &resolved.spec().args_schema;
    if let Err(m) = schema::validate(schema, &call.args) {
        return Outcome::Err(invalid(name, m, schema));
    }
    match resolved {
        Resolved::Kernel(k) => match k.parse(&call.args) {
            Ok(c) => run_kernel(inner, p, inbox, c).await,
            Err(e) => Outcome::Err(invalid(name, e.to_string(), schema)),
        },
        Resolved::Source(handle) => {
            let agent = aos_abi::AgentContext { pid: p.pid, caps: p.caps.clone(), workspace: p.workspace.clone() };
            match handle.call(&agent, &call.args).await {
                Ok(out) => Outcome::Ok { output: out.output, effects: out.effects },
                Err(e) => Outcome::Err(e),
            }
        }
    }
}

async fn run_kernel(inner: &Arc<KernelInner>, p: &Arc<Process>, inbox: &mut IpcInbox, call: KernelCall) -> Outcome {
    let ok = |output: Value| Outcome::Ok { output, effects: Vec::new() };
    match call {
        KernelCall::SendMsg(a) => {
            let to = a.to_pid;
            let Some(target) = inner.table.get(to) else {
                let why = if inner.table.was_reaped(to) { " (it ended and was reaped)" } else { "" };
                return Outcome::Err(SyscallError::NotFound(format!("no process with pid {to}{why}")));
            };
            if let Some(exit) = target.state.lock().exit.clone() {
                return Outcome::Err(SyscallError::NotFound(format!("process {to} has ended (it {exit})")));
            }
            inner.deliver(&target, crate::kernel::Delivery::Msg { from: p.pid, content: a.content });
            ok(json!({"delivered": true}))
        }
        KernelCall::RecvMsg(a) => {
            let timeout = a.timeout.map(|s| Duration::from_secs_f64(s.clamp(0.0, 1e9)));
            inner.set_status(p, ProcessStatus::BlockedRecv);
            let r = inbox.recv_msg(timeout).await;
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
        KernelCall::WriteStdout(a) => {
            let text = a.text;
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
        KernelCall::ReadStdin(_) => {
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
        KernelCall::Exit(a) => {
            let result = match a.result {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s),
                Some(v) => Some(v.to_string()),
            };
            Outcome::Exit { code: a.code.unwrap_or(0), result }
        }
        KernelCall::SpawnAgent(a) => spawn_agent(inner, p, a),
        KernelCall::RegisterWebhook(a) => match inner.webhooks.register(p.pid, &a.path, None) {
            Ok(out) => ok(out),
            Err(e) => Outcome::Err(SyscallError::InvalidArguments(format!("SYS_REGISTER_WEBHOOK: {e}"))),
        },
        KernelCall::WebhookReply(a) => {
            let id = a.request_id;
            let resp = crate::webhook::WebhookResponse { status: a.status.unwrap_or(200), body: a.body.unwrap_or_default() };
            match inner.webhooks.reply(p.pid, id, resp) {
                Ok(()) => ok(json!({"replied": id})),
                Err(e) => Outcome::Err(SyscallError::NotFound(e)),
            }
        }
    }
}

fn spawn_agent(inner: &Arc<KernelInner>, p: &Arc<Process>, a: args::SpawnAgent) -> Outcome {
    let requested = match inner.syscalls.parse_grants(&a.permissions) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The schemas generated from the argument types are exactly the ones
    /// the model was always shown (prompts and the local model's grammar
    /// depend on them).
    #[test]
    fn generated_schemas_are_the_published_ones() {
        let expect = [
            ("SEND_MSG", r#"{"type":"object","properties":{"to_pid":{"type":"integer","minimum":0},"content":{"type":"string"}},"required":["to_pid","content"],"additionalProperties":false}"#),
            ("RECV_MSG", r#"{"type":"object","properties":{"timeout":{"type":"number","minimum":0}},"additionalProperties":false}"#),
            ("SYS_WRITE_STDOUT", r#"{"type":"object","properties":{"text":{"type":"string"}},"required":["text"],"additionalProperties":false}"#),
            ("SYS_READ_STDIN", r#"{"type":"object","properties":{},"additionalProperties":false}"#),
            ("SYS_EXIT", r#"{"type":"object","properties":{"code":{"type":"integer"},"result":{}},"additionalProperties":false}"#),
            ("SPAWN_AGENT", r#"{"type":"object","properties":{"task":{"type":"string","minLength":1},"role":{"type":"string"},"model":{"type":"string"},"provider":{"type":"string"},"permissions":{"type":"array","items":{"type":"string"}},"pipe_to":{"type":"integer","minimum":1}},"required":["task","permissions"],"additionalProperties":false}"#),
            ("SYS_REGISTER_WEBHOOK", r#"{"type":"object","properties":{"path":{"type":"string","minLength":2,"maxLength":200}},"required":["path"],"additionalProperties":false}"#),
            ("SYS_WEBHOOK_REPLY", r#"{"type":"object","properties":{"request_id":{"type":"integer","minimum":1},"status":{"type":"integer","minimum":100,"maximum":599},"body":{"type":"string"}},"required":["request_id"],"additionalProperties":false}"#),
        ];
        assert_eq!(KernelSyscall::ALL.len(), expect.len());
        for (k, (name, schema)) in KernelSyscall::ALL.iter().zip(expect) {
            assert_eq!(k.name(), name);
            assert_eq!(k.spec().args_schema.to_string(), schema, "{name}");
            assert_eq!(KernelSyscall::from_name(name), Some(*k));
        }
    }

    #[test]
    fn arguments_are_typed() {
        let c = KernelSyscall::SendMsg.parse(&json!({"to_pid": 2.0, "content": "hi"})).unwrap();
        assert!(matches!(c, KernelCall::SendMsg(args::SendMsg { to_pid: 2, .. })));
        let c = KernelSyscall::Exit.parse(&json!({"result": {"score": 3.0}})).unwrap();
        assert!(matches!(c, KernelCall::Exit(args::Exit { code: None, result: Some(ref r) }) if r["score"] == json!(3.0)));
        assert!(KernelSyscall::WebhookReply.parse(&json!({"request_id": 1, "status": 70000})).is_err());
    }
}
