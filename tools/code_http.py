"""The `http` helper of code tools, parent side: requests the sandboxed code asks for.

The sandboxed process has no network; it sends each request over its pipe and the
service makes it here, through the outbound guard (the context's HTTP client), with
the pinning rules of HTTP tools: a request that carries one of the call's secrets
may only go to a host the tool lists in `allowed_hosts`, and a listed set of hosts
bounds every request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, unquote_plus

import httpx

from tools.base import JsonObject, OutboundBlocked, OutboundCall, ToolContext
from tools.http_response import read_result

__all__ = ["MAX_REQUESTS_PER_CALL", "outbound_call"]

MAX_REQUESTS_PER_CALL = 32
MAX_REDIRECTS = 5
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})


def outbound_call(
    ctx: ToolContext, allowed_hosts: Sequence[str], *, max_response_bytes: int
) -> OutboundCall:
    """The handler that answers one code run's `http` requests."""
    allowed = {host.lower() for host in allowed_hosts}
    made = 0

    async def call(request: JsonObject) -> JsonObject:
        nonlocal made
        made += 1
        if made > MAX_REQUESTS_PER_CALL:
            return _refused("too_many_requests", f"at most {MAX_REQUESTS_PER_CALL} per call")
        try:
            prepared = _prepare(ctx.http, request)
        except (ValueError, TypeError, httpx.InvalidURL) as exc:
            return _refused("invalid_request", str(exc))
        host = prepared.url.host.lower()
        if allowed and host not in allowed:
            return _refused("host_not_allowed", f"host {host!r} is not in the tool's allowed_hosts")
        carries_secret = _carries_secret(prepared, ctx.contains_secret)
        if carries_secret and host not in allowed:
            return _refused(
                "secret_egress_denied",
                f"a request carrying a secret may only go to a host in allowed_hosts, not {host!r}",
            )
        return await _send(ctx, prepared, request, carries_secret, allowed, max_response_bytes)

    return call


def _prepare(client: httpx.AsyncClient, request: JsonObject) -> httpx.Request:
    method = str(request.get("method", "GET")).upper()
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not supported")
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise ValueError("a request needs a url")
    headers = _string_map(request.get("headers"), "headers")
    params = _string_map(request.get("params"), "params")
    content: bytes | None = None
    if "json" in request:
        content = json.dumps(request["json"], ensure_ascii=False).encode()
        headers.setdefault("content-type", "application/json")
    elif isinstance(request.get("data"), str):
        content = str(request["data"]).encode()
    # An empty `params` would replace the query string the URL already has.
    return client.build_request(
        method, url, headers=headers, params=params or None, content=content
    )


def _string_map(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict of strings")
    return {str(key): str(item) for key, item in value.items()}


def _carries_secret(request: httpx.Request, contains_secret: Callable[[str], bool]) -> bool:
    # The service's detector knows each secret's encodings (percent, JSON, base64...),
    # and the request is checked as it will be sent.
    url = str(request.url)
    texts = [
        url,
        unquote(url),
        unquote_plus(url),
        *request.headers.values(),
        request.content.decode(errors="replace"),
    ]
    return any(contains_secret(text) for text in texts)


async def _send(
    ctx: ToolContext,
    request: httpx.Request,
    asked: JsonObject,
    carries_secret: bool,
    allowed: set[str],
    max_response_bytes: int,
) -> JsonObject:
    wanted = asked.get("timeout")
    timeout = min(
        float(wanted) if isinstance(wanted, int | float) else 30.0, ctx.deadline.remaining()
    )
    request.extensions["timeout"] = httpx.Timeout(max(timeout, 0.001)).as_dict()
    host = request.url.host
    try:
        response = await _follow(ctx.http, request, carries_secret, allowed)
        try:
            return {"ok": True, **await read_result(response, max_response_bytes)}
        finally:
            await response.aclose()
    except OutboundBlocked as exc:
        return _refused("outbound_blocked", exc.message)
    except httpx.TimeoutException:
        return _refused("upstream_timeout", f"host {host!r} did not answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return _refused("upstream_error", f"request to host {host!r} failed: {type(exc).__name__}")


async def _follow(
    client: httpx.AsyncClient, request: httpx.Request, carries_secret: bool, allowed: set[str]
) -> httpx.Response:
    """Send, following redirects while each hop stays allowed; else the 3xx is the answer.

    Each hop stays within `allowed_hosts` when the tool lists any, and a request that
    carries a secret never leaves its origin.
    """
    origin = (request.url.scheme, request.url.host, request.url.port)
    for _ in range(MAX_REDIRECTS):
        response = await client.send(request, stream=True, follow_redirects=False)
        following = response.next_request
        if following is None:
            return response
        host = following.url.host.lower()
        moved = (following.url.scheme, following.url.host, following.url.port) != origin
        if (allowed and host not in allowed) or (carries_secret and moved):
            return response
        await response.aclose()
        request = following
    return await client.send(request, stream=True, follow_redirects=False)


def _refused(code: str, message: str) -> JsonObject:
    return {"ok": False, "code": code, "message": message}
