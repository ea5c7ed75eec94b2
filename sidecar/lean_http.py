"""A lean HTTP/1.1 client: keep-alive connections per origin, for the service's hot POSTs.

Provider calls (`sidecar.llm.providers.lean_http`) and the MCP pool's one-POST tool
calls (`sidecar.mcp_lean_call`) are POSTs of JSON to a handful of origins, answered by
JSON or a stream of server-sent events. For them this client does what a general client
does at a fraction of its cost (measured: httpx and httpcore were about 0.65 ms of the
1.1 ms from a request to its first streamed token; an httpx2 POST costs about 0.4 ms
where this one costs 0.02 ms): one write for the request, httptools (the C parser
uvicorn uses) for the answer, content-length and chunked bodies, TLS with the system's
certificates, one deadline for the whole call, idle connections kept per origin and
checked when taken. No redirects, no cookies, no proxies, no compression asked for.

Connections are opened by a `Connector`: plain `anyio.connect_tcp` by default, the
outbound guard's pinned connect (`sidecar.outbound.guarded_connector`) for traffic on a
tool's behalf. Failures are `HttpFailure` subclasses naming what happened; each user
maps them to its own errors.
"""

from __future__ import annotations

import select
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httptools

__all__ = [
    "BodyBroken",
    "BodyTimedOut",
    "BrokenHttp",
    "ClosedBeforeAnswer",
    "ConnectTimedOut",
    "Connector",
    "HeadTimedOut",
    "HttpFailure",
    "LeanHttp",
    "LeanResponse",
    "RequestRefused",
    "Unreachable",
]

_CONNECT_SECONDS = 10.0
_READ_SIZE = 65_536
Origin = tuple[str, str, int]
# Opens a connection to (scheme, host, port), TLS included for https; OSError on failure.
Connector = Callable[[str, str, int], Awaitable[anyio.abc.ByteStream]]


class HttpFailure(Exception):
    """A call that did not get its answer; the message says what happened, no address."""


class RequestRefused(HttpFailure):
    """The request cannot be sent as given (a bad address or header); nothing was sent."""


class ConnectTimedOut(HttpFailure):
    """No connection within the time."""


class Unreachable(HttpFailure):
    """The connection could not be made."""


class HeadTimedOut(HttpFailure):
    """Connected, but the answer's head did not come in time."""


class ClosedBeforeAnswer(HttpFailure):
    """The peer closed the connection before answering."""


class BodyTimedOut(HttpFailure):
    """The answer began but stopped coming within the time."""


class BodyBroken(HttpFailure):
    """The connection closed in the middle of the answer."""


class BrokenHttp(HttpFailure):
    """The answer is not HTTP/1.1 the parser accepts."""


class _Closed(Exception):
    """The connection ended before an answer began (a kept connection the peer closed)."""


class LeanResponse:
    """An answer: its status and headers now, its body as it comes."""

    def __init__(self, connection: _Connection, deadline: float) -> None:
        self._connection = connection
        self._deadline = deadline
        self.status = connection.status
        self.headers: Mapping[str, str] = connection.headers

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body's pieces (de-chunked) until it is complete."""
        connection = self._connection
        while True:
            while connection.body:
                yield connection.body.pop(0)
            if connection.complete:
                return
            try:
                await connection.receive(self._deadline)
            except TimeoutError:
                raise BodyTimedOut("stopped sending") from None
            except _Closed:
                raise BodyBroken("broke off: the connection closed") from None

    async def aread(self) -> bytes:
        """The whole body."""
        return b"".join([piece async for piece in self.aiter_bytes()])


class _Connection:
    """One connection and the parser of the answer being read on it."""

    def __init__(self, stream: anyio.abc.ByteStream, origin: Origin) -> None:
        self.stream = stream
        self.origin = origin
        self.reset()

    def reset(self) -> None:
        """Ready for the next answer on this connection."""
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.headers_done = False
        self.keep_alive = False
        self.body: list[bytes] = []
        self.complete = False
        self.received = 0

    # httptools' callbacks.
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        # Asked now: once the message is complete the parser has moved on and says no.
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True

    async def receive(self, deadline: float) -> None:
        """Read and parse what comes next; `_Closed` when the peer ended the connection."""
        try:
            with anyio.fail_after(max(deadline - anyio.current_time(), 0.0)):
                data = await self.stream.receive(_READ_SIZE)
        except TimeoutError:
            raise  # an OSError too, but the call's time, not a closed connection
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            if self.headers_done and not self._framed():
                self.complete = True  # a body that ends with the connection
                return
            raise _Closed from None
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            raise BrokenHttp("answered with broken HTTP") from None

    def _framed(self) -> bool:
        return "content-length" in self.headers or "chunked" in self.headers.get(
            "transfer-encoding", ""
        )

    def reusable(self) -> bool:
        return self.complete and self.keep_alive

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.stream.aclose()


