"""Reading an HTTP tool's upstream response into a plain-JSON result, size-capped."""

from __future__ import annotations

import codecs
import contextlib
import json
from collections.abc import AsyncGenerator
from typing import cast

import httpx

from tools.base import JsonObject, JsonValue, SecretMask

__all__ = [
    "SAFE_HEADERS",
    "failure_kind",
    "parse_body",
    "read_capped",
    "read_result",
    "safe_headers",
]

# What a failed exchange with an upstream was, in words a model can act on.
_FAILURE_KINDS: tuple[tuple[type[httpx.HTTPError], str], ...] = (
    (httpx.ConnectError, "could not connect"),
    (httpx.ReadError, "the connection broke while reading the response"),
    (httpx.WriteError, "the connection broke while sending the request"),
    (httpx.RemoteProtocolError, "the server closed the connection or broke the HTTP protocol"),
    (httpx.UnsupportedProtocol, "unsupported URL scheme"),
    (httpx.DecodingError, "the response body could not be decoded"),
)

SAFE_HEADERS = frozenset(
    {
        "content-type",
        "content-language",
        "location",
        "retry-after",
        "etag",
        "last-modified",
        "cache-control",
        "date",
        "x-request-id",
    }
)
_SAFE_PREFIXES = ("x-ratelimit-", "ratelimit-")


def failure_kind(exc: httpx.HTTPError) -> str:
    """What went wrong in an exchange, in words (the exception's type when it is unusual)."""
    return next((kind for cls, kind in _FAILURE_KINDS if isinstance(exc, cls)), type(exc).__name__)


def safe_headers(headers: httpx.Headers) -> dict[str, JsonValue]:
    """The response headers worth showing the model; cookies and the like are dropped."""
    out: dict[str, JsonValue] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in SAFE_HEADERS or lower.startswith(_SAFE_PREFIXES):
            out[lower] = value
    return out


async def read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the (decoded) body, and whether there was more."""
    chunks: list[bytes] = []
    size = 0
    iterator = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
    async with contextlib.aclosing(iterator) as body:
        async for chunk in body:
            if size + len(chunk) > limit:
                chunks.append(chunk[: limit - size])
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks), False


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _reject_constant(name: str) -> JsonValue:
    raise ValueError(f"{name} is not JSON")


def _decode(content: bytes, charset: str | None) -> str:
    encoding = charset or "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        encoding = "utf-8"
    return content.decode(encoding, errors="replace")


def parse_body(
    content: bytes,
    content_type: str,
    charset: str | None,
    *,
    truncated: bool,
    mask: SecretMask,
) -> JsonValue:
    """Parsed JSON when the response is complete JSON, else the decoded text.

    A truncated body is text whose end may cut through a secret: `mask` redacts it,
    the cut-off start of a secret at its end included.
    """
    text = _decode(content, charset)
    if truncated:
        return mask.redact_truncated(text)
    if _is_json(content_type):
        try:
            return cast(JsonValue, json.loads(text, parse_constant=_reject_constant))
        except ValueError:
            pass
    return text


async def read_result(response: httpx.Response, limit: int, mask: SecretMask) -> JsonObject:
    """The tool result for `response`: status, safe headers, body, truncated."""
    content, truncated = await read_capped(response, limit)
    body = parse_body(
        content,
        response.headers.get("content-type", ""),
        response.charset_encoding,
        truncated=truncated,
        mask=mask,
    )
    return {
        "status_code": response.status_code,
        "headers": safe_headers(response.headers),
        "body": body,
        "truncated": truncated,
    }
