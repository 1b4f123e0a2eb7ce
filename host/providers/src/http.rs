//! Shared HTTP plumbing for the network providers: one `reqwest::Client` per
//! provider (connect + request timeouts), POSTing JSON with retries
//! (exponential backoff with jitter, `Retry-After` honoured) on 429/5xx/529 and
//! connection errors, and mapping transport failures to [`ProviderError`]s that
//! say what to do. API keys travel only in headers and never appear in errors
//! or logs.

use std::time::Duration;

use serde_json::Value;

use crate::ProviderError;

/// Timeouts and retry policy of one provider's HTTP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Time allowed to open the TCP (+TLS) connection. Default 10 s.
    pub connect_timeout: Duration,
    /// Time allowed for a whole request, response body included. Default 120 s.
    pub timeout: Duration,
    /// Retries after the first attempt on 429/500/502/503/504/529 and on
    /// connection errors. Default 3 (so at most 4 attempts).
    pub max_retries: u32,
    /// First backoff; doubles each retry, with jitter. Default 500 ms.
    pub backoff_base: Duration,
    /// Upper bound of any single wait, `Retry-After` included. Default 30 s.
    pub backoff_cap: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
            max_retries: 3,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
        }
    }
}

/// Statuses worth retrying: rate limits, transient server errors, Anthropic's 529.
pub(crate) fn is_retryable(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504 | 529)
}

/// The wait before retry number `retry` (0-based): `base * 2^retry`, capped,
/// with "equal jitter" (half fixed, half random). A `Retry-After` value wins
/// but is capped too.
pub(crate) fn backoff_delay(
    settings: &HttpSettings,
    retry: u32,
    retry_after: Option<Duration>,
) -> Duration {
    if let Some(ra) = retry_after {
        return ra.min(settings.backoff_cap);
    }
    let factor = 1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX);
    let exp = settings
        .backoff_base
        .saturating_mul(factor)
        .min(settings.backoff_cap);
    let half = exp / 2;
    let spread = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let jitter = if spread == 0 {
        0
    } else {
        random_u64() % spread.saturating_add(1)
    };
    (half + Duration::from_nanos(jitter)).min(exp)
}

/// A cheap random number (no extra dependency): std's randomly-keyed hasher.
fn random_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Parses a `Retry-After` header given in (possibly fractional) seconds.
/// HTTP-date values are ignored (the normal backoff applies).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    if secs.is_finite() && secs >= 0.0 {
        Some(Duration::from_secs_f64(secs.min(86_400.0)))
    } else {
        None
    }
}

