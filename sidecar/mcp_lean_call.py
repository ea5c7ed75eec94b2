"""One `tools/call` to an upstream on the sessionless 2026-07-28 revision, as one POST.

On that revision a call carries everything it needs (the protocol version, the
client's capabilities and identity in `_meta`, the method and tool name mirrored in
headers) and is answered by one JSON-RPC response, as JSON or as a short event
stream. The pool sends plain calls this way, on the connection's own guarded HTTP
client (its headers, the outbound guard), instead of through the `mcp.Client`, whose
machinery costs as much CPU as the rest of a proxied call (`bench_mcp`). The pool
keeps the client for everything else: the handshake, listings, and calls of tools
whose arguments are mirrored into `Mcp-Param-*` headers.

Failures come back as the client's would: `MCPError` for a JSON-RPC error (the
pool maps the codes), `httpx2.TransportError` for a broken connection,
`pydantic.ValidationError` for an answer that is not a result.
"""

from __future__ import annotations

import itertools
import json
from importlib.metadata import version
from typing import Any

import httpx2
import orjson
from mcp import MCPError
from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    encode_header_value,
)
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    PROTOCOL_VERSION_META_KEY,
    CallToolResult,
    ErrorData,
)

__all__ = ["LEAN_REVISION", "lean_call_tool", "mirrors_arguments"]

LEAN_REVISION = "2026-07-28"
CLIENT_INFO = {"name": "orq-sidecar", "version": version("orq-sidecar")}
INTERNAL_ERROR = -32603
_ids = itertools.count(1)


def mirrors_arguments(input_schema: dict[str, Any]) -> bool:
    """Whether a tool's schema asks for arguments mirrored into `Mcp-Param-*` headers."""
    return "x-mcp-header" in json.dumps(input_schema)


async def lean_call_tool(
    http: httpx2.AsyncClient, url: str, name: str, arguments: dict[str, Any]
) -> CallToolResult:
    """Call `name` with `arguments` in one POST to `url`; the result, or the client's errors."""
    request_id = next(_ids)
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {
            "name": name,
            "arguments": arguments,
            "_meta": {
                PROTOCOL_VERSION_META_KEY: LEAN_REVISION,
                CLIENT_CAPABILITIES_META_KEY: {},
                CLIENT_INFO_META_KEY: CLIENT_INFO,
            },
        },
    }
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        MCP_PROTOCOL_VERSION_HEADER: LEAN_REVISION,
        MCP_METHOD_HEADER: "tools/call",
        MCP_NAME_HEADER: encode_header_value(name),
    }
    async with http.stream("POST", url, content=orjson.dumps(body), headers=headers) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            message = await _from_events(response, request_id)
        else:
            message = _parsed(await response.aread(), response.status_code)
    error = message.get("error")
    if error is not None:
        raise MCPError.from_error_data(ErrorData.model_validate(error))
    return CallToolResult.model_validate(message.get("result"))


async def _from_events(response: httpx2.Response, request_id: int) -> dict[str, Any]:
    """The response message among a stream's events (pings and notifications skipped)."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
            continue
        if line or not data:
            continue
        message = _parsed("\n".join(data).encode(), response.status_code)
        data = []
        if message.get("id") == request_id and ("result" in message or "error" in message):
            return message
    raise MCPError(INTERNAL_ERROR, "the event stream ended without the call's answer")


def _parsed(raw: bytes, status: int) -> dict[str, Any]:
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MCPError(INTERNAL_ERROR, f"the server answered HTTP {status} without JSON") from None
    if not isinstance(message, dict):
        raise MCPError(
            INTERNAL_ERROR, f"the server answered HTTP {status} with no JSON-RPC message"
        )
    return message
