//! `[mcp.servers.NAME]`: how one MCP server is reached, and the checks
//! that turn a table of `aos.toml` into something that can be started.
//!
//! ```toml
//! [mcp.servers.everything]       # stdio, in a sandbox container (the default)
//! command = "node"               # found on the sandbox image's PATH (Node.js 18, Python 3)
//! args = ["/opt/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js", "stdio"]
//! mounts = [{ host = "/home/me/.cache/aos/mcp-node", container = "/opt/mcp" }]  # read-only unless writable = true
//! network = false                # true: Docker's bridge network (the operator's grant)
//! call_timeout_secs = 30         # deadline of one tool call
//!
//! [mcp.servers.local-tool]
//! command = "/usr/local/bin/my-mcp-server"
//! host = true                    # run directly on the host (announced at start and in `aos mcp ls`)
//! ```
//!
//! ```toml
//! [mcp.servers.search]
//! url = "https://mcp.example.com/mcp"   # streamable HTTP
//! token_env = "SEARCH_MCP_TOKEN"        # bearer token, read from the kernel's environment
//! ```
//!
//! A stdio server (`command`) is a program outside the Wasm sandbox. By
//! default it runs in a container of the sandbox image (`[sandbox] image`,
//! the one `EXEC_CMD` uses; `aos_sandbox::stdio`), locked down like
//! `EXEC_CMD`'s: no network unless `network = true`, no host files but the
//! `mounts` it names (read-only unless `writable = true`), a read-only root
//! filesystem, a non-root user, memory/pids/CPU limits, no capabilities.
//! `aos.toml` is written by the operator, so `network = true` and each mount
//! are the operator's grants; an agent cannot change them. Its environment is
//! `env` and `env_from` only (plus `HOME=/tmp`; the image supplies `PATH`).
//! Running a server directly on the host takes an explicit `host = true`
//! (then it gets `PATH`, `HOME` and what `env`/`env_from` name), announced
//! at start and in `aos mcp ls`; never silently.
//! A streamable-HTTP server (`url`) is reached by the kernel under the
//! `[net]` address policy of `NET_FETCH`, and its tools are granted only to
//! processes that hold `net:HOST` (or `net`) for its host as well as
//! `mcp:NAME`. Its token is never sent in clear text to another machine.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
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
    /// stdio: the program to run (found on the sandbox image's `PATH` in a
    /// container, on the kernel's `PATH` with `host = true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// stdio: its arguments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// stdio: environment variables set for it (the rest of the kernel's
    /// environment is not passed on, apart from `PATH` and `HOME` to a
    /// server on the host).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// stdio: names of the kernel's environment variables passed on as they
    /// are (secrets stay in the operator's environment, never in the config
    /// or in front of a model).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<String>,
    /// stdio: working directory (in the container: an absolute path there,
    /// default `/tmp`).
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
    /// `aos mcp ls`. Without it a stdio server runs in a sandbox container.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub host: bool,
    /// stdio in a container: attach it to Docker's default bridge network
    /// (else it has no network at all). The operator's grant: `aos.toml`
    /// is theirs, never an agent's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub network: bool,
    /// stdio in a container: the host paths it sees (nothing else of the
    /// host's files), checked when the config is loaded.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountConfig>,
    /// The deadline of one tool call, in seconds (default 30).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_timeout_secs: Option<f64>,
    /// The deadline of a start (spawn, initialise, list the tools), in seconds (default 30).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_timeout_secs: Option<f64>,
}

/// One entry of `mounts`: `{ host = "/srv/docs", container = "/docs", writable = false }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountConfig {
    /// An absolute path on the host that exists.
    pub host: PathBuf,
    /// Where it appears in the container (absolute; default: the same path as `host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<PathBuf>,
    /// Mounted read-write (default: read-only). The container's user (uid
    /// 1000, or `[sandbox] user`) needs the host permissions to write.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub writable: bool,
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
    /// A program speaking MCP on its stdin/stdout, run in a container of the
    /// sandbox image: `env` is its whole environment (besides `HOME`),
    /// `mounts` the only host paths it sees (checked), `network` whether it
    /// is on Docker's bridge network.
    StdioInContainer {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<PathBuf>,
        mounts: Vec<aos_sandbox::BindMount>,
        network: bool,
    },
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
            Transport::StdioOnHost { .. } | Transport::StdioInContainer { .. } => None,
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
        "[mcp.servers.{name}]: mount `{path}` cannot be used: {why} (write mounts = [{{ host = \"/abs/host/path\", \
         container = \"/abs/path/inside\" }}])"
    )]
    BadMount { name: String, path: String, why: String },
    #[error("[mcp.servers.{name}]: `cwd = \"{path}\"` must be an absolute path inside the container (e.g. /tmp)")]
    BadCwd { name: String, path: String },
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
    #[error("the sandbox of stdio MCP servers cannot be used: {0} ([sandbox] docker_host or $DOCKER_HOST)")]
    Sandbox(String),
    #[error("[mcp.servers.{name}]: env_from names `{var}`, which is not set in the kernel's environment")]
    MissingEnv { name: String, var: String },
}