/// Keeps error bodies readable in messages.
pub(crate) fn snippet(body: &str) -> String {
    const MAX: usize = 400;
    let body = body.trim();
    if body.chars().count() <= MAX {
        body.to_string()
    } else {
        let cut: String = body.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

/// How a provider reads its service's error bodies.
pub(crate) trait WireErrors: Send + Sync {
    /// The human-readable message of an error body (falls back to a snippet).
    fn detail(&self, status: u16, body: &str) -> String;
    /// Whether a failure is worth retrying (by default: [`is_retryable`] statuses).
    fn retryable(&self, status: u16, _body: &str) -> bool {
        is_retryable(status)
    }
    /// The error for a non-retryable failure status (any non-2xx that is not
    /// retryable, e.g. 400/401/403/404).
    fn classify(&self, status: u16, body: &str, model: &str) -> ProviderError;
}

/// One provider's HTTP client.
pub(crate) struct HttpClient {
    client: reqwest::Client,
    settings: HttpSettings,
    provider: &'static str,
}

impl HttpClient {
    pub(crate) fn new(
        provider: &'static str,
        settings: HttpSettings,
    ) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .user_agent(concat!("agentos-providers/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                ProviderError::Other(format!("cannot build the HTTP client for {provider}: {e}"))
            })?;
        Ok(HttpClient {
            client,
            settings,
            provider,
        })
    }

    fn timeout_error(&self) -> ProviderError {
        let millis = self.settings.timeout.as_millis() as u64;
        ProviderError::Timeout {
            provider: self.provider.to_string(),
            secs: millis.div_ceil(1000),
        }
    }

    fn unreachable(&self, url: &str, detail: String) -> ProviderError {
        ProviderError::Unreachable {
            provider: self.provider.to_string(),
            url: url.to_string(),
            detail,
        }
    }

    /// POSTs `body` as JSON to `url` with `headers`, retrying per the settings,
    /// and returns the parsed JSON of a 2xx response.
    pub(crate) async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &Value,
        model: &str,
        errors: &dyn WireErrors,
    ) -> Result<Value, ProviderError> {
        let resp = self.send(url, headers, body, model, errors).await?;
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) if e.is_timeout() => return Err(self.timeout_error()),
            Err(e) => {
                return Err(self.unreachable(
                    url,
                    format!("connection lost while reading the response: {}", describe_reqwest_error(&e)),
                ))
            }
        };
        serde_json::from_str(&text).map_err(|e| ProviderError::BadResponse {
            provider: self.provider.to_string(),
            detail: format!("invalid JSON ({e}): {}", snippet(&text)),
        })
    }

    /// Posts `body` and reads the answer as server-sent events, handing
    /// each to `on_event` until it returns `Ok(true)` (the API's last
    /// event): [`Streamed::Ended`] then, [`Streamed::Stopped`] when the
    /// stream ended cleanly before such an event (some APIs have none: the
    /// caller decides, with [`HttpClient::cut`]), [`Streamed::Whole`] when
    /// the server answered in one JSON body. Connection failures and error statuses are
    /// retried like [`HttpClient::post_json`]'s (nothing was streamed yet);
    /// a stream that breaks is a [`ProviderError::Unreachable`]
    /// "connection lost" error, as a non-streamed reply cut while being
    /// read is.
    pub(crate) async fn post_sse(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &Value,
        model: &str,
        errors: &dyn WireErrors,
        on_event: &mut (dyn FnMut(SseEvent) -> Result<bool, ProviderError> + Send),
    ) -> Result<Streamed, ProviderError> {
        let mut resp = self.send(url, headers, body, model, errors).await?;
        let is_sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
        if !is_sse {
            // A server that ignores the stream flag answers in one piece.
            let text = resp.text().await.map_err(|e| {
                if e.is_timeout() {
                    self.timeout_error()
                } else {
                    self.unreachable(url, format!("connection lost while reading the response: {}", describe_reqwest_error(&e)))
                }
            })?;
            return serde_json::from_str(&text).map(Streamed::Whole).map_err(|e| ProviderError::BadResponse {
                provider: self.provider.to_string(),
                detail: format!("invalid JSON ({e}): {}", snippet(&text)),
            });
        }
        let mut parser = SseParser::default();
        let mut received = 0usize;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(self.timeout_error()),
                Err(e) => {
                    return Err(self.unreachable(
                        url,
                        format!(
                            "connection lost while streaming the response (after {received} bytes): {}",
                            describe_reqwest_error(&e)
                        ),
                    ))
                }
            };
            received += chunk.len();
            for ev in parser.push(&chunk) {
                if on_event(ev)? {
                    return Ok(Streamed::Ended);
                }
            }
        }
        for ev in parser.finish() {
            if on_event(ev)? {
                return Ok(Streamed::Ended);
            }
        }
        Ok(Streamed::Stopped)
    }

    /// The error for a stream that ended before the reply was complete.
    pub(crate) fn cut(&self, url: &str) -> ProviderError {
        self.unreachable(
            url,
            "connection lost while streaming the response: the stream ended before the reply was complete".into(),
        )
    }

    /// Sends `body` with retries and returns the first 2xx response (its
    /// body unread); error statuses become typed errors.
    async fn send(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &Value,
        model: &str,
        errors: &dyn WireErrors,
    ) -> Result<reqwest::Response, ProviderError> {
        let max_attempts = self.settings.max_retries.saturating_add(1);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let mut rb = self.client.post(url).json(body);
            for (name, value) in headers {
                rb = rb.header(*name, value);
            }
            let result = rb.send().await;
            let resp = match result {
                Ok(resp) => resp,
                Err(e) => {
                    if e.is_connect() {
                        let detail = describe_reqwest_error(&e);
                        if attempt < max_attempts {
                            let wait = backoff_delay(&self.settings, attempt - 1, None);
                            tracing::warn!(provider = self.provider, %url, attempt, ?wait, "connection failed, retrying: {detail}");
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        return Err(
                            self.unreachable(url, format!("{detail} (after {attempt} attempts)"))
                        );
                    }
                    if e.is_timeout() {
                        return Err(self.timeout_error());
                    }
                    return Err(self.unreachable(url, describe_reqwest_error(&e)));
                }
            };

            let status = resp.status().as_u16();
            if (200..300).contains(&status) {
                return Ok(resp);
            }
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let text = match resp.text().await {
                Ok(t) => t,
                Err(e) if e.is_timeout() => return Err(self.timeout_error()),
                Err(e) => {
                    return Err(self.unreachable(
                        url,
                        format!(
                            "connection lost while reading the response: {}",
                            describe_reqwest_error(&e)
                        ),
                    ))
                }
            };

            if errors.retryable(status, &text) {
                if attempt < max_attempts {
                    let wait = backoff_delay(&self.settings, attempt - 1, retry_after);
                    tracing::warn!(provider = self.provider, %url, status, attempt, ?wait, "retryable error, retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                let detail = errors.detail(status, &text);
                let provider = self.provider.to_string();
                return Err(match status {
                    429 | 503 | 529 => ProviderError::Overloaded {
                        provider,
                        status,
                        attempts: attempt,
                        detail,
                    },
                    _ => ProviderError::Api {
                        provider,
                        status,
                        detail: format!("{detail} (gave up after {attempt} attempts)"),
                    },
                });
            }

            return Err(errors.classify(status, &text, model));
        }
    }
}

/// How a streamed request ended.
pub(crate) enum Streamed {
    /// With the API's last event.
    Ended,
    /// The connection closed cleanly before such an event.
    Stopped,
    /// The server answered with one JSON body instead of a stream.
    Whole(Value),
}

/// One server-sent event: its `event:` name (empty when it had none) and
/// its `data:` lines joined by newlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Cuts a byte stream into [`SseEvent`]s (the `text/event-stream` format:
/// `field: value` lines, an event ends at a blank line; `:` comments and
/// `id`/`retry` fields are ignored). Lines may end in LF or CRLF.
#[derive(Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    event: String,
    data: Vec<String>,
}

