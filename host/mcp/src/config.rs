//! `[mcp.servers.NAME]`: how one MCP server is reached, and the checks
//! that turn a table of `aos.toml` into something that can be started.
//!
//! ```toml
//! [mcp.servers.everything]
//! command = "npx"
//! args = ["-y", "@modelcontextprotocol/server-everything"]
//! host = true              # run directly on the host (announced; required for stdio today)
//! call_timeout_secs = 30   # deadline of one tool call
//! ```
//!
//! ```toml
//! [mcp.servers.search]
//! url = "https://mcp.example.com/mcp"   # streamable HTTP
//! token_env = "SEARCH_MCP_TOKEN"        # bearer token, read from the kernel's environment
//! ```
//!
//! A stdio server (`command`) is a program outside the Wasm sandbox. Its
//! sandbox container is not built yet, so today a stdio server runs only
//! with an explicit `host = true`, and never silently on the host.
//! A streamable-HTTP server (`url`) is reached by the kernel under the
//! `[net]` address policy of `NET_FETCH`, and its tools are granted only to
//! processes that hold `net:HOST` (or `net`) for its host as well as
//! `mcp:NAME`. Its token is never sent in clear text to another machine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default deadline of one tool call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The default deadline of a server's start: spawn, `initialize`, `tools/list`.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);

/// One `[mcp.servers.NAME]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// stdio: the program to run (found on `PATH`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// stdio: its arguments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// stdio: environment variables set for it (the rest of the kernel's
    /// environment is not passed on, apart from `PATH` and `HOME`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// stdio: names of the kernel's environment variables passed on as they
    /// are (secrets stay in the operator's environment, never in the config
    /// or in front of a model).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<String>,
    /// stdio: working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Streamable HTTP: the server's URL (e.g. `https://mcp.example.com/mcp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Streamable HTTP: the environment variable holding the bearer token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// stdio: run the program directly on the host, with the kernel's user
    /// and network, outside any sandbox. Announced at start and in
    /// `aos mcp ls`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub host: bool,
    /// The deadline of one tool call, in seconds (default 30).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_timeout_secs: Option<f64>,
    /// The deadline of a start (spawn, initialise, list the tools), in seconds (default 30).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_timeout_secs: Option<f64>,
}

/// `[mcp]`: the configured servers, by name, and what `aos mcp serve` allows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    pub servers: BTreeMap<String, ServerConfig>,
    /// `[mcp.serve]`: AgentOS as an MCP server (`aos mcp serve`).
    #[serde(skip_serializing_if = "ServeConfig::is_unset")]
    pub serve: ServeConfig,
}

/// `[mcp.serve]`: the limits of `aos mcp serve`, which lets MCP hosts spawn
/// and drive agents.
///
/// ```toml
/// [mcp.serve]
/// max_grants = ["fs:rw", "timers", "ipc", "net"]  # the most an MCP-spawned agent may get
/// allow_remote = false                            # `--http` on a non-loopback address
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// The ceiling of the rights an agent spawned over MCP may be granted
    /// (capability names, as `--grant`). Unset: `default_grants`, the
    /// rights of a plain `aos spawn`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_grants: Option<Vec<String>>,
    /// Let `aos mcp serve --http` listen on an address other than loopback
    /// (the bearer token is still required).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_remote: bool,
}

impl ServeConfig {
    /// Nothing set (then `[mcp.serve]` is left out of a shown config).
    pub fn is_unset(&self) -> bool {
        self == &ServeConfig::default()
    }
}

/// How a server is reached, once its table was checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// A program speaking MCP on its stdin/stdout, run on the host.
    StdioOnHost { command: String, args: Vec<String>, env: BTreeMap<String, String>, cwd: Option<PathBuf> },
    /// A server speaking streamable HTTP at `url` (`host` and `port` taken
    /// from it), with the bearer token read from `token_env`.
    Http { url: String, host: String, port: u16, token: Option<String> },
}

impl Transport {
    /// The host a streamable-HTTP server is reached at (the `net:HOST` a
    /// process needs for its tools); `None` for stdio.
    pub fn http_host(&self) -> Option<&str> {
        match self {
            Transport::Http { host, .. } => Some(host),
            Transport::StdioOnHost { .. } => None,
        }
    }
}

