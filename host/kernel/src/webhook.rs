//! Webhooks: the kernel's registry of HTTP routes owned by processes
//! (`SYS_REGISTER_WEBHOOK`), the authentication of an incoming request
//! against the route's secret, its delivery to the owning process as an
//! `[EVENT]`, and the pending requests waiting for `SYS_WEBHOOK_REPLY`.
//!
//! The kernel does not listen on any socket: a front end (the daemon) turns
//! an HTTP request into a [`WebhookRequest`] and calls
//! [`crate::Kernel::webhook_deliver`], which authenticates it, wakes the
//! process and waits (up to a timeout) for the process's reply.
//!
//! A request is accepted when it is signed with the route's secret:
//! `X-AOS-Timestamp: UNIX_SECONDS` and `X-AOS-Signature: sha256=HEX`, the
//! HMAC-SHA256 of `TIMESTAMP + "." + body` keyed by the secret (compared in
//! constant time). The timestamp must be within [`WebhookAuth::tolerance`]
//! of the kernel's clock, and each signature is accepted once (signatures
//! are remembered until their timestamp leaves the window), so a captured
//! request cannot be replayed, late or soon. The plain header
//! `X-AOS-Secret: SECRET` proves neither freshness nor the body: it is
//! refused unless the operator allows it ([`WebhookAuth::allow_secret_header`]).
//! Routes and pending requests of a process are dropped when it ends.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use crate::process::Pid;

/// Header carrying the plain secret.
pub const SECRET_HEADER: &str = "x-aos-secret";
/// Header carrying `sha256=HEX`, the HMAC-SHA256 of `TIMESTAMP + "." + body` keyed by the secret.
pub const SIGNATURE_HEADER: &str = "x-aos-signature";
/// Header carrying the time of signing, in Unix seconds (part of the signed text).
pub const TIMESTAMP_HEADER: &str = "x-aos-timestamp";

/// How webhook requests are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAuth {
    /// How far `X-AOS-Timestamp` may be from the kernel's clock, either way.
    pub tolerance: Duration,
    /// Also accept the plain `X-AOS-Secret` header, which proves neither
    /// that a request is new nor that its body is the sender's.
    pub allow_secret_header: bool,
}

impl Default for WebhookAuth {
    fn default() -> Self {
        WebhookAuth { tolerance: Duration::from_secs(300), allow_secret_header: false }
    }
}

/// The signature headers of a request with `body` signed with `secret` at
/// `timestamp` (Unix seconds): what a caller sends.
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> [(String, String); 2] {
    let mut msg = format!("{timestamp}.").into_bytes();
    msg.extend_from_slice(body);
    [
        ("X-AOS-Timestamp".into(), timestamp.to_string()),
        ("X-AOS-Signature".into(), format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), &msg))),
    ]
}

/// Body bytes shown to the process as text (longer bodies are cut, with a note).
const CONTEXT_BODY_LIMIT: usize = 16 * 1024;
/// Longest registrable path.
const MAX_PATH_LEN: usize = 200;

/// An HTTP request for a registered path, as received by the front end.
#[derive(Debug, Clone, Default)]
pub struct WebhookRequest {
    pub method: String,
    /// The request path (without the query string).
    pub path: String,
    /// Header names are matched case-insensitively.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl WebhookRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A registered path (for `aos webhooks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredWebhook {
    pub path: String,
    pub pid: Pid,
    /// Where it is served (`None` while no listener is configured).
    pub url: Option<String>,
    pub secret: String,
}

/// The answer to a webhook request: the process's `SYS_WEBHOOK_REPLY`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookResponse {
    pub status: u16,
    pub body: String,
}

