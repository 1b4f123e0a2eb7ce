//! The original AgentOS's argument shapes, rewritten into today's before a
//! call is validated ([`crate::dispatch`]), so prompts written for the
//! original run unchanged while the schemas the model is shown (and the
//! local model's grammars) stay the published ones.
//!
//! | call | the original's shape | read as |
//! |------|----------------------|---------|
//! | any  | an optional field given as `null` (Go left it unset) | the field omitted |
//! | any  | a number written as a string (`"timeout": "5"`, as models often write it) where the schema wants an integer or number | the number it spells |
//! | `SPAWN_AGENT` | `{model, role, permissions, pipe_to}` without `task` | `task` = `role` (the role was the child's whole instruction) |
//! | `SPAWN_AGENT` | `permissions` missing | `[]`: no rights (the original gave *all* rights; never here) |
//! | `SPAWN_AGENT` | `pipe_to: 0`, `model: ""`, `provider: ""`, `role: ""` (Go's zero values) | omitted |
//! | `SYS_WEBHOOK_REPLY` | `request_id` as a string (`"123"`) | the integer it spells |
//! | `SYS_WEBHOOK_REPLY` | `status: 0` (Go's zero value) | omitted (200) |
//!
//! The driver syscalls took the original's shapes already (`EXEC_CMD
//! {cmd}`, `MEM_WRITE {key, value}`, `MEM_READ {query}`, `SLEEP {seconds}`,
//! `SYS_SCHEDULE {seconds, prompt}` with integer seconds, `NET_FETCH
//! {url}`); the fs driver reads an absolute path outside `/workspace`
//! (`/test.txt`) inside the workspace, as the original jailed it.
//! Differences kept on purpose are listed in the README ("Compatibility with
//! the original AgentOS").

use serde_json::Value;

/// `args` of a call of `name` in today's shape, given the syscall's schema.
/// Arguments already in today's shape are returned unchanged; anything this
/// does not recognise is left for validation to explain.
pub(crate) fn upgrade(name: &str, args: &Value, schema: &Value) -> Value {
    let mut args = args.clone();
    let Some(obj) = args.as_object_mut() else { return args };
    let required = |k: &str| schema["required"].as_array().is_some_and(|r| r.iter().any(|x| x == k));
    obj.retain(|k, v| !v.is_null() || required(k));
    for (k, v) in obj.iter_mut() {
        let Some(s) = v.as_str() else { continue };
        let n = match schema["properties"][k.as_str()]["type"].as_str() {
            Some("integer") => s.trim().parse::<i64>().ok().map(Value::from),
            Some("number") => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()).map(Value::from),
            _ => None,
        };
        if let Some(n) = n {
            *v = n;
        }
    }
    match name {
        "SPAWN_AGENT" => {
            for k in ["pipe_to", "model", "provider", "role"] {
                if obj.get(k).is_some_and(|v| v == 0 || v == "") {
                    obj.remove(k);
                }
            }
            if !obj.contains_key("task") {
                if let Some(role) = obj.remove("role") {
                    obj.insert("task".into(), role);
                }
            }
            obj.entry("permissions").or_insert_with(|| Value::Array(Vec::new()));
        }
        "SYS_WEBHOOK_REPLY" if obj.get("status").is_some_and(|v| v == 0) => {
            obj.remove("status");
        }
        _ => {}
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscalls::KernelSyscall;
    use serde_json::json;

    fn up(name: &str, args: Value) -> Value {
        let k = KernelSyscall::from_name(name).unwrap();
        upgrade(name, &args, &k.spec().args_schema)
    }

    #[test]
    fn numbers_written_as_strings_are_read_as_numbers_where_the_schema_wants_one() {
        assert_eq!(up("RECV_MSG", json!({"timeout": " 2.5 "})), json!({"timeout": 2.5}));
        assert_eq!(up("SYS_EXIT", json!({"code": "3", "result": "7"})), json!({"code": 3, "result": "7"}), "result takes anything");
        assert_eq!(up("SYS_WRITE_STDOUT", json!({"text": "42"})), json!({"text": "42"}), "a string stays a string");
        assert_eq!(up("SYS_EXIT", json!({"code": "1.5"})), json!({"code": "1.5"}), "not an integer: left for validation");
        assert_eq!(up("RECV_MSG", json!({"timeout": "NaN"})), json!({"timeout": "NaN"}));
    }

    #[test]
    fn spawn_without_task_takes_the_role_as_task() {
        let a = up("SPAWN_AGENT", json!({"model": "m", "role": "summarise notes.txt", "permissions": ["FS_READ"], "pipe_to": 3}));
        assert_eq!(a, json!({"model": "m", "task": "summarise notes.txt", "permissions": ["FS_READ"], "pipe_to": 3}));
        // Go's zero values mean "not given"; missing permissions mean none.
        let a = up("SPAWN_AGENT", json!({"model": "", "role": "r", "pipe_to": 0}));
        assert_eq!(a, json!({"task": "r", "permissions": []}));
        // Today's shape is untouched.
        let today = json!({"task": "t", "role": "r", "permissions": ["fs:ro"], "pipe_to": 2});
        assert_eq!(up("SPAWN_AGENT", today.clone()), today);
    }

    #[test]
    fn webhook_reply_takes_a_string_id() {
        assert_eq!(up("SYS_WEBHOOK_REPLY", json!({"request_id": "123", "status": 200, "body": "OK"})), json!({"request_id": 123, "status": 200, "body": "OK"}));
        assert_eq!(up("SYS_WEBHOOK_REPLY", json!({"request_id": "7", "status": 0})), json!({"request_id": 7}));
        // Not a number: left for validation to explain.
        assert_eq!(up("SYS_WEBHOOK_REPLY", json!({"request_id": "abc"})), json!({"request_id": "abc"}));
    }

    #[test]
    fn null_optional_fields_are_omitted_but_required_ones_stay() {
        assert_eq!(up("SYS_EXIT", json!({"code": null, "result": null})), json!({}));
        assert_eq!(up("SEND_MSG", json!({"to_pid": null, "content": "x"})), json!({"to_pid": null, "content": "x"}));
    }
}
