"""Fetching a web page for the scraper: redirects one by one, a byte cap, one deadline.

The client is the service's guarded one, so every connection (each redirect hop
included) goes through the outbound guard. Redirects are followed here, not by the
client, to count them and to ask `allowed` (robots.txt, when the operator wants it)
about every URL before it is requested. The body is streamed and cut at `max_bytes`;
a type that is not text is refused from its headers, before its body is read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from tools.base import InvalidArguments, ToolError, UpstreamError, UpstreamTimeout
from tools.http_response import failure_kind, read_capped

__all__ = ["FetchLimits", "Page", "fetch_page", "host_of", "is_text_type"]

TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xhtml+xml",
        "application/xml",
        "application/javascript",
        "application/ecmascript",
        "application/x-javascript",
        "application/ld+json",
        "application/rss+xml",
        "application/atom+xml",
    }
)
REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class FetchLimits:
    """How far a fetch may go."""

    max_bytes: int = 5_242_880
    max_redirects: int = 5
    user_agent: str = "orq-sidecar-web-scraper/0.1 (+tool execution for LLM agents)"


@dataclass(frozen=True)
class Page:
    """What a fetch brought back."""

    url: str
    final_url: str
    status_code: int
    content_type: str  # the media type, lower case, without parameters ("" when absent)
    charset: str | None  # from the Content-Type header
    body: bytes
    truncated: bool


def host_of(url: str) -> str:
    """The host (and port) of a URL, for messages: never its path or query."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


def is_text_type(media_type: str) -> bool:
    """Whether a media type is text the scraper can read."""
    return (
        media_type.startswith("text/")
        or media_type in TEXT_TYPES
        or media_type.endswith(("+json", "+xml"))
    )


async def fetch_page(
    client: httpx.AsyncClient,
    url: str,
    limits: FetchLimits,
    *,
    allowed: Callable[[str], Awaitable[None]] | None = None,
) -> Page:
    """GET `url`, following at most `limits.max_redirects` redirects; the caller bounds the time."""
    current = _checked_url(url)
    for _ in range(limits.max_redirects + 1):
        if allowed is not None:
            await allowed(current)
        request = client.build_request(
            "GET",
            current,
            headers={
                "User-Agent": limits.user_agent,
                "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5",
            },
        )
        where = host_of(current)
        with _failures(f"{where} did not answer in time", f"request to {where} failed"):
            response = await client.send(request, stream=True, follow_redirects=False)
        try:
            location = response.headers.get("location")
            if response.status_code in REDIRECTS and location:
                current = _checked_url(urljoin(current, location), redirected=True)
                continue
            return await _read(response, url, current, limits)
        finally:
            await response.aclose()
    raise ToolError(
        f"more than {limits.max_redirects} redirects, last to {host_of(current)}",
        code="too_many_redirects",
    )


async def _read(response: httpx.Response, url: str, final_url: str, limits: FetchLimits) -> Page:
    media_type, charset = _content_type(response.headers.get("content-type", ""))
    if media_type and not is_text_type(media_type):
        raise ToolError(
            f"{host_of(final_url)} answered {media_type!r}, which is not a text page "
            "(the scraper reads HTML, text and JSON)",
            code="unsupported_content_type",
        )
    where = host_of(final_url)
    with _failures(f"{where} stopped sending", f"reading from {where} failed"):
        body, truncated = await read_capped(response, limits.max_bytes)  # decoded: gzip too
    return Page(url, final_url, response.status_code, media_type, charset, body, truncated)


@contextmanager
def _failures(timed_out: str, failed: str) -> Iterator[None]:
    """Transport failures as the tool's errors: a timeout, or what went wrong."""
    try:
        yield
    except httpx.TimeoutException:
        raise UpstreamTimeout(timed_out) from None
    except httpx.RequestError as exc:
        raise UpstreamError(f"{failed}: {failure_kind(exc)}") from None


def _content_type(header: str) -> tuple[str, str | None]:
    media_type, _, parameters = header.partition(";")
    charset = None
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    return media_type.strip().lower(), charset


def _checked_url(url: str, *, redirected: bool = False) -> str:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.hostname:
        return url
    if redirected:
        raise UpstreamError("a redirect pointed to something that is not an http(s) URL")
    raise InvalidArguments("url must be an absolute http(s) URL", param="url")
