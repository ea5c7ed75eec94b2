"""`orq:google_search` through the HTTP API, against loopback stand-ins of the search services."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar.logs import configure_logging
from tests.api.support import make_settings, open_client
from tests.support.logs import restored_logging
from tests.support.search_backends import FakeSearch, serve_search_backends
from tests.support.secrets import assert_no_secret

pytestmark = pytest.mark.anyio

GOOGLE_KEY = "AIzaSyApi-google-key-3141"
BRAVE_KEY = "BSAapi-brave-token-2718"
SEARCH = {"type": "orq:google_search"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSearch]:
    with serve_search_backends() as running:
        yield running


def backend_settings(fake: FakeSearch, service: str, scenario: str = "ok") -> dict[str, Any]:
    url = fake.url(service, scenario)
    if service == "google":
        return {
            "search_backend": "google",
            "google_api_key": GOOGLE_KEY,
            "google_cse_id": "engine-7",
            "google_base_url": url,
        }
    if service == "brave":
        return {"search_backend": "brave", "brave_api_key": BRAVE_KEY, "brave_base_url": url}
    return {"search_backend": "searxng", "searxng_url": url}


@asynccontextmanager
async def searching(
    tmp_path: Path, fake: FakeSearch, service: str, scenario: str = "ok", **more: Any
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(tmp_path, **backend_settings(fake, service, scenario), **more)
    async with open_client(settings) as client:
        yield client


async def execute(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/tools/execute", json={"tool": SEARCH, **body})
    assert response.status_code == 200, response.text
    assert_no_secret(response.text, GOOGLE_KEY, BRAVE_KEY, where="answer")
    answer: dict[str, Any] = response.json()
    return answer


@pytest.mark.parametrize("service", ["google", "brave", "searxng"])
async def test_execute_searches_through_the_configured_backend(
    tmp_path: Path, fake: FakeSearch, service: str
) -> None:
    async with searching(tmp_path, fake, service) as client:
        answer = await execute(
            client, arguments={"query": "python", "num_results": 2, "language": "en"}
        )
    assert answer["status"] == "completed", answer
    assert answer["tool"] == "google_search"
    result = answer["result"]
    assert result["query"] == "python"
    assert result["backend"] == service
    assert result["results"] == [
        {
            "title": "The Python Tutorial \u2014 Python 3 docs",
            "url": "https://docs.python.org/3/tutorial/",
            "snippet": "Learn Python & its standard library today. Free.",
        },
        {
            "title": "Welcome to Python.org",
            "url": "https://www.python.org/",
            "snippet": "Learn Python & its standard library today. Free.",
        },
    ]


async def test_the_model_string_arguments_form_works_too(tmp_path: Path, fake: FakeSearch) -> None:
    async with searching(tmp_path, fake, "brave") as client:
        answer = await execute(client, arguments=json.dumps({"query": "python"}))
    assert answer["status"] == "completed"
    assert fake.last("brave").param("count") == "5"  # the default


@pytest.mark.parametrize(
    ("service", "scenario", "code"),
    [
        ("google", "badkey", "search_auth_failed"),
        ("google", "quota", "search_quota_exceeded"),
        ("brave", "badkey", "search_auth_failed"),
        ("brave", "quota", "search_quota_exceeded"),
        ("searxng", "denied", "search_auth_failed"),
        ("google", "leaky", "search_error"),
        ("brave", "leaky", "search_error"),
        ("searxng", "garbage", "search_error"),
    ],
)
async def test_backend_failures_are_failed_calls_the_model_reads(
    tmp_path: Path, fake: FakeSearch, service: str, scenario: str, code: str
) -> None:
    async with searching(tmp_path, fake, service, scenario) as client:
        answer = await execute(client, arguments={"query": "python"})
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == code
    assert answer["error"]["message"]


@pytest.mark.parametrize(
    ("arguments", "param"),
    [
        ({}, "query"),
        ({"query": ""}, "query"),
        ({"query": "x", "num_results": 11}, "num_results"),
        ({"query": "x", "num_results": 0}, "num_results"),
        ({"query": "x", "country": "Germany"}, "country"),
        ({"query": "x", "language": "en_US"}, "language"),
    ],
)
async def test_arguments_outside_the_schema_are_invalid_arguments(
    tmp_path: Path, fake: FakeSearch, arguments: dict[str, Any], param: str
) -> None:
    async with searching(tmp_path, fake, "google") as client:
        answer = await execute(client, arguments=arguments)
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "invalid_arguments"
    assert param in answer["error"]["message"] + str(answer["error"].get("param"))


async def test_a_call_timeout_sooner_than_the_search_timeout_is_tool_timeout(
    tmp_path: Path, fake: FakeSearch
) -> None:
    async with searching(tmp_path, fake, "searxng", "slow") as client:
        answer = await execute(client, arguments={"query": "python"}, timeout=0.3)
    assert answer["error"]["code"] == "tool_timeout"


async def test_a_search_timeout_sooner_than_the_call_is_upstream_timeout(
    tmp_path: Path, fake: FakeSearch
) -> None:
    async with searching(tmp_path, fake, "google", "slow", search_timeout=0.3) as client:
        answer = await execute(client, arguments={"query": "python"})
    assert answer["error"]["code"] == "upstream_timeout"


async def test_without_a_backend_the_tool_resolves_but_a_call_is_not_configured(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/tools/resolve", json={"tools": [SEARCH]})
    assert response.status_code == 200, response.text
    [definition] = response.json()["tools"]
    assert definition["name"] == "google_search"
    assert definition["tool"] == SEARCH
    parameters = definition["parameters"]
    assert set(parameters["properties"]) == {"query", "num_results", "language", "country"}
    assert parameters["required"] == ["query"]
    assert parameters["properties"]["num_results"]["maximum"] == 10
    answer = await execute(client, arguments={"query": "python"})
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "search_not_configured"
    assert "SIDECAR_SEARCH_BACKEND" in answer["error"]["message"]


async def test_readiness_lists_the_search_tool(client: httpx.AsyncClient) -> None:
    body = (await client.get("/readyz")).json()
    assert "google_search" in body["checks"]["registry"]["platform_tools"]


@pytest.mark.parametrize("service", ["google", "brave"])
async def test_the_key_never_reaches_the_logs_even_where_the_url_carries_it(
    tmp_path: Path, fake: FakeSearch, service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with restored_logging():
        # No service secrets here: the call's own redaction (the key the search tool
        # holds) must be enough; httpx is let log every request URL (Google's holds the key).
        configure_logging(level="debug", fmt="json")
        logging.getLogger("httpx").setLevel(logging.DEBUG)
        for scenario in ("ok", "leaky", "badkey", "broken"):
            async with searching(tmp_path, fake, service, scenario) as client:
                await execute(client, arguments={"query": "python"})
        logged = capsys.readouterr().err
    events = [json.loads(line)["event"] for line in logged.splitlines() if line.startswith("{")]
    assert events.count("tool.executed") == 4
    assert any(event.startswith("HTTP Request: GET") for event in events)
    assert_no_secret(logged, GOOGLE_KEY, BRAVE_KEY, where="logs")