/// A server table that cannot be used, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid MCP server name `{0}`: use 1-32 characters of a-z, 0-9, - and _")]
    BadName(String),
    #[error("[mcp.servers.{0}] needs either `command` (a stdio server) or `url` (a streamable-HTTP server)")]
    NoTransport(String),
    #[error("[mcp.servers.{0}] has both `command` and `url`; a server is either stdio or streamable HTTP")]
    BothTransports(String),
    #[error(
        "[mcp.servers.{name}] is a stdio server, and stdio MCP servers cannot run in a sandbox container yet \
         (not built in this version); to run `{command}` directly on the host, with the kernel's user, files and \
         network, set `host = true` in [mcp.servers.{name}] (or `aos mcp add {name} --host -- ...`)"
    )]
    SandboxNotAvailable { name: String, command: String },
    #[error("[mcp.servers.{name}]: `url = \"{url}\"` is not a usable server URL: {why}")]
    BadUrl { name: String, url: String, why: String },
    #[error(
        "[mcp.servers.{name}]: the token in ${var} would be sent in clear text to `{host}`; use an `https://` URL \
         (plain `http://` is accepted with a token only for loopback addresses)"
    )]
    ClearTextToken { name: String, var: String, host: String },
    #[error("[mcp.servers.{name}]: `{key}` applies to {applies} servers only")]
    Misplaced { name: String, key: &'static str, applies: &'static str },
    #[error("[mcp.servers.{name}]: `{key}` must be a positive number of seconds")]
    BadTimeout { name: String, key: &'static str },
    #[error("[mcp.servers.{name}]: env_from names `{var}`, which is not set in the kernel's environment")]
    MissingEnv { name: String, var: String },
}

/// Whether `host` (as a URL writes it) is this machine: `localhost` or a
/// loopback address.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `name` is a valid server name (the rule of `mcp:NAME`).
pub fn valid_server_name(name: &str) -> bool {
    aos_abi::valid_mcp_server(name)
}

impl ServerConfig {
    /// A stdio server run on the host.
    pub fn stdio_on_host(command: impl Into<String>, args: Vec<String>) -> ServerConfig {
        ServerConfig { command: Some(command.into()), args, host: true, ..Default::default() }
    }

