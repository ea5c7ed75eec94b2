"""Pooled connections to MCP servers: one live client per server and credentials.

    McpPool                        the service's `McpConnector`
    └── _Connection                one per (server, fingerprint of its resolved credentials)
        └── owner task             enters the `mcp.Client`, waits for `stop`, exits it

A client of the `mcp` package must be entered and left in the same task, so each
connection has an owner task in the pool's task group; calls from any task use the
entered client concurrently. A connection is opened on first use (concurrent first
calls wait for the same one), reused until idle for `idle_timeout`, and dropped as
soon as a call finds its transport broken or its session gone, so the next call
builds a new one. On a Streamable HTTP server that speaks the sessionless revision,
plain calls go as one POST on the connection's lean HTTP client (`sidecar.mcp_lean_call`);
the `mcp.Client` does the rest. A call is sent again on a new connection only when the failure
proves the server never ran it (it refused the connection or did not know the session).

The key of a connection is an HMAC, under a key made at start, of the server and
its resolved headers or environment: the raw credentials are never kept as a key.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import math
import os
import secrets
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.lowlevel
import httpx2
from anyio.abc import TaskGroup
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, Tool
from pydantic import ValidationError

from sidecar.lean_http import HttpFailure, LeanHttp
from sidecar.logs import get_logger
from sidecar.mcp_lean_call import (
    LEAN_REVISION,
    REQUEST_TIMEOUT,
    lean_call_tool,
    mirrors_arguments,
)
from sidecar.outbound import OutboundPolicy, guarded_connector, guarded_mcp_client
from sidecar.tracing import NO_TRACING, SpanKind, Tracing, Value
from tools.base import (
    JsonObject,
    JsonValue,
    McpCallResult,
    McpFailure,
    McpServer,
    McpToolInfo,
    McpUnavailable,
    TimeLimit,
    ToolError,
    UpstreamTimeout,
)

__all__ = ["McpPool", "McpPoolSettings"]

log = get_logger("sidecar.mcp_pool")

CONNECTION_CLOSED = -32000
SESSION_UNKNOWN = -32600  # a legacy server that restarted no longer knows the session
LISTING_PAGES_MAX = 50

_T = TypeVar("_T")


@dataclass(frozen=True)
class McpPoolSettings:
    """Timeouts and bounds of the pool."""

    connect_timeout: float = 10.0
    call_timeout: float = 60.0
    idle_timeout: float = 300.0
    max_connections: int = 64


class _Connection:
    """One client and the state its owner task and its callers share."""

    def __init__(self, key: str, where: str) -> None:
        self.key = key
        self.where = where
        self.client: Client | None = None
        self.ready = anyio.Event()
        self.stop = anyio.Event()
        self.scope = anyio.CancelScope(deadline=math.inf)
        self.failure: str | None = None
        self.failure_code = "mcp_unavailable"
        self.in_use = 0
        self.last_used = 0.0
        self.closed = False
        self.broken = False
        self.listing: list[McpToolInfo] | None = None
        self.plain_tools: frozenset[str] = frozenset()  # of the listing: no `Mcp-Param-*`
        # A Streamable HTTP server on the sessionless revision: plain calls go as one POST
        # on this client, with the server's headers (see `sidecar.mcp_lean_call`).
        self.lean_http: LeanHttp | None = None
        self.url = ""
        self.headers: dict[str, str] = {}
        self.lean = False

    def sends_lean(self, name: str) -> bool:
        """Whether a call of `name` can go as one POST: a listed tool whose arguments are
        not mirrored into headers, on a sessionless connection."""
        return self.lean and self.lean_http is not None and name in self.plain_tools

    def close(self) -> None:
        self.closed = True
        self.stop.set()

    @property
    def usable_listing(self) -> list[McpToolInfo] | None:
        """The last listing, while the connection that made it is alive."""
        return None if self.closed or self.broken else self.listing

    async def on_message(self, message: object) -> None:
        """The client's message handler: a transport error means the connection is gone."""
        if isinstance(message, Exception):
            self.broken = True
        await anyio.lowlevel.checkpoint()


