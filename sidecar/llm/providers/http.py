"""What every HTTP provider adapter shares: sending a call, reading its errors, its stream.

The clients are httpx with our own SSE reader rather than the vendors' SDKs: one
shared connection pool per process, no model objects built for every chunk, and
retries left to routing (see the README's performance section for the figures).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from sidecar.llm.providers.base import ProviderError, ProviderTimeout
from sidecar.llm.providers.sse import ServerEvent, server_events

__all__ = ["RETRYABLE_STATUSES", "Endpoint", "error_from", "post_json", "post_stream"]

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


def _timeout(seconds: float | None) -> httpx.Timeout:
    # A provider may think for a long while before its first byte: the read timeout
    # is the call's whole budget, the connect timeout a short part of it.
    total = seconds if seconds is not None else 600.0
    return httpx.Timeout(total, connect=min(10.0, total))


async def post_json(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    path: str,
    body: dict[str, Any],
    *,
    seconds: float | None,
) -> Any:
    """POST `body`; the parsed JSON answer, or `ProviderError`."""
    async with _exchange(client, endpoint, path, body, seconds) as response:
        try:
            content = await response.aread()
        except httpx.TimeoutException:
            raise ProviderTimeout(f"provider {endpoint.name!r} stopped sending") from None
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"the answer of provider {endpoint.name!r} broke off: {type(exc).__name__}",
                status=502,
                code="provider_stream_broken",
                retryable=True,
            ) from None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        raise ProviderError(
            f"provider {endpoint.name!r} answered with something that is not JSON", status=502
        ) from None


async def post_stream(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    path: str,
    body: dict[str, Any],
    *,
    seconds: float | None,
) -> AsyncIterator[ServerEvent]:
    """POST `body` and read the answer as server-sent events."""
    async with _exchange(client, endpoint, path, body, seconds) as response:
        try:
            async for event in server_events(response.aiter_bytes()):
                yield event
        except httpx.TimeoutException:
            raise ProviderTimeout(f"provider {endpoint.name!r} stopped sending") from None
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"the stream from provider {endpoint.name!r} broke: {type(exc).__name__}",
                code="provider_stream_broken",
            ) from None


@asynccontextmanager
async def _exchange(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    path: str,
    body: dict[str, Any],
    seconds: float | None,
) -> AsyncIterator[httpx.Response]:
    request = client.build_request(
        "POST",
        endpoint.url(path),
        content=orjson.dumps(body),
        headers={"content-type": "application/json", **endpoint.headers},
        timeout=_timeout(seconds),
    )
    try:
        response = await client.send(request, stream=True)
    except httpx.TimeoutException:
        raise ProviderTimeout(f"provider {endpoint.name!r} did not answer in time") from None
    except httpx.HTTPError as exc:
        raise ProviderError(
            f"provider {endpoint.name!r} could not be reached: {type(exc).__name__}",
            code="provider_unreachable",
            retryable=True,
        ) from None
    try:
        if response.status_code >= 400:
            content = await _error_body(response)
            raise error_from(endpoint.name, response.status_code, content, response.headers)
        yield response
    finally:
        await response.aclose()


async def _error_body(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_ERROR_BODY:
                break
    except httpx.HTTPError:
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
