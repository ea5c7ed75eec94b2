"""Provider calls on the service's lean HTTP/1.1 client (`sidecar.lean_http`).

`LeanTransport` is the `Transport` the service gives its providers: the lean client's
keep-alive connections, its failures said as `ProviderError`s (which routing retries
and which it reports).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from sidecar.lean_http import (
    BodyBroken,
    BrokenHttp,
    ClosedBeforeAnswer,
    HttpFailure,
    LeanHttp,
    LeanResponse,
    RequestRefused,
    Unreachable,
)
from sidecar.llm.providers.base import ProviderError, ProviderTimeout

__all__ = ["LeanTransport", "ProviderAnswer"]


class ProviderAnswer:
    """A provider's answer on the lean client; its body's failures are `ProviderError`s."""

    def __init__(self, response: LeanResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body's pieces until it is complete."""
        try:
            async for piece in self._response.aiter_bytes():
                yield piece
        except HttpFailure as exc:
            raise provider_error(exc) from None

    async def aread(self) -> bytes:
        """The whole body."""
        return b"".join([piece async for piece in self.aiter_bytes()])


class LeanTransport:
    """Keep-alive connections per origin for provider calls."""

    def __init__(
        self,
        *,
        user_agent: str = "orq-sidecar",
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 256,
    ) -> None:
        self._http = LeanHttp(
            user_agent=user_agent, ssl_context=ssl_context, max_connections=max_connections
        )

    @asynccontextmanager
    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, seconds: float | None
    ) -> AsyncIterator[ProviderAnswer]:
        """POST `body`; the answer once its head came (`ProviderError` otherwise)."""
        try:
            async with self._http.post(url, headers, body, seconds) as response:
                yield ProviderAnswer(response)  # its body's failures are mapped as they come
        except HttpFailure as exc:
            raise provider_error(exc) from None

    async def aclose(self) -> None:
        """Close every kept connection."""
        await self._http.aclose()


def provider_error(failure: HttpFailure) -> ProviderError:
    """The lean client's failure as routing reads it: retryable unless the request was bad."""
    message = str(failure)
    if isinstance(failure, RequestRefused):
        return ProviderError(message.replace("an address", "a provider address"))
    if isinstance(failure, BrokenHttp):
        return ProviderError(message, status=502)
    if isinstance(failure, BodyBroken):
        return ProviderError(message, status=502, code="provider_stream_broken", retryable=True)
    if isinstance(failure, ClosedBeforeAnswer):
        return ProviderError(message, status=502, code="provider_unreachable", retryable=True)
    if isinstance(failure, Unreachable):
        return ProviderError(message, code="provider_unreachable", retryable=True)
    return ProviderTimeout(message)  # no connection, head or body within the call's time