/// Why a webhook request was not answered by its process. Each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WebhookError {
    /// 404.
    #[error("no webhook is registered at {0}")]
    NotFound(String),
    /// 401.
    #[error(
        "missing webhook signature: send X-AOS-Timestamp: UNIX_SECONDS and \
         X-AOS-Signature: sha256=HEX(HMAC-SHA256(secret, TIMESTAMP + \".\" + body))"
    )]
    MissingSecret,
    /// 401.
    #[error(
        "X-AOS-Signature needs X-AOS-Timestamp: the Unix time in seconds at which you signed, which is part of \
         the signed text (HMAC-SHA256(secret, TIMESTAMP + \".\" + body))"
    )]
    MissingTimestamp,
    /// 401.
    #[error(
        "X-AOS-Secret is not accepted here (a plain secret can be replayed and does not protect the body): sign \
         the request (X-AOS-Timestamp and X-AOS-Signature), or have the operator set \
         `[webhooks] allow_secret_header = true`"
    )]
    SecretHeaderRefused,
    /// 403.
    #[error("wrong webhook secret or signature")]
    WrongSecret,
    /// 403.
    #[error(
        "X-AOS-Timestamp is {skew_secs} s away from the kernel's clock, more than the {tolerance_secs} s allowed; \
         sign each request when you send it (and check the sender's clock)"
    )]
    Stale { skew_secs: u64, tolerance_secs: u64 },
    /// 403.
    #[error("this signature was already used: each signed request is accepted once; sign a retry anew, with the current X-AOS-Timestamp")]
    Replayed,
    /// 504.
    #[error("the process did not answer within {0:?} (SYS_WEBHOOK_REPLY); try again later")]
    Timeout(Duration),
    /// 503.
    #[error("process {0} that owns this webhook ended before answering")]
    ProcessEnded(Pid),
}

impl WebhookError {
    /// The HTTP status a front end should answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            WebhookError::NotFound(_) => 404,
            WebhookError::MissingSecret | WebhookError::MissingTimestamp | WebhookError::SecretHeaderRefused => 401,
            WebhookError::WrongSecret | WebhookError::Stale { .. } | WebhookError::Replayed => 403,
            WebhookError::Timeout(_) => 504,
            WebhookError::ProcessEnded(_) => 503,
        }
    }
}

struct Route {
    pid: Pid,
    secret: String,
}

struct Pending {
    pid: Pid,
    tx: oneshot::Sender<WebhookResponse>,
}

/// Routes (path → owner and secret) and requests waiting for a reply.
#[derive(Default)]
pub(crate) struct WebhookRegistry {
    routes: Mutex<HashMap<String, Route>>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_request: AtomicU64,
    /// `http://HOST:PORT` of the front end, when one serves the routes.
    base_url: RwLock<Option<String>>,
    auth: WebhookAuth,
    /// Signatures accepted and still inside the window.
    seen: Mutex<SeenSignatures>,
}

/// Signatures accepted, each until its timestamp leaves the window.
#[derive(Default)]
struct SeenSignatures {
    by_expiry: BTreeSet<(u64, String)>,
    set: HashSet<String>,
}

impl SeenSignatures {
    /// Records `sig` until `expires` (Unix seconds); false if it was already there.
    fn insert(&mut self, sig: &str, expires: u64, now: u64) -> bool {
        while let Some((at, old)) = self.by_expiry.first().cloned() {
            if at >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.set.remove(&old);
        }
        if !self.set.insert(sig.to_string()) {
            return false;
        }
        self.by_expiry.insert((expires, sig.to_string()));
        true
    }
}

/// Checks a path given to `SYS_REGISTER_WEBHOOK`.
pub fn validate_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("path `{path}` must start with '/', e.g. \"/github/push\""));
    }
    if path.len() < 2 || path.len() > MAX_PATH_LEN {
        return Err(format!("path `{path}` must be 2 to {MAX_PATH_LEN} characters long"));
    }
    if let Some(c) = path.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))) {
        return Err(format!("path `{path}` contains `{c}`; use only letters, digits, '/', '-', '_' and '.'"));
    }
    if path.split('/').any(|seg| seg == ".." || seg == ".") || path.contains("//") || path.ends_with('/') {
        return Err(format!("path `{path}` must not contain empty, `.` or `..` segments nor end with '/'"));
    }
    Ok(())
}

/// HMAC-SHA256 (RFC 2104) of `msg` keyed by `key`, as lower-case hex.
pub fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    hex::encode(outer.finalize())
}

