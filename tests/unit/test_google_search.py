"""The google_search tool against stand-ins of each search service on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from sidecar.outbound import OutboundPolicy, guarded_client
from sidecar.templating import PlaceholderRenderer
from tests.support.search_backends import FakeSearch, serve_search_backends
from tests.support.secrets import assert_no_piece, assert_no_secret
from tests.support.upstream import free_port
from tools.base import Deadline, JsonObject, Secret, ToolContext, ToolError, ToolResult
from tools.google_search import MAX_DETAIL_CHARS, GoogleSearchTool
from tools.search_backends import BraveBackend, GoogleBackend, SearchBackend, SearxngBackend

pytestmark = pytest.mark.anyio

GOOGLE_KEY = "AIzaSyTest-google-key-4711"
BRAVE_KEY = "BSAtest-brave-token-0815"
ENGINE = "017576662512468239146:omuauf_lfve"
SERVICES = ("google", "brave", "searxng")
GOOD_URLS = [
    "https://docs.python.org/3/tutorial/",
    "https://www.python.org/",
    "https://realpython.com/",
    "https://en.wikipedia.org/wiki/Python_(programming_language)",
]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSearch]:
    with serve_search_backends() as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with guarded_client(OutboundPolicy(("127.0.0.1",))) as client:
        yield client


def backend_for(service: str, base_url: str) -> SearchBackend:
    if service == "google":
        return GoogleBackend(Secret(GOOGLE_KEY), ENGINE, base_url)
    if service == "brave":
        return BraveBackend(Secret(BRAVE_KEY), base_url)
    return SearxngBackend(base_url)


def context(http: httpx.AsyncClient, seconds: float = 10) -> ToolContext:
    return ToolContext(
        call_id="call_1",
        deadline=Deadline.after(seconds),
        variables={},
        http=http,
        renderer=PlaceholderRenderer(),
    )


async def search(
    http: httpx.AsyncClient,
    backend: SearchBackend | None,
    arguments: JsonObject | None = None,
    *,
    timeout: float = 10,
    seconds: float = 10,
) -> dict[str, Any]:
    tool = GoogleSearchTool(backend, timeout=timeout)
    output = await tool.run(arguments or {"query": "python tutorial"}, context(http, seconds))
    assert isinstance(output, ToolResult)
    assert isinstance(output.value, dict)
    return output.value


async def failure(
    http: httpx.AsyncClient,
    backend: SearchBackend | None,
    *,
    timeout: float = 10,
    seconds: float = 10,
) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await search(http, backend, timeout=timeout, seconds=seconds)
    assert_no_secret(caught.value.message, GOOGLE_KEY, BRAVE_KEY, where="error message")
    return caught.value


@pytest.mark.parametrize("service", SERVICES)
async def test_results_are_plain_text_with_web_urls(
    fake: FakeSearch, http: httpx.AsyncClient, service: str
) -> None:
    result = await search(
        http, backend_for(service, fake.url(service)), {"query": "python", "num_results": 4}
    )
    assert result["query"] == "python"
    assert result["backend"] == service
    assert [hit["url"] for hit in result["results"]] == GOOD_URLS
    first = result["results"][0]
    assert first["title"] == "The Python Tutorial \u2014 Python 3 docs"
    assert first["snippet"] == "Learn Python & its standard library today. Free."
    assert set(first) == {"title", "url", "snippet"}


@pytest.mark.parametrize("service", SERVICES)
async def test_relative_script_and_repeated_urls_are_dropped_and_results_capped(
    fake: FakeSearch, http: httpx.AsyncClient, service: str
) -> None:
    result = await search(
        http, backend_for(service, fake.url(service)), {"query": "python", "num_results": 10}
    )
    urls = [hit["url"] for hit in result["results"]]
    assert urls[:4] == GOOD_URLS
    assert len(urls) == len(set(urls)) <= 10
    assert all(url.startswith("https://") for url in urls)
    if service == "searxng":  # it sends 14 results whatever is asked
        assert len(urls) == 10


async def test_google_gets_num_lr_hl_gl_and_the_key_in_the_query(
    fake: FakeSearch, http: httpx.AsyncClient
) -> None:
    arguments: JsonObject = {"query": "fondue", "num_results": 3, "language": "de", "country": "ch"}
    await search(http, backend_for("google", fake.url("google")), arguments)
    received = fake.last("google")
    assert dict(received.params) == {
        "q": "fondue",
        "num": "3",
        "cx": ENGINE,
        "lr": "lang_de",
        "hl": "de",
        "gl": "ch",
        "key": GOOGLE_KEY,
    }
    assert "x-subscription-token" not in received.headers


async def test_brave_gets_count_search_lang_country_and_the_key_in_its_header(
    fake: FakeSearch, http: httpx.AsyncClient
) -> None:
    arguments: JsonObject = {"query": "sushi", "num_results": 7, "language": "ja", "country": "jp"}
    await search(http, backend_for("brave", fake.url("brave")), arguments)
    received = fake.last("brave")
    assert dict(received.params) == {
        "q": "sushi",
        "count": "7",
        "search_lang": "jp",
        "country": "JP",
    }
    assert received.headers["x-subscription-token"] == BRAVE_KEY
    assert received.headers["accept"] == "application/json"


async def test_searxng_gets_the_json_format_and_one_language_tag(
    fake: FakeSearch, http: httpx.AsyncClient
) -> None:
    arguments: JsonObject = {"query": "raclette", "language": "fr", "country": "ch"}
    await search(http, backend_for("searxng", fake.url("searxng")), arguments)
    received = fake.last("searxng")
    assert dict(received.params) == {
        "q": "raclette",
        "format": "json",
        "pageno": "1",
        "language": "fr-CH",
    }


@pytest.mark.parametrize("service", SERVICES)
async def test_a_search_that_found_nothing_completes_with_no_results(
    fake: FakeSearch, http: httpx.AsyncClient, service: str
) -> None:
    result = await search(http, backend_for(service, fake.url(service, "empty")))
    assert result["results"] == []


@pytest.mark.parametrize(
    ("service", "scenario", "code", "says"),
    [
        ("google", "quota", "search_quota_exceeded", "Quota exceeded for quota metric"),
        ("google", "daily", "search_quota_exceeded", "Daily Limit Exceeded"),
        ("google", "badkey", "search_auth_failed", "API key not valid"),
        ("google", "denied", "search_auth_failed", "does not have the access"),
        ("google", "broken", "search_error", "answered 500: Backend Error"),
        ("brave", "quota", "search_quota_exceeded", "Request rate limit exceeded"),
        ("brave", "badkey", "search_auth_failed", "subscription token is invalid"),
        ("brave", "denied", "search_auth_failed", "not in your plan"),
        ("brave", "broken", "search_error", "answered 500: Something went wrong"),
        ("searxng", "quota", "search_quota_exceeded", "rate limiter"),
        ("searxng", "badkey", "search_auth_failed", "JSON format: it is probably disabled"),
        ("searxng", "broken", "search_error", "answered 500"),
    ],
)
async def test_error_answers_are_failures_the_model_can_act_on(
    fake: FakeSearch, http: httpx.AsyncClient, service: str, scenario: str, code: str, says: str
) -> None:
    error = await failure(http, backend_for(service, fake.url(service, scenario)))
    assert error.code == code
    assert says in error.message
    assert f"the {service} search backend (127.0.0.1:" in error.message


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    ("scenario", "says"),
    [("garbage", "not JSON"), ("shapeless", "not its JSON format"), ("redirect", "redirect")],
)
async def test_an_answer_in_no_known_format_is_a_search_error(
    fake: FakeSearch, http: httpx.AsyncClient, service: str, scenario: str, says: str
) -> None:
    followed = fake.count("ok")
    error = await failure(http, backend_for(service, fake.url(service, scenario)))
    assert error.code == "search_error"
    assert says in error.message
    assert fake.count("ok") == followed  # a redirect is never followed


@pytest.mark.parametrize("service", ["google", "brave"])
async def test_a_backend_message_that_quotes_the_key_is_withheld(
    fake: FakeSearch, http: httpx.AsyncClient, service: str
) -> None:
    error = await failure(http, backend_for(service, fake.url(service, "leaky")))
    assert error.code == "search_error"
    assert "withheld" in error.message


async def test_a_slow_backend_is_an_upstream_timeout_after_the_search_timeout(
    fake: FakeSearch, http: httpx.AsyncClient
) -> None:
    error = await failure(http, backend_for("brave", fake.url("brave", "slow")), timeout=0.3)
    assert error.code == "upstream_timeout"
    assert "did not answer within 0.3 s" in error.message


async def test_a_call_deadline_sooner_than_the_search_timeout_raises_timeout_error(
    fake: FakeSearch, http: httpx.AsyncClient
) -> None:
    # The pipeline reports a TimeoutError as `tool_timeout`.
    with pytest.raises(TimeoutError):
        await search(http, backend_for("google", fake.url("google", "slow")), seconds=0.3)


async def test_an_unreachable_backend_is_a_search_error(http: httpx.AsyncClient) -> None:
    closed = f"http://127.0.0.1:{free_port()}/search"
    error = await failure(http, backend_for("searxng", closed))
    assert error.code == "search_error"
    assert "could not be reached: could not connect" in error.message


async def test_a_backend_the_outbound_guard_refuses_is_outbound_blocked(fake: FakeSearch) -> None:
    async with guarded_client(OutboundPolicy()) as strict:
        error = await failure(strict, backend_for("google", fake.url("google")))
    assert error.code == "outbound_blocked"
    assert "127.0.0.1" in error.message


async def test_without_a_backend_a_call_names_the_settings_to_set(
    http: httpx.AsyncClient,
) -> None:
    error = await failure(http, None)
    assert error.code == "search_not_configured"
    for setting in ("SIDECAR_SEARCH_BACKEND", "SIDECAR_GOOGLE_API_KEY", "SIDECAR_SEARXNG_URL"):
        assert setting in error.message


async def test_a_blank_query_is_invalid_arguments(
    fake: FakeSearch, http: httpx.AsyncClient
) -> None:
    with pytest.raises(ToolError) as caught:
        await search(http, backend_for("google", fake.url("google")), {"query": "   "})
    assert caught.value.code == "invalid_arguments"


@pytest.mark.parametrize("service", ["google", "brave"])
async def test_a_backend_message_quoting_the_key_across_its_cut_is_withheld(
    fake: FakeSearch, http: httpx.AsyncClient, service: str
) -> None:
    key = GOOGLE_KEY if service == "google" else BRAVE_KEY
    for offset in range(MAX_DETAIL_CHARS - len(key) - 2, MAX_DETAIL_CHARS + 2):
        backend = backend_for(service, fake.url(service, f"leaky-{offset}"))
        error = await failure(http, backend)
        assert "withheld" in error.message, offset
        assert_no_piece(error.message, key, where=f"a message quoting the key at {offset}")
