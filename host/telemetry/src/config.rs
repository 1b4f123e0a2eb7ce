//! `[telemetry]` in `aos.toml` and the standard `OTEL_*` environment
//! variables, which override the file (as the OpenTelemetry specification
//! says):
//!
//! | variable | effect |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL (`/v1/traces` is appended); enables export |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | full traces URL (used as is); enables export |
//! | `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TRACES_HEADERS` | `k=v,k2=v2` (URL-encoded), added to the file's headers (the traces one wins) |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` | export timeout in milliseconds |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` | only `http/protobuf` is supported |
//! | `OTEL_SERVICE_NAME` | the `service.name` resource attribute |
//! | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` | no export, whatever the file says |
//! | `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` | `capture_content = true` |

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The collector's OTLP/HTTP port on this machine, the default base URL.
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4318";

/// `[telemetry]`: where and how traces are exported.
///
/// ```toml
/// [telemetry]
/// enabled = true                     # default false (an OTEL_EXPORTER_OTLP_*ENDPOINT variable enables it)
/// endpoint = "http://localhost:4318" # the collector's OTLP/HTTP base URL; /v1/traces is appended
/// traces_endpoint = "https://collector.example/v1/traces"  # full URL, wins over `endpoint`
/// headers = { "x-tenant" = "ops" }   # sent with every export (prefer OTEL_EXPORTER_OTLP_HEADERS for secrets)
/// service_name = "aos"
/// capture_content = false            # prompts, replies, tool arguments and results as span attributes
/// export_timeout_secs = 10
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    pub enabled: bool,
    pub endpoint: String,
    pub traces_endpoint: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub service_name: String,
    pub capture_content: bool,
    pub export_timeout_secs: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            enabled: false,
            endpoint: DEFAULT_ENDPOINT.into(),
            traces_endpoint: None,
            headers: BTreeMap::new(),
            service_name: "aos".into(),
            capture_content: false,
            export_timeout_secs: 10.0,
        }
    }
}

/// Why telemetry settings cannot be used; each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "{var}={value:?}: aos exports traces over OTLP/HTTP with protobuf only; set {var}=http/protobuf (or unset it) \
         and point the endpoint at the collector's OTLP/HTTP port (usually 4318, not gRPC's 4317)"
    )]
    UnsupportedProtocol { var: String, value: String },
    #[error("{var}={value:?} is not a valid header list; write key=value pairs separated by commas (values URL-encoded), e.g. authorization=Bearer%20abc,x-tenant=ops")]
    InvalidHeaders { var: String, value: String },
    #[error("{what}={value:?} is not a valid number of {unit}")]
    InvalidNumber { what: String, value: String, unit: &'static str },
    #[error("telemetry endpoint {url:?} is not an http:// or https:// URL; set `[telemetry] endpoint` or OTEL_EXPORTER_OTLP_ENDPOINT to the collector's OTLP/HTTP address, e.g. http://localhost:4318")]
    InvalidEndpoint { url: String },
    #[error("cannot build the OTLP/HTTP client: {0}")]
    Client(String),
}

