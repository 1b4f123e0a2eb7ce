//! Test fixture: a driver that sends whatever HTTP request it is told to
//! (any method, any URL) through `wasi:http`, to show that the host's
//! network policy — not the driver — decides what goes out. Never built
//! into the kernel.

use aos_guest_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
pub struct RawArgs {
    pub method: String,
    /// `http://host[:port]/path`
    pub url: String,
}

#[cfg(target_os = "wasi")]
fn send(a: RawArgs) -> SyscallResult<Value> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};
    let rest = a.url.strip_prefix("http://").ok_or_else(|| SyscallError::InvalidArguments("http:// only".into()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    let method = match a.method.as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        other => Method::Other(other.to_string()),
    };
    let _ = req.set_method(&method);
    let _ = req.set_scheme(Some(&Scheme::Http));
    let _ = req.set_authority(Some(authority));
    let _ = req.set_path_with_query(Some(path));
    let fut = outgoing_handler::handle(req, None).map_err(|e| SyscallError::Io(format!("{e:?}")))?;
    fut.subscribe().block();
    match fut.get() {
        Some(Ok(Ok(resp))) => Ok(json!({ "status": resp.status() })),
        Some(Ok(Err(code))) => Err(SyscallError::Io(format!("{code:?}"))),
        _ => Err(SyscallError::Internal("no response".into())),
    }
}

#[cfg(not(target_os = "wasi"))]
fn send(_a: RawArgs) -> SyscallResult<Value> {
    Err(SyscallError::Internal("wasm only".into()))
}

pub struct RawHttp;

impl Driver for RawHttp {
    fn router() -> Router {
        Router::new().syscall("RAW_HTTP", "Send an HTTP request with any method.", send)
    }
}

aos_guest_sdk::export_driver!(RawHttp);
