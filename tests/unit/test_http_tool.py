"""The HTTP tool: binding, rendering, egress pinning, redirects, response reading, failures."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import SocketAttribute, SocketStream
from pydantic import ValidationError

from sidecar.templating import PlaceholderRenderer
from tools.base import (
    Binding,
    Deadline,
    InvalidArguments,
    JsonObject,
    OutboundBlocked,
    Secret,
    SecretEgressDenied,
    Tool,
    ToolContext,
    ToolError,
    UpstreamError,
    UpstreamTimeout,
    VariableValue,
)
from tools.http import HttpArgument, HttpBlueprint, HttpSpec, HttpTool

pytestmark = pytest.mark.anyio

TOKEN = "tok-5ecret-VALUE"
Handler = Callable[[httpx.Request], httpx.Response]


def make_tool(
    blueprint: dict[str, Any],
    arguments: dict[str, Any] | None = None,
    **options: int,
) -> HttpTool:
    spec = HttpSpec.model_validate({"blueprint": blueprint, "arguments": arguments or {}})
    return HttpTool(name="t", description="A test tool", spec=spec, **options)


def make_ctx(
    client: httpx.AsyncClient,
    variables: Mapping[str, VariableValue] | None = None,
    seconds: float = 10,
) -> ToolContext:
    return ToolContext(
        call_id="c1",
        deadline=Deadline.after(seconds),
        variables=dict(variables or {}),
        http=client,
        renderer=PlaceholderRenderer(),
    )


class Upstream:
    """A MockTransport peer that records every request it receives."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self._handler = handler or (lambda _: httpx.Response(200, json={"ok": True}))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._handler(request)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


async def call(
    tool: HttpTool,
    arguments: JsonObject | None = None,
    variables: Mapping[str, VariableValue] | None = None,
    upstream: Upstream | None = None,
) -> tuple[dict[str, Any], Upstream]:
    upstream = upstream or Upstream()
    async with upstream.client() as client:
        result = await tool.run(arguments or {}, make_ctx(client, variables))
    assert isinstance(result.value, dict)
    return result.value, upstream


async def call_fails(
    tool: HttpTool,
    arguments: JsonObject | None = None,
    variables: Mapping[str, VariableValue] | None = None,
    upstream: Upstream | None = None,
) -> tuple[ToolError, Upstream]:
    upstream = upstream or Upstream()
    async with upstream.client() as client:
        with pytest.raises(ToolError) as caught:
            await tool.run(arguments or {}, make_ctx(client, variables))
    assert TOKEN not in caught.value.message
    assert TOKEN not in str(caught.value)
    return caught.value, upstream


# --- the wire models --------------------------------------------------------------------


def test_blueprint_normalises_the_method_and_defaults() -> None:
    blueprint = HttpBlueprint.model_validate({"url": "https://h.example", "method": "post"})
    assert blueprint.method == "POST"
    assert blueprint.timeout == 60
    assert blueprint.headers == {}
    assert blueprint.body is None


