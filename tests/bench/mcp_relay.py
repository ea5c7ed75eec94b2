"""A bare MCP-to-MCP relay built only with the `mcp` package: the floor of an MCP hop.

One lowlevel `Server` over Streamable HTTP (the transport and session handling the
sidecar's face uses) whose `tools/call` forwards to a `Client` kept open on the
upstream for the server's lifetime; no catalog, no executor, no redaction, no logs.
What it costs over a direct call is what the `mcp` package's own two halves cost;
the sidecar's face over it is the sidecar's own work. Run as
`python -m tests.bench.mcp_relay PORT UPSTREAM_URL` until SIGTERM.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
)
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.bench.peers import serve_like_the_sidecar

__all__ = ["relay_server"]


def relay_server(upstream_url: str) -> Server[Any]:
    """A server listing the upstream's tools; every call is the upstream's of the same name.

    The input schemas are listed once, at start, for the SDK's per-call schema lookup
    (as the sidecar's face keeps them): without it the server lists on every call.
    """
    schemas: dict[str, dict[str, Any]] = {}

    @asynccontextmanager
    async def upstream(_: Server[Any]) -> AsyncIterator[dict[str, Any]]:
        timeout = httpx2.Timeout(10, read=60)
        async with (
            httpx2.AsyncClient(timeout=timeout) as http,
            Client(streamable_http_client(upstream_url, http_client=http), cache=None) as client,
        ):
            listed = await client.list_tools()
            schemas.update({tool.name: dict(tool.input_schema) for tool in listed.tools})
            yield {"client": client}

    async def call_tool(
        ctx: ServerRequestContext[Any], params: CallToolRequestParams
    ) -> CallToolResult:
        client: Client = ctx.lifespan_context["client"]
        return await client.call_tool(params.name, params.arguments or {})

    async def list_tools(
        ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        client: Client = ctx.lifespan_context["client"]
        return await client.list_tools()

    return Server(
        "bench-relay",
        lifespan=upstream,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=schemas.get,
    )


def main(argv: list[str]) -> None:
    port, upstream_url = argv
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = relay_server(upstream_url).streamable_http_app(
        transport_security=security, custom_starlette_routes=[Route("/healthz", _healthz)]
    )
    serve_like_the_sidecar(app, int(port))


async def _healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


if __name__ == "__main__":
    main(sys.argv[1:])
