//! The kernel's hooks ([`aos_kernel::observe`]) as OpenTelemetry spans, in
//! the GenAI semantic conventions:
//!
//! * `aos.step` — one per step of a process, the root of its own trace
//!   (one trace per step: a process may live for days, and a trace per
//!   step keeps traces small and complete; `aos.pid` finds a process's
//!   steps). Attributes `aos.pid`, `aos.step`, `aos.provider`, `aos.model`;
//!   status error with the reason when the process fails or is killed
//!   during the step.
//! * `chat {model}` (client) — each model call: `gen_ai.operation.name`,
//!   `gen_ai.provider.name` (and the older `gen_ai.system`),
//!   `gen_ai.request.model`, `gen_ai.request.max_tokens`,
//!   `gen_ai.request.temperature`, `gen_ai.usage.input_tokens`,
//!   `gen_ai.usage.output_tokens`, `gen_ai.response.finish_reasons`;
//!   error status and `error.type` when the call failed.
//! * `execute_tool {NAME}` — each call of the reply: `gen_ai.tool.name`,
//!   `gen_ai.tool.call.id`, `gen_ai.tool.type`; error status, its message
//!   and `error.type` (`denied`, `not_found`, `invalid_call`, …) when it failed.
//!
//! Content — `gen_ai.input.messages`, `gen_ai.output.messages`,
//! `gen_ai.tool.call.arguments`, `gen_ai.tool.call.result` — only with
//! `capture_content`, each cut at [`MAX_CONTENT`] bytes.

use std::time::{SystemTime, UNIX_EPOCH};

use aos_kernel::observe::{ModelEnd, ModelStart, Observer, StepEnd, StepObserver, StepStart, SyscallEnd, SyscallStart};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span, Status};
use serde_json::{json, Value};

use crate::export::Queue;

/// Longest content attribute (bytes); longer ones are cut and end in `…`.
pub const MAX_CONTENT: usize = 16 * 1024;

/// Makes the spans of every step and hands them to the export queue.
pub(crate) struct SpanObserver {
    pub queue: Queue,
    pub capture_content: bool,
}

impl Observer for SpanObserver {
    fn step_started(&self, s: &StepStart<'_>) -> Box<dyn StepObserver> {
        let trace_id = random_id::<16>();
        let mut root = Open::new(trace_id, None, "aos.step".into(), SpanKind::Internal);
        root.int("aos.pid", s.pid as i64);
        root.int("aos.step", s.step as i64);
        root.str("aos.provider", s.provider);
        root.str("aos.model", s.model);
        Box::new(StepSpans {
            queue: self.queue.clone(),
            capture: self.capture_content,
            pid: s.pid,
            root: Some(root),
            model: None,
            tool: None,
        })
    }
}

/// The open spans of one step.
struct StepSpans {
    queue: Queue,
    capture: bool,
    pid: u64,
    root: Option<Open>,
    model: Option<Open>,
    tool: Option<Open>,
}

impl StepSpans {
    fn child(&self, name: String, kind: SpanKind) -> Option<Open> {
        let root = self.root.as_ref()?;
        let mut o = Open::new(root.span.trace_id.clone(), Some(root.span.span_id.clone()), name, kind);
        o.int("aos.pid", self.pid as i64);
        Some(o)
    }
}

impl StepObserver for StepSpans {
    fn model_started(&mut self, m: &ModelStart<'_>) {
        let Some(mut o) = self.child(format!("chat {}", m.model), SpanKind::Client) else { return };
        o.str("gen_ai.operation.name", "chat");
        o.str("gen_ai.provider.name", m.provider);
        o.str("gen_ai.system", m.provider);
        o.str("gen_ai.request.model", m.model);
        if let Some(n) = m.max_tokens {
            o.int("gen_ai.request.max_tokens", n as i64);
        }
        if let Some(t) = m.temperature {
            o.attr("gen_ai.request.temperature", any_value::Value::DoubleValue(t as f64));
        }
        if self.capture {
            let messages: Vec<Value> = m
                .messages
                .iter()
                .map(|msg| {
                    let role = serde_json::to_value(msg.role).unwrap_or(Value::Null);
                    let mut parts = vec![json!({"type": "text", "content": msg.content})];
                    parts.extend(msg.tool_calls.iter().map(tool_call_part));
                    let mut v = json!({"role": role, "parts": parts});
                    if let Some(id) = &msg.tool_call_id {
                        v["tool_call_id"] = json!(id);
                    }
                    v
                })
                .collect();
            o.content("gen_ai.input.messages", &Value::Array(messages).to_string());
        }
        self.model = Some(o);
    }