fn new_secret() -> String {
    let mut buf = [0u8; 24];
    getrandom::getrandom(&mut buf).expect("the OS random number generator works");
    hex::encode(buf)
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl WebhookRegistry {
    pub fn new(auth: WebhookAuth) -> Self {
        WebhookRegistry { auth, ..Default::default() }
    }

    pub fn set_base_url(&self, url: Option<String>) {
        *self.base_url.write() = url;
    }

    pub fn base_url(&self) -> Option<String> {
        self.base_url.read().clone()
    }

    fn url(&self, path: &str) -> Option<String> {
        self.base_url().map(|b| format!("{}{path}", b.trim_end_matches('/')))
    }

    /// Registers `path` for `pid` with `secret` (a new one if `None`).
    /// Registering a path one already owns again returns it with its secret.
    pub fn register(&self, pid: Pid, path: &str, secret: Option<String>) -> Result<Value, String> {
        validate_path(path)?;
        let mut routes = self.routes.lock();
        let secret = match routes.get(path) {
            Some(r) if r.pid != pid => {
                return Err(format!(
                    "path {path} is already registered by process {}; choose another path",
                    r.pid
                ))
            }
            Some(r) => r.secret.clone(),
            None => {
                let s = secret.unwrap_or_else(new_secret);
                routes.insert(path.to_string(), Route { pid, secret: s.clone() });
                s
            }
        };
        Ok(json!({"url": self.url(path), "path": path, "secret": secret}))
    }

    /// Routes (path and secret) owned by `pid`, by path.
    pub fn routes_of(&self, pid: Pid) -> Vec<crate::events::WebhookRoute> {
        let mut v: Vec<crate::events::WebhookRoute> = self
            .routes
            .lock()
            .iter()
            .filter(|(_, r)| r.pid == pid)
            .map(|(p, r)| crate::events::WebhookRoute { path: p.clone(), secret: r.secret.clone() })
            .collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    /// Paths owned by `pid`.
    pub fn paths_of(&self, pid: Pid) -> Vec<String> {
        let mut v: Vec<String> =
            self.routes.lock().iter().filter(|(_, r)| r.pid == pid).map(|(p, _)| p.clone()).collect();
        v.sort();
        v
    }

    /// Every registered route, ordered by path.
    pub fn routes(&self) -> Vec<RegisteredWebhook> {
        let mut v: Vec<RegisteredWebhook> = self
            .routes
            .lock()
            .iter()
            .map(|(path, r)| RegisteredWebhook { path: path.clone(), pid: r.pid, url: self.url(path), secret: r.secret.clone() })
            .collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    /// Drops the routes and pending requests of `pid` (it ended): waiting
    /// callers get [`WebhookError::ProcessEnded`].
    pub fn forget(&self, pid: Pid) {
        self.routes.lock().retain(|_, r| r.pid != pid);
        self.pending.lock().retain(|_, p| p.pid != pid);
    }

    /// Authenticates `req` and registers it as pending; returns the owner,
    /// the request id, the receiver of the reply and the event text.
    pub fn accept(&self, req: &WebhookRequest) -> Result<(Pid, u64, oneshot::Receiver<WebhookResponse>, String), WebhookError> {
        let (pid, secret) = {
            let routes = self.routes.lock();
            let r = routes.get(&req.path).ok_or_else(|| WebhookError::NotFound(req.path.clone()))?;
            (r.pid, r.secret.clone())
        };
        match (req.header(SIGNATURE_HEADER), req.header(SECRET_HEADER)) {
            (Some(sig), _) => self.check_signature(req, &secret, sig)?,
            (None, Some(_)) if !self.auth.allow_secret_header => return Err(WebhookError::SecretHeaderRefused),
            (None, Some(s)) if ct_eq(s.trim(), &secret) => {}
            (None, Some(_)) => return Err(WebhookError::WrongSecret),
            (None, None) => return Err(WebhookError::MissingSecret),
        }
        let id = self.next_request.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, Pending { pid, tx });
        Ok((pid, id, rx, event_text(id, req)))
    }

    /// A signed request: the signature covers the timestamp and the body, the
    /// timestamp is within the tolerance, and the signature was not used before.
    fn check_signature(&self, req: &WebhookRequest, secret: &str, sig: &str) -> Result<(), WebhookError> {
        let ts = req.header(TIMESTAMP_HEADER).map(str::trim).ok_or(WebhookError::MissingTimestamp)?;
        let mut msg = Vec::with_capacity(ts.len() + 1 + req.body.len());
        msg.extend_from_slice(ts.as_bytes());
        msg.push(b'.');
        msg.extend_from_slice(&req.body);
        let want = hmac_sha256_hex(secret.as_bytes(), &msg);
        let got = sig.trim().strip_prefix("sha256=").unwrap_or("").to_ascii_lowercase();
        if !ct_eq(&got, &want) {
            return Err(WebhookError::WrongSecret);
        }
        // Signed by the secret's holder: now its time and its novelty.
        let ts: u64 = ts.parse().map_err(|_| WebhookError::MissingTimestamp)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let tolerance = self.auth.tolerance.as_secs();
        let skew = now.abs_diff(ts);
        if skew > tolerance {
            return Err(WebhookError::Stale { skew_secs: skew, tolerance_secs: tolerance });
        }
        if !self.seen.lock().insert(&want, ts.saturating_add(tolerance), now) {
            return Err(WebhookError::Replayed);
        }
        Ok(())
    }

    /// Forgets a request whose caller stopped waiting.
    pub fn expire(&self, id: u64) {
        self.pending.lock().remove(&id);
    }

    /// Answers request `id` on behalf of `pid` (`SYS_WEBHOOK_REPLY`).
    pub fn reply(&self, pid: Pid, id: u64, resp: WebhookResponse) -> Result<(), String> {
        let mut pending = self.pending.lock();
        match pending.get(&id) {
            Some(p) if p.pid == pid => {}
            Some(_) => return Err(format!("webhook request #{id} was delivered to another process, not to you")),
            None => {
                return Err(format!(
                    "unknown webhook request #{id}: it was already answered, its caller timed out or went away, \
                     or it never existed; answer only request ids from a `webhook request` [EVENT] you have not answered yet"
                ))
            }
        }
        let p = pending.remove(&id).expect("checked above");
        p.tx.send(resp).map_err(|_| format!("the caller of webhook request #{id} went away before the reply"))
    }
}

/// The `[EVENT]` text a process sees for a request.
fn event_text(id: u64, req: &WebhookRequest) -> String {
    let headers: serde_json::Map<String, Value> = req
        .headers
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            (k == "content-type" || k == "user-agent" || k.starts_with("x-"))
                && k != SECRET_HEADER
                && k != SIGNATURE_HEADER
                && k != TIMESTAMP_HEADER
        })
        .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.chars().take(200).collect())))
        .collect();
    let body = match std::str::from_utf8(&req.body) {
        Ok(t) if t.len() <= CONTEXT_BODY_LIMIT => Value::String(t.to_string()),
        Ok(t) => {
            let mut end = CONTEXT_BODY_LIMIT;
            while !t.is_char_boundary(end) {
                end -= 1;
            }
            Value::String(format!("{}… [cut: {} of {} bytes shown]", &t[..end], end, t.len()))
        }
        Err(_) => Value::String(format!(
            "[binary body: {} bytes, sha256 {}]",
            req.body.len(),
            hex::encode(Sha256::digest(&req.body))
        )),
    };
    let detail = json!({
        "request_id": id,
        "method": req.method,
        "path": req.path,
        "headers": headers,
        "body": body,
    });
    format!("webhook request #{id} (answer with SYS_WEBHOOK_REPLY): {detail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hmac_sha256_hex(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn paths_are_validated() {
        for ok in ["/a", "/github/push", "/x-1_2.json"] {
            assert!(validate_path(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/", "a", "/a/../b", "/a//b", "/a/", "/a b", "/a?x", "/./a", "/é"] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
    }
}