@pytest.mark.parametrize(
    "blueprint",
    [
        {"url": ""},
        {"url": "https://h", "method": "TRACE"},
        {"url": "https://h", "timeout": 0},
        {"url": "https://h", "timeout": 601},
        {"url": "https://h", "headers": {"Bad Name": "x"}},
        {"url": "https://h", "headers": {"X-Ok": {"value": "x", "extra": 1}}},
        {"url": "https://h", "unknown": 1},
    ],
)
def test_blueprint_rejects_bad_input(blueprint: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        HttpBlueprint.model_validate(blueprint)


@pytest.mark.parametrize(
    ("kind", "default"),
    [("string", 1), ("number", "1"), ("number", True), ("boolean", "true"), ("boolean", 0)],
)
def test_argument_default_must_match_its_type(kind: str, default: object) -> None:
    with pytest.raises(ValidationError, match="default_value"):
        HttpArgument.model_validate({"type": kind, "default_value": default})


def test_argument_defaults_keep_their_type() -> None:
    assert HttpArgument.model_validate({"type": "number", "default_value": 5}).default_value == 5
    number = HttpArgument.model_validate({"type": "number", "default_value": 5}).default_value
    assert type(number) is int


def test_argument_names_are_identifiers() -> None:
    with pytest.raises(ValidationError, match="invalid argument name"):
        HttpSpec.model_validate(
            {"blueprint": {"url": "https://h"}, "arguments": {"bad-name": {"type": "string"}}}
        )


def test_the_model_sees_a_schema_of_send_to_model_arguments_only() -> None:
    tool = make_tool(
        {"url": "https://h.example/{{city}}"},
        {
            "city": {"type": "string", "description": "City name"},
            "days": {"type": "number", "default_value": 3},
            "metric": {"type": "boolean", "description": "Metric units"},
            "api_version": {"type": "string", "send_to_model": False, "default_value": "v2"},
        },
    )
    assert isinstance(tool, Tool)
    definition = tool.definition
    assert (definition.name, definition.description) == ("t", "A test tool")
    assert definition.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "days": {"type": "number", "description": ""},
            "metric": {"type": "boolean", "description": "Metric units"},
        },
        "required": ["city", "metric"],
    }


# --- rendering the request ----------------------------------------------------------------


async def test_body_placeholders_keep_their_json_type() -> None:
    tool = make_tool(
        {
            "url": "https://api.example.com/items",
            "method": "POST",
            "body": {
                "count": "{{count}}",
                "flag": "{{flag}}",
                "filters": "{{filters}}",
                "text": "count={{count}}, flag={{flag}}",
                "fixed": [1, None],
            },
        },
        {"count": {"type": "number"}, "flag": {"type": "boolean"}},
    )
    _, upstream = await call(
        tool, {"count": 3, "flag": False}, variables={"filters": {"tags": ["a", "b"]}}
    )
    assert upstream.last.method == "POST"
    assert upstream.last.headers["content-type"] == "application/json"
    assert json.loads(upstream.last.content) == {
        "count": 3,
        "flag": False,
        "filters": {"tags": ["a", "b"]},
        "text": "count=3, flag=false",
        "fixed": [1, None],
    }


async def test_a_blueprint_content_type_is_kept() -> None:
    tool = make_tool(
        {
            "url": "https://api.example.com/x",
            "method": "PUT",
            "headers": {"content-type": "application/vnd.api+json"},
            "body": {"a": 1},
        }
    )
    _, upstream = await call(tool)
    assert upstream.last.headers.get_list("content-type") == ["application/vnd.api+json"]


async def test_no_body_is_sent_without_a_body_template() -> None:
    _, upstream = await call(make_tool({"url": "https://api.example.com/x"}))
    assert upstream.last.content == b""
    assert "content-type" not in upstream.last.headers


async def test_values_are_percent_encoded_in_path_and_query() -> None:
    tool = make_tool(
        {"url": "https://api.example.com/files/{{name}}?q={{name}}&v=1"},
        {"name": {"type": "string"}},
    )
    _, upstream = await call(tool, {"name": "a/b?c=d&e"})
    url = upstream.last.url
    assert url.host == "api.example.com"
    assert url.raw_path == b"/files/a%2Fb%3Fc%3Dd%26e?q=a%2Fb%3Fc%3Dd%26e&v=1"
    assert url.params["q"] == "a/b?c=d&e"
    assert url.params["v"] == "1"


async def test_a_header_with_a_line_break_is_refused() -> None:
    tool = make_tool(
        {"url": "https://api.example.com/", "headers": {"X-Name": "{{name}}"}},
        {"name": {"type": "string"}},
    )
    error, upstream = await call_fails(tool, {"name": "x\r\nSet-Cookie: admin=1"})
    assert isinstance(error, InvalidArguments)
    assert "X-Name" in error.message
    assert "line break" in error.message
    assert "admin" not in error.message
    assert upstream.requests == []


