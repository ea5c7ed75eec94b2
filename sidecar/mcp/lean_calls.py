"""`tools/call` of the 2026-07-28 revision on `/mcp`, answered without the package's server.

On the sessionless revision a call is one POST that carries everything it needs (the
protocol version and the client's capabilities in `_meta`, the method and tool name
mirrored in headers), answered by one JSON-RPC response. For a call of a plain tool
(one the executor runs) the `mcp` package's server machinery (the per-request
connection, runner, context, middleware, result models) costs more than the rest of
the face's work (`bench_mcp`). Such calls are answered here, after the same checks
the package makes, by the package's own functions: the DNS-rebinding guard, the
`Accept` header, and the modern validation ladder (envelope, version, routing
headers). Everything else goes to the package unchanged, with the body it read
handed on: other methods, 2025-era sessions, `respond` (progress, elicitation),
`Mcp-Param-*` headers, and any request a check refuses (the package answers the
refusal in its own words).

A client that leaves cancels the call, as the package does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import orjson
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, check_accept_headers
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundLadderRejection,
    classify_inbound_request,
)
from mcp_types import SERVER_INFO_META_KEY, CallToolResult
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sidecar.mcp.catalog import AnswersItself, Catalog, FaceEntry
from tools.base import JsonObject

__all__ = ["LeanToolCalls"]

PlainCall = Callable[[str, JsonObject, FaceEntry | None], Awaitable[CallToolResult]]
PARAM_HEADER_PREFIX = b"mcp-param-"
_JSON_HEADERS = [(b"content-type", b"application/json")]


class LeanToolCalls:
    """The `/mcp` transport: plain tool calls of the 2026 revision here, the rest to `package`."""

    def __init__(
        self,
        package: ASGIApp,
        catalog: Catalog,
        call: PlainCall,
        security: TransportSecuritySettings,
        server_info: Callable[[], dict[str, Any]],
    ) -> None:
        self._package = package
        self._server_info = server_info
        self._catalog = catalog
        self._call = call
        self._guard = TransportSecurityMiddleware(security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _candidate(scope):
            await self._package(scope, receive, send)
            return
        body = await _read_body(receive)
        replay = _replaying(body, receive)
        call = await self._plain_call(scope, replay, body)
        if call is None:
            await self._package(scope, replay, send)
            return
        request_id, name, arguments, entry = call
        result = await _until_disconnect(self._call(name, arguments, entry), receive)
        if result is None:
            return  # the client left: nobody reads an answer
        shown = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        # Stamped as the package stamps every result of the modern revision.
        shown["_meta"] = {**shown.get("_meta", {}), SERVER_INFO_META_KEY: self._server_info()}
        answer = {"jsonrpc": "2.0", "id": request_id, "result": shown}
        content = orjson.dumps(answer)
        headers = [*_JSON_HEADERS, (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _plain_call(
        self, scope: Scope, receive: Receive, body: bytes
    ) -> tuple[Any, str, JsonObject, FaceEntry] | None:
        """The call, when it is a plain tool's and passes the package's checks; else None."""
        request = Request(scope, receive)
        if await self._guard.validate_request(request, is_post=True) is not None:
            return None
        has_json, _ = check_accept_headers(request)
        if not has_json:
            return None
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not _is_call(decoded):
            return None
        verdict = classify_inbound_request(decoded, headers=dict(request.headers))
        if isinstance(verdict, InboundLadderRejection):
            return None
        params = decoded["params"]
        entry = await self._catalog.find(params["name"])
        if entry is None or isinstance(entry.target, AnswersItself):
            return None
        return decoded["id"], params["name"], params.get("arguments") or {}, entry


def _candidate(scope: Scope) -> bool:
    """A POST of the modern revision naming `tools/call`, each routing header once, without
    a session or `Mcp-Param-*` headers."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return False
    routing: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name == _SESSION or name.startswith(PARAM_HEADER_PREFIX):
            return False
        if name in _ROUTING:
            if name in routing:
                return False  # the package names the duplicate
            routing[name] = value
    version = routing.get(_VERSION, b"").decode("latin-1")
    return (
        bool(version)
        and version not in HANDSHAKE_PROTOCOL_VERSIONS
        and routing.get(_METHOD) == b"tools/call"
    )


_VERSION = MCP_PROTOCOL_VERSION_HEADER.encode("ascii")
_METHOD = MCP_METHOD_HEADER.encode("ascii")
_ROUTING = frozenset({_VERSION, _METHOD, MCP_NAME_HEADER.encode("ascii")})
_SESSION = MCP_SESSION_ID_HEADER.lower().encode("ascii")


def _is_call(decoded: object) -> bool:
    """One JSON-RPC `tools/call` request with a tool name and object arguments."""
    if not isinstance(decoded, dict) or decoded.get("jsonrpc") != "2.0":
        return False
    request_id = decoded.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        return False
    params = decoded.get("params")
    if decoded.get("method") != "tools/call" or not isinstance(params, dict):
        return False
    if not isinstance(params.get("name"), str) or "inputResponses" in params:
        return False
    if params.get("requestState") is not None:
        return False
    meta = params.get("_meta")
    if isinstance(meta, dict) and "progressToken" in meta:
        return False  # the package's path tells of progress
    arguments = params.get("arguments")
    return arguments is None or isinstance(arguments, dict)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """`receive`, giving the body read already first."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _until_disconnect(
    call: Awaitable[CallToolResult], receive: Receive
) -> CallToolResult | None:
    """The call's result, or None when the client left first (the call is cancelled)."""
    result: list[CallToolResult] = []

    async def run(group: anyio.abc.TaskGroup) -> None:
        result.append(await call)
        group.cancel_scope.cancel()

    async def watch(group: anyio.abc.TaskGroup) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(run, group)
        group.start_soon(watch, group)
    return result[0] if result else None
