"""The HTTP edge: request ids, access logs, metrics, bearer auth and the body size limit.

One pure ASGI middleware, so every request pays for one layer, not five.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sidecar.api.wire import error_response
from sidecar.errors import PayloadTooLarge, SidecarError, Unauthorized
from sidecar.ids import new_id
from sidecar.logs import bind_request_id, get_logger, info_enabled
from sidecar.metrics import Metrics

__all__ = ["EdgeMiddleware"]

log = get_logger("sidecar.http")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})


class EdgeMiddleware:
    """Wraps every HTTP request of the app."""

    def __init__(
        self, app: ASGIApp, *, api_keys: Sequence[str], max_body_bytes: int, metrics: Metrics
    ) -> None:
        self._app = app
        self._keys = [key.encode() for key in api_keys]
        self._max_body = max_body_bytes
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        offered, authorization, length = _edge_headers(scope)
        request_id = _request_id(offered)
        bind_request_id(request_id)
        id_header = (b"x-request-id", request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            problem = self._refusal(scope["path"], authorization, length)
            if problem is not None:
                await error_response(problem, _auth_header(problem))(scope, receive, send_with_id)
            elif length is not None and length.isdigit():
                # The server reads exactly `content-length` bytes, checked above.
                await self._app(scope, receive, send_with_id)
            else:
                await self._app(scope, self._limited(receive), send_with_id)
        finally:
            self._metrics.observe_request(scope["method"], status)
            if info_enabled():
                log.info(
                    "http.request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                )

    def _refusal(
        self, path: str, authorization: bytes | None, length: bytes | None
    ) -> SidecarError | None:
        if self._keys and path not in PUBLIC_PATHS and not self._authorized(authorization):
            return Unauthorized("missing or invalid bearer API key")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            return PayloadTooLarge(f"the request body exceeds {self._max_body} bytes")
        return None

    def _authorized(self, authorization: bytes | None) -> bool:
        scheme, _, token = (authorization or b"").partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return False
        presented = token.strip()
        return any(hmac.compare_digest(presented, key) for key in self._keys)

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


def _edge_headers(scope: Scope) -> tuple[bytes | None, bytes | None, bytes | None]:
    """The request id, authorization and content-length headers, in one pass."""
    offered = authorization = length = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            offered = value
        elif name == b"authorization":
            authorization = value
        elif name == b"content-length":
            length = value
    return offered, authorization, length


def _request_id(offered: bytes | None) -> str:
    if offered is not None:
        text = offered.decode("latin-1")
        if REQUEST_ID.match(text):
            return text
    return new_id("req")


def _auth_header(problem: SidecarError) -> dict[str, str] | None:
    return {"www-authenticate": "Bearer"} if isinstance(problem, Unauthorized) else None
