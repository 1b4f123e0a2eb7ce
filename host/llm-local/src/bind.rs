//! The next call of a planned task, with its arguments taken from the
//! task's frame ([`crate::frame`]) and the kernel's results so far, and the
//! honest `SYS_EXIT` at the end.
//!
//! Reads the conversation only: the task (`[TASK] …`), the calls made
//! (`[SYS_CALL::NAME] {json}` replies) and their answers (`[RESULT NAME#id]
//! {json}` / `[ERROR NAME#id] kind: message`). Nothing here runs the model:
//! a step whose text must be composed comes back as [`Next::Compose`] and
//! the engine writes that text.
//!
//! **Endings.** When every step succeeded the exit is code 0 and its result
//! lists what the calls did ("wrote haiku.txt (3 lines); printed 12
//! characters"), built from the calls that succeeded, never generated. When
//! a step failed and its arguments were built here (so trying again would
//! make the same call), or a step cannot be built (nothing was read that
//! "its first line" could come from), the exit code is 1 and the result says
//! which part failed and what was done before it.

use serde_json::{json, Map, Value};

use crate::frame::{Path, Select, Step, Text};

/// One step of a plan: the syscall, and where its arguments come from
/// (`None`: the model writes them, seeing the conversation).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanStep {
    pub syscall: String,
    pub step: Option<Step>,
}

/// What the process does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Call `name` with exactly these arguments.
    Call { name: String, args: Value },
    /// Call `name` with `args` plus `field` set to a text the model composes:
    /// `what` ("a haiku about the sea"), in `lines` lines (0: free), from
    /// `source` when the text is about an earlier result.
    Compose {
        name: String,
        args: Value,
        field: String,
        what: String,
        lines: usize,
        source: Option<String>,
    },
    /// The model writes the arguments of `name` (a clause the frame did not
    /// recognise); `paths`: the only values its `path` may take (a syscall
    /// that changes files may change only a file the task names).
    Model {
        name: String,
        paths: Option<Vec<String>>,
    },
}

/// One call the process made and how it ended, read from the conversation.
#[derive(Debug, Clone)]
pub struct Done {
    pub name: String,
    pub args: Value,
    /// The result's JSON on success; the error text on failure.
    pub outcome: Result<Value, String>,
}

/// The calls of the conversation after the task, in order (a call whose
/// answer is not there yet is left out).
pub fn history(messages: &[(String, String)]) -> Vec<Done> {
    let Some(at) = messages
        .iter()
        .position(|(r, c)| r == "user" && c.starts_with("[TASK]"))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut pending: Vec<(String, Value)> = Vec::new();
    for (role, content) in &messages[at + 1..] {
        if role == "assistant" {
            pending.clear();
            for line in content.lines() {
                if let Some(rest) = line.trim_start().strip_prefix(crate::grammar::TAG_OPEN) {
                    if let Some((name, args)) = rest.split_once(']') {
                        let args = serde_json::from_str(args.trim()).unwrap_or(Value::Null);
                        pending.push((name.to_string(), args));
                    }
                }
            }
            continue;
        }
        for line in content.lines() {
            let line = line.trim_start_matches(['-', ' ']);
            let (ok, rest) = if let Some(r) = line.strip_prefix("[RESULT ") {
                (true, r)
            } else if let Some(r) = line.strip_prefix("[ERROR ") {
                (false, r)
            } else {
                continue;
            };
            let Some((head, body)) = rest.split_once(']') else {
                continue;
            };
            let name = head.split('#').next().unwrap_or(head).to_string();
            let args = match pending.iter().position(|(n, _)| *n == name) {
                Some(k) => pending.remove(k).1,
                None => Value::Null,
            };
            let body = body.trim();
            let outcome = if ok {
                Ok(serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string())))
            } else {
                Err(body.to_string())
            };
            out.push(Done {
                name,
                args,
                outcome,
            });
        }
    }
    out
}

/// Calls whose result holds data a later step can use.
const DATA_CALLS: &[&str] = &["FS_READ", "FS_LIST", "MEM_READ", "EXEC_CMD", "NET_FETCH"];

/// The last successful call whose result holds data ([`DATA_CALLS`]).
fn last_data_call(done: &[Done]) -> Option<&Done> {
    done.iter().rev().find(|d| d.outcome.is_ok() && DATA_CALLS.contains(&d.name.as_str()))
}