    fn model_ended(&mut self, end: &ModelEnd<'_>) {
        let Some(mut o) = self.model.take() else { return };
        match end.result {
            Ok(c) => {
                o.int("gen_ai.usage.input_tokens", c.usage.prompt_tokens as i64);
                o.int("gen_ai.usage.output_tokens", c.usage.completion_tokens as i64);
                let finish = if c.truncated {
                    "length"
                } else if !c.tool_calls.is_empty() {
                    "tool_calls"
                } else {
                    "stop"
                };
                o.attr(
                    "gen_ai.response.finish_reasons",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue { value: Some(any_value::Value::StringValue(finish.into())) }],
                    }),
                );
                if self.capture {
                    let mut parts = vec![json!({"type": "text", "content": c.text})];
                    parts.extend(c.tool_calls.iter().map(tool_call_part));
                    let out = json!([{"role": "assistant", "parts": parts, "finish_reason": finish}]);
                    o.content("gen_ai.output.messages", &out.to_string());
                }
            }
            Err(e) => {
                let kind = format!("{e:?}");
                let kind = kind.split([' ', '(', '{']).next().unwrap_or("error").to_string();
                o.error(&kind, &e.to_string());
            }
        }
        self.queue.push(o.end());
    }

    fn syscall_started(&mut self, c: &SyscallStart<'_>) {
        let name = match c.name {
            Some(n) => format!("execute_tool {n}"),
            None => "execute_tool".into(),
        };
        let Some(mut o) = self.child(name, SpanKind::Internal) else { return };
        o.str("gen_ai.operation.name", "execute_tool");
        if let Some(n) = c.name {
            o.str("gen_ai.tool.name", n);
        }
        o.str("gen_ai.tool.call.id", c.call_id);
        o.str("gen_ai.tool.type", "function");
        if self.capture {
            if let Some(args) = c.args {
                o.content("gen_ai.tool.call.arguments", &args.to_string());
            }
        }
        self.tool = Some(o);
    }

    fn syscall_ended(&mut self, end: &SyscallEnd<'_>) {
        let Some(mut o) = self.tool.take() else { return };
        match end.result {
            Ok(output) => {
                if self.capture {
                    o.content("gen_ai.tool.call.result", &output.to_string());
                }
            }
            Err((kind, message)) => o.error(kind, message),
        }
        self.queue.push(o.end());
    }

    fn step_ended(mut self: Box<Self>, end: &StepEnd<'_>) {
        if let Some(mut root) = self.root.take() {
            if let Some(e) = end.error {
                root.error("process_ended", e);
            }
            self.queue.push(root.end());
        }
    }
}

impl Drop for StepSpans {
    /// A step dropped without its end: the process was killed (or the
    /// kernel stopped) during it; what was open ends as cancelled.
    fn drop(&mut self) {
        for mut o in [self.tool.take(), self.model.take(), self.root.take()].into_iter().flatten() {
            o.error("cancelled", "the step was interrupted (the process was killed or the kernel stopped)");
            self.queue.push(o.end());
        }
    }
}

fn tool_call_part(c: &aos_providers::ToolCall) -> Value {
    json!({"type": "tool_call", "id": c.id, "name": c.name, "arguments": c.arguments})
}

/// A span being built.
struct Open {
    span: Span,
}

impl Open {
    fn new(trace_id: Vec<u8>, parent: Option<Vec<u8>>, name: String, kind: SpanKind) -> Open {
        Open {
            span: Span {
                trace_id,
                span_id: random_id::<8>(),
                parent_span_id: parent.unwrap_or_default(),
                name,
                kind: kind as i32,
                start_time_unix_nano: now_nanos(),
                ..Default::default()
            },
        }
    }

    fn attr(&mut self, key: &str, v: any_value::Value) {
        self.span.attributes.push(KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() });
    }

    fn str(&mut self, key: &str, v: &str) {
        self.attr(key, any_value::Value::StringValue(v.into()));
    }

    fn int(&mut self, key: &str, v: i64) {
        self.attr(key, any_value::Value::IntValue(v));
    }

    fn content(&mut self, key: &str, v: &str) {
        self.str(key, &truncate(v, MAX_CONTENT));
    }

    fn error(&mut self, kind: &str, message: &str) {
        self.str("error.type", kind);
        self.span.status = Some(Status { message: truncate(message, 2048), code: StatusCode::Error as i32 });
    }

    fn end(mut self) -> Span {
        self.span.end_time_unix_nano = now_nanos().max(self.span.start_time_unix_nano);
        self.span
    }
}

/// `s` cut to at most `max` bytes (at a character boundary), marked with `…`.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// A random, non-zero trace or span id (all-zero ids are invalid in OTLP).
fn random_id<const N: usize>() -> Vec<u8> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static FALLBACK: AtomicU64 = AtomicU64::new(1);
    let mut b = [0u8; N];
    if getrandom::getrandom(&mut b).is_err() || b.iter().all(|x| *x == 0) {
        // No OS randomness: unique enough from the clock and a counter.
        let n = FALLBACK.fetch_add(1, Ordering::Relaxed) ^ now_nanos();
        for (i, x) in b.iter_mut().enumerate() {
            *x = (n >> ((i % 8) * 8)) as u8 ^ (i as u8).wrapping_add(1);
        }
    }
    b.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(random_id::<16>().len(), 16);
        assert_ne!(random_id::<8>(), random_id::<8>());
    }
}