class LeanHttp:
    """Keep-alive connections per origin; POSTs of bytes, answers read as they come."""

    def __init__(
        self,
        *,
        user_agent: str = "orq-sidecar",
        ssl_context: ssl.SSLContext | None = None,
        connector: Connector | None = None,
        max_connections: int = 256,
        max_idle_per_origin: int = 32,
    ) -> None:
        self._user_agent = user_agent
        # Calls beyond this wait for a connection to be free, as in any pooled client.
        self._slots = anyio.CapacityLimiter(max_connections)
        self._ssl = ssl_context or ssl.create_default_context()
        self._connect = connector or self._connect_tcp
        self._max_idle = max_idle_per_origin
        self._idle: dict[Origin, list[_Connection]] = {}

    @asynccontextmanager
    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, seconds: float | None
    ) -> AsyncIterator[LeanResponse]:
        """POST `body`; the answer once its head came (`HttpFailure` otherwise).

        Leaving the block before the body was read to its end closes the connection, so
        the peer sees the caller leave."""
        deadline = anyio.current_time() + (seconds if seconds is not None else 600.0)
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise RequestRefused("the address has an invalid port") from None
        origin = _origin(parts.scheme, parts.hostname or "", port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = _request_bytes(origin, target, {"user-agent": self._user_agent, **headers}, body)
        async with self._slots:
            connection = await self._exchange(origin, request, deadline)
            try:
                yield LeanResponse(connection, deadline)
            finally:
                if connection.reusable():
                    await self._release(connection)
                else:
                    await connection.aclose()

    async def _exchange(self, origin: Origin, request: bytes, deadline: float) -> _Connection:
        """Send and read the answer's head; a kept connection that was closed is replaced once."""
        for attempt in (1, 2):
            connection, reused = await self._connection(origin, deadline)
            try:
                await connection.stream.send(request)
                while not connection.headers_done:
                    await connection.receive(deadline)
                return connection
            except TimeoutError:
                await connection.aclose()
                raise HeadTimedOut("did not answer in time") from None
            except (_Closed, anyio.BrokenResourceError, anyio.EndOfStream, OSError):
                await connection.aclose()
                # The peer closed a kept connection before reading the request: once more
                # on a new one (nothing of this request reached it).
                if reused and attempt == 1 and connection.received == 0:
                    continue
                raise ClosedBeforeAnswer("closed the connection before answering") from None
            except BaseException:
                await connection.aclose()
                raise
        raise AssertionError("unreachable")

    async def _connection(self, origin: Origin, deadline: float) -> tuple[_Connection, bool]:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if _still_open(connection.stream):
                return connection, True
            await connection.aclose()
        seconds = min(_CONNECT_SECONDS, max(deadline - anyio.current_time(), 0.0))
        try:
            with anyio.fail_after(seconds):
                stream = await self._connect(*origin)
        except TimeoutError:
            raise ConnectTimedOut("could not be reached in time") from None
        except OSError as exc:
            raise Unreachable(f"could not be reached: {type(exc).__name__}") from None
        return _Connection(stream, origin), False

    async def _connect_tcp(self, scheme: str, host: str, port: int) -> anyio.abc.ByteStream:
        if scheme == "https":
            return await anyio.connect_tcp(
                host, port, ssl_context=self._ssl, tls_standard_compatible=False
            )
        return await anyio.connect_tcp(host, port)

    async def _release(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.origin, [])
        if len(idle) < self._max_idle:
            connection.reset()
            idle.append(connection)
        else:
            await connection.aclose()

    async def aclose(self) -> None:
        """Close every kept connection."""
        for idle in self._idle.values():
            for connection in idle:
                await connection.aclose()
        self._idle.clear()


def _origin(scheme: str, host: str, port: int | None) -> Origin:
    if scheme not in ("http", "https") or not host:
        raise RequestRefused(f"an address must be http(s)://host, got {scheme}://{host}")
    return scheme, host, port or (443 if scheme == "https" else 80)


def _request_bytes(origin: Origin, target: str, headers: Mapping[str, str], body: bytes) -> bytes:
    scheme, host, port = origin
    default = 443 if scheme == "https" else 80
    lines = [f"POST {target} HTTP/1.1", f"host: {host}" + (f":{port}" if port != default else "")]
    for name, value in headers.items():
        if any(char in name or char in value for char in "\r\n\0"):
            raise RequestRefused(f"a header holds a line break: {name!r}")
        lines.append(f"{name}: {value}")
    lines.append(f"content-length: {len(body)}")
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    except UnicodeEncodeError:
        raise RequestRefused("a header or the address is not plain text (latin-1)") from None


def _still_open(stream: anyio.abc.ByteStream) -> bool:
    """Whether a kept connection can take a request: an idle HTTP/1.1 connection has
    nothing to read, so a readable one was closed (or broken) by the peer."""
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)  # noqa: S610 - anyio's extra
    if raw is None:
        return True
    readable, _, _ = select.select([raw.fileno()], [], [], 0)
    return not readable
