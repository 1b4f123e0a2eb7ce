//! `aos mcp …`: add, list and remove the MCP servers of `aos.toml`
//! (`[mcp.servers.NAME]`), whose tools agents call as syscalls
//! (`MCP_SERVER_TOOL`, granted by `mcp:NAME` or `mcp:NAME/TOOL`); and
//! `aos mcp serve`, AgentOS itself as an MCP server (`aos_mcp_server`).

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use aos_daemon::config::{remove_mcp_server, set_mcp_server, Config};
use aos_mcp::{McpConfig, McpSource, ServerConfig};

#[derive(Debug, Subcommand)]
pub enum McpCmd {
    /// Add an MCP server: it is started once and its tools are listed; then it is written to aos.toml.
    #[command(after_help = "Examples:\n  \
        aos mcp add everything --mount ~/.cache/aos/mcp-node:/opt/mcp -- node /opt/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js stdio\n  \
        aos mcp add files --mount /srv/docs:/docs:rw -- node /opt/mcp/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js /docs\n  \
        aos mcp add local --host -- npx -y @modelcontextprotocol/server-everything\n  \
        aos mcp add search --url https://mcp.example.com/mcp --token-env SEARCH_MCP_TOKEN\n\
        A stdio server runs in a container of the sandbox image (Node.js 18, Python 3; no network, no host files\n\
but its --mount paths) unless --host. Agents then need `--grant mcp:everything` (all its tools) or\n\
`--grant mcp:everything/echo` (one tool);\n\
        `all` grants no MCP server. Restart the kernel to offer the new tools to agents.")]
    Add {
        /// The server's name (1-32 of a-z, 0-9, -, _); its tools become MCP_NAME_TOOL.
        name: String,
        /// Run the stdio server directly on the host, with the kernel's user, files and network
        /// (announced at start and in `aos mcp ls`). Without it a stdio server runs in a sandbox container.
        #[arg(long)]
        host: bool,
        /// A host path the stdio server's container sees: HOST[:CONTAINER][:rw] (read-only unless :rw;
        /// the same path inside unless CONTAINER is given). Repeatable.
        #[arg(long = "mount", value_name = "HOST[:CONTAINER][:rw]", conflicts_with = "host")]
        mounts: Vec<String>,
        /// Put the stdio server's container on Docker's bridge network (else it has none).
        #[arg(long, conflicts_with = "host")]
        network: bool,
        /// A streamable-HTTP server's URL (reached under the [net] address policy; agents need net:HOST too).
        #[arg(long, conflicts_with = "command")]
        url: Option<String>,
        /// The environment variable holding the HTTP server's bearer token.
        #[arg(long, requires = "url")]
        token_env: Option<String>,
        /// Kernel environment variable passed on to the server (repeatable).
        #[arg(long = "env-from")]
        env_from: Vec<String>,
        /// Deadline of one tool call, in seconds (default 30).
        #[arg(long)]
        timeout: Option<f64>,
        /// Replace a server of the same name.
        #[arg(long)]
        replace: bool,
        /// The stdio server's command and arguments, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// List the configured MCP servers: how each runs (ON THE HOST is marked), and with --tools their tools.
    #[command(alias = "list")]
    Ls {
        /// Start each server and list its tools (name, syscall, description).
        #[arg(long)]
        tools: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an MCP server from aos.toml.
    Remove { name: String },
    /// Serve AgentOS to MCP hosts: tools to spawn agents in the running kernel, list them, read their logs,
    /// send them input, wait for them and kill them. On stdin/stdout unless --http.
    #[command(after_help = "Examples:\n  \
        aos mcp serve                                   # stdio: an MCP host runs this command\n  \
        aos mcp serve --max-grants fs:rw,timers,net     # what MCP-spawned agents may get at most\n  \
        aos mcp serve --http 127.0.0.1:7900             # streamable HTTP at http://127.0.0.1:7900/mcp\n\
        Over HTTP every request needs `Authorization: Bearer TOKEN`: the token is AOS_MCP_TOKEN, else a new one\n\
        written to $AOS_HOME/mcp.token at each start. The ceiling defaults to `[mcp.serve] max_grants` of\n\
        aos.toml, else `default_grants` (the rights of a plain `aos spawn`).")]
    Serve {
        /// Serve streamable HTTP on this address (loopback unless --allow-remote) instead of stdio.
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
        /// Let --http listen on a non-loopback address (the token is still required).
        #[arg(long, requires = "http")]
        allow_remote: bool,
        /// The most an agent spawned over MCP may be granted (repeatable or comma-separated).
        #[arg(long = "max-grants", value_delimiter = ',', value_name = "GRANTS")]
        max_grants: Vec<String>,
    },
}

pub async fn run(cmd: McpCmd) -> Result<i32> {
    let home = crate::home::aos_home()?;
    match cmd {
        McpCmd::Add { name, host, mounts, network, url, token_env, env_from, timeout, replace, command } => {
            let cfg = Config::load(&home)?;
            if cfg.mcp.servers.contains_key(&name) && !replace {
                bail!("an MCP server named `{name}` is already configured; remove it first (`aos mcp remove {name}`) or pass --replace");
            }
            let mounts = mounts.iter().map(|m| parse_mount(m)).collect::<Result<Vec<_>>>()?;
            let mut server =
                ServerConfig { url, token_env, env_from, host, network, mounts, call_timeout_secs: timeout, ..Default::default() };
            if server.url.is_none() {
                let Some((program, args)) = command.split_first() else {
                    bail!("give the server's command after `--` (aos mcp add {name} -- COMMAND ARGS...) or its --url");
                };
                server.command = Some(program.clone());
                server.args = args.to_vec();
            } else if !command.is_empty() {
                bail!("give either --url or a command after `--`, not both");
            }
            let mut one = McpConfig::default();
            one.servers.insert(name.clone(), server.clone());
            let source = McpSource::open(&one, |k| std::env::var(k).ok(), net_policy(&cfg)?, cfg.sandbox.to_runtime(&home))?;
            if server.host {
                errln!("note: `{name}` runs ON THE HOST, outside any sandbox ({})", server.describe_in(&cfg.sandbox.image));
            } else if server.command.is_some() {
                errln!("note: `{name}`: {}", server.describe_in(&cfg.sandbox.image));
            }
            errln!("starting `{name}` to list its tools...");
            let started = source.start_all().await;
            for (_, r) in started {
                r.with_context(|| format!("`{name}` was not added"))?;
            }
            print_tools(&source, &name, false);
            aos_abi::SyscallSource::shutdown(&source).await;
            set_mcp_server(&home, &name, &server)?;
            outln!("added MCP server `{name}` to {}", home.join("aos.toml").display());
            outln!("grant it with --grant mcp:{name} (all its tools) or --grant mcp:{name}/TOOL; restart a running kernel to offer it");
            Ok(0)
        }
        McpCmd::Ls { tools, json } => {
            let cfg = Config::load(&home)?;
            if cfg.mcp.servers.is_empty() && !json {
                outln!("no MCP servers configured (add one with `aos mcp add NAME [--mount HOST:CONTAINER] -- COMMAND ARGS...`)");
                return Ok(0);
            }
            let source = if tools {
                Some(McpSource::open(&cfg.mcp, |k| std::env::var(k).ok(), net_policy(&cfg)?, cfg.sandbox.to_runtime(&home))?)
            } else {
                None
            };
            let mut started = Vec::new();
            if let Some(s) = &source {
                started = s.start_all().await;
            }
            if json {
                let mut v = serde_json::Map::new();
                for (name, sc) in &cfg.mcp.servers {
                    let mut e = serde_json::json!({
                        "config": sc,
                        "runs": sc.describe_in(&cfg.sandbox.image),
                        "on_host": sc.host && sc.command.is_some(),
                        "in_container": !sc.host && sc.command.is_some(),
                    });
                    if let Some(s) = &source {
                        let srv = s.server(name);
                        e["tools"] = serde_json::to_value(srv.map(|x| x.tools()).unwrap_or_default())?;
                        if let Some((_, Err(err))) = started.iter().find(|(n, _)| n == name) {
                            e["error"] = serde_json::Value::String(err.to_string());
                        }
                    }
                    v.insert(name.clone(), e);
                }
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (name, sc) in &cfg.mcp.servers {
                    outln!("{name}: {}", sc.describe_in(&cfg.sandbox.image));
                    if let Err(e) = sc.transport(name, |k| std::env::var(k).ok()) {
                        outln!("  cannot start: {e}");
                    }
                    if let Some(s) = &source {
                        if let Some((_, Err(err))) = started.iter().find(|(n, _)| n == name) {
                            outln!("  failed: {err}");
                        } else {
                            print_tools(s, name, true);
                        }
                    }
                }
            }
            if let Some(s) = &source {
                aos_abi::SyscallSource::shutdown(s).await;
            }
            Ok(0)
        }
        McpCmd::Serve { http, allow_remote, max_grants } => serve(home, http, allow_remote, max_grants).await,
        McpCmd::Remove { name } => {
            if remove_mcp_server(&home, &name)? {
                outln!("removed MCP server `{name}` from {} (restart a running kernel to drop it)", home.join("aos.toml").display());
                Ok(0)
            } else {
                bail!("no MCP server named `{name}` in {} (see `aos mcp ls`)", home.join("aos.toml").display())
            }
        }
    }
}

fn print_tools(source: &McpSource, name: &str, indent: bool) {
    let pad = if indent { "  " } else { "" };
    let Some(server) = source.server(name) else { return };
    let tools = server.tools();
    outln!("{pad}{} tools:", tools.len());
    for t in tools {
        let syscall = source.syscall_name(name, &t.name).unwrap_or_default();
        outln!("{pad}  {} ({syscall}): {}", t.name, t.description.lines().next().unwrap_or(""));
        outln!("{pad}    input: {}", t.input_schema);
    }
}

/// `--mount HOST[:CONTAINER][:rw]` as a `mounts` entry (checked when the server is started).
fn parse_mount(spec: &str) -> Result<aos_mcp::MountConfig> {
    let mut parts: Vec<&str> = spec.split(':').collect();
    let writable = match parts.last() {
        Some(&"rw") => {
            parts.pop();
            true
        }
        Some(&"ro") => {
            parts.pop();
            false
        }
        _ => false,
    };
    let (host, container) = match parts.as_slice() {
        [h] if !h.is_empty() => (*h, None),
        [h, c] if !h.is_empty() && !c.is_empty() => (*h, Some(std::path::PathBuf::from(c))),
        _ => bail!("--mount {spec}: write HOST[:CONTAINER][:rw], e.g. --mount /srv/docs:/docs or --mount /srv/out:/out:rw"),
    };
    let host = std::path::PathBuf::from(host);
    let host = if host.is_relative() { std::env::current_dir()?.join(host) } else { host };
    Ok(aos_mcp::MountConfig { host, container, writable })
}

/// The `[net]` policy of `aos.toml`, under which streamable-HTTP servers are reached.
fn net_policy(cfg: &Config) -> Result<std::sync::Arc<aos_mcp::NetPolicy>> {
    Ok(std::sync::Arc::new(aos_mcp::NetPolicy::new(cfg.net.to_runtime()).context("invalid [net] settings in aos.toml")?))
}

/// `aos mcp serve`: stdout is the MCP channel over stdio, so this says
/// everything on stderr.
async fn serve(
    home: std::path::PathBuf,
    http: Option<std::net::SocketAddr>,
    allow_remote: bool,
    max_grants: Vec<String>,
) -> Result<i32> {
    let cfg = Config::load(&home)?;
    let ceiling = aos_mcp_server::Ceiling::choose(&max_grants, cfg.mcp.serve.max_grants.as_deref(), &cfg.default_grants)
        .context("the grant ceiling (--max-grants or `[mcp.serve] max_grants`)")?;
    let paths = aos_daemon::Paths::new(&home);
    let start_paths = paths.clone();
    let starter: aos_mcp_server::Starter = std::sync::Arc::new(move || {
        let paths = start_paths.clone();
        Box::pin(async move {
            let pid = super::kernel::start_background(&paths).await?;
            errln!("started the kernel (pid {pid})");
            Ok(())
        })
    });
    let server = aos_mcp_server::AosMcp::new(paths, ceiling.clone(), cfg.default_grants.clone()).with_starter(starter);
    let grants = ceiling.names().join(", ");
    match http {
        None => {
            errln!("aos mcp serve: MCP on stdin/stdout for {}; agents may get at most: {grants}", home.display());
            aos_mcp_server::serve_stdio(server).await?;
        }
        Some(addr) => {
            let allow_remote = allow_remote || cfg.mcp.serve.allow_remote;
            aos_mcp_server::http::check_addr(addr, allow_remote)?;
            let env_token = std::env::var(aos_mcp_server::http::TOKEN_VAR).ok();
            let (token, source) = aos_mcp_server::http::token(env_token, &home)?;
            let opts = aos_mcp_server::http::HttpOptions { addr, allow_remote, token };
            aos_mcp_server::http::serve(server, opts, |bound| {
                let from = match &source {
                    aos_mcp_server::http::TokenSource::Env => format!("{} (from the environment)", aos_mcp_server::http::TOKEN_VAR),
                    aos_mcp_server::http::TokenSource::File(p) => p.display().to_string(),
                };
                errln!("aos mcp serve: MCP on http://{bound}/mcp (bearer token: {from}); agents may get at most: {grants}");
            })
            .await?;
        }
    }
    Ok(0)
}