    /// The deadline of one call.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout_secs.map(Duration::from_secs_f64).unwrap_or(DEFAULT_CALL_TIMEOUT)
    }

    /// The deadline of a start.
    pub fn start_timeout(&self) -> Duration {
        self.start_timeout_secs.map(Duration::from_secs_f64).unwrap_or(DEFAULT_START_TIMEOUT)
    }

    /// How the server `name` is reached, or why its table cannot be used.
    /// `env` reads the kernel's environment (for `env_from`).
    pub fn transport(&self, name: &str, env: impl Fn(&str) -> Option<String>) -> Result<Transport, ConfigError> {
        if !valid_server_name(name) {
            return Err(ConfigError::BadName(name.to_string()));
        }
        for (key, v) in [("call_timeout_secs", self.call_timeout_secs), ("start_timeout_secs", self.start_timeout_secs)] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0 && v < 1e7) {
                    return Err(ConfigError::BadTimeout { name: name.to_string(), key });
                }
            }
        }
        match (&self.command, &self.url) {
            (None, None) => Err(ConfigError::NoTransport(name.to_string())),
            (Some(_), Some(_)) => Err(ConfigError::BothTransports(name.to_string())),
            (None, Some(_)) => {
                let stdio_only: [(&'static str, bool); 5] = [
                    ("args", !self.args.is_empty()),
                    ("env", !self.env.is_empty()),
                    ("env_from", !self.env_from.is_empty()),
                    ("cwd", self.cwd.is_some()),
                    ("host", self.host),
                ];
                if let Some((key, _)) = stdio_only.iter().find(|(_, set)| *set) {
                    return Err(ConfigError::Misplaced { name: name.to_string(), key, applies: "stdio (`command`)" });
                }
                self.http_transport(name, &env)
            }
            (Some(command), None) => {
                if self.token_env.is_some() {
                    return Err(ConfigError::Misplaced {
                        name: name.to_string(),
                        key: "token_env",
                        applies: "streamable-HTTP (`url`)",
                    });
                }
                if !self.host {
                    return Err(ConfigError::SandboxNotAvailable { name: name.to_string(), command: command.clone() });
                }
                let mut vars = BTreeMap::new();
                for var in ["PATH", "HOME"] {
                    if let Some(v) = env(var) {
                        vars.insert(var.to_string(), v);
                    }
                }
                for var in &self.env_from {
                    let v = env(var).ok_or_else(|| ConfigError::MissingEnv { name: name.to_string(), var: var.clone() })?;
                    vars.insert(var.clone(), v);
                }
                vars.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
                Ok(Transport::StdioOnHost { command: command.clone(), args: self.args.clone(), env: vars, cwd: self.cwd.clone() })
            }
        }
    }

    fn http_transport(&self, name: &str, env: &impl Fn(&str) -> Option<String>) -> Result<Transport, ConfigError> {
        let raw = self.url.clone().unwrap_or_default();
        let bad = |why: &str| ConfigError::BadUrl { name: name.to_string(), url: raw.clone(), why: why.to_string() };
        let url = reqwest::Url::parse(&raw).map_err(|e| bad(&e.to_string()))?;
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(bad("use an `http://` or `https://` URL (e.g. https://mcp.example.com/mcp)")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("credentials in the URL are not sent; put the token in an environment variable named by `token_env`"));
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("it names no host"))?.to_string();
        let port = url.port_or_known_default().unwrap_or(if https { 443 } else { 80 });
        let token = match &self.token_env {
            None => None,
            Some(var) => {
                let t = env(var).filter(|t| !t.is_empty()).ok_or_else(|| ConfigError::MissingEnv { name: name.to_string(), var: var.clone() })?;
                if !https && !is_loopback_host(&host) {
                    return Err(ConfigError::ClearTextToken { name: name.to_string(), var: var.clone(), host });
                }
                Some(t)
            }
        };
        Ok(Transport::Http { url: url.to_string(), host, port, token })
    }

    /// One line saying how the server runs (for `aos mcp ls` and the start announcement).
    pub fn describe(&self) -> String {
        match (&self.command, &self.url) {
            (Some(c), _) => {
                let line = std::iter::once(c.as_str()).chain(self.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
                if self.host {
                    format!("stdio, ON THE HOST (no sandbox): {line}")
                } else {
                    format!("stdio, sandbox container (not available yet): {line}")
                }
            }
            (None, Some(u)) => match &self.token_env {
                Some(v) => format!("streamable HTTP: {u} (bearer token from ${v})"),
                None => format!("streamable HTTP: {u}"),
            },
            (None, None) => "(no command or url)".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn stdio_needs_host_true_and_says_why() {
        let mut c = ServerConfig { command: Some("npx".into()), ..Default::default() };
        let e = c.transport("everything", none).unwrap_err().to_string();
        assert!(e.contains("cannot run in a sandbox container yet") && e.contains("host = true"), "{e}");
        c.host = true;
        assert!(matches!(c.transport("everything", none), Ok(Transport::StdioOnHost { .. })));
    }

    #[test]
    fn bad_tables_are_refused_precisely() {
        let c = ServerConfig::stdio_on_host("x", vec![]);
        assert_eq!(c.transport("Bad/Name", none).unwrap_err(), ConfigError::BadName("Bad/Name".into()));
        assert!(matches!(ServerConfig::default().transport("a", none), Err(ConfigError::NoTransport(_))));
        let both = ServerConfig { command: Some("x".into()), url: Some("http://h/mcp".into()), ..Default::default() };
        assert!(matches!(both.transport("a", none), Err(ConfigError::BothTransports(_))));
        let http = ServerConfig { url: Some("ftp://h/mcp".into()), ..Default::default() };
        assert!(matches!(http.transport("a", none), Err(ConfigError::BadUrl { .. })));
        let zero = ServerConfig { call_timeout_secs: Some(0.0), ..ServerConfig::stdio_on_host("x", vec![]) };
        assert!(matches!(zero.transport("a", none), Err(ConfigError::BadTimeout { .. })));
        let missing = ServerConfig { env_from: vec!["TOKEN".into()], ..ServerConfig::stdio_on_host("x", vec![]) };
        assert!(matches!(missing.transport("a", none), Err(ConfigError::MissingEnv { .. })));
    }

    #[test]
    fn only_path_home_and_named_variables_reach_the_server() {
        let c = ServerConfig {
            env_from: vec!["TOKEN".into()],
            env: [("MODE".to_string(), "x".to_string())].into(),
            ..ServerConfig::stdio_on_host("x", vec![])
        };
        let env = |k: &str| match k {
            "PATH" => Some("/bin".to_string()),
            "TOKEN" => Some("s3cret".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("no".to_string()),
            _ => None,
        };
        let Ok(Transport::StdioOnHost { env: vars, .. }) = c.transport("a", env) else { panic!("not stdio") };
        assert_eq!(vars.keys().cloned().collect::<Vec<_>>(), ["MODE", "PATH", "TOKEN"]);
    }

    #[test]
    fn http_servers_take_host_port_and_token_and_never_send_a_token_in_clear_text() {
        let env = |k: &str| (k == "TOK").then(|| "s3cret".to_string());
        let c = |url: &str, token: bool| ServerConfig {
            url: Some(url.into()),
            token_env: token.then(|| "TOK".to_string()),
            ..Default::default()
        };
        let t = c("https://mcp.example.com/mcp", true).transport("s", env).unwrap();
        assert_eq!(
            t,
            Transport::Http { url: "https://mcp.example.com/mcp".into(), host: "mcp.example.com".into(), port: 443, token: Some("s3cret".into()) }
        );
        assert_eq!(t.http_host(), Some("mcp.example.com"));
        let t = c("http://127.0.0.1:8123/mcp", true).transport("s", env).unwrap();
        assert!(matches!(t, Transport::Http { port: 8123, .. }));
        let e = c("http://mcp.example.com/mcp", true).transport("s", env).unwrap_err();
        assert!(matches!(e, ConfigError::ClearTextToken { .. }), "{e}");
        assert!(e.to_string().contains("https://"), "{e}");
        assert!(c("http://mcp.example.com/mcp", false).transport("s", env).is_ok());
        let missing = ServerConfig { token_env: Some("NOPE".into()), ..c("https://h/mcp", false) };
        assert!(matches!(missing.transport("s", env), Err(ConfigError::MissingEnv { .. })));
        let e = c("https://user:pw@h/mcp", false).transport("s", env).unwrap_err().to_string();
        assert!(e.contains("token_env"), "{e}");
        let host = ServerConfig { host: true, ..c("https://h/mcp", false) };
        assert!(matches!(host.transport("s", env), Err(ConfigError::Misplaced { key: "host", .. })));
    }
}