async def test_a_missing_placeholder_is_an_error_naming_it() -> None:
    tool = make_tool({"url": "https://api.example.com/users/{{user_id}}"})
    error, upstream = await call_fails(tool)
    assert isinstance(error, InvalidArguments)
    assert "{{user_id}}" in error.message
    assert error.param == "user_id"
    assert upstream.requests == []


async def test_defaults_fill_what_the_model_left_out_and_the_model_overrides_them() -> None:
    tool = make_tool(
        {"url": "https://api.example.com/{{unit}}/{{days}}"},
        {"unit": {"type": "string", "default_value": "c"}, "days": {"type": "number"}},
    )
    _, upstream = await call(tool, {"days": 2})
    assert upstream.last.url.path == "/c/2"
    _, upstream = await call(tool, {"days": 2.5, "unit": "f"})
    assert upstream.last.url.path == "/f/2.5"


async def test_variables_fill_placeholders_and_arguments_win_over_them() -> None:
    tool = make_tool(
        {"url": "https://api.example.com/{{tenant}}/{{city}}"}, {"city": {"type": "string"}}
    )
    variables = {"tenant": "acme", "city": "Paris"}
    _, upstream = await call(tool, {"city": "Rome"}, variables=variables)
    assert upstream.last.url.path == "/acme/Rome"


async def test_the_model_cannot_set_a_hidden_argument() -> None:
    tool = make_tool(
        {"url": "https://api.example.com/{{account}}"},
        {"account": {"type": "string", "send_to_model": False, "default_value": "mine"}},
    )
    _, upstream = await call(tool, {"account": "someone-else"})
    assert upstream.last.url.path == "/mine"


async def test_a_hidden_argument_without_default_is_not_taken_from_the_model() -> None:
    tool = make_tool(
        {"url": "https://api.example.com/{{account}}"},
        {"account": {"type": "string", "send_to_model": False}},
    )
    error, _ = await call_fails(tool, {"account": "someone-else"})
    assert isinstance(error, InvalidArguments)
    assert "{{account}}" in error.message
    _, upstream = await call(tool, {"account": "x"}, variables={"account": "from-var"})
    assert upstream.last.url.path == "/from-var"


async def test_the_model_cannot_override_a_variable_that_is_no_argument() -> None:
    tool = make_tool({"url": "https://api.example.com/", "headers": {"X-Key": "{{key}}"}})
    _, upstream = await call(tool, {"key": "model-chosen"}, variables={"key": Secret(TOKEN)})
    assert upstream.last.headers["x-key"] == TOKEN


# --- secrets --------------------------------------------------------------------------------


async def test_secrets_reach_the_upstream_in_url_header_and_body() -> None:
    tool = make_tool(
        {
            "url": "https://api.example.com/v1?key={{token}}",
            "method": "POST",
            "headers": {"Authorization": "Bearer {{token}}"},
            "body": {"token": "{{token}}", "note": "t={{token}}"},
        }
    )
    variables = {"token": Secret(TOKEN)}
    _, upstream = await call(tool, variables=variables)
    request = upstream.last
    assert request.url.params["key"] == TOKEN
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {"token": TOKEN, "note": f"t={TOKEN}"}
    async with upstream.client() as client:
        assert TOKEN not in repr(make_ctx(client, variables))
    assert TOKEN not in repr({"token": Binding(Secret(TOKEN))})


async def test_encrypted_header_values_are_sent() -> None:
    tool = make_tool(
        {
            "url": "https://api.example.com/",
            "headers": {"X-Api-Key": {"value": TOKEN, "encrypted": True}},
        }
    )
    _, upstream = await call(tool)
    assert upstream.last.headers["x-api-key"] == TOKEN


HOST_FROM_MODEL = {"host": {"type": "string"}}


