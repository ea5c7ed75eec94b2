"""One `tools/call` to an upstream on the sessionless 2026-07-28 revision, as one POST.

On that revision a call carries everything it needs (the protocol version, the
client's capabilities and identity in `_meta`, the method and tool name mirrored in
headers) and is answered by one JSON-RPC response, as JSON or as a short event
stream. The pool sends plain calls this way, on the connection's lean HTTP client
(`sidecar.lean_http`: the server's headers, connections opened through the outbound
guard), instead of through the `mcp.Client` and its httpx2 client, whose machinery
costs more CPU than the rest of a proxied call (`bench_mcp`). The pool keeps the
`mcp.Client` for everything else: the handshake, listings, and calls of tools whose
arguments are mirrored into `Mcp-Param-*` headers.

Failures come back as the client's would: `MCPError` for a JSON-RPC error (the pool
maps the codes; the call's time running out is the client's request timeout), the lean
client's `HttpFailure` for a connection that broke, `pydantic.ValidationError` for an
answer that is not a result.
"""

from __future__ import annotations

import itertools
import json
from importlib.metadata import version
from typing import Any

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

from sidecar.lean_http import BodyTimedOut, HeadTimedOut, LeanHttp, LeanResponse

__all__ = ["LEAN_REVISION", "REQUEST_TIMEOUT", "lean_call_tool", "mirrors_arguments"]

LEAN_REVISION = "2026-07-28"
CLIENT_INFO = {"name": "orq-sidecar", "version": version("orq-sidecar")}
INTERNAL_ERROR = -32603
REQUEST_TIMEOUT = -32001  # the SDK's code for a request that timed out
_ids = itertools.count(1)


def mirrors_arguments(input_schema: dict[str, Any]) -> bool:
    """Whether a tool's schema asks for arguments mirrored into `Mcp-Param-*` headers."""
    return "x-mcp-header" in json.dumps(input_schema)


async def lean_call_tool(
    http: LeanHttp,
    url: str,
    headers: dict[str, str],
    name: str,
    arguments: dict[str, Any],
    seconds: float,
) -> CallToolResult:
    """Call `name` with `arguments` in one POST to `url` within `seconds`; the result, or
    the client's errors. `headers` are the server's own (its credentials)."""
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
    sent = {
        **headers,
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        MCP_PROTOCOL_VERSION_HEADER: LEAN_REVISION,
        MCP_METHOD_HEADER: "tools/call",
        MCP_NAME_HEADER: encode_header_value(name),
    }
    try:
        async with http.post(url, sent, orjson.dumps(body), seconds) as response:
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                message = await _from_events(response, request_id)
            else:
                message = _parsed(await response.aread(), response.status)
    except (HeadTimedOut, BodyTimedOut):
        raise MCPError(REQUEST_TIMEOUT, "the call timed out") from None
    error = message.get("error")
    if error is not None:
        raise MCPError.from_error_data(ErrorData.model_validate(error))
    return CallToolResult.model_validate(message.get("result"))


async def _from_events(response: LeanResponse, request_id: int) -> dict[str, Any]:
    """The response message among a stream's events (pings and notifications skipped).

    Returns as soon as it came: leaving the stream open closes its connection."""
    data: list[bytes] = []
    pending = b""
    async for piece in response.aiter_bytes():
        *lines, pending = (pending + piece).split(b"\n")
        for line in lines:
            line = line.removesuffix(b"\r")
            if line.startswith(b"data:"):
                data.append(line[5:].removeprefix(b" "))
                continue
            if line or not data:
                continue
            message = _parsed(b"\n".join(data), response.status)
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
