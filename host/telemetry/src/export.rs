//! The exporter: ended spans go into a bounded queue (never waited on — a
//! full queue drops the span and counts it), and one background task posts
//! them in batches as an OTLP `ExportTraceServiceRequest` (protobuf,
//! `Content-Type: application/x-protobuf`) to the traces URL: when
//! [`MAX_BATCH`] spans are waiting, every [`BATCH_DELAY`], and on
//! [`crate::Telemetry::flush`]. A failed export (collector down, HTTP error,
//! timeout) is logged — once per outage, not per batch — and its spans are
//! counted as failed and dropped: the kernel never waits for a collector.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use crate::config::{TelemetryConfig, TelemetryError};

/// Spans waiting for export at most; more are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 4096;
/// Spans per export request at most.
pub const MAX_BATCH: usize = 512;
/// Longest time an ended span waits before it is sent.
pub const BATCH_DELAY: Duration = Duration::from_secs(2);

/// What the exporter did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans dropped because the queue was full.
    pub dropped: u64,
    /// Spans lost to failed exports.
    pub failed: u64,
    /// Failed export requests.
    pub failed_requests: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    failed_requests: AtomicU64,
}

impl Counters {
    pub fn get(&self) -> Stats {
        Stats {
            exported: self.exported.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            failed_requests: self.failed_requests.load(Ordering::Relaxed),
        }
    }
}

pub(crate) enum Item {
    Span(Box<Span>),
    Flush(oneshot::Sender<()>),
}

/// The sending end of the export queue.
#[derive(Clone)]
pub(crate) struct Queue {
    pub tx: mpsc::Sender<Item>,
    pub counters: Arc<Counters>,
}

impl Queue {
    /// Queues `span`, or drops and counts it when the queue is full or closed.
    pub fn push(&self, span: Span) {
        if self.tx.try_send(Item::Span(Box::new(span))).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Posts batches to the collector.
pub(crate) struct Exporter {
    client: reqwest::Client,
    url: String,
    resource: Resource,
    counters: Arc<Counters>,
    /// Whether the last export failed (a failure is logged once per outage).
    failing: bool,
}

impl Exporter {
    pub fn new(cfg: &TelemetryConfig, counters: Arc<Counters>) -> Result<Exporter, TelemetryError> {
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| TelemetryError::Client(format!("`{k}` is not a valid HTTP header name")))?;
            let mut value = reqwest::header::HeaderValue::from_str(v)
                .map_err(|_| TelemetryError::Client(format!("the value of header `{k}` is not a valid HTTP header value")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(cfg.export_timeout())
            .user_agent(concat!("aos/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TelemetryError::Client(e.to_string()))?;
        let str_kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        };
        let resource = Resource {
            attributes: vec![
                str_kv("service.name", &cfg.service_name),
                str_kv("service.version", env!("CARGO_PKG_VERSION")),
                str_kv("telemetry.sdk.name", "aos-telemetry"),
                str_kv("telemetry.sdk.language", "rust"),
            ],
            ..Default::default()
        };
        Ok(Exporter { client, url: cfg.traces_url(), resource, counters, failing: false })
    }

    /// The export loop: runs until every sender is gone.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Item>) {
        let mut batch: Vec<Span> = Vec::new();
        let mut tick = tokio::time::interval(BATCH_DELAY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                item = rx.recv() => match item {
                    Some(Item::Span(s)) => {
                        batch.push(*s);
                        if batch.len() >= MAX_BATCH {
                            self.export(std::mem::take(&mut batch)).await;
                        }
                    }
                    Some(Item::Flush(done)) => {
                        self.export(std::mem::take(&mut batch)).await;
                        let _ = done.send(());
                    }
                    None => {
                        self.export(std::mem::take(&mut batch)).await;
                        return;
                    }
                },
                _ = tick.tick() => self.export(std::mem::take(&mut batch)).await,
            }
        }
    }

    async fn export(&mut self, spans: Vec<Span>) {
        if spans.is_empty() {
            return;
        }
        let n = spans.len() as u64;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "aos".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let result = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .body(request.encode_to_vec())
            .send()
            .await;
        let error = match result {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("the collector answered HTTP {}", r.status())),
            Err(e) if e.is_timeout() => Some("no answer within the export timeout".to_string()),
            Err(e) => Some(format!("{e}")),
        };
        match error {
            None => {
                self.counters.exported.fetch_add(n, Ordering::Relaxed);
                if self.failing {
                    tracing::info!(url = %self.url, "trace export works again");
                    self.failing = false;
                }
            }
            Some(e) => {
                self.counters.failed.fetch_add(n, Ordering::Relaxed);
                self.counters.failed_requests.fetch_add(1, Ordering::Relaxed);
                if !self.failing {
                    tracing::warn!(url = %self.url, "cannot export traces ({e}); {n} span(s) dropped, and later failures are counted \
                        without a warning until export works again (is the collector running, and is this its OTLP/HTTP address?)");
                    self.failing = true;
                } else {
                    tracing::debug!(url = %self.url, "trace export failed again ({e}); {n} span(s) dropped");
                }
            }
        }
    }
}
