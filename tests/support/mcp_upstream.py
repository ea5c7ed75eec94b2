"""A real upstream MCP server for tests, built with the `mcp` package.

Run as a process: `python -m tests.support.mcp_upstream http|sse|stdio [--port N]`.
Over HTTP it prints `listening <port>` once it accepts connections. Its tools:

- `whoami`: the Authorization (and its SHA-256, which redaction leaves alone) and
  X-Tenant headers it received, its env variable `UPSTREAM_NAME` and its pid;
- `add` (read-only): the sum of two integers;
- `pause`: sleeps; it reports `started <seconds>` when the call starts and
  `cancelled <seconds>` when the call is cancelled, so tests can see that the call
  or its cancel reached the server (see `_report`);
- `refuse`: a tool error (`is_error`) carrying the text it was given;
- `blob`: a text of the length asked for;
- `wipe`: a destructive tool, for the `read_only` filter.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import sys
from typing import Any

import anyio
import uvicorn
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ToolAnnotations

__all__ = ["build_server"]


def build_server() -> MCPServer:
    """The upstream's tools."""
    server = MCPServer("test-upstream")

    @server.tool(description="The credentials this server received.")
    def whoami(ctx: Context) -> dict[str, Any]:
        headers = ctx.headers or {}
        authorization = headers.get("authorization") or ""
        return {
            "authorization": headers.get("authorization"),
            "authorization_sha256": hashlib.sha256(authorization.encode()).hexdigest(),
            "tenant": headers.get("x-tenant"),
            "name": os.environ.get("UPSTREAM_NAME"),
            "pid": os.getpid(),
        }

    @server.tool(description="Add two integers.", annotations=ToolAnnotations(read_only_hint=True))
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Wait for some seconds, then answer.")
    async def pause(seconds: float) -> str:
        _report(f"started {seconds}")
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            _report(f"cancelled {seconds}")
            raise
        return f"paused {seconds}"

    @server.tool(description="A text of the given length.")
    def blob(size: int) -> str:
        return "x" * size

    @server.tool(description="Always fails with the given text.")
    def refuse(text: str) -> str:
        raise ToolError(f"refused: {text}")

    @server.tool(
        description="Delete everything.",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True),
    )
    def wipe() -> str:
        return "wiped"

    return server


def _report(line: str) -> None:
    """Report an event where `UPSTREAM_EVENTS` says: `-` for stdout, else a file to append to.

    Over stdio, stdout carries the protocol: reports must go to a file there.
    """
    target = os.environ.get("UPSTREAM_EVENTS")
    if target == "-":
        print(line, flush=True)
    elif target:
        with open(target, "a") as file:
            file.write(f"{line}\n")


def _security() -> TransportSecuritySettings:
    return TransportSecuritySettings(enable_dns_rebinding_protection=False)


def _serve_http(server: MCPServer, transport: str, port: int) -> None:
    if transport == "http":
        app = server.streamable_http_app(transport_security=_security())
    else:
        app = server.sse_app(transport_security=_security())
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    print(f"listening {listener.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[listener])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("transport", choices=["http", "sse", "stdio"])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = build_server()
    if args.transport == "stdio":
        server.run("stdio")
    else:
        _serve_http(server, args.transport, args.port)
    sys.exit(0)


if __name__ == "__main__":
    main()