class McpPool:
    """Opens, shares and closes the connections to MCP servers."""

    def __init__(
        self,
        policy: OutboundPolicy,
        settings: McpPoolSettings,
        group: TaskGroup,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self._tracing = tracing
        self._policy = policy
        self._settings = settings
        self._group = group
        self._connections: dict[str, _Connection] = {}
        self._fingerprint_key = secrets.token_bytes(32)
        # Owner tasks start from the pool's context, not from the first caller's
        # (whose request id and redactor would otherwise stick to the connection).
        self._context = contextvars.copy_context()
        self._ssl: ssl.SSLContext | None = None

    @classmethod
    @asynccontextmanager
    async def open(
        cls, policy: OutboundPolicy, settings: McpPoolSettings, tracing: Tracing = NO_TRACING
    ) -> AsyncIterator[McpPool]:
        """A pool whose connections are all closed when the block ends."""
        try:
            async with anyio.create_task_group() as group:
                pool = cls(policy, settings, group, tracing)
                sweeper = anyio.CancelScope()
                group.start_soon(pool._sweep, sweeper)
                try:
                    yield pool
                finally:
                    sweeper.cancel()
                    pool.close_all()
        except BaseExceptionGroup as group_error:
            # Owner tasks never raise, so a lone error is the block's own: hand it on
            # as it was raised rather than wrapped by the task group.
            if len(group_error.exceptions) == 1:
                raise group_error.exceptions[0] from None
            raise

    @property
    def open_connections(self) -> int:
        """How many connections are live (for metrics and tests)."""
        return sum(1 for connection in self._connections.values() if not connection.closed)

    @property
    def sessionless_connections(self) -> int:
        """How many live connections send plain calls as one POST (for tests)."""
        return sum(1 for c in self._connections.values() if c.lean and not c.closed)

    @property
    def connection_keys(self) -> tuple[str, ...]:
        """The keys of the pooled connections, HMACs that hold no credential (for tests)."""
        return tuple(self._connections)

    def close_all(self) -> None:
        """Ask every owner task to leave its client."""
        for connection in list(self._connections.values()):
            connection.close()
        self._connections.clear()

    async def list_tools(
        self, server: McpServer, *, time_limit: float, fresh: bool = True
    ) -> list[McpToolInfo]:
        """Every tool the server lists, page by page.

        With `fresh=False`, the live connection's last listing when it has one.
        """
        connection = self._connections.get(self._key(server))
        if not fresh and connection is not None and connection.usable_listing is not None:
            return connection.usable_listing
        return await self._with_retry(server, time_limit, self._listing)

    async def call_tool(
        self, server: McpServer, name: str, arguments: JsonObject, *, time_limit: float
    ) -> McpCallResult:
        """Call a tool; `TimeoutError` when `time_limit` (the caller's) ran out first."""

        async def call(connection: _Connection, limit: float) -> McpCallResult:
            assert connection.client is not None
            if connection.lean and connection.listing is None:
                await self._listing(connection, limit)  # once a connection: which tools are plain
            if connection.lean_http is not None and connection.sends_lean(name):
                sent = await lean_call_tool(
                    connection.lean_http, connection.url, connection.headers, name, arguments, limit
                )
                return _mapped(sent)
            result = await connection.client.call_tool(name, arguments, read_timeout_seconds=limit)
            return _mapped(result)

        def attributes() -> dict[str, Value]:
            return {
                "mcp.method.name": "tools/call",
                "gen_ai.tool.name": name,
                "network.transport": "pipe" if server.transport == "stdio" else "tcp",
                "server.address": _address(server),
            }

        with self._tracing.span(lambda: f"tools/call {name}", attributes, kind=SpanKind.CLIENT):
            return await self._with_retry(server, time_limit, call)

    async def _with_retry(
        self,
        server: McpServer,
        time_limit: float,
        action: Callable[[_Connection, float], Awaitable[_T]],
    ) -> _T:
        limit = TimeLimit.within(self._settings.call_timeout, time_limit)
        for attempt in (1, 2):
            connection = await self._connection(server)
            connection.in_use += 1
            try:
                return await action(connection, limit.seconds)
            except MCPError as exc:
                if exc.code == REQUEST_TIMEOUT:
                    timeout = UpstreamTimeout(
                        f"MCP server {connection.where} did not answer within {limit.seconds:g} s"
                    )
                    raise limit.expired(timeout) from None
                if exc.code not in (CONNECTION_CLOSED, SESSION_UNKNOWN):
                    raise McpFailure(
                        f"MCP server {connection.where} answered with an error: {exc.error.message}"
                    ) from None
                self._drop(connection)
                if exc.code == SESSION_UNKNOWN and attempt == 1:
                    continue  # the server refused the call unseen: safe to send again
                raise McpUnavailable(
                    f"the connection to MCP server {connection.where} was lost during the call"
                ) from None
            except ValidationError:
                raise McpFailure(
                    f"MCP server {connection.where} answered something that is not a valid result"
                ) from None
            except (
                HttpFailure,
                httpx2.TransportError,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
            ):
                self._drop(connection)
                raise McpUnavailable(
                    f"the connection to MCP server {connection.where} broke during the call"
                ) from None
            finally:
                connection.in_use -= 1
                connection.last_used = anyio.current_time()
        raise AssertionError("unreachable")

    async def _listing(self, connection: _Connection, limit: float) -> list[McpToolInfo]:
        assert connection.client is not None
        found: list[McpToolInfo] = []
        cursor: str | None = None
        with anyio.fail_after(limit):
            for _ in range(LISTING_PAGES_MAX):
                page = await connection.client.list_tools(cursor=cursor, cache_mode="refresh")
                found.extend(_info(tool) for tool in page.tools)
                cursor = page.next_cursor
                if cursor is None:
                    break
        connection.listing = found
        connection.plain_tools = frozenset(
            tool.name for tool in found if not mirrors_arguments(tool.input_schema)
        )
        return found

    async def _connection(self, server: McpServer) -> _Connection:
        key = self._key(server)
        connection = self._connections.get(key)
        if connection is not None and connection.broken:
            self._drop(connection)  # broke while idle: the server never saw a call on it
        if connection is None or connection.closed:
            connection = _Connection(key, _where(server))
            self._make_room()
            self._connections[key] = connection
            self._context.copy().run(self._group.start_soon, self._own, connection, server)
        await connection.ready.wait()
        if connection.client is None or connection.closed:
            raise McpUnavailable(
                f"cannot connect to MCP server {connection.where}: "
                f"{connection.failure or 'the connection closed'}",
                code=connection.failure_code,
            )
        return connection

    async def _own(self, connection: _Connection, server: McpServer) -> None:
        """The owner task: enter the client, hold it until asked to stop, leave it."""
        connection.scope.deadline = anyio.current_time() + self._settings.connect_timeout
        try:
            with connection.scope:
                async with AsyncExitStack() as stack:
                    transport = await self._transport(stack, server, connection)
                    client = Client(transport, cache=None, message_handler=connection.on_message)
                    await stack.enter_async_context(client)
                    connection.lean = server.transport == "http" and (
                        client.protocol_version == LEAN_REVISION
                    )
                    connection.client = client
                    connection.last_used = anyio.current_time()
                    connection.scope.deadline = math.inf
                    connection.ready.set()
                    await connection.stop.wait()
            if connection.scope.cancelled_caught and connection.client is None:
                connection.failure = f"no answer within {self._settings.connect_timeout:g} s"
        except ToolError as exc:  # the outbound guard refused the destination
            connection.failure = exc.message
            connection.failure_code = exc.code
        except Exception as exc:  # noqa: BLE001 (an owner task must never take the pool down)
            connection.failure = _reason(exc)
            log.info("mcp.connection_failed", server=connection.where, reason=connection.failure)
        finally:
            connection.closed = True
            connection.client = None
            connection.ready.set()
            if self._connections.get(connection.key) is connection:
                del self._connections[connection.key]

    async def _transport(
        self, stack: AsyncExitStack, server: McpServer, connection: _Connection
    ) -> Any:
        settings = self._settings
        if server.transport == "stdio":
            devnull = stack.enter_context(open(os.devnull, "w"))  # noqa: ASYNC230, SIM115
            parameters = StdioServerParameters(
                command=server.command, args=list(server.args), env=dict(server.env)
            )
            return stdio_client(parameters, errlog=devnull)
        await self._check_destination(server.url)
        headers = dict(server.headers)
        read = settings.call_timeout + 15  # the call's own timeout answers first
        if server.transport == "sse":

            def factory(
                headers: dict[str, str] | None = None,
                timeout: httpx2.Timeout | None = None,
                auth: httpx2.Auth | None = None,
            ) -> httpx2.AsyncClient:
                return guarded_mcp_client(
                    self._policy,
                    headers=headers or {},
                    timeout=timeout or httpx2.Timeout(read),
                    ssl_context=self._ssl_context(),
                )

            return sse_client(
                server.url,
                headers=headers,
                timeout=settings.connect_timeout,
                sse_read_timeout=settings.idle_timeout + read,
                httpx_client_factory=factory,
            )
        timeout = httpx2.Timeout(settings.connect_timeout, read=read)
        http = guarded_mcp_client(
            self._policy, headers=headers, timeout=timeout, ssl_context=self._ssl_context()
        )
        await stack.enter_async_context(http)
        lean_http = LeanHttp(
            connector=guarded_connector(self._policy, self._ssl_context()),
            max_connections=64,
            max_idle_per_origin=8,
        )
        stack.push_async_callback(lean_http.aclose)
        connection.lean_http, connection.url, connection.headers = lean_http, server.url, headers
        return streamable_http_client(server.url, http_client=http)

    def _ssl_context(self) -> ssl.SSLContext:
        """The trust store of every connection, made once (a copy each costs megabytes)."""
        if self._ssl is None:
            self._ssl = httpx2.create_ssl_context(trust_env=False)
        return self._ssl

    async def _check_destination(self, url: str) -> None:
        """Refuse a blocked host before connecting, with the guard's own error."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise McpUnavailable("the MCP server URL is not an absolute http(s) URL")
        await self._policy.resolve(parts.hostname, parts.port or 443)

    def _key(self, server: McpServer) -> str:
        material = repr(
            (server.transport, server.url, server.headers, server.command, server.args, server.env)
        )
        return hmac.new(self._fingerprint_key, material.encode(), hashlib.sha256).hexdigest()

    def _drop(self, connection: _Connection) -> None:
        if self._connections.get(connection.key) is connection:
            del self._connections[connection.key]
        connection.close()

    def _make_room(self) -> None:
        """Close the least recently used idle connection when the pool is full; with none
        idle, the call is refused (`mcp_pool_full`) rather than the pool outgrown."""
        if len(self._connections) < self._settings.max_connections:
            return
        idle = [c for c in self._connections.values() if c.in_use == 0 and c.ready.is_set()]
        if not idle:
            raise McpUnavailable(
                f"all {self._settings.max_connections} pooled MCP connections are in use; "
                "try again shortly",
                code="mcp_pool_full",
            )
        self._drop(min(idle, key=lambda connection: connection.last_used))

    async def _sweep(self, scope: anyio.CancelScope) -> None:
        """Close connections idle for longer than `idle_timeout`."""
        period = max(0.05, min(30.0, self._settings.idle_timeout / 4))
        with scope:
            while True:
                await anyio.sleep(period)
                cutoff = anyio.current_time() - self._settings.idle_timeout
                for connection in list(self._connections.values()):
                    idle = connection.in_use == 0 and connection.ready.is_set()
                    if idle and connection.last_used < cutoff:
                        self._drop(connection)


def _where(server: McpServer) -> str:
    """How errors name a server: its host and port, or its command; never a query or header."""
    if server.transport == "stdio":
        return repr(os.path.basename(server.command))
    parts = urlsplit(server.url)
    host = parts.hostname or "?"
    return repr(f"{host}:{parts.port}" if parts.port else host)


def _reason(exc: BaseException) -> str:
    """A short reason for a failed connection, without the exception's (URL-bearing) text."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, httpx2.ConnectError | ConnectionError):
        return "the connection was refused or could not be made"
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"it answered HTTP {exc.response.status_code}"
    if isinstance(exc, ToolError):
        return exc.message
    if isinstance(exc, MCPError):
        return f"it answered with an error: {exc.error.message}"
    if isinstance(exc, OSError):
        return f"it could not be started ({exc.strerror or type(exc).__name__})"
    return f"{type(exc).__name__}"


def _info(tool: Tool) -> McpToolInfo:
    annotations = tool.annotations
    return McpToolInfo(
        name=tool.name,
        description=tool.description or tool.title or "",
        input_schema=dict(tool.input_schema),
        read_only=bool(annotations is not None and annotations.read_only_hint),
    )


def _mapped(result: CallToolResult) -> McpCallResult:
    content: list[JsonValue] = [
        block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content
    ]
    return McpCallResult(
        content=content, structured_content=result.structured_content, is_error=result.is_error
    )


def _address(server: McpServer) -> str:
    """Where a server is, for a span: its host name, or its command's name (stdio)."""
    if server.transport == "stdio":
        return Path(server.command or "").name
    return urlsplit(server.url or "").hostname or ""