@pytest.mark.parametrize(
    "blueprint",
    [
        {"url": "https://{{host}}/x?key={{token}}"},
        {"url": "https://{{host}}/x", "headers": {"Authorization": "Bearer {{token}}"}},
        {"url": "https://{{host}}/x", "method": "POST", "body": {"k": "{{token}}"}},
        {"url": "https://{{host}}/x", "headers": {"X-Key": {"value": TOKEN, "encrypted": True}}},
    ],
)
async def test_a_secret_is_not_sent_to_a_host_the_model_chose(blueprint: dict[str, Any]) -> None:
    tool = make_tool(blueprint, HOST_FROM_MODEL)
    error, upstream = await call_fails(
        tool, {"host": "attacker.example"}, variables={"token": Secret(TOKEN)}
    )
    assert isinstance(error, SecretEgressDenied)
    assert error.code == "secret_egress_denied"
    assert "host" in error.message
    assert upstream.requests == []


async def test_a_base_url_from_the_model_with_a_secret_is_refused() -> None:
    tool = make_tool(
        {"url": "{{base}}/x", "headers": {"Authorization": "{{token}}"}},
        {"base": {"type": "string"}},
    )
    error, upstream = await call_fails(
        tool, {"base": "https://attacker.example"}, variables={"token": Secret(TOKEN)}
    )
    assert isinstance(error, SecretEgressDenied)
    assert upstream.requests == []


async def test_a_model_chosen_host_without_secret_is_fine() -> None:
    tool = make_tool({"url": "https://{{host}}/x?q={{q}}"}, HOST_FROM_MODEL)
    _, upstream = await call(tool, {"host": "other.example"}, variables={"q": "plain"})
    assert upstream.last.url.host == "other.example"


async def test_a_host_from_a_variable_may_receive_a_secret() -> None:
    tool = make_tool({"url": "https://{{host}}/x", "headers": {"X-Key": "{{token}}"}})
    variables: dict[str, VariableValue] = {"host": "api.example.com", "token": Secret(TOKEN)}
    _, upstream = await call(tool, {"host": "attacker.example"}, variables=variables)
    assert upstream.last.url.host == "api.example.com"
    assert upstream.last.headers["x-key"] == TOKEN


# --- redirects -------------------------------------------------------------------------------


def redirect_to(location: str, status: int = 302) -> httpx.Response:
    return httpx.Response(status, headers={"Location": location})


async def test_a_cross_host_redirect_is_not_followed_with_a_secret() -> None:
    upstream = Upstream(
        lambda r: (
            redirect_to("https://elsewhere.example/steal")
            if r.url.host == "api.example.com"
            else httpx.Response(200, text="stolen")
        )
    )
    tool = make_tool({"url": "https://api.example.com/x", "headers": {"X-Key": "{{token}}"}})
    result, _ = await call(tool, variables={"token": Secret(TOKEN)}, upstream=upstream)
    assert result["status_code"] == 302
    assert result["headers"]["location"] == "https://elsewhere.example/steal"
    assert [r.url.host for r in upstream.requests] == ["api.example.com"]


async def test_a_scheme_downgrade_is_not_followed_with_a_secret() -> None:
    upstream = Upstream(lambda r: redirect_to("http://api.example.com/x"))
    tool = make_tool({"url": "https://api.example.com/x?k={{token}}"})
    result, _ = await call(tool, variables={"token": Secret(TOKEN)}, upstream=upstream)
    assert result["status_code"] == 302
    assert len(upstream.requests) == 1


async def test_a_same_host_redirect_is_followed_with_the_secret() -> None:
    upstream = Upstream(
        lambda r: (
            redirect_to("/new", 307)
            if r.url.path == "/old"
            else httpx.Response(200, json={"moved": True})
        )
    )
    tool = make_tool(
        {
            "url": "https://api.example.com/old",
            "method": "POST",
            "headers": {"X-Key": "{{token}}"},
            "body": {"a": 1},
        }
    )
    result, _ = await call(tool, variables={"token": Secret(TOKEN)}, upstream=upstream)
    assert result["status_code"] == 200
    assert result["body"] == {"moved": True}
    assert [r.url.path for r in upstream.requests] == ["/old", "/new"]
    assert upstream.last.headers["x-key"] == TOKEN
    assert json.loads(upstream.last.content) == {"a": 1}


