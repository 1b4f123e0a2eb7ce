//! The MCP client's tests, one binary (`cargo test -p aos-mcp --test all`):
//! scripted agents in a real kernel call the tools of a real MCP server,
//! the npm `@modelcontextprotocol/server-everything` and `server-filesystem`
//! over stdio (installed by `./dev setup` into `~/.cache/aos/mcp-node`;
//! without them each test skips loudly, and fails under CI), and a streamable-HTTP server on the
//! PyPI `mcp` SDK (`tests/servers/http_server.py`, run by the venv
//! `./dev setup` makes in `~/.cache/aos/mcp-venv`). The servers of
//! `container.rs` run in the sandbox image (Docker; `scripts/setup-docker.sh`).

#![allow(clippy::unwrap_used)] // a test's panic is its failure

mod support;

mod calls;
mod container;
mod filesystem;
mod http;
mod mcp_isolation;