/// The data of the last successful call that produces some (a file's
/// content, the best memory recalled, the names of a listing); `None` when
/// that call found nothing (no earlier result stands in for it).
fn last_data(done: &[Done]) -> Option<String> {
    let d = last_data_call(done)?;
    let v = d.outcome.as_ref().ok()?;
    match d.name.as_str() {
        "FS_READ" => v.get("content")?.as_str().map(String::from),
        "FS_LIST" => {
            let names: Vec<String> = v
                .get("entries")?
                .as_array()?
                .iter()
                .filter_map(|e| {
                    let n = e.get("name")?.as_str()?;
                    Some(if e.get("kind").and_then(Value::as_str) == Some("dir") {
                        format!("{n}/")
                    } else {
                        n.to_string()
                    })
                })
                .collect();
            Some(names.join("\n"))
        }
        "MEM_READ" => v
            .get("results")?
            .as_array()?
            .first()?
            .get("text")?
            .as_str()
            .map(String::from),
        "EXEC_CMD" => v.get("stdout")?.as_str().map(String::from),
        "NET_FETCH" => v.get("body")?.as_str().map(String::from),
        _ => None,
    }
}

/// The names the last listing showed (files only).
fn listed_files(done: &[Done]) -> Vec<String> {
    done.iter()
        .rev()
        .find(|d| d.name == "FS_LIST" && d.outcome.is_ok())
        .and_then(|d| d.outcome.as_ref().ok()?.get("entries")?.as_array().cloned())
        .map(|a| {
            a.iter()
                .filter(|e| e.get("kind").and_then(Value::as_str) == Some("file"))
                .filter_map(|e| e.get("name")?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Applies `sel` to `text`.
fn select(text: &str, sel: &Select) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    match sel {
        Select::All => text.trim_end_matches('\n').to_string(),
        Select::Line(usize::MAX) => lines.last().copied().unwrap_or("").to_string(),
        Select::Line(k) => lines.get(*k).copied().unwrap_or("").to_string(),
        Select::FirstLines(n) => lines
            .iter()
            .take(*n)
            .copied()
            .collect::<Vec<_>>()
            .join("\n"),
        Select::LineCount => lines.len().to_string(),
        Select::WordCount => text.split_whitespace().count().to_string(),
        Select::Replace { from, to } => text.replace(from.as_str(), to),
    }
}

/// Why a step could not be built.
fn cannot(what: &str) -> Result<Next, String> {
    Err(what.to_string())
}

/// The call of `step`, given the calls so far.
fn build(step: &Step, done: &[Done]) -> Result<Next, String> {
    let call = |name: &str, args: Value| {
        Ok(Next::Call {
            name: name.to_string(),
            args,
        })
    };
    let text_of = |t: &Text, name: &str, base: Value, field: &str| -> Result<Next, String> {
        match t {
            Text::Exact(s) => {
                let mut a = base;
                a[field] = json!(s);
                call(name, a)
            }
            Text::FromLast(sel) => match last_data(done) {
                Some(d) => {
                    let mut a = base;
                    a[field] = json!(select(&d, sel));
                    call(name, a)
                }
                None => cannot(
                    match last_data_call(done) {
                        Some(d) if d.name == "MEM_READ" => "no memory was found",
                        Some(_) => "the last result holds no text to use",
                        None => "nothing was read that the text could come from",
                    },
                ),
            },
            Text::Compose {
                what,
                lines,
                from_last,
            } => {
                let source = if *from_last { last_data(done) } else { None };
                if *from_last && source.is_none() {
                    return cannot("nothing was read to compose the text from");
                }
                Ok(Next::Compose {
                    name: name.to_string(),
                    args: base,
                    field: field.to_string(),
                    what: what.clone(),
                    lines: *lines,
                    source,
                })
            }
        }
    };
    match step {
        Step::Read {
            path: Path::Named(p),
        } => call("FS_READ", json!({ "path": p })),
        Step::Read {
            path: Path::OnlyListed,
        } => match listed_files(done).as_slice() {
            [one] => call("FS_READ", json!({ "path": one })),
            [] => cannot("the listing shows no file to read"),
            many => Err(format!(
                "the task does not say which file to read ({})",
                many.join(", ")
            )),
        },
        Step::Write { path, text, append } => {
            let base = if *append {
                json!({ "path": path, "append": true })
            } else {
                json!({ "path": path })
            };
            text_of(text, "FS_WRITE", base, "content")
        }
        Step::Print { text } => text_of(text, "SYS_WRITE_STDOUT", json!({}), "text"),
        Step::List { path: None } => call("FS_LIST", json!({})),
        Step::List { path: Some(p) } => call("FS_LIST", json!({ "path": p })),
        Step::Delete {
            path,
            recursive: true,
        } => call("FS_DELETE", json!({ "path": path, "recursive": true })),
        Step::Delete {
            path,
            recursive: false,
        } => call("FS_DELETE", json!({ "path": path })),
        Step::Mkdir { path } => call("FS_MKDIR", json!({ "path": path })),
        Step::Sleep { seconds } => call("SLEEP", json!({ "seconds": seconds })),
        Step::Remember { key, value } => call("MEM_WRITE", json!({ "key": key, "value": value })),
        Step::Recall { query } => call("MEM_READ", json!({ "query": query, "k": 1 })),
        Step::Exit { code } => call("SYS_EXIT", json!({ "code": code, "result": summary(done) })),
    }
}

/// What the calls that succeeded did, in order ("wrote haiku.txt (3 lines);
/// printed 12 characters"), from their arguments and results.
pub fn summary(done: &[Done]) -> String {
    let parts: Vec<String> = done
        .iter()
        .filter_map(|d| {
            let r = d.outcome.as_ref().ok()?;
            let path = || {
                d.args
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            Some(match d.name.as_str() {
                "FS_WRITE" => {
                    let c = d.args.get("content").and_then(Value::as_str).unwrap_or("");
                    let verb = if d.args.get("append").and_then(Value::as_bool) == Some(true) {
                        "appended to"
                    } else {
                        "wrote"
                    };
                    let n = c.lines().count();
                    format!(
                        "{verb} {} ({n} line{}, {} bytes)",
                        path(),
                        if n == 1 { "" } else { "s" },
                        c.len()
                    )
                }
                "FS_READ" => format!("read {}", path()),
                "FS_LIST" => {
                    let names = last_data(std::slice::from_ref(d))
                        .unwrap_or_default()
                        .replace('\n', ", ");
                    let p = path();
                    format!(
                        "listed {}: {names}",
                        if p.is_empty() {
                            "the workspace".into()
                        } else {
                            p
                        }
                    )
                }
                "FS_DELETE" => format!("deleted {}", path()),
                "FS_MKDIR" => format!("created the folder {}", path()),
                "SYS_WRITE_STDOUT" => {
                    let t = d.args.get("text").and_then(Value::as_str).unwrap_or("");
                    format!("printed {} characters", t.chars().count())
                }
                "MEM_WRITE" => format!(
                    "remembered \"{}\"",
                    d.args.get("key").and_then(Value::as_str).unwrap_or("")
                ),
                "MEM_READ" => format!(
                    "recalled \"{}\"",
                    d.args.get("query").and_then(Value::as_str).unwrap_or("")
                ),
                "SLEEP" => format!(
                    "waited {} s",
                    d.args
                        .get("seconds")
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                ),
                other => {
                    let _ = r;
                    format!("{other} succeeded")
                }
            })
        })
        .collect();
    if parts.is_empty() {
        "nothing was done".to_string()
    } else {
        parts.join("; ")
    }
}

/// The plain words of a call for an error ("read nothing.txt").
fn describe_call(name: &str, args: &Value) -> String {
    let path = args.get("path").and_then(Value::as_str).unwrap_or("");
    match name {
        "FS_READ" => format!("read {path}"),
        "FS_WRITE" => format!("write {path}"),
        "FS_DELETE" => format!("delete {path}"),
        "FS_MKDIR" => format!("create the folder {path}"),
        "FS_LIST" => format!(
            "list {}",
            if path.is_empty() {
                "the workspace"
            } else {
                path
            }
        ),
        other => other.to_string(),
    }
}

/// Why a model-written call that changes files is not made.
fn refusal(name: &str, before: &str) -> String {
    format!("Could not continue: the task names no file for {name}, and this agent changes only files the task names.{before}")
}

/// The whole `SYS_EXIT` reply refusing a model-chosen `name` that would
/// change a file when the task names none.
pub fn refusal_exit(name: &str, done: &[Done]) -> String {
    reply_text("SYS_EXIT", &json!({ "code": 1, "result": refusal(name, &done_before(done)) }))
}

/// " Done before: …." after a failure's words, when any call succeeded.
fn done_before(done: &[Done]) -> String {
    if done.iter().any(|d| d.outcome.is_ok()) {
        format!(" Done before: {}.", summary(done))
    } else {
        String::new()
    }
}

/// The reply text of one call: `[SYS_CALL::NAME] {json}`.
pub fn reply_text(name: &str, args: &Value) -> String {
    format!("{}{name}] {}", crate::grammar::TAG_OPEN, args_text(args))
}

/// The text of the conversation's task (`[TASK] …`), on one line.
pub fn task_text(messages: &[(String, String)]) -> Option<String> {
    let (_, c) = messages.iter().find(|(r, c)| r == "user" && c.starts_with("[TASK]"))?;
    Some(c["[TASK]".len()..].trim().replace('\n', " "))
}

fn exit(code: i64, result: String) -> Next {
    Next::Call {
        name: "SYS_EXIT".into(),
        args: json!({ "code": code, "result": result }),
    }
}

/// Syscalls that change, create or remove workspace files: when the model
/// writes their arguments, `path` is limited to the names the task gives.
pub const CHANGES_FILES: &[&str] = &["FS_WRITE", "FS_DELETE", "FS_MKDIR"];
/// Syscalls that only look: when the model writes their arguments, `path`
/// is limited to the names the task gives and the names listings showed
/// (when there are any), so it cannot invent a file to read.
pub const LOOKS_AT_FILES: &[&str] = &["FS_READ", "FS_LIST"];

/// Model-written steps may fail this many times in a row before the plan
/// gives up.
const MODEL_TRIES: usize = 3;

/// The next call of `plan` given the conversation's calls; `allowed` says
/// which syscalls the process holds, `named` are the names the task gives
/// (the only files a model-written call may change).
pub fn next(
    plan: &[PlanStep],
    done: &[Done],
    allowed: &dyn Fn(&str) -> bool,
    named: &[String],
) -> Next {
    // Walk the plan along the successful calls, in order.
    let mut p = 0;
    let mut fails_in_a_row = 0;
    let mut last_failure: Option<&Done> = None;
    for d in done {
        match &d.outcome {
            Ok(_) => {
                fails_in_a_row = 0;
                last_failure = None;
                if p < plan.len() && d.name == plan[p].syscall {
                    p += 1;
                }
            }
            Err(_) => {
                fails_in_a_row += 1;
                last_failure = Some(d);
            }
        }
    }
    let before = done_before(done);
    if let Some(f) = last_failure {
        // A built step that failed would fail again the same way.
        let built = plan
            .get(p)
            .is_some_and(|s| s.step.is_some() && s.syscall == f.name);
        if built || fails_in_a_row >= MODEL_TRIES {
            let err = f.outcome.as_ref().err().cloned().unwrap_or_default();
            return exit(
                1,
                format!(
                    "Could not {}: {err}.{before}",
                    describe_call(&f.name, &f.args)
                ),
            );
        }
    }
    let Some(step) = plan.get(p) else {
        return exit(0, format!("Done: {}.", summary(done)));
    };
    if !allowed(&step.syscall) {
        return exit(1, format!("Could not continue: this process may not call {} (ask for a grant that allows it).{before}", step.syscall));
    }
    match &step.step {
        None if CHANGES_FILES.contains(&step.syscall.as_str()) => {
            if named.is_empty() {
                exit(1, refusal(&step.syscall, &before))
            } else {
                Next::Model {
                    name: step.syscall.clone(),
                    paths: Some(named.to_vec()),
                }
            }
        }
        None if LOOKS_AT_FILES.contains(&step.syscall.as_str()) => {
            let mut paths = named.to_vec();
            for d in done.iter().filter(|d| d.name == "FS_LIST") {
                let base = d
                    .args
                    .get("path")
                    .and_then(Value::as_str)
                    .map(|p| p.trim_end_matches('/'))
                    .filter(|p| !p.is_empty() && *p != ".");
                let entries = d
                    .outcome
                    .as_ref()
                    .ok()
                    .and_then(|v| v.get("entries")?.as_array().cloned())
                    .unwrap_or_default();
                for e in entries {
                    if let Some(n) = e.get("name").and_then(Value::as_str) {
                        let p = base.map_or_else(|| n.to_string(), |b| format!("{b}/{n}"));
                        if !paths.contains(&p) {
                            paths.push(p);
                        }
                    }
                }
            }
            Next::Model {
                name: step.syscall.clone(),
                paths: (!paths.is_empty()).then_some(paths),
            }
        }
        None => Next::Model {
            name: step.syscall.clone(),
            paths: None,
        },
        Some(s) => match build(s, done) {
            Ok(n) => n,
            Err(why) => exit(
                1,
                format!(
                    "Could not {}: {why}.{before}",
                    describe_call(s.syscall(), &Value::Null)
                ),
            ),
        },
    }
}

/// Turns a [`Next::Call`]'s arguments into the reply's JSON text.
pub fn args_text(args: &Value) -> String {
    let mut m = Map::new();
    if let Value::Object(o) = args {
        m = o.clone();
    }
    // The compact layout the grammar uses (`{"k": v, "k2": v2}`).
    let parts: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), v))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// The reply's JSON text of `args` with one more string `field` last, cut
/// around that field's value: (`{..., "field": "`, `"}`).
pub fn args_text_open(args: &Value, field: &str) -> (String, String) {
    let mut parts: Vec<String> = match args {
        Value::Object(o) => o
            .iter()
            .filter(|(k, _)| *k != field)
            .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), v))
            .collect(),
        _ => Vec::new(),
    };
    parts.push(format!("{}: \"", Value::String(field.to_string())));
    (format!("{{{}", parts.join(", ")), "\"}".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(msgs: &[(&str, &str)]) -> Vec<(String, String)> {
        msgs.iter()
            .map(|(r, c)| (r.to_string(), c.to_string()))
            .collect()
    }

    fn plan(steps: Vec<Step>) -> Vec<PlanStep> {
        steps
            .into_iter()
            .map(|s| PlanStep {
                syscall: s.syscall().into(),
                step: Some(s),
            })
            .collect()
    }

    #[test]
    fn later_steps_take_their_text_from_the_last_read() {
        let p = plan(vec![
            Step::Read {
                path: Path::Named("notes.txt".into()),
            },
            Step::Write {
                path: "top.txt".into(),
                text: Text::FromLast(Select::Line(0)),
                append: false,
            },
        ]);
        let all = |_: &str| true;
        let m = conv(&[("system", "s"), ("user", "[TASK] x")]);
        assert_eq!(
            next(&p, &history(&m), &all, &[]),
            Next::Call {
                name: "FS_READ".into(),
                args: json!({"path": "notes.txt"})
            }
        );
        let m = conv(&[
            ("system", "s"),
            ("user", "[TASK] x"),
            ("assistant", "[SYS_CALL::FS_READ] {\"path\": \"notes.txt\"}"),
            (
                "user",
                "[RESULT FS_READ#1] {\"path\":\"notes.txt\",\"content\":\"a\\nb\\n\"}",
            ),
        ]);
        assert_eq!(
            next(&p, &history(&m), &all, &[]),
            Next::Call {
                name: "FS_WRITE".into(),
                args: json!({"path": "top.txt", "content": "a"})
            }
        );
        let mut m2 = m.clone();
        m2.push((
            "assistant".into(),
            "[SYS_CALL::FS_WRITE] {\"path\": \"top.txt\", \"content\": \"a\"}".into(),
        ));
        m2.push((
            "user".into(),
            "[RESULT FS_WRITE#2] {\"path\":\"top.txt\"}".into(),
        ));
        match next(&p, &history(&m2), &all, &[]) {
            Next::Call { name, args } => {
                assert_eq!(name, "SYS_EXIT");
                assert_eq!(args["code"], 0);
                assert_eq!(
                    args["result"],
                    "Done: read notes.txt; wrote top.txt (1 line, 1 bytes)."
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failed_built_step_ends_with_a_non_zero_exit_naming_it() {
        let p = plan(vec![
            Step::Read {
                path: Path::Named("nothing.txt".into()),
            },
            Step::Print {
                text: Text::FromLast(Select::All),
            },
        ]);
        let m = conv(&[
            ("user", "[TASK] print nothing.txt"),
            (
                "assistant",
                "[SYS_CALL::FS_READ] {\"path\": \"nothing.txt\"}",
            ),
            (
                "user",
                "[ERROR FS_READ#1] not_found: no such file: nothing.txt",
            ),
        ]);
        match next(&p, &history(&m), &|_| true, &[]) {
            Next::Call { name, args } => {
                assert_eq!(name, "SYS_EXIT");
                assert_eq!(args["code"], 1);
                assert!(
                    args["result"]
                        .as_str()
                        .unwrap()
                        .contains("Could not read nothing.txt: not_found"),
                    "{args}"
                );
            }
            other => panic!("{other:?}"),
        }
        // A step the process may not call ends the same way.
        let m = conv(&[("user", "[TASK] x")]);
        match next(&p, &history(&m), &|n| n != "FS_READ", &[]) {
            Next::Call { args, .. } => assert!(
                args["result"]
                    .as_str()
                    .unwrap()
                    .contains("may not call FS_READ"),
                "{args}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_recalled_memory_is_printed_and_an_empty_recall_is_a_failure() {
        let p = plan(vec![
            Step::Recall {
                query: "wifi".into(),
            },
            Step::Print {
                text: Text::FromLast(Select::All),
            },
        ]);
        let mut m = conv(&[
            ("user", "[TASK] x"),
            ("assistant", "[SYS_CALL::FS_READ] {\"path\": \"a.txt\"}"),
            ("user", "[RESULT FS_READ#1] {\"path\":\"a.txt\",\"content\":\"unrelated\"}"),
            ("assistant", "[SYS_CALL::MEM_READ] {\"query\": \"wifi\"}"),
            ("user", "[RESULT MEM_READ#2] {\"results\":[{\"key\":\"wifi\",\"text\":\"my wifi password is hunter2\",\"score\":0.9}]}"),
        ]);
        assert_eq!(
            next(&p, &history(&m), &|_| true, &[]),
            Next::Call {
                name: "SYS_WRITE_STDOUT".into(),
                args: json!({"text": "my wifi password is hunter2"})
            }
        );
        m[4].1 = "[RESULT MEM_READ#2] {\"results\":[]}".into();
        match next(&p, &history(&m), &|_| true, &[]) {
            Next::Call { name, args } => {
                assert_eq!(name, "SYS_EXIT");
                assert_eq!(args["code"], 1);
                assert!(
                    args["result"]
                        .as_str()
                        .unwrap()
                        .contains("no memory was found"),
                    "{args}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// A step the frame left to the model may change only a file the task
    /// names: FS_WRITE and FS_DELETE get `path` limited to those names, and
    /// with none named the process exits non-zero instead of guessing.
    #[test]
    fn model_written_changes_are_limited_to_named_files() {
        let model = |name: &str| {
            vec![PlanStep {
                syscall: name.into(),
                step: None,
            }]
        };
        let m = conv(&[("user", "[TASK] tidy up notes.txt")]);
        let named = vec!["notes.txt".to_string()];
        for name in CHANGES_FILES {
            assert_eq!(
                next(&model(name), &history(&m), &|_| true, &named),
                Next::Model {
                    name: name.to_string(),
                    paths: Some(named.clone())
                }
            );
            match next(&model(name), &history(&m), &|_| true, &[]) {
                Next::Call { name: n, args } => {
                    assert_eq!((n.as_str(), &args["code"]), ("SYS_EXIT", &json!(1)));
                    assert!(
                        args["result"].as_str().unwrap().contains("names no file"),
                        "{args}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        // A look at files: limited to named and listed names, when there are any.
        assert_eq!(
            next(&model("FS_READ"), &history(&m), &|_| true, &[]),
            Next::Model {
                name: "FS_READ".into(),
                paths: None
            }
        );
        let listed = conv(&[
            ("user", "[TASK] have a look around"),
            ("assistant", "[SYS_CALL::FS_LIST] {\"path\": \"docs\"}"),
            ("user", "[RESULT FS_LIST#1] {\"path\":\"docs\",\"entries\":[{\"name\":\"a.md\",\"kind\":\"file\"}],\"total\":1}"),
        ]);
        assert_eq!(
            next(&model("FS_READ"), &history(&listed), &|_| true, &named),
            Next::Model {
                name: "FS_READ".into(),
                paths: Some(vec!["notes.txt".into(), "docs/a.md".into()])
            }
        );
    }

    #[test]
    fn selections() {
        let t = "one two\nthree\n\nfour five six\n";
        assert_eq!(select(t, &Select::Line(usize::MAX)), "four five six");
        assert_eq!(select(t, &Select::Line(1)), "three");
        assert_eq!(select(t, &Select::FirstLines(2)), "one two\nthree");
        assert_eq!(select(t, &Select::LineCount), "3");
        assert_eq!(select(t, &Select::WordCount), "6");
        assert_eq!(
            select(
                "a cat. cat",
                &Select::Replace {
                    from: "cat".into(),
                    to: "dog".into()
                }
            ),
            "a dog. dog"
        );
        assert_eq!(
            args_text(&json!({"path": "a", "content": "x\"y"})),
            "{\"path\": \"a\", \"content\": \"x\\\"y\"}"
        );
    }
}
