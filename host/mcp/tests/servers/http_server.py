"""A streamable-HTTP MCP server on the official Python SDK (PyPI `mcp`),
for the MCP client's tests: `python http_server.py PORT [TOKEN]`.

Tools: `add` (integers), `shout` (a string, pattern-checked by its schema),
`fail` (a tool error, `isError`), `slow` (sleeps). With TOKEN, every request
must carry `Authorization: Bearer TOKEN`, else 401.
"""

import asyncio
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

port = int(sys.argv[1])
token = sys.argv[2] if len(sys.argv) > 2 else None

srv = MCPServer("aos-test-http")


@srv.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@srv.tool()
def fail(why: str) -> str:
    """Always fails, with `why` as the tool error."""
    raise ToolError(f"failed on purpose: {why}")


@srv.tool()
async def slow(secs: float) -> str:
    """Sleeps `secs` seconds, then answers."""
    await asyncio.sleep(secs)
    return "slept"


app = srv.streamable_http_app(host="127.0.0.1")


async def guarded(scope, receive, send):
    """The app, behind a bearer-token check when a token is set."""
    if token is not None and scope["type"] == "http":
        headers = dict(scope.get("headers") or [])
        if headers.get(b"authorization") != f"Bearer {token}".encode():
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"bad or missing bearer token"})
            return
    await app(scope, receive, send)


uvicorn.run(guarded, host="127.0.0.1", port=port, log_level="warning")