/// Whether `p` is absolute and has no `.` or `..` component.
fn is_clean_absolute(p: &Path) -> bool {
    p.is_absolute() && p.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
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
                let stdio_only: [(&'static str, bool); 7] = [
                    ("args", !self.args.is_empty()),
                    ("env", !self.env.is_empty()),
                    ("env_from", !self.env_from.is_empty()),
                    ("cwd", self.cwd.is_some()),
                    ("host", self.host),
                    ("network", self.network),
                    ("mounts", !self.mounts.is_empty()),
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
                let mut vars = BTreeMap::new();
                if self.host {
                    for var in ["PATH", "HOME"] {
                        if let Some(v) = env(var) {
                            vars.insert(var.to_string(), v);
                        }
                    }
                }
                for var in &self.env_from {
                    let v = env(var).ok_or_else(|| ConfigError::MissingEnv { name: name.to_string(), var: var.clone() })?;
                    vars.insert(var.clone(), v);
                }
                vars.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
                if self.host {
                    for (key, set) in [("network", self.network), ("mounts", !self.mounts.is_empty())] {
                        if set {
                            return Err(ConfigError::Misplaced {
                                name: name.to_string(),
                                key,
                                applies: "sandboxed stdio (without `host = true`)",
                            });
                        }
                    }
                    return Ok(Transport::StdioOnHost {
                        command: command.clone(),
                        args: self.args.clone(),
                        env: vars,
                        cwd: self.cwd.clone(),
                    });
                }
                if let Some(cwd) = &self.cwd {
                    if !is_clean_absolute(cwd) {
                        return Err(ConfigError::BadCwd { name: name.to_string(), path: cwd.display().to_string() });
                    }
                }
                Ok(Transport::StdioInContainer {
                    command: command.clone(),
                    args: self.args.clone(),
                    env: vars,
                    cwd: self.cwd.clone(),
                    mounts: self.checked_mounts(name)?,
                    network: self.network,
                })
            }
        }
    }

    /// The mounts, checked: absolute host paths that exist (symbolic links
    /// resolved), absolute container paths without `.`/`..`, not `/` nor
    /// `/tmp` nor under `/proc`, `/sys` or `/dev`, no container path twice.
    fn checked_mounts(&self, name: &str) -> Result<Vec<aos_sandbox::BindMount>, ConfigError> {
        let mut out: Vec<aos_sandbox::BindMount> = Vec::new();
        for m in &self.mounts {
            let bad = |why: &str| ConfigError::BadMount { name: name.to_string(), path: m.host.display().to_string(), why: why.to_string() };
            if !m.host.is_absolute() {
                return Err(bad("`host` must be an absolute path"));
            }
            let host = std::fs::canonicalize(&m.host).map_err(|e| bad(&format!("`host` does not exist on this machine ({e})")))?;
            let container = m.container.clone().unwrap_or_else(|| m.host.clone());
            if !is_clean_absolute(&container) {
                return Err(bad(&format!("`container = \"{}\"` must be an absolute path without `.` or `..`", container.display())));
            }
            let reserved = [Path::new("/proc"), Path::new("/sys"), Path::new("/dev")];
            if container == Path::new("/") || container == Path::new("/tmp") || reserved.iter().any(|r| container.starts_with(r)) {
                return Err(bad(&format!(
                    "`container = \"{}\"` would hide the container's own `/`, `/tmp`, `/proc`, `/sys` or `/dev`",
                    container.display()
                )));
            }
            if out.iter().any(|o| o.container == container) {
                return Err(bad(&format!("`{}` is mounted twice in the container", container.display())));
            }
            out.push(aos_sandbox::BindMount { host, container, writable: m.writable });
        }
        Ok(out)
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

    /// One line saying how the server runs (for `aos mcp ls` and the start
    /// announcement), with the default sandbox image; see [`ServerConfig::describe_in`].
    pub fn describe(&self) -> String {
        self.describe_in(aos_sandbox::docker::DEFAULT_IMAGE)
    }

    /// One line saying how the server runs: on the host, or in a container
    /// of `image` with its network and mounts; or its URL.
    pub fn describe_in(&self, image: &str) -> String {
        match (&self.command, &self.url) {
            (Some(c), _) => {
                let line = std::iter::once(c.as_str()).chain(self.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
                if self.host {
                    format!("stdio, ON THE HOST (no sandbox): {line}")
                } else {
                    let net = if self.network { "network: bridge (granted in aos.toml)" } else { "network: none" };
                    let mounts = if self.mounts.is_empty() {
                        "mounts: none".to_string()
                    } else {
                        let each: Vec<String> = self
                            .mounts
                            .iter()
                            .map(|m| {
                                let to = m.container.as_ref().unwrap_or(&m.host);
                                format!("{} -> {} ({})", m.host.display(), to.display(), if m.writable { "rw" } else { "ro" })
                            })
                            .collect();
                        format!("mounts: {}", each.join(", "))
                    };
                    format!("stdio, sandbox container (image {image}, {net}, {mounts}): {line}")
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
    fn stdio_runs_in_a_container_unless_host_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ServerConfig {
            command: Some("node".into()),
            env_from: vec!["TOKEN".into()],
            env: [("MODE".to_string(), "x".to_string())].into(),
            mounts: vec![MountConfig { host: dir.path().to_path_buf(), container: Some("/opt/mcp".into()), writable: false }],
            ..Default::default()
        };
        let env = |k: &str| match k {
            "PATH" => Some("/host/bin".to_string()),
            "HOME" => Some("/root".to_string()),
            "TOKEN" => Some("s3cret".to_string()),
            _ => None,
        };
        let Ok(Transport::StdioInContainer { env: vars, mounts, network, .. }) = c.transport("everything", env) else {
            panic!("not in a container: {:?}", c.transport("everything", env))
        };
        // Nothing of the kernel's environment but what the table names (no PATH, no HOME).
        assert_eq!(vars.keys().cloned().collect::<Vec<_>>(), ["MODE", "TOKEN"]);
        assert_eq!(mounts, [aos_sandbox::BindMount { host: dir.path().canonicalize().unwrap(), container: "/opt/mcp".into(), writable: false }]);
        assert!(!network);
        let d = c.describe_in("img:1");
        assert!(d.contains("sandbox container (image img:1, network: none, mounts: ") && d.contains("-> /opt/mcp (ro)"), "{d}");
        // On the host: no mounts or network settings (they would mean nothing there).
        c.host = true;
        let e = c.transport("everything", env).unwrap_err();
        assert!(matches!(e, ConfigError::Misplaced { key: "mounts", .. }), "{e}");
        c.mounts.clear();
        assert!(matches!(c.transport("everything", env), Ok(Transport::StdioOnHost { .. })));
        assert!(c.describe().contains("ON THE HOST"));
        c.network = true;
        assert!(matches!(c.transport("everything", env), Err(ConfigError::Misplaced { key: "network", .. })));
        c.host = false;
        assert!(matches!(c.transport("everything", env), Ok(Transport::StdioInContainer { network: true, .. })));
        assert!(c.describe().contains("network: bridge"), "{}", c.describe());
    }

    #[test]
    fn mounts_and_cwd_are_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().to_path_buf();
        let with = |m: Vec<MountConfig>| ServerConfig { command: Some("node".into()), mounts: m, ..Default::default() };
        let m = |h: &std::path::Path, c: Option<&str>| MountConfig { host: h.to_path_buf(), container: c.map(PathBuf::from), writable: false };
        let err = |c: ServerConfig| c.transport("s", none).unwrap_err().to_string();
        assert!(err(with(vec![m(std::path::Path::new("rel/dir"), None)])).contains("absolute"));
        assert!(err(with(vec![m(&host.join("missing"), None)])).contains("does not exist"));
        for bad in ["relative", "/a/../etc", "/", "/tmp", "/proc/1", "/dev"] {
            let e = err(with(vec![m(&host, Some(bad))]));
            assert!(e.contains(&format!("mount `{}`", host.display())), "{bad}: {e}");
        }
        assert!(err(with(vec![m(&host, Some("/x")), m(&host, Some("/x"))])).contains("mounted twice"));
        // The default container path is the host path.
        let Ok(Transport::StdioInContainer { mounts, .. }) = with(vec![m(&host, None)]).transport("s", none) else { panic!() };
        assert_eq!(mounts[0].container, host);
        let cwd = ServerConfig { cwd: Some("work".into()), ..with(vec![]) };
        assert!(matches!(cwd.transport("s", none), Err(ConfigError::BadCwd { .. })));
        // From TOML, `writable` defaults to false and unknown keys are refused.
        let t: ServerConfig = toml_like(&format!(r#"{{"command":"x","mounts":[{{"host":"{}"}}]}}"#, host.display()));
        assert!(!t.mounts[0].writable);
        assert!(serde_json::from_str::<ServerConfig>(r#"{"command":"x","mounts":[{"host":"/","read_only":true}]}"#).is_err());
    }

    fn toml_like(json: &str) -> ServerConfig {
        serde_json::from_str(json).unwrap()
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
