//! The MCP client's tests, one binary (`cargo test -p aos-mcp --test all`):
//! scripted agents in a real kernel call the tools of a real MCP server,
//! the npm `@modelcontextprotocol/server-everything` over stdio (installed
//! by `./dev setup` into `~/.cache/aos/mcp-node`; without it each test
//! skips loudly, and fails under CI).

#![allow(clippy::unwrap_used)] // a test's panic is its failure

mod support;

mod calls;
mod mcp_isolation;