impl SseParser {
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.line_done(&String::from_utf8_lossy(&line), &mut out);
            } else {
                self.line.push(b);
            }
        }
        out
    }

    /// The event left when the stream ends without a final blank line.
    pub(crate) fn finish(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&String::from_utf8_lossy(&line), &mut out);
        }
        self.line_done("", &mut out);
        out
    }

    fn line_done(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if !self.data.is_empty() {
                out.push(SseEvent { event: std::mem::take(&mut self.event), data: self.data.join("\n") });
                self.data.clear();
            }
            self.event.clear();
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = value.to_string(),
            "data" => self.data.push(value.to_string()),
            _ => {}
        }
    }
}

fn describe_reqwest_error(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let kind = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "error reading the response body"
    } else if e.is_request() {
        "request failed"
    } else {
        "HTTP error"
    };
    // The deepest cause is the informative one ("Connection refused (os error 111)").
    let mut root: Option<String> = None;
    let mut src = e.source();
    while let Some(s) = src {
        root = Some(s.to_string());
        src = s.source();
    }
    match root {
        Some(root) => format!("{kind}: {root}"),
        None => kind.to_string(),
    }
}

/// Reads an API key from `var`: `Ok(None)` when unset/empty and optional,
/// `MissingApiKey` naming the variable when required.
pub(crate) fn read_api_key(var: &str, required: bool) -> Result<Option<String>, ProviderError> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
        _ if required => Err(ProviderError::MissingApiKey {
            var: var.to_string(),
        }),
        _ => Ok(None),
    }
}

/// Strips trailing slashes so `{base}/path` joins cleanly.
pub(crate) fn normalize_base(base: &str) -> String {
    base.trim().trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_across_chunks_crlf_comments_and_multiline_data() {
        let mut p = SseParser::default();
        let mut evs = p.push(b"event: message_start\r\ndata: {\"a\"");
        assert!(evs.is_empty());
        evs.extend(p.push(b":1}\r\n\r\n: keep-alive\n\ndata: x\ndata: y\n\ndata: [DONE]"));
        evs.extend(p.finish());
        assert_eq!(
            evs,
            [
                SseEvent { event: "message_start".into(), data: "{\"a\":1}".into() },
                SseEvent { event: String::new(), data: "x\ny".into() },
                SseEvent { event: String::new(), data: "[DONE]".into() },
            ]
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let s = HttpSettings {
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_millis(1000),
            ..HttpSettings::default()
        };
        for retry in 0..10 {
            let d = backoff_delay(&s, retry, None);
            let exp =
                (Duration::from_millis(100) * 2u32.pow(retry)).min(Duration::from_millis(1000));
            assert!(d >= exp / 2 && d <= exp, "retry {retry}: {d:?} vs {exp:?}");
        }
        assert_eq!(
            backoff_delay(&s, 0, Some(Duration::from_secs(60))),
            Duration::from_millis(1000)
        );
        assert_eq!(
            backoff_delay(&s, 0, Some(Duration::from_millis(200))),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn retry_after_parsing() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn retryable_statuses() {
        for s in [429, 500, 502, 503, 504, 529] {
            assert!(is_retryable(s));
        }
        for s in [400, 401, 403, 404, 422, 501] {
            assert!(!is_retryable(s));
        }
    }
}
