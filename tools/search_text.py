"""Search results as a model should read them: plain text, absolute web URLs, no repeats."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from tools.base import JsonObject
from tools.search_backends import SearchHit

__all__ = ["normalised_results", "plain_text", "web_url"]

_TAG = re.compile(r"<\s*(/?)\s*([a-zA-Z][a-zA-Z0-9]*)?[^>]*>")
# Highlighting and inline formatting: removed without leaving a space.
_INLINE = frozenset({"b", "strong", "em", "i", "u", "mark", "span", "a", "small", "sup", "sub"})
_SPACE = re.compile(r"\s+")
MAX_URL_LENGTH = 2048


def _tag_gap(match: re.Match[str]) -> str:
    return "" if (match.group(2) or "").lower() in _INLINE else " "


def plain_text(text: str) -> str:
    """`text` without HTML tags and entities, whitespace collapsed."""
    without_tags = _TAG.sub(_tag_gap, text)
    return _SPACE.sub(" ", html.unescape(without_tags)).strip()


def web_url(url: str) -> str | None:
    """`url` when it is an absolute http(s) URL with a host, else None."""
    candidate = url.strip()
    if not candidate or len(candidate) > MAX_URL_LENGTH or any(c.isspace() for c in candidate):
        return None
    try:
        parts = urlsplit(candidate)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return candidate


def normalised_results(hits: Iterable[SearchHit], limit: int) -> list[JsonObject]:
    """At most `limit` results, each `{title, url, snippet}`; hits without a web URL dropped."""
    results: list[JsonObject] = []
    seen: set[str] = set()
    for hit in hits:
        url = web_url(hit.url)
        if url is None or url in seen:
            continue
        seen.add(url)
        results.append(
            {"title": plain_text(hit.title) or url, "url": url, "snippet": plain_text(hit.snippet)}
        )
        if len(results) >= limit:
            break
    return results
