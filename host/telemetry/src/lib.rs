//! AgentOS traces: OpenTelemetry spans of every step, model call and
//! syscall of the kernel's processes ([`spans`], from the kernel's hooks in
//! [`aos_kernel::observe`]), exported over OTLP/HTTP with protobuf bodies
//! ([`export`]), configured by `[telemetry]` in `aos.toml` and the standard
//! `OTEL_EXPORTER_OTLP_*` variables ([`config`]).
//!
//! ```no_run
//! # async fn f(mut kc: aos_kernel::KernelConfig) -> Result<(), aos_telemetry::TelemetryError> {
//! let mut cfg = aos_telemetry::TelemetryConfig::default();
//! cfg.apply_env(|k| std::env::var(k).ok())?;
//! if let Some(t) = aos_telemetry::Telemetry::start(&cfg)? {
//!     kc.observer = t.observer();
//!     // … run the kernel …
//!     t.shutdown().await; // sends what is queued
//! }
//! # Ok(()) }
//! ```
//!
//! Prompts, replies, tool arguments and results leave the machine only with
//! `capture_content = true`. The SDK pipeline of the `opentelemetry` crates
//! is not used: only the OTLP message types (`opentelemetry-proto`), posted
//! with the workspace's `reqwest`.

pub mod config;
pub mod export;
pub mod spans;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use config::{TelemetryConfig, TelemetryError};
pub use export::Stats;

use export::{Counters, Exporter, Item, Queue};

/// A running trace exporter. Dropping it stops the export task after it
/// sent what was queued; [`Telemetry::shutdown`] waits for that.
pub struct Telemetry {
    queue: Queue,
    capture_content: bool,
    url: String,
    export_timeout: Duration,
    task: tokio::task::JoinHandle<()>,
}

impl Telemetry {
    /// Starts the exporter of `cfg` (on the current tokio runtime), or
    /// `None` when telemetry is not enabled.
    pub fn start(cfg: &TelemetryConfig) -> Result<Option<Telemetry>, TelemetryError> {
        if !cfg.enabled {
            return Ok(None);
        }
        cfg.validate()?;
        let counters = Arc::new(Counters::default());
        let exporter = Exporter::new(cfg, counters.clone())?;
        let (tx, rx) = mpsc::channel(export::QUEUE_CAPACITY);
        let task = tokio::spawn(exporter.run(rx));
        Ok(Some(Telemetry {
            queue: Queue { tx, counters },
            capture_content: cfg.capture_content,
            url: cfg.traces_url(),
            export_timeout: cfg.export_timeout(),
            task,
        }))
    }

    /// The kernel's observer ([`aos_kernel::KernelConfig::observer`]).
    pub fn observer(&self) -> aos_kernel::Observers {
        aos_kernel::Observers(Arc::new(spans::SpanObserver {
            queue: self.queue.clone(),
            capture_content: self.capture_content,
        }))
    }

    /// Where spans go (the traces URL).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether prompts, replies, arguments and results are exported.
    pub fn captures_content(&self) -> bool {
        self.capture_content
    }

    /// Counts of exported, dropped and failed spans so far.
    pub fn stats(&self) -> Stats {
        self.queue.counters.get()
    }

    /// Sends every span queued so far and waits for the answer (at most
    /// `timeout`; false if that ran out).
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        let sent = async {
            self.queue.tx.send(Item::Flush(done)).await.is_ok() && wait.await.is_ok()
        };
        tokio::time::timeout(timeout, sent).await.unwrap_or(false)
    }

    /// Flushes (at most `export_timeout` plus a second), then stops the
    /// export task. Spans of steps still running are dropped.
    pub async fn shutdown(self) {
        if !self.flush(self.export_timeout + Duration::from_secs(1)).await {
            tracing::warn!(url = %self.url, "traces still queued at shutdown were not sent");
        }
        let stats = self.stats();
        if stats.dropped + stats.failed > 0 {
            tracing::info!(
                exported = stats.exported,
                dropped = stats.dropped,
                failed = stats.failed,
                "trace export: {} span(s) sent, {} dropped (queue full), {} lost to failed exports",
                stats.exported,
                stats.dropped,
                stats.failed
            );
        }
        self.task.abort();
    }
}
