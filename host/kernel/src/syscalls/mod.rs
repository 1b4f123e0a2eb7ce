//! The kernel's own syscalls (IPC, stdio, exit, spawn, webhooks): one table
//! ([`KernelSyscall`]: name, capability, description, typed arguments in
//! [`args`] whose JSON Schemas are generated), and their implementations in
//! [`run`]. Resolution (with driver syscalls) is `crate::resolve`; the
//! dispatch of a parsed call is `crate::dispatch`.
//!
//! | syscall            | capability | arguments                                             |
//! |--------------------|------------|-------------------------------------------------------|
//! | `SEND_MSG`         | `ipc`      | `to_pid`, `content` (a process of the same tree, unless `ipc:any`) |
//! | `RECV_MSG`         | `ipc` or `webhook` | `timeout?` (seconds; waits forever without); with `webhook` alone it waits for the process's own events only (webhook requests, child exits, timers), never reading its mailbox |
//! | `SYS_WRITE_STDOUT` | —          | `text`                                                |
//! | `SYS_READ_STDIN`   | —          | —                                                     |
//! | `SYS_EXIT`         | —          | `code?`, `result?`                                    |
//! | `SPAWN_AGENT`      | `spawn`    | `task`, `permissions`, `role?`, `model?`, `provider?`, `pipe_to?` (`pipe_to` as `SEND_MSG`) |
//! | `SYS_REGISTER_WEBHOOK` | `webhook` | `path`                                           |
//! | `SYS_WEBHOOK_REPLY`    | `webhook` | `request_id`, `status?`, `body?`                 |

use std::sync::OnceLock;

use aos_abi::{Capability, CapabilitySet, Effect, SyscallError, SyscallSpec};
use serde_json::{json, Value};

pub mod args;
pub(crate) mod run;

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
        "Send a text message to the mailbox of another process of your process tree (your root and its descendants). Result: {\"delivered\": true}.";
    RecvMsg = "RECV_MSG", args::RecvMsg, Some(Capability::Ipc),
        "Wait for the next message in your mailbox (up to `timeout` seconds; forever without). Result: {\"from\": pid, \"content\": text}, {\"timed_out\": true}, or {\"interrupted\": ...} when an event (child exit, timer) arrives first.";
    WriteStdout = "SYS_WRITE_STDOUT", args::WriteStdout, None,
        "Write text to your standard output (shown to the user, or piped to another process).";
    ReadStdin = "SYS_READ_STDIN", args::ReadStdin, None,
        "Wait for the next line on your standard input. Result: {\"text\": line}.";
    Exit = "SYS_EXIT", args::Exit, None,
        "End this process. `code` 0 means success; `result` is reported to your parent. Calls after it in the same reply are not run.";
    SpawnAgent = "SPAWN_AGENT", args::SpawnAgent, Some(Capability::Spawn),
        "Start a child agent process working on `task`. `permissions` lists the rights it gets (capability names such as fs:ro, fs:rw, net, ipc, spawn, timers, webhook; you can only grant rights you hold; [] = none). It shares your workspace and at most your remaining budget. `pipe_to` sends its stdout to that process's stdin (needs ipc; a process of your own tree). You get an [EVENT] when it exits. Result: {\"pid\": n}.";
    RegisterWebhook = "SYS_REGISTER_WEBHOOK", args::RegisterWebhook, Some(Capability::Webhook),
        "Receive HTTP requests sent to `path` (e.g. \"/github/push\"; letters, digits, '/', '-', '_', '.'). Callers must sign each request with the returned secret: headers X-AOS-Timestamp (Unix seconds) and X-AOS-Signature: sha256=HMAC-SHA256(secret, timestamp + \".\" + body); a signature is accepted once, within 5 minutes by default. Each request arrives as an [EVENT] `webhook request #ID` (it also wakes RECV_MSG, SYS_READ_STDIN and SLEEP); answer it with SYS_WEBHOOK_REPLY. Result: {\"url\", \"path\", \"secret\"}.";
    WebhookReply = "SYS_WEBHOOK_REPLY", args::WebhookReply, Some(Capability::Webhook),
        "Answer webhook request `request_id` (from its [EVENT]) with an HTTP `status` (default 200) and a text `body`. Each request is answered once; unanswered ones time out. Result: {\"replied\": id}.";
}

impl KernelSyscall {
    /// Another capability that also grants the call, in a narrower form:
    /// `RECV_MSG` with `webhook` alone waits for the process's own events
    /// (the mailbox stays closed to it; see `run`).
    pub fn also_granted_by(self) -> Option<Capability> {
        match self {
            KernelSyscall::RecvMsg => Some(Capability::Webhook),
            _ => None,
        }
    }

    /// Whether a holder of `caps` may make this call.
    pub fn granted_to(self, caps: &CapabilitySet) -> bool {
        match self.capability() {
            None => true,
            Some(c) => caps.grants(&c) || self.also_granted_by().is_some_and(|a| caps.grants(&a)),
        }
    }

    /// Whether running it may have an effect outside the caller (messages,
    /// spawns, webhooks, stdout piped to another process): such a call
    /// waits until the caller's journalled events are durable (see
    /// [`crate::durability`]). Driver calls always do.
    pub fn acts_on_world(self, pipes_stdout: bool) -> bool {
        match self {
            KernelSyscall::RecvMsg | KernelSyscall::ReadStdin | KernelSyscall::Exit => false,
            KernelSyscall::WriteStdout => pipes_stdout,
            _ => true,
        }
    }

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
        .filter(|k| k.granted_to(caps))
        .map(|k| match k.capability() {
            // Granted through `also_granted_by` only: say what the narrower form does.
            Some(c) if *k == KernelSyscall::RecvMsg && !caps.grants(&c) => SyscallSpec {
                description: "Wait for the next event (a webhook request, a child's exit, a timer) for up to `timeout` seconds (forever without); the event is added to your context. Messages from other processes need the `ipc` right and are not read. Result: {\"interrupted\": ...} when an event arrived, or {\"timed_out\": true}.".into(),
                ..k.spec().clone()
            },
            _ => k.spec().clone(),
        })
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