async def test_a_cross_host_redirect_without_secret_is_followed() -> None:
    upstream = Upstream(
        lambda r: (
            redirect_to("https://cdn.example/file")
            if r.url.host == "api.example.com"
            else httpx.Response(200, text="file")
        )
    )
    result, _ = await call(make_tool({"url": "https://api.example.com/x"}), upstream=upstream)
    assert result["body"] == "file"
    assert [r.url.host for r in upstream.requests] == ["api.example.com", "cdn.example"]


async def test_redirects_stop_after_the_maximum() -> None:
    upstream = Upstream(lambda r: redirect_to(f"/{int(r.url.path.strip('/') or 0) + 1}"))
    tool = make_tool({"url": "https://api.example.com/"}, max_redirects=2)
    result, _ = await call(tool, upstream=upstream)
    assert result["status_code"] == 302
    assert result["headers"]["location"] == "/3"
    assert [r.url.path for r in upstream.requests] == ["/", "/1", "/2"]


# --- the response ------------------------------------------------------------------------------


async def test_a_json_response_is_parsed() -> None:
    upstream = Upstream(lambda _: httpx.Response(200, json={"temp": 21.5, "ok": True}))
    result, _ = await call(make_tool({"url": "https://api.example.com/"}), upstream=upstream)
    assert result == {
        "status_code": 200,
        "headers": {"content-type": "application/json"},
        "body": {"temp": 21.5, "ok": True},
        "truncated": False,
    }


async def test_a_plus_json_response_is_parsed() -> None:
    upstream = Upstream(
        lambda _: httpx.Response(
            400, content=b'{"title": "bad"}', headers={"content-type": "application/problem+json"}
        )
    )
    result, _ = await call(make_tool({"url": "https://api.example.com/"}), upstream=upstream)
    assert result["body"] == {"title": "bad"}
    assert result["status_code"] == 400


async def test_a_text_response_is_decoded_with_its_charset() -> None:
    upstream = Upstream(
        lambda _: httpx.Response(
            200,
            content="café".encode("latin-1"),
            headers={"content-type": "text/plain; charset=latin-1"},
        )
    )
    result, _ = await call(make_tool({"url": "https://api.example.com/"}), upstream=upstream)
    assert result["body"] == "café"


async def test_invalid_json_falls_back_to_text() -> None:
    upstream = Upstream(
        lambda _: httpx.Response(
            200, content=b"{not json", headers={"content-type": "application/json"}
        )
    )
    result, _ = await call(make_tool({"url": "https://api.example.com/"}), upstream=upstream)
    assert result["body"] == "{not json"


async def test_a_404_is_a_completed_call() -> None:
    upstream = Upstream(lambda _: httpx.Response(404, text="no such user"))
    result, _ = await call(make_tool({"url": "https://api.example.com/u/1"}), upstream=upstream)
    assert result["status_code"] == 404
    assert result["body"] == "no such user"


async def test_only_safe_headers_are_returned() -> None:
    headers = {
        "Content-Type": "text/plain",
        "Set-Cookie": "session=abc",
        "X-RateLimit-Remaining": "9",
        "RateLimit-Reset": "30",
        "ETag": '"v1"',
        "X-Request-Id": "req-1",
        "Server": "nginx",
        "WWW-Authenticate": "Bearer",
    }
    upstream = Upstream(lambda _: httpx.Response(200, text="x", headers=headers))
    result, _ = await call(make_tool({"url": "https://api.example.com/"}), upstream=upstream)
    assert result["headers"] == {
        "content-type": "text/plain",
        "x-ratelimit-remaining": "9",
        "ratelimit-reset": "30",
        "etag": '"v1"',
        "x-request-id": "req-1",
    }


async def test_a_large_response_is_truncated() -> None:
    body = json.dumps({"data": "x" * 500}).encode()
    upstream = Upstream(
        lambda _: httpx.Response(200, content=body, headers={"content-type": "application/json"})
    )
    tool = make_tool({"url": "https://api.example.com/"}, max_response_bytes=100)
    result, _ = await call(tool, upstream=upstream)
    assert result["truncated"] is True
    assert result["body"] == body[:100].decode()