impl TelemetryConfig {
    /// Applies the `OTEL_*` variables read through `env` (see the module doc).
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), TelemetryError> {
        let get = |k: &str| env(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        if let Some(v) = get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            self.endpoint = v;
            self.traces_endpoint = None;
            self.enabled = true;
        }
        if let Some(v) = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            self.traces_endpoint = Some(v);
            self.enabled = true;
        }
        for var in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"] {
            if let Some(v) = get(var) {
                self.headers.extend(parse_headers(&v).ok_or_else(|| TelemetryError::InvalidHeaders { var: var.into(), value: v })?);
            }
        }
        for var in ["OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"] {
            if let Some(v) = get(var) {
                let ms: f64 = v.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0).ok_or_else(|| {
                    TelemetryError::InvalidNumber { what: var.into(), value: v.clone(), unit: "milliseconds" }
                })?;
                self.export_timeout_secs = ms / 1000.0;
            }
        }
        if let Some(v) = get("OTEL_SERVICE_NAME") {
            self.service_name = v;
        }
        if get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            self.capture_content = true;
        }
        let disabled = get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || get("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
        if disabled {
            self.enabled = false;
        }
        if self.enabled {
            // The traces variable wins over the generic one.
            for var in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
                if let Some(v) = get(var) {
                    if v != "http/protobuf" {
                        return Err(TelemetryError::UnsupportedProtocol { var: var.into(), value: v });
                    }
                    break;
                }
            }
        }
        Ok(())
    }

    /// Where spans are posted: `traces_endpoint`, else `endpoint` + `/v1/traces`.
    pub fn traces_url(&self) -> String {
        match &self.traces_endpoint {
            Some(url) => url.clone(),
            None => format!("{}/v1/traces", self.endpoint.trim_end_matches('/')),
        }
    }

    /// The export timeout (at least a millisecond, at most an hour).
    pub fn export_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.export_timeout_secs.clamp(0.001, 3600.0))
    }

    /// Checks what the exporter needs: an http(s) URL.
    pub fn validate(&self) -> Result<(), TelemetryError> {
        if !self.enabled {
            return Ok(());
        }
        let url = self.traces_url();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(TelemetryError::InvalidEndpoint { url });
        }
        Ok(())
    }
}

/// `k=v,k2=v2` with URL-encoded keys and values (W3C baggage style, as
/// `OTEL_EXPORTER_OTLP_HEADERS` is written); `None` if an entry has no `=`,
/// an empty key or a bad escape.
pub fn parse_headers(s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item.split_once('=')?;
        let k = percent_decode(k.trim())?;
        if k.is_empty() {
            return None;
        }
        out.insert(k.to_ascii_lowercase(), percent_decode(v.trim())?);
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn headers_are_url_decoded_pairs() {
        let h = parse_headers("Authorization=Bearer%20abc%3D, x-tenant=ops").unwrap();
        assert_eq!(h.get("authorization").unwrap(), "Bearer abc=");
        assert_eq!(h.get("x-tenant").unwrap(), "ops");
        assert!(parse_headers("novalue").is_none());
        assert!(parse_headers("a=%zz").is_none());
        assert!(parse_headers("=v").is_none());
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut c: TelemetryConfig = TelemetryConfig {
            endpoint: "http://file:4318".into(),
            headers: [("x-a".to_string(), "file".to_string())].into(),
            ..Default::default()
        };
        c.apply_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-a=env,x-b=1"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-b=2"),
            ("OTEL_SERVICE_NAME", "agents"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ]))
        .unwrap();
        assert!(c.enabled);
        assert_eq!(c.traces_url(), "http://env:4318/v1/traces");
        assert_eq!(c.headers.get("x-a").unwrap(), "env");
        assert_eq!(c.headers.get("x-b").unwrap(), "2");
        assert_eq!(c.service_name, "agents");
        assert_eq!(c.export_timeout(), Duration::from_millis(2500));
        c.apply_env(env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t/x")])).unwrap();
        assert_eq!(c.traces_url(), "http://t/x");
        c.apply_env(env(&[("OTEL_SDK_DISABLED", "true")])).unwrap();
        assert!(!c.enabled);
    }

    #[test]
    fn grpc_is_refused_with_what_to_do() {
        let mut c = TelemetryConfig { enabled: true, ..Default::default() };
        let e = c.apply_env(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap_err().to_string();
        assert!(e.contains("http/protobuf") && e.contains("4318"), "{e}");
        // The traces variable wins.
        let mut c = TelemetryConfig { enabled: true, ..Default::default() };
        c.apply_env(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")]))
            .unwrap();
        // Not exporting: nothing to refuse.
        TelemetryConfig::default().apply_env(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap();
    }
}
