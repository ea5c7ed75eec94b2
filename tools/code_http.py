"""The `http` helper of code tools, parent side: requests the sandboxed code asks for.

The sandboxed process has no network; it sends each request over its pipe and the
service makes it here, through the outbound guard (the context's HTTP client), with
the pinning rules of HTTP tools: a request that carries one of the call's secrets
may only go to a host the tool lists in `allowed_hosts`, and a listed set of hosts
bounds every request.

Pinning checks the request as it will be sent, not the arguments the code gave:
the method, every part of the URL, each header's name and value, and the body
(raw, and its JSON keys and values or form fields). Like every masker this guards
against accidents and careless code, not against code that transforms a secret on
purpose (reversed, XOR-ed, split across requests).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_plus

import httpx

from tools.base import JsonObject, OutboundBlocked, OutboundCall, SecretMask, ToolContext
from tools.http_response import read_result

__all__ = ["MAX_REQUESTS_PER_CALL", "outbound_call", "secret_place"]

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
            return _refused("invalid_request", ctx.mask.redact(str(exc)))
        host = prepared.url.host.lower()
        shown = ctx.mask.redact(host)
        if allowed and host not in allowed:
            return _refused(
                "host_not_allowed", f"host {shown!r} is not in the tool's allowed_hosts"
            )
        place = secret_place(prepared, ctx.mask)
        if place is not None and host not in allowed:
            return _refused(
                "secret_egress_denied",
                f"the request carries a secret in its {place}; a request carrying a secret "
                f"may only go to a host in allowed_hosts, not {shown!r}",
            )
        return await _send(ctx, prepared, request, place is not None, allowed, max_response_bytes)

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
    form: dict[str, str] | None = None
    if "json" in request:
        content = json.dumps(request["json"], ensure_ascii=False).encode()
        headers.setdefault("content-type", "application/json")
    elif isinstance(request.get("data"), str):
        content = str(request["data"]).encode()
    elif "form" in request:
        form = _string_map(request["form"], "form")
    # An empty `params` would replace the query string the URL already has.
    return client.build_request(
        method, url, headers=headers, params=params or None, content=content, data=form
    )


def _string_map(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict of strings")
    return {str(key): str(item) for key, item in value.items()}


def secret_place(request: httpx.Request, mask: SecretMask) -> str | None:
    """The part of `request`, as it will be sent, that carries a secret; None when none does.

    Each part is checked as it goes on the wire and, where it has an encoding of its
    own (percent-encoding, JSON, form fields), decoded as well; the mask knows each
    secret's usual encodings (JSON, URL, base64, HTML and XML entities, shell quoting).
    """
    for place, texts in _request_parts(request):
        if any(mask.finds(text) for text in texts):
            return place
    return None


def _request_parts(request: httpx.Request) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Each part of the request with the texts a secret could hide in, in wire order."""
    url = request.url
    yield "method", (request.method,)
    userinfo = url.userinfo.decode("ascii", "replace")
    yield "URL userinfo", (userinfo, unquote(userinfo))
    yield "URL host", (url.host, url.raw_host.decode("ascii", "replace"))
    if url.port is not None:
        yield "URL port", (str(url.port),)
    path = url.raw_path.split(b"?", 1)[0].decode("ascii", "replace")
    yield "URL path", (path, unquote(path))
    query = url.query.decode("ascii", "replace")
    for field in query.split("&"):
        name, _, value = field.partition("=")
        yield "URL query parameter name", (name, unquote_plus(name))
        yield "URL query value", (value, unquote_plus(value))
    for raw_name, raw_value in request.headers.raw:
        yield "header name", _decodings(raw_name)
        yield "header value", _decodings(raw_value)
    yield from _body_parts(request)


def _body_parts(request: httpx.Request) -> Iterator[tuple[str, tuple[str, ...]]]:
    body = request.content
    if not body:
        return
    text = body.decode("utf-8", "replace")
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    try:
        document = json.loads(text)
    except ValueError:
        pass
    else:
        for place, item in _json_strings(document):
            yield f"body (a JSON {place})", (item,)
    if media_type == "application/x-www-form-urlencoded":
        for name, value in parse_qsl(text, keep_blank_values=True):
            yield "body (a form field name)", (name,)
            yield "body (a form field value)", (value,)
    yield "body", (text,)


def _json_strings(value: object) -> Iterator[tuple[str, str]]:
    """Every key and every scalar of a parsed JSON document, as text."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield "key", key
            yield from _json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_strings(item)
    elif value is not None:
        yield "value", value if isinstance(value, str) else json.dumps(value)


def _decodings(raw: bytes) -> tuple[str, ...]:
    """A header's bytes as text: UTF-8, and Latin-1 where that differs."""
    utf8 = raw.decode("utf-8", "replace")
    latin1 = raw.decode("latin-1")
    return (utf8,) if utf8 == latin1 else (utf8, latin1)


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
    host = ctx.mask.redact(request.url.host)
    try:
        response = await _follow(ctx.http, request, carries_secret, allowed)
        try:
            return {"ok": True, **await read_result(response, max_response_bytes, ctx.mask)}
        finally:
            await response.aclose()
    except OutboundBlocked as exc:
        return _refused("outbound_blocked", ctx.mask.redact(exc.message))
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