async def test_a_response_of_exactly_the_cap_is_complete() -> None:
    upstream = Upstream(lambda _: httpx.Response(200, json=[1, 2]))
    tool = make_tool({"url": "https://api.example.com/"}, max_response_bytes=6)
    result, _ = await call(tool, upstream=upstream)
    assert result["truncated"] is False
    assert result["body"] == [1, 2]


class EndlessBody(httpx.AsyncByteStream):
    """A response body that never ends; counts what was pulled from it."""

    def __init__(self) -> None:
        self.pulled = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            self.pulled += 1
            yield b"y" * 1000

    async def aclose(self) -> None:
        self.closed = True


async def test_reading_stops_at_the_cap_on_an_endless_body() -> None:
    stream = EndlessBody()
    upstream = Upstream(lambda _: httpx.Response(200, stream=stream))
    tool = make_tool({"url": "https://api.example.com/"}, max_response_bytes=2500)
    result, _ = await call(tool, upstream=upstream)
    assert result["truncated"] is True
    assert result["body"] == "y" * 2500
    assert stream.pulled == 3
    assert stream.closed


# --- failures ----------------------------------------------------------------------------------


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


async def test_a_transport_timeout_is_an_upstream_timeout() -> None:
    upstream = Upstream(raising(httpx.ReadTimeout("timed out")))
    tool = make_tool({"url": "https://api.example.com/x?key={{token}}", "timeout": 5})
    error, _ = await call_fails(tool, variables={"token": Secret(TOKEN)}, upstream=upstream)
    assert isinstance(error, UpstreamTimeout)
    assert "api.example.com" in error.message
    assert "5 s" in error.message


async def test_a_timeout_of_the_calls_own_deadline_is_left_to_the_pipeline() -> None:
    upstream = Upstream(raising(httpx.ReadTimeout("timed out")))
    tool = make_tool({"url": "https://api.example.com/x", "timeout": 5})
    async with upstream.client() as client:
        with pytest.raises(TimeoutError):
            await tool.run({}, make_ctx(client, seconds=1))


async def test_a_connect_error_names_the_host_not_the_query() -> None:
    upstream = Upstream(raising(httpx.ConnectError("[Errno 111] Connection refused")))
    tool = make_tool({"url": "https://user:{{token}}@api.example.com/x?key={{token}}"})
    error, _ = await call_fails(tool, variables={"token": Secret(TOKEN)}, upstream=upstream)
    assert isinstance(error, UpstreamError)
    assert "api.example.com" in error.message
    assert "could not connect" in error.message
    assert "key=" not in error.message


@pytest.mark.parametrize(
    "header", ["{{token}}", {"value": TOKEN, "encrypted": True}], ids=["variable", "encrypted"]
)
async def test_an_error_detail_carrying_a_secret_is_dropped(header: object) -> None:
    upstream = Upstream(raising(httpx.RemoteProtocolError(f"bad header {TOKEN}")))
    tool = make_tool({"url": "https://api.example.com/", "headers": {"X": header}})
    error, _ = await call_fails(tool, variables={"token": Secret(TOKEN)}, upstream=upstream)
    assert isinstance(error, UpstreamError)
    assert error.message.endswith("the server closed the connection or broke the HTTP protocol")


async def test_an_error_detail_without_secret_is_kept() -> None:
    upstream = Upstream(raising(httpx.ConnectError("[Errno 111] Connection refused")))
    error, _ = await call_fails(make_tool({"url": "https://api.example.com/"}), upstream=upstream)
    assert error.message == (
        "request to host 'api.example.com' failed: could not connect "
        "([Errno 111] Connection refused)"
    )


async def test_outbound_blocked_propagates_unchanged() -> None:
    blocked = OutboundBlocked("169.254.169.254", "link-local address")
    upstream = Upstream(raising(blocked))
    tool = make_tool({"url": "http://169.254.169.254/latest/meta-data"})
    error, _ = await call_fails(tool, upstream=upstream)
    assert error is blocked


