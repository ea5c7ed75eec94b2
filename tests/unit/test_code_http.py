"""The code tools' `http` helper, parent side: pinning, limits and failures."""

from __future__ import annotations

import base64
import html
import json
import random
import shlex
from collections.abc import AsyncIterator, Sequence
from urllib.parse import quote, quote_plus

import httpx
import pytest

from sidecar.redaction import Redactor
from sidecar.templating import PlaceholderRenderer
from tests.support.secrets import assert_no_piece, random_secret
from tools.base import Deadline, JsonObject, OutboundBlocked, OutboundCall, Secret, ToolContext
from tools.code_http import MAX_REQUESTS_PER_CALL, outbound_call

pytestmark = pytest.mark.anyio

SECRET = 'code+http/secret="5150"&x'


class Recorder:
    """An upstream that records requests and answers JSON (or fails as told)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "blocked.example":
            raise OutboundBlocked("blocked.example", "10.0.0.1 is private")
        if request.url.path == "/redirect":
            return httpx.Response(302, headers={"location": "https://elsewhere.example/"})
        return httpx.Response(200, json={"path": request.url.path})


@pytest.fixture
def upstream() -> Recorder:
    return Recorder()


@pytest.fixture
async def client(upstream: Recorder) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        yield http


def handler(
    client: httpx.AsyncClient, allowed: Sequence[str] = (), secret: str = SECRET
) -> OutboundCall:
    ctx = ToolContext(
        call_id="c1",
        deadline=Deadline.after(10),
        variables={"TOKEN": Secret(secret), "plain": "x"},
        http=client,
        renderer=PlaceholderRenderer(),
        mask=Redactor([secret]),
    )
    return outbound_call(ctx, allowed, max_response_bytes=10_000)


async def ask(call: OutboundCall, request: JsonObject) -> JsonObject:
    answer = await call(request)
    assert SECRET not in str(answer.get("message", ""))
    return answer


async def test_a_request_without_a_secret_may_go_anywhere_the_guard_allows(
    client: httpx.AsyncClient, upstream: Recorder
) -> None:
    answer = await ask(handler(client), {"method": "GET", "url": "https://api.example/a"})
    assert answer["ok"] is True
    assert answer["status_code"] == 200
    assert answer["body"] == {"path": "/a"}


async def test_a_secret_goes_only_to_an_allowed_host(
    client: httpx.AsyncClient, upstream: Recorder
) -> None:
    request: JsonObject = {
        "method": "GET",
        "url": "https://api.example/a",
        "headers": {"Authorization": f"Bearer {SECRET}"},
    }
    refused = await ask(handler(client), request)
    assert refused == {
        "ok": False,
        "code": "secret_egress_denied",
        "message": refused["message"],
    }
    assert not upstream.requests
    allowed = await ask(handler(client, ["api.example"]), request)
    assert allowed["ok"] is True
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize(
    "request_part",
    [
        {"params": {"key": SECRET}},
        {"json": {"token": SECRET}},
        {"data": f"token={SECRET}"},
        {
            "headers": {
                "Authorization": "Basic " + base64.b64encode(f"u:{SECRET}".encode()).decode()
            }
        },
        {"url": "https://api.example/a?q=" + quote(SECRET, safe="")},
    ],
    ids=["params", "json", "data", "basic-auth", "encoded-url"],
)
async def test_a_secret_anywhere_in_the_request_counts(
    client: httpx.AsyncClient, request_part: JsonObject
) -> None:
    request: JsonObject = {"method": "POST", "url": "https://api.example/a", **request_part}
    answer = await ask(handler(client), request)
    assert answer["code"] == "secret_egress_denied"


async def test_allowed_hosts_bound_every_request(client: httpx.AsyncClient) -> None:
    answer = await ask(handler(client, ["api.example"]), {"url": "https://other.example/"})
    assert answer["code"] == "host_not_allowed"


async def test_a_redirect_is_not_followed_with_a_secret(
    client: httpx.AsyncClient, upstream: Recorder
) -> None:
    request: JsonObject = {
        "url": "https://api.example/redirect",
        "headers": {"X-Key": SECRET},
    }
    answer = await ask(handler(client, ["api.example"]), request)
    assert answer["status_code"] == 302
    assert [r.url.host for r in upstream.requests] == ["api.example"]


async def test_the_outbound_guard_refusal_is_reported(client: httpx.AsyncClient) -> None:
    answer = await ask(handler(client), {"url": "https://blocked.example/"})
    assert answer["code"] == "outbound_blocked"
    assert "blocked.example" in str(answer["message"])


async def test_requests_per_call_are_bounded(client: httpx.AsyncClient) -> None:
    call = handler(client)
    for _ in range(MAX_REQUESTS_PER_CALL):
        assert (await ask(call, {"url": "https://api.example/"}))["ok"] is True
    assert (await ask(call, {"url": "https://api.example/"}))["code"] == "too_many_requests"


@pytest.mark.parametrize(
    "malformed",
    [{"method": "TRACE", "url": "https://api.example/"}, {"url": ""}, {"url": 3}],
    ids=["method", "empty-url", "url-type"],
)
async def test_a_malformed_request_is_refused(
    client: httpx.AsyncClient, malformed: JsonObject
) -> None:
    answer = await ask(handler(client), malformed)
    assert answer["code"] == "invalid_request"


async def test_a_redirect_outside_the_allowed_hosts_is_not_followed(
    client: httpx.AsyncClient, upstream: Recorder
) -> None:
    answer = await ask(handler(client, ["api.example"]), {"url": "https://api.example/redirect"})
    assert answer["status_code"] == 302
    assert [r.url.host for r in upstream.requests] == ["api.example"]


async def test_the_query_string_of_the_url_is_kept(
    client: httpx.AsyncClient, upstream: Recorder
) -> None:
    answer = await ask(handler(client), {"url": "https://api.example/a?x=1&y=2"})
    assert answer["ok"] is True
    assert upstream.requests[-1].url.query == b"x=1&y=2"


# A key as API keys are written (letters and digits: valid in a host name and a header
# name too), and one with the characters every encoding writes differently.
TOKEN_LIKE = "k7" + random_secret(random.Random(9), 30).replace("-", "x").replace("_", "y").lower()
SHELL_XML = "sk'9<&>\"q" + random_secret(random.Random(10), 20)


def sent_with(secret: str) -> dict[str, tuple[str, JsonObject]]:
    """Where a secret can sit in a helper request: each part, with a request holding it there."""
    xml = html.escape(secret, quote=False).replace("'", "&apos;").replace('"', "&quot;")
    basic = base64.b64encode(f"user:{secret}".encode()).decode()
    return {
        "userinfo": ("URL userinfo", {"url": f"https://{quote(secret, safe='')}@api.example/"}),
        "password": ("URL userinfo", {"url": f"https://u:{quote(secret, safe='')}@api.example/"}),
        "path": ("URL path", {"url": f"https://api.example/v1/{quote(secret, safe='')}/items"}),
        "query-name": ("URL query parameter name", {"params": {secret: "1"}}),
        "query-value": ("URL query value", {"params": {"key": secret}}),
        "query-in-url": (
            "URL query value",
            {"url": f"https://api.example/?q={quote_plus('pre ' + secret)}"},
        ),
        "header-value": ("header value", {"headers": {"X-Key": secret}}),
        "basic-auth": ("header value", {"headers": {"Authorization": f"Basic {basic}"}}),
        "json-key": ("body (a JSON key)", {"json": {secret: 1}}),
        "json-value": ("body (a JSON value)", {"json": {"items": [{"token": secret}]}}),
        "json-escaped-text": (
            "body (a JSON value)",
            {"data": json.dumps({"t": secret}, ensure_ascii=True)},
        ),
        "form-name": ("body (a form field name)", {"form": {secret: "1"}}),
        "form-value": ("body (a form field value)", {"form": {"token": secret, "a": "b"}}),
        "raw-text": ("body", {"data": f"token: {secret}\n"}),
        "raw-xml": ("body", {"data": f"<auth key='{xml}'/>"}),
        "raw-shell": ("body", {"data": f"curl -H {shlex.quote('Key: ' + secret)} ..."}),
        "raw-base64": ("body", {"data": base64.b64encode(f"k={secret}".encode()).decode()}),
    }


def egress_cases() -> list[tuple[str, str, JsonObject]]:
    cases = [
        (secret, place, request)
        for secret in (SECRET, SHELL_XML, TOKEN_LIKE)
        for place, request in sent_with(secret).values()
    ]
    cases.append((TOKEN_LIKE, "URL host", {"url": f"https://{TOKEN_LIKE}.api.example/"}))
    cases.append((TOKEN_LIKE, "header name", {"headers": {f"X-{TOKEN_LIKE}": "1"}}))
    cases.append((TOKEN_LIKE.upper(), "header name", {"headers": {TOKEN_LIKE.upper(): "1"}}))
    return cases


@pytest.mark.parametrize(
    ("secret", "place", "part"),
    egress_cases(),
    ids=[f"{case[1]}-{n}" for n, case in enumerate(egress_cases())],
)
async def test_a_secret_in_any_part_of_the_request_as_sent_is_pinned(
    upstream: Recorder, secret: str, place: str, part: JsonObject
) -> None:
    request: JsonObject = {"method": "POST", "url": "https://api.example/", **part}
    host = httpx.URL(str(request["url"])).host
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as client:
        refused = await ask(handler(client, ["elsewhere.example"], secret), request)
        assert refused["code"] == "host_not_allowed"
        refused = await ask(handler(client, (), secret), request)
        assert refused["code"] == "secret_egress_denied", refused
        message = str(refused["message"])
        assert f"in its {place};" in message
        assert_no_piece(message, secret)
        assert not upstream.requests, "a refused request was sent"

        allowed = await ask(handler(client, [host], secret), request)
    assert allowed["ok"] is True, allowed
    assert len(upstream.requests) == 1


async def test_the_method_is_checked_too(client: httpx.AsyncClient, upstream: Recorder) -> None:
    request: JsonObject = {"method": "PATCH", "url": "https://api.example/"}
    refused = await ask(handler(client, (), secret="PATCH"), request)
    assert refused["code"] == "secret_egress_denied"
    assert "in its method;" in str(refused["message"])


async def test_a_request_without_a_secret_in_any_part_is_not_pinned(
    client: httpx.AsyncClient, upstream: Recorder
) -> None:
    near_miss = SECRET[:-1] + "!"
    answer = await ask(
        handler(client),
        {"url": "https://u:p@api.example/v1/items?q=1", "json": {"token": near_miss}},
    )
    assert answer["ok"] is True, answer
