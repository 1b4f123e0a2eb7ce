"""The PyPI `mcp` client SDK against `aos mcp serve` (run by tests/all/mcp_serve.rs).

Usage: serve_client.py stdio AOS_BIN AOS_HOME SCRIPT BLOCK_SCRIPT
       serve_client.py http URL TOKEN SCRIPT BLOCK_SCRIPT

Spawns a scripted agent, follows its log with read_log, waits for its exit
code; spawns one beyond the grant ceiling (refused); sends a blocked agent a
message; over HTTP also checks that a wrong token is refused. Exits non-zero
with a FAILED line on the first check that does not hold.
"""

import asyncio
import json
import os
import sys

import httpx2
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

TOOLS = ["kill", "list_processes", "read_log", "send_input", "spawn_agent", "wait"]


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", flush=True)
        sys.exit(1)


def text(result):
    return "\n".join(getattr(c, "text", "") for c in result.content)


async def follow(client, pid):
    """read_log from since_seq = the last next_seq until the process has ended; the whole text."""
    seq, out = 0, []
    for _ in range(300):
        r = await client.call_tool("read_log", {"pid": pid, "since_seq": seq})
        check(not r.is_error, f"read_log: {text(r)}")
        out.append(text(r))
        seq = r.structured_content["next_seq"]
        if not r.structured_content["status"]["running"]:
            return "\n".join(out), r.structured_content["status"]
        await asyncio.sleep(0.1)
    check(False, f"pid {pid} never ended: {out}")


async def drive(client, script, block_script):
    tools = await client.list_tools()
    check(sorted(t.name for t in tools.tools) == TOOLS, f"tools: {[t.name for t in tools.tools]}")

    r = await client.call_tool(
        "spawn_agent", {"task": "say hello", "provider": "script", "model": script, "grants": ["fs:ro"]}
    )
    check(not r.is_error, f"spawn_agent: {text(r)}")
    pid = r.structured_content["pid"]
    check(r.structured_content["grants"] == ["fs:ro"], f"grants: {r.structured_content}")

    log, status = await follow(client, pid)
    check("stdout: hello from mcp" in log, f"the log has the agent's stdout: {log}")
    check(status["exit_code"] == 3, f"read_log's end: {status}")
    w = await client.call_tool("wait", {"pid": pid, "timeout_secs": 20})
    check(not w.is_error, f"wait: {text(w)}")
    check(w.structured_content["exit_code"] == 3 and w.structured_content["result"] == "done", f"wait: {w.structured_content}")
    check(f"pid {pid} exited with code 3: done" in text(w), text(w))

    # Beyond the ceiling (fs:rw, timers, ipc): refused, naming the right and the setting.
    r = await client.call_tool("spawn_agent", {"task": "t", "provider": "script", "model": script, "grants": ["exec:net"]})
    check(r.is_error, f"a spawn beyond the ceiling is refused: {text(r)}")
    check("`exec:net` is beyond what agents spawned over MCP may get" in text(r) and "--max-grants" in text(r), text(r))
    # A provider the kernel does not know: the kernel's message.
    r = await client.call_tool("spawn_agent", {"task": "t", "provider": "nosuch"})
    check(r.is_error and "nosuch" in text(r), f"unknown provider: {text(r)}")

    # A blocked agent: still running after a short wait, then a message ends it.
    r = await client.call_tool("spawn_agent", {"task": "wait for a message", "provider": "script", "model": block_script})
    check(not r.is_error, f"spawn_agent: {text(r)}")
    blocked = r.structured_content["pid"]
    w = await client.call_tool("wait", {"pid": blocked, "timeout_secs": 1})
    check(not w.is_error and w.structured_content["running"] is True, f"still running: {text(w)}")
    ps = await client.call_tool("list_processes", {})
    check(any(p["pid"] == blocked for p in ps.structured_content["processes"]), f"list_processes: {text(ps)}")
    r = await client.call_tool("send_input", {"pid": blocked, "text": "go on", "to": "message"})
    check(not r.is_error, f"send_input: {text(r)}")
    w = await client.call_tool("wait", {"pid": blocked, "timeout_secs": 20})
    check(w.structured_content.get("exit_code") == 9, f"the message ended it: {text(w)}")

    # Errors a host can act on.
    r = await client.call_tool("kill", {"pid": 99999})
    check(r.is_error and "99999" in text(r), f"kill of an unknown pid: {text(r)}")
    r = await client.call_tool("send_input", {"pid": blocked, "txt": "x"})
    check(r.is_error and "unknown field `txt`" in text(r), f"bad arguments: {text(r)}")
    return pid


async def main():
    mode = sys.argv[1]
    if mode == "stdio":
        aos, home, script, block = sys.argv[2:6]
        params = StdioServerParameters(command=aos, args=["mcp", "serve"], env={**os.environ, "AOS_HOME": home})
        async with Client(params) as client:
            pid = await drive(client, script, block)
    else:
        url, token, script, block = sys.argv[2:6]
        for wrong in ["Bearer wrong", None]:
            headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
            if wrong:
                headers["authorization"] = wrong
            async with httpx2.AsyncClient() as h:
                resp = await h.post(url, headers=headers, content=b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
            check(resp.status_code == 401, f"{wrong!r} is refused: {resp.status_code} {resp.text}")
            check("missing or wrong bearer token" in resp.text, resp.text)
        try:
            bad = create_mcp_http_client(headers={"Authorization": "Bearer wrong"})
            async with Client(streamable_http_client(url, http_client=bad)) as client:
                await asyncio.wait_for(client.list_tools(), 20)
            check(False, "the SDK client with a wrong token was served")
        except SystemExit:
            raise
        except BaseException as e:  # the SDK's error (an exception group from its task group)
            print(f"wrong token refused: {type(e).__name__}", flush=True)
        good = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        async with Client(streamable_http_client(url, http_client=good)) as client:
            pid = await drive(client, script, block)
    print(json.dumps({"ok": True, "mode": mode, "pid": pid}), flush=True)


asyncio.run(main())