async def test_an_expired_deadline_is_a_timeout() -> None:
    upstream = Upstream()
    async with upstream.client() as client:
        with pytest.raises(TimeoutError):
            await make_tool({"url": "https://api.example.com/"}).run({}, make_ctx(client, None, 0))
    assert upstream.requests == []


# --- a real peer on loopback -------------------------------------------------------------------

StreamHandler = Callable[[SocketStream], Awaitable[None]]


@asynccontextmanager
async def loopback_server(handler: StreamHandler) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 running `handler` per connection; yields its port."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        try:
            yield listener.extra(SocketAttribute.local_port)
        finally:
            tg.cancel_scope.cancel()


async def read_request_head(stream: SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    return data


async def answer_ok(stream: SocketStream) -> None:
    async with stream:
        await read_request_head(stream)
        body = b'{"hello": "loopback"}'
        await stream.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )


async def never_answer(stream: SocketStream) -> None:
    async with stream:
        await read_request_head(stream)
        await anyio.sleep_forever()


async def reset_connection(stream: SocketStream) -> None:
    await read_request_head(stream)
    raw = stream.extra(SocketAttribute.raw_socket)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


async def test_a_real_upstream_answers() -> None:
    async with loopback_server(answer_ok) as port, httpx.AsyncClient() as client:
        tool = make_tool({"url": f"http://127.0.0.1:{port}/hi"})
        result = await tool.run({}, make_ctx(client))
    assert isinstance(result.value, dict)
    assert result.value["body"] == {"hello": "loopback"}


async def test_a_slow_real_upstream_times_out() -> None:
    async with loopback_server(never_answer) as port, httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{port}/slow?key={{{{token}}}}"
        tool = make_tool({"url": url, "timeout": 1})
        ctx = make_ctx(client, {"token": Secret(TOKEN)})
        with pytest.raises(UpstreamTimeout) as caught:
            await tool.run({}, ctx)
    assert f"127.0.0.1:{port}" in caught.value.message
    assert TOKEN not in caught.value.message


async def test_a_real_connection_reset_is_an_upstream_error() -> None:
    async with loopback_server(reset_connection) as port, httpx.AsyncClient() as client:
        tool = make_tool({"url": f"http://127.0.0.1:{port}/x", "headers": {"X": "{{token}}"}})
        with pytest.raises(UpstreamError) as caught:
            await tool.run({}, make_ctx(client, {"token": Secret(TOKEN)}))
    assert f"127.0.0.1:{port}" in caught.value.message
    assert TOKEN not in caught.value.message


async def test_a_refused_connection_is_an_upstream_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx.AsyncClient() as client:
        tool = make_tool({"url": f"http://127.0.0.1:{port}/x"})
        with pytest.raises(UpstreamError, match="could not connect"):
            await tool.run({}, make_ctx(client))


def _closes_first_connection() -> Handler:
    """A peer whose first exchange ends before any answer, as a kept-alive connection
    the upstream closes just as it is reused."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(200, json={"ok": True})

    return handle


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_an_idempotent_request_whose_connection_closed_unanswered_goes_once_more(
    method: str,
) -> None:
    tool = make_tool({"url": "https://api.example.com/x?key={{TOKEN}}", "method": method})
    variables = {"TOKEN": Secret(TOKEN)}
    result, upstream = await call(
        tool, variables=variables, upstream=Upstream(_closes_first_connection())
    )
    assert result["status_code"] == 200
    assert len(upstream.requests) == 2


async def test_a_post_whose_connection_closed_unanswered_is_not_sent_again() -> None:
    tool = make_tool({"url": "https://api.example.com/x?key={{TOKEN}}", "method": "POST"})
    variables = {"TOKEN": Secret(TOKEN)}
    error, upstream = await call_fails(
        tool, variables=variables, upstream=Upstream(_closes_first_connection())
    )
    assert error.code == "upstream_error"
    assert len(upstream.requests) == 1
