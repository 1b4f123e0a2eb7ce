//! The MCP tools and what each asks of the kernel's control API. A tool
//! that cannot do its work answers an `isError` result whose text says what
//! to do; only an unknown tool name is a protocol error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use rmcp::ErrorData;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use aos_daemon::api::{KillReply, SpawnBody, SpawnReply, TextBody};
use aos_daemon::client::{is_not_running, ApiError, Client};
use aos_kernel::{Entry, ExitStatus, KernelEvent, LogEntry, ProcessInfo};

use crate::{AosMcp, CeilingError};

/// The longest `wait` may block in one call.
pub const MAX_WAIT_SECS: u64 = 600;
/// How long `wait` blocks when `timeout_secs` is not given.
pub const DEFAULT_WAIT_SECS: u64 = 30;
/// The most log entries one `read_log` returns (continue from `next_seq`).
pub const MAX_ENTRIES: usize = 500;

/// Why a tool could not do its work (the text of its `isError` result).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("bad arguments for `{tool}`: {error} (see the tool's input schema)")]
    Arguments { tool: &'static str, error: String },
    #[error("{}; or ask the MCP host's operator to start it", aos_daemon::NOT_RUNNING)]
    NotRunning,
    #[error(transparent)]
    Ceiling(#[from] CeilingError),
    /// The kernel refused (its one-line message says why).
    #[error("the kernel refused: {0}")]
    Kernel(String),
    #[error("{0}")]
    Other(String),
}

impl ToolError {
    fn from_client(e: anyhow::Error) -> ToolError {
        if is_not_running(&e) {
            return ToolError::NotRunning;
        }
        match e.downcast_ref::<ApiError>() {
            Some(api) => ToolError::Kernel(api.message.clone()),
            None => ToolError::Other(format!("{e:#}")),
        }
    }
}

fn tool(name: &'static str, description: &'static str, schema: Value, annotations: ToolAnnotations) -> Tool {
    let schema: JsonObject = match schema {
        Value::Object(m) => m,
        _ => JsonObject::new(),
    };
    Tool::new(name, description, Arc::new(schema)).with_annotations(annotations)
}

fn pid_schema(extra: Value) -> Value {
    let mut props = json!({"pid": {"type": "integer", "minimum": 1, "description": "The process id (from spawn_agent or list_processes)."}});
    if let (Value::Object(p), Value::Object(e)) = (&mut props, extra) {
        p.extend(e);
    }
    props
}

/// The tools, with their input schemas.
pub fn list() -> Vec<Tool> {
    let read_only = ToolAnnotations::new().read_only(true).open_world(false);
    vec![
        tool(
            "spawn_agent",
            "Start an agent in the AgentOS kernel on a task; returns its pid. It runs in the background: follow it \
             with read_log, end with wait or kill. Rights beyond the operator's ceiling are refused.",
            json!({
                "type": "object",
                "properties": {
                    "task": {"type": "string", "description": "What the agent should do."},
                    "provider": {"type": "string", "description": "LLM provider among the kernel's: local, openai, gemini, anthropic, script. Default: the kernel's configured provider."},
                    "model": {"type": "string", "description": "Model name (for script: the script file's absolute path). Default: the configured model."},
                    "grants": {"type": "array", "items": {"type": "string"}, "description": "Capabilities (fs:ro, fs:rw, net, net:HOST, exec, timers, ipc, ...), each within the operator's ceiling. Default: the kernel's default_grants within the ceiling. [] grants nothing."},
                    "workspace": {"type": "string", "description": "Absolute path of an existing directory, preopened at /workspace. Default: a new one under $AOS_HOME/workspaces."},
                    "role": {"type": "string", "description": "The agent's role, shown in its system prompt."},
                    "max_steps": {"type": "integer", "minimum": 1, "description": "Budget: model calls."},
                    "max_seconds": {"type": "integer", "minimum": 1, "description": "Budget: wall time in seconds."}
                },
                "required": ["task"],
                "additionalProperties": false
            }),
            ToolAnnotations::new().destructive(false).open_world(true),
        ),
        tool(
            "list_processes",
            "List the kernel's processes: pid, parent, status, provider/model, task. Live ones unless `all`.",
            json!({
                "type": "object",
                "properties": {"all": {"type": "boolean", "description": "Also processes that have ended."}},
                "additionalProperties": false
            }),
            read_only.clone(),
        ),
        tool(
            "read_log",
            "Read a process's log: model replies, syscalls and results, stdout. Follow a running process by calling \
             again with since_seq = the next_seq of the previous answer.",
            json!({
                "type": "object",
                "properties": pid_schema(json!({
                    "since_seq": {"type": "integer", "minimum": 0, "description": "Only entries from this sequence number on."},
                    "tail": {"type": "integer", "minimum": 0, "description": "Only the last N entries."}
                })),
                "required": ["pid"],
                "additionalProperties": false
            }),
            read_only.clone(),
        ),
        tool(
            "send_input",
            "Send text to a process: a line on its stdin (SYS_READ_STDIN), or a message to its mailbox (RECV_MSG).",
            json!({
                "type": "object",
                "properties": pid_schema(json!({
                    "text": {"type": "string"},
                    "to": {"type": "string", "enum": ["stdin", "message"], "description": "Default: stdin."}
                })),
                "required": ["pid", "text"],
                "additionalProperties": false
            }),
            ToolAnnotations::new().destructive(false).open_world(false),
        ),
        tool(
            "wait",
            "Wait until a process ends; returns its exit code and result. After timeout_secs it answers that the \
             process is still running (not an error): call wait again.",
            json!({
                "type": "object",
                "properties": pid_schema(json!({
                    "timeout_secs": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECS, "description": format!("Default {DEFAULT_WAIT_SECS}.")}
                })),
                "required": ["pid"],
                "additionalProperties": false
            }),
            read_only,
        ),
        tool(
            "kill",
            "Kill a process and its descendants.",
            json!({
                "type": "object",
                "properties": pid_schema(json!({})),
                "required": ["pid"],
                "additionalProperties": false
            }),
            ToolAnnotations::new().destructive(true).idempotent(true).open_world(false),
        ),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpawnArgs {
    task: String,
    provider: Option<String>,
    model: Option<String>,
    grants: Option<Vec<String>>,
    workspace: Option<PathBuf>,
    role: Option<String>,
    max_steps: Option<u64>,
    max_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    #[serde(default)]
    all: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogArgs {
    pid: u64,
    since_seq: Option<u64>,
    tail: Option<usize>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum InputTo {
    #[default]
    Stdin,
    Message,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputArgs {
    pid: u64,
    text: String,
    #[serde(default)]
    to: InputTo,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitArgs {
    pid: u64,
    timeout_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PidArgs {
    pid: u64,
}

fn args<T: DeserializeOwned>(tool: &'static str, args: JsonObject) -> Result<T, ToolError> {
    serde_json::from_value(Value::Object(args)).map_err(|e| ToolError::Arguments { tool, error: e.to_string() })
}

/// Runs tool `name`: its result, an `isError` result, or (unknown tool) a protocol error.
pub async fn call(server: &AosMcp, name: &str, a: JsonObject) -> Result<CallToolResult, ErrorData> {
    let result = match name {
        "spawn_agent" => spawn_agent(server, a).await,
        "list_processes" => list_processes(server, a).await,
        "read_log" => read_log(server, a).await,
        "send_input" => send_input(server, a).await,
        "wait" => wait(server, a).await,
        "kill" => kill(server, a).await,
        other => {
            let names: Vec<String> = list().iter().map(|t| t.name.to_string()).collect();
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{other}`; the tools are {}", names.join(", ")),
                None,
            ));
        }
    };
    Ok(match result {
        Ok((text, structured)) => {
            let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
            r.structured_content = Some(structured);
            r
        }
        Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
    })
}

/// A tool's answer: text for the model, and the same as structured content.
type Answer = Result<(String, Value), ToolError>;

fn client(server: &AosMcp) -> Result<Client, ToolError> {
    Client::from_env(&server.inner.paths).map_err(|e| ToolError::Other(format!("{e:#}")))
}

/// A model file named relative to this server's directory (script, GGUF), made absolute for the daemon.
fn model_path(provider: Option<&str>, model: Option<String>) -> Option<String> {
    let local_file = matches!(provider.map(str::to_ascii_lowercase).as_deref(), None | Some("script" | "local"));
    match model {
        Some(m) if local_file && Path::new(&m).is_relative() && Path::new(&m).is_file() => {
            Some(std::fs::canonicalize(&m).map(|p| p.display().to_string()).unwrap_or(m))
        }
        m => m,
    }
}

async fn spawn_agent(server: &AosMcp, a: JsonObject) -> Answer {
    let a: SpawnArgs = args("spawn_agent", a)?;
    if a.task.trim().is_empty() {
        return Err(ToolError::Arguments { tool: "spawn_agent", error: "`task` is empty: say what the agent should do".into() });
    }
    let grants = server.inner.ceiling.grants_for(a.grants.as_deref(), &server.inner.default_grants)?;
    if let Some(w) = &a.workspace {
        if !w.is_absolute() {
            return Err(ToolError::Arguments {
                tool: "spawn_agent",
                error: format!("the workspace must be an absolute path, not {}", w.display()),
            });
        }
        if !w.is_dir() {
            return Err(ToolError::Arguments {
                tool: "spawn_agent",
                error: format!("the workspace {} is not an existing directory: create it, or leave `workspace` out for a new one", w.display()),
            });
        }
    }
    let model = model_path(a.provider.as_deref(), a.model);
    let body = SpawnBody {
        task: a.task,
        role: a.role,
        provider: a.provider,
        model,
        grants: Some(grants.clone()),
        max_steps: a.max_steps,
        max_seconds: a.max_seconds,
        workspace: a.workspace,
        ..Default::default()
    };
    let reply: SpawnReply = match client(server)?.post("/v1/spawn", &body).await {
        Err(e) if is_not_running(&e) => {
            let Some(start) = &server.inner.starter else { return Err(ToolError::NotRunning) };
            start().await.map_err(|e| ToolError::Other(format!("the kernel was not running and could not be started: {e:#}")))?;
            // A new client: over TCP the new kernel has a new token.
            client(server)?.post("/v1/spawn", &body).await.map_err(ToolError::from_client)?
        }
        r => r.map_err(ToolError::from_client)?,
    };
    let text = format!(
        "spawned pid {} (workspace {}, grants: {}); follow it with read_log, end with wait or kill",
        reply.pid,
        reply.workspace.display(),
        if grants.is_empty() { "none".to_string() } else { grants.join(", ") }
    );
    Ok((text, json!({"pid": reply.pid, "workspace": reply.workspace, "grants": grants})))
}

/// `ready`, `running`, `exited`, ... (the state of `ProcessStatus` as JSON).
fn state(p: &ProcessInfo) -> String {
    serde_json::to_value(&p.status).ok().and_then(|v| v["state"].as_str().map(str::to_string)).unwrap_or_default()
}

async fn list_processes(server: &AosMcp, a: JsonObject) -> Answer {
    let a: ListArgs = args("list_processes", a)?;
    let procs: Vec<ProcessInfo> = client(server)?.get("/v1/ps").await.map_err(ToolError::from_client)?;
    let procs: Vec<&ProcessInfo> = procs.iter().filter(|p| a.all || !p.status.is_terminal()).collect();
    let mut text = String::new();
    let mut rows = Vec::new();
    for p in &procs {
        let parent = p.parent.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        text.push_str(&format!(
            "pid {} parent {parent} {} {}/{}: {}\n",
            p.pid,
            state(p),
            p.provider,
            p.model,
            p.task.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
        rows.push(json!({
            "pid": p.pid, "parent": p.parent, "status": p.status, "provider": p.provider, "model": p.model,
            "task": p.task, "steps": p.counters.steps, "workspace": p.workspace,
        }));
    }
    if procs.is_empty() {
        text = format!("no {}processes", if a.all { "" } else { "live " });
    }
    Ok((text.trim_end().to_string(), json!({"processes": rows})))
}

/// One log entry as a line of text.
fn entry_line(e: &LogEntry) -> String {
    let seq = e.seq;
    match &e.entry {
        Entry::Reply { text, truncated, tool_calls } => {
            let mut s = format!("#{seq} model{}: {}", if *truncated { " (truncated)" } else { "" }, text.trim_end());
            for c in tool_calls {
                s.push_str(&format!("\n#{seq}   tool call {} {}", c.name, c.arguments));
            }
            s
        }
        Entry::Result { id, name, args, output, .. } => format!("#{seq} {name}#{id} {args} -> {output}"),
        Entry::Error { id, name, args, error, .. } => format!(
            "#{seq} {}#{id}{} -> ERROR {error}",
            name.as_deref().unwrap_or("?"),
            args.as_ref().map(|a| format!(" {a}")).unwrap_or_default()
        ),
        Entry::Event { text } => format!("#{seq} event: {text}"),
        Entry::Notice { text } => format!("#{seq} kernel: {text}"),
        Entry::Stdout { text } => format!("#{seq} stdout: {text}"),
    }
}

/// How a process ended, as JSON (`{"status": "exited", "code", "result", "exit_code"}`).
fn ended(pid: u64, status: &ExitStatus) -> Value {
    let exit_code = match status {
        ExitStatus::Exited { code, .. } => (*code).clamp(0, 255),
        ExitStatus::Killed => 137,
        ExitStatus::Failed { .. } => 1,
    };
    let mut v = json!({"pid": pid, "running": false, "exit_code": exit_code});
    if let (Value::Object(out), Ok(Value::Object(s))) = (&mut v, serde_json::to_value(status)) {
        out.extend(s);
    }
    v
}

fn ended_text(pid: u64, status: &ExitStatus) -> String {
    match status {
        ExitStatus::Exited { code, result } => {
            format!("pid {pid} exited with code {code}{}", result.as_ref().map(|r| format!(": {r}")).unwrap_or_default())
        }
        ExitStatus::Killed => format!("pid {pid} was killed"),
        ExitStatus::Failed { reason } => format!("pid {pid} failed: {reason}"),
    }
}

async fn read_log(server: &AosMcp, a: JsonObject) -> Answer {
    let a: LogArgs = args("read_log", a)?;
    let mut stream = client(server)?.stream(&format!("/v1/procs/{}/logs", a.pid)).await.map_err(ToolError::from_client)?;
    let mut entries = Vec::new();
    let mut exit = None;
    while let Some(ev) = stream.next_json::<KernelEvent>().await.map_err(ToolError::from_client)? {
        match ev {
            KernelEvent::Entry { entry } if entry.seq >= a.since_seq.unwrap_or(0) => entries.push(entry),
            KernelEvent::Exited { pid, status } if pid == a.pid => exit = Some(status),
            _ => {}
        }
    }
    if let Some(n) = a.tail {
        entries.drain(..entries.len().saturating_sub(n));
    }
    let more = entries.len() > MAX_ENTRIES;
    entries.truncate(MAX_ENTRIES);
    let next_seq = entries.last().map(|e| e.seq + 1).unwrap_or(a.since_seq.unwrap_or(0));
    let mut text: Vec<String> = entries.iter().map(entry_line).collect();
    let status = match (&exit, more) {
        (_, true) => {
            text.push(format!("(more entries: call read_log with since_seq {next_seq})"));
            json!({"pid": a.pid, "running": exit.is_none()})
        }
        (Some(st), false) => {
            text.push(format!("({})", ended_text(a.pid, st)));
            ended(a.pid, st)
        }
        (None, false) => {
            text.push(format!("(pid {} is still running; for new entries call read_log with since_seq {next_seq})", a.pid));
            json!({"pid": a.pid, "running": true})
        }
    };
    let entries = serde_json::to_value(&entries).map_err(|e| ToolError::Other(e.to_string()))?;
    Ok((text.join("\n"), json!({"pid": a.pid, "entries": entries, "next_seq": next_seq, "more": more, "status": status})))
}

async fn send_input(server: &AosMcp, a: JsonObject) -> Answer {
    let a: InputArgs = args("send_input", a)?;
    let (path, what) = match a.to {
        InputTo::Stdin => ("stdin", "a line on stdin"),
        InputTo::Message => ("message", "a mailbox message"),
    };
    let reply: Value = client(server)?
        .post(&format!("/v1/procs/{}/{path}", a.pid), &TextBody { text: a.text })
        .await
        .map_err(ToolError::from_client)?;
    let mut text = format!("sent {what} to pid {}", a.pid);
    if let Some(w) = reply.get("warning").and_then(Value::as_str) {
        text.push_str(&format!(" ({w})"));
    }
    Ok((text, json!({"pid": a.pid, "sent": path})))
}

async fn wait(server: &AosMcp, a: JsonObject) -> Answer {
    let a: WaitArgs = args("wait", a)?;
    let secs = a.timeout_secs.unwrap_or(DEFAULT_WAIT_SECS).min(MAX_WAIT_SECS);
    let client = client(server)?;
    let path = format!("/v1/procs/{}/wait", a.pid);
    match tokio::time::timeout(Duration::from_secs(secs), client.get::<ExitStatus>(&path)).await {
        Ok(r) => {
            let status = r.map_err(ToolError::from_client)?;
            Ok((ended_text(a.pid, &status), ended(a.pid, &status)))
        }
        Err(_) => Ok((
            format!("pid {} is still running after {secs} s; call wait again (read_log shows what it does)", a.pid),
            json!({"pid": a.pid, "running": true}),
        )),
    }
}

async fn kill(server: &AosMcp, a: JsonObject) -> Answer {
    let a: PidArgs = args("kill", a)?;
    let r: KillReply =
        client(server)?.post(&format!("/v1/procs/{}/kill", a.pid), &json!({})).await.map_err(ToolError::from_client)?;
    let pids: Vec<String> = r.killed.iter().map(|p| p.to_string()).collect();
    Ok((format!("killed {}", pids.join(" ")), json!({"killed": r.killed})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_an_object_schema_that_forbids_unknown_arguments() {
        let tools = list();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, ["spawn_agent", "list_processes", "read_log", "send_input", "wait", "kill"]);
        for t in &tools {
            assert_eq!(t.input_schema["type"], "object", "{}", t.name);
            assert_eq!(t.input_schema["additionalProperties"], false, "{}", t.name);
            assert!(t.description.as_deref().is_some_and(|d| !d.is_empty()), "{}", t.name);
        }
    }

    #[test]
    fn bad_arguments_say_which_tool_and_what() {
        let a = json!({"pid": 3, "txt": "hi"}).as_object().unwrap().clone();
        let e = args::<InputArgs>("send_input", a).err().unwrap().to_string();
        assert!(e.starts_with("bad arguments for `send_input`: unknown field `txt`"), "{e}");
        let a = json!({"pid": 3, "text": "hi", "to": "mail"}).as_object().unwrap().clone();
        let e = args::<InputArgs>("send_input", a).err().unwrap().to_string();
        assert!(e.contains("unknown variant `mail`, expected `stdin` or `message`"), "{e}");
    }

    #[test]
    fn an_ended_process_reports_its_exit_code() {
        let v = ended(4, &ExitStatus::Exited { code: 3, result: Some("done".into()) });
        assert_eq!(v, json!({"pid": 4, "running": false, "exit_code": 3, "status": "exited", "code": 3, "result": "done"}));
        assert_eq!(ended(4, &ExitStatus::Killed)["exit_code"], 137);
        assert_eq!(ended_text(4, &ExitStatus::Failed { reason: "budget".into() }), "pid 4 failed: budget");
    }
}
