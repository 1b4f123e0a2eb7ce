//! `aos mcp serve --http ADDR`: the MCP endpoint `/mcp` (streamable HTTP)
//! behind a bearer token, on a loopback address unless remote listening is
//! allowed. The token is `AOS_MCP_TOKEN`, else a new random one written to
//! `$AOS_HOME/mcp.token` (mode 0600), like the control API's token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::{AosMcp, ServeError};

/// The environment variable that sets the bearer token.
pub const TOKEN_VAR: &str = "AOS_MCP_TOKEN";

/// How `--http` listens.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub addr: SocketAddr,
    /// Listening beyond loopback was allowed (`--allow-remote`, `[mcp.serve] allow_remote`).
    pub allow_remote: bool,
    pub token: String,
}

/// Where the token came from, to tell the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Env,
    /// Generated and written to this file.
    File(PathBuf),
}

/// The bearer token: `env_token` (from [`TOKEN_VAR`]) when set and not
/// empty, else a new random one written to `$AOS_HOME/mcp.token` (0600).
pub fn token(env_token: Option<String>, home: &Path) -> Result<(String, TokenSource), ServeError> {
    if let Some(t) = env_token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) {
        return Ok((t, TokenSource::Env));
    }
    let token = aos_daemon::server::new_token().map_err(|e| ServeError::Token(format!("{e:#}")))?;
    let path = home.join("mcp.token");
    aos_daemon::server::write_private(&path, &format!("{token}\n")).map_err(|e| ServeError::Token(format!("{e:#}")))?;
    Ok((token, TokenSource::File(path)))
}

/// Refuses a non-loopback address unless remote listening was allowed.
pub fn check_addr(addr: SocketAddr, allow_remote: bool) -> Result<(), ServeError> {
    if addr.ip().is_loopback() || allow_remote {
        Ok(())
    } else {
        Err(ServeError::NotLoopback(addr))
    }
}

/// Whether `header` (the `Authorization` value) carries `token`, compared
/// in constant time.
pub fn authorized(header: Option<&str>, token: &str) -> bool {
    let given = header.and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).unwrap_or("");
    !token.is_empty() && aos_daemon::server::constant_time_eq(given.as_bytes(), token.as_bytes())
}

async fn require_token(
    axum::extract::State(token): axum::extract::State<Arc<str>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let header = req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !authorized(header, &token) {
        let body = format!(
            "{{\"error\": \"missing or wrong bearer token: send `Authorization: Bearer <token>` with the token of `aos mcp serve` \
             ({TOKEN_VAR}, or the file $AOS_HOME/mcp.token)\"}}"
        );
        return (
            StatusCode::UNAUTHORIZED,
            [(axum::http::header::CONTENT_TYPE, "application/json"), (axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            body,
        )
            .into_response();
    }
    next.run(req).await
}

/// Serves `server` at `http://ADDR/mcp` until the process is stopped
/// (SIGINT, SIGTERM). `ready` is told the bound address.
pub async fn serve(server: AosMcp, opts: HttpOptions, ready: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    check_addr(opts.addr, opts.allow_remote)?;
    let mut config = StreamableHttpServerConfig::default();
    if opts.allow_remote {
        // Any Host header: the operator chose to serve beyond loopback (the token still guards it).
        config = config.disable_allowed_hosts();
    }
    // Stopping also ends the open sessions' streams, so the graceful shutdown does not wait on them.
    let cancel = config.cancellation_token.clone();
    let service: StreamableHttpService<AosMcp, LocalSessionManager> =
        StreamableHttpService::new(move || Ok(server.clone()), Default::default(), config);
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(Arc::<str>::from(opts.token), require_token));
    let listener =
        tokio::net::TcpListener::bind(opts.addr).await.map_err(|e| ServeError::Bind(opts.addr, e.to_string()))?;
    let bound = listener.local_addr().map_err(|e| ServeError::Bind(opts.addr, e.to_string()))?;
    ready(bound);
    let stop = async move {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        cancel.cancel();
    };
    axum::serve(listener, app).with_graceful_shutdown(stop).await.map_err(|e| ServeError::Bind(bound, e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_bearer_token_passes() {
        let t = "0123abcd";
        assert!(authorized(Some("Bearer 0123abcd"), t));
        assert!(authorized(Some("Bearer 0123abcd "), t));
        for wrong in [None, Some(""), Some("Bearer"), Some("Bearer 0123abce"), Some("Bearer 0123abc"), Some("0123abcd"), Some("Basic 0123abcd")] {
            assert!(!authorized(wrong, t), "{wrong:?}");
        }
        assert!(!authorized(Some("Bearer "), ""), "an empty token never authorizes");
    }

    #[test]
    fn only_loopback_unless_allowed() {
        assert!(check_addr("127.0.0.1:7000".parse().unwrap(), false).is_ok());
        assert!(check_addr("[::1]:7000".parse().unwrap(), false).is_ok());
        let e = check_addr("0.0.0.0:7000".parse().unwrap(), false).unwrap_err().to_string();
        assert!(e.contains("on 0.0.0.0:7000: it is not a loopback address") && e.contains("--allow-remote"), "{e}");
        assert!(check_addr("0.0.0.0:7000".parse().unwrap(), true).is_ok());
    }

    #[test]
    fn the_token_comes_from_the_environment_or_a_new_private_file() {
        let home = tempfile::tempdir().unwrap();
        assert_eq!(token(Some(" abc ".into()), home.path()).unwrap(), ("abc".to_string(), TokenSource::Env));
        let (t, src) = token(Some(String::new()), home.path()).unwrap();
        let path = home.path().join("mcp.token");
        assert_eq!(src, TokenSource::File(path.clone()));
        assert_eq!(t.len(), 64);
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), t);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (t2, _) = token(None, home.path()).unwrap();
        assert_ne!(t, t2, "a new token each start");
    }
}
