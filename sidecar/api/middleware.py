"""The HTTP edge: request ids, access logs, metrics, bearer auth, the body size limit,
the request limits per API key and the shutdown drain (new work refused while
stopping, work in flight tracked).

One pure ASGI middleware, so every request pays for one layer, not five.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time
from collections.abc import Sequence

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sidecar.api.wire import error_response
from sidecar.errors import PayloadTooLarge, ShuttingDown, SidecarError, Unauthorized
from sidecar.ids import new_id
from sidecar.limits import RequestLimits
from sidecar.logs import bind_request_id, get_logger, info_enabled
from sidecar.metrics import Metrics
from sidecar.shutdown import Drain
from sidecar.tracing import NO_TRACING, Tracing, mark_unsampled, restore_span

__all__ = ["EdgeMiddleware"]

log = get_logger("sidecar.http")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
NOT_WORK = frozenset({"/healthz", "/readyz", "/metrics"})  # answered while stopping too


class EdgeMiddleware:
    """Wraps every HTTP request of the app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_keys: Sequence[str],
        max_body_bytes: int,
        metrics: Metrics,
        drain: Drain,
        limits: RequestLimits,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self._tracing = tracing
        self._app = app
        self._keys = [key.encode() for key in api_keys]
        self._max_body = max_body_bytes
        self._metrics = metrics
        self._drain = drain
        self._limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = dict(scope["headers"])  # the last of a repeated one
        if not self._tracing.enabled:
            await self._handle(scope, receive, send, headers)
            return
        method = scope["method"]
        traceparent = headers.get(b"traceparent")
        tracestate = headers.get(b"tracestate")
        span = self._tracing.request_span(
            method,
            None if traceparent is None else traceparent.decode("latin-1"),
            None if tracestate is None else tracestate.decode("latin-1"),
        )
        if span is None:  # not sampled: nothing under it records either
            token = mark_unsampled()
            try:
                await self._handle(scope, receive, send, headers)
            finally:
                restore_span(token)
            return
        span.set_all({"http.request.method": method, "url.path": scope["path"]})
        with span:
            status = await self._handle(scope, receive, send, headers)
            route = scope.get("route")
            if isinstance(route, BaseRoute) and hasattr(route, "path"):
                span.set_all({"http.route": route.path, "http.response.status_code": status})
                span.rename(f"{method} {route.path}")
            else:
                span.set("http.response.status_code", status)
            if status >= 500:
                span.fail(str(status))

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]
    ) -> int:
        """Answer one HTTP request; its status code."""
        started = time.perf_counter()
        offered = headers.get(b"x-request-id")
        authorization = headers.get(b"authorization")
        length = headers.get(b"content-length")
        request_id = _request_id(offered)
        bind_request_id(request_id)
        id_header = (b"x-request-id", request_id.encode())
        status = 0
        caller: str | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            path = scope["path"]
            problem = self._refusal(path, authorization, length)
            if problem is None and self._drain.draining and path not in NOT_WORK:
                problem = ShuttingDown("the service is shutting down; send the request again")
            if problem is None and self._limits.active and path not in NOT_WORK:
                caller = self._caller(authorization)
                problem = self._limits.admit(caller)
                if problem is not None:
                    caller = None  # not admitted: nothing to release
            if problem is not None:
                await error_response(problem)(scope, receive, send_with_id)
                return status
            # The body's size was checked above when it was announced; else it is counted.
            counted = receive if length is not None and length.isdigit() else self._limited(receive)
            if path in NOT_WORK:
                await self._app(scope, counted, send_with_id)
                return status
            listening = scope["method"] == "GET" and path == "/mcp"
            task = self._drain.enter(listening=listening)
            try:
                await self._app(scope, counted, send_with_id)
            except asyncio.CancelledError:
                if not self._drain.was_cut(task):
                    raise
                if not status:  # a streamed answer that began ended with its own error
                    cut = ShuttingDown(
                        "the service stopped before the request finished; send it again"
                    )
                    await error_response(cut)(scope, receive, send_with_id)
            finally:
                self._drain.leave(task)
        finally:
            if caller is not None:
                self._limits.release(caller)
            status = status or 500
            self._metrics.observe_request(scope["method"], status)
            if info_enabled():
                log.info(
                    "http.request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                )
        return status

    def _refusal(
        self, path: str, authorization: bytes | None, length: bytes | None
    ) -> SidecarError | None:
        if self._keys and path not in PUBLIC_PATHS and not self._authorized(authorization):
            return Unauthorized("missing or invalid bearer API key")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            return PayloadTooLarge(f"the request body exceeds {self._max_body} bytes")
        return None

    def _authorized(self, authorization: bytes | None) -> bool:
        return self._key_index(authorization) is not None

    def _key_index(self, authorization: bytes | None) -> int | None:
        """Which configured key the bearer token is; every key is compared, in constant time."""
        scheme, _, token = (authorization or b"").partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return None
        presented = token.strip()
        matches = [hmac.compare_digest(presented, key) for key in self._keys]
        return matches.index(True) if True in matches else None

    def _caller(self, authorization: bytes | None) -> str:
        """Whose limits a request counts against: its API key's place, or everyone's."""
        index = self._key_index(authorization) if self._keys else None
        return "anyone" if index is None else f"key {index}"

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._max_body:
                    raise PayloadTooLarge(f"the request body exceeds {self._max_body} bytes")
            return message

        return limited


def _request_id(offered: bytes | None) -> str:
    if offered is not None:
        text = offered.decode("latin-1")
        if REQUEST_ID.match(text):
            return text
    return new_id("req")
