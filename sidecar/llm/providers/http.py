"""What every HTTP provider adapter shares: sending a call, reading its errors, its stream.

Calls go through a `Transport`: the service's `LeanTransport` (a lean HTTP/1.1 client,
see `lean_http`), or `HttpxTransport` over an httpx client, whose `MockTransport` the
adapters' tests use. Not the vendors' SDKs: one connection pool per process for every
provider, no model objects built for every chunk, our own SSE reader, and retries left
to routing (docs/responses.md has the figures).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import httpx
import orjson

from sidecar.llm.providers.base import Finish, ModelEvent, ProviderError, ProviderTimeout
from sidecar.llm.providers.sse import ServerEvent, server_events

__all__ = [
    "RETRYABLE_STATUSES",
    "Answer",
    "Endpoint",
    "HttpxTransport",
    "StreamReader",
    "Transport",
    "error_from",
    "post_json",
    "post_stream",
    "turn_events",
]

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
_MAX_ERROR_BODY = 65_536


@dataclass(frozen=True)
class Endpoint:
    """Where a provider is and how to authenticate; `name` is the provider's, for messages."""

    name: str
    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path


class Answer(Protocol):
    """A provider's answer: status and headers, then the body as it comes."""

    status: int
    headers: Mapping[str, str]

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body's pieces; `ProviderError` when it breaks off or stops coming."""
        ...


class StreamReader(Protocol):
    """Reads one wire's stream: its model events, whether the turn is over, its finish."""

    @property
    def done(self) -> bool:
        """Whether the stream's terminal event came (nothing more to read)."""
        ...

    def read(self, event: ServerEvent) -> list[ModelEvent]:
        """The model events one server-sent event carries."""
        ...

    def finish(self) -> Finish:
        """The turn's finish; `ProviderError` for a stream that ended without one."""
        ...


class Transport(Protocol):
    """Sends provider calls (`LeanTransport` in the service, `HttpxTransport` in tests)."""

    def post(
        self, url: str, headers: Mapping[str, str], body: bytes, seconds: float | None
    ) -> AbstractAsyncContextManager[Answer]:
        """POST `body`; the answer once its head came, `ProviderError` when none comes."""
        ...


async def turn_events(
    transport: Transport,
    endpoint: Endpoint,
    path: str,
    body: dict[str, Any],
    *,
    seconds: float | None,
    streaming: bool,
    whole: Callable[[Any], list[ModelEvent]],
    reader: StreamReader,
) -> AsyncIterator[ModelEvent]:
    """A turn's events: from a whole answer (`whole`), or read from a stream (`reader`)."""
    if not streaming:
        for event in whole(await post_json(transport, endpoint, path, body, seconds=seconds)):
            yield event
        return
    events = post_stream(transport, endpoint, path, body, seconds=seconds)
    # An async generator: closed here, the answer (and its connection) is closed at once.
    async with aclosing(cast(AsyncGenerator[ServerEvent, None], events)) as server_events:
        async for server_event in server_events:
            for model_event in reader.read(server_event):
                yield model_event
            if reader.done:
                break
    yield reader.finish()


async def post_json(
    transport: Transport,
    endpoint: Endpoint,
    path: str,
    body: dict[str, Any],
    *,
    seconds: float | None,
) -> Any:
    """POST `body`; the parsed JSON answer, or `ProviderError`."""
    async with _exchange(transport, endpoint, path, body, seconds) as answer:
        try:
            content = b"".join([piece async for piece in answer.aiter_bytes()])
        except ProviderError as exc:
            raise _named(exc, endpoint.name) from None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        raise ProviderError(
            f"provider {endpoint.name!r} answered with something that is not JSON", status=502
        ) from None


async def post_stream(
    transport: Transport,
    endpoint: Endpoint,
    path: str,
    body: dict[str, Any],
    *,
    seconds: float | None,
) -> AsyncIterator[ServerEvent]:
    """POST `body` and read the answer as server-sent events."""
    async with _exchange(transport, endpoint, path, body, seconds) as answer:
        try:
            async for event in server_events(answer.aiter_bytes()):
                yield event
        except ProviderError as exc:
            raise _named(exc, endpoint.name) from None


@asynccontextmanager
async def _exchange(
    transport: Transport,
    endpoint: Endpoint,
    path: str,
    body: dict[str, Any],
    seconds: float | None,
) -> AsyncIterator[Answer]:
    headers = {"content-type": "application/json", **endpoint.headers}
    try:
        async with transport.post(
            endpoint.url(path), headers, orjson.dumps(body), seconds
        ) as answer:
            if answer.status >= 400:
                content = await _error_body(answer)
                raise error_from(endpoint.name, answer.status, content, answer.headers)
            yield answer
    except ProviderError as exc:
        if exc.message.startswith("provider "):
            raise
        raise _named(exc, endpoint.name) from None


def _named(error: ProviderError, provider: str) -> ProviderError:
    """The error with the provider's name in front of its message."""
    message = f"provider {provider!r} {error.message}"
    if isinstance(error, ProviderTimeout):
        return ProviderTimeout(message)
    return ProviderError(
        message,
        status=error.status,
        code=error.code,
        retryable=error.retryable,
        retry_after=error.retry_after,
    )


class HttpxTransport:
    """The transport over an httpx client (whose `MockTransport` the adapters' tests use)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    @asynccontextmanager
    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, seconds: float | None
    ) -> AsyncIterator[Answer]:
        total = seconds if seconds is not None else 600.0
        request = self._client.build_request(
            "POST",
            url,
            content=body,
            headers=dict(headers),
            timeout=httpx.Timeout(total, connect=min(10.0, total)),
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException:
            raise ProviderTimeout("did not answer in time") from None
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"could not be reached: {type(exc).__name__}",
                code="provider_unreachable",
                retryable=True,
            ) from None
        try:
            yield _HttpxAnswer(response)
        finally:
            await response.aclose()


class _HttpxAnswer:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for piece in self._response.aiter_bytes():
                yield piece
        except httpx.TimeoutException:
            raise ProviderTimeout("stopped sending") from None
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"broke off: {type(exc).__name__}",
                status=502,
                code="provider_stream_broken",
                retryable=True,
            ) from None


async def _error_body(answer: Answer) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in answer.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_ERROR_BODY:
                break
    except ProviderError:
        pass
    return b"".join(chunks)[:_MAX_ERROR_BODY]


def error_from(
    provider: str, status: int, content: bytes, headers: Mapping[str, str] | None = None
) -> ProviderError:
    """The error of a failed call: the provider's own message when its body has one."""
    message = _provider_message(content)
    text = f"provider {provider!r} answered {status}"
    return ProviderError(
        f"{text}: {message}" if message else text,
        status=status,
        code=_code_for(status),
        retryable=status in RETRYABLE_STATUSES,
        retry_after=_retry_after(headers or {}),
    )


def _provider_message(content: bytes) -> str:
    """`error.message` (OpenAI, Anthropic, most compatible servers), or `message`."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return ""


def _code_for(status: int) -> str:
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "provider_auth_failed"
    if status == 404:
        return "model_not_found"
    if status < 500:
        return "provider_rejected"
    return "provider_error"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """`retry-after-ms`, or `Retry-After` in seconds or as an HTTP date."""
    lowered = {name.lower(): value for name, value in headers.items()}
    milliseconds = lowered.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(float(milliseconds) / 1000, 0.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)
